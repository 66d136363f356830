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
# # 05 · Result plots and report
#
# **What you will learn.** How to read an ablation honestly: every point is a mean over seeds with its 95%
# interval (a bootstrap over seeds and prompts for the case-study metrics, see `ablation.SUMMARY_TEXT`) and the
# individual seeds shown, so you can see whether a difference is larger than the noise. The figures:
#
# 1. each case-study metric against the number of training examples (log x axis), with the untuned model as
#    the floor;
# 2. quality-selected versus random data at equal size; 3. clean versus noisy data; 4. response-only versus
#    full-sequence loss; 5. the loss curves of every run overlaid; 6. before versus after tuning.
#
# Each figure is saved as PNG and SVG in the run folder, and `report.md` embeds them with the results table.
#
# **Inputs** come only through files: the sweep of notebook 04 (`ablation_dir`), optionally the evaluation run
# of notebook 03 (`eval_dir`) and the training run of notebook 02 (`train_dir`).

# %% tags=["parameters"]
profile = "quick"  # "smoke" | "quick" | "full" (instructlab/profiles.py)
run_dir = ""       # empty: a new run folder under runs/
ablation_dir = ""  # run folder of notebook 04, or a sweep folder; empty: runs/sweep-<name of the profile's sweep>
eval_dir = ""      # run folder of notebook 03 for the before/after bars; empty: taken from the sweep
train_dir = ""     # run folder of notebook 02, its loss curve is drawn with the sweep's; optional

# %%
import json
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from instructlab import ablation, experiment, plots, runs

lesson = experiment.start_lesson("05_result_plots", profile, run_dir, "plots")
run_dir, P = lesson.run_dir, lesson.profile
ablation_dir = ablation_dir or ablation.default_sweep_dir(ablation.load_sweep_config(P.sweep_path))
rows, summary, config = ablation.load_results(ablation_dir)
print("sweep:", ablation.find_sweep_dir(ablation_dir), f"({len(rows)} runs)")

# %%
ok = [r for r in rows if r.get("status") == "succeeded"]
print(f"{len(ok)} of {len(rows)} runs succeeded")
metrics = [m for m in ablation.CASE_STUDY_METRICS if any(r.get(m) is not None for r in ok)]
untuned = next((r for r in ok if r["variant"] == ablation.UNTUNED), {})
baseline = ablation.RunSpec(0, 0, **{"data": "clean", "selection": "random", "train_on": "assistant",
                                     **config.get("baseline", {})}).variant
comparison_size = config.get("comparisons", {}).get("size")
figures = {}  # name -> (title, png path, caption)
table = ablation.summary_table(summary, metrics)
table.to_csv(run_dir / "results_table.csv", index=False)
runs.write_json(run_dir / "results_table.json", table.to_dict(orient="records"))
table

# %% [markdown]
# ## Paired effects: resolved or not resolved
#
# Each comparison variant minus the baseline at the same size, each explicit pair of the config (a LIMA test:
# a small quality-selected subset minus a larger random one), the baseline's largest minus its smallest size and,
# with three sizes or more, each step of the size curve, all on the same eval prompts (`comparisons.csv` of the
# sweep, `ablation.comparison_effects`). The interval resamples seeds and prompts and stays inside the metric's
# range; "resolved" means it excludes 0.

# %%
effect_rows = ablation.load_comparisons(ablation_dir)
effects = ablation.comparisons_table(effect_rows)
effects

# %%
fig = plots.plot_paired_effects(effect_rows, metrics, labels=ablation.METRIC_LABELS)
png, _ = plots.save_figure(fig, run_dir / "paired_effects")
figures["paired_effects"] = ("Paired effects", png,
                             "Every comparison of the table above: the effect (variant minus baseline on the same "
                             "prompts) and its 95% interval; filled: resolved (the interval excludes 0), hollow: "
                             "not resolved.")
plots.show(fig)

# %% [markdown]
# ### Where do the resolved gains stop?
#
# The data-size curve's steps (each size minus the next smaller one, same prompts and seeds) next to the row of
# the case study's guidance table the metric belongs to (`ablation.SIZE_GUIDANCE`).

