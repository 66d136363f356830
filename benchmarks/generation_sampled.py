"""Where batched generation's time goes, by a sampling profiler (py-spy), which adds no cost to each call.

``cProfile`` and ``torch.profiler`` add their own cost to every call they record, and a decoding step is
thousands of small calls: they overstate Python's share. A sampling profiler looks at the stack a few hundred
times a second instead; with ``--nonblocking`` it does not even pause the process to read it (without it, each
sample stops the process: a batch of 16 prompts took 6.6 s sampled so, 3.1-3.4 s with it, 3.7 s unsampled).
Two steps (py-spy is not one of the kit's dependencies: ``pip install py-spy``):

    py-spy record --nonblocking -r 200 -f raw -o /tmp/gen.txt -- .venv/bin/python benchmarks/generation_sampled.py
    .venv/bin/python benchmarks/generation_sampled.py --summarize /tmp/gen.txt

The first runs the kit's batched generation (``generate.generate_answers``) on the first ``--n`` eval prompts,
``--repeats`` times, in the precision ``models.device_settings()`` chose; the second groups the samples taken
inside it by their innermost Python frame: the functions that call the compiled operations (oneDNN's linear
layers, the kit's kernels, SDPA, cache updates; a function's own Python lines count with it, so these shares
are upper bounds for the compiled code), and everything else (Python and small tensor operations), by file.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent

# A sample's innermost frame (py-spy shows Python frames: a compiled call shows as the Python line that made it)
# -> the compiled operation its function calls; the function's other lines count with it.
COMPILED = {
    r"OpOverloadPacket\.__call__ \(.*torch/_ops\.py": "torch.ops calls: oneDNN's linear layers, their weights' packing",
    r"^decode_attention \(.*cpu_fused\.py": "the compiled decoding attention",
    r"^rms_norm_exact \(.*cpu_fused\.py": "the exact RMSNorm (compiled)",
    r"^_swiglu_out \(.*cpu_fused\.py": "SwiGLU (compiled)",
    r"^_rotary_out \(.*cpu_fused\.py": "rotary embedding (compiled)",
    r"^invariant_attention_forward \(.*cpu_kernels\.py": "the attention function (the prompts' SDPA calls, slicing)",
    r"^_invariant_linear \(.*cpu_kernels\.py": "the row blocks of the linear layers (copies, concatenation)",
    r"^StaticLayer\.update \(.*cache_utils\.py": "KV cache updates",
}


def summarize(path: Path, inside: str = "generate_answers") -> str:
    """The share of samples (taken inside ``inside``) per compiled operation, and per file for the rest."""
    compiled: collections.Counter = collections.Counter()
    other: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if inside not in stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        name = next((label for pattern, label in COMPILED.items() if re.search(pattern, leaf)), None)
        if name is not None:
            compiled[name] += n
        else:
            where = re.search(r"\(([^()]*?):\d+\)$", leaf)
            file = where.group(1) if where else leaf
            other[file.split("site-packages/")[-1].split(str(REPO) + "/")[-1]] += n
    if not total:
        raise SystemExit(f"{path}: no samples inside {inside!r} (was it recorded with py-spy's -f raw?)")
    lines = [f"{total} samples inside {inside}"]
    for title, counter in (("compiled operations (with their wrappers' Python)", compiled),
                           ("the rest: Python and small tensor operations, by file", other)):
        lines.append(f"{title}: {sum(counter.values()) / total:.1%}")
        lines += [f"  {n / total:6.1%}  {name}" for name, n in counter.most_common(12)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--n", type=int, default=16, help="eval prompts (one batch at the default batch size)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--summarize", type=Path, help="a py-spy raw output (-f raw) to summarize instead")
    a = p.parse_args(argv)
    if a.summarize:
        print(summarize(a.summarize))
        return
    sys.path.insert(0, str(REPO))
    from instructlab.generate import generate_answers
    from instructlab.models import device_settings, load_model, load_tokenizer
    from instructlab.runs import read_jsonl

    records = read_jsonl(REPO / "data" / "kestrel" / "eval.jsonl")[:a.n]
    tok = load_tokenizer(a.model)
    model = load_model(a.model)
    print(f"{a.model} on {device_settings().description}")
    generate_answers(model, tok, records[:2], max_new_tokens=4, progress=False)  # warm-up
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        generate_answers(model, tok, records, max_new_tokens=a.max_new_tokens, batch_size=a.batch_size,
                         progress=False)
        print(f"{len(records)} prompts: {time.perf_counter() - t0:.2f} s", flush=True)


if __name__ == "__main__":
    main()
