"""CPU replacements for the parts of a LoRA step that are not matmul, each measured to pay off, and the kernels
that make bf16 generation independent of the batch.

Profiling one training step of SmolLM2-135M (LoRA r=16 on every linear layer, batch 4, bf16 autocast,
2-core AVX512-BF16 CPU) with ``torch.profiler`` showed costs that do almost no arithmetic:

* **LoRA dropout** (``lora_dropout=0.05``): PyTorch's ``nn.Dropout`` draws one Bernoulli sample per element
  (``aten::bernoulli_``), about 18% of the step on its own. :class:`FastDropout` draws only the positions it
  drops, by their geometric gaps (one uniform per dropped element), and zeroes them: the same distribution.
* **The vocabulary head's log-probabilities**: TRL's ``ChunkedLogProbFunction`` folds each logits tile with a
  dozen element-wise passes written for Triton, and accumulates the backward's gradient GEMM in fp32 (the slow
  rate on a bf16 CPU). :class:`LeanLogProb` computes the same per-token log-probability, entropy and top-1 flag
  with one maximum, one exponential and two row sums, in place in reused fp32 tiles a few rows at a time (a
  fresh 64 MB tile per operation cost more in page faults than its arithmetic), keeps ``d log p / d logits``
  from the forward, and its backward is one GEMM in the autocast dtype, as every other linear layer under
  autocast does.
* **Attention on short sequences** (:func:`short_attention_forward`): two batched matmuls and a softmax
  instead of PyTorch's CPU flash-attention kernel.
* **The LoRA branch** (:func:`lean_lora_forward`): PEFT's casts of the bf16 input to fp32 and back, and its
  scaling of the full-width output, removed.

Each keeps the math of what it replaces (tested against it) and runs only on CPU; GPUs keep TRL's, PEFT's and
PyTorch's kernels. ``benchmarks/train_throughput.py`` measures each one on its own (set-ups ``d``, ``l``,
``s`` and ``r``). For generation, :func:`batch_invariant` gives bf16 greedy answers that are the same bits at
any batch size.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings
from typing import Any, Iterator

import torch

__all__ = ["dropped_positions", "keep_mask", "FastDropout", "use_fast_dropout", "LeanLogProb", "lean_lm_head_on_cpu",
           "reused_tiles", "lean_lora_forward", "use_lean_lora", "batch_invariant",
           "invariant_attention_forward", "needs_batch_invariance"]

_GAP_MARGIN = 6  # gaps drawn beyond the expected count, in standard deviations (+3 each)


def dropped_positions(numel: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The flat positions, in increasing order, that independent Bernoulli(``p``) draws on ``numel`` elements drop.

    Drawn by their gaps instead of element by element: in a sequence of independent Bernoulli(p) trials the
    gaps between successive successes are independent and geometric, ``P(gap = k) = (1 - p)^(k - 1) p``, and
    ``floor(log(1 - u) / log(1 - p)) + 1`` with ``u`` uniform on [0, 1) is such a gap. So it takes one uniform
    per *dropped* element (about ``p * numel``) rather than per element: for LoRA's p = 0.05, about 20x fewer
    random numbers than a mask (measured on 611 x 576: 135 us against 585 us for a 16-bit-lane mask).

    Args:
        numel: how many elements.
        p: the drop probability, in [0, 1).
        generator: a ``torch.Generator``; None uses PyTorch's default CPU generator (seeded by ``set_seed``).
    Returns:
        A 1-D ``torch.int64`` tensor of distinct positions in ``[0, numel)``.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropped_positions: p must be in [0, 1), got {p}")
    if p == 0 or numel == 0:
        return torch.empty(0, dtype=torch.int64)
    log_keep = math.log1p(-p)
    expected = numel * p
    want = max(1, int(expected + _GAP_MARGIN * (math.sqrt(expected * (1 - p)) + 3)))  # one draw all but ~never
    dtype = torch.float32 if p >= 1e-4 else torch.float64  # gaps above 2^24 need float64 to stay integers
    parts, last = [], -1
    while True:
        u = torch.rand(want, dtype=dtype, generator=generator)
        gaps = torch.log1p(u.neg_()).div_(log_keep).floor_().clamp_(max=numel).to(torch.int64).add_(1)
        positions = gaps.cumsum_(0).add_(last)
        last = int(positions[-1])
        if last >= numel:
            parts.append(positions[: int(torch.searchsorted(positions, numel))])
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        parts.append(positions)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A boolean mask, True with probability ``1 - p`` per element, independently (see :func:`dropped_positions`).

    Args:
        shape: the mask's shape.
        p: the drop probability, in [0, 1).
        generator: a ``torch.Generator``; None uses PyTorch's default CPU generator (seeded by ``set_seed``).
    Returns:
        A ``torch.bool`` tensor of ``shape`` on the CPU.
    """
    mask = torch.ones(math.prod(shape), dtype=torch.bool)
    mask[dropped_positions(mask.numel(), p, generator)] = False
    return mask.view(shape)


class _ZeroAt(torch.autograd.Function):
    """``x`` with the elements at flat ``positions`` set to 0; its gradient is zeroed at the same positions."""

    @staticmethod
    def forward(ctx, x, positions):  # type: ignore[override]
        ctx.positions = positions
        return x.reshape(-1).index_fill(0, positions, 0).view(x.shape)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad.reshape(-1).index_fill(0, ctx.positions, 0).view(grad.shape), None


