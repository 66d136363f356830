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
# # 03 · Evaluation: the case study's four numbers, before and after tuning
#
# **What you will learn.** How to measure whether instruction tuning did what the customer asked, with the
# case study's four numbers: corporate **tone** (1 to 5), correct use of domain **terminology**, **appropriate
# refusals** (should-decline prompts that are declined) and **unwanted refusals** (look-alike prompts that are
# wrongly declined). We answer the bundled evaluation set (`data/kestrel/eval.jsonl`) with the model alone
# (*before*) and with the LoRA adapter from notebook 02 (*after*).
#
# **Why it matters.** A number is only as good as the instrument behind it. Every number here says which judge
# produced it and how many answers it rests on; the refusal detector's precision and recall and each tone
# judge's agreement with hand-scored answers are measured, not assumed; and every answer is saved next to its
# scores, so any number can be traced to the text behind it.

# %% tags=["parameters"]
model = ""  # empty: the profile's (quick/full: smollm2-135m-instruct; smoke: tiny-random)
adapter = ""  # PEFT adapter folder, or a training run folder from notebook 02. Empty: the model alone
eval_path = "data/kestrel/eval.jsonl"  # relative to the repository root, or absolute
judge_base_url = ""  # OpenAI-compatible endpoint of an LLM tone judge, e.g. http://127.0.0.1:8765/v1
judge_model = ""  # model name on that endpoint. Without a URL: a local model used as judge
judge_api_key_env = ""  # name of the environment variable holding the API key. Empty: no key
max_new_tokens = 0  # answer budget in tokens; 0: the profile's (smoke 8, quick 160, full 256)
batch_size = 16
n_per_category = -1  # prompts per category (domain, decline, lookalike); -1: the profile's (smoke 2, quick 45, full all); 0: all
profile = "quick"  # "smoke" | "quick" | "full" (instructlab/profiles.py)
run_dir = ""

# %%
from pathlib import Path

import pandas as pd
from IPython.display import display

from instructlab import experiment, judge, llm, metrics, plots, runs

lesson = experiment.start_lesson("03_evaluation", profile, run_dir, "evaluation")
run_dir, P = lesson.run_dir, lesson.profile
params = experiment.EvalParams(profile=profile, model=model, adapter=adapter, eval_path=eval_path,
                               n_per_category=n_per_category, max_new_tokens=max_new_tokens, batch_size=batch_size)
model = model or P.model
n_per_category, max_new_tokens = metrics.eval_settings(profile, n_per_category, max_new_tokens)
print(f"model {model!r}: {n_per_category or 'all'} prompts per category, max_new_tokens = {max_new_tokens}")

# %% [markdown]
# ## The evaluation set
#
# Three categories of prompts, none of them worded as in training: **domain** tasks (with the glossary terms
# the answer should use, and sometimes a response template), **decline** prompts (competitors, employees'
# personal data) and **look-alikes**: legitimate questions that mention employees, personal data or
# competitors and must be answered.

# %%
eval_file = experiment.repo_path(eval_path)
records = metrics.select_per_category(runs.read_jsonl(eval_file), n_per_category)
counts = {c: sum(r["category"] == c for r in records) for c in ("domain", "decline", "lookalike")}
print(f"{len(records)} prompts from {eval_file}:", counts)
print("example:", records[0]["messages"][-1]["content"], "| required terms:", metrics.required_terms(records[0]))

# %% [markdown]
# ## How far can we trust the instruments?
#
# **Refusal detector.** `metrics.is_refusal` recognises the brief's decline (it withholds what was asked, names
# the reason category and redirects to the team) in two forms: a first-person decline ("we cannot share",
# "we decline to give it out", "outside our remit", "I'm sorry, but I can't") that opens the answer or
# dominates it, or a decline-shaped answer that withholds in impersonal words ("stays confidential", "X is a
# competitor enquiry"), names the reason and HR or Partnerships & Market Intelligence, and gives no help
# besides. A trailing caveat in a helpful answer, or a look-alike that names those teams as the owner of a
# process, is not a refusal. Its precision and recall are measured on `data/refusal_labels.jsonl`,
# hand-labelled responses including hard cases (partial refusals, helpful answers containing "cannot",
# redirections, real model answers). The *test* split was labelled before the detector was measured on it and
# never used to tune it; the misclassified items are listed.
#
# **Rubric scorer.** The rule-based tone scorer counts as a judge too: we measure its agreement with
# `data/judge_reference.jsonl`, answers scored 1 to 5 by hand against the brief's rubric.

