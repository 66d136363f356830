"""Training throughput on this machine: TRL's defaults vs TRL tuned by hand vs the kit's defaults.

Same model (smollm2-135m-instruct), same Kestrel training examples, same per-device batch size and LoRA
(r=16 on q_proj/v_proj) in every set-up; only what differs between them is changed:

  (a) TRL SFTTrainer defaults          bf16 autocast + activation checkpointing on, random batches, fp32
                                       weights (``use_cpu=True`` is needed on a CPU box, else SFTConfig raises)
  (b) TRL, bf16 and checkpointing off  fp32, random batches, padded to the longest in each batch
  (c) the kit's defaults               ``instructlab.train`` settings: the precision
                                       ``models.device_settings()`` chose for this CPU, no checkpointing,
                                       length-grouped batches, the LM head on labelled positions only, the
                                       kit's CPU kernels (``instructlab.cpu_kernels``: lean log-probabilities,
                                       fast LoRA dropout, short attention, lean LoRA forward;
                                       ``instructlab.cpu_fused``: compiled RMSNorm, SwiGLU, rotary,
                                       masked softmax), batch lengths a multiple of 8 on bf16

and, to measure each of the kit's changes on its own (each is (c) with one change undone):

  (h) (c) with TRL's LM head on every position (``train.compact_lm_head_on_cpu`` off)
  (l) (c) with TRL's ChunkedLogProbFunction instead of ``cpu_kernels.LeanLogProb``
  (d) (c) with PyTorch's ``nn.Dropout`` as LoRA dropout instead of ``cpu_kernels.FastDropout``
  (s) (c) with transformers' SDPA attention on every sequence instead of ``cpu_kernels.short_attention_forward``
  (k) (c) with the short attention over the whole causal square, not in causal blocks of queries
      (``cpu_kernels.CAUSAL_BLOCK`` off), up to the whole square's limit (256 tokens in fp32, 512 in bf16)
  (r) (c) with PEFT's LoRA forward instead of ``cpu_kernels.lean_lora_forward``
  (e) (c) with PyTorch's element-wise operations for RMSNorm, SwiGLU, the rotary embedding and attention's masked
      softmax instead of ``instructlab.cpu_fused``'s compiled kernels
  (p) (c) with each batch padded to its longest sequence alone, not to a multiple of 8 (``train.pad_multiple``;
      bf16 machines only: oneDNN builds a matmul kernel per shape)
  (w) (c) with the frozen base weights stored in fp32 instead of bf16 (bf16 machines only)
  (f) (c) forced to fp32 (``INSTRUCTLAB_DTYPE=float32``): the kit on a CPU without native bf16
  (g) (f) with TRL's LM head on every position: the kit's fp32 path before the compact head

Printed per set-up: tokens/s (real, non-padding tokens per second over the timed steps; the first step is
a warm-up and not timed), padding fraction, achieved GFLOP/s (useful model FLOPs per second: every linear
layer on the real tokens, the vocabulary head only on the tokens with a label) and that rate as a share of
this machine's matmul rate *in the set-up's precision* (bf16 and fp32 matmuls are measured in the same run,
before and after). On the bf16 path it also measures a 2048^3 bf16 matmul, at the start and the end, and gives
the bf16 set-ups' shares of that rate too: on AMX CPUs oneDNN runs the 1024^3 product on one thread (as fast as
on one core) and 2048^3 on all of them, so there the 1024^3 rate is one core's. Then the measured gain of each
kept change, c/b, and last the c/a ratio.

    .venv/bin/python benchmarks/train_throughput.py [--steps 4] [--batch-size 4] [--pool 256] [--setups abchldskrepwfg]
                                                    [--all-linear]

``--all-linear`` puts LoRA on every linear layer (the quick profile's choice) instead of q/v in every set-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402


def matmul_peaks() -> dict[str, float]:
    """bf16 and fp32 1024^3 matmul GFLOP/s, measured now (``models.matmul_gflops``, best of 8)."""
    from instructlab.models import matmul_gflops

    return {"fp32": matmul_gflops(torch.float32, reps=8), "bf16": matmul_gflops(torch.bfloat16, reps=8)}


def large_bf16() -> float:
    """The bf16 2048^3 matmul rate: oneDNN runs it on every thread where its AMX heuristic keeps 1024^3 on one
    (:func:`one_thread_bf16`), so it is the rate both cores reach together there."""
    from instructlab.models import matmul_gflops

    return matmul_gflops(torch.bfloat16, n=2048, reps=8)  # best of 8, as the 1024^3 rates (matmul_peaks)


def one_thread_bf16() -> float:
    """The bf16 1024^3 matmul rate on one thread: where it equals the rate on all of them, oneDNN ran that
    matmul on one core (seen with AMX: its blocking keeps some shapes, 1024^3 among them, on one thread)."""
    from instructlab.models import matmul_gflops

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return matmul_gflops(torch.bfloat16, reps=8)
    finally:
        torch.set_num_threads(threads)


ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_targets(all_linear: bool) -> tuple[str, ...]:
    """LoRA's target modules: every linear layer (the quick profile's) or q/v (the benchmark's default)."""
    return ALL_LINEAR if all_linear else ("q_proj", "v_proj")


def load_examples(model_name: str, data: str | Path, pool: int) -> list:
    """The masked training examples every set-up draws its batches from: a seeded ``pool`` of ``data``."""
    from instructlab import formats, masking, models
    from instructlab.train import TrainConfig, select_examples

    tok = models.load_tokenizer(model_name)
    records = select_examples(formats.load_records(data), pool, seed=0)
    return masking.mask_dataset(tok, [r["messages"] for r in records], max_length=TrainConfig().max_length,
                                progress=False).examples


def useful_flops(model, real_tokens: float, trained_tokens: float, seq_len: float) -> float:
    """Model FLOPs a LoRA step needs: forward (2 per weight of every linear layer on every real token, plus
    attention scores/values; the vocabulary head only on the tokens with a label, the only ones the loss reads)
    and backward to the activations (the same again; frozen weights get no gradient). Recomputation
    (activation checkpointing, TRL's head recomputing its logits) and LoRA's own matmuls are not counted:
    they are overhead, not the work the step has to do."""
    head = model.get_output_embeddings().weight.numel()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)) - head
    cfg = model.config
    attention = 4 * cfg.num_hidden_layers * seq_len * cfg.hidden_size  # QK^T and AV, causal average ~ seq/2 x 2
    return 2 * ((2 * linear + attention) * real_tokens + 2 * head * trained_tokens)


