# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data building: from documents to a validated instruction dataset
#
# **What you will learn.** The case study trained on 1,800 examples that a *teacher* LLM wrote from the
# company's internal documents, including requests the assistant must decline. This notebook walks through
# that pipeline, one step per section, with the functions of `instructlab.build`:
#
# 1. cut the documents into chunks at their Markdown headings (sized in teacher tokens);
# 2. ask the teacher for N examples per chunk as JSON, spreading the task types and adding declines
#    (competitor and personal-data requests) and look-alike questions that must still be answered;
# 3. parse what teachers really return (code fences, prose, trailing commas, truncated arrays), validate every
#    item against the schema and the house style, and keep each rejected item with its reason;
# 4. remove exact and near duplicates (MinHash) and training items that leak evaluation prompts;
# 5. look at statistics and export the dataset as chat messages, Alpaca and ShareGPT.
#
# **Why it matters.** A fine-tune is only as good as its data: a noisy, duplicated or leaking dataset wastes
# training and inflates the evaluation. The teacher step needs an OpenAI-compatible endpoint (or a local
# model) and is skipped cleanly when none is configured; the rest runs on the kit's deterministic Kestrel
# dataset (`data/kestrel`, built by `instructlab.kestrel` without any teacher), so everything below works offline.

# %% tags=["parameters"]
teacher_base_url = ""        # e.g. "http://127.0.0.1:8000/v1" (transformers serve, vLLM, OpenAI, ...)
teacher_model = ""           # the model name that server expects
teacher_api_key_env = "OPENAI_API_KEY"  # NAME of the environment variable with the key (empty: no auth)
teacher_local_model = ""     # or a local teacher: "smollm2-135m-instruct", a folder or a hub id
examples_per_chunk = 0       # 0: the profile's (4; smoke: 2)
max_chunk_tokens = 512
max_chunks = 0               # 0: the profile's (every chunk; smoke: 2)
concurrency = 4
corpus_dir = ""              # empty: data/corpus of the kit
kestrel_dir = ""             # empty: data/kestrel of the kit
profile = "quick"            # "smoke" | "quick" | "full" (instructlab/profiles.py)
run_dir = ""

# %%
import filecmp
import json

import pandas as pd
from IPython.display import display

from instructlab import build, experiment, runs
from instructlab.formats import to_alpaca, to_sharegpt
from instructlab.widgets import DatasetBrowser

lesson = experiment.start_lesson("01_data_building", profile, run_dir, "data")
run_dir, P = lesson.run_dir, lesson.profile
max_chunks, examples_per_chunk = max_chunks or P.teacher_max_chunks, examples_per_chunk or P.teacher_examples_per_chunk
corpus = experiment.repo_path(corpus_dir or "data/corpus")
kestrel_data = experiment.repo_path(kestrel_dir or "data/kestrel")
print("corpus:", corpus, "| dataset:", kestrel_data)
print(f"{max_chunks or 'every'} chunk(s), {examples_per_chunk} examples per chunk")

# %% [markdown]
# ## 1. Chunk the documents
#
# `chunk_documents` cuts at Markdown headings and packs consecutive sections of one document while they fit
# in `max_chunk_tokens`; a section that is too long alone is split at paragraphs (then sentences) and each
# piece keeps its heading breadcrumb, so the teacher always knows where an excerpt comes from. Without a
# tokenizer it counts about 4 characters per token; pass the teacher's tokenizer for exact sizes.

# %%
docs = sorted(corpus.glob("*.md"))
chunks = build.chunk_documents(docs, tokenizer=None, max_tokens=max_chunk_tokens)
table = pd.DataFrame([{"doc": c.doc, "chunk": c.id, "heading": c.heading, "tokens": c.n_tokens} for c in chunks])
table.to_csv(run_dir / "chunks.csv", index=False)
print(f"{len(docs)} documents -> {len(chunks)} chunks of at most {max_chunk_tokens} tokens")
display(table.groupby("doc").agg(chunks=("chunk", "count"), tokens=("tokens", "sum")))
print(f"--- chunk {chunks[1].id} ({chunks[1].heading}) ---\n{chunks[1].text[:700]}")

