"""Throughput of batched greedy generation versus one prompt at a time.

    python benchmarks/generation_speed.py                       # smollm2-135m-instruct, 32 eval prompts
    python benchmarks/generation_speed.py --model tiny-random --n 8 --max-new-tokens 16

Both runs answer the same eval prompts with the same greedy settings, interleaved chunk by chunk so
that the load of a shared machine affects both alike; throughput counts the new tokens of the answers
(not padding). Prints tokens/s for each, the ratio (the kit's target is
>= 4x on CPU), and how many answers are identical. ``--out`` writes the numbers as JSON.
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
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    args = ap.parse_args(argv)

    from pathlib import Path

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from instructlab.generate import generate_answers, generate_one_by_one
    from instructlab.models import device_settings, load_model, load_tokenizer
    from instructlab.runs import read_jsonl

    path = Path(args.eval_path or Path(__file__).resolve().parent.parent / "data" / "kestrel" / "eval.jsonl")
    records = read_jsonl(path)[: args.n]
    tok, model = load_tokenizer(args.model), load_model(args.model)
    generate_answers(model, tok, records[:2], max_new_tokens=4, progress=False)  # warm-up

    def timed(fn, chunk, **kw):
        t0 = time.perf_counter()
        answers = fn(model, tok, chunk, max_new_tokens=args.max_new_tokens, progress=False, **kw)
        return answers, time.perf_counter() - t0

    # Interleaved, chunk by chunk (alternating which goes first), so that a change in the load of a
    # shared machine hits both measurements alike instead of whichever happened to run second.
    batched, single, t_b, t_s = [], [], 0.0, 0.0
    for k in range(0, len(records), args.batch_size):
        chunk = records[k:k + args.batch_size]
        runs_ = [("b", generate_answers, {"batch_size": args.batch_size}), ("s", generate_one_by_one, {})]
        for kind, fn, kw in (runs_ if (k // args.batch_size) % 2 == 0 else runs_[::-1]):
            answers, seconds = timed(fn, chunk, **kw)
            if kind == "b":
                batched, t_b = batched + answers, t_b + seconds
            else:
                single, t_s = single + answers, t_s + seconds
    n_b = sum(len(tok(a, add_special_tokens=False)["input_ids"]) + 1 for a in batched)  # +1: the stop token
    n_s = sum(len(tok(a, add_special_tokens=False)["input_ids"]) + 1 for a in single)
    result = {"model": args.model, "device": device_settings().description, "threads": torch.get_num_threads(),
              "prompts": len(records),
              "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
              "batched_seconds": round(t_b, 2), "batched_tokens_per_s": round(n_b / t_b, 1),
              "one_by_one_seconds": round(t_s, 2), "one_by_one_tokens_per_s": round(n_s / t_s, 1),
              "ratio": round((n_b / t_b) / (n_s / t_s), 2),
              "identical_answers": sum(a == b for a, b in zip(batched, single))}
    print(f"{result['model']} on {result['device']}, {result['threads']} torch threads: {len(records)} prompts, max_new_tokens={args.max_new_tokens}")
    print(f"  batched (batch {args.batch_size}): {t_b:7.1f} s  {result['batched_tokens_per_s']:8.1f} tokens/s")
    print(f"  one by one:          {t_s:7.1f} s  {result['one_by_one_tokens_per_s']:8.1f} tokens/s")
    print(f"  throughput ratio batched / one-by-one: {result['ratio']:.2f}x (target >= 4x)")
    print(f"  identical answers: {result['identical_answers']}/{len(records)}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
