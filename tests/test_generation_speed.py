"""benchmarks/generation_speed.py on the tiny random model: it runs both paths, compares their answers, and
splits the batched run's time between the model's forward and the generate loop's own work."""

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "generation_speed.py"
_spec = importlib.util.spec_from_file_location("generation_speed", _PATH)
generation_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generation_speed)


def test_it_measures_batched_against_one_by_one_and_the_forwards_share(tmp_path, capsys):
    out = tmp_path / "speed.json"
    result = generation_speed.main(["--model", "tiny-random", "--n", "4", "--max-new-tokens", "8",
                                    "--batch-size", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["prompts"] == 4 and result["identical_answers"] == 4  # batching changes no answer
    assert result["batched_tokens_per_s"] > 0 and result["one_by_one_tokens_per_s"] > 0
    # the forward's time is counted inside the batched runs only, and is part of them
    assert 0 < result["batched_forward_share"] < 1
    assert "inside the model's forward" in capsys.readouterr().out


@pytest.mark.real_model
def test_timing_the_forward_does_not_change_the_answers_it_times(tmp_path):
    # generate chooses its arguments from forward's signature: a timer wrapped around forward instead of
    # hooks dropped some of them and left 7 of 32 SmolLM2 answers the same as one-by-one (3 of 4 here).
    result = generation_speed.main(["--n", "4", "--max-new-tokens", "16", "--batch-size", "2", "--without-amx",
                                    "--without-speedups"])
    assert result["identical_answers"] == 4 and 0.5 < result["batched_forward_share"] < 1
    # the kit's speed-ups change no answer (where the path is bf16; on an fp32 path these runs are not made)
    if result["path"] == "bfloat16":
        assert result["without_amx_identical_answers"] == result["without_speedups_identical_answers"] == 4
        assert result["amx_gain"] > 0 and result["speedups_gain"] > 0