class FastDropout(torch.nn.Module):
    """``nn.Dropout(p)`` with a cheaper random draw (see :func:`dropped_positions`); CPU tensors only.

    The same distribution as ``nn.Dropout``: each element dropped independently with probability ``p``, the
    rest scaled by ``1 / (1 - p)``. It draws only the dropped positions and zeroes them in a copy of the input
    (and of the gradient in the backward), instead of a Bernoulli draw per element and a mask the size of the
    input: LoRA dropout (p = 0.05) on SmolLM2's 611 x 576 inputs, forward and backward, 60 layers: about 23 ms
    against 48 with a 16-bit-lane mask and ``where``, which was itself about 6x cheaper than ``nn.Dropout``.

    Args:
        p: the drop probability, in [0, 1).
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"FastDropout: p must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped, kept = self.unscaled(x)
        return dropped if kept == 1 else dropped * (1 / kept)

    def unscaled(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """``forward``'s result before its ``1 / (1 - p)`` rescaling, and the keep probability it divides by
        (1.0 when nothing is left to rescale: eval mode, p = 0, or a GPU tensor, dropped by PyTorch)."""
        if not self.training or self.p == 0:
            return x, 1.0
        if x.device.type != "cpu":
            return torch.nn.functional.dropout(x, self.p, True), 1.0
        return _ZeroAt.apply(x, dropped_positions(x.numel(), self.p)), 1 - self.p

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: torch.nn.Module) -> int:
    """Replace the LoRA dropout modules of a PEFT model by :class:`FastDropout` with the same ``p``.

    Only PEFT's ``lora_dropout`` modules are replaced (the base model's own dropout layers are left alone).

    Args:
        model: a PEFT-wrapped model (or any module holding PEFT LoRA layers).
    Returns:
        How many dropout modules were replaced.
    """
    replaced = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if type(drop) is torch.nn.Dropout and drop.p > 0:
                fast = FastDropout(drop.p)
                fast.train(drop.training)
                drops[name] = fast
                replaced += 1
    return replaced


# ----------------------------------------------------------------------------- the vocabulary head

_CHUNK_ELEMENTS = 1 << 24  # logits per chunk (64 MB in fp32): tokens are scored in chunks of this size
_KEEP_ELEMENTS = 1 << 27  # up to this many logits per call (256 MB in bf16), the forward keeps d log p / d logits
_BLOCK_ELEMENTS = 1 << 19  # logits per block of the forward's reductions (2 MB per fp32 tile, one per work tile)
LEAN_OUTPUTS = frozenset({"log_probs", "entropy", "is_top1"})
# Where the forward keeps d log p / d logits, the kept tile holds every token's logits, so its GEMM can run once over
# all the tokens instead of a chunk at a time: the chunks exist to bound memory, which the kept tile has spent
# already. One GEMM reads the (vocabulary x hidden) weight once instead of once per chunk, and a chunk of
# Gemma-3's 262,144-entry vocabulary is 64 tokens, a shape that ran at 41-44% of the 1024^3 rate against 56-86%
# at 256-512 tokens (AVX2, fp32). The reductions still run chunk by chunk, in the same blocks. The logits keep the
# chunked GEMMs' bits only where the BLAS gives a row the same bits whatever the GEMM's row count, and MKL's fp32
# does not below 12 rows: a last chunk of 1-11 tokens (SmolLM2: 342-352 labelled tokens, 18 of the quick demo's
# 450 batches) had its own bits before, and has the one GEMM's rows' now (up to 1.3e-9 in the gradients; the fp32
# demo's refusals moved by one answer, docs/training.md's fifteenth session). The blocks matter too: a block of
# one row sums its logits split across threads, in another order than a row in a larger block.
# The precisions where the kept tile's logits are one GEMM: fp32, measured on the AVX2 machine. bf16 keeps one
# GEMM per chunk, the code the published demo ran, until a CPU that computes it natively has measured both
# (``benchmarks/kernel_ab.py --kernel head-gemm`` times them and says whether the bits agree).
KEPT_IN_ONE_GEMM = frozenset({torch.float32})
# A GEMM of few tokens against a large vocabulary (``[rows, hidden] @ [hidden, vocabulary]``) runs far below the
# matmul rate; its transpose over blocks of the vocabulary (``weight[v:v + 1024] @ hidden.T``, each block copied
# into the logits while it is in cache) runs near it: on the AVX2 machine, fp32, as a share of the 1024^3 rate,
# one GEMM against the blocks: 64 tokens 35-44% against 64-79% (SmolLM2's 49,152 entries and Gemma-3's 262,144),
# 128 tokens 54-61% against 76-91%, 256 tokens 62-73% against 81-93%, 341 about even (63-78% against 71-80%).
# Below this many rows the head computes its logits that way. Each logit came out with one GEMM's bits in every
# case measured from 12 to 341 rows (both vocabularies, MKL's fp32 on the AVX2 machine; ``tests/test_cpu_kernels.py``
# checks it on each machine it runs on). Below 12 rows MKL's fp32 GEMM has kernels of its own, and the blocks'
# logits round like neither it nor a larger GEMM (a chunk's last 2-11 tokens, where the head is computed chunk by
# chunk: Gemma-3's long batches, the recomputing backward). Per precision, like CAUSAL_BLOCK: bf16 keeps one
# GEMM until it is measured on a CPU that computes it natively (``benchmarks/kernel_ab.py --kernel head-blocks``).
HEAD_BLOCKS_BELOW = {torch.float32: 320}
HEAD_VOCAB_BLOCK = 1024


def head_logits(hidden: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = hidden @ weight.T`` (``[rows, vocabulary]``, in ``out``'s dtype, as are both operands): one GEMM,
    or below :data:`HEAD_BLOCKS_BELOW` rows, vocabulary blocks of ``weight @ hidden.T``, each copied in."""
    rows, vocab = out.shape
    if rows >= HEAD_BLOCKS_BELOW.get(out.dtype, 0) or vocab <= HEAD_VOCAB_BLOCK:
        return torch.mm(hidden, weight.t(), out=out)
    tile = torch.empty(HEAD_VOCAB_BLOCK, rows, dtype=out.dtype)  # 256 KB at 64 fp32 rows: it stays in cache
    hidden_t = hidden.t()
    for v in range(0, vocab, HEAD_VOCAB_BLOCK):
        t = tile[: min(HEAD_VOCAB_BLOCK, vocab - v)]
        torch.mm(weight[v: v + HEAD_VOCAB_BLOCK], hidden_t, out=t)
        out[:, v: v + HEAD_VOCAB_BLOCK].copy_(t.t())
    return out