# %%
curve = ablation.size_curve_table(ablation.size_curve_verdicts(effect_rows, metrics))
curve.to_csv(run_dir / "size_curve.csv", index=False)
curve

# %% [markdown]
# ## 1. Metric versus number of examples
#
# The line is the mean over seeds, the band its 95% interval (bootstrap over seeds and prompts), the dots the
# individual seeds; the dashed line is the untuned model. Subsets are nested, so a rising curve means that
# *adding* examples helped.

# %%
fig = plots.plot_metric_vs_size(summary, ok, metrics, baseline, labels=ablation.METRIC_LABELS,
                                reference={m: untuned.get(m) for m in metrics},
                                guidance={m: ablation.guidance_for(m) for m in metrics},
                                title="Case-study metrics versus training examples (mean over seeds, 95% interval)")
png, _ = plots.save_figure(fig, run_dir / "metric_vs_size")
figures["metric_vs_size"] = ("Metric versus number of examples", png,
                             "Nested random subsets of the clean data; mean over seeds, 95% interval (bootstrap "
                             "over seeds and prompts), one dot per seed; dashed: the untuned model; shaded: the "
                             "guidance table's minimum and optimal sizes for the metric's row (style for tone, a "
                             "moderately complex new domain for the others).")
plots.show(fig)


# %% [markdown]
# ## 2-4. Quality versus random, clean versus noisy, response-only versus full loss
#
# All at the same subset size and with the same seeds. Bars are means over seeds, error bars the 95% interval
# (bootstrap over seeds and prompts), dots the seeds. Whether two variants differ is the paired effect's question
# (the table above): it compares them on the same prompts, which two overlapping bars cannot.

# %%
def variant(**kw):
    return ablation.RunSpec(0, 0, **{"data": "clean", "selection": "random", "train_on": "assistant", **kw}).variant

comparisons = {
    "quality_vs_random": ("Quality-selected versus random (noisy pool)",
                          {variant(data="noisy"): "random", variant(data="noisy", selection="quality"): "quality-selected"}),
    "clean_vs_noisy": ("Clean versus noisy data", {baseline: "clean", variant(data="noisy"): "noisy"}),
    "masking": ("Response-only versus full-sequence loss",
                {baseline: "responses only", variant(train_on="all"): "full sequence"}),
}
present = {r["variant"] for r in ok if r["size"] == comparison_size}
for name, (title, variants) in comparisons.items():
    if not set(variants) <= present:
        print(f"skipped {name}: the sweep has no runs of {sorted(set(variants) - present)} at size {comparison_size}")
        continue
    fig = plots.plot_variant_bars(summary, ok, metrics, comparison_size, variants, labels=ablation.METRIC_LABELS,
                                  title=f"{title}, {comparison_size} examples (mean over seeds, 95% interval)")
    png, _ = plots.save_figure(fig, run_dir / name)
    figures[name] = (title, png, f"{comparison_size} examples per run, same seeds for every variant.")
    plots.show(fig)

# A LIMA-style pair (`comparisons.pairs`: a small quality-selected subset against a larger random one) as bars
for name, v, b in ablation.explicit_pairs(config):
    if v.size == b.size or not any(r["variant"] == v.variant and r["size"] == v.size for r in ok):
        continue
    bars = {(b.variant, b.size): f"{b.selection} {b.size}", (v.variant, v.size): f"{v.selection} {v.size}"}
    fig = plots.plot_variant_bars(summary, ok, metrics, v.size, bars, labels=ablation.METRIC_LABELS,
                                  title=f"{name} (mean over seeds, 95% interval)")
    png, _ = plots.save_figure(fig, run_dir / "lima")
    figures["lima"] = (name, png, f"{v.variant} at {v.size} examples against {b.variant} at {b.size}, same seeds.")
    plots.show(fig)
    break

# %% [markdown]
# ## 5. Loss curves overlaid
#
# Every run's training loss, coloured by subset size and variant. Curves that keep falling at the end had
# more to learn; compare them with the dev loss in the results table (the dev split is carved from training
# data and never overlaps the eval set).

