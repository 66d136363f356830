"""The sweep's job engine (submitit): the engine settings and CLI flags are checked, a Slurm submission
is one job array, and smoke sweeps through submitit's local backend (two jobs at once) give the same
run folders and results as the process pool, including a job killed mid-run that the next sweep resumes."""

import json
import os
import signal
import threading
import time
import types
from pathlib import Path

import pytest
import yaml

from submitit.core.utils import DelayedSubmission   # pinned in requirements.lock: these tests need it
from instructlab import ablation
from instructlab.__main__ import main
from test_ablation import REPO, _stable, tiny_config

SMOKE = REPO / "configs" / "sweep_smoke.yaml"


def write_config(tmp_path, **changes):
    config = yaml.safe_load(SMOKE.read_text())
    config.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ------------------------------------------------------------------------ settings and command line

def test_default_engine_is_the_process_pool():
    cfg = ablation.load_sweep_config(SMOKE)
    assert cfg.engine == "local" and cfg.submitit == {}


def test_engine_settings_load(tmp_path):
    settings = {"cluster": "slurm", "slurm_partition": "gpu", "timeout_min": 90, "gpus_per_node": 1,
                "cpus_per_task": 8, "mem_gb": 32, "array_parallelism": 4, "slurm_setup": ["module load cuda"],
                "slurm_additional_parameters": {"mail-type": "END"}}
    cfg = ablation.load_sweep_config(write_config(tmp_path, engine="submitit", submitit=settings))
    assert cfg.engine == "submitit" and cfg.submitit == settings
    resolved = ablation.submitit_settings(cfg, tmp_path / "sweep")
    assert resolved["folder"] == str((tmp_path / "sweep").absolute() / "submitit" / "%j")
    assert resolved["array_parallelism"] == 4 and resolved["poll_s"] == 10.0
    local = ablation.submitit_settings(ablation.SweepConfig(engine="submitit"), tmp_path, workers=2)
    assert (local["cluster"], local["array_parallelism"], local["timeout_min"]) == ("local", 2, 1440)
    assert ablation.submitit_settings(ablation.SweepConfig(submitit={"cluster": "slurm"}), tmp_path)[
        "array_parallelism"] is None                                         # Slurm: submitit's own array limit


@pytest.mark.parametrize("changes, message", [
    ({"engine": "ray"}, "engine must be 'local' (the process pool on this machine) or 'submitit'"),
    ({"engine": "submitit", "submitit": {"cluster": "kubernetes"}},
     "submitit.cluster must be one of ['local', 'slurm', 'debug']"),
    ({"submitit": {"cluster": "slurm", "partition": "gpu"}}, "unknown submitit keys ['partition']; valid: ['cluster'"),
    ({"submitit": {"array_parallelism": 0}}, "submitit.array_parallelism must be a positive integer"),
    ({"submitit": {"timeout_min": "2h"}}, "submitit.timeout_min must be a positive integer"),
    ({"submitit": {"gpus_per_node": True}}, "submitit.gpus_per_node must be an integer >= 0"),
    ({"submitit": {"slurm_setup": "module load cuda"}}, "submitit.slurm_setup must be a list of strings"),
    ({"submitit": ["slurm"]}, "submitit must be a mapping of executor settings"),
])
def test_bad_engine_settings_are_refused_before_any_run(tmp_path, changes, message):
    path = write_config(tmp_path, **changes)
    with pytest.raises(ablation.SweepConfigError) as err:
        ablation.load_sweep_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)


def test_engine_submitit_without_the_package_says_how_to_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **kw: None if name == "submitit" else real(name, *a, **kw))
    with pytest.raises(ablation.SweepConfigError, match="needs the submitit package .*pip install submitit"):
        ablation.load_sweep_config(write_config(tmp_path, engine="submitit"))
    assert ablation.load_sweep_config(write_config(tmp_path)).engine == "local"     # the pool does not need it