def _rows(vocab: int) -> int:
    return max(1, _CHUNK_ELEMENTS // vocab)


class _Tiles(threading.local):
    """The vocabulary head's large work tensors, kept between calls while :func:`reused_tiles` is active.

    A ``tokens x vocabulary`` tile is tens of MB: above glibc's largest mmap threshold (32 MB), so each new one
    is fresh pages from the kernel, and faulting them in costs more than the arithmetic done on them (measured
    on 341 x 49,152 fp32: ``exp`` into a new tensor 30 ms, into an existing one 5.5 ms). One per thread, since
    the autograd engine runs a CPU backward in the thread that called it.
    """

    def __init__(self):
        self.depth = 0
        self.free: dict[str, torch.Tensor] = {}

    def take(self, name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A flat tensor of at least ``numel`` elements: the kept one, if it is big enough, or a new one."""
        kept = self.free.pop(name, None)
        if kept is not None and kept.dtype == dtype and kept.numel() >= numel:
            return kept
        return torch.empty(numel, dtype=dtype)

    def give_back(self, name: str, flat: torch.Tensor) -> None:
        if self.depth and flat.numel() >= self.free.get(name, flat[:0]).numel():
            self.free[name] = flat


_TILES = _Tiles()


@contextlib.contextmanager
def reused_tiles(enabled: bool = True) -> Iterator[None]:
    """While active (in this thread), :class:`LeanLogProb` reuses its large work tensors between calls instead
    of allocating them each time; they are freed when the outermost context exits. The kit's trainer enters it
    around ``train()``. Meanwhile the forward's two fp32 block tiles (``2 * _BLOCK_ELEMENTS``), the kept
    ``d log p / d logits`` (up to ``_KEEP_ELEMENTS`` in the autocast dtype) and, after calls that did not keep
    it, a chunk of logits (``_CHUNK_ELEMENTS``) and the recomputing backward's two fp32 chunk tiles stay
    allocated: 420 MB at most in bf16, 700 MB in fp32 (all of them only if both backward paths ran), about
    37 MB for SmolLM2's 49,152-entry vocabulary at batch 4 (the kept gradient: 33 MB in bf16)."""
    if not enabled:
        yield
        return
    _TILES.depth += 1
    try:
        yield
    finally:
        _TILES.depth -= 1
        if not _TILES.depth:
            _TILES.free.clear()


class LeanLogProb(torch.autograd.Function):
    """Per-token ``log_softmax(hidden @ weight.T)[target]`` (and entropy, top-1 flag), in token chunks.

    The interface is TRL's ``ChunkedLogProbFunction`` minus what it does not support here (bias, temperature,
    soft-capping, logit scale, the other outputs): :func:`lean_lm_head_on_cpu` sends those cases to TRL's.
    The logits are computed in the autocast dtype (as TRL does), one GEMM per chunk (or one in all where the
    forward keeps its gradient, in the precisions of :data:`KEPT_IN_ONE_GEMM`), and reduced in fp32 a
    block of :data:`_BLOCK_ELEMENTS` at a time, in place in two reused fp32 tiles that stay in cache (see
    :class:`_Tiles`), in as few passes as the outputs allow: one maximum (which also gives the top-1 index),
    one exponential, one sum, one product for the entropy. While a call's logits fit in :data:`_KEEP_ELEMENTS`,
    the forward also keeps ``d log p_target / d logits = onehot - softmax`` in the autocast dtype, written over
    the logits it comes from (the GEMM writes them into the kept tile), so the backward is one matmul; beyond
    that (a large vocabulary on long batches), or when the entropy receives a gradient, the backward recomputes
    each chunk's logits, so memory stays one chunk. Rows are independent, so the block size changes no bit while
    every block has more rows than there are threads (a block of one row may be summed split across threads).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                outputs: tuple[str, ...] = ("log_probs",), grad_enabled: bool = True):
        # grad_enabled: whether the caller records a graph (autograd turns it off inside forward, and
        # needs_input_grad stays True under no_grad): without one there is no backward to keep d_logits for
        ctx.set_materialize_grads(False)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype
        n, vocab = hidden.shape[0], weight.shape[0]
        w = weight.to(dtype)
        log_z = torch.empty(n, dtype=torch.float32)
        log_probs = torch.empty(n, dtype=torch.float32)
        entropy = torch.empty(n, dtype=torch.float32) if "entropy" in outputs else None
        is_top1 = torch.empty(n, dtype=torch.bool) if "is_top1" in outputs else None
        keep = grad_enabled and any(ctx.needs_input_grad[:2]) and 0 < n * vocab <= _KEEP_ELEMENTS
        rows = max(1, min(n, _rows(vocab)))  # n may be 0: a micro-batch without a labelled token
        one_gemm = keep and dtype in KEPT_IN_ONE_GEMM
        kept = _TILES.take("d_logits", n * vocab, dtype) if keep else None
        # the logits go straight into the kept tile (each block's d log p / d logits then overwrites its own
        # logits, which it has read); without one, into a reused tile of their own
        logits = kept[: n * vocab].view(n, vocab) if keep else _TILES.take("logits", rows * vocab, dtype)
        block = max(1, min(rows, _BLOCK_ELEMENTS // vocab))
        work = _TILES.take("work", 2 * block * vocab, torch.float32)
        with torch.autocast("cpu", enabled=False):
            if one_gemm:  # every token's logits at once (the chunks below then only reduce them)
                head_logits(hidden.to(dtype), w, logits)
            for s in range(0, n, rows):
                e = min(s + rows, n)
                z = logits[s:e] if keep else logits[: (e - s) * vocab].view(e - s, vocab)
                if not one_gemm:
                    head_logits(hidden[s:e].to(dtype), w, z)
                for b in range(s, e, block):  # the reductions block by block, in tiles that stay in cache
                    f = min(b + block, e)
                    zb = z[b - s: f - s]
                    top, first = zb.max(dim=-1)  # exact in any dtype; the index is the first maximum, like TRL's
                    shifted = work[: (f - b) * vocab].view(f - b, vocab).copy_(zb).sub_(top.float()[:, None])
                    ex = torch.exp(shifted, out=work[block * vocab: (block + f - b) * vocab].view(f - b, vocab))
                    total = ex.sum(-1)
                    log_total = total.log()
                    log_z[b:f] = top.float() + log_total
                    log_probs[b:f] = shifted.gather(1, targets[b:f, None]).squeeze(1) - log_total
                    if entropy is not None:  # H = log Z - E_p[z], with z shifted by its maximum (shifted is spent)
                        entropy[b:f] = log_total - shifted.mul_(ex).sum(-1) / total
                    if is_top1 is not None:
                        is_top1[b:f] = first == targets[b:f]
                    if keep:  # onehot(target) - p, rounded once to the autocast dtype, over these rows' logits
                        ex.mul_((-1 / total)[:, None]).scatter_add_(1, targets[b:f, None], torch.ones(f - b, 1))
                        zb.copy_(ex)
        _TILES.give_back("work", work)
        if not keep:
            _TILES.give_back("logits", logits)
        ctx.save_for_backward(hidden, weight, targets, log_z, log_z if entropy is None else entropy)
        ctx.dtype, ctx.kept = dtype, kept
        if is_top1 is not None:
            ctx.mark_non_differentiable(is_top1)
        return log_probs, entropy, is_top1

    @staticmethod
    def backward(ctx, grad_log_probs, grad_entropy, _grad_top1):  # type: ignore[override]
        hidden, weight, targets, log_z, entropy = ctx.saved_tensors
        dtype, (n, vocab) = ctx.dtype, (hidden.shape[0], weight.shape[0])
        kept, ctx.kept = ctx.kept, None
        want_hidden, want_weight = ctx.needs_input_grad[:2]
        if grad_log_probs is None and grad_entropy is None:
            if kept is not None:
                _TILES.give_back("d_logits", kept)
            return None, None, None, None, None
        w = weight.to(dtype)
        if kept is not None and grad_entropy is None:  # the kept d log p / d logits: one matmul
            d_logits = kept[: n * vocab].view(n, vocab)
            scale = grad_log_probs.float()[:, None]
            if bool((scale == scale[0]).all()):  # one weight per token (the usual mean): scaled in the GEMM
                c = float(scale[0])
                grad_hidden = torch.addmm(torch.zeros((), dtype=dtype), d_logits, w, beta=0, alpha=c) \
                    if want_hidden else None
                grad_weight = torch.addmm(torch.zeros((), dtype=dtype), d_logits.t(), hidden.to(dtype), beta=0,
                                          alpha=c) if want_weight else None
            else:
                grad_hidden = ((d_logits @ w) * scale) if want_hidden else None
                grad_weight = (d_logits.mul_(scale).t() @ hidden.to(dtype)) if want_weight else None
            grad_hidden = grad_hidden.to(hidden.dtype) if grad_hidden is not None else None
            grad_weight = grad_weight.to(weight.dtype) if grad_weight is not None else None
            _TILES.give_back("d_logits", kept)
            return grad_hidden, grad_weight, None, None, None
        if kept is not None:
            _TILES.give_back("d_logits", kept)
        rows = max(1, min(n, _rows(vocab)))
        grad_hidden = torch.empty(hidden.shape, dtype=hidden.dtype) if want_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32) if want_weight else None
        work = _TILES.take("work", 2 * rows * vocab, torch.float32)
        logits = _TILES.take("logits", rows * vocab, dtype)
        for s in range(0, n, rows):
            e = min(s + rows, n)
            h = hidden[s:e].to(dtype)
            z = head_logits(h, w, logits[: (e - s) * vocab].view(e - s, vocab))
            p = work[: (e - s) * vocab].view(e - s, vocab).copy_(z).sub_(log_z[s:e, None]).exp_()
            g = work[rows * vocab: (rows + e - s) * vocab].view(e - s, vocab).zero_()
            if grad_log_probs is not None:  # d log p_t / dz = onehot(t) - p
                gl = grad_log_probs[s:e, None].float()
                g.addcmul_(p, gl, value=-1).scatter_add_(1, targets[s:e, None], gl)
            if grad_entropy is not None:  # dH / dz = p * (E_p[z] - z), E_p[z] = log Z - H
                mean_z = (log_z[s:e] - entropy[s:e])[:, None]
                g.add_(p * (mean_z - z.float()) * grad_entropy[s:e, None].float())
            g = g.to(dtype)
            if grad_hidden is not None:
                grad_hidden[s:e] = (g @ w).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight.add_((g.t() @ h).float())
        _TILES.give_back("work", work)
        _TILES.give_back("logits", logits)
        return grad_hidden, (grad_weight.to(weight.dtype) if grad_weight is not None else None), None, None, None


class _Dispatch:
    """Stands in for TRL's ``ChunkedLogProbFunction`` while :func:`lean_lm_head_on_cpu` is active."""

    def __init__(self, original: Any):
        self.original = original

    def apply(self, hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0,
              outputs=("log_probs",)):
        plain = (hidden.device.type == "cpu" and bias is None and temperature == 1 and softcap is None
                 and logit_scale == 1 and set(outputs) <= LEAN_OUTPUTS)
        if not plain:
            return self.original.apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale,
                                       outputs)
        log_probs, entropy, is_top1 = LeanLogProb.apply(hidden, weight, targets, tuple(outputs),
                                                        torch.is_grad_enabled())
        return log_probs, entropy, None, None, is_top1


@contextlib.contextmanager
def lean_lm_head_on_cpu(enabled: bool = True) -> Iterator[None]:
    """While active, TRL's fused LM head computes its CPU log-probabilities with :class:`LeanLogProb`.

    Cases LeanLogProb does not cover (a GPU, a head bias, temperature, soft-capping, other outputs) still go to
    TRL's function. TRL's function is restored on exit.

    Args:
        enabled: False leaves TRL's behaviour unchanged (a no-op context).
    """
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if not enabled or original is None:  # another TRL version: TRL's own path
        yield
        return
    trl_utils._ChunkedLogProbFunction = _Dispatch(original)
    try:
        yield
    finally:
        trl_utils._ChunkedLogProbFunction = original


# ----------------------------------------------------------------------------- attention on short sequences

def _head_layout(query: torch.Tensor, key: torch.Tensor, scaling: float | None) -> tuple[int, int, float]:
    """(key/value heads, query heads per key/value head, softmax scale) of an attention call: query heads
    j*groups .. j*groups+groups-1 share key/value head j (transformers' repeat_kv order)."""
    kv_heads = key.shape[1]
    return kv_heads, query.shape[1] // kv_heads, scaling if scaling is not None else query.shape[-1] ** -0.5


SHORT_ATTENTION = "kit_cpu_short"  # the attention implementation's name, registered with transformers
# The longest sequence the batched-matmul attention takes, by the scores' precision; longer ones go to SDPA.
# Both measured (benchmarks/attention_length.py, one layer forward and backward, batch 4, SmolLM2's and
# Gemma-3's heads): in bf16 it beats PyTorch's flash attention 1.4-2.7x up to 640 tokens (AMX machine); in fp32,
# over the whole causal square, the two cross between 256 and 384 tokens on SmolLM2's heads, while in causal
# blocks (CAUSAL_BLOCK) it beats SDPA 1.3-1.8x up to 512 on both models' heads (AVX2 machine). 512 keeps the
# probabilities' memory moderate (18 MB a layer for SmolLM2 at batch 4 in bf16).
SHORT_LENGTH = 256  # the whole square, in fp32 (and any precision other than bf16)
SHORT_LENGTH_BF16 = 512
SHORT_LENGTH_BLOCKS = 512  # in causal blocks, in any precision

# Queries per block of the short attention's causal blocks, by the scores' precision (absent: the whole
# square). Under a causal mask a block of queries needs only the keys up to its last query: with blocks of 64,
# a sequence of 256 tokens computes 5/8 of the scores and of the probabilities' products with the values,
# forward and backward. Used from 2 * block + 1 tokens: shorter, the blocks' own costs ate the gain. Measured
# in fp32 (benchmarks/attention_length.py, benchmarks/kernel_ab.py --kernel causal-blocks). In bf16 it is off
# until measured on a CPU with native bf16; there it would also change the training's bits (the key and value
# gradients are summed block by block), so the published demo would be regenerated.
CAUSAL_BLOCK = {torch.float32: 64}


CAUSAL_BLOCK_TRIED = 64  # the size the benchmarks try in a precision where the blocks are off (bf16 for now)


def causal_block(dtype: torch.dtype) -> int:
    """Queries per causal block of :func:`short_attention_forward` in ``dtype``; 0: the whole square."""
    return CAUSAL_BLOCK.get(dtype, 0)


@contextlib.contextmanager
def causal_blocks(dtype: torch.dtype, block: int) -> Iterator[None]:
    """Meanwhile, :func:`short_attention_forward` runs in causal blocks of ``block`` queries in ``dtype`` (0: over
    the whole square); :data:`CAUSAL_BLOCK` is restored afterwards. For benchmarks and experiments: it changes
    the module's setting for every thread."""
    before = CAUSAL_BLOCK.get(dtype)
    CAUSAL_BLOCK[dtype] = block
    try:
        yield
    finally:
        if before is None:
            CAUSAL_BLOCK.pop(dtype)
        else:
            CAUSAL_BLOCK[dtype] = before


def short_length(dtype: torch.dtype) -> int:
    """The longest sequence :func:`short_attention_forward` takes in ``dtype`` (see :data:`SHORT_LENGTH`)."""
    square = SHORT_LENGTH_BF16 if dtype == torch.bfloat16 else SHORT_LENGTH
    return max(square, SHORT_LENGTH_BLOCKS) if causal_block(dtype) else square


class _MaskedSoftmax(torch.autograd.Function):
    """``softmax(scores.masked_fill(~allowed, finfo.min))`` over the last dimension, with a backward that is the
    softmax's alone.

    The masked fill's own backward (zeroing the gradient where ``allowed`` is False) is not needed: there the
    probabilities are exactly 0 (``exp`` of the finite minimum minus the row's maximum underflows), so the
    softmax's gradient is already exactly 0, except on rows with nothing allowed (a left-padded query), whose
    probabilities are uniform; those rows are zeroed explicitly. Same bits as the two-step version (tested).
    Measured on SmolLM2's 30 layers (batch 4, 160 tokens, bf16): forward and backward 37-40 ms against 48-49.
    """

    @staticmethod
    def forward(ctx, scores, allowed):  # type: ignore[override]
        probs, ctx.dead = _masked_softmax(scores, allowed)
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (probs,) = ctx.saved_tensors
        return _masked_softmax_backward(grad, probs, ctx.dead), None


def _masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:class:`_MaskedSoftmax`'s forward, no graph: the probabilities, and the rows with nothing allowed (None
    where there are none)."""
    probs = torch.softmax(scores.masked_fill(~allowed, torch.finfo(scores.dtype).min), dim=-1)
    dead = ~allowed.any(-1, keepdim=True)  # rows with nothing allowed
    return probs, (dead if bool(dead.any()) else None)


def _masked_softmax_backward(grad: torch.Tensor, probs: torch.Tensor, dead: torch.Tensor | None) -> torch.Tensor:
    """:class:`_MaskedSoftmax`'s backward: the softmax's alone, zero on the rows with nothing allowed."""
    out = torch._softmax_backward_data(grad, probs, -1, probs.dtype)
    return out.masked_fill_(dead, 0) if dead is not None else out


def short_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                            is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal self-attention as two batched matmuls and a softmax, for short CPU sequences; SDPA otherwise.

    PyTorch's CPU flash-attention kernel (what SDPA picks on CPU) runs at a few percent of the matmul rate on
    sequences of a few hundred tokens, and slower still in bf16: its backward was 16% of a Kestrel training step.
    For a sequence of at most :func:`short_length` tokens (512 in bf16 and in fp32) this computes the same
    attention with matmuls in the scores' dtype (grouped-query heads share their key/value head without copying
    it) and a softmax reduced in fp32, as transformers' ``eager`` attention does (in bf16 its probabilities
    rounded once; see below); in fp32, sequences over 128 tokens in causal blocks of 64 queries, each over the
    keys up to its last query (:data:`CAUSAL_BLOCK`). Longer sequences, and anything else (a cache, dropout,
    soft-capping, a float or per-head mask, cross-attention), go to transformers' SDPA function unchanged.

    The signature is transformers' attention-function interface; :func:`use_short_attention` installs it.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    length = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    plain = (query.device.type == "cpu" and causal and 1 < length <= short_length(query.dtype) and key.shape[2] == length
             and dropout == 0 and kwargs.get("softcap") is None and kwargs.get("position_bias") is None
             and kwargs.get("cache") is None
             and (attention_mask is None or (attention_mask.dtype == torch.bool and attention_mask.shape[1] == 1)))
    if not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    b, heads, _, d = query.shape
    kv_heads, groups, scale = _head_layout(query, key, scaling)
    if attention_mask is None:
        allowed = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
    else:  # [b, 1, q, k] -> [b, 1, 1, q, k]
        allowed = attention_mask[:, :, None, -length:, -length:]
    # The scale goes on the queries (b x heads x length x d), not on the length x length scores: exact when it
    # is a power of two (1/8 for 64-dimensional heads), one rounding of the queries otherwise.
    # query heads j*groups .. j*groups+groups-1 share key/value head j (transformers' repeat_kv order)
    queries = (query * scale).reshape(b, kv_heads, groups, length, d)
    block = causal_block(query.dtype)
    if not block or length <= 2 * block:  # the whole square (two blocks or fewer did not pay: see CAUSAL_BLOCK)
        out = _square_attention(queries, key, value, allowed).view(b, heads, length, d)
        return out.transpose(1, 2).contiguous(), None
    # Causal blocks: the queries a..c-1 see keys 0..c-1 at most, so their scores stop there. Each row's softmax
    # is the one it gets in the whole square (the compiled kernel reads a row up to its last allowed key, rounded
    # up to 16: the blocks end at multiples of CAUSAL_BLOCK, or at the sequence's end), and a row with nothing
    # allowed (left padding, never read) is uniform over its block's keys instead of all of them.
    edges = tuple(range(0, length, block)) + (length,)
    return _CausalBlocks.apply(queries, key, value, allowed, edges), None


def _square_attention(queries: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      allowed: torch.Tensor) -> torch.Tensor:
    """Attention of ``queries`` (``[b, kv_heads, groups, n, d]``, scaled) over ``key`` and ``value``
    (``[b, kv_heads, n, d]``) under ``allowed`` (``[n, n]``, or ``[b, 1, 1, n, n]``), over the whole square of
    scores: ``[b, kv_heads, groups, n, d]``."""
    from . import cpu_fused

    b, kv_heads, groups, n, d = queries.shape
    scores = (queries.reshape(b, kv_heads, groups * n, d) @ key.transpose(-1, -2)).view(b, kv_heads, groups, n, n)
    # a finite minimum, not -inf: a row with nothing allowed (left padding) gets a uniform row, not NaN (and a
    # zero gradient, as from masked_fill's backward). The softmax runs in the scores' dtype: PyTorch's CPU
    # kernel reduces bf16 in fp32, so the probabilities are the fp32 ones rounded once; its backward works from
    # those bf16 probabilities (attention gradients 7% further from fp32 than an fp32 softmax's, measured:
    # 4.3e-3 vs 4.0e-3 relative), for half the time.
    probs = cpu_fused.masked_softmax(scores, allowed)  # the compiled kernel, where the trainer turned it on
    if probs is None:
        probs = _MaskedSoftmax.apply(scores, allowed)
    return (probs.view(b, kv_heads, groups * n, n) @ value).view(b, kv_heads, groups, n, d)


def _block_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """``(probs, backward)`` of the masked softmax of a block's scores, no graph: the compiled kernel where it
    applies, else PyTorch's softmax (as :class:`_MaskedSoftmax`); ``backward`` may overwrite its argument."""
    from . import cpu_fused

    found = cpu_fused.masked_softmax_rows(scores, allowed)
    if found is not None:
        return found
    probs, dead = _masked_softmax(scores, allowed)
    # grad: contiguous, the probabilities' shape or a view of it
    return probs, lambda grad: _masked_softmax_backward(grad.view(probs.shape), probs, dead).view(grad.shape)