# %%
sweep_dir = ablation.find_sweep_dir(ablation_dir)
curves = ablation.loss_curves(sweep_dir)
groups = {r["run_id"]: f"{r['variant']} n={r['size']}" for r in ok}
if train_dir and (Path(train_dir) / "log_history.jsonl").exists():
    curves["notebook 02 run"] = [{"step": r.get("step", i + 1), "loss": r["loss"]} for i, r in
                                 enumerate(runs.read_jsonl(Path(train_dir) / "log_history.jsonl")) if "loss" in r]
    groups["notebook 02 run"] = "notebook 02 run"
fig = plots.plot_loss_curves(curves, colour_by=groups, title=f"Training loss of {len(curves)} runs")
png, _ = plots.save_figure(fig, run_dir / "loss_curves")
figures["loss_curves"] = ("Loss curves overlaid", png, "Training loss per logged optimizer step, one line per run.")
plots.show(fig)

# %% [markdown]
# ## 6. Before versus after
#
# With `eval_dir` (a run of notebook 03) the bars are that run's before/after table. Otherwise they come from
# the sweep: the untuned model against the baseline runs at the largest size (mean over seeds).

# %%
from instructlab import metrics as M

ba_file = Path(eval_dir) / "before_after.json" if eval_dir else None
if ba_file is not None and ba_file.exists():
    raw = json.loads(ba_file.read_text())
    keys = [k for k in M.METRIC_ORDER if k in raw.get("before", {})]
    ba_rows = [{"metric": raw["before"][k]["label"], "unit": raw["before"][k]["unit"], "before": raw["before"][k]["value"],
                "after": raw.get("after", {}).get(k, {}).get("value")} for k in keys]
    source = f"notebook 03 run {eval_dir}"
else:
    largest = max(r["size"] for r in ok if r["variant"] == baseline)
    mean = {s["metric"]: s["mean"] for s in summary if s["variant"] == baseline and s["size"] == largest}
    ba_rows = [{"metric": ablation.METRIC_LABELS.get(m, m), "unit": "score 1-5" if "tone" in m else "share",
                "before": untuned.get(m), "after": mean.get(m)} for m in metrics]
    source = f"sweep: untuned model vs baseline at {largest} examples (mean over seeds)"
fig = plots.plot_before_after(ba_rows, title="Before versus after tuning")
png, _ = plots.save_figure(fig, run_dir / "before_after")
figures["before_after"] = ("Before versus after", png, f"Source: {source}.")
plots.show(fig)
pd.DataFrame(ba_rows)

# %% [markdown]
# ## The report
#
# `report.md` in the run folder embeds every figure next to the results table, so the whole result can be
# read (or pasted into a README) without the notebook.

# %%
intro = (f"Sweep `{config.get('name', '?')}` ({profile} profile, model `{config.get('model', '?')}`): "
         f"{len(ok)} runs, sizes {config.get('sizes')}, seeds {config.get('seeds')}. {ablation.SUMMARY_TEXT} "
         f"Results: `{sweep_dir / 'results.csv'}`.")
report = ablation.write_report(run_dir / "report.md", "LIMA-style ablation: results", intro,
                               list(figures.values()), table=table,
                               tables=[("Paired effects", effects, ablation.EFFECTS_TEXT),
                                       ("Where the resolved gains stop on the size curve", curve, ablation.SIZE_CURVE_TEXT)])
display(Markdown(report.read_text().split("## ")[0]))
lesson.finish(sweep_dir=str(sweep_dir), eval_dir=eval_dir or None, train_dir=train_dir or None,
              figures={k: str(v[1]) for k, v in figures.items()}, report=str(report))

# %% [markdown]
# ## What was shown, what to try next
#
# * Each figure puts the seeds and a 95% interval next to the mean: a gap between variants counts only when it
#   is larger than the spread between seeds.
# * The report collects the figures and the table in one Markdown file in the run folder.
#
# **Try next:** run the sweep with more seeds (`configs/sweep_quick.yaml`, then notebook 04 again: finished runs
# are reused) and watch the intervals shrink; run `configs/sweep_full.yaml` on a GPU machine for the case
# study's sizes (100 to 1,800 examples); point `ablation_dir` at a sweep over your own data.
