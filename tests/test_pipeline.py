"""Pipeline: parameter validation before execution, run folders and manifests, failing notebooks."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from instructlab import pipeline

PARAMS = 'profile = "quick"  # smoke | quick | full\nrun_dir = ""\nn_examples = 100\nlr = 2e-4\nflag = True\nadapter = None\n'


def make_notebook(path: Path, body: str, params: str = PARAMS) -> Path:
    """A small notebook with a tagged parameters cell followed by ``body``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# test"),
                nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


WRITE_OUTPUT = ("import json, pathlib\n"
                "p = pathlib.Path(run_dir); p.mkdir(parents=True, exist_ok=True)\n"
                "(p / 'out.json').write_text(json.dumps({'n': n_examples, 'lr': lr, 'flag': flag, 'profile': profile}))")


def test_notebook_parameters_infers_types(tmp_path):
    params = pipeline.notebook_parameters(make_notebook(tmp_path / "a.ipynb", "pass"))
    assert {k: p.type_name for k, p in params.items()} == {
        "profile": "str", "run_dir": "str", "n_examples": "int", "lr": "float", "flag": "bool", "adapter": "any"}
    assert params["n_examples"].default == 100 and params["profile"].help == "smoke | quick | full"


def test_cli_values_are_converted_to_declared_types(tmp_path):
    nb = make_notebook(tmp_path / "a.ipynb", "pass")
    out = pipeline.validate_parameters(nb, {"n_examples": "7", "lr": "1e-3", "flag": "false",
                                            "adapter": "runs/x", "profile": "smoke"}, from_cli=True)
    assert out == {"n_examples": 7, "lr": 1e-3, "flag": False, "adapter": "runs/x", "profile": "smoke"}
    # an int is fine where a float is declared (API call)
    assert pipeline.validate_parameters(nb, {"lr": 1})["lr"] == 1.0


@pytest.mark.parametrize("params, needle", [
    ({"n_exampels": 5}, "unknown parameter 'n_exampels'"),
    ({"n_examples": "many"}, "parameter 'n_examples'"),
    ({"flag": "maybe"}, "parameter 'flag'"),
    ({"profile": "huge"}, "expected one of"),
])
def test_bad_parameters_fail_listing_valid_ones(tmp_path, params, needle):
    nb = make_notebook(tmp_path / "a.ipynb", "pass")
    with pytest.raises(pipeline.ParameterError) as err:
        pipeline.validate_parameters(nb, params, from_cli=True)
    msg = str(err.value)
    assert needle in msg
    assert "n_examples = 100  (int)" in msg and "profile = 'quick'  (str)" in msg  # the valid list


def test_wrong_python_type_fails(tmp_path):
    nb = make_notebook(tmp_path / "a.ipynb", "pass")
    with pytest.raises(pipeline.ParameterError, match="expected int"):
        pipeline.validate_parameters(nb, {"n_examples": "5"})   # API callers pass real types
    with pytest.raises(pipeline.ParameterError, match="expected int"):
        pipeline.validate_parameters(nb, {"n_examples": True})


