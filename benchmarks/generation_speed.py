"""Throughput of batched greedy generation versus one prompt at a time, in the precision the kit chose
and against the fp32 path.

    python benchmarks/generation_speed.py                       # smollm2-135m-instruct, 32 eval prompts
    python benchmarks/generation_speed.py --model tiny-random --n 8 --max-new-tokens 16
    INSTRUCTLAB_GENERATION_DTYPE=float32 python benchmarks/generation_speed.py  # the fp32 path alone
                                        # (a CPU with native bf16 generates in bf16: see docs/training.md)
    python benchmarks/generation_speed.py --profile   # and where each batched path's time goes

Every run answers the same eval prompts with the same greedy settings, interleaved chunk by chunk (the order
rotating) so that the load of a shared machine affects all alike (``--rounds 3`` repeats the batched runs three
times and adds their times up: on a host shared in bursts one round can swing a ratio by a third); throughput
counts the new tokens of the answers (not padding). Runs, in the precision ``models.device_settings()`` chose ("the path"):

* batched and one-by-one: their ratio (the kit's target is >= 4x on CPU) and how many answers are identical;
* where the path is bf16 (batch-invariant kernels, ``cpu_kernels.batch_invariant``), also batched generation
  in fp32 (the kit's path before bf16 generation, and the path of a CPU without native bf16): the bf16 / fp32
  ratio (target >= 2x). ``--fp32-one-by-one`` adds fp32 one-by-one generation, for the fp32 batched /
  one-by-one ratio. ``--plain-batched`` adds batched generation in the path's precision *without* the
  batch-invariant kernels (PyTorch's own batched attention and matmuls; answers may then depend on the batch):
  what those kernels allow at best, so how much of the bf16 / fp32 ratio batch invariance costs.
  ``--without-speedups`` adds the kit's bf16 batched path with its two bit-identical speed-ups off (the weights
  packed once for oneDNN or for the AMX kernel inside ``batch_invariant``, and ``cpu_fused.fused_generation``'s
  RMSNorm, SwiGLU and rotary kernels; the compiled decoding attention stays): their measured gain, and a check that the answers
  are the same. ``--sdpa-decoding`` adds the kit's bf16 batched path with the decoding steps' attention by
  PyTorch's SDPA, one call per sequence, instead of the compiled kernel (``cpu_fused.decode_attention``): the
  kernel's gain. Both are batch-invariant, but they round differently, so their answers differ in places.
  ``--without-amx`` adds the kit's bf16 batched path with oneDNN's call for the decoding steps' linear layers
  instead of the kit's AMX kernel (``cpu_fused.amx_linear``, used where its probe finds ``F.linear``'s bits): the
  kernel's gain, and a check that the answers are the same.

Also printed: the bf16 and fp32 matmul rates of this CPU, measured in the same run, and the share of the batched
run's time spent inside the model's forward (the rest is ``generate``'s own loop: what a decoding loop of the kit's
own could save at most). ``--out`` writes the
numbers as JSON. ``--profile`` then runs the first batch once more in each precision under ``torch.profiler``
and prints the operations that took the most CPU time, with their call counts (where the time of a decoding
step goes: matmul calls, attention calls, the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--eval-path", default=None, help="default: data/kestrel/eval.jsonl")
    ap.add_argument("--n", type=int, default=32, help="number of prompts")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0 = torch's default); on a shared, busy CPU 1 gives steadier timings")
    ap.add_argument("--fp32-one-by-one", action="store_true",
                    help="where the path is bf16, also time fp32 one-by-one generation (slow)")
    ap.add_argument("--plain-batched", action="store_true",
                    help="where the path is bf16, also time batched generation without the batch-invariant kernels")
    ap.add_argument("--without-speedups", action="store_true",
                    help="where the path is bf16, also time batched generation with the packed weights and the fused "
                         "generation kernels off (same answers expected)")
    ap.add_argument("--sdpa-decoding", action="store_true",
                    help="where the path is bf16, also time batched generation with the decoding steps' attention by "
                         "PyTorch's SDPA, one call per sequence (the kit's path before its compiled decoding kernel; "
                         "other answers expected, each path batch-invariant)")
    ap.add_argument("--without-amx", action="store_true",
                    help="where the path is bf16, also time batched generation with oneDNN's call for the decoding "
                         "steps' linear layers instead of the kit's AMX kernel (same answers expected)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the interleaved batched runs this many times (one-by-one runs once) and add up their "
                         "times: on a shared host whose load comes in bursts, 3 gives steadier ratios")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    ap.add_argument("--profile", action="store_true",
                    help="afterwards, profile one batch in each precision and print the top operations")
    args = ap.parse_args(argv)

    from pathlib import Path

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from instructlab.generate import generate_answers, generate_one_by_one
    from instructlab.models import device_settings, load_model, load_tokenizer, matmul_gflops
    from instructlab.runs import read_jsonl

    settings = device_settings()
    path = Path(args.eval_path or Path(__file__).resolve().parent.parent / "data" / "kestrel" / "eval.jsonl")
    records = read_jsonl(path)[: args.n]
    tok = load_tokenizer(args.model)
    chosen = str(settings.dtype).replace("torch.", "")
    dtypes = [chosen] + (["float32"] if settings.dtype != torch.float32 else [])
    lm = {d: load_model(args.model, dtype=d) for d in dtypes}
    for m in lm.values():
        generate_answers(m, tok, records[:2], max_new_tokens=4, progress=False)  # warm-up
    peaks = {"bfloat16": matmul_gflops(torch.bfloat16), "float32": matmul_gflops(torch.float32)}

    # (name, dtype, function, kwargs) of every timed run
    runs_ = [("batched", chosen, generate_answers, {"batch_size": args.batch_size}),
             ("one_by_one", chosen, generate_one_by_one, {})]
    if chosen != "float32":
        runs_.append(("batched", "float32", generate_answers, {"batch_size": args.batch_size}))
        if args.fp32_one_by_one:
            runs_.append(("one_by_one", "float32", generate_one_by_one, {}))
    if chosen != "float32" and args.plain_batched:
        runs_.append(("plain_batched", chosen, plain_batched, {"batch_size": args.batch_size}))
    if chosen != "float32" and args.without_speedups:
        runs_.append(("without_speedups", chosen, without_speedups, {"batch_size": args.batch_size}))
    if chosen != "float32" and args.sdpa_decoding:
        runs_.append(("sdpa_decoding", chosen, sdpa_decoding, {"batch_size": args.batch_size}))
    if chosen != "float32" and args.without_amx:
        runs_.append(("without_amx", chosen, without_amx, {"batch_size": args.batch_size}))
    answers = {(r[0], r[1]): [] for r in runs_}

    def new_tokens(texts):  # the answers' new tokens, +1 per answer for its stop token
        return sum(len(tok(a, add_special_tokens=False)["input_ids"]) + 1 for a in texts)

    seconds = {(r[0], r[1]): 0.0 for r in runs_}
    # Time inside each model's top-level forward too: the rest of a run is the generate loop's own work
    # (padding, the cache's bookkeeping, choosing the next token, stopping, decoding the text).
    # Hooks, not a wrapper around ``forward``: generate reads forward's signature to choose its arguments.
    in_forward, running, started = dict.fromkeys(seconds, 0.0), [None], [0.0]

    def forward_starts(module, args):
        started[0] = time.perf_counter()

    def forward_ends(module, args, output):
        if running[0] is not None:
            in_forward[running[0]] += time.perf_counter() - started[0]

    for m in lm.values():
        m.register_forward_pre_hook(forward_starts)
        m.register_forward_hook(forward_ends)
    # Interleaved, chunk by chunk, rotating which goes first, so that a change in the load of a shared
    # machine hits every measurement alike instead of whichever happened to run last.
    # Later rounds repeat the batched runs (the slow one-by-one runs once) and their times add up; every round
    # gives the same answers, so the first round's are compared.
    tokens = {key: 0 for key in answers}
    chunks = [records[k:k + args.batch_size] for k in range(0, len(records), args.batch_size)]
    for r in range(max(1, args.rounds)):
        for c, chunk in enumerate(chunks):
            shift = (r * len(chunks) + c) % len(runs_)
            for name, dtype, fn, kw in runs_[shift:] + runs_[:shift]:
                if r and name == "one_by_one":
                    continue
                running[0] = (name, dtype)
                t0 = time.perf_counter()
                got = fn(lm[dtype], tok, chunk, max_new_tokens=args.max_new_tokens, progress=False, **kw)
                seconds[(name, dtype)] += time.perf_counter() - t0
                running[0] = None
                tokens[(name, dtype)] += new_tokens(got)
                if not r:
                    answers[(name, dtype)] += got

    def rate(key):  # new tokens per second over every round
        return tokens[key] / seconds[key]

    def same(a, b):
        return sum(x == y for x, y in zip(answers[a], answers[b], strict=True))

    b, s = ("batched", chosen), ("one_by_one", chosen)
    result = {"model": args.model, "device": settings.description, "path": chosen, "threads": torch.get_num_threads(),
              "prompts": len(records), "rounds": max(1, args.rounds), "max_new_tokens": args.max_new_tokens,
              "batch_size": args.batch_size,
              "matmul_gflops": {k: round(v, 1) for k, v in peaks.items()},
              "batched_seconds": round(seconds[b], 2), "batched_tokens_per_s": round(rate(b), 1),
              "one_by_one_seconds": round(seconds[s], 2), "one_by_one_tokens_per_s": round(rate(s), 1),
              "ratio": round(rate(b) / rate(s), 2), "identical_answers": same(b, s),
              "batched_forward_share": round(in_forward[b] / seconds[b], 4)}
    print(f"{args.model} on {settings.description}, {result['threads']} torch threads: {len(records)} prompts, "
          f"max_new_tokens={args.max_new_tokens}, batched runs x{result['rounds']} (seconds added up)")
    print(f"  matmul 1024^3: bf16 {peaks['bfloat16']:.1f} GFLOP/s, fp32 {peaks['float32']:.1f} GFLOP/s; "
          f"path: {chosen}")
    print(f"  {chosen} batched (batch {args.batch_size}): {seconds[b]:7.1f} s  {rate(b):8.1f} tokens/s")
    print(f"  {chosen} one by one:          {seconds[s]:7.1f} s  {rate(s):8.1f} tokens/s")
    print(f"  {chosen} batched, inside the model's forward: {in_forward[b]:.1f} s = {in_forward[b] / seconds[b]:.1%}; "
          f"the generate loop's own work (padding, cache bookkeeping, next token, stopping, decoding the text): "
          f"{1 - in_forward[b] / seconds[b]:.1%}")
    if ("batched", "float32") in answers and chosen != "float32":
        f = ("batched", "float32")
        print(f"  float32 batched (batch {args.batch_size}): {seconds[f]:7.1f} s  {rate(f):8.1f} tokens/s")
        result.update(fp32_batched_tokens_per_s=round(rate(f), 1), fp32_batched_seconds=round(seconds[f], 2),
                      batched_vs_fp32_batched=round(rate(b) / rate(f), 2), identical_to_fp32_batched=same(b, f))
        if ("one_by_one", "float32") in answers:
            g = ("one_by_one", "float32")
            print(f"  float32 one by one:          {seconds[g]:7.1f} s  {rate(g):8.1f} tokens/s")
            result.update(fp32_one_by_one_tokens_per_s=round(rate(g), 1), fp32_ratio=round(rate(f) / rate(g), 2),
                          fp32_identical_answers=same(f, g))
            print(f"  float32 batched / one-by-one: {result['fp32_ratio']:.2f}x, identical answers "
                  f"{result['fp32_identical_answers']}/{len(records)}")
    print(f"  throughput ratio batched / one-by-one ({chosen}): {result['ratio']:.2f}x (target >= 4x)")
    print(f"  identical answers, batched vs one-by-one ({chosen}): {result['identical_answers']}/{len(records)}")
    if "batched_vs_fp32_batched" in result:
        print(f"  {chosen} batched / float32 batched: {result['batched_vs_fp32_batched']:.2f}x (target >= 2x); "
              f"answers identical across the two precisions: {result['identical_to_fp32_batched']}/{len(records)}")
    if ("plain_batched", chosen) in answers:
        p, f = ("plain_batched", chosen), ("batched", "float32")
        print(f"  {chosen} batched without the batch-invariant kernels: {seconds[p]:7.1f} s  {rate(p):8.1f} tokens/s "
              f"= {rate(p) / rate(f):.2f}x float32 batched; identical to one-by-one: {same(p, s)}/{len(records)}")
        result.update(plain_batched_tokens_per_s=round(rate(p), 1), plain_batched_vs_fp32_batched=round(rate(p) / rate(f), 2),
                      plain_batched_identical_answers=same(p, s))
    def without(name: str, what: str, gain: str, gain_key: str) -> None:  # the kit's path with a speed-up off
        w = (name, chosen)
        print(f"  {chosen} batched {what}: {seconds[w]:7.1f} s  {rate(w):8.1f} tokens/s; {gain} "
              f"{rate(b) / rate(w):.2f}x faster, identical answers {same(w, b)}/{len(records)}")
        result.update({f"{name}_tokens_per_s": round(rate(w), 1), gain_key: round(rate(b) / rate(w), 2),
                       f"{name}_identical_answers": same(w, b)})

    if ("without_speedups", chosen) in answers:
        without("without_speedups", "without the packed weights and fused generation kernels", "with them",
                "speedups_gain")
    if ("sdpa_decoding", chosen) in answers:
        a = ("sdpa_decoding", chosen)
        print(f"  {chosen} batched with SDPA per sequence for decoding's attention: {seconds[a]:7.1f} s  "
              f"{rate(a):8.1f} tokens/s = {rate(a) / rate(f):.2f}x float32 batched; the compiled decoding kernel "
              f"{rate(b) / rate(a):.2f}x faster; identical answers {same(a, b)}/{len(records)} (other bf16 roundings)")
        result.update(sdpa_decoding_tokens_per_s=round(rate(a), 1), sdpa_decoding_vs_fp32_batched=round(rate(a) / rate(f), 2),
                      decode_kernel_gain=round(rate(b) / rate(a), 2), sdpa_decoding_identical_answers=same(a, b))
    if ("without_amx", chosen) in answers:
        without("without_amx", "with oneDNN's call for the decoding steps' linear layers", "the AMX kernel", "amx_gain")
    if args.profile:
        for dtype in dtypes:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                generate_answers(lm[dtype], tok, records[:args.batch_size], max_new_tokens=args.max_new_tokens,
                                 batch_size=args.batch_size, progress=False)
            print(f"\n{dtype} batched, the first {min(args.batch_size, len(records))} prompts, by self CPU time:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def plain_batched(model, tokenizer, records, **kwargs):
    """``generate_answers`` with the batch-invariant kernels off (``--plain-batched``): PyTorch's batched kernels."""
    from unittest import mock

    from instructlab import cpu_kernels
    from instructlab.generate import generate_answers

    with mock.patch.object(cpu_kernels, "needs_batch_invariance", lambda _model: False):
        return generate_answers(model, tokenizer, records, **kwargs)