def test_cli_engine_flags_override_the_config(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run_sweep(config, out, workers=None):
        seen.update(config=config, out=out)
        raise KeyboardInterrupt

    monkeypatch.setattr(ablation, "run_sweep", fake_run_sweep)
    path = write_config(tmp_path, submitit={"cluster": "local", "timeout_min": 60})
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--engine", "submitit", "--cluster", "slurm", "--partition", "gpu",
            "--array-parallelism", "4"]
    assert main(argv) == 130
    cfg = seen["config"]
    assert cfg.engine == "submitit" and seen["out"] == out
    assert cfg.submitit == {"cluster": "slurm", "timeout_min": 60, "slurm_partition": "gpu", "array_parallelism": 4}
    err = capsys.readouterr().err
    assert (f"resume with `python -m instructlab sweep {path} --out {out} --engine submitit --cluster slurm "
            "--partition gpu --array-parallelism 4`") in err

    assert main(["sweep", str(path), "--cluster", "slurm"]) == 2                # engine flags need the engine
    err = capsys.readouterr().err
    assert "--cluster set the submitit engine" in err and "add --engine submitit" in err
    for bad in (["--engine", "ray"], ["--engine", "submitit", "--cluster", "k8s"]):
        with pytest.raises(SystemExit) as exit_:
            main(["sweep", str(path), *bad])
        assert exit_.value.code == 2


# ------------------------------------------------------------------------ Slurm, without a cluster

def fake_tasks(tmp_path, n):
    return [{"run_id": f"run{i}", "run_dir": str(tmp_path / "sweep" / "runs" / f"run{i}")} for i in range(n)]