# %% [markdown]
# ## 2. What we ask the teacher
#
# `plan_task_types` spreads the requested task types over all chunks: about 15% declines (alternating
# competitor and personal-data requests, as in the case study), about 8% look-alikes (questions that *mention*
# employees or competitors but are legitimate), the rest cycling through question, summary, analysis,
# comparison, rewrite into house style and template filling. Each prompt carries the excerpt, the house
# style and the exact JSON schema we expect back.

# %%
n_chunks = min(max_chunks, len(chunks)) if max_chunks else len(chunks)
plan = build.plan_task_types(n_chunks, examples_per_chunk)
requested = pd.Series([t for p in plan for t in p]).value_counts().rename("requested")
requested.to_csv(run_dir / "requested_task_types.csv")
display(requested.to_frame())
prompt = build.teacher_prompt(chunks[0], plan[0])
excerpt, instructions = prompt[-1]["content"].split("</document>")
print(excerpt[:500], "\n[... rest of the excerpt ...]\n</document>" + instructions)

# %% [markdown]
# ## 3. What teachers really return
#
# Teachers wrap JSON in code fences, add prose, leave trailing commas and run out of tokens mid-array.
# `parse_teacher_output` repairs what can be repaired and says what it did; `validate_item` then checks the
# schema and the house style (greeting, sign-off, no exclamation marks or filler, glossary terms, and a
# redirect in every decline). Here is a typical messy answer: prose, a code fence, an off-style item and a last
# item cut off by the token limit.

# %%
good = {"task_type": "question", "instruction": "When is the standard maintenance window?", "input": "",
        "output": "Dear colleague,\n\nThe standard maintenance window (MW) is Saturday 22:00 to Sunday "
                  "04:00 UTC; see KB-1310.\n\nKind regards,\nKestrel Service Desk"}
sloppy = {"task_type": "summary", "instruction": "Summarise the CAB process.", "input": "",
          "output": "Hey! The change committee meets every Tuesday, no worries."}
messy = ("Sure, here are the examples:\n```json\n" + json.dumps([good, sloppy], indent=1)[:-2] + ",\n"
         '{"task_type": "decline", "instruction": "What does Bluefin IT charge per ser')
parsed = build.parse_teacher_output(messy)
print("repairs and losses:", parsed.problems)
display(pd.DataFrame([{"task_type": i.get("task_type"), "instruction": i.get("instruction"),
                       "verdict": build.validate_item(i)[1] or "kept"} for i in parsed.items]))

# %% [markdown]
# ## 4. Run the teacher (when one is configured)
#
# `build_dataset` runs the whole pipeline: chunks, prompts, `complete_many` (thread pool limited by
# `concurrency`, retries with backoff on timeouts and 5xx, a progress bar), parsing, validation, dedup,
# leakage check against the eval prompts, statistics and exports. Answers go to a cache in the run folder:
# run the notebook again with the same `run_dir` and it costs nothing, or resumes where an interruption
# stopped it. The API key is read from the environment variable named in `teacher_api_key_env` at call time;
# it is never written into this notebook, its outputs or the run folder.

# %%
teacher = build.make_teacher(teacher_base_url, teacher_model, teacher_api_key_env, teacher_local_model)
teacher_report = None
if teacher is None:
    print("No teacher configured (teacher_base_url / teacher_model and teacher_local_model are empty): "
          "skipping the teacher step.\nSet them in the parameters cell to build examples from the corpus; "
          "the deterministic Kestrel dataset below needs no teacher.")
else:
    print("teacher:", teacher.settings())
    teacher_report = build.build_dataset(
        docs, teacher, run_dir / "teacher", examples_per_chunk=examples_per_chunk, cache="auto",
        max_chunks=max_chunks or None, max_chunk_tokens=max_chunk_tokens, concurrency=concurrency,
        eval_path=kestrel_data / "eval.jsonl")
    display(pd.Series(teacher_report.counts, name="count").to_frame())
    display(pd.Series(teacher_report.reject_reasons, name="rejected", dtype=int).to_frame())

# %% [markdown]
# ## 5. The deterministic case-study dataset
#
# `instructlab.kestrel.build_kestrel` composes the bundled dataset from the corpus facts and the brief with
# one seeded random generator, so it needs no teacher and rebuilds byte-identically. We rebuild it into the
# run folder and compare with the committed files.

# %%
from instructlab import kestrel

