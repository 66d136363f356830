"""Where one LoRA training step of the kit goes on this CPU: step times, and a ``torch.profiler`` table by kind.

Builds ``benchmarks/train_throughput.py``'s set-up (default (c), the kit's defaults: same model, data, batch and
LoRA), trains ``--steps`` optimizer steps in this process's main thread with nothing in between, and prints
each step's wall time and tokens. With ``--profile``, steps 4 to ``steps - 1`` are profiled and their self CPU
time is grouped by kind, per step: the frozen base's matmuls by shape, the vocabulary head's matmuls, LoRA's
rank-r matmuls, the attention's batched matmuls, element-wise work on attention scores and on the head's
``tokens x vocabulary`` tiles, and every other operator by name. Then the step's useful FLOPs per second
(``train_throughput.py``'s count) as a share of the 1024^3 matmul rate measured right after, over the profiled
time and over the matmuls' time alone (the share the step would reach if everything else were free); in bf16,
the same against the 2048^3 rate too (on AMX, oneDNN runs 1024^3 on one core and 2048^3 on all of them).

    .venv/bin/python benchmarks/step_profile.py [--setup c] [--steps 10] [--all-linear] [--profile [--shapes 6]]

Uninterrupted steps are faster than the throughput benchmark's, whose set-ups take turns (each step follows
another set-up's step or a matmul measurement); compare two commits with the same command, one after the other.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput as tt  # noqa: E402  (sets the offline environment and the repository path)
import torch  # noqa: E402


def kind(event, vocab: int) -> str:
    """A profiler event's row in the table (see the module docstring)."""
    shapes = event.input_shapes
    first = shapes[0] if shapes else []
    if event.key in ("aten::mm", "aten::addmm") and len(shapes) >= 2:
        a, b = (shapes[0], shapes[1]) if event.key == "aten::mm" else (shapes[1], shapes[2])
        if len(a) == 2 and len(b) == 2:
            (m, k), (_, n) = a, b
            if vocab in (k, n):
                return "matmul: vocabulary head"
            if min(m, k, n) <= 64:  # a rank-r operand (tokens are hundreds per batch)
                return "matmul: LoRA (rank r)"
            return f"matmul: base {k} -> {n}"
    if event.key == "aten::bmm":
        return "matmul: attention (bmm)"
    if len(first) == 2 and vocab in first:
        return f"{event.key} on head tiles"
    if len(first) == 5:
        return f"{event.key} on attention scores"
    return event.key


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setup", default="c", help="a train_throughput.py set-up letter (default c, the kit)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--pool", type=int, default=256)
    p.add_argument("--all-linear", action="store_true", help="LoRA on every linear layer instead of q/v")
    p.add_argument("--profile", action="store_true", help="profile steps 4 to steps-1 and print the table")
    p.add_argument("--rows", type=int, default=30, help="table rows")
    p.add_argument("--shapes", type=int, default=0, metavar="N",
                   help="with --profile, also list the input shapes of the N costliest operators that are not matmuls")
    a = p.parse_args(argv)
    if a.profile and a.steps < 5:
        p.error("--profile needs --steps 5 or more (steps 1 to 3 warm up)")

    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging

    from instructlab import models

    hf_logging.set_verbosity_error()
    model = "smollm2-135m-instruct"
    examples = tt.load_examples(model, tt.REPO / "data/kestrel/train.jsonl", a.pool)
    targets = tt.lora_targets(a.all_linear)
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True)
    profiled = range(4, a.steps) if a.profile else range(0)
    times: list[float] = []
    step_tokens: list[collections.Counter] = []  # real and trained tokens of each step

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if len(times) + 1 == profiled.start:
                prof.__enter__()
            self.before = collections.Counter(trainer.__dict__.get("kit_tokens", {}))
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)
            step_tokens.append(collections.Counter(trainer.kit_tokens) - self.before)
            if len(times) == profiled.stop - 1:
                prof.__exit__(None, None, None)

    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = tt.build(a.setup, model, examples, a.batch_size, a.steps, Path(tmp), targets)
        trainer.add_callback(Timer())
        trainer.train()
    tokens = trainer.kit_tokens
    print(f"set-up ({a.setup}), LoRA on {'/'.join(t.split('_')[0] for t in targets)}, batch {a.batch_size}, "
          f"{models.device_settings().description}")
    print("step times, s: " + ", ".join(f"{t:.3f}" for t in times))
    timed = times[1:]
    print(f"steps 2-{len(times)}: {sum(timed):.2f} s, mean {sum(timed) / len(timed):.3f} s/step; "
          f"{tokens['real']} real tokens in all {len(times)} steps")
    if not a.profile:
        return
    steps = len(profiled)
    vocab = trainer.model.get_base_model().get_output_embeddings().weight.shape[0]
    per_kind: dict[str, float] = collections.defaultdict(float)
    calls: dict[str, float] = collections.defaultdict(float)
    by_shape = prof.key_averages(group_by_input_shape=True)
    for event in by_shape:
        per_kind[kind(event, vocab)] += event.self_cpu_time_total / 1000 / steps
        calls[kind(event, vocab)] += event.count / steps
    total = sum(per_kind.values())
    print(f"profiled steps {profiled.start}-{profiled.stop - 1}: self CPU time per step {total:.1f} ms")
    print(f"{'kind':44s} {'ms/step':>8s} {'share':>6s} {'calls':>7s}")
    for name, ms in sorted(per_kind.items(), key=lambda kv: -kv[1])[:a.rows]:
        print(f"{name:44s} {ms:8.1f} {ms / total:6.1%} {calls[name]:7.0f}")
    matmul = sum(ms for name, ms in per_kind.items() if name.startswith("matmul"))
    print(f"{'all matmuls':44s} {matmul:8.1f} {matmul / total:6.1%}")
    others = [name for name, _ in sorted(per_kind.items(), key=lambda kv: -kv[1]) if not name.startswith("matmul")]
    for name in others[:a.shapes]:  # which tensors an operator's time goes to: where it comes from in the model
        events = sorted((e for e in by_shape if kind(e, vocab) == name), key=lambda e: -e.self_cpu_time_total)
        print(f"{name}, by input shapes (ms/step, calls/step):")
        for e in events[:5]:
            print(f"    {e.self_cpu_time_total / 1000 / steps:7.1f} {e.count / steps:7.1f}  {e.input_shapes}")
    # The step's useful FLOPs (train_throughput.py's count) over its profiled time, and over its matmuls' time
    # alone: the share of the 1024^3 matmul rate the step would reach if everything but the matmuls were free.
    done = step_tokens[profiled.start - 1:profiled.stop - 1]
    real, trained = sum(t["real"] for t in done), sum(t["trained"] for t in done)
    flops = tt.useful_flops(trainer.model.get_base_model(), real, trained, real / (len(done) * a.batch_size)) / steps
    precision = torch.bfloat16 if trainer.args.bf16 else torch.float32
    peak = models.matmul_gflops(precision, reps=8)
    name = "bf16" if trainer.args.bf16 else "fp32"
    rate, matmuls_only = flops / total / 1e6, flops / matmul / 1e6  # GFLOP/s (times in ms)
    print(f"useful GFLOP/s over the profiled time: {rate:.1f} = {rate / peak:.1%} of the {name} 1024^3 matmul rate "
          f"measured now ({peak:.1f} GFLOP/s); with everything but the matmuls free: {matmuls_only:.1f} = "
          f"{matmuls_only / peak:.1%}")
    if trainer.args.bf16:  # where oneDNN keeps 1024^3 on one core (AMX), 2048^3 is the rate both cores reach
        large = tt.large_bf16()
        print(f"against the bf16 2048^3 rate measured now ({large:.1f} GFLOP/s, {large / peak:.2f}x): "
              f"{rate / large:.1%}; with everything but the matmuls free: {matmuls_only / large:.1%}")


if __name__ == "__main__":
    main()