def test_run_notebook_writes_executed_copy_and_manifest(tmp_path):
    nb = make_notebook(tmp_path / "nb" / "07_demo.ipynb", WRITE_OUTPUT)
    run_dir = tmp_path / "run"
    executed = pipeline.run_notebook(nb, {"n_examples": 3, "profile": "smoke"}, run_dir)
    assert executed == run_dir.resolve() / "07_demo.ipynb" and executed.exists()
    assert json.loads((run_dir / "out.json").read_text()) == {"n": 3, "lr": 2e-4, "flag": True, "profile": "smoke"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["duration_s"] > 0
    assert manifest["notebook_parameters"] == {"n_examples": 3, "profile": "smoke", "run_dir": str(run_dir.resolve())}
    assert pipeline.run_succeeded(run_dir)


def test_failing_notebook_leaves_executed_copy_with_error(tmp_path):
    nb = make_notebook(tmp_path / "08_broken.ipynb", "raise RuntimeError('boom: data missing')")
    run_dir = tmp_path / "run"
    with pytest.raises(pipeline.NotebookFailedError) as err:
        pipeline.run_notebook(nb, {}, run_dir)
    assert "08_broken.ipynb" in str(err.value) and "boom: data missing" in str(err.value)
    executed = nbformat.read(str(err.value.executed), as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["evalue"] == "boom: data missing"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "boom" in manifest["error"]
    assert not pipeline.run_succeeded(run_dir)


def _cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "instructlab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_cli_rejects_unknown_parameter_fast(tmp_path):
    nb = make_notebook(tmp_path / "a.ipynb", "import time; time.sleep(60)")
    start = time.perf_counter()
    proc = _cli("run", str(nb), "-p", "n_exampels", "5", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr
    assert "unknown parameter 'n_exampels'" in proc.stderr and "n_examples = 100  (int)" in proc.stderr
    assert time.perf_counter() - start < 20   # interpreter start + papermill import; no kernel ran
    assert not (tmp_path / "r").exists()


def test_cli_run_failing_notebook_exits_nonzero_naming_it(tmp_path):
    nb = make_notebook(tmp_path / "09_fails.ipynb", "1/0")
    proc = _cli("run", str(nb), "-p", "n_examples", "5", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 1
    assert "09_fails.ipynb failed" in proc.stderr and "ZeroDivisionError" in proc.stderr
    assert (tmp_path / "r" / "09_fails.ipynb").exists()


def test_cli_run_succeeds_with_relative_paths(tmp_path):
    make_notebook(tmp_path / "nb" / "a.ipynb", WRITE_OUTPUT)
    proc = _cli("run", "nb/a.ipynb", "-p", "n_examples", "4", "--run-dir", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r" / "out.json").read_text())["n"] == 4


def test_chain_passes_run_folders_and_stops_at_failure(tmp_path):
    nbdir = tmp_path / "nbs"
    make_notebook(nbdir / "02_train.ipynb", WRITE_OUTPUT)
    make_notebook(nbdir / "03_eval.ipynb", "import pathlib; pathlib.Path(run_dir).mkdir(exist_ok=True)\n"
                  "(pathlib.Path(run_dir) / 'adapter.txt').write_text(adapter)")
    make_notebook(nbdir / "04_broken.ipynb", "raise ValueError('stop here')")
    make_notebook(nbdir / "05_never.ipynb", "pass")
    steps = pipeline.run_chain("smoke", tmp_path / "out", notebooks=sorted(nbdir.glob("*.ipynb")),
                               progress=lambda s: None)
    assert [s.status for s in steps] == ["succeeded", "succeeded", "failed"]
    assert (tmp_path / "out" / "03_eval" / "adapter.txt").read_text() == str((tmp_path / "out" / "02_train").resolve())
    assert "04_broken.ipynb" in steps[-1].error
    chain = json.loads((tmp_path / "out" / "chain.json").read_text())
    assert chain["status"] == "failed" and len(chain["steps"]) == 3


def test_publish_copies_lessons_and_small_results_of_a_whole_chain_only(tmp_path):
    nbdir = tmp_path / "nbs"
    make_notebook(nbdir / "02_train.ipynb", "import pathlib, json; d = pathlib.Path(run_dir); d.mkdir(exist_ok=True)\n"
                  "(d / 'result.json').write_text(json.dumps({'n': n_examples}))\n"
                  "(d / 'adapter').mkdir(exist_ok=True); (d / 'adapter' / 'w.bin').write_text('x')\n"
                  "(d / 'big.csv').write_text('x' * 2_000_001)\n"
                  "(d / 'sweep' / 'runs').mkdir(parents=True, exist_ok=True); (d / 'sweep' / 'comparisons.csv').write_text('c')\n"
                  "(d / 'sweep' / 'runs' / 'r.json').write_text('{}')\nprint('trained')")
    make_notebook(nbdir / "03_eval.ipynb", "import pathlib; d = pathlib.Path(run_dir); d.mkdir(exist_ok=True)\n"
                  "(d / 'after_answers.jsonl').write_text('{}\\n')")
    steps = pipeline.run_chain("smoke", tmp_path / "out", notebooks=sorted(nbdir.glob("*.ipynb")),
                               progress=lambda s: None)
    assert [s.status for s in steps] == ["succeeded", "succeeded"]
    docs = tmp_path / "docs"
    stale = docs / "results" / "smoke" / "02_train" / "old.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    written = pipeline.publish_chain(tmp_path / "out", docs)
    assert sorted(p.name for p in written["lessons"]) == ["02_train.ipynb", "03_eval.ipynb"]
    lesson = json.loads((docs / "lessons" / "02_train.ipynb").read_text())
    assert any("trained" in "".join(o.get("text", "")) for c in lesson["cells"] for o in c.get("outputs", []))
    res = docs / "results" / "smoke"
    assert sorted(p.name for p in (res / "02_train").iterdir()) == ["result.json", "sweep"]   # no adapter, no big file
    assert sorted(p.name for p in (res / "02_train" / "sweep").iterdir()) == ["comparisons.csv"]  # not its runs
    assert (res / "03_eval" / "after_answers.jsonl").exists() and (res / "chain.json").exists()
    assert not stale.exists()                                                           # one folder, one run
    # a failed chain is never published, and the CLI says why
    make_notebook(nbdir / "04_broken.ipynb", "raise ValueError('stop here')")
    pipeline.run_chain("smoke", tmp_path / "out2", notebooks=sorted(nbdir.glob("*.ipynb")), progress=lambda s: None)
    with pytest.raises(ValueError, match="04_broken.ipynb"):
        pipeline.publish_chain(tmp_path / "out2", docs)
    proc = _cli("publish", str(tmp_path / "out2"), "--docs", str(docs), cwd=tmp_path)
    assert proc.returncode == 2 and "only a whole chain is published" in proc.stderr
    proc = _cli("publish", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert proc.returncode == 2 and "chain.json" in proc.stderr


def test_named_chain_takes_parameters_and_publishes_beside_its_results(tmp_path):
    """The reference sweep's chain: per-notebook parameters, a name, a sweep folder outside the run folder
    (found through the manifest) and its executed notebooks kept beside their results, not in docs/lessons."""
    sweep = tmp_path / "elsewhere" / "sweep-reference"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "results.csv").write_text("r")
    (sweep / "runs" / "r.json").write_text("{}")
    (sweep / "manifest.json").write_text(json.dumps({"sessions": [{"duration_s": 1.0}]}))
    nbdir = tmp_path / "nbs"
    make_notebook(nbdir / "04_sweep.ipynb", "import pathlib; from instructlab import runs\n"
                  "d = pathlib.Path(run_dir); d.mkdir(exist_ok=True); (d / 'table.csv').write_text(str(n_examples))\n"
                  "runs.write_manifest(d, sweep_dir=adapter)")
    make_notebook(nbdir / "05_plots.ipynb", "import pathlib; d = pathlib.Path(run_dir); d.mkdir(exist_ok=True)\n"
                  "(d / 'report.md').write_text('# r')")
    steps = pipeline.run_chain("smoke", tmp_path / "out", notebooks=sorted(nbdir.glob("*.ipynb")),
                               parameters={"04": {"n_examples": 7, "adapter": str(sweep)}}, name="reference",
                               progress=lambda s: None)
    assert [s.status for s in steps] == ["succeeded", "succeeded"]
    chain = json.loads((tmp_path / "out" / "chain.json").read_text())
    assert chain["name"] == "reference" and chain["profile"] == "smoke"
    assert (tmp_path / "out" / "04_sweep" / "table.csv").read_text() == "7"           # the parameter arrived
    docs = tmp_path / "docs"
    written = pipeline.publish_chain(tmp_path / "out", docs)
    res = docs / "results" / "reference"
    assert written["lessons"] == [] and not (docs / "lessons").exists()
    assert sorted(p.name for p in (res / "04_sweep").iterdir()) == ["04_sweep.ipynb", "sweep", "table.csv"]
    assert sorted(p.name for p in (res / "04_sweep" / "sweep").iterdir()) == ["manifest.json", "results.csv"]
    assert (res / "05_plots" / "report.md").exists() and (res / "05_plots" / "05_plots.ipynb").exists()
    chain["name"] = "quick"                  # a profile's name would replace the demo's published results
    (tmp_path / "out" / "chain.json").write_text(json.dumps(chain))
    with pytest.raises(ValueError, match="cannot be called 'quick'"):
        pipeline.publish_chain(tmp_path / "out", docs)


def test_parameters_papermill_cannot_parse_are_still_found(tmp_path):
    # papermill's line parser skips a line with a second "=" (here inside the comment)
    nb = make_notebook(tmp_path / "a.ipynb", "pass", params='n_examples = 0   # 0 = all\nprofile = "quick"\nrun_dir = ""\n')
    params = pipeline.notebook_parameters(nb)
    assert list(params) == ["n_examples", "profile", "run_dir"]
    assert params["n_examples"].type_name == "int" and params["n_examples"].help == "0 = all"
    assert pipeline.validate_parameters(nb, {"n_examples": "12"}, from_cli=True) == {"n_examples": 12}


TEXT_NOTEBOOK = '''# %% [markdown]
# # A text notebook

# %% tags=["parameters"]
n_examples = 2
profile = "quick"
run_dir = ""

# %% [markdown]
# ## Step two

# %%
for i in range(n_examples):
    print(f"hello {i}")
'''


def test_text_notebook_runs_and_streams_its_cells(tmp_path, capsys):
    nb = tmp_path / "07_text.py"
    nb.write_text(TEXT_NOTEBOOK)
    assert list(pipeline.notebook_parameters(nb)) == ["n_examples", "profile", "run_dir"]
    executed = pipeline.run_notebook(nb, {"n_examples": 3}, tmp_path / "run", log_output=True)
    assert executed == (tmp_path / "run").resolve() / "07_text.ipynb"
    out = capsys.readouterr().out
    assert "[07 cell 3/3 Step two]" in out and "    hello 2" in out     # cell 2 is papermill's injected one
    cells = nbformat.read(str(executed), as_version=4).cells
    assert "hello 2" in "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)


def test_lessons_are_found_by_number():
    assert pipeline.resolve_notebook("02").name == "02_lora_training.py"
    assert [p.suffix for p in pipeline.chain_notebooks()] == [".py"] * 6
    with pytest.raises(FileNotFoundError, match="02_lora_training.py"):
        pipeline.resolve_notebook("99")


def test_interrupted_notebook_is_recorded(tmp_path):
    nb = make_notebook(tmp_path / "10_stop.ipynb", "raise KeyboardInterrupt")
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_notebook(nb, {}, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and "Ctrl-C" in manifest["error"]


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    import signal

    nb = tmp_path / "11_slow.py"
    nb.write_text(TEXT_NOTEBOOK.replace('print(f"hello {i}")', 'print(f"hello {i}", flush=True)\n'
                                        'import time\ntime.sleep(120)'))
    proc = subprocess.Popen([sys.executable, "-m", "instructlab", "run", str(nb), "--run-dir", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # a terminal's process has SIGINT at its default; pytest started in the background
                            # (`cmd &` in a script) inherits it ignored, and so would the child without this
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    import selectors

    sel, seen, deadline = selectors.DefaultSelector(), "", time.time() + 90
    sel.register(proc.stdout, selectors.EVENT_READ)
    while "hello 0" not in seen and time.time() < deadline and proc.poll() is None:
        if sel.select(timeout=1):
            seen += proc.stdout.readline()     # the live view streams what the cell prints
    assert "hello 0" in seen, seen
    os.killpg(proc.pid, signal.SIGINT)         # what Ctrl-C in a terminal sends: the whole process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted (Ctrl-C)" in err and str(tmp_path / "r") in err and "run the command again" in err
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "interrupted"