class Turns:
    """Runs the set-ups' training loops one optimizer step at a time, in turn (each in its own process, only
    one running at any moment), so that a change in a shared machine's load hits every set-up alike instead
    of whichever ran during it. Processes, not threads: on this 2-core CPU, PyTorch's element-wise operations
    called from a second Python thread ran about 2x slower than from the main thread (measured: a 600 x 576
    bf16 ``mul`` 27 vs 59 us, a 1536-wide matmul 10% slower), which slowed every set-up by 10-25%."""

    def __init__(self, order: str, ctx):
        self.order = order
        self.cond = ctx.Condition()
        self.turn = ctx.Value("i", 0, lock=False)  # an index into order; guarded by cond
        self.done = ctx.Array("b", len(order), lock=False)

    def remaining(self) -> int:
        with self.cond:
            return len(self.order) - sum(self.done)

    def wait(self, me: str, timeout: float | None = None) -> bool:
        """Block until it is ``me``'s turn (True), or ``timeout`` seconds pass (False)."""
        i = self.order.index(me)
        with self.cond:
            return self.cond.wait_for(lambda: self.turn.value == i, timeout)

    def is_done(self, me: str) -> bool:
        with self.cond:
            return bool(self.done[self.order.index(me)])

    def pass_on(self, me: str, done: bool = False) -> None:
        with self.cond:
            i = self.order.index(me)
            if done and self.done[i]:  # already out (finished, or marked dead): the turn is not its to pass
                return
            if done:
                self.done[i] = 1
            for k in range(1, len(self.order) + 1):  # the next set-up not done, in order
                j = (i + k) % len(self.order)
                if not self.done[j]:
                    self.turn.value = j
                    break
            self.cond.notify_all()


