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
# # 04 · LIMA-style ablation: how much data, and which data?
#
# **What you will learn.** LIMA (Zhou et al., 2023) tuned a 65B model on 1,000 carefully chosen examples and
# matched models tuned on 52,000 Alpaca examples: *quality over quantity*. Here you test that claim on the
# Kestrel data with your own compute, and get honest error bars:
#
# * **data size**: nested random subsets (every smaller subset lies inside the larger one, same seed), so the
#   curve measures *more data*, not *different data*;
# * **quality versus quantity**: at equal size, a quality-selected subset against a random one, and the clean
#   data against its noisy variant (35% corrupted: typos, off-style answers, wrong terms, duplicates);
# * **loss masking**: loss on the responses only against full-sequence loss (published results disagree;
#   let your data decide).
#
# **How.** Each grid point calls the same two functions as notebooks 02 and 03, `experiment.train_run` and
# `experiment.eval_run`, in its own run folder (in worker processes when `workers` > 1); finished runs are
# skipped, so an interrupted sweep resumes. Every point is repeated
# over seeds and reported with a 95% interval that resamples both the seeds and the eval prompts (a two-level
# bootstrap, `ablation.summarize`), so it never leaves the metric's range. The dev split that training
# monitors is carved out of the *training* data; the eval set is never used for any choice.

# %% tags=["parameters"]
profile = "quick"  # "smoke" | "quick" | "full" (instructlab/profiles.py)
run_dir = ""       # empty: a new run folder under runs/
config = ""        # sweep YAML; empty: the profile's (configs/sweep_<profile>.yaml)
sweep_dir = ""     # empty: <run_dir>/sweep when run_dir is given, else runs/sweep-<name> (resumable)
workers = 0        # runs at once, one per GPU (on a CPU they split the cores); 0: the sweep config's

# %%
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from IPython.display import display

from instructlab import ablation, experiment, kestrel, plots, runs

explicit_run_dir = bool(run_dir)
lesson = experiment.start_lesson("04_lima_ablation", profile, run_dir, "ablation")
run_dir, P = lesson.run_dir, lesson.profile
cfg = ablation.load_sweep_config(experiment.repo_path(config) if config else P.sweep_path)
sweep_dir = Path(sweep_dir) if sweep_dir else (run_dir / "sweep" if explicit_run_dir else ablation.default_sweep_dir(cfg))
print("sweep config:", config or P.sweep, "\nsweep folder:", sweep_dir, "\nmodel:", cfg.model)

# %% [markdown]
# ## The grid
#
# The baseline variant (clean data, random subset, response-only loss) runs at every size and seed: that is
# the data-size curve. Each comparison variant runs at one size (`comparisons.size`, or its own `size`), with
# the same seeds; an explicit pair (`comparisons.pairs`, e.g. a LIMA test: a small quality-selected subset
# against a larger random one) adds the runs of both its sides. The run id names the variant, the size and the
# seed; it is also the run's folder name.

# %%
specs = ablation.grid(cfg)
grid = pd.DataFrame([{"run_id": s.run_id, **asdict(s)} for s in specs])
print(f"{len(specs)} runs: sizes {cfg.sizes} x seeds {cfg.seeds} + {len(cfg.comparisons.get('variants', []))} "
      f"comparison variants at {cfg.comparisons.get('size')} examples")
for name, v, b in ablation.explicit_pairs(cfg):
    print(f"pair {name!r}: {v.variant} n={v.size} minus {b.variant} n={b.size}")
grid

# %% [markdown]
# ## The data: dev split, nested subsets, quality scores
#
# The dev split is drawn once from the clean training data and removed from every pool. The quality score is
# a documented heuristic (see `ablation.QualityScore`): the rule-based tone rubric of `metrics.rubric_tone` on
# the answer, no terms to avoid, a sensible length, no rare (misspelt) words, and no duplicate prompt. The
# noisy file labels its corrupted lines, so we can check how much noise each selection lets through.

# %%
data = ablation.load_sweep_data(cfg)
print({name: len(pool) for name, pool in data.pools.items()}, "records per pool;", len(data.dev), "dev records")
subsets = ablation.nested_subsets(data.pools["clean"], cfg.sizes, seed=cfg.seeds[0])
ids = {n: {ablation.record_key(r) for r in recs} for n, recs in subsets.items()}
sizes = sorted(ids)
print("nested:", all(ids[a] <= ids[b] for a, b in zip(sizes, sizes[1:])),
      "| disjoint from dev:", not ids[sizes[-1]] & {ablation.record_key(r) for r in data.dev})

# %%
if "noisy" in data.pools:
    pool = data.pools["noisy"]
    scores = data.scores.setdefault("noisy", ablation.quality_scores(pool))
    by_kind = pd.DataFrame([{"noise": r.get("noise") or "clean", "score": s.total} for r, s in zip(pool, scores)])
    display(by_kind.groupby("noise")["score"].describe()[["count", "mean", "min", "max"]].round(2))
    n = cfg.comparisons.get("size", cfg.sizes[0])
    picked = {f"{sel} (seed {seed})": ablation.noise_rate(data.subset(ablation.RunSpec(n, seed, "noisy", sel), [n]))
              for sel in ("random", "quality") for seed in cfg.seeds}
    print(f"share of noisy examples in {n}-example subsets of the noisy pool (pool: {ablation.noise_rate(pool):.0%}):")
    print({k: f"{v:.0%}" for k, v in picked.items()})

