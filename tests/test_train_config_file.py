"""``python -m instructlab.train --config run.yaml``: TrainConfig fields from a file, flags override
it, and a run's config.json replays the run; the tracker switch (``report_to``) reaches TRL."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from instructlab import models
from instructlab.train import (DEFAULT_DATA, TRAIN_PROFILES, TrainConfig, load_config_file, resolve_args,
                               sft_config)

REPO = Path(__file__).resolve().parent.parent


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_file_sets_fields_and_flags_override_it(tmp_path):
    cfg = write(tmp_path / "run.yaml", """
profile: smoke
model: smollm2-135m-instruct
data: my/train.jsonl
learning_rate: 3.0e-4
lora_r: 8
target_modules: [q_proj, k_proj]
n_examples: null          # all data, although the smoke profile takes 8
report_to: trackio
""")
    model, config, data, eval_data = resolve_args(["--config", cfg])
    assert (model, data, eval_data) == ("smollm2-135m-instruct", "my/train.jsonl", None)
    assert config.learning_rate == 3e-4 and config.lora_r == 8 and config.target_modules == ("q_proj", "k_proj")
    assert config.n_examples is None and config.report_to == "trackio"
    assert config.max_steps == TRAIN_PROFILES["smoke"].config.max_steps  # the rest is the file's profile
    model, config, data, _ = resolve_args(["--config", cfg, "--learning-rate", "1e-3", "--model", "tiny-random",
                                           "--n-examples", "4", "--report-to", "tensorboard,trackio"])
    assert model == "tiny-random" and config.learning_rate == 1e-3 and config.n_examples == 4
    assert config.report_to == ["tensorboard", "trackio"] and config.lora_r == 8 and data == "my/train.jsonl"


def test_without_a_file_the_flags_and_profile_defaults_are_unchanged():
    model, config, data, _ = resolve_args(["--profile", "smoke", "--max-steps", "3"])
    assert model == TRAIN_PROFILES["smoke"].model and data == DEFAULT_DATA
    assert config.to_dict() == {**TRAIN_PROFILES["smoke"].config.to_dict(), "max_steps": 3}
    assert resolve_args([])[1].to_dict() == TRAIN_PROFILES["quick"].config.to_dict()


def test_a_runs_config_json_replays_the_same_config(tmp_path):
    run = TrainConfig(epochs=2, lora_r=4, n_examples=None, category_shares={"decline": 0.2},
                      target_modules=("q_proj",), report_to=["tensorboard"])
    saved = write(tmp_path / "config.json", json.dumps({  # what train_lora writes (see _write_start)
        "model_name": "tiny-random", "config": run.to_dict(), "hardware": {"device": "cpu"},
        "sft_config": {"learning_rate": run.learning_rate}}))
    model, config, _, _ = resolve_args(["--config", saved])
    assert model == "tiny-random" and config.to_dict() == run.to_dict()
    assert resolve_args(["--config", saved, "--seed", "1"])[1].seed == 1


def test_trl_style_model_key_and_bad_files_give_clear_errors(tmp_path):
    assert load_config_file(write(tmp_path / "a.yaml", "model_name_or_path: tiny-random\n")) == {"model": "tiny-random"}
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rat'\]; valid keys: .*learning_rate"):
        load_config_file(write(tmp_path / "b.yaml", "learning_rat: 1e-3\n"))
    with pytest.raises(ValueError, match="expected a mapping"):
        load_config_file(write(tmp_path / "c.yaml", "- 1\n- 2\n"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_config_file(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="batching="):  # TrainConfig's own validation still applies
        resolve_args(["--config", write(tmp_path / "d.yaml", "batching: sideways\n")])


def test_report_to_reaches_trl_and_defaults_to_none():
    hw = models.device_settings("cpu")
    assert sft_config(TrainConfig(), hw, "unused").report_to == []
    assert sft_config(TrainConfig(report_to=["tensorboard"]), hw, "unused").report_to == ["tensorboard"]
    assert sft_config(TrainConfig(report_to="trackio"), hw, "unused").report_to == ["trackio"]


@pytest.mark.slow
def test_command_line_trains_from_a_file_and_replays_the_run(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Question {i}?"},
        {"role": "assistant", "content": f"Answer {i}, kind regards."}]}) + "\n" for i in range(8)))
    cfg = write(tmp_path / "run.yaml", f"profile: smoke\ndata: {data}\nmax_steps: 2\nlora_r: 4\n")
    cmd = [sys.executable, "-m", "instructlab.train", "--config", cfg, "--run-dir", str(tmp_path / "run"),
           "--seed", "3"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["max_steps"] == 2 and saved["config"]["lora_r"] == 4 and saved["config"]["seed"] == 3
    model, config, _, _ = resolve_args(["--config", str(tmp_path / "run" / "config.json")])
    assert model == "tiny-random" and config.to_dict() == saved["config"]
