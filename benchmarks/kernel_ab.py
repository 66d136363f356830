"""One CPU kernel of the kit on and off, alternately, on the same batch in one process: its gain, without the noise
of a shared machine's load drifting between two runs.

Builds ``benchmarks/train_throughput.py``'s set-up (c) (the kit's defaults: same model, data, batch and LoRA),
takes its first training batch, and times ``--reps`` forward-and-backward passes of the trainer's loss on that
batch, in the trainer's precision (its bf16 autocast where the kit trains in bf16), with the kernel on, and as
many with it off, interleaved (on, off, off, on, on, off, ...), so that a change in the machine's load hits both
alike. Prints each pass's time, the medians and their ratio (off / on: above 1 means the kernel pays off), and
the same for the process's CPU time.

    .venv/bin/python benchmarks/kernel_ab.py [--kernel dropout|dropout-draw|attention|lora|fused|softmax|causal-blocks|
                                                        head-gemm|head-blocks]
                                             [--reps 12] [--all-linear] [--longest | --near TOKENS] [--model NAME]

Kernels: ``dropout`` (``FastDropout`` against ``nn.Dropout``), ``dropout-draw`` (``FastDropout``, which draws the
dropped positions, against its previous version, a mask of 16-bit random lanes: :class:`LaneMaskDropout`), ``attention`` (``short_attention_forward``
against SDPA), ``lora`` (``lean_lora_forward`` against PEFT's forward), ``fused`` (``cpu_fused``: the fused RMSNorm,
SwiGLU and rotary kernels against PyTorch's operations; ``INSTRUCTLAB_CPU_FUSED_MARCH=haswell`` measures the code
a CPU with AVX2 alone would run, ``INSTRUCTLAB_DTYPE=float32`` the fp32 path such a CPU takes), ``softmax``
(``cpu_fused.masked_softmax``, the attention's masked softmax compiled, against the kit's two PyTorch operations),
``causal-blocks`` (the short attention's causal blocks, ``cpu_kernels.CAUSAL_BLOCK``, against the whole square;
in bf16, where the kit keeps them off until measured, blocks of ``cpu_kernels.CAUSAL_BLOCK_TRIED`` queries),
``head-gemm`` (``cpu_kernels.KEPT_IN_ONE_GEMM``: the vocabulary head's forward as one GEMM over all the labelled
tokens, against one per chunk of ``_CHUNK_ELEMENTS`` logits, in the training's precision, which the kit keeps to
one GEMM per chunk in bf16 until measured; it matters most for Gemma-3, ``--model gemma-3-270m``, whose chunks
are 64 tokens), ``head-blocks`` (``cpu_kernels.HEAD_BLOCKS_BELOW``: the head's logits of fewer
tokens than that as vocabulary blocks of the transposed product, against one GEMM; in a precision where the kit
keeps them off until measured, below ``HEAD_BLOCKS_TRIED`` tokens). The model is SmolLM2 unless ``--model``
names another. Before timing, it says whether on and off give the loss and the gradients the same bits.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput as tt  # noqa: E402  (sets the offline environment and the repository path)
import torch  # noqa: E402


def switch(trainer, kernel: str, on: bool):
    """A context in which ``kernel`` is on or off for ``trainer``'s model (set up by ``tt.build("c")``)."""
    from instructlab import cpu_kernels

    model = trainer.model
    if kernel in ("dropout", "dropout-draw"):
        return _swapped(model, on, torch.nn.Dropout if kernel == "dropout" else LaneMaskDropout)
    if kernel == "attention":
        base = model.get_base_model()

        @contextlib.contextmanager
        def attention():
            if not on:
                base.set_attn_implementation("sdpa")
            try:
                yield
            finally:
                cpu_kernels.use_short_attention(base)
        return attention()
    if kernel == "lora":
        @contextlib.contextmanager
        def lora():
            cpu_kernels.use_lean_lora(model, on)
            try:
                yield
            finally:
                cpu_kernels.use_lean_lora(model, True)
        return lora()
    if kernel == "fused":
        from instructlab import cpu_fused

        @contextlib.contextmanager
        def fused():
            cpu_fused.use_fused_elementwise(model, on)
            trainer.kit_fused_rotary = trainer.kit_fused_softmax = on
            try:
                yield
            finally:
                cpu_fused.use_fused_elementwise(model, True)
                trainer.kit_fused_rotary = trainer.kit_fused_softmax = True
        return fused()
    if kernel == "causal-blocks":
        dtype = tt.attention_dtype(trainer)
        block = cpu_kernels.causal_block(dtype) or cpu_kernels.CAUSAL_BLOCK_TRIED
        return cpu_kernels.causal_blocks(dtype, block if on else 0)
    if kernel == "head-blocks":  # the head's logits are computed in the autocast dtype too
        dtype = tt.attention_dtype(trainer)
        rows = cpu_kernels.HEAD_BLOCKS_BELOW.get(dtype) or HEAD_BLOCKS_TRIED
        return mock.patch.dict(cpu_kernels.HEAD_BLOCKS_BELOW, {dtype: rows if on else 0})
    if kernel == "head-gemm":  # in the autocast dtype, like the blocks
        dtype = tt.attention_dtype(trainer)
        precisions = cpu_kernels.KEPT_IN_ONE_GEMM | {dtype} if on else cpu_kernels.KEPT_IN_ONE_GEMM - {dtype}
        return mock.patch.object(cpu_kernels, "KEPT_IN_ONE_GEMM", precisions)
    if kernel == "softmax":
        @contextlib.contextmanager
        def softmax():
            trainer.kit_fused_softmax = on
            try:
                yield
            finally:
                trainer.kit_fused_softmax = True
        return softmax()
    raise SystemExit(f"unknown --kernel {kernel!r}: dropout, dropout-draw, attention, lora, fused, softmax, "
                     "causal-blocks, head-gemm or head-blocks")


