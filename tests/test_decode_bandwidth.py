"""benchmarks/decode_bandwidth.py: a decoding step's linear layers in both precisions against a plain read."""

import importlib.util
from pathlib import Path

import torch

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "decode_bandwidth.py"
_spec = importlib.util.spec_from_file_location("decode_bandwidth", _PATH)
decode_bandwidth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decode_bandwidth)


def test_the_bf16_step_computes_the_linear_layers_it_times():
    ws = decode_bandwidth.weights(1, torch.bfloat16)
    assert [tuple(w.shape) for w in ws] == [(o, i) for i, o in decode_bandwidth.LAYER]
    calls = []
    real = torch.nn.functional.linear
    try:
        torch.nn.functional.linear = lambda x, w, b=None: calls.append((tuple(x.shape), tuple(w.shape))) or real(x, w, b)
        decode_bandwidth.linear_calls(ws, 3, packed=False)()
    finally:
        torch.nn.functional.linear = real
    assert calls == [((3, w.shape[1]), tuple(w.shape)) for w in ws]


def test_it_reports_both_precisions_and_the_read_rate(capsys):
    res = decode_bandwidth.main(["--layers", "1", "--rounds", "1", "--rows", "2"])
    from instructlab import cpu_fused

    amx = {"bf16 kit AMX"} if cpu_fused.amx_matches_plain() else set()  # the kit's AMX kernel, where it runs
    assert set(res[2]["ms"]) == {"bf16 linear", "fp32 linear", "bf16 read", "fp32 read"} | amx
    assert all(v > 0 for v in res[2]["gb_per_s"].values()) and res[2]["linear_ratio"] > 0
    assert "bf16 / fp32, the linear layers" in capsys.readouterr().out
