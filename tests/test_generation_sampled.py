"""benchmarks/generation_sampled.py: grouping a sampling profiler's stacks by where generation spent them."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "generation_sampled.py"
_spec = importlib.util.spec_from_file_location("generation_sampled", _PATH)
sampled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sampled)

GEN = "<module> (benchmarks/generation_sampled.py:90);generate_answers (instructlab/generate.py:160)"


def test_samples_inside_generation_are_grouped_by_operation_and_the_rest_by_file(tmp_path):
    raw = tmp_path / "gen.txt"
    raw.write_text("\n".join([
        f"{GEN};_invariant_linear (instructlab/cpu_kernels.py:764);OpOverloadPacket.__call__ "
        "(/x/site-packages/torch/_ops.py:1279) 6",
        f"{GEN};decode_attention (/x/instructlab/cpu_fused.py:556) 2",
        f"{GEN};LlamaAttention.forward (/x/site-packages/transformers/models/llama/modeling_llama.py:243) 2",
        "<module> (x.py:1);load_model (instructlab/models.py:650) 30",  # outside generation: not counted
    ]) + "\n")
    text = sampled.summarize(raw)
    assert text.splitlines()[0] == "10 samples inside generate_answers"
    assert "compiled operations (with their wrappers' Python): 80.0%" in text
    assert "60.0%  torch.ops calls: oneDNN's linear layers" in text and "20.0%  the compiled decoding attention" in text
    assert "the rest: Python and small tensor operations, by file: 20.0%" in text
    assert "20.0%  transformers/models/llama/modeling_llama.py" in text


def test_a_file_without_samples_inside_generation_is_refused_with_its_name(tmp_path):
    raw = tmp_path / "empty.txt"
    raw.write_text("<module> (x.py:1);load_model (instructlab/models.py:650) 30\n")
    with pytest.raises(SystemExit, match="empty.txt: no samples inside 'generate_answers'"):
        sampled.summarize(raw)
