"""Recipe search on the dev split (instructlab.recipes): config checks and a smoke search that resumes."""

import json

import pytest

from instructlab import recipes


def _write(tmp_path, text):
    path = tmp_path / "recipes.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, needle", [
    ("profile: smoke\nrecipes: []\n", "no recipes"),
    ("profile: smoke\nwat: 1\nrecipes: [{name: a}]\n", "unknown keys ['wat']"),
    ("profile: smoke\ndev_path: data/kestrel/eval.jsonl\nrecipes: [{name: a}]\n", "is the eval set"),
    ("profile: smoke\nrecipes: [{name: a, train: {lerning_rate: 1}}]\n", "unknown TrainConfig fields ['lerning_rate']"),
    ("profile: smoke\nrecipes: [{name: a}, {name: a}]\n", "used twice"),
    ("profile: smoke\nrecipes: [{train: {}}]\n", "recipes[0] needs a name"),
    ("profile: smoke\neval_params: {n_per_categry: 3}\nrecipes: [{name: a}]\n", "eval_params: unknown fields"),
    ("profile: tiny\nrecipes: [{name: a}]\n", "profile"),
])
def test_bad_configs_name_the_file_and_the_key(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        recipes.load_config(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_cli_reports_a_bad_config_and_an_unknown_recipe(tmp_path, capsys):
    assert recipes.main([str(_write(tmp_path, "profile: smoke\nrecipes: []\n"))]) == 2
    assert "no recipes" in capsys.readouterr().err
    path = _write(tmp_path, f"profile: smoke\nrun_root: {tmp_path / 'r'}\nrecipes: [{{name: a}}]\n")
    assert recipes.main([str(path), "--only", "b"]) == 2
    assert "no such recipe" in capsys.readouterr().err


def test_smoke_search_trains_evaluates_on_dev_and_resumes(tmp_path, monkeypatch):
    path = _write(tmp_path, f"""
profile: smoke
run_root: {tmp_path / 'runs'}
recipes:
  - {{name: base, why: the profile}}
  - {{name: more-lookalikes, train: {{category_shares: {{lookalike: 0.5}}, n_examples: 8}}}}
""")
    config = recipes.load_config(path)
    rows = recipes.run_search(config, report=lambda line: None)
    assert [r["recipe"] for r in rows] == ["untuned", "base", "more-lookalikes"]
    for row in rows:
        for key in recipes.METRICS:
            assert row[f"{key}_n"] > 0 and row[f"{key}_ci"][0] <= row[key] <= row[f"{key}_ci"][1]
    # every run was evaluated on the dev split, never the eval set
    for name in ("base", "more-lookalikes"):
        result = json.loads((config.run_root / name / "dev-eval" / "result.json").read_text())
        assert result["eval_path"].endswith("dev.jsonl") and result["adapter"].endswith(f"{name}/train")
        train = json.loads((config.run_root / name / "train" / "result.json").read_text())
        assert train["params"]["eval_path"].endswith("dev.jsonl")
    shares = json.loads((config.run_root / "more-lookalikes" / "train" / "result.json").read_text())
    assert shares["config"]["category_shares"] == {"lookalike": 0.5}
    table = (config.run_root / "recipes.md").read_text()
    assert "| more-lookalikes |" in table and "false rejections" in table and "resolved" in table
    # a second call finds every run finished and keeps them
    stamps = {p: p.stat().st_mtime_ns for p in config.run_root.glob("*/*/result.json")}
    said = []
    recipes.run_search(config, report=said.append)
    assert said == [] and stamps == {p: p.stat().st_mtime_ns for p in config.run_root.glob("*/*/result.json")}
    # answers generated in another precision are not kept: every evaluation runs again, no training does
    generated = json.loads((config.run_root / "untuned" / "result.json").read_text())["generation_dtype"]
    with monkeypatch.context() as env:
        env.setenv("INSTRUCTLAB_GENERATION_DTYPE", "bfloat16" if generated == "float32" else "float32")
        said = []
        recipes.run_search(config, only=["base"], report=said.append)
    assert said == ["untuned model on the dev split", "recipe base: evaluating on data/kestrel/dev.jsonl"]
    said = []
    recipes.run_search(config, only=["base"], report=said.append)  # and back in this machine's precision
    assert said == ["untuned model on the dev split", "recipe base: evaluating on data/kestrel/dev.jsonl"]
    # publishing copies the table and each run's answers, never the adapters
    published = recipes.publish(config, tmp_path / "docs")
    names = {p.relative_to(tmp_path / "docs").as_posix() for p in published}
    assert {"recipes.md", "recipes.csv", "untuned/before_answers.jsonl", "base/dev-eval/after_answers.jsonl",
            "base/train/result.json"} <= names
    assert not any("adapter" in n or "checkpoint" in n for n in names)
    # a changed starting point (as when the profile itself changes) is a different run: trained again
    import dataclasses
    changed = dataclasses.replace(config, base_train={"learning_rate": 5e-4})
    said = []
    recipes.run_search(changed, only=["base"], report=said.append)
    assert said == ["recipe base: training ({'learning_rate': 0.0005})", "recipe base: evaluating on data/kestrel/dev.jsonl"]
