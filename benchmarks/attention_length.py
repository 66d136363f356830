"""Where the kit's short attention stops paying: one layer's attention, forward and backward, by the kit's
``cpu_kernels.short_attention_forward`` (two batched matmuls and the compiled masked softmax) against
transformers' SDPA function (PyTorch's CPU flash-attention kernel), at a range of sequence lengths, in both
precisions, on the attention shapes of the two embedded models. Each pair runs interleaved in one process
(short, SDPA, SDPA, short, ...), so that a shared machine's load hits both alike; it prints the medians and their
ratio (SDPA / kit: above 1 means the short attention, as the kit runs it, is faster) and the memory the short
attention keeps for the backward (its probabilities, one layer). The short attention runs twice: over the
whole causal square (``square``) and in causal blocks of queries (``blocks``: ``cpu_kernels.CAUSAL_BLOCK``, or
blocks of 64 where the kit keeps them off), with their ratio (``square/blocks``).

    .venv/bin/python benchmarks/attention_length.py                       # 192 to 1024 tokens, batch 4
    .venv/bin/python benchmarks/attention_length.py --lengths 256 512 --reps 15 --dtypes bfloat16

``cpu_kernels.short_length`` (the longest sequence the short attention takes, by precision) is set from this
benchmark's crossovers; see docs/training.md. The lengths are those of whole padded batches (causal mask, right padding
on one sequence), the trainer's case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

SHAPES = {  # heads, key/value heads, head size (SmolLM2-135M-Instruct, Gemma-3-270M)
    "smollm2": (9, 3, 64),
    "gemma3": (4, 1, 256),
}


def case(length: int, dtype: torch.dtype, heads: int, kv_heads: int, d: int, b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, length, d, generator=g).to(dtype).requires_grad_(True)
               for h in (heads, kv_heads, kv_heads))
    mask = torch.ones(length, length, dtype=torch.bool).tril()[None, None].expand(b, 1, length, length).clone()
    mask[-1, :, :, length - length // 4:] = False  # the last sequence a quarter shorter: right padding
    grad = torch.randn(b, length, heads, d, generator=g).to(dtype)
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, training=True)
    return module, q, k, v, mask, grad


def blocks(cpu_kernels, dtype: torch.dtype, block: int):
    """The kit's short attention with causal blocks of ``block`` queries in ``dtype`` (0: the whole square)."""
    def fn(*args, **kwargs):
        with cpu_kernels.causal_blocks(dtype, block):
            return cpu_kernels.short_attention_forward(*args, **kwargs)
    return fn


def one(fn, module, q, k, v, mask, grad, scaling) -> float:
    start = time.perf_counter()
    out, _ = fn(module, q, k, v, mask, scaling=scaling)
    out.backward(grad)
    seconds = time.perf_counter() - start
    q.grad = k.grad = v.grad = None
    return seconds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[192, 256, 320, 384, 448, 512, 640, 768, 1024])
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=["bfloat16", "float32"])
    p.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--reps", type=int, default=9, help="timed passes of each, interleaved (median)")
    a = p.parse_args(argv)

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from instructlab import cpu_fused, cpu_kernels, models

    print(f"[instructlab] {models.device_settings().description}")
    print(f"the kit's limits: {cpu_kernels.short_length(torch.bfloat16)} tokens in bf16, "
          f"{cpu_kernels.short_length(torch.float32)} in fp32; "
          f"compiled masked softmax: "
          f"{'yes' if cpu_fused.library() is not None else 'no (PyTorch operations)'}; "
          f"batch {a.batch}, {torch.get_num_threads()} threads")
    limits = cpu_kernels.SHORT_LENGTH, cpu_kernels.SHORT_LENGTH_BF16, cpu_kernels.SHORT_LENGTH_BLOCKS
    # the short path at every length
    cpu_kernels.SHORT_LENGTH = cpu_kernels.SHORT_LENGTH_BF16 = cpu_kernels.SHORT_LENGTH_BLOCKS = max(a.lengths)
    try:
        for model in a.models:
            heads, kv_heads, d = SHAPES[model]
            for dtype_name in a.dtypes:
                dtype = getattr(torch, dtype_name)
                print(f"\n{model} ({heads} heads, {kv_heads} key/value, size {d}), {dtype_name}: "
                      f"ms per layer, forward + backward")
                kit_block = cpu_kernels.causal_block(dtype)
                block = kit_block or cpu_kernels.CAUSAL_BLOCK_TRIED
                print(f"causal blocks of {block} queries ({'the kit' if kit_block else 'tried: the kit keeps them off'}"
                      f" in {dtype_name}), from {2 * block + 1} tokens")
                print(f"{'tokens':>6} {'square':>8} {'blocks':>8} {'SDPA':>8} {'square/blocks':>13} "
                      f"{'SDPA/kit':>9} {'probs MB':>9}")
                for length in a.lengths:
                    module, q, k, v, mask, grad = case(length, dtype, heads, kv_heads, d, a.batch)
                    fns = {"square": blocks(cpu_kernels, dtype, 0), "blocks": blocks(cpu_kernels, dtype, block),
                           "sdpa": sdpa_attention_forward}
                    times: dict[str, list[float]] = {name: [] for name in fns}
                    with cpu_fused.fused_softmax(True):
                        for name in fns:  # warm-up, untimed
                            one(fns[name], module, q, k, v, mask, grad, d ** -0.5)
                        for i in range(a.reps):
                            for name in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
                                times[name].append(one(fns[name], module, q, k, v, mask, grad, d ** -0.5))
                    square, blocked, sdpa = (statistics.median(times[n]) * 1e3 for n in fns)
                    kit = blocked if kit_block else square
                    probs_mb = a.batch * heads * length * length * torch.finfo(dtype).bits / 8 / 2 ** 20
                    print(f"{length:>6} {square:8.2f} {blocked:8.2f} {sdpa:8.2f} {square / blocked:12.2f}x "
                          f"{sdpa / kit:8.2f}x {probs_mb:9.1f}", flush=True)
    finally:
        cpu_kernels.SHORT_LENGTH, cpu_kernels.SHORT_LENGTH_BF16, cpu_kernels.SHORT_LENGTH_BLOCKS = limits


if __name__ == "__main__":
    main()