class _CausalBlocks(torch.autograd.Function):
    """Causal attention by blocks of queries, each over the keys up to its last query, forward and backward:
    :func:`short_attention_forward` where ``cpu_kernels.causal_block`` is on.

    ``queries``: ``[b, kv_heads, groups, length, d]`` (scaled); ``key``, ``value``: ``[b, kv_heads, length, d]``;
    ``allowed``: ``[length, length]`` or ``[b, 1, 1, length, length]``; ``edges``: the blocks' first queries and
    the length. Returns ``[b, length, heads, d]`` (contiguous), the layout transformers expects. The backward
    writes the queries' gradient block by block and adds each block's key and value gradients into their
    prefix, the last block (all keys) first, so no gradient is zero-filled or sliced out of a larger one.
    """

    @staticmethod
    def forward(ctx, queries, key, value, allowed, edges):  # type: ignore[override]
        b, kv_heads, groups, length, d = queries.shape
        # contiguous, so that a prefix of the keys is a view for every matmul below (transformers' layout,
        # [b, length, kv_heads, d] transposed, would make each matmul copy its operand)
        key, value = key.contiguous(), value.contiguous()
        out = torch.empty(b, length, kv_heads, groups, d, dtype=queries.dtype)
        saved, ctx.backwards = [], []
        for a, c in zip(edges, edges[1:]):
            m = c - a
            q = queries[:, :, :, a:c].reshape(b, kv_heads, groups * m, d)
            scores = (q @ key[:, :, :c].transpose(-1, -2)).view(b, kv_heads, groups, m, c)
            probs, backward = _block_softmax(scores, allowed[..., a:c, :c])
            probs = probs.view(b, kv_heads, groups * m, c)
            out[:, a:c].copy_((probs @ value[:, :, :c]).view(b, kv_heads, groups, m, d).permute(0, 3, 1, 2, 4))
            saved += [q, probs]
            ctx.backwards.append(backward)
        ctx.save_for_backward(key, value, *saved)
        ctx.edges = edges
        return out.view(b, length, kv_heads * groups, d)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        key, value, *saved = ctx.saved_tensors
        edges, backwards = ctx.edges, ctx.backwards
        ctx.backwards = None
        b, kv_heads, length, d = key.shape
        groups = grad_out.shape[2] // kv_heads
        grad_out = grad_out.reshape(b, length, kv_heads, groups, d)
        grad_q = torch.empty(b, kv_heads, groups, length, d, dtype=grad_out.dtype)
        grad_k = grad_v = None
        for i in reversed(range(len(edges) - 1)):  # the last block first: it sees every key
            a, c = edges[i], edges[i + 1]
            m = c - a
            q, probs = saved[2 * i], saved[2 * i + 1]
            g = grad_out[:, a:c].permute(0, 2, 3, 1, 4).reshape(b, kv_heads, groups * m, d)
            grad_scores = backwards[i]((g @ value[:, :, :c].transpose(-1, -2)).contiguous())
            grad_q[:, :, :, a:c] = (grad_scores @ key[:, :, :c]).view(b, kv_heads, groups, m, d)
            dk, dv = grad_scores.transpose(-1, -2) @ q, probs.transpose(-1, -2) @ g
            if grad_k is None:
                grad_k, grad_v = dk, dv
            else:
                grad_k[:, :, :c] += dk
                grad_v[:, :, :c] += dv
        return grad_q, grad_k, grad_v, None, None


