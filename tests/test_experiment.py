"""The run functions: train_run and eval_run write their run folders and one result.json each."""

import json

import pytest

from instructlab import experiment, profiles

EVAL = "data/kestrel/eval.jsonl"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("train")
    lines = []
    run = experiment.train_run(experiment.TrainParams(profile="smoke", overrides={"max_steps": 2}), run_dir,
                               bar=False, report=lines.append)
    return run, lines


def test_train_run_writes_its_result_file(trained):
    run, lines = trained
    result = json.loads((run.run_dir / experiment.RESULT_FILE).read_text())
    assert result["kind"] == "training" and result["model"] == profiles.get("smoke").model
    assert result["metrics"]["global_step"] == 2 and result["n_train"] == len(run.records) == 8
    assert result["params"]["overrides"] == {"max_steps": 2} and (run.run_dir / "adapter" / "adapter_config.json").exists()
    assert experiment.params_match(run.run_dir, experiment.TrainParams(profile="smoke", overrides={"max_steps": 2}))
    assert not experiment.params_match(run.run_dir, experiment.TrainParams(profile="smoke"))
    assert any(line.strip().startswith("step 2/2") and "loss" in line and "eta" in line for line in lines)


def test_eval_run_before_and_after(trained, tmp_path):
    run, _ = trained
    lines = []
    params = experiment.EvalParams(profile="smoke", adapter=str(run.run_dir), n_per_category=1, max_new_tokens=4,
                                   batch_size=2)
    ev = experiment.eval_run(params, tmp_path, report=lines.append)
    result = experiment.read_result(tmp_path)
    assert set(ev.answers) == {"before", "after"} and result["side"] == "after" and result["n_prompts"] == 3
    assert result["metrics"] == result["sides"]["after"] and "terminology" in result["metrics"]
    for name in ("before_answers.jsonl", "after_metrics.json", "before_after.json"):
        assert (tmp_path / name).exists()
    assert any("batch 2/2 done" in line for line in lines)          # 3 prompts in batches of 2
    # batch-by-batch reporting gives exactly the answers of one generate_answers call
    quiet = experiment.eval_run(params, tmp_path / "quiet", report=None)
    assert quiet.answers == ev.answers


def test_bad_params_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        experiment.eval_run(experiment.EvalParams(profile="huge"), tmp_path)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        experiment.eval_run(experiment.EvalParams(profile="smoke", before=False), tmp_path)
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        experiment.train_run(experiment.TrainParams(profile="smoke", overrides={"epochz": 1}), tmp_path)
    with pytest.raises(FileNotFoundError, match="no result.json"):
        experiment.read_result(tmp_path)
