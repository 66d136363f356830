"""How fast a decoding step's linear layers read their weights, in bf16 and fp32, against a plain read of the
same bytes: the ceiling of batched generation's bf16 / fp32 ratio.

At batch 16 a decoding step multiplies 16 rows by every weight of the model once, so its linear layers are
bound by reading the weights (SmolLM2-135M: 270 MB in bf16, 540 in fp32), not by arithmetic. bf16 reads half the
bytes of fp32, so where both read at the same rate the linear layers' ratio is about 2x, and the step's other work
(attention, norms, Python) pulls the whole ratio below it. This benchmark times SmolLM2's decoding linear shapes,
30 layers of distinct weights (as in a real step, so that no weight is still in cache), at ``--rows`` rows:

* bf16 through the kit's generation path (oneDNN's prepacked linear, as ``cpu_kernels.batch_invariant`` runs it
  where it gives ``F.linear``'s bits; else ``F.linear``), and fp32 through ``F.linear`` (the fp32 path's);
* where ``cpu_fused.amx_matches_plain`` (an AMX CPU) and at up to 16 rows, bf16 through the kit's AMX kernel
  (``cpu_fused.amx_linear``), which the kit's generation runs for a decoding step's blocks there;
* a plain read of the same bytes (the integer maximum over the weights' memory: no arithmetic to speak of).

The dtypes run interleaved, round by round, so that a shared machine's load hits both alike; it prints the
medians, the weights' GB/s, the process's CPU time over the wall time (about 2 where both cores work), and the
bf16 / fp32 ratio of the linear layers.

    .venv/bin/python benchmarks/decode_bandwidth.py              # 16 rows (the benchmark's batch), 7 rounds
    .venv/bin/python benchmarks/decode_bandwidth.py --rows 1 32 --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

# (in, out) of one SmolLM2-135M layer's linear layers: q, k, v, o, gate, up, down
LAYER = ((576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576))


def weights(layers: int, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n_out, n_in, generator=g) * 0.02).to(dtype) for _ in range(layers) for n_in, n_out in LAYER]


def linear_calls(ws: list[torch.Tensor], rows: int, packed: bool):
    """One decoding step's linear layers as a function of nothing: the inputs made once, the weights packed once
    where ``packed`` (oneDNN's prepacked bf16 linear, as the kit's generation runs it)."""
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(rows, w.shape[1], generator=g).to(w.dtype) for w in ws]
    if packed:
        ops = torch.ops.mkldnn
        packs = [ops._reorder_linear_weight(w, rows) for w in ws]

        def step():
            for x, p in zip(xs, packs):
                ops._linear_pointwise(x, p, None, "none", [], "")
    else:
        def step():
            for x, w in zip(xs, ws):
                torch.nn.functional.linear(x, w)
    return step


def amx_calls(ws: list[torch.Tensor], rows: int):
    """The same through the kit's AMX kernel (``cpu_fused.amx_linear``, the weights laid out once), as
    ``cpu_kernels.batch_invariant`` runs a decoding step's blocks where ``cpu_fused.amx_matches_plain``."""
    from instructlab import cpu_fused

    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(rows, w.shape[1], generator=g).to(w.dtype) for w in ws]
    packs = [cpu_fused.amx_pack(w) for w in ws]

    def step():
        for x, p in zip(xs, packs):
            cpu_fused.amx_linear(x, p)
    return step


def plain_read(ws: list[torch.Tensor]):
    flat = [w.view(torch.int16) if w.dtype == torch.bfloat16 else w.view(torch.int32) for w in ws]

    def step():
        for f in flat:
            f.amax()
    return step


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[16], help="rows per call (the batch of a decoding step)")
    p.add_argument("--layers", type=int, default=30, help="layers of distinct weights (SmolLM2 has 30)")
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args(argv)

    from instructlab import cpu_fused, cpu_kernels, models

    print(f"{models.device_settings().description}; {torch.get_num_threads()} torch threads")
    packed = cpu_kernels._packing_matches_plain()
    ws = {d: weights(a.layers, d) for d in (torch.bfloat16, torch.float32)}
    amx = all(cpu_fused.amx_fits(w) for w in ws[torch.bfloat16])  # an AMX CPU where the kernel has F.linear's bits
    size = {d: sum(w.numel() * w.element_size() for w in v) for d, v in ws.items()}
    print(f"{a.layers} layers of SmolLM2's decoding linear shapes: {size[torch.bfloat16] / 1e6:.0f} MB of weights in "
          f"bf16 ({'oneDNN prepacked, the kit' if packed else 'F.linear'}'s generation path), "
          f"{size[torch.float32] / 1e6:.0f} MB in fp32 (F.linear)")
    results = {}
    for rows in a.rows:
        runs = {"bf16 linear": (linear_calls(ws[torch.bfloat16], rows, packed), size[torch.bfloat16]),
                "fp32 linear": (linear_calls(ws[torch.float32], rows, False), size[torch.float32]),
                **({"bf16 kit AMX": (amx_calls(ws[torch.bfloat16], rows), size[torch.bfloat16])}
                   if amx and rows <= 16 else {}),
                "bf16 read": (plain_read(ws[torch.bfloat16]), size[torch.bfloat16]),
                "fp32 read": (plain_read(ws[torch.float32]), size[torch.float32])}
        times, cpu = {name: [] for name in runs}, {name: [] for name in runs}
        for fn, _ in runs.values():  # warm-up: first touches, oneDNN's kernels built
            fn()
        for r in range(a.rounds):
            order = list(runs) if r % 2 == 0 else list(runs)[::-1]
            for name in order:
                c, t = time.process_time(), time.perf_counter()
                runs[name][0]()
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        med = {name: statistics.median(v) for name, v in times.items()}
        rate = {name: runs[name][1] / med[name] / 1e9 for name in runs}
        print(f"\n{rows} rows a call, median of {a.rounds} rounds:")
        for name in runs:
            cores = sum(cpu[name]) / sum(times[name])  # ~1: one thread did the work; ~2: two did
            print(f"  {name:12s} {med[name] * 1e3:8.2f} ms a step  {rate[name]:6.1f} GB/s of weights  "
                  f"CPU time / wall time {cores:.2f}")
        ratio = med["fp32 linear"] / med["bf16 linear"]
        print(f"  bf16 / fp32, the linear layers: {ratio:.2f}x; each reads its weights at "
              f"{rate['bf16 linear'] / rate['bf16 read']:.0%} (bf16) and {rate['fp32 linear'] / rate['fp32 read']:.0%} "
              f"(fp32) of a plain read's rate")
        if "bf16 kit AMX" in runs:
            print(f"  the kit's AMX kernel: {med['bf16 linear'] / med['bf16 kit AMX']:.2f}x oneDNN's bf16 call, "
                  f"{med['fp32 linear'] / med['bf16 kit AMX']:.2f}x fp32")
        results[rows] = {"ms": {k: round(v * 1e3, 3) for k, v in med.items()},
                         "gb_per_s": {k: round(v, 2) for k, v in rate.items()}, "linear_ratio": round(ratio, 3)}
    return results


if __name__ == "__main__":
    main()