def test_slurm_sweep_is_one_job_array_and_ctrl_c_cancels_it(tmp_path, monkeypatch):
    """Fake `srun`, `sbatch`, `sacct` and `scancel` on PATH: the sweep submits one sbatch job array
    with the settings, prints the job ids, and Ctrl-C cancels every unfinished job and says how to resume."""
    bin_dir, record = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    scripts = {"srun": "exit 0",
               "sbatch": f'cp "$1" {tmp_path / "sbatch.sh"}; echo "Submitted batch job 4242"',
               "sacct": 'echo "JobID|State|NodeList"; echo "4242_[0-2]|PENDING|None"',
               "scancel": f'echo "scancel $@" >> {record}'}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def ctrl_c(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(ablation, "time", types.SimpleNamespace(sleep=ctrl_c))
    cfg = ablation.SweepConfig(name="smoke", engine="submitit",
                               submitit={"cluster": "slurm", "slurm_partition": "gpu", "timeout_min": 30,
                                         "cpus_per_task": 4, "gpus_per_node": 1, "array_parallelism": 2})
    lines, tasks = [], fake_tasks(tmp_path, 3)
    with pytest.raises(KeyboardInterrupt):
        list(ablation._execute_submitit(tasks, cfg, tmp_path / "sweep", 1, lines.append))
    sbatch = (tmp_path / "sbatch.sh").read_text()
    for flag in ("--array=0-2%2", "--partition=gpu", "--time=30", "--cpus-per-task=4", "--gpus-per-node=1",
                 "--job-name=sweep-smoke", f"--output={tmp_path / 'sweep' / 'submitit' / '%A_%a'}/%A_%a_0_log.out"):
        assert f"#SBATCH {flag}" in sbatch, (flag, sbatch)
    assert lines[0].startswith("submitit (slurm): submitted 3 jobs as job array 4242, at most 2 at once; job folder ")
    assert lines[1:4] == ["  job 4242_0: run0", "  job 4242_1: run1", "  job 4242_2: run2"]
    assert "cancelled 3 unfinished submitit job(s) ['4242_0', '4242_1', '4242_2']" in lines[-1]
    assert "run the same sweep again to resume" in lines[-1]
    assert record.read_text() == "scancel 4242_0 4242_1 4242_2\n"              # one scancel for the array
    # each array task unpickles the same function with its run and the job's CPU threads
    pickles = sorted((tmp_path / "sweep" / "submitit").glob("4242_*/4242_*_submitted.pkl"))
    assert len(pickles) == 3
    delayed = DelayedSubmission.load(pickles[0])
    assert delayed.function is ablation.submitit_job and delayed.args[0] == tasks[0] and delayed.args[1] == 4


def test_slurm_without_srun_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    cfg = ablation.SweepConfig(engine="submitit", submitit={"cluster": "slurm"})
    with pytest.raises(ablation.SweepConfigError, match="cluster 'slurm': .*srun.*--cluster local"):
        list(ablation._execute_submitit(fake_tasks(tmp_path, 1), cfg, tmp_path / "sweep", 1, print))


def test_debug_cluster_runs_each_job_in_this_process(tmp_path, monkeypatch):
    ran = []

    def fake_execute_run(task, progress=print, on_start=None):
        Path(task["run_dir"]).mkdir(parents=True)
        ablation.runs.write_manifest(task["run_dir"], status="running")
        on_start(Path(task["run_dir"]))
        ran.append((task["run_id"], os.getpid()))
        return {"run_id": task["run_id"], "status": "succeeded"}

    monkeypatch.setattr(ablation, "execute_run", fake_execute_run)
    cfg = ablation.SweepConfig(engine="submitit", submitit={"cluster": "debug", "poll_s": 0.01})
    lines = []
    rows = list(ablation._execute_submitit(fake_tasks(tmp_path, 2), cfg, tmp_path / "sweep", 1, lines.append))
    assert [r["run_id"] for r in rows] == ["run0", "run1"] and ran == [("run0", os.getpid()), ("run1", os.getpid())]
    assert "they run in this process, one after another" in lines[0]
    assert sum("started run" in line for line in lines) == 2
    manifest = json.loads((tmp_path / "sweep" / "runs" / "run0" / "manifest.json").read_text())
    assert manifest["job"]["engine"] == "submitit" and manifest["job"]["pid"] == os.getpid()


# ------------------------------------------------------------------------ smoke sweeps on submitit's local backend
# Real runs on tiny-random (experiment.train_run and experiment.eval_run in each job), 3 runs, 2 at once.


def engine_config(**changes):
    return tiny_config(sizes=[4, 8], seeds=[0], engine="submitit",
                       submitit={"cluster": "local", "array_parallelism": 2, "poll_s": 0.2}, **changes)


@pytest.fixture(autouse=True)
def _jobs_import_this_checkout(monkeypatch):
    """submitit's local jobs are new Python processes: they import this checkout of the package."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory):
    """The same grid through the default engine, the process pool (2 workers): the reference."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTRUCTLAB_RUNS", str(tmp_path_factory.mktemp("pool_runs")))
        mp.setenv("HF_MODULES_CACHE", str(tmp_path_factory.getbasetemp() / "hf_modules"))
        cfg = tiny_config(sizes=[4, 8], seeds=[0])
        assert cfg.engine == "local"
        result = ablation.run_sweep(cfg, tmp_path_factory.mktemp("pool") / "sweep", workers=2, progress=lambda s: None)
    assert not result.failed and len(result.rows) == 3
    return result


def finished_runs(sweep_dir):
    return sorted(p.parent.name for p in Path(sweep_dir).glob("runs/*/result.json"))


def folder_state(run_dir):
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in sorted(Path(run_dir).rglob("*"))}


