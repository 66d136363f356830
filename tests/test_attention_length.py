"""benchmarks/attention_length.py: the short attention against SDPA by length, in both precisions."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "attention_length.py"
_spec = importlib.util.spec_from_file_location("attention_length", _PATH)
attention_length = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attention_length)


def test_it_times_every_path_at_every_length_and_leaves_the_kits_settings_as_they_were(capsys, monkeypatch):
    from instructlab import cpu_kernels

    short_calls, block_calls = [], []
    real, real_blocks = cpu_kernels.short_attention_forward, cpu_kernels._CausalBlocks.apply

    def counted(module, query, *args, **kwargs):
        out = real(module, query, *args, **kwargs)
        short_calls.append((query.shape[2], cpu_kernels.causal_block(query.dtype)))
        return out

    monkeypatch.setattr(cpu_kernels, "short_attention_forward", counted)
    monkeypatch.setattr(cpu_kernels._CausalBlocks, "apply", staticmethod(lambda *a: block_calls.append(a[4][-1])
                                                                         or real_blocks(*a)))
    limits = cpu_kernels.SHORT_LENGTH, cpu_kernels.SHORT_LENGTH_BF16, cpu_kernels.SHORT_LENGTH_BLOCKS
    blocks = dict(cpu_kernels.CAUSAL_BLOCK)
    attention_length.main(["--lengths", "12", "600", "--reps", "1", "--models", "smollm2", "--batch", "1",
                           "--dtypes", "bfloat16", "float32"])
    out = capsys.readouterr().out
    assert (cpu_kernels.SHORT_LENGTH, cpu_kernels.SHORT_LENGTH_BF16, cpu_kernels.SHORT_LENGTH_BLOCKS) == limits
    assert cpu_kernels.CAUSAL_BLOCK == blocks
    # the benchmark lifts the limits so that the short path runs at 600 tokens too, in both precisions, over the
    # whole square and in blocks of 64 (in bf16 too, where the kit keeps them off): 2 dtypes x 2 lengths x
    # (square, blocks) x 2 passes; blocks only at 600 (12 tokens are one block)
    assert sorted(set(short_calls)) == [(12, 0), (12, 64), (600, 0), (600, 64)] and len(short_calls) == 16
    assert block_calls == [600] * 4
    rows = [line.split() for line in out.splitlines() if line.strip().split(" ")[0] in ("12", "600")]
    assert len(rows) == 4 and all(float(x) > 0 for r in rows for x in r[1:4])
    assert all(r[4].endswith("x") and r[5].endswith("x") for r in rows)
    assert "bfloat16" in out and "float32" in out and f"{limits[1]} tokens in bf16" in out
    assert "tried: the kit keeps them off" in out and "(the kit in float32)" in out
