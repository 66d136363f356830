"""benchmarks/attention_length.py: the short attention against SDPA by length, in both precisions."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "attention_length.py"
_spec = importlib.util.spec_from_file_location("attention_length", _PATH)
attention_length = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attention_length)


def test_it_times_both_paths_at_every_length_and_leaves_the_kits_limits_as_they_were(capsys, monkeypatch):
    from instructlab import cpu_kernels

    short_calls = []
    real = cpu_kernels.short_attention_forward

    def counted(module, query, *args, **kwargs):
        out = real(module, query, *args, **kwargs)
        short_calls.append(query.shape[2])
        return out

    monkeypatch.setattr(cpu_kernels, "short_attention_forward", counted)
    limits = cpu_kernels.SHORT_LENGTH, cpu_kernels.SHORT_LENGTH_BF16
    attention_length.main(["--lengths", "12", "600", "--reps", "1", "--models", "smollm2", "--batch", "1",
                           "--dtypes", "bfloat16", "float32"])
    out = capsys.readouterr().out
    assert (cpu_kernels.SHORT_LENGTH, cpu_kernels.SHORT_LENGTH_BF16) == limits
    # the benchmark lifts the limit so that the short path runs at 600 tokens too, in both precisions
    assert sorted(set(short_calls)) == [12, 600] and len(short_calls) == 2 * 2 * 2  # 2 dtypes x 2 lengths x 2 passes
    rows = [line.split() for line in out.splitlines() if line.strip().split(" ")[0] in ("12", "600")]
    assert len(rows) == 4 and all(float(r[1]) > 0 and float(r[2]) > 0 and r[3].endswith("x") for r in rows)
    assert "bfloat16" in out and "float32" in out and f"{limits[1]} tokens in bf16" in out