def use_short_attention(model: torch.nn.Module) -> None:
    """Make ``model`` (a transformers model) use :func:`short_attention_forward`, with SDPA's masks.

    Args:
        model: a transformers ``PreTrainedModel`` whose attention uses transformers' attention interface.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(SHORT_ATTENTION, short_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(SHORT_ATTENTION, sdpa_mask)
    model.set_attn_implementation(SHORT_ATTENTION)


# ----------------------------------------------------------------------------- the LoRA branch

def lean_lora_forward(layer: torch.nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A PEFT ``lora.Linear`` forward, ``base(x) + B(A(dropout(x)) * scaling)``, without PEFT's casts.

    PEFT computes ``base(x) + B(A(dropout(x.float()))) * scaling``: it casts the bf16 input up to the fp32
    LoRA weights, so the dropout runs on an fp32 copy that autocast then casts back to bf16 for ``A``, and it
    scales the ``tokens x out_features`` output instead of the ``tokens x r`` intermediate (r = 16). Under
    CPU autocast the matmuls see the same bf16 operands either way; this skips the two casts, runs the
    dropout in the input's dtype, and scales the small tensor (the same product; rounding aside, the same
    gradients, tested). With :class:`FastDropout`, its ``1 / (1 - p)`` joins that scaling too (the same mask,
    one pass over the input fewer). Anything else (adapters off or merged, several adapters, a LoRA variant such as
    DoRA, a bias on ``B``, extra arguments, no autocast with weights of another dtype, a GPU) runs PEFT's
    forward. :func:`use_lean_lora` installs it.
    """
    active = layer.active_adapters
    name = active[0] if len(active) == 1 else None
    plain = (not args and not kwargs and name is not None and not layer.disable_adapters and not layer.merged
             and x.device.type == "cpu" and name in layer.lora_A and name not in layer.lora_variant)
    if plain:
        lora_a = layer.lora_A[name]
        plain = ((x.dtype == lora_a.weight.dtype or torch.is_autocast_enabled("cpu"))
                 and layer.lora_B[name].bias is None)  # with a bias (lora_bias=True), B(a*s) != B(a)*s
    if not plain:
        return super(type(layer), layer).forward(x, *args, **kwargs)  # PEFT's
    result = layer.base_layer(x)
    drop, scaling = layer.lora_dropout[name], layer.scaling[name]
    if type(drop) is FastDropout:  # its mask without the 1/(1-p) pass over the input: joins the r-wide scaling
        dropped, kept = drop.unscaled(x)
        scaling = scaling / kept if kept != 1 else scaling
    else:
        dropped = drop(x)
    update = layer.lora_B[name](lora_a(dropped) * scaling)
    return result + update.to(result.dtype)


