"""Runs that never lose, mix or mislabel results (issue 12): run-folder refusal, resume provenance,
validated configs, errors that name the record's file and line, data files that fail with their path,
and API keys that never reach a run's files. Training runs use the tiny random model (seconds each)."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from crash import Killed, KillAtStep

from instructlab import formats, masking, runs, train
from instructlab.formats import FormatError
from instructlab.train import ResumeError, TrainConfig, TrainDataError, train_lora

TINY = "tiny-random"


def _conversations(n=12, tag="q"):
    out = []
    for i in range(n):
        out.append({"task_type": "question", "id": f"{tag}{i}", "messages": [
            {"role": "user", "content": f"Question {i} about item {i} ({tag})."},
            {"role": "assistant", "content": f"Dear colleague, item {i} is covered in KB-{1000 + i}. Kind regards,"}]})
    return out


def _cfg(**kw):
    base = dict(epochs=1, max_steps=4, batch_size=2, grad_accum=1, max_length=128, learning_rate=5e-3,
                save_steps=2, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _killed_run(run_dir, step, data=None, **cfg):
    with pytest.raises(Killed):
        train_lora(TINY, data or _conversations(), config=_cfg(**cfg), run_dir=run_dir,
                   callbacks=[KillAtStep(step)], progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run (4 steps, checkpoints at 2 and 4)."""
    return train_lora(TINY, _conversations(), config=_cfg(), run_dir=tmp_path_factory.mktemp("done") / "run",
                      progress=False)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ 1. resume never takes another run's checkpoint

def test_a_finished_runs_folder_is_refused_for_a_new_run(finished):
    before = _tree(finished.run_dir)
    with pytest.raises(runs.RunDirInUseError, match="finished training run.*resume.*overwrite"):
        train_lora(TINY, _conversations(tag="other"), config=_cfg(seed=1), run_dir=finished.run_dir, progress=False)
    assert _tree(finished.run_dir) == before  # nothing of the old run was touched


def test_resume_refuses_a_checkpoint_written_by_another_run(finished, tmp_path):
    # A new run (other seed) killed before its first save, in a folder that also holds the old run's
    # checkpoint (what reusing a folder used to leave behind): resuming must not continue the old run.
    run = tmp_path / "mixed"
    _killed_run(run, 1, seed=1)
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").glob("checkpoint-*"))
    shutil.copytree(finished.run_dir / "checkpoints" / "checkpoint-4", run / "checkpoints" / "checkpoint-4")
    with pytest.raises(ResumeError, match="checkpoint-4 was written by another run: its config_fingerprint"):
        train_lora(TINY, _conversations(), run_dir=run, resume=True, progress=False)


def test_every_checkpoint_carries_the_runs_fingerprints(finished):
    manifest = json.loads((finished.run_dir / "manifest.json").read_text())
    for ckpt in (finished.run_dir / "checkpoints").glob("checkpoint-*"):
        prov = json.loads((ckpt / train.PROVENANCE_FILE).read_text())
        assert prov["data_fingerprint"] == manifest["data_fingerprint"]
        assert prov["config_fingerprint"] == runs.fingerprint([_cfg().to_dict()]) and prov["model_name"] == TINY


# ------------------------------------------------------------------ 3. resuming with other data is refused

def test_resume_with_different_data_is_refused_and_the_manifest_keeps_the_runs_fingerprint(tmp_path):
    run = tmp_path / "run"
    _killed_run(run, 3)
    fingerprint = json.loads((run / "manifest.json").read_text())["data_fingerprint"]
    with pytest.raises(ResumeError, match="different training data"):
        train_lora(TINY, _conversations(tag="changed"), run_dir=run, resume=True, progress=False)
    assert json.loads((run / "manifest.json").read_text())["data_fingerprint"] == fingerprint


# ------------------------------------------------------------------ weak: damaged checkpoint, finished run, CLI resume