class StepTimer:
    """TrainerCallback recording the wall time and the tokens of each optimizer step; with ``turns``, it
    also hands the CPU to the next set-up after each step (the hand-over is outside the timed span)."""

    def __init__(self, setup: str = "", turns: Turns | None = None):
        from transformers import TrainerCallback

        class _CB(TrainerCallback):
            def on_step_begin(cb, args, state, control, **kw):
                self._before = Counter(self.trainer.__dict__.get("kit_tokens", Counter()))
                self._t = time.perf_counter()

            def on_step_end(cb, args, state, control, **kw):
                self.times.append(time.perf_counter() - self._t)
                self.tokens.append(Counter(self.trainer.kit_tokens) - self._before)
                if turns is not None:
                    turns.pass_on(setup)
                    turns.wait(setup)

        self.times: list[float] = []
        self.tokens: list[Counter] = []
        self.trainer = None
        self.callback = _CB()


KIT_SETUPS = "chldskrepwfg"  # the kit's settings, with one change undone in h, l, d, s, k, r, e, p, w, f, g


def build(setup: str, model_name: str, examples, batch_size: int, steps: int, out: Path, targets=("q_proj", "v_proj")):
    """A trainer for set-up a / b / c / h / l / d / s / k / r / e / p / w / f / g on the same data; returns (trainer,
    checkpointing_on). (k) turns the causal blocks off in this process (each set-up runs in a process of its own)."""
    from peft import LoraConfig
    from transformers import set_seed
    from trl import SFTConfig

    from instructlab import masking, models
    from instructlab.train import TrainConfig, _trainer_class, pad_multiple, sft_config, to_dataset, use_cpu_kernels

    common = dict(max_steps=steps, per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
                  learning_rate=2e-4, logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
                  dataset_kwargs={"skip_prepare_dataset": True}, seed=0)
    hw = models.device_settings(dtype="float32" if setup in "fg" else None)
    if setup == "k":
        from instructlab import cpu_kernels

        cpu_kernels.CAUSAL_BLOCK.clear()
    tok = models.load_tokenizer(model_name)
    kit = setup in KIT_SETUPS
    if setup == "a":
        args = SFTConfig(output_dir=str(out / "a"), use_cpu=hw.use_cpu, **common)
    elif setup == "b":
        args = SFTConfig(output_dir=str(out / "b"), use_cpu=hw.use_cpu, bf16=False,
                         activation_checkpointing=False, **common)
    else:
        cfg = TrainConfig(max_steps=steps, batch_size=batch_size, grad_accum=1, seed=0, save_steps=10 ** 6)
        args = sft_config(cfg, hw, out / setup, progress=False)
        args.save_strategy = "no"
    set_seed(0)
    # TRL's set-ups get the weights as stored (fp32), like from_pretrained; the kit's get the kit's training
    # dtype, except (w), which stores the frozen base in the other dtype (bf16 when the kit keeps fp32).
    other = torch.bfloat16 if hw.training_dtype == torch.float32 else torch.float32
    dtype = torch.float32 if not kit else other if setup == "w" else hw.training_dtype
    model = models.load_model(model_name, dtype=dtype, for_training=True)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=list(targets),
                      task_type="CAUSAL_LM")
    multiple = None if setup == "p" else pad_multiple(hw)  # (p): each batch padded to its longest alone
    collator = masking.MaskedCollator(tok, pad_to_multiple_of=multiple) if kit and args.padding_free is False else None
    trainer = _trainer_class()(model=model, args=args, train_dataset=to_dataset(examples),
                               processing_class=tok, peft_config=lora, data_collator=collator)
    trainer.kit_group_by_length = kit and TrainConfig().batching == "group_by_length"
    use_cpu_kernels(trainer, kit, compact_head=setup not in "hg", lean_head=setup != "l", fast_dropout=setup != "d",
                    short_attention=setup != "s", lean_lora=setup != "r", fused_elementwise=setup != "e")
    return trainer, bool(args.activation_checkpointing or args.gradient_checkpointing)