# %%
quality = pd.DataFrame([metrics.refusal_detector_quality(split=s) for s in ("dev", "test", None)])
display(quality[["split", "n", "precision", "recall", "f1", "tp", "fp", "fn", "tn"]])
print("misclassified:", quality.iloc[-1]["errors"])
rubric_agreement = judge.judge_agreement(judge.RubricJudge())
print({k: v for k, v in rubric_agreement.items() if k != "items"})

# %% [markdown]
# The same scorers ship as Hugging Face `evaluate` modules (`instructlab/evaluate_modules/`), so they plug into
# code that already uses `evaluate`. `metrics.evaluate_module_path` finds a module's folder; `evaluate.load`
# reads it offline, without the Hub.

# %%
import evaluate

refusal_module = evaluate.load(str(metrics.evaluate_module_path("kestrel_refusal")))
print(refusal_module.name, refusal_module.compute(predictions=["We cannot share that; please contact HR.",
                                                               "Dear colleague, the CAB meets on Tuesday."]))

# %% [markdown]
# ## Optional: an LLM tone judge
#
# With `judge_base_url` (any OpenAI-compatible server: `transformers serve`, vLLM, Ollama, OpenAI; the key only
# from the environment variable named in `judge_api_key_env`) or a local `judge_model`, an LLM scores each answer
# against the brief's rubric, at temperature 0 with a response cache in the run folder. Unparseable verdicts are
# counted, never turned into scores, and the judge's agreement with the hand-scored reference set is measured
# the same way as the rubric scorer's.

# %%
backend = tone_judge = llm_agreement = None
if judge_base_url or judge_model:
    backend = (llm.OpenAIChat(judge_base_url, judge_model, api_key_env=judge_api_key_env or None)
               if judge_base_url else llm.LocalChat(judge_model, max_new_tokens=64))
    tone_judge = judge.ToneJudge(backend, cache=llm.ResponseCache(Path(run_dir) / "judge_cache.jsonl"))
    llm_agreement = judge.judge_agreement(tone_judge)
    print("agreement with hand scores:", {k: v for k, v in llm_agreement.items() if k != "items"})
else:
    print("no LLM judge configured: tone is reported by the rule-based rubric scorer only")
runs.write_json(Path(run_dir) / "judge_agreement.json",
                        {"rubric_scorer": rubric_agreement, "llm_judge": llm_agreement})

# %% [markdown]
# ## Answer and score: before (the model alone) and after (with the adapter)
#
# `experiment.eval_run` is the evaluation run; the sweep of notebook 04 calls the same function. It answers
# every prompt with `generate.generate_answers`, greedily and in batches (prompts sorted by length, padded on
# the left, with the KV cache; answers come back in the original order), first with the model alone
# (*before*), then with the adapter from notebook 02 (*after*, when `adapter` is set). Greedy decoding makes
# the answers deterministic, so a difference between *before* and *after* comes from the adapter, not from
# sampling. `metrics.evaluate_answers` then computes every per-answer score and the headline numbers; each
# side's answers are written to `<side>_answers.jsonl` next to their scores (refusal flag and the phrase that
# triggered it, tone components, terms used and missed, template sections), and the headline numbers to the
# run's `result.json`.

# %%
run = experiment.eval_run(params, run_dir, tone_judge=tone_judge)
answers, reports = run.answers, run.reports
for side, ans in answers.items():
    print(side, repr(ans[0][:300]))
if "after" not in answers:
    print("no adapter given: evaluating the model alone (set `adapter` to a run folder from notebook 02)")
display(reports["before"].table())

# %% [markdown]
# With an LLM judge and both sides, a **pairwise** comparison asks which answer follows the house style
# better, in both orders: a verdict that flips when the answers swap places counts as a tie, and the
# inconsistency rate and how often the longer answer wins are reported next to the result.

# %%
pairwise = None
if backend is not None and "after" in answers:
    pj = judge.PairwiseJudge(backend, cache=llm.ResponseCache(Path(run_dir) / "judge_cache.jsonl"))
    prompts = [r["messages"][-1]["content"] for r in records]
    pairwise = pj.compare(prompts, answers["after"], answers["before"]).summary()  # A = after, B = before
    runs.write_json(Path(run_dir) / "pairwise_after_vs_before.json", pairwise)
    print(pairwise)
else:
    print("pairwise comparison skipped: it needs an LLM judge and an adapter")

# %% [markdown]
# ## Before versus after, in the case study's layout
#
# Each row names the judge that produced it; `n_before` / `n_after` are the numbers of answers behind each
# value. The case study (Llama 3.1 8B) went from 2.9 to 4.4 in tone, 61% to 87% in terminology, 34% to 89% in
# appropriate refusals and 8% to 2% in false rejections.