HEAD_BLOCKS_TRIED = 320  # the rows below which --kernel head-blocks tries the blocks where the kit keeps them off


def same_bits(a: list[torch.Tensor], b: list[torch.Tensor]) -> str:
    """``identical bits``, or how far apart ``a`` and ``b`` (the loss, then gradients) are."""
    if len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b)):
        return "identical bits"
    if len(a) != len(b):
        return f"differ ({len(a)} tensors against {len(b)})"
    worst = max(float((x.float() - y.float()).norm() / y.float().norm().clamp_min(1e-30)) for x, y in zip(a, b))
    return (f"differ (loss {float(a[0]):.6f} against {float(b[0]):.6f}; largest relative difference of a "
            f"gradient {worst:.1e})")


class LaneMaskDropout(torch.nn.Module):
    """The kit's previous ``FastDropout`` (to 2026-12-01), for ``--kernel dropout-draw``: a mask from 16-bit
    lanes of int64 random draws (keep probability ``1 - round(p * 65536) / 65536``), applied with ``where``."""

    def __init__(self, p: float):
        super().__init__()
        self.p, self.lanes_dropped = p, round(p * 65536)  # of the 65,536 values a 16-bit lane takes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.numel()
        words = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 3) // 4,), dtype=torch.int64)
        keep = words.view(torch.int16)[:n].view(x.shape) >= -32768 + self.lanes_dropped
        return torch.where(keep, x, 0) * (65536 / (65536 - self.lanes_dropped))