def attention_dtype(trainer) -> torch.dtype:
    """The precision of the attention's scores in ``trainer``'s training: bf16 under its bf16 autocast, else fp32."""
    return torch.bfloat16 if trainer.args.bf16 else torch.float32


def causal_block(trainer) -> int:
    """The short attention's causal block in ``trainer``'s precision (0: the whole square, or SDPA)."""
    from instructlab import cpu_kernels

    if trainer.model.get_base_model().config._attn_implementation != cpu_kernels.SHORT_ATTENTION:
        return 0
    return cpu_kernels.causal_block(attention_dtype(trainer))


def run(setup: str, model_name: str, examples, batch_size: int, steps: int, out: Path,
        turns: Turns | None = None, targets=("q_proj", "v_proj")) -> dict:
    """Build and train set-up ``setup``, timing each step (taking turns with the others when ``turns``)."""
    from instructlab import cpu_fused

    if turns is not None:
        turns.wait(setup)
    try:
        trainer, ckpt = build(setup, model_name, examples, batch_size, steps, out, targets)
        timer = StepTimer(setup, turns)
        timer.trainer = trainer
        trainer.add_callback(timer.callback)
        trainer.train()
    finally:
        if turns is not None:
            turns.pass_on(setup, done=True)
    counts = trainer.kit_tokens
    first = 1 if len(timer.times) > 1 else 0  # the first step is a warm-up
    seconds = sum(timer.times[first:])
    real = sum(t["real"] for t in timer.tokens[first:])
    trained = sum(t["trained"] for t in timer.tokens[first:])
    mean_len = counts["real"] / (len(timer.times) * batch_size)
    flops = useful_flops(trainer.model.get_base_model(), real, trained, mean_len)
    weights = str(next(p for n, p in trainer.model.named_parameters() if "embed" in n).dtype).replace("torch.", "")
    return {"setup": setup, "tokens_per_s": real / seconds, "s_per_step": statistics.median(timer.times[first:]),
            "padding_fraction": 1 - counts["real"] / counts["positions"], "gflops": flops / seconds / 1e9,
            "bf16": bool(trainer.args.bf16), "checkpointing": ckpt, "steps": len(timer.times),
            "weights": weights, "compact_head": trainer.kit_compact_head, "lean_head": trainer.kit_lean_head,
            "fast_dropout": any(type(m).__name__ == "FastDropout" for m in trainer.model.modules()),
            "attention": trainer.model.get_base_model().config._attn_implementation,
            "causal_block": causal_block(trainer),
            "lean_lora": any(type(m).__name__ == "LeanLoraLinear" for m in trainer.model.modules()),
            "fused": trainer.kit_fused_rotary and cpu_fused.status(trainer.model).startswith("on"),
            "s_per_step_all": timer.times}


def _run_child(setup: str, args: tuple, turns: Turns, results) -> None:
    """A set-up's process: :func:`run`, its result (or its error, as text) sent back on ``results``."""
    try:
        *positional, targets = args
        results.put((setup, run(setup, *positional, turns=turns, targets=targets)))
    except BaseException:  # noqa: BLE001 - reported by the parent
        import traceback

        results.put((setup, traceback.format_exc()))
        turns.pass_on(setup, done=True)  # a no-op when run() already did