@functools.cache
def _lean_lora_class() -> type:
    """``LeanLoraLinear``: PEFT's ``lora.Linear`` with :func:`lean_lora_forward` (built on first use: peft is
    imported only then). A subclass rather than a patched instance, so a model pickles and copies as usual."""
    from peft.tuners.lora import Linear as LoraLinear

    return type("LeanLoraLinear", (LoraLinear,), {
        "forward": lean_lora_forward, "__module__": __name__, "__qualname__": "LeanLoraLinear",
        "__doc__": "PEFT's lora.Linear with cpu_kernels.lean_lora_forward (see use_lean_lora)."})


def __getattr__(name: str) -> Any:  # ``cpu_kernels.LeanLoraLinear``, for pickle and for users
    if name == "LeanLoraLinear":
        return _lean_lora_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def use_lean_lora(model: torch.nn.Module, enabled: bool = True) -> int:
    """Give every PEFT ``lora.Linear`` of ``model`` :func:`lean_lora_forward` (``enabled=False``: PEFT's again).

    Only layers of exactly PEFT's class are changed (quantized subclasses keep theirs): their class becomes
    ``LeanLoraLinear``, a subclass whose only change is the forward.

    Returns:
        How many LoRA layers now have the requested forward.
    """
    from peft.tuners.lora import Linear as LoraLinear

    lean = _lean_lora_class()
    layers = [m for m in model.modules() if type(m) in (LoraLinear, lean)]
    for layer in layers:
        layer.__class__ = lean if enabled else LoraLinear
    return len(layers)


# ----------------------------------------------------------------------------- batch-invariant generation

INVARIANT_ATTENTION = "kit_cpu_invariant"  # the attention implementation's name, registered with transformers
# Attention implementations batch_invariant replaces: SDPA, and the kit's training attention (which sends
# anything with a cache to SDPA). Others (eager for soft-capping, flash...) are left as they are.
_REPLACEABLE = ("sdpa", SHORT_ATTENTION)
_MEMO = threading.local()  # per thread: the last masks seen and their rows' ranges, the bounds made from them
_warned: set[str] = set()


def _recent(name: str, key: Any, make: Any) -> Any:
    """``make(key)``, remembered in this thread's ``_MEMO.<name>`` for the last two keys, found by identity: the
    memo holds each key, so an identity stays unique (a new mask is a new object). Every layer of one type gets
    the same mask in a forward pass (Gemma-3 alternates two), so each is worked out once per step."""
    memo = _MEMO.__dict__.setdefault(name, [])
    for seen, value in memo:
        if seen is key:
            return value
    value = make(key)
    memo[:] = memo[-1:] + [(key, value)]
    return value


def _row_ranges(mask: torch.Tensor | None, q: int, k: int, b: int) -> list[tuple[int, int, int, bool]]:
    """Per batch row: (first real query, first and one-past-last key any of its queries sees, contiguous).

    Left padding puts a row's pad tokens first: its real queries are those that see any key. The key range
    covers what every query sees (a sliding window lets early queries see keys the last one does not);
    ``contiguous`` says whether every key in the range is seen, which a decoding step (one query) needs to
    run without a mask. Computed once per mask (:func:`_recent`), in a few vectorised operations."""
    if mask is None:  # no padding, prefill from position 0 (transformers skips the mask): top-left causal
        return [(0, 0, q if q > 1 else k, True)] * b

    def ranges(mask: torch.Tensor) -> list[tuple[int, int, int, bool]]:
        allowed = mask[:, 0]                                 # [b, q, k]
        q0 = allowed.any(-1).to(torch.int8).argmax(-1)
        seen = allowed.any(1).to(torch.int8)                 # [b, k]: the keys any query sees
        lo = seen.argmax(-1)
        hi = k - seen.flip(-1).argmax(-1)
        contiguous = seen.sum(-1) == hi - lo
        return list(zip(q0.tolist(), lo.tolist(), hi.tolist(), contiguous.tolist()))

    return _recent("ranges", mask, ranges)


def _decode_bounds(ranges: list[tuple[int, int, int, bool]]) -> torch.Tensor:
    """The key ranges of :func:`_row_ranges` as ``cpu_fused.decode_attention``'s ``[2, b]`` bounds, made once per
    ranges list (one per mask: every layer of a decoding step shares it)."""
    from . import cpu_fused

    return _recent("bounds", ranges, lambda r: cpu_fused.decode_bounds([x[1] for x in r], [x[2] for x in r]))