def test_a_damaged_checkpoint_is_named_and_the_previous_one_is_taken(tmp_path, capsys):
    run = tmp_path / "run"
    _killed_run(run, 4, max_steps=6)
    weights = run / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # torn by a full disk or a copy that stopped
    res = train_lora(TINY, _conversations(), run_dir=run, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "skipping checkpoint" in err and "checkpoint-4" in err and "adapter_model.safetensors" in err
    assert res.metrics["resumed_from"].endswith("checkpoint-2") and res.metrics["global_step"] == 6


def test_resuming_a_finished_run_reports_it_finished_and_trains_nothing(finished, capsys):
    before = _tree(finished.run_dir)
    res = train_lora(TINY, _conversations(), run_dir=finished.run_dir, resume=True, progress=False)
    assert res.metrics["already_finished"] and res.metrics["global_step"] == 4
    assert "finished run" in capsys.readouterr().err
    assert _tree(finished.run_dir) == before


def test_cli_resume_takes_the_run_folders_recorded_settings(tmp_path, monkeypatch):
    data = tmp_path / "data.jsonl"
    formats.save_jsonl(data, _conversations())
    run = tmp_path / "run"
    model, config = train.profile_config("smoke", n_examples=8)
    with pytest.raises(Killed):
        train_lora(model, data, config=config, run_dir=run, callbacks=[KillAtStep(2)], progress=False)
    monkeypatch.setattr(sys, "argv", ["python -m instructlab.train", "--run-dir", str(run), "--resume"])
    assert train.main(["--run-dir", str(run), "--resume"]) == 0  # no profile, model, data or config flags
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-2") and metrics["global_step"] == 4
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumes"][-1]["argv"][-1] == "--resume"


# ------------------------------------------------------------------ 2. a reused run folder is refused (CLI)

def test_train_cli_refuses_a_finished_runs_folder_and_overwrite_starts_a_true_manifest(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    first = ["--profile", "smoke", "--run-dir", str(run), "--max-steps", "2"]
    monkeypatch.setattr(sys, "argv", ["python -m instructlab.train", *first])
    assert train.main(first) == 0
    before = _tree(run)
    second = ["--profile", "smoke", "--run-dir", str(run), "--max-steps", "2", "--seed", "3"]
    monkeypatch.setattr(sys, "argv", ["python -m instructlab.train", *second])
    assert train.main(second) == 2
    assert "already holds a run" in capsys.readouterr().err and _tree(run) == before
    third = [*second, "--overwrite"]
    monkeypatch.setattr(sys, "argv", ["python -m instructlab.train", *third])
    assert train.main(third) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["argv"][1:] == third  # the command that produced the folder, not the first one
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 3


def test_train_cli_refuses_an_unfinished_runs_folder_without_resume_or_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    _killed_run(run, 1)
    assert train.main(["--profile", "smoke", "--run-dir", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_run_cli_refuses_a_non_empty_run_dir_before_any_kernel(tmp_path, monkeypatch, capsys):
    from instructlab import __main__ as cli
    from instructlab import pipeline

    started = []
    monkeypatch.setattr(pipeline, "run_notebook", lambda *a, **k: started.append(a) or Path("x.ipynb"))
    run = tmp_path / "run"
    run.mkdir()
    runs.write_manifest(run, notebook="02_lora_training", status="succeeded")
    (run / "adapter").mkdir()
    assert cli.main(["run", "02", "-p", "profile", "smoke", "--run-dir", str(run)]) == cli.EXIT_USAGE
    assert "already holds a run" in capsys.readouterr().err and not started and (run / "adapter").is_dir()
    assert cli.main(["run", "02", "-p", "profile", "smoke", "--run-dir", str(run), "--overwrite"]) == 0
    assert len(started) == 1 and not any(run.iterdir())  # cleared: the new run writes a new manifest
    stray = tmp_path / "not-a-run"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    assert cli.main(["run", "02", "--run-dir", str(stray), "--overwrite"]) == cli.EXIT_USAGE
    assert (stray / "notes.txt").read_text() == "mine"  # a folder without a manifest is never deleted


# ------------------------------------------------------------------ 4. TrainConfig validates every number

@pytest.mark.parametrize("field, value, words", [
    ("epochs", 0, "epochs=0: use a number > 0"), ("epochs", -1, "epochs"),
    ("learning_rate", 0, "learning_rate"), ("learning_rate", -1e-4, "learning_rate"),
    ("learning_rate", float("nan"), "learning_rate"), ("batch_size", 0, "batch_size=0: use an integer >= 1"),
    ("batch_size", 2.5, "batch_size"), ("lora_r", 0, "lora_r"), ("grad_accum", 0, "grad_accum"),
    ("n_examples", 0, "n_examples"), ("n_examples", -5, "n_examples"), ("lora_dropout", 1.0, "lora_dropout"),
    ("category_shares", {"decline": 0.7, "lookalike": 0.5}, "add up to 1.2"),
    ("category_shares", {"decline": -0.1}, "category_shares"), ("category_shares", ["decline"], "mapping"),
    ("target_modules", [], "target_modules"), ("max_length", 0, "max_length"), ("save_steps", 0, "save_steps"),
])
def test_train_config_rejects_values_out_of_range_naming_field_and_range(field, value, words):
    with pytest.raises(ValueError, match="TrainConfig") as err:
        TrainConfig(**{field: value})
    assert field in str(err.value) and words in str(err.value)


def test_target_modules_string_is_one_module_name():
    assert TrainConfig(target_modules="q_proj").target_modules == ("q_proj",)


def test_train_cli_exits_non_zero_for_zero_epochs(tmp_path, capsys):
    assert train.main(["--profile", "smoke", "--epochs", "0", "--run-dir", str(tmp_path / "r")]) == 2
    assert "epochs=0" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_n_examples_above_the_data_size_is_an_error():
    with pytest.raises(TrainDataError, match="n_examples=20 but the training data has only 12 records"):
        train.config_subset(_conversations(12), _cfg(n_examples=20))
    assert len(train.config_subset(_conversations(12), _cfg(n_examples=12))) == 12


# ------------------------------------------------------------------ 6. errors name the record's file and line

def test_mask_report_names_dropped_records_by_file_and_line(tmp_path):
    recs = _conversations(10)
    recs[6]["messages"][0]["content"] = "long " * 300  # its answer lies beyond max_length: dropped
    data = tmp_path / "data.jsonl"
    formats.save_jsonl(data, recs)
    train_lora(TINY, data, config=_cfg(max_steps=1, save_steps=5), run_dir=tmp_path / "run", progress=False)
    report = json.loads((tmp_path / "run" / "mask_report.json").read_text())
    assert report["dropped"] == [[f"{data}:7 (id 'q6')", "all trained tokens truncated by max_length"]]


def test_a_bad_record_passed_as_a_list_is_named_by_its_position_and_id(tmp_path):
    recs = [{"id": f"a{i}", "instruction": f"Say {i}", "output": f"Item {i} is fine, colleague."} for i in range(6)]
    recs[4]["output"] = ""
    with pytest.raises(FormatError, match=r"record 5 of the training data \(id 'a4'\).*'output': empty response"):
        train_lora(TINY, recs, config=_cfg(), run_dir=tmp_path / "run")


def test_masking_errors_name_the_source_not_the_shuffled_position():
    from instructlab import models

    tok = models.load_tokenizer(TINY)
    convs = [c["messages"] for c in _conversations(3)]
    convs[2] = [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]
    with pytest.raises(ValueError, match=r"^train.jsonl:41: .*unknown role 'robot'"):
        masking.mask_dataset(tok, convs, sources=["train.jsonl:12", "train.jsonl:3", "train.jsonl:41"])


def test_mask_report_counts_duplicates_and_whitespace_only_turns():
    from instructlab import models

    tok = models.load_tokenizer(TINY)
    convs = [c["messages"] for c in _conversations(3)]
    convs.append([dict(m) for m in convs[0]])
    convs[1] = [{"role": "system", "content": "  \n"}, *convs[1]]
    rep = masking.mask_dataset(tok, convs, sources=["a:1", "a:2", "a:3", "a:4"]).report
    assert (rep.n_duplicates, rep.duplicates, rep.n_whitespace_turns) == (1, [("a:4", "a:1")], 1)
    assert rep.to_dict()["n_duplicates"] == 1


@pytest.mark.parametrize("answer", ["a", "s", "t", "i", "n"])
def test_a_one_letter_answer_that_also_occurs_in_template_text_is_trained(answer):
    """"a" first occurs inside "<|im_start|>assistant": masking takes the occurrence a marker follows."""
    from instructlab import models

    tok = models.load_tokenizer(TINY)
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Pick a letter"},
            {"role": "assistant", "content": answer}]
    ex = masking.tokenize_with_mask(tok, msgs)
    trained = [t for t, label in zip(ex["input_ids"], ex["labels"]) if label != masking.IGNORE_INDEX]
    assert tok.decode(trained) == answer + "<|im_end|>"


# ------------------------------------------------------------------ 7. a record with two formats' keys

@pytest.mark.parametrize("record, names", [
    ({"instruction": "Hi", "output": "Hello", "conversations": [{"from": "human", "value": "x"},
                                                                 {"from": "gpt", "value": "y"}]},
     ("ShareGPT", "Alpaca")),
    ({"instruction": "Hi", "output": "Hello", "messages": [{"role": "user", "content": "x"},
                                                            {"role": "assistant", "content": "y"}]},
     ("chat", "Alpaca")),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
      "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "z"}]}, ("chat", "ShareGPT")),
])
def test_a_record_with_two_formats_keys_is_a_format_error_naming_both(record, names, tmp_path):
    with pytest.raises(FormatError) as err:
        formats.to_messages(record)
    assert all(n in str(err.value) for n in names)
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "a"},
                                             {"role": "assistant", "content": "b"}]}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(FormatError, match=f"{path}:2: .*2 formats"):
        formats.load_records(path)