fresh = kestrel.build_kestrel(run_dir / "kestrel", seed=0)
identical = {name: filecmp.cmp(path, kestrel_data / path.name, shallow=False) for name, path in fresh.items()}
runs.write_json(run_dir / "kestrel_rebuild.json", identical)
print("rebuilt into", run_dir / "kestrel")
print("byte-identical to the committed files:", identical)
train = runs.read_jsonl(kestrel_data / "train.jsonl")
noisy = runs.read_jsonl(kestrel_data / "train_noisy.jsonl")
eval_prompts = build.load_eval_prompts(kestrel_data / "eval.jsonl")
train, noisy = train[:P.data_limit or None], noisy[:P.data_limit or None]   # the profile's slice (0: all)
print(f"train: {len(train)} | train_noisy: {len(noisy)} | eval prompts: {len(eval_prompts)}")

# %% [markdown]
# ## 6. Validation report
#
# The same checks that filter teacher output, applied to whole files: format (a user and an assistant turn)
# and house style. The clean set should pass; the noisy variant labels every corrupted line (`noise`:
# typo, off_style, wrong_terms, duplicate), so we can see which kinds of noise the validator catches. Typos
# and duplicates are mostly out of its reach: duplicates are the next step's job.

# %%
summary, flagged, rejected = [], {}, {}
for name, records in [("train", train), ("train_noisy", noisy)]:
    good, rejected[name] = build.validate_records(records)
    rejects = rejected[name]
    runs.write_jsonl(run_dir / f"rejects_validation_{name}.jsonl", rejects)
    summary.append({"file": name, "records": len(records), "valid": len(good), "rejected": len(rejects)})
    flagged[name] = {r["index"]: r["reason"].split(":")[0] for r in rejects}
validation = pd.DataFrame(summary)
validation.to_csv(run_dir / "validation.csv", index=False)
display(validation)
noise = pd.Series([r.get("noise") or "clean" for r in noisy], name="noise label")
verdict = pd.Series([flagged["train_noisy"].get(i, "passed") for i in range(len(noisy))], name="validator")
crosstab = pd.crosstab(noise, verdict)
crosstab.to_csv(run_dir / "validation_vs_noise.csv")
display(crosstab)

# %% [markdown]
# ### Browse what was built and what was rejected
#
# Counts say how much; reading says why. `DatasetBrowser` pages through records, filters them by task type
# or category and switches between the chat-messages, Alpaca and ShareGPT views. In JupyterLab it is a
# widget; a headless run shows its first page as text. First the built training data:

# %%
DatasetBrowser(train, page_size=2, source="data/kestrel/train.jsonl")

# %% [markdown]
# And the noisy file's records that the validator rejected, each with its line and the reason (the
# browser lists the reasons under the records):

# %%
DatasetBrowser([r["record"] for r in rejected["train_noisy"]], page_size=2, source="rejected from train_noisy",
               problems=[{"line": r["index"] + 1, "field": r.get("stage", ""), "reason": r["reason"]}
                         for r in rejected["train_noisy"]])

# %% [markdown]
# ## 7. Duplicates and leakage
#
# `curate` removes exact duplicates (same words, case and spacing ignored), then near duplicates: datasketch
# `MinHashLSH` over word 3-grams finds pairs whose estimated Jaccard similarity is at least 0.8. It then drops
# training items that share an 8-word run (or a MinHash near match) with an evaluation prompt. Every removal
# is written to a rejects file with what it collided with. Templated data has many near duplicates (same
# answer, one detail changed): whether to keep them is a data-quality decision the counts below inform.

# %%
rows, curated = [], {}
for name, records in [("train", train), ("train_noisy", noisy)]:
    curated[name] = build.curate(records, eval_prompts)
    runs.write_jsonl(run_dir / f"rejects_curate_{name}.jsonl", curated[name].rejects)
    rows.append({"file": name, **curated[name].counts})
dedup = pd.DataFrame(rows)
dedup.to_csv(run_dir / "dedup_leakage.csv", index=False)
display(dedup)
print("lines labelled 'duplicate' in train_noisy:", sum(r.get("noise") == "duplicate" for r in noisy))
near = next((r for r in curated["train"].rejects if r["stage"] == "near_duplicate"), None)
if near:
    print(near["reason"], "\n", build.prompt_text(near["record"])[:300])

# %% [markdown]
# ## 8. Statistics
#
# Task types, categories (domain, decline, look-alike) and lengths of prompts and answers, as a JSON and CSV
# tables and as figures (PNG + SVG under `figures/`).

