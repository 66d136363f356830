"""The training step's matmul shapes alone, against the 1024^3 rate, in the kit's precision (or ``--dtypes``).

A LoRA step's time is mostly the frozen base's products, the vocabulary head's and their input gradients
(``benchmarks/step_profile.py --profile`` splits a real step by shape). This times each of those products on its
own, on random data of the step's shapes: the base's linear layers at ``--rows`` rows (a batch's tokens; 600 is
about a SmolLM2 Kestrel batch of 4) and the head at ``--head-rows`` rows (the labelled tokens, the only rows the
kit's compact head computes). Each product runs three ways:

* ``linear``: the forward as ``nn.Linear`` computes it, ``x @ W.T`` with ``W`` stored ``[out, in]``;
* ``pre-T``: the same product with ``W.T`` stored contiguous (a copy of the weight the kit does not keep);
* ``out-T``: the same product computed as its transpose, ``W @ x.T`` (the result ``[out, rows]``: the layout
  the kit's code does not use, which BLAS libraries block differently);
* ``grad``: the input gradient ``g @ W``, ``g`` of shape ``[rows, out]``;
* ``grad-T``: the same from ``g`` stored transposed (``[out, rows]``, the layout ``out-T`` leaves), ``g_T.T @ W``.

``gate+up`` is the MLP's gate and up projections as one product (one weight of twice the rows). Each round
measures the 1024^3 rate (``models.matmul_gflops``) and then every product, best of ``--reps``, and prints
GFLOP/s; the summary gives each product's median share of its own round's 1024^3 rate, so that a shared machine's
load hits both sides alike.

    .venv/bin/python benchmarks/matmul_shapes.py                     # SmolLM2, the kit's precision, 3 rounds
    .venv/bin/python benchmarks/matmul_shapes.py --models gemma3 --dtypes float32 bfloat16 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

SHAPES = {  # hidden, MLP width, query width (heads x size), key/value width, vocabulary
    "smollm2": (576, 1536, 576, 192, 49152),    # SmolLM2-135M-Instruct
    "gemma3": (640, 2048, 1024, 256, 262144),   # Gemma-3-270M
}
WAYS = ("linear", "pre-T", "out-T", "grad", "grad-T")


def products(model: str) -> list[tuple[str, int, int, bool]]:
    """(name, in features, out features, is the head) of every distinct product a step of ``model`` runs."""
    hidden, mlp, q, kv, vocab = SHAPES[model]
    rows = [("q, o" if q == hidden else "q", hidden, q), ("k, v", hidden, kv), ("gate, up", hidden, mlp),
            ("gate+up", hidden, 2 * mlp), ("down", mlp, hidden)]
    if q != hidden:
        rows.insert(2, ("o", q, hidden))
    return [(name, k, n, False) for name, k, n in rows] + [("head", hidden, vocab, True)]


def operands(rows: int, k: int, n: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=g).to(dtype)
    w = (torch.randn(n, k, generator=g) * k ** -0.5).to(dtype)
    grad = torch.randn(rows, n, generator=g).to(dtype)
    return x, w, w.t().contiguous(), grad, grad.t().contiguous()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["smollm2"], choices=list(SHAPES))
    p.add_argument("--dtypes", nargs="+", choices=["bfloat16", "float32"],
                   help="default: the precision the kit trains in on this CPU")
    p.add_argument("--rows", type=int, default=600, help="rows of the base's products (a batch's tokens)")
    p.add_argument("--head-rows", type=int, default=256, help="rows of the head's products (labelled tokens)")
    p.add_argument("--reps", type=int, default=7, help="timed calls of each product per round (best counts)")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)

    from instructlab import models

    settings = models.device_settings("cpu")  # prints the kit's choice of precision and why
    print(f"{torch.get_num_threads()} threads; base products at {a.rows} rows, the head at {a.head_rows}")
    dtypes = [getattr(torch, d) for d in a.dtypes] if a.dtypes else [settings.training_dtype]
    for model in a.models:
        for dtype in dtypes:
            name_of = str(dtype).replace("torch.", "")
            cases = []
            for name, k, n, head in products(model):
                rows = a.head_rows if head else a.rows
                x, w, wt, grad, grad_t = operands(rows, k, n, dtype)
                ref = torch.nn.functional.linear(x, w).float()
                for way, result, expected in (("pre-T", x @ wt, ref), ("out-T", (w @ x.t()).t(), ref),
                                              ("grad-T", grad_t.t() @ w, (grad @ w).float())):
                    if not torch.allclose(result.float(), expected, rtol=1e-2, atol=1e-2):
                        raise AssertionError(f"{name}: the {way} product differs from the plain one")
                calls = {"linear": lambda x=x, w=w: torch.nn.functional.linear(x, w),
                         "pre-T": lambda x=x, wt=wt: x @ wt, "out-T": lambda x=x, w=w: w @ x.t(),
                         "grad": lambda grad=grad, w=w: grad @ w, "grad-T": lambda g=grad_t, w=w: g.t() @ w}
                cases.append((f"{name} {rows}x{k}->{n}", 2 * rows * k * n / 1e9, calls))
            print(f"\n{model}, {name_of}: GFLOP/s, best of {a.reps} calls, by round")
            shares: dict[tuple[str, str], list[float]] = {}
            for r in range(a.rounds):
                rate = models.matmul_gflops(dtype)
                print(f"round {r + 1}: 1024^3 {rate:.0f}")
                for label, gflop, calls in cases:
                    cells = []
                    for way in WAYS:
                        gflops = gflop / models.best_seconds(calls[way], a.reps)
                        shares.setdefault((label, way), []).append(gflops / rate)
                        cells.append(f"{way} {gflops:7.1f}")
                    print(f"  {label:<24} " + "  ".join(cells), flush=True)
            print(f"{model}, {name_of}: median share of the same round's 1024^3 rate over {a.rounds} rounds")
            print(f"  {'product':<24} " + " ".join(f"{way:>7}" for way in WAYS))
            for label, _, _ in cases:
                print(f"  {label:<24} " + " ".join(f"{statistics.median(shares[(label, way)]):6.0%} "
                                                   for way in WAYS))


if __name__ == "__main__":
    main()