@pytest.mark.slow
def test_submitit_local_gives_the_pool_results(tmp_path, pool_sweep):
    sweep_dir, lines = tmp_path / "sweep", []
    result = ablation.run_sweep(engine_config(), sweep_dir, progress=lines.append)
    assert not result.failed, result.failed
    assert finished_runs(sweep_dir) == finished_runs(pool_sweep.sweep_dir) == sorted(
        ["untuned", "clean-random-assistant-n4-s0", "clean-random-assistant-n8-s0"])
    assert _stable(result.rows) == _stable(pool_sweep.rows)
    rows, summary, config = ablation.load_results(sweep_dir)                  # aggregation reads the folders
    assert _stable(rows) == _stable(pool_sweep.rows) and summary == ablation.load_results(pool_sweep.sweep_dir)[1]
    assert config["engine"] == "submitit"
    # live progress: the job count and slots, each submission, each start, each finished row
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert any(f"submitit (local): 3 jobs, 2 at once on CPU ({threads} threads each)" in line for line in lines)
    submitted = [i for i, line in enumerate(lines) if line.startswith("  submitted job ")]
    finished = [i for i, line in enumerate(lines) if line.startswith("[")]
    assert len(submitted) == 3 and len(finished) == 3 and sum("  started " in line for line in lines) == 3
    assert submitted[1] < finished[0] < submitted[2]           # two at once: the third waits for a free slot
    # each run was one job, in its own process, recorded in the run's manifest
    jobs = [json.loads((Path(r["run_dir"]) / "manifest.json").read_text())["job"] for r in result.rows]
    assert len({j["job_id"] for j in jobs}) == len({j["pid"] for j in jobs}) == 3
    assert all(j["cluster"] == "local" and j["threads"] == threads and Path(j["stdout"]).exists() for j in jobs)
    for row, job in zip(result.rows, jobs):                   # the job's progress lines are in its stdout log
        assert f"{row['run_id']}: " in Path(job["stdout"]).read_text()


def kill_job_when_running(run_dir, killed, timeout_s=600):
    """SIGKILL the process of the submitit job running ``run_dir`` once the run is training (the job's
    stdout log, named in the run's manifest, says ``<run id>: training ...``)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and not killed.get("stop"):
        try:
            manifest = json.loads((run_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            manifest = {}
        job = manifest.get("job") or {}
        stdout = Path(job["stdout"]) if job.get("stdout") else None
        if (manifest.get("status") == "running" and job.get("pid") and stdout and stdout.exists()
                and f"{run_dir.name}: training " in stdout.read_text()):
            os.kill(job["pid"], signal.SIGKILL)
            killed.update(job=job, result_at_kill=(run_dir / "result.json").exists(),
                          train_done_at_kill=(run_dir / "train" / "result.json").exists())
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_submitit_job_killed_mid_run_is_resumed(tmp_path, pool_sweep):
    cfg, sweep_dir = engine_config(), tmp_path / "sweep"
    victim = sweep_dir / "runs" / "clean-random-assistant-n4-s0"
    killed = {}
    killer = threading.Thread(target=kill_job_when_running, args=(victim, killed), daemon=True)
    killer.start()
    try:
        first_lines = []
        first = ablation.run_sweep(cfg, sweep_dir, progress=first_lines.append)
    finally:
        killed["stop"] = True
        killer.join(10)
    assert killed.get("job"), "the job was never seen running"
    assert not killed["result_at_kill"] and not killed["train_done_at_kill"]          # killed while training
    assert not (victim / "result.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(killed["job"]["pid"], 0)                                              # the job's process is gone
    assert [r["run_id"] for r in first.failed] == [victim.name]
    error = first.failed[0]["error"]
    assert f"submitit job {killed['job']['job_id']} ended without a result" in error
    assert f"stderr log: {killed['job']['stderr']}" in error and Path(killed["job"]["stderr"]).exists()
    assert any(line.startswith("[") and "FAILED" in line and "stderr log: " in line for line in first_lines)
    manifest = json.loads((victim / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "ended without a result" in manifest["error"]
    others = {r["run_dir"]: folder_state(r["run_dir"]) for r in first.rows if r["run_id"] != victim.name}
    assert len(others) == 2 and all(others.values())

    lines = []
    second = ablation.run_sweep(cfg, sweep_dir, progress=lines.append)
    assert not second.failed, second.failed
    assert any("3 runs, 2 already finished, 1 to run" in line for line in lines)
    assert [line.split(": ")[-1].split(";")[0] for line in lines if line.startswith("  submitted job ")] == [victim.name]
    assert {d: folder_state(d) for d in others} == others                  # the finished folders are untouched
    job = json.loads((victim / "manifest.json").read_text())["job"]
    assert job["token"] != killed["job"]["token"] and job["pid"] != killed["job"]["pid"]
    assert _stable(second.rows) == _stable(pool_sweep.rows)                # resumed to the pool's results
    assert _stable(ablation.load_results(sweep_dir)[0]) == _stable(pool_sweep.rows)
