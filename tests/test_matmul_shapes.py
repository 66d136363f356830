"""benchmarks/matmul_shapes.py: a training step's matmul shapes alone, against the 1024^3 rate."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "matmul_shapes.py"
_spec = importlib.util.spec_from_file_location("matmul_shapes", _PATH)
matmul_shapes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(matmul_shapes)


def test_every_product_is_timed_every_way_and_its_share_is_against_its_own_rounds_rate(capsys, monkeypatch):
    from instructlab import models

    rates = iter([50.0, 200.0])
    monkeypatch.setattr(models, "matmul_gflops", lambda dtype: next(rates))
    matmul_shapes.main(["--models", "smollm2", "--dtypes", "float32", "--rows", "8", "--head-rows", "4",
                        "--reps", "1", "--rounds", "2"])
    out = capsys.readouterr().out
    names = [name for name, *_ in matmul_shapes.products("smollm2")]
    assert names == ["q, o", "k, v", "gate, up", "gate+up", "down", "head"]
    assert "round 1: 1024^3 50" in out and "round 2: 1024^3 200" in out
    timed = {}  # label -> per round {way: GFLOP/s}
    for line in out.splitlines():
        m = re.match(r"\s+(\S.*\d+x\d+->\d+)\s+(linear .*)$", line)
        if m:
            timed.setdefault(m.group(1), []).append(dict(zip(m.group(2).split()[::2],
                                                             map(float, m.group(2).split()[1::2]))))
    assert list(timed) == ["q, o 8x576->576", "k, v 8x576->192", "gate, up 8x576->1536", "gate+up 8x576->3072",
                           "down 8x1536->576", "head 4x576->49152"]
    assert all(len(rounds) == 2 and all(list(r) == list(matmul_shapes.WAYS) and min(r.values()) > 0 for r in rounds)
               for rounds in timed.values())
    # the summary: each way's median over the rounds of GFLOP/s over that round's own 1024^3 rate
    summary = out.split("median share")[1].splitlines()[2:]
    for label, line in zip(timed, summary):
        shares = [float(s.rstrip("%")) for s in line[len("  ") + 24:].split()]
        expected = [(timed[label][0][w] / 50 + timed[label][1][w] / 200) / 2 * 100 for w in matmul_shapes.WAYS]
        # within the printed roundings: the share to 1 point (0.5), each GFLOP/s to 0.1 (0.05 of 50 is 0.1 point,
        # of 200 0.025; the median of two rounds halves their sum)
        assert shares == pytest.approx(expected, abs=0.5 + (0.1 + 0.025) / 2 + 1e-6), label


def test_gemma3_has_its_own_query_and_output_shapes():
    products = {name: (k, n) for name, k, n, _ in matmul_shapes.products("gemma3")}
    assert products["q"] == (640, 1024) and products["o"] == (1024, 640) and products["head"] == (640, 262144)


@pytest.mark.real_model
@pytest.mark.parametrize("name, key", [("smollm2-135m-instruct", "smollm2"), ("gemma-3-270m", "gemma3")])
def test_the_shapes_are_the_embedded_models(name, key):
    from instructlab import models

    cfg = json.loads((Path(models.resolve_model_path(name)) / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    size = cfg.get("head_dim") or cfg["hidden_size"] // heads
    assert matmul_shapes.SHAPES[key] == (cfg["hidden_size"], cfg["intermediate_size"], heads * size,
                                         kv_heads * size, cfg["vocab_size"])
