"""How fast is response-only masking? Target: 1,800 typical conversations in under 3 s (2 CPU cores).

Uses data/kestrel/train.jsonl when it exists (repeated or cut to --n conversations), else
synthetic conversations of about 300 tokens. Prints conversations/s and total seconds and writes
them as JSON when --out is given.

    python benchmarks/masking_speed.py [--n 1800] [--model smollm2-135m-instruct] [--repeat 3] [--synthetic]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from instructlab import masking, models  # noqa: E402
from instructlab.formats import load_messages  # noqa: E402

WORDS = ("change freeze incident review runbook deployment window outage rollback service owner "
         "ticket priority escalation on-call status page maintenance capacity alert").split()


def synthetic(n: int, seed: int = 0) -> list[list[dict]]:
    """``n`` conversations of a system prompt, a question and a ~200-word answer (about 300 tokens)."""
    rng = random.Random(seed)

    def text(k):
        return " ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + "."

    return [[{"role": "system", "content": "You are the Kestrel operations assistant."},
             {"role": "user", "content": text(rng.randint(15, 40))},
             {"role": "assistant", "content": text(rng.randint(150, 230))}] for _ in range(n)]


def conversations(n: int, force_synthetic: bool = False) -> tuple[list, str]:
    path = ROOT / "data" / "kestrel" / "train.jsonl"
    if path.exists() and not force_synthetic:
        convs = load_messages(path)
        return [convs[i % len(convs)] for i in range(n)], f"{path.relative_to(ROOT)} ({len(convs)} unique)"
    return synthetic(n), "synthetic"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1800)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true", help="use ~300-token synthetic conversations")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    tok = models.load_tokenizer(args.model)
    convs, source = conversations(args.n, args.synthetic)
    masking.tokenize_with_mask(tok, convs[0])  # warm-up: template probe, jinja compile
    times, cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ds = masking.mask_dataset(tok, convs, progress=False, verify=0)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best = min(times)
    result = {"n": len(convs), "source": source, "model": args.model, "best_s": round(best, 3),
              "all_s": [round(t, 3) for t in times], "conversations_per_s": round(len(convs) / best, 1),
              "mean_tokens": round(ds.report.total_tokens / max(ds.report.n_kept, 1), 1),
              "trained_fraction": round(ds.report.trained_fraction, 3), "cpu_count": os.cpu_count(),
              "cpu_s": [round(c, 3) for c in cpu], "load_average_1min": round(os.getloadavg()[0], 2)}
    print(f"masked {result['n']} conversations ({source}, {result['mean_tokens']} tokens on average) "
          f"in {best:.2f} s (best of {args.repeat}: {result['all_s']}) = "
          f"{result['conversations_per_s']:.0f} conversations/s; target < 3 s. Process CPU time "
          f"{result['cpu_s']} s; machine load average {result['load_average_1min']} on {os.cpu_count()} cores "
          "(other work on the machine slows the wall time)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