def run_in_turns(setups: str, args_of, between) -> dict:
    """:func:`run` for every set-up, each in a process of its own, their steps interleaved (see :class:`Turns`),
    with ``between()`` called in this process once per round. ``args_of(setup)``: run's arguments after the
    set-up, ending with ``targets``."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked OpenMP state
    turns, queue = Turns("m" + setups, ctx), ctx.Queue()
    procs = [ctx.Process(target=_run_child, args=(s, args_of(s), turns, queue), daemon=True) for s in setups]
    for proc in procs:
        proc.start()
    results: dict = {}

    def collect_dead() -> None:  # a child that died (OOM killer, crash) without reporting: out of the turns
        while not queue.empty():
            setup, result = queue.get()
            results[setup] = result
        for s, proc in zip(setups, procs):
            if proc.exitcode is not None and not turns.is_done(s):
                results.setdefault(s, f"its process exited with code {proc.exitcode} without a result")
                with turns.cond:
                    if turns.turn.value == turns.order.index(s):
                        turns.pass_on(s, done=True)
                    else:
                        turns.done[turns.order.index(s)] = 1

    def wait_for_turn() -> None:
        while not turns.wait("m", timeout=10):
            collect_dead()

    wait_for_turn()
    while turns.remaining() > 1:
        between()
        turns.pass_on("m")
        wait_for_turn()
    turns.pass_on("m", done=True)
    for proc in procs:
        while proc.is_alive() or not queue.empty():
            collect_dead()
            proc.join(timeout=1)
    collect_dead()
    failed = {s: r for s, r in results.items() if isinstance(r, str)}
    if failed:
        raise RuntimeError("set-up(s) failed:\n" + "\n".join(f"({s}) {r}" for s, r in failed.items()))
    return {s: results[s] for s in setups}


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data", default=str(REPO / "data/kestrel/train.jsonl"))
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per set-up (the first is a warm-up)")
    p.add_argument("--steps-a", type=int, default=3, help="steps for (a), which is ~17x slower on CPU")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--pool", type=int, default=256, help="examples the samplers draw batches from")
    p.add_argument("--setups", default=None, help="default: abchldsrepwfg where the kit trains in bf16 ((k) equals (c) "
                   "there while the kit keeps its causal blocks off in bf16), else abchldskre "
                   "(without bf16, (p), (w) and (f) equal (c) and (g) equals (h))")
    p.add_argument("--all-linear", action="store_true", help="LoRA on every linear layer (the quick profile's) "
                   "instead of q_proj/v_proj")
    a = p.parse_args(argv)

    import tempfile

    from transformers.utils import logging as hf_logging

    from instructlab import models

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    examples = load_examples(a.model, a.data, a.pool)
    hw = models.device_settings()
    setups = a.setups or ("abchldsrepwfg" if hw.bf16 else "abchldskre")
    targets = lora_targets(a.all_linear)
    peak = matmul_peaks()
    large = [large_bf16()] if hw.bf16 else []
    print(f"machine: {os.cpu_count()} CPU threads (torch uses {torch.get_num_threads()}), matmul 1024^3: "
          f"bf16 {peak['bf16']:.1f} GFLOP/s (one thread: {one_thread_bf16():.1f}), fp32 {peak['fp32']:.1f} GFLOP/s"
          + (f"; bf16 2048^3: {large[0]:.1f} GFLOP/s" if large else ""))
    print(f"precision path: {hw.precision} ({hw.description})")
    from instructlab import cpu_fused

    print(f"fused CPU kernels (instructlab.cpu_fused): {cpu_fused.status()}")
    print(f"model {a.model}, {len(examples)} examples in the pool, batch {a.batch_size}, LoRA r=16 on "
          f"{'/'.join(t.split('_')[0] for t in targets)}")
    print("set-ups run in turns, one optimizer step each, with the matmul rates measured between rounds, so that "
          "the machine's load hits all alike", flush=True)
    samples = [peak]

    with tempfile.TemporaryDirectory() as tmp:
        results = run_in_turns(setups, lambda s: (a.model, examples, a.batch_size, a.steps_a if s == "a" else a.steps,
                                                  Path(tmp), targets), lambda: samples.append(matmul_peaks()))
        for s, r in results.items():
            prec = "bf16" if r["bf16"] else "fp32"
            print(f"({s}) bf16={r['bf16']!s:5} weights={r['weights']:8} compact_head={r['compact_head']!s:5} "
                  f"lean_head={r['lean_head']!s:5} fast_dropout={r['fast_dropout']!s:5} lean_lora={r['lean_lora']!s:5} "
                  f"fused={r['fused']!s:5} "
                  f"attention={r['attention']} causal_block={r['causal_block']} "
                  f"checkpointing={r['checkpointing']!s:5} steps={r['steps']} {r['s_per_step']:7.2f} s/step "
                  f"{r['tokens_per_s']:8.1f} tokens/s  padding {r['padding_fraction']:5.1%}  {r['gflops']:6.1f} "
                  f"GFLOP/s = {r['gflops'] / peak[prec]:5.1%} of {prec} matmul", flush=True)
    samples.append(matmul_peaks())
    print("matmul rates measured between the rounds, GFLOP/s: "
          + ", ".join(f"bf16 {x['bf16']:.0f} / fp32 {x['fp32']:.0f}" for x in samples)
          + " (a big spread means the CPU was shared)")
    # The machine's rate is the best it showed; a low reading would flatter the shares.
    best = {k: max(x[k] for x in samples) for k in peak}
    for s, r in results.items():
        prec = "bf16" if r["bf16"] else "fp32"
        print(f"({s}) {r['gflops']:6.1f} GFLOP/s = {r['gflops'] / best[prec]:5.1%} of the best measured {prec} "
              f"matmul rate ({best[prec]:.1f} GFLOP/s)")
    if large:
        large.append(large_bf16())
        two = max(large)
        print(f"bf16 2048^3 matmul (every thread, where oneDNN keeps 1024^3 on one): {two:.1f} GFLOP/s, "
              f"{two / best['bf16']:.2f}x the 1024^3 rate; against it: "
              + ", ".join(f"({s}) {r['gflops'] / two:.1%}" for s, r in results.items() if r["bf16"]))
    base = {k: results[k]["weights"] for k in "cw" if k in results}
    gains = (("c", "h", "LM head on labelled positions only"),
             ("c", "l", "cpu_kernels.LeanLogProb instead of TRL's ChunkedLogProbFunction"),
             ("c", "d", "cpu_kernels.FastDropout instead of nn.Dropout for LoRA dropout"),
             ("c", "s", "cpu_kernels.short_attention_forward instead of SDPA for sequences <= 512 tokens"),
             ("c", "k", "the short attention in causal blocks (to 512 tokens) instead of over the whole square (256 "
                        "in fp32)"),
             ("c", "r", "cpu_kernels.lean_lora_forward instead of PEFT's LoRA forward"),
             ("c", "e", "cpu_fused's RMSNorm, SwiGLU, rotary and masked-softmax kernels instead of PyTorch's operations"),
             ("c", "p", "batch lengths padded to a multiple of 8 (oneDNN's kernels reused) instead of the longest alone"),
             ("c", "w", f"frozen base stored in {base.get('c')} rather than {base.get('w')}"),
             ("c", "f", "bf16 autocast instead of fp32"), ("f", "g", "LM head on labelled positions only, fp32"))
    for new, old, what in gains:
        if new in results and old in results:
            print(f"gain {new}/{old} = {results[new]['tokens_per_s'] / results[old]['tokens_per_s']:.2f}x: {what}")
    if "b" in results and "c" in results:
        print(f"c/b = {results['c']['tokens_per_s'] / results['b']['tokens_per_s']:.2f}")
    ratio = results["c"]["tokens_per_s"] / results["a"]["tokens_per_s"] if {"a", "c"} <= set(results) else float("nan")
    print(f"c/a = {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