# ------------------------------------------------------------------ weak: files that fail with their path

def _line(msgs=("hi", "hello"), **extra):
    return json.dumps({"messages": [{"role": "user", "content": msgs[0]},
                                    {"role": "assistant", "content": msgs[1]}], **extra}, ensure_ascii=False)


def test_a_utf8_byte_order_mark_is_not_part_of_line_one(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes("\ufeff".encode() + (_line() + "\n" + _line(("a", "b")) + "\n").encode())
    assert [r["messages"][1]["content"] for r in formats.load_records(path)] == ["hello", "b"]


def test_non_utf8_file_folder_and_empty_file_errors_name_the_path(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes((_line() + "\n").encode() + _line(("caf\xe9", "ok")).encode("latin-1") + b"\n")
    with pytest.raises(FormatError, match=f"{latin}:2: not UTF-8"):
        formats.load_records(latin)
    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    with pytest.raises(FormatError, match=f"{folder}: is a folder"):
        formats.load_records(folder)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(FormatError, match=f"{empty}: the file is empty"):
        formats.load_records(empty)
    with pytest.raises(FormatError, match=f"{empty}: the file is empty"):  # not "the training data is empty"
        train_lora(TINY, empty, config=_cfg(), run_dir=tmp_path / "run")


def test_a_json_array_line_is_reported_as_an_array(tmp_path):
    path = tmp_path / "arr.jsonl"
    path.write_text(_line() + "\n" + json.dumps([{"instruction": "a", "output": "b"}] * 2) + "\n")
    with pytest.raises(FormatError, match=f"{path}:2: the line is a JSON array of 2 item"):
        formats.load_records(path)
    conv = tmp_path / "conv.jsonl"  # a bare list of role/content turns still is a conversation
    conv.write_text(json.dumps([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) + "\n")
    assert len(formats.load_messages(conv)) == 1


def test_a_nan_extra_field_is_an_error_not_invalid_json_written_back(tmp_path):
    path = tmp_path / "nan.jsonl"
    path.write_text(_line() + "\n" + _line(score=float("nan")) + "\n")
    with pytest.raises(FormatError, match=f"{path}:2: field 'score': NaN"):
        formats.load_records(path)
    rec = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "score": math.nan}
    with pytest.raises(FormatError, match="field 'score': NaN.*conversation 1"):
        formats.save_jsonl(tmp_path / "out.jsonl", [rec])
    assert not (tmp_path / "out.jsonl").exists()


def test_loaded_records_know_their_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(_line() + "\n\n" + _line(("a", "b")) + "\n")
    recs = formats.load_records(path)
    assert recs.sources == [f"{path}:1", f"{path}:3"] and isinstance(recs, list)


# ------------------------------------------------------------------ 8. an API key pasted as a variable's name

PASTED = "sk-proj-Zq8PASTEDkeyDO-NOT-WRITE-41c9"


@pytest.mark.parametrize("param, notebook", [("teacher_api_key_env", "01"), ("judge_api_key_env", "03")])
def test_a_key_pasted_as_api_key_env_is_refused_before_a_kernel_and_never_written(param, notebook, tmp_path,
                                                                                   monkeypatch, capsys):
    from instructlab import __main__ as cli
    from instructlab import pipeline

    started = []
    monkeypatch.setattr(pipeline, "run_notebook", lambda *a, **k: started.append(a) or Path("x.ipynb"))
    run = tmp_path / "run"
    rc = cli.main(["run", notebook, "-p", param, PASTED, "--run-dir", str(run)])
    out = capsys.readouterr()
    assert rc == cli.EXIT_USAGE and not started
    assert param in out.err and "NAME of an environment variable" in out.err
    assert PASTED not in out.out + out.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PASTED.encode() not in path.read_bytes(), path
    assert pipeline.api_key_env_problems({param: "MY_TEACHER_KEY"}) == []
    assert pipeline.api_key_env_problems({param: ""}) == []


# ------------------------------------------------------------------ weak: a folder that is not a model

def test_a_folder_without_model_files_says_so(tmp_path):
    from instructlab import models

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    with pytest.raises(models.ModelNotAvailableError, match="has no model files.*config.json") as err:
        models.load_tokenizer(folder)
    assert "sentencepiece" not in str(err.value) and "readme.txt" in str(err.value)
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(models.ModelNotAvailableError, match="LoRA adapter"):
        models.load_model(tmp_path / "run")