# %% [markdown]
# ## Run (or resume) the sweep
#
# Each run writes `runs/<run id>/train` (`experiment.train_run`'s run folder: adapter, log history, its
# `result.json`) and `runs/<run id>/eval` (`experiment.eval_run`'s answers, scores and `result.json`).
# Runs that already succeeded with the same settings are kept; a failed run leaves its `log.txt` with the
# error in its folder. The progress lines name the run, the training step with its loss and ETA, and the
# generation.

# %%
result = ablation.run_sweep(cfg, sweep_dir, workers=workers, data=data)
print(f"{len(result.rows)} runs in {result.duration_s:.0f} s; files:", {k: v.name for k, v in result.files.items()})
if result.failed:
    raise RuntimeError("failed runs (see their run folders): " +
                       "; ".join(f"{r['run_id']}: {r.get('error')}" for r in result.failed))

# %% [markdown]
# ## Results: mean over seeds and 95% interval
#
# Shares are in % of eval prompts, tone on the 1-5 rubric. The interval of a case-study metric is a two-level
# bootstrap over seeds and prompts ("bootstrap over seeds and prompts" in the `interval method` column): each
# resample draws seeds, then eval prompts, so both sources of variance are in it, and as a mean of observed
# outcomes it stays inside the metric's range (a t-interval over two seed means runs far outside it, its factor
# is 12.7 at one degree of freedom). With two or three seeds the bootstrap sees little of the between-seed
# variance: the paired effects of notebook 05 say how many seeds a comparison needs.

# %%
table = ablation.summary_table(result.summary)
table.to_csv(run_dir / "ablation_table.csv", index=False)
runs.write_json(run_dir / "ablation_table.json", table.to_dict(orient="records"))
table

# %%
base_variant = ablation.RunSpec(0, 0, **{"data": "clean", "selection": "random", "train_on": "assistant", **cfg.baseline}).variant
untuned = next((r for r in result.rows if r["variant"] == ablation.UNTUNED), {})
fig = plots.plot_metric_vs_size(result.summary, result.rows, list(ablation.CASE_STUDY_METRICS), base_variant,
                                labels=ablation.METRIC_LABELS, reference={m: untuned.get(m) for m in ablation.CASE_STUDY_METRICS},
                                guidance={m: ablation.guidance_for(m) for m in ablation.CASE_STUDY_METRICS},
                                title=f"Data-size curve ({profile} profile; dashed: the untuned model; "
                                      "shaded: the guidance table's minimum and optimal sizes)")
plots.save_figure(fig, run_dir / "metric_vs_size")
plots.show(fig)

# %% [markdown]
# ## Where do the resolved gains stop?
#
# The curve's steps as paired effects: the baseline at each size minus the next smaller size, on the same eval
# prompts and seeds. A step whose interval excludes 0 is a *resolved* gain (or loss); a step that is not resolved
# means this sweep cannot tell its gain from none. Next to them, the row of the case study's guidance table that
# the metric belongs to (`ablation.SIZE_GUIDANCE`: tone is style, terminology and the refusal boundary are the
# new domain), the shaded spans of the plot above.

# %%
curve = ablation.size_curve_table(ablation.size_curve_verdicts(result.comparisons))
curve.to_csv(run_dir / "size_curve.csv", index=False)
runs.write_json(run_dir / "size_curve.json", curve.to_dict(orient="records"))
curve

# %% [markdown]
# ## Next to the guidance table
#
# `kestrel.GUIDANCE_TABLE` is the kit's guidance (not a measurement) on how many examples a task type needs.
# Next to it: how many examples of each task type the largest random subset actually contained. Where the
# curve above is still rising while a task type is below its minimum, more data of that type is the
# cheapest improvement.

# %%
largest = subsets[max(cfg.sizes)]
kinds = [r.get("task_type", "?") for r in largest] + ["lookalike" for r in largest if r.get("category") == "lookalike"]
seen = pd.Series(kinds).value_counts()
guidance = pd.DataFrame([{"task_type": t, **g, f"in the {max(cfg.sizes)}-example subset": int(seen.get(t, 0))}
                         for t, g in kestrel.GUIDANCE_TABLE.items()])
guidance.to_csv(run_dir / "guidance_vs_subset.csv", index=False)
runs.write_json(run_dir / "guidance_vs_subset.json", guidance.to_dict(orient="records"))
display(guidance)
lesson.finish(sweep_dir=str(sweep_dir), config=asdict(cfg), n_runs=len(result.rows))

# %% [markdown]
# ## What was shown, what to try next
#
# * Nested subsets, several seeds and an interval over seeds and prompts turn "more data helps" into a
#   measured curve with its uncertainty; the untuned model's level is the floor the curve starts from.
# * At equal size, quality-selected data can be compared with random data, clean with noisy, and response-only
#   loss with full-sequence loss, each with the same seeds.
#
# **Try next:** open `05_result_plots.py` with `ablation_dir` set to this run folder for the full set of
# figures and a Markdown report; add sizes or seeds in `configs/sweep_quick.yaml` and run the notebook again:
# finished runs are reused; the reference sweep (`configs/sweep_reference.yaml`: 30 to 800 examples, 3 seeds,
# a LIMA test; results in `docs/results/reference/`) runs this notebook and 05 with `make reference`; run the
# full grid from a terminal with
# `python -m instructlab sweep configs/sweep_full.yaml --workers <number of GPUs>`, or on a Slurm cluster, one
# job per run, with `--engine submitit --cluster slurm --partition <partition>` (`docs/sweeps.md`).
