"""The training entry point under torchrun: 2 real processes on CPU (gloo), tiny random model.

`accelerate launch --cpu --num_processes 2` was seen to start only ONE process on this machine, so the
test does not trust the launcher: it checks that two ranks with different process ids really trained and
that only rank 0 wrote the run folder.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from instructlab import runs


def _write_data(path, n=16):
    rows = [{"task_type": "question", "messages": [
        {"role": "user", "content": f"Question {i}: what is item {i}? " + "detail " * (i % 5)},
        {"role": "assistant", "content": f"Dear colleague, item {i} is described in KB-{1000 + i}."}]}
        for i in range(n)]
    runs.write_jsonl(path, rows)
    return path


@pytest.mark.slow
def test_torchrun_two_cpu_processes_share_one_run_folder(tmp_path):
    data = _write_data(tmp_path / "train.jsonl")
    run_dir = tmp_path / "ddp-run"
    with socket.socket() as s:  # a free port (port 0 makes torchrun's static rendezvous hang)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "instructlab.train", "--profile", "smoke", "--data", str(data), "--max-steps", "3",
           "--batch-size", "2", "--n-examples", "16", "--save-steps", "2", "--run-dir", str(run_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "INSTRUCTLAB_DEVICE": "cpu"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers
        out, err = proc.communicate()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    ranks = manifest["ranks"]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    assert len({r["pid"] for r in ranks}) == 2  # two real processes, not one process counted twice
    assert all(r["global_step"] == 3 and r["tokens"] > 0 for r in ranks)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["hardware"]["world_size"] == 2 and cfg["sft_config"]["ddp_backend"] in (None, "gloo")
    # only rank 0 writes: one adapter, one checkpoint series, every log line once
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir()) == ["checkpoint-2", "checkpoint-3"]
    steps = [r["step"] for r in runs.read_jsonl(run_dir / "log_history.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]
    assert json.loads(out[out.index('{\n  "run_dir"'):])["run_dir"] == str(run_dir)  # the CLI summary