def without_speedups(model, tokenizer, records, **kwargs):
    """``generate_answers`` with the packed weights and the fused generation kernels off (``--without-speedups``)."""
    import contextlib
    from unittest import mock

    from instructlab import cpu_fused, cpu_kernels
    from instructlab.generate import generate_answers

    with (mock.patch.object(cpu_kernels, "_packing_matches_plain", lambda: False),
          mock.patch.object(cpu_fused, "amx_matches_plain", lambda: False),
          mock.patch.object(cpu_fused, "fused_generation", lambda _model, enabled=True: contextlib.nullcontext())):
        return generate_answers(model, tokenizer, records, **kwargs)


def without_amx(model, tokenizer, records, **kwargs):
    """``generate_answers`` with oneDNN's call for the decoding steps' linear layers (``--without-amx``)."""
    from unittest import mock

    from instructlab import cpu_fused
    from instructlab.generate import generate_answers

    with mock.patch.object(cpu_fused, "amx_matches_plain", lambda: False):
        return generate_answers(model, tokenizer, records, **kwargs)


def sdpa_decoding(model, tokenizer, records, **kwargs):
    """``generate_answers`` with the decoding steps' attention by SDPA, a call per sequence (``--sdpa-decoding``)."""
    from unittest import mock

    from instructlab import cpu_fused
    from instructlab.generate import generate_answers

    with mock.patch.object(cpu_fused, "decode_attention", lambda *args, **kw: None):
        return generate_answers(model, tokenizer, records, **kwargs)


if __name__ == "__main__":
    main()