def invariant_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                                value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float = 0.0,
                                scaling: float | None = None, is_causal: bool | None = None,
                                **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention whose result for a sequence does not depend on the other sequences of its batch.

    Batched generation pads prompts on the left and keeps every sequence's keys in one static cache, so the
    same sequence meets SDPA at another offset and length than when it is generated alone. The kernel then
    sums the same terms in another order: 1e-7 apart in fp32, but rounded to bf16 (8-bit mantissa) that
    flips the last bit of some activations, which changes near-tied greedy choices (13 of 32 SmolLM2
    answers identical, 64 new tokens). Here each sequence is attended alone, on exactly its real queries and
    keys (padding and empty cache slots sliced away): the same bits, hence the same answers, at any batch size.
    A prompt's queries (prefill) get the same SDPA call per sequence they get when generated alone. A decoding
    step (one query per sequence) runs the compiled ``cpu_fused.decode_attention`` on bf16: every sequence in
    one call, each alone on its keys in a summation order fixed by the code (a per-sequence SDPA call cost about
    50 us, 30 layers x 16 sequences per step; measured 1.2-1.35x on SmolLM2's batched generation on the AMX
    machine, other roundings than SDPA's). Without it (other dtypes, the kernels off or not built) a decoding
    step makes an SDPA call per sequence, the query heads that share a key/value head as the rows of one call
    (transformers' ``pack_gqa``). Anything else (dropout,
    soft-capping, a position bias or attention sinks, a paged cache, a float, per-head or broadcast mask,
    non-causal attention, value heads of another size) goes to transformers' SDPA function unchanged.

    The signature is transformers' attention-function interface; :func:`batch_invariant` installs it.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    extras = ("softcap", "position_bias", "cache", "s_aux", "sinks")
    if not (causal and dropout == 0 and all(kwargs.get(name) is None for name in extras)
            and value.shape[-1] == query.shape[-1]
            and (attention_mask is None or (attention_mask.dtype == torch.bool and attention_mask.shape[1] == 1
                                            and attention_mask.shape[0] == query.shape[0]
                                            and attention_mask.shape[2] == query.shape[2]
                                            and attention_mask.shape[-1] == key.shape[2]))):
        if "fallback" not in _warned:
            _warned.add("fallback")
            warnings.warn("batch_invariant: an attention call it does not cover (see invariant_attention_forward) "
                          "runs transformers' SDPA; answers may then depend on the batch", stacklevel=2)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    b, heads, q, d = query.shape
    kv_heads, groups, scale = _head_layout(query, key, scaling)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    ranges = _row_ranges(attention_mask, q, key.shape[2], b)
    if q == 1:  # a decoding step: one query per sequence; the heads of one key/value head as its rows
        from . import cpu_fused

        grouped = query.reshape(b, kv_heads, groups, d)
        out = cpu_fused.decode_attention(grouped, key, value, _decode_bounds(ranges), scale)
        gaps = [i for i, r in enumerate(ranges) if not r[3]]
        if out is not None and not gaps:  # the compiled kernel, every sequence in one call
            return out.view(b, 1, heads, d), None
        # SDPA, a call per sequence: every row without the kernel, else the rows whose keys have gaps (their mask).
        # The per-sequence views made in one call each (split), then narrowed: the same views as slicing them one
        # by one, in fewer operations (this runs per sequence, layer and step)
        queries, keys, values = grouped.split(1), key.split(1), value.split(1)

        def alone(i: int) -> torch.Tensor:
            _, lo, hi, contiguous = ranges[i]
            mask = None if contiguous else attention_mask[i:i + 1, :, :, lo:hi]
            return sdpa(queries[i], keys[i].narrow(2, lo, hi - lo), values[i].narrow(2, lo, hi - lo),
                        attn_mask=mask, scale=scale)

        if out is not None:
            for i in gaps:
                out[i] = alone(i)[0]
            return out.view(b, 1, heads, d), None
        return torch.cat([alone(i) for i in range(b)]).view(b, heads, 1, d).transpose(1, 2), None
    out = query.new_zeros(b, q, heads, d)  # pad queries: zeros (nothing attends to them)
    for i, (q0, lo, hi, _) in enumerate(ranges):
        if attention_mask is None:
            mask = torch.ones(q, hi, dtype=torch.bool, device=query.device).tril()[None, None]
        else:
            mask = attention_mask[i:i + 1, :, q0:, lo:hi]
        o = sdpa(query[i:i + 1, :, q0:], key[i:i + 1, :, lo:hi], value[i:i + 1, :, lo:hi], attn_mask=mask,
                 scale=scale, enable_gqa=groups > 1)
        out[i, q0:] = o[0].transpose(0, 1)
    return out, None


# Rows per matmul call inside batch_invariant, so that every row is computed in a call of the same shape: a
# decoding step's rows (one per sequence) 16 at a time, a prompt's (prefill) 128 at a time (measured on AMX:
# fewer, larger calls for the prompt's many rows; 16 for the batch of a decoding step, where larger blocks would
# be mostly padding).
INVARIANT_ROWS = 16
INVARIANT_PREFILL_ROWS = 128


@functools.lru_cache(maxsize=None)
def _packing_matches_plain() -> bool:
    """Whether oneDNN's prepacked bf16 linear (``mkldnn::_reorder_linear_weight`` once, then
    ``mkldnn::_linear_pointwise`` per call) is available here and gives ``F.linear``'s bits, probed once per
    process on random data at a decoding step's and a prompt's block sizes. Where it does not, the plain path
    (whose batch invariance was measured) stays."""
    ops = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise")):
        return False
    gen = torch.Generator().manual_seed(0)
    try:
        for n_in, n_out, with_bias in ((64, 96, False), (96, 64, True)):
            w = torch.randn(n_out, n_in, generator=gen).to(torch.bfloat16)
            bias = torch.randn(n_out, generator=gen).to(torch.bfloat16) if with_bias else None
            pack = ops._reorder_linear_weight(w, INVARIANT_ROWS)
            for rows in (INVARIANT_ROWS, INVARIANT_PREFILL_ROWS):
                x = torch.randn(rows, n_in, generator=gen).to(torch.bfloat16)
                if not torch.equal(ops._linear_pointwise(x, pack, bias, "none", [], ""),
                                   torch.nn.functional.linear(x, w, bias)):
                    return False
    except RuntimeError:  # a build or CPU without oneDNN's bf16 linear
        return False
    return True


_PACK = "_kit_packed_weight"  # where batch_invariant keeps a linear layer's packed weight while it is active
_AMX = "_kit_amx_weight"  # the same for the AMX kernel's layout (decoding steps' blocks)


def _block_matmul(linear: torch.nn.Linear, dtype: torch.dtype, block: int = INVARIANT_ROWS) -> Any:
    """``rows -> linear(rows)`` for one block of ``block`` rows of ``dtype``, for a layer batch_invariant marked
    and bf16 rows:

    * a decoding step's blocks (``block <= INVARIANT_ROWS``), where ``cpu_fused.amx_matches_plain`` (an AMX CPU):
      the compiled AMX kernel (``cpu_fused.amx_linear``) on the weight laid out in tiles at first use. The same
      bits as ``F.linear`` at these rows (the probe checks it); on SmolLM2's decoding layers 1.6x oneDNN's call at
      16 rows and 2.0x at one (``benchmarks/decode_bandwidth.py``, the AMX machine);
    * else, where :func:`_packing_matches_plain`: oneDNN's call on the weight packed at first use. Packing skips
      re-laying the weight out on every call: on the AMX machine a decoding step's 211 SmolLM2 linears took
      17.6 ms packed against 24.8 ms plain (16 rows each; 34.9 against 43.7 ms at a prompt's 128), for 88 ms of
      packing per ``batch_invariant`` context (one ``generate_answers`` call, all its batches);
    * else ``F.linear``.

    Each layout is a copy of the weights while the context lasts."""
    if dtype == torch.bfloat16 and block <= INVARIANT_ROWS and _AMX in linear.__dict__:
        from . import cpu_fused

        packed = linear.__dict__[_AMX]
        if packed is None:
            packed = linear.__dict__[_AMX] = cpu_fused.amx_pack(linear.weight)
        if packed is not None:
            def amx(rows: torch.Tensor) -> torch.Tensor:
                out = cpu_fused.amx_linear(rows, packed)
                return out if out is not None else torch.nn.functional.linear(rows, linear.weight, linear.bias)
            return amx
        del linear.__dict__[_AMX]  # the kernels were turned off: oneDNN's call or F.linear, the same bits
    if dtype == torch.bfloat16 and _PACK in linear.__dict__:
        pack = linear.__dict__[_PACK]
        if pack is None:
            pack = linear.__dict__[_PACK] = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(),
                                                                                     INVARIANT_ROWS)
        return lambda rows: torch.ops.mkldnn._linear_pointwise(rows, pack, linear.bias, "none", [], "")
    return lambda rows: torch.nn.functional.linear(rows, linear.weight, linear.bias)