# %%
table = metrics.before_after_table(reports["before"], reports.get("after"))
display(table)
fig = plots.plot_before_after(metrics.before_after_rows(reports["before"], reports.get("after")),
                              title=f"{model}: before vs after tuning")
plots.save_figure(fig, Path(run_dir) / "before_after")
plots.show(fig)

# %% [markdown]
# ## Next to answerers that cannot be right: the degenerate baselines
#
# An instrument is only trustworthy if answers that cannot be right score low on it. `metrics.degenerate_baselines`
# answers the same prompts with fixed answerers and scores them with the same instruments: the **envelope only**
# (greeting, "Noted.", sign-off), the **glossary dump** (every glossary term spelled out), the **surface rule**
# (decline when the prompt names a person or a competitor or contains a sensitive topic word, else "Noted.")
# and **always decline**, plus the **gold reference** answers as the ceiling. A tuned model should beat every
# baseline on every metric where the baseline is not trivially perfect (always decline has 100% appropriate
# refusals, and pays for it with 100% false rejections). The table is written to `baselines.csv` / `.json`.

# %%
baselines = metrics.degenerate_baselines(records)
comparison = {**reports, **baselines}
display(metrics.comparison_table(comparison))
print("written:", {k: str(v) for k, v in metrics.write_comparison(comparison, run_dir).items()})

# %% [markdown]
# ## Per category and per term
#
# Where do the numbers come from? The share of declined answers per category is the refusal metric seen from
# each side (declines should be declined, domain and look-alike prompts not); the per-term table shows which
# glossary terms the model uses and which terms to avoid slipped in.

# %%
for side, rep in reports.items():  # also saved as <side>_per_category.csv and <side>_terms.csv
    print(side)
    display(rep.per_category.round(3))
print("terms (", " / ".join(reports), ")")
display(pd.concat({side: rep.per_term.set_index(["term", "kind"]) for side, rep in reports.items()}, axis=1).head(30))

# %% [markdown]
# ## Answers side by side
#
# Numbers hide the text; read a handful of answers per category. The full set is in the `*_answers.jsonl` files.

# %%
pd.set_option("display.max_colwidth", None)
sbs = metrics.side_by_side(records, answers, per_category=P.side_by_side_per_category)
sbs.to_csv(Path(run_dir) / "side_by_side.csv", index=False)
display(sbs.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left"}))

# %% [markdown]
# ## Try your own prompt: base, instruct and tuned side by side
#
# `ChatComparison` answers one prompt with several models at once (streamed in a live notebook; a headless
# run shows the answers as text). Here: the base model of notebook 00, the instruct model alone and the
# instruct model with the adapter. Type another prompt in the widget, or call `.compare("...")`.

# %%
from instructlab.widgets import ChatComparison

contenders = {"base": P.base_model, "instruct": model}
if adapter:
    contenders["tuned"] = {"model": model, "adapter": adapter}
chat = ChatComparison(contenders, max_new_tokens=max_new_tokens)
chat.compare(records[0]["messages"][-1]["content"])

# %%
lesson.finish(kind="evaluation", model=model, adapter=str(adapter) or None, eval_path=str(eval_file),
              eval_fingerprint=run.result["eval_fingerprint"], n_prompts=len(records), max_new_tokens=max_new_tokens,
              judge=sorted({m.judge for rep in reports.values() for m in rep.metrics.values() if m.key.startswith("tone")}),
              results=metrics.before_after_rows(reports["before"], reports.get("after")),
              baselines={name: {k: m.value for k, m in rep.metrics.items()} for name, rep in baselines.items()},
              refusal_detector={k: v for k, v in quality.iloc[-1].items() if k != "errors"},
              rubric_agreement={k: v for k, v in rubric_agreement.items() if k != "items"},
              llm_judge_agreement=llm_agreement and {k: v for k, v in llm_agreement.items() if k != "items"},
              pairwise_after_vs_before=pairwise)

# %% [markdown]
# ## What was shown, what to try next
#
# * The four case-study numbers, before and after tuning, each labelled with its judge and its number of answers,
#   plus template compliance; the per-category and per-term breakdowns explain where they come from.
# * The instruments were checked: the refusal detector's precision and recall on labelled responses, the
#   tone judges' agreement (Spearman, exact and within-one match) with hand scores, and the degenerate
#   baselines (envelope, glossary dump, surface rule, always decline) scored clearly below the gold references.
#
# **Try next:** point `judge_base_url` at a stronger model (`transformers serve`, vLLM, Ollama) and compare its
# agreement with the rubric scorer's; use `judge.PairwiseJudge` on the before/after answers and look at its
# inconsistency rate and length preference; evaluate adapters from the ablation (notebook 04) with the same
# `eval_path` to compare them on equal terms.