# %%
stats = build.dataset_stats(train)
build.write_stats(stats, run_dir)
print(f"{stats['n']} examples, decline share {stats['decline_share']:.1%}")
display(pd.DataFrame({"prompt words": stats["prompt_words"], "response words": stats["response_words"]}))
figures = build.save_stats_plots(stats, run_dir, title="kestrel train")  # shown below, saved as PNG + SVG
print("figures:", sorted(p.name for p in (run_dir / "figures").iterdir()))

# %% [markdown]
# ## 9. One example in each format
#
# The kit's canonical format is chat messages (`{"messages": [...]}` plus metadata such as `task_type`);
# `instructlab.formats` converts to Alpaca (`instruction` / `input` / `output`, with the system prompt kept)
# and ShareGPT (`conversations` with `from` / `value`). `export_dataset` writes all three.

# %%
sample = [next(r for r in train if r["task_type"] == t) for t in ("question", "decline", "template")]
exported = build.export_dataset(sample, run_dir / "examples", stem="sample")
example = sample[1]
print("messages:", json.dumps(example["messages"], indent=1, ensure_ascii=False), sep="\n")
print("\nAlpaca:", json.dumps(to_alpaca(example["messages"]), indent=1, ensure_ascii=False), sep="\n")
print("\nShareGPT:", json.dumps(to_sharegpt(example["messages"]), indent=1, ensure_ascii=False), sep="\n")
print("\nwritten:", {k: str(v.relative_to(run_dir)) for k, v in exported.items()})

# %% [markdown]
# ## 10. Hugging Face datasets as input
#
# Data often arrives as a Hugging Face dataset rather than JSONL. `formats.load_dataset_messages` takes a
# `datasets.Dataset`, a folder written by `save_to_disk` (shown here, offline), or a Hub id (which needs the
# network; offline the error names the embedded data), and maps columns to messages. Here the three sample
# records become a dataset with Alpaca-style columns `question` / `answer`, saved to the run folder and read back.

# %%
from datasets import Dataset

from instructlab.formats import load_dataset_messages

rows = [{"question": r["messages"][-2]["content"], "answer": r["messages"][-1]["content"], "task_type": r["task_type"]}
        for r in sample]
Dataset.from_list(rows).save_to_disk(str(run_dir / "sample_dataset"))
loaded = load_dataset_messages(run_dir / "sample_dataset", columns={"prompt": "question", "response": "answer"})
print(f"{len(loaded)} conversations from {run_dir / 'sample_dataset'}; the first:")
print(json.dumps(loaded[0], indent=1, ensure_ascii=False)[:600])

# %%
lesson.finish(
    parameters={"teacher_base_url": teacher_base_url, "teacher_model": teacher_model,
                "teacher_api_key_env": teacher_api_key_env, "teacher_local_model": teacher_local_model,
                "examples_per_chunk": examples_per_chunk, "max_chunk_tokens": max_chunk_tokens,
                "max_chunks": max_chunks, "corpus": str(corpus), "dataset": str(kestrel_data)},
    teacher=teacher.settings() if teacher else None,
    teacher_counts=teacher_report.counts if teacher_report else None,
    data_fingerprint=runs.fingerprint(train))

# %% [markdown]
# ## What was shown, what to try next
#
# * Documents become chunks at heading boundaries, chunks become teacher prompts with a planned mix of task
#   types, declines and look-alikes; the teacher's answers are parsed defensively and validated, and nothing is
#   dropped silently: every rejected item sits in a rejects file with its stage and reason.
# * The validator catches off-style answers and wrong terminology in the noisy variant; exact and MinHash dedup
#   catch duplicates; the leakage check confirms that no training prompt shares an 8-word run with an eval prompt.
# * The statistics show the task-type mix and the decline share the case study asked for (about 15%).
#
# **Try next:** start an OpenAI-compatible server (`transformers serve <model folder> --port 8000`, see
# `tests/test_serve.py`) and set `teacher_base_url = "http://127.0.0.1:8000/v1"` and `teacher_model` to the
# same folder path; export your key in the shell, never here. Compare the teacher's rejects with the
# deterministic set, lower the MinHash threshold in `build.curate`, then train on the result in
# `02_lora_training.py`.