@contextlib.contextmanager
def _swapped(model, on: bool, plain):
    """``model``'s LoRA dropout modules as they are (``on``) or replaced by ``plain(p)`` meanwhile."""
    kept = [(m, name, m.lora_dropout[name]) for m in model.modules()
            if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict) for name in m.lora_dropout]
    if not on:
        for m, name, fast in kept:
            replacement = plain(fast.p)
            replacement.train(fast.training)
            m.lora_dropout[name] = replacement
    try:
        yield
    finally:
        for m, name, fast in kept:
            m.lora_dropout[name] = fast


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kernel", default="dropout", choices=("dropout", "dropout-draw", "attention", "lora", "fused", "softmax",
                                                             "causal-blocks", "head-gemm",
                                                             "head-blocks"),
                   help="the kernel to switch (default dropout)")
    p.add_argument("--reps", type=int, default=12, help="passes with the kernel on, and as many off")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--pool", type=int, default=256)
    p.add_argument("--all-linear", action="store_true", help="LoRA on every linear layer instead of q/v")
    p.add_argument("--longest", action="store_true",
                   help="the pool's longest batch instead of the first (with --kernel attention: a batch longer "
                        "than the fp32 limit of the short attention, which bf16 takes)")
    p.add_argument("--near", type=int, metavar="TOKENS",
                   help="the pool's batch whose length is nearest TOKENS instead of the first")
    p.add_argument("--model", default="smollm2-135m-instruct", help="the model to train (default SmolLM2)")
    a = p.parse_args(argv)

    from transformers.utils import logging as hf_logging

    from instructlab import cpu_kernels, models

    hf_logging.set_verbosity_error()
    model_name = a.model
    examples = tt.load_examples(model_name, tt.REPO / "data/kestrel/train.jsonl", a.pool)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = tt.build("c", model_name, examples, a.batch_size, 1, Path(tmp), tt.lora_targets(a.all_linear))
    trainer.model.train()
    batches = iter(trainer.get_train_dataloader())
    if a.near:
        batch = min(batches, key=lambda b: abs(b["input_ids"].shape[1] - a.near))
    else:
        batch = max(batches, key=lambda b: b["input_ids"].shape[1]) if a.longest else next(batches)
    batch = trainer._prepare_inputs(batch)
    real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    labelled = int((batch["labels"][:, 1:] != -100).sum()) if "labels" in batch else "?"  # the head's tokens

    outcome: dict[bool, list[torch.Tensor]] = {}

    def one_pass(on: bool, keep: bool = False) -> tuple[float, float]:
        with switch(trainer, a.kernel, on):
            trainer.model.zero_grad(set_to_none=True)
            start, cpu = time.perf_counter(), time.process_time()
            # the trainer's precision: accelerate wraps the model's forward in this autocast only once train()
            # has prepared the model, so a forward called directly must enter it itself
            with trainer.compute_loss_context_manager(), trainer.accelerator.autocast():
                loss = trainer.compute_loss(trainer.model, dict(batch))
            loss.backward()
            took = time.perf_counter() - start, time.process_time() - cpu
            if keep:  # the loss and every trainable gradient, to compare on with off bit for bit
                outcome[on] = [loss.detach().clone()] + [q.grad.clone() for q in trainer.model.parameters()
                                                          if q.grad is not None]
            return took

    times: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    with cpu_kernels.reused_tiles(trainer.kit_lean_head):
        for on in (True, False):  # warm-up (first calls allocate, pack, and pick kernels), from one seed each
            torch.manual_seed(0)
            one_pass(on, keep=True)
        for i in range(a.reps):
            for on in ((True, False) if i % 2 == 0 else (False, True)):
                wall, used = one_pass(on)
                times[on].append(wall)
                cpu[on].append(used)
    print(f"kernel {a.kernel}: {model_name}, set-up (c), "
          f"LoRA on {'/'.join(t.split('_')[0] for t in tt.lora_targets(a.all_linear))}, batch {a.batch_size} "
          f"({real} real tokens, {labelled} labelled, {batch['input_ids'].shape[1]} long), "
          f"{models.device_settings().description}")
    if a.kernel == "fused":
        from instructlab import cpu_fused

        print(f"fused CPU kernels (instructlab.cpu_fused): {cpu_fused.status(trainer.model)}")
    print(f"loss and {len(outcome[True]) - 1} gradients, on against off from the same seed: "
          + same_bits(outcome[True], outcome[False]))
    for on in (True, False):
        print(f"{'on ' if on else 'off'}: " + ", ".join(f"{t:.3f}" for t in times[on]) + " s")
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"median forward+backward: on {on:.3f} s, off {off:.3f} s; off/on = {off / on:.2f}x")
    on, off = statistics.median(cpu[True]), statistics.median(cpu[False])
    print(f"median CPU time of this process (all its threads; a virtual machine's stolen time is not in it): "
          f"on {on:.3f} s, off {off:.3f} s; off/on = {off / on:.2f}x")


if __name__ == "__main__":
    main()
