"""Every notebook runs headless through papermill in the smoke profile (tiny-random model)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks found under notebooks/"


@pytest.mark.notebook
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_parameters_cell(nb_path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb_path.name}: expected exactly one cell tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    assert "profile" in src and "run_dir" in src, f"{nb_path.name}: parameters need `profile` and `run_dir`"
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), \
        f"{nb_path.name}: commit notebooks without outputs"


@pytest.mark.notebook
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(nb_path, tmp_path):
    import papermill as pm

    run_dir = tmp_path / "run"
    out = tmp_path / nb_path.name
    pm.execute_notebook(str(nb_path), str(out), parameters={"profile": "smoke", "run_dir": str(run_dir)},
                        kernel_name="python3", progress_bar=False, cwd=str(nb_path.parent))
    assert run_dir.exists() and any(run_dir.iterdir()), f"{nb_path.name} wrote nothing into its run folder"