def _invariant_linear(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward`` computed a block of rows at a time, the last block padded with zeros: every row meets
    the same matmul call, whatever the batch (see batch_invariant). A prompt's forward (its KV cache empty, as
    :func:`_note_prompt` saw it) takes blocks of :data:`INVARIANT_PREFILL_ROWS`, a decoding step's of
    :data:`INVARIANT_ROWS`: a prompt token's row is always in a prompt's forward, a generated token's always in a
    decoding step's, batched or alone (without a cache in sight, one position per sequence counts as a step).
    bf16 weights are packed once per context (:func:`_block_matmul`: the same bits, less time). Whole blocks
    are views of the rows; only the last, partial one is copied into a zero-padded block (copying every row
    into a padded buffer, as before, made a batch's generation 1.13x slower on the AMX machine: a prompt's
    thousands of rows were copied at every linear layer)."""
    rows = x.reshape(-1, x.shape[-1])
    prompt = getattr(_MEMO, "prompt", None)
    if prompt is None:
        prompt = (x.shape[-2] if x.dim() >= 3 else rows.shape[0]) > 1
    n, block = rows.shape[0], INVARIANT_PREFILL_ROWS if prompt else INVARIANT_ROWS
    matmul = _block_matmul(linear, x.dtype, block)
    rows = rows.contiguous()
    if n == block:
        return matmul(rows).view(*x.shape[:-1], -1)
    full = n - n % block  # whole blocks are views of the rows; only the last one is copied and padded
    outs = [matmul(rows[i:i + block]) for i in range(0, full, block)]
    if full < n:
        tail = rows.new_zeros(block, rows.shape[1])
        tail[:n - full] = rows[full:]
        outs.append(matmul(tail)[:n - full])
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.view(*x.shape[:-1], out.shape[-1])


def _note_prompt(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook of the model inside batch_invariant: whether this forward is a prompt's (a KV cache that
    holds nothing yet) or a decoding step's; None without a cache (the linear layers then go by shape)."""
    cache = kwargs.get("past_key_values")
    has_length = cache is not None and hasattr(cache, "get_seq_length")
    _MEMO.prompt = int(cache.get_seq_length()) == 0 if has_length else None


_LOCK = threading.RLock()  # re-entrant: a nested context (same thread) finds the model already switched


@contextlib.contextmanager
def batch_invariant(model: torch.nn.Module) -> Iterator[None]:
    """Inside: ``model``'s greedy answers are the same bits at any batch size (CPU, bf16 or fp16 weights).

    Two sources of batch dependence are removed, each measured on SmolLM2-135M in bf16 (2-core CPUs):

    * attention, by :func:`invariant_attention_forward` (padding and cache slots sliced away per sequence);
    * the matmul's dependence on its number of rows: oneDNN blocks a matmul by its shape, and the blocking
      decides the order in which a row's products are summed. With AVX512-BF16 (AMD EPYC) only one row
      differed from two or more (33 of 299 rows of the 1536 -> 576 down projection); with AMX (Intel Xeon)
      a row of the 576 -> 1536 projections differed between a call of 2 rows and one of 700 (9 rows in
      100), and a row of the 49,152-entry head between calls of up to 32 rows and longer ones. Each plain
      ``nn.Linear`` (not a subclass, nor one whose forward was already replaced) computes its rows
      in blocks of a fixed size (the last one padded; :func:`_invariant_linear`), so every row meets the same
      call whatever the batch: on the AMX machine, at block sizes 16 to 256, a row's bits did not depend on its
      block's other rows or its place in the block (on the AVX512-BF16 machine any call of two rows or more
      already gave a row the same bits). A prompt's rows cost more calls (a 1,600-row prefill: 13 per linear layer,
      about 1.7x the time of one call), decoding at batch 16 none. bf16 weights are laid out once per context
      for the call that computes them (:func:`_block_matmul`: oneDNN's prepacked linear, and on an AMX CPU the
      kit's AMX kernel for a decoding step's blocks), each only where a probe finds ``F.linear``'s bits.

    Layer norms, activations and rotary embeddings gave each row the same bits whatever the batch (probed op
    by op on the AVX512-BF16 machine). fp32 generation needs none of this: its rounding differences
    stay ~1e-7 and did not change a greedy answer (32 of 32 identical), so the fp32 path is left as it is.
    A model whose attention is neither SDPA nor the kit's keeps its attention (a warning says so). One model
    is in one such context at a time (a lock; the kit generates with one model at a time anyway).

    Args:
        model: a transformers causal LM, or a PeftModel around one.
    """
    import types

    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    from . import cpu_fused

    AttentionInterface.register(INVARIANT_ATTENTION, invariant_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(INVARIANT_ATTENTION, sdpa_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with _LOCK:
        previous = base.config._attn_implementation
        swap = previous in _REPLACEABLE
        if swap:
            base.set_attn_implementation(INVARIANT_ATTENTION)
            swap = base.config._attn_implementation == INVARIANT_ATTENTION
        if not swap and previous != INVARIANT_ATTENTION and previous not in _warned:
            _warned.add(previous)
            warnings.warn(f"batch_invariant: the model's attention ({previous!r}) is kept; its bf16 answers may "
                          "depend on the batch", stacklevel=3)
        linears = [m for m in model.modules() if type(m) is torch.nn.Linear and "forward" not in m.__dict__]
        pack = bool(linears) and _packing_matches_plain()  # probed once per process, asked once per context
        for linear in linears:
            linear.forward = types.MethodType(_invariant_linear, linear)
            if pack and linear.weight.dtype == torch.bfloat16:
                linear.__dict__[_PACK] = None  # its weight packed at first use, dropped on exit (see _block_matmul)
            if cpu_fused.amx_fits(linear.weight, linear.bias):  # a bf16 layer of a shape the AMX kernel takes
                linear.__dict__[_AMX] = None  # the same for the AMX kernel's layout
        hook = base.register_forward_pre_hook(_note_prompt, with_kwargs=True) if linears else None
        try:
            yield
        finally:
            for linear in linears:
                del linear.forward
                linear.__dict__.pop(_PACK, None)
                linear.__dict__.pop(_AMX, None)
            if hook is not None:
                hook.remove()
            if swap:
                base.set_attn_implementation(previous)
            _MEMO.__dict__.pop("ranges", None)
            _MEMO.__dict__.pop("bounds", None)
            _MEMO.__dict__.pop("prompt", None)


def needs_batch_invariance(model: torch.nn.Module) -> bool:
    """True for a model on CPU with bf16 or fp16 weights: the case :func:`batch_invariant` is for."""
    p = next(model.parameters())
    return p.device.type == "cpu" and p.dtype in (torch.bfloat16, torch.float16)
