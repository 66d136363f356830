"""The lessons: jupytext text notebooks (``notebooks/NN_name.py``), each run headless through papermill
in the smoke profile (tiny-random model)."""

import re
import subprocess
from pathlib import Path

import pytest

from instructlab import metrics as M
from instructlab import pipeline

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))
RUN_DIRS: dict[str, Path] = {}   # notebook prefix -> its run folder, for the notebooks that read it


def test_there_are_notebooks_and_no_generators():
    assert [p.name[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05"]
    assert not (REPO / "notebooks" / "_src").exists(), "the text notebooks are the source: no generator scripts"
    tracked = subprocess.run(["git", "ls-files", "notebooks"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode == 0:      # a git checkout: no .ipynb is committed next to its text twin
        assert not [f for f in tracked.stdout.split() if f.endswith(".ipynb")]


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_source_is_canonical_jupytext(nb_path):
    """Reading and writing the text notebook gives the same text, so saving it from JupyterLab changes
    only the cells that were edited (a one-cell change is a one-cell diff)."""
    import jupytext

    text = nb_path.read_text(encoding="utf-8")
    assert text.startswith("# ---\n# jupyter:") and "format_name: percent" in text
    assert jupytext.writes(jupytext.reads(text, fmt="py:percent"), fmt="py:percent") == text


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_edit_of_one_cell_is_a_one_cell_diff(nb_path, tmp_path):
    """What JupyterLab does on save (notebook -> jupytext text): an edited cell changes only its lines."""
    import difflib

    import jupytext

    text = nb_path.read_text(encoding="utf-8")
    nb = jupytext.reads(text, fmt="py:percent")
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[-1].source += "\nprint('edited')"
    edited = jupytext.writes(nb, fmt="py:percent")
    changed = [line for line in difflib.unified_diff(text.splitlines(), edited.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["+print('edited')"]


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_parameters_cell_and_no_profile_branches(nb_path):
    nb = pipeline.load_notebook(nb_path)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb_path.name}: expected exactly one cell tagged 'parameters'"
    assert {"profile", "run_dir"} <= set(pipeline.notebook_parameters(nb_path)), \
        f"{nb_path.name}: parameters need `profile` and `run_dir`"
    assert not re.search(r"profile\s*[!=]=", nb_path.read_text(encoding="utf-8")), \
        f"{nb_path.name}: read the profile's settings (instructlab/profiles.py) instead of branching on its name"
    assert nb.metadata["kernelspec"]["name"] == pipeline.KERNEL_NAME


def _smoke_params(prefix: str, tmp_path: Path) -> dict:
    """Inputs that a notebook reads from an earlier one (as `make smoke` wires them)."""
    if prefix != "05":
        return {}
    if "04" in RUN_DIRS:
        return {"ablation_dir": str(RUN_DIRS["04"])}
    from instructlab import ablation, profiles     # 05 alone: the smoke sweep through the run functions

    sweep = tmp_path / "sweep"
    ablation.run_sweep(ablation.load_sweep_config(profiles.get("smoke").sweep_path), sweep, progress=lambda s: None)
    return {"ablation_dir": str(sweep)}


@pytest.mark.notebook
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(nb_path, tmp_path):
    import json

    run_dir = tmp_path / "run"
    params = {"profile": "smoke", "run_dir": str(run_dir), **_smoke_params(nb_path.name[:2], tmp_path)}
    executed = pipeline.run_notebook(nb_path, params, run_dir)
    assert executed.exists() and executed.suffix == ".ipynb"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["notebook"] == nb_path.stem  # the lesson's finish()
    assert manifest["lesson_duration_s"] > 0 and len(manifest["outputs"]) > 1
    if nb_path.name.startswith("03"):  # the degenerate baselines are evaluated next to before / after
        assert {"baselines.csv", "baselines.json"} <= set(manifest["outputs"])
        assert set(manifest["baselines"]) == {*M.DEGENERATE_ANSWERERS, "gold reference"}
    RUN_DIRS[nb_path.name[:2]] = run_dir


def test_an_edit_saved_by_jupyterlab_survives(tmp_path):
    """Save a lesson through jupytext's contents manager (what JupyterLab's save calls): the edit lands in
    the .py source, nothing else changes, and no .ipynb appears beside it."""
    import shutil

    from jupytext import TextFileContentsManager

    src = NOTEBOOKS[2]
    shutil.copy(src, tmp_path / src.name)
    cm = TextFileContentsManager(root_dir=str(tmp_path))
    model = cm.get(src.name)                         # opened as a notebook, not as a text file
    assert model["type"] == "notebook"
    cells = model["content"]["cells"]
    markdown = next(c for c in cells if c["cell_type"] == "markdown" and c["source"].startswith("## The data"))
    markdown["source"] += "\n\nAn edit made in JupyterLab."
    cm.save(model, src.name)
    before, after = src.read_text(encoding="utf-8").splitlines(), (tmp_path / src.name).read_text().splitlines()
    added = [line for line in after if line not in before]
    assert added == ["# An edit made in JupyterLab."] and len(after) == len(before) + 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


@pytest.mark.notebook
def test_reference_command_runs_04_and_05_on_a_sweep_with_a_lima_pair(tmp_path, capsys):
    """`python -m instructlab reference` (what `make reference` runs) on a tiny sweep with a LIMA-style pair:
    notebook 04 runs the sweep into its own folder, 05 draws the pair, the paired effects and the size-curve
    table into the report, and the published folder holds the sweep's tables and per-prompt outcomes."""
    import json

    import yaml

    from instructlab import ablation
    from instructlab.__main__ import main

    config = yaml.safe_load((REPO / "configs" / "sweep_smoke.yaml").read_text())
    config.update(name="ref-smoke", sizes=[4, 8], seeds=[0], pool_size=60, comparisons={
        "size": 4, "variants": [{"train_on": "all"}],
        "pairs": [{"name": "LIMA-like: 4 quality vs 8 random", "variant": {"data": "noisy", "selection": "quality"},
                   "baseline": {"data": "noisy", "size": 8}}]})
    path = tmp_path / "sweep_ref.yaml"
    path.write_text(yaml.safe_dump(config))
    out, sweep = tmp_path / "out", tmp_path / "sweep-ref"
    assert main(["reference", "--config", str(path), "--sweep-dir", str(sweep), "--out", str(out), "--quiet"]) == 0
    assert "reference sweep 'ref-smoke': 2 notebooks" in capsys.readouterr().out
    rows = json.loads((sweep / "results.json").read_text())
    assert {(r["variant"], r["size"]) for r in rows} == {
        ("untuned", 0), ("clean-random-assistant", 4), ("clean-random-assistant", 8), ("clean-random-all", 4),
        ("noisy-quality-assistant", 4), ("noisy-random-assistant", 8)}
    assert "LIMA-like: 4 quality vs 8 random" in {e["comparison"] for e in json.loads(
        (sweep / "comparisons.json").read_text())}
    report = (out / "05_result_plots" / "report.md").read_text()
    assert "LIMA-like: 4 quality vs 8 random" in report and "## Where the resolved gains stop on the size curve" in report
    assert {"lima.png", "paired_effects.png", "metric_vs_size.png", "size_curve.csv"} <= {
        p.name for p in (out / "05_result_plots").iterdir()}
    import csv

    curve = list(csv.DictReader(open(out / "04_lima_ablation" / "size_curve.csv")))
    assert curve and curve[0]["steps (larger minus smaller, 95% interval)"].startswith("4->8 ")
    assert {r["guidance row"] for r in curve} <= {g["label"] for g in ablation.SIZE_GUIDANCE.values()}
    written = pipeline.publish_chain(out, tmp_path / "docs")
    published = tmp_path / "docs" / "results" / "ref-smoke"
    assert not written["lessons"] and (published / "05_result_plots" / "05_result_plots.ipynb").exists()
    assert {"per_prompt.csv", "comparisons.md", "results.csv", "manifest.json"} <= {
        p.name for p in (published / "04_lima_ablation" / "sweep").iterdir()}
