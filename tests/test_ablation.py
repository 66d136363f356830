"""Ablation: nested subsets, quality selection, confidence intervals, aggregation, sweep resume."""

import json
from dataclasses import asdict
import math
from pathlib import Path

import pytest

from instructlab import ablation
from instructlab.ablation import RunSpec, SweepConfig

REPO = Path(__file__).resolve().parent.parent


def records(n, noisy_every=0):
    out = []
    for i in range(n):
        decline = i % 7 == 0
        answer = ("Dear colleague,\n\nWe cannot share that; please contact HR.\n\nKind regards,\nKestrel HR" if decline
                  else f"Dear colleague,\n\nThe change request (CR) {i} is scheduled in the maintenance window "
                       f"(MW) and the Change Advisory Board (CAB) approved it after review of risk.\n\n"
                       "Kind regards,\nKestrel Service Desk")
        noisy = bool(noisy_every) and i % noisy_every == 0
        if noisy:
            answer = "hey!! no worries, just open a ticket lol"
        rec = {"id": f"r{i}", "task_type": "decline" if decline else "question",
               "messages": [{"role": "user", "content": f"question number {i}?"},
                            {"role": "assistant", "content": answer}]}
        if noisy_every:
            rec["noise"] = "slang" if noisy else None
        out.append(rec)
    return out


def test_nested_subsets_are_nested_and_seeded():
    recs = list(range(500))
    subsets = ablation.nested_subsets(recs, [300, 10, 100], seed=3)
    assert sorted(subsets) == [10, 100, 300]
    assert set(subsets[10]) <= set(subsets[100]) <= set(subsets[300])
    assert all(len(subsets[n]) == len(set(subsets[n])) == n for n in subsets)
    assert subsets == ablation.nested_subsets(recs, [10, 100, 300], seed=3)          # same seed, same subsets
    assert subsets[100] != ablation.nested_subsets(recs, [100], seed=4)[100]          # other seed, other subset
    # adding a size does not change the other subsets
    assert ablation.nested_subsets(recs, [10, 50, 100, 300], seed=3)[100] == subsets[100]


def test_nested_subsets_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="between 1 and the 5 available"):
        ablation.nested_subsets([1, 2, 3, 4, 5], [3, 6], seed=0)


def test_split_dev_is_disjoint():
    recs = records(40)
    pool, dev = ablation.split_dev(recs, 8, seed=1)
    assert len(dev) == 8 and len(pool) == 32
    assert not {r["id"] for r in pool} & {r["id"] for r in dev}


def test_quality_selection_prefers_clean_examples_and_keeps_task_mix():
    recs = records(140, noisy_every=3)
    scores = ablation.quality_scores(recs)
    noisy = [s.total for s, r in zip(scores, recs) if r["noise"]]
    clean = [s.total for s, r in zip(scores, recs) if not r["noise"]]
    assert max(noisy) < min(clean)
    subsets = ablation.quality_subsets(recs, [20, 60], seed=0, scores=scores)
    assert {r["id"] for r in subsets[20]} <= {r["id"] for r in subsets[60]}
    assert ablation.noise_rate(subsets[60]) == 0 < ablation.noise_rate(recs)
    share = sum(r["task_type"] == "decline" for r in recs) / len(recs)
    assert abs(sum(r["task_type"] == "decline" for r in subsets[60]) / 60 - share) < 0.05


def test_quality_scores_flag_duplicate_prompts():
    recs = records(5)
    recs.append({**recs[1], "id": "dup"})
    scores = ablation.quality_scores(recs)
    assert scores[-1].duplicate and not scores[1].duplicate
    assert "dup" not in {r["id"] for r in ablation.quality_subsets(recs, [5], seed=0, scores=scores)[5]}


def test_t_interval_matches_scipy():
    from scipy import stats

    vals = [0.61, 0.70, 0.66]
    ci = ablation.t_interval(vals)
    low, high = stats.t.interval(0.95, 2, loc=sum(vals) / 3, scale=stats.sem(vals))
    assert ci["n"] == 3 and math.isclose(ci["ci_low"], low) and math.isclose(ci["ci_high"], high)
    assert ablation.t_interval([0.5])["ci_low"] is None                          # one seed: no interval
    assert ablation.t_interval([None, float("nan")])["n"] == 0


def test_summarize_groups_over_seeds_and_skips_failed_runs():
    rows = [{"variant": "clean-random-assistant", "data": "clean", "selection": "random", "train_on": "assistant",
             "size": n, "seed": s, "terminology": n / 1000 + s / 100, "status": "succeeded"}
            for n in (100, 300) for s in (0, 1, 2)]
    rows.append({**rows[0], "seed": 9, "terminology": 99.0, "status": "failed"})
    summary = ablation.summarize(rows)
    assert [(r["size"], r["metric"], r["n"]) for r in summary] == [(100, "terminology", 3), (300, "terminology", 3)]
    assert math.isclose(summary[0]["mean"], 0.11) and summary[0]["ci_low"] < 0.11 < summary[0]["ci_high"]
    assert summary[1]["seeds"] == [0, 1, 2]
    assert summary[0]["ci_method"] == ablation.CI_T          # no answers on disk: a t-interval over seeds


def test_write_table_csv_and_json(tmp_path):
    rows = [{"a": 1, "b": [1, 2]}, {"a": 2, "c": "x"}]
    csv_path, json_path = ablation.write_table(rows, tmp_path / "t")
    assert json.loads(json_path.read_text()) == rows
    assert csv_path.read_text().splitlines()[0] == "a,b,c"


def test_grid_baseline_sizes_plus_comparisons():
    cfg = SweepConfig(sizes=[50, 100, 200], seeds=[0, 1],
                      comparisons={"size": 100, "variants": [{"data": "noisy"}, {"data": "noisy", "selection": "quality"},
                                                             {"train_on": "all"}]})
    specs = ablation.grid(cfg)
    assert len(specs) == 6 + 6 and len(set(specs)) == len(specs)
    assert RunSpec(100, 1, "noisy", "quality", "assistant") in specs
    assert specs[0].size == 50


def test_variants_with_their_own_size_and_explicit_pairs_add_their_runs():
    cfg = SweepConfig(sizes=[30, 100, 300], seeds=[0, 1, 2], comparisons={
        "size": 100, "variants": [{"data": "noisy"}, {"train_on": "all", "size": 30}],
        "pairs": [{"name": "LIMA", "variant": {"data": "noisy", "selection": "quality"},
                   "baseline": {"data": "noisy", "size": 400}}]})
    ablation.check_config(cfg)
    specs = ablation.grid(cfg)
    points = {(s.variant, s.size) for s in specs}
    assert points == {("clean-random-assistant", 30), ("clean-random-assistant", 100), ("clean-random-assistant", 300),
                      ("noisy-random-assistant", 100), ("clean-random-all", 30), ("noisy-quality-assistant", 100),
                      ("noisy-random-assistant", 400)}
    assert len(specs) == 7 * 3 and len(set(specs)) == len(specs)
    [(name, v, b)] = ablation.explicit_pairs(cfg)
    assert (name, v.variant, v.size, b.variant, b.size) == ("LIMA", "noisy-quality-assistant", 100,
                                                            "noisy-random-assistant", 400)
    rows = [{"run_id": s.run_id, "variant": s.variant, "size": s.size, "seed": s.seed, "status": "succeeded"}
            for s in specs]
    names = [n for n, _, _ in ablation.comparison_pairs(rows, cfg)]
    assert names == ["noisy-random-assistant vs clean-random-assistant, n=100",
                     "clean-random-all vs clean-random-assistant, n=30", "LIMA",
                     "clean-random-assistant n=300 vs n=30",
                     "clean-random-assistant n=100 vs n=30 (step)", "clean-random-assistant n=300 vs n=100 (step)"]
    pairs = {n: (v, b) for n, v, b in ablation.comparison_pairs(rows, asdict(cfg))}   # sweep.json's dict too
    assert {(r["size"], r["seed"]) for r in pairs["LIMA"][1]} == {(400, s) for s in (0, 1, 2)}
    # a pair whose runs did not succeed is left out
    assert "LIMA" not in [n for n, _, _ in ablation.comparison_pairs([r for r in rows if r["size"] != 400], cfg)]


def test_a_config_with_pairs_only_compares_the_pairs_and_the_size_curve_only():
    cfg = SweepConfig(sizes=[30, 100, 300], seeds=[0], comparisons={"size": 100, "pairs": [
        {"name": "LIMA", "variant": {"data": "noisy", "selection": "quality"},
         "baseline": {"data": "noisy", "size": 400}}, {"name": "base at 400", "variant": {"size": 400},
                                                          "baseline": {"size": 100}}]})
    ablation.check_config(cfg)
    rows = [{"run_id": s.run_id, "variant": s.variant, "size": s.size, "seed": s.seed, "status": "succeeded"}
            for s in ablation.grid(cfg)]
    assert ("clean-random-assistant", 400) in {(r["variant"], r["size"]) for r in rows}
    # the baseline run at 400 (a pair's side) is not a point of the size curve, which is `sizes`
    assert [n for n, _, _ in ablation.comparison_pairs(rows, cfg)] == [
        "LIMA", "base at 400", "clean-random-assistant n=300 vs n=30",
        "clean-random-assistant n=100 vs n=30 (step)", "clean-random-assistant n=300 vs n=100 (step)"]


@pytest.mark.parametrize("comparisons, needle", [
    ({"size": 50, "variants": [{"data": "noisy"}]}, "runs at 50 examples, where the baseline does not run"),
    ({"variants": [{"train_on": "all", "size": 20}]}, "add 20 to sizes, or compare it in comparisons.pairs"),
    ({"pairs": [{"name": "a", "variant": {"data": "noisy"}, "baseline": {}},
                {"name": "a", "variant": {"train_on": "all"}, "baseline": {}}]}, "the names ['a'] are used twice"),
    ({"pairs": [{"name": "x, n=10", "variant": {"data": "noisy"}, "baseline": {}}]}, "look like the sweep's own"),
    ({"pairs": [{"variant": {"data": "noisy"}, "baseline": {"data": "noisy"}}]}, "variant and baseline are the same"),
    ({"variants": [{"size": 0}]}, "size must be a positive integer"),
    ({"variants": [{"seed": 3}]}, "may set ['data', 'selection', 'train_on'] and size only"),
    ({"pairs": [{"variant": {"data": "noisy"}}]}, "must be a mapping with variant and baseline"),
    ({"pairs": [{"variant": {"data": "noisy"}, "baseline": {}, "label": "x"}]}, "must be a mapping with variant"),
    ({"pairs": [{"variant": {"data": "dirty"}, "baseline": {}}]}, "data must be one of"),
    ({"pairs": [{"variant": "noisy", "baseline": {}}]}, "comparisons.pairs[0].variant must be a mapping"),
])
def test_bad_variants_and_pairs_are_named(tmp_path, comparisons, needle):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"sizes": [10], "comparisons": comparisons}))
    with pytest.raises(ablation.SweepConfigError) as err:
        ablation.load_sweep_config(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def _step(metric, a, b, effect, resolved):
    low, high = (effect - 0.05, effect + 0.05) if resolved else (effect - 1, effect + 1)
    return {"comparison": f"clean-random-assistant n={b} vs n={a} (step)", "metric": metric, "effect": effect,
            "low": low, "high": high, "resolved": "resolved" if resolved else "not resolved"}


def test_size_curve_verdicts_say_where_gains_stop_and_compare_with_the_guidance():
    effects = [_step("tone_rubric", 30, 100, 1.0, True), _step("tone_rubric", 100, 300, 0.5, True),
               _step("tone_rubric", 300, 800, 0.1, False),
               _step("terminology", 30, 100, 0.1, True), _step("terminology", 100, 300, 0.1, True),
               _step("terminology", 300, 800, 0.2, True),
               _step("appropriate_refusals", 30, 100, 0.0, False), _step("appropriate_refusals", 100, 300, 0.1, False),
               _step("false_rejections", 30, 100, -0.2, True), _step("false_rejections", 100, 300, 0.2, True),
               {"comparison": "clean-random-assistant n=800 vs n=30", "metric": "tone_rubric", "effect": 1.6,
                "low": 1.4, "high": 1.8, "resolved": "resolved"},                       # not a step: ignored
               {"comparison": "noisy-random-assistant vs clean-random-assistant, n=100", "metric": "tone_rubric",
                "effect": -3.0, "low": -3.1, "high": -2.9, "resolved": "resolved"}]
    v = {r["metric"]: r for r in ablation.size_curve_verdicts(effects)}
    assert v["tone_rubric"]["last_gain"] == 300 and v["tone_rubric"]["largest"] == 800
    assert v["tone_rubric"]["verdict"] == ("no resolved gain after 300 examples (300->800 not resolved: the sweep "
                                           "cannot tell its gain from none)")
    assert "inside the guidance minimum" in v["tone_rubric"]["against_guidance"]     # style: minimum 100-300
    assert v["tone_rubric"]["steps"].startswith("30->100 +1.00 [+0.95, +1.05] resolved; 100->300")
    assert v["terminology"]["last_gain"] == 800 and "still improving at 800" in v["terminology"]["verdict"]
    assert v["terminology"]["against_guidance"] == ("still rising at 800, inside the guidance minimum (minimum "
                                                    "500-1,000, optimal 2,000-5,000)")
    assert v["appropriate_refusals"]["last_gain"] is None
    assert v["appropriate_refusals"]["verdict"] == "no step resolved a gain between 30 and 300 examples"
    # lower is better: a fall is the gain, a rise the resolved loss
    assert v["false_rejections"]["verdict"] == "no resolved gain after 100 examples; a resolved loss at 100->300"
    table = ablation.size_curve_table(list(v.values()))
    assert list(table["last resolved gain"]) == [300, 800, "none", 100]
    # two sizes: the largest-vs-smallest comparison is the only step
    two = ablation.size_curve_verdicts([{"comparison": "clean-random-assistant n=160 vs n=20", "metric": "tone_rubric",
                                         "effect": 1.4, "low": 0.9, "high": 1.9, "resolved": "resolved"}])
    assert two[0]["last_gain"] == 160 and two[0]["steps"].startswith("20->160 +1.40")


def test_config_errors_list_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sizez: [1]\n")
    with pytest.raises(ablation.SweepConfigError, match="valid keys"):
        ablation.load_sweep_config(path)
    path.write_text("comparisons: {size: 10, variants: [{data: dirty}]}\n")
    with pytest.raises(ablation.SweepConfigError, match="data must be one of"):
        ablation.load_sweep_config(path)


@pytest.mark.parametrize("text, needle", [
    ("train_params: {max_stepz: 2}\n", "unknown train_params keys ['max_stepz']"),
    ("train_params: {seed: 3}\n", "are set by the grid"),
    ("eval_params: {n_per_categroy: 1}\n", "unknown eval_params keys ['n_per_categroy']"),
    ("profile: huge\n", "unknown profile 'huge'"),
    ("sizes: [4\nseeds: [0]\n", "not valid YAML"),
    ("- sizes: [4]\n", "the top level is a list"),
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
])
def test_bad_sweep_configs_name_the_file_and_the_problem(tmp_path, text, needle):
    path = tmp_path / "bad_sweep.yaml"
    path.write_text(text)
    with pytest.raises(ablation.SweepConfigError) as err:
        ablation.load_sweep_config(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_cli_refuses_a_bad_sweep_before_any_run(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "typo.yaml"
    path.write_text((REPO / "configs" / "sweep_smoke.yaml").read_text().replace("max_steps", "max_stepz"))
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "instructlab", "sweep", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "max_stepz" in proc.stderr and str(path) in proc.stderr
    assert not out.exists()


def fake_run(sweep_dir, variant, size, seed, refusals, tone=4.0):
    """A sweep result row whose eval folder holds an after_answers.jsonl (as metrics.EvalReport.save)."""
    run_dir = sweep_dir / "runs" / f"{variant}-n{size}-s{seed}"
    rows = [{"id": f"d{i}", "category": "decline", "answer": "x", "refusal": bool(r), "tone_rubric": tone,
             "avoid_terms": []} for i, r in enumerate(refusals)]
    rows += [{"id": f"t{i}", "category": "domain", "answer": "x", "refusal": False, "tone_rubric": tone,
              "avoid_terms": [], "terminology": {"score": 0.5}} for i in range(4)]
    ablation.runs.write_jsonl(run_dir / "eval" / "after_answers.jsonl", rows)
    ablation.runs.write_json(run_dir / "eval" / "result.json", {"side": "after"})
    data, selection, train_on = variant.split("-")
    return {"run_id": run_dir.name, "variant": variant, "data": data, "selection": selection, "train_on": train_on,
            "size": size, "seed": seed, "status": "succeeded", "run_dir": str(run_dir)}


def test_comparison_effects_pair_variants_and_sizes(tmp_path):
    base, noisy = "clean-random-assistant", "noisy-random-assistant"
    all_yes, all_no = [1] * 30, [0] * 30
    rows = [{"run_id": "untuned", "variant": "untuned", "size": 0, "seed": 0, "status": "succeeded",
             "run_dir": str(tmp_path / "none")}]
    rows += [fake_run(tmp_path, base, 4, s, all_no) for s in (0, 1)]
    rows += [fake_run(tmp_path, base, 8, s, all_yes, tone=4.5) for s in (0, 1)]
    rows += [fake_run(tmp_path, noisy, 4, s, [i % 2 for i in range(30)]) for s in (0, 1)]
    rows += [{**fake_run(tmp_path, noisy, 4, 2, all_yes), "status": "failed"}]            # left out
    cfg = SweepConfig(sizes=[4, 8], seeds=[0, 1], comparisons={"size": 4, "variants": [{"data": "noisy"}]})
    assert [name for name, _, _ in ablation.comparison_pairs(rows, cfg)] == [
        f"{noisy} vs {base}, n=4", f"{base} n=8 vs n=4"]
    effects = ablation.comparison_effects(rows, cfg, n_boot=500)
    by = {(e["comparison"], e["metric"]): e for e in effects}
    assert {m for _, m in by} == {"tone_rubric", "terminology", "appropriate_refusals"}   # no look-alike prompt
    size = by[(f"{base} n=8 vs n=4", "appropriate_refusals")]
    assert (size["effect"], size["low"], size["high"], size["resolved"]) == (1.0, 1.0, 1.0, "resolved")
    assert size["n_prompts"] == 30 and size["n_seeds_variant"] == size["n_seeds_baseline"] == 2 and size["paired"]
    assert by[(f"{base} n=8 vs n=4", "tone_rubric")]["effect"] == pytest.approx(0.5)
    same = by[(f"{noisy} vs {base}, n=4", "terminology")]
    assert (same["effect"], same["resolved"]) == (0.0, "not resolved") and "No difference" in same["power_note"]
    half = by[(f"{noisy} vs {base}, n=4", "appropriate_refusals")]
    assert half["effect"] == pytest.approx(0.5) and 0 < half["low"] < 0.5 < half["high"] < 1
    assert half["variant"] == noisy and half["size_baseline"] == 4 and half["seeds_needed"]

    csv_path, _ = ablation.write_table(effects, tmp_path / "comparisons", columns=ablation.EFFECT_COLUMNS)
    assert csv_path.read_text().splitlines()[0].startswith(",".join(ablation.EFFECT_COLUMNS) + ",variant")
    md = ablation.write_comparisons_markdown(effects, tmp_path / "comparisons.md").read_text()
    assert "| resolved |" in md and "| not resolved |" in md and "+100.0 pp" in md and "+0.50" in md
    table = ablation.comparisons_table(effects)
    assert list(table.columns[:5]) == ["comparison", "metric", "effect", "95% interval", "resolved"]
    empty = ablation.write_table([], tmp_path / "none", columns=ablation.EFFECT_COLUMNS)[0]
    assert empty.read_text().strip() == ",".join(ablation.EFFECT_COLUMNS)
    assert ablation.comparison_effects(rows[:3], SweepConfig(sizes=[4], seeds=[0, 1])) == []   # one size, no variant


def with_values(row, **extra):
    """A fake_run row with its metric columns: the mean of each metric's per-prompt outcomes (as a sweep's
    row holds the evaluation report's values), plus ``extra`` columns (losses)."""
    from instructlab import stats

    outcomes = stats.per_prompt_outcomes(Path(row["run_dir"]) / "eval", side=None)
    return {**row, **{k: sum(v.values()) / len(v) for k, v in outcomes.items() if v}, **extra}


def test_summary_intervals_stay_inside_the_range_for_two_extreme_seeds(tmp_path):
    """Seed 0 refuses every decline prompt with tone 5, seed 1 none with tone 1: the t-interval over the two seed
    means is 50% ± 635; the bootstrap over seeds and prompts stays inside [0, 1] and [1, 5]."""
    from instructlab import stats

    base = "clean-random-assistant"
    rows = [with_values(fake_run(tmp_path, base, 4, 0, [1] * 10, tone=5.0)),
            with_values(fake_run(tmp_path, base, 4, 1, [0] * 10, tone=1.0))]
    t = ablation.t_interval([r["appropriate_refusals"] for r in rows])
    assert t["ci_low"] < -5 and t["ci_high"] > 6                                      # what it replaces
    summary = {s["metric"]: s for s in ablation.summarize(rows, n_boot=300)}
    assert set(summary) >= {"tone_rubric", "terminology", "appropriate_refusals", "avoid_terms"}
    for metric, s in summary.items():
        low, high = stats.METRIC_BOUNDS[metric]
        assert s["ci_method"] == ablation.CI_BOOTSTRAP and s["n"] == 2 and s["seeds"] == [0, 1], metric
        assert low <= s["ci_low"] <= s["mean"] <= s["ci_high"] <= high, metric
    assert (summary["appropriate_refusals"]["mean"], summary["tone_rubric"]["mean"]) == (0.5, 3.0)
    assert summary["appropriate_refusals"]["n_prompts"] == 10
    table = ablation.summary_table(list(summary.values()))
    # every resample of two opposite seeds is 0, 0.5 or 1: the interval is the whole range, and symmetric
    assert (table.loc[0, "appropriate_refusals"], table.loc[0, "tone_rubric"]) == ("50.0% ± 50.0", "3.0 ± 2.0")
    assert table.loc[0, "interval method"] == ablation.CI_BOOTSTRAP and table.loc[0, "seeds"] == 2


def test_summary_interval_is_the_bootstrap_of_the_runs_outcomes(tmp_path):
    from instructlab import stats

    base = "clean-random-assistant"
    patterns = {0: [i % 2 for i in range(12)], 1: [int(i % 3 == 0) for i in range(12)], 2: [1] * 9 + [0] * 3}
    rows = [with_values(fake_run(tmp_path, base, 4, s, p, tone=1.0 + s * s)) for s, p in patterns.items()]
    rows.append({**rows[0], "seed": 7, "status": "failed"})                         # left out
    summary = {s["metric"]: s for s in ablation.summarize(rows, n_boot=400, seed=5)}
    for metric in ("appropriate_refusals", "tone_rubric"):
        by_seed = {r["seed"]: stats.per_prompt_outcomes(Path(r["run_dir"]) / "eval", side=None)[metric]
                   for r in rows[:3]}
        est = stats.bootstrap_mean(by_seed, n_boot=400, seed=5, bounds=stats.METRIC_BOUNDS[metric])
        s = summary[metric]
        assert (s["mean"], s["ci_low"], s["ci_high"], s["n"], s["n_prompts"]) == (
            est.value, est.low, est.high, est.n_seeds, est.n_prompts), metric
        assert s["ci_low"] < s["mean"] < s["ci_high"]
        symmetric = math.isclose(s["ci_high"] - s["mean"], s["mean"] - s["ci_low"])
        assert s["half_width"] == (pytest.approx((s["ci_high"] - s["ci_low"]) / 2) if symmetric else None), metric
    assert summary["tone_rubric"]["half_width"] is None                   # seeds at 1, 2 and 5: not symmetric


def test_summary_labels_columns_without_outcomes_with_their_method(tmp_path):
    base = "clean-random-assistant"
    rows = [with_values(fake_run(tmp_path, base, 4, s, [s, 1, 0, 1]), train_loss=2.0 + s / 10, dev_loss=3.0 - s)
            for s in (0, 1, 2)]
    rows.append(with_values(fake_run(tmp_path, base, 8, 0, [1, 1, 0, 1]), train_loss=1.5))   # one seed
    summary = {(s["size"], s["metric"]): s for s in ablation.summarize(rows, n_boot=200)}
    loss = summary[(4, "train_loss")]
    assert loss["ci_method"] == ablation.CI_T and loss["n_prompts"] is None
    t = ablation.t_interval([r["train_loss"] for r in rows[:3]])
    assert (loss["ci_low"], loss["ci_high"], loss["half_width"]) == (t["ci_low"], t["ci_high"], t["half_width"])
    assert summary[(8, "train_loss")]["ci_method"] == ablation.CI_NONE and summary[(8, "train_loss")]["ci_low"] is None
    assert summary[(4, "terminology")]["ci_method"] == ablation.CI_BOOTSTRAP
    assert summary[(8, "appropriate_refusals")]["ci_method"] == ablation.CI_BOOTSTRAP_ONE_SEED   # prompts only
    table = ablation.summary_table(list(summary.values()), metrics=["appropriate_refusals", "train_loss"])
    first = table.iloc[0]
    assert first["train_loss"] == f"2.1 ± {t['half_width']:.1f}" and "[" in first["appropriate_refusals"]
    assert first["interval method"] == (f"appropriate_refusals: {ablation.CI_BOOTSTRAP}; "
                                        f"train_loss: {ablation.CI_T}")
    assert table.iloc[1]["train_loss"] == "1.5" and table.iloc[1]["seeds"] == 1
    assert all(s["ci_method"] in ablation.CI_METHODS for s in summary.values())
    from instructlab import plots

    assert plots.interval_label([loss, summary[(4, "terminology")]]) == (
        f"95% interval: {ablation.CI_T} / {ablation.CI_BOOTSTRAP}")


def test_summary_without_answers_falls_back_to_a_t_interval_cut_to_the_range(tmp_path):
    """Rows of runs that left no answers: a t-interval over seeds, cut to the metric's range and labelled so;
    written "mean [low, high]" once the cut made it asymmetric, "mean ± half-width" while it is symmetric."""
    rows = [{"variant": "v", "size": 4, "seed": s, "terminology": x, "status": "succeeded"}
            for s, x in enumerate([0.9, 0.3, 0.6])]                                   # no run_dir
    (s,) = ablation.summarize(rows)
    assert s["ci_method"] == ablation.CI_T_CUT and (s["ci_low"], s["ci_high"]) == (0.0, 1.0)
    assert s["half_width"] is None and s["mean"] == pytest.approx(0.6) and s["n_prompts"] is None
    assert ablation.summary_table([s], ["terminology"]).loc[0, "terminology"] == "60.0% [0.0, 100.0]"
    (s,) = ablation.summarize([{**r, "terminology": x} for r, x in zip(rows, [0.75, 0.25, 0.5])])
    assert (s["ci_method"], s["ci_low"], s["ci_high"], s["half_width"]) == (ablation.CI_T_CUT, 0.0, 1.0, 0.5)
    assert ablation.summary_table([s], ["terminology"]).loc[0, "terminology"] == "50.0% ± 50.0"
    # one run of two has its answers on disk: no bootstrap over a part of the seeds
    base = "clean-random-assistant"
    rows = [with_values(fake_run(tmp_path, base, 4, 0, [1, 0, 1])), with_values(fake_run(tmp_path, base, 4, 1, [0, 0, 1]))]
    rows[1]["run_dir"] = str(tmp_path / "gone")
    summary = ablation.summarize(rows)
    assert summary and {s["ci_method"] for s in summary} <= {ablation.CI_T, ablation.CI_T_CUT}


def test_load_results_recomputes_a_summary_written_with_t_intervals(tmp_path):
    base = "clean-random-assistant"
    rows = [with_values(fake_run(tmp_path, base, 4, s, [s, 1, 0, 1])) for s in (0, 1)]
    ablation.runs.write_json(tmp_path / "results.json", rows)
    old = [{k: v for k, v in r.items() if k != "ci_method"} for r in ablation.summarize(rows)]
    ablation.runs.write_json(tmp_path / "summary.json", old)
    _, summary, _ = ablation.load_results(tmp_path)
    assert summary == ablation.summarize(rows) and summary[0]["ci_method"] == ablation.CI_BOOTSTRAP


@pytest.mark.parametrize("name", ["sweep_quick.yaml", "sweep_smoke.yaml", "sweep_full.yaml", "sweep_reference.yaml"])
def test_shipped_configs_load(name):
    cfg = ablation.load_sweep_config(REPO / "configs" / name)
    assert ablation.grid(cfg)


# ------------------------------------------------------------------------ sweeps through the run functions
# Real runs on tiny-random (about 10 s each on 2 cores): experiment.train_run and experiment.eval_run.

from instructlab import experiment  # noqa: E402

REAL_TRAIN_RUN, REAL_EVAL_RUN = experiment.train_run, experiment.eval_run


def tiny_config(**changes):
    cfg = ablation.load_sweep_config(REPO / "configs" / "sweep_smoke.yaml")
    cfg.sizes, cfg.seeds, cfg.pool_size, cfg.dev_size = [4, 8], [0, 1], 60, 2
    cfg.comparisons, cfg.workers = {}, 1
    cfg.train_params, cfg.eval_params = {"max_steps": 2}, {"n_per_category": 4, "max_new_tokens": 4}
    for k, v in changes.items():
        setattr(cfg, k, v)
    ablation.check_config(cfg)
    return cfg


class Calls:
    """Wraps experiment.train_run / eval_run (in-process sweeps) to count calls and inject failures."""

    def __init__(self, monkeypatch, fail_train=None, fail_eval=None):
        self.train, self.eval = [], []
        real_train, real_eval = REAL_TRAIN_RUN, REAL_EVAL_RUN

        def train_run(params, run_dir, **kw):
            self.train.append(Path(run_dir).parent.name)
            if fail_train and fail_train(params):
                raise RuntimeError(f"simulated crash at n={params.n_examples}")
            return real_train(params, run_dir, **kw)

        def eval_run(params, run_dir, **kw):
            self.eval.append(Path(run_dir).parent.name)
            if fail_eval and fail_eval(params):
                raise RuntimeError("simulated crash during evaluation")
            return real_eval(params, run_dir, **kw)

        monkeypatch.setattr(experiment, "train_run", train_run)
        monkeypatch.setattr(experiment, "eval_run", eval_run)


@pytest.mark.slow
def test_sweep_runs_aggregates_and_resumes(tmp_path, monkeypatch):
    cfg, sweep_dir = tiny_config(), tmp_path / "sweep"
    calls = Calls(monkeypatch, fail_train=lambda p: p.n_examples == 8)       # the size-8 runs crash
    first = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert sorted(r["run_id"] for r in first.failed) == ["clean-random-assistant-n8-s0", "clean-random-assistant-n8-s1"]
    assert "simulated crash at n=8" in (Path(first.failed[0]["run_dir"]) / "manifest.json").read_text()
    assert json.loads((sweep_dir / "manifest.json").read_text())["status"] == "failed"
    assert sorted(calls.train) == sorted(f"clean-random-assistant-n{n}-s{s}" for n in (4, 8) for s in (0, 1))
    assert len(calls.eval) == 1 + 2                                           # untuned + the two size-4 runs

    calls = Calls(monkeypatch)
    second = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not second.failed
    assert sorted(calls.train) == sorted(calls.eval) == ["clean-random-assistant-n8-s0", "clean-random-assistant-n8-s1"]

    rows = json.loads((sweep_dir / "results.json").read_text())
    assert len(rows) == 5 and all(r["status"] == "succeeded" for r in rows)
    assert rows[0]["variant"] == "untuned" and rows[0]["size"] == 0 and "terminology" in rows[0]
    row = next(r for r in rows if r["run_id"] == "clean-random-assistant-n4-s0")
    assert row["n_train"] == 4 and len(row["data_fingerprint"]) == 64 and row["global_step"] == 2
    # the row's numbers are those of the run's documented results files
    train = experiment.read_result(Path(row["run_dir"]) / "train")
    evaluation = experiment.read_result(Path(row["run_dir"]) / "eval")
    assert row["train_loss"] == train["metrics"]["train_loss"] and row["terminology"] == evaluation["metrics"]["terminology"]
    assert evaluation["side"] == "after" and evaluation["adapter"] and "before" not in evaluation["sides"]
    selection = json.loads((Path(row["run_dir"]) / "checkpoint_selection.json").read_text())
    assert row["dev_loss"] == selection["dev_loss"] and evaluation["adapter"] == selection["chosen"]
    summary = {(s["variant"], s["size"], s["metric"]): s for s in json.loads((sweep_dir / "summary.json").read_text())}
    at8 = [r["train_loss"] for r in rows if r["size"] == 8]
    assert summary[("clean-random-assistant", 8, "train_loss")]["mean"] == pytest.approx(sum(at8) / 2)
    assert summary[("clean-random-assistant", 8, "train_loss")]["n"] == 2
    assert (sweep_dir / "results.csv").exists() and (sweep_dir / "summary.csv").exists()
    # the paired effect of the size comparison (n=8 minus n=4, seeds paired), per case-study metric
    effects = json.loads((sweep_dir / "comparisons.json").read_text())
    assert effects == second.comparisons and {e["metric"] for e in effects} <= set(ablation.CASE_STUDY_METRICS)
    assert {e["comparison"] for e in effects} == {"clean-random-assistant n=8 vs n=4"} and "tone_rubric" in {
        e["metric"] for e in effects}
    for e in effects:
        assert e["resolved"] in ("resolved", "not resolved") and e["n_seeds_variant"] == e["n_seeds_baseline"] == 2
        assert e["n_prompts"] > 0 and (e["low"] is None or e["low"] <= e["effect"] <= e["high"])
    assert (sweep_dir / "comparisons.csv").read_text().startswith(",".join(ablation.EFFECT_COLUMNS))
    assert "resolved" in (sweep_dir / "comparisons.md").read_text()
    assert ablation.load_comparisons(sweep_dir) == effects
    (sweep_dir / "comparisons.json").unlink()                                  # a sweep from before: computed
    assert ablation.load_comparisons(sweep_dir) == effects
    # every run's per-prompt outcomes in one table: what the intervals resample
    import csv

    per_prompt = list(csv.DictReader(open(sweep_dir / "per_prompt.csv")))
    assert list(per_prompt[0])[:7] == list(ablation.PER_PROMPT_COLUMNS)
    from instructlab import stats

    n4 = stats.per_prompt_outcomes(Path(row["run_dir"]) / "eval", side=None)["tone_rubric"]
    mine = {r["prompt"]: float(r["outcome"]) for r in per_prompt
            if r["run_id"] == row["run_id"] and r["metric"] == "tone_rubric"}
    assert mine == pytest.approx(n4) and {r["run_id"] for r in per_prompt} == {r["run_id"] for r in rows}
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert [s["ran"] for s in manifest["sessions"]][-1] == 2 and len(manifest["sessions"]) >= 2   # kept on resume
    assert manifest["sessions"][-1]["device"] and manifest["run_time_s"] > 0
    assert set(ablation.loss_curves(sweep_dir)) == {r["run_id"] for r in rows[1:]}

    ids = {n: {json.loads(line)["id"] for line in open(sweep_dir / f"runs/clean-random-assistant-n{n}-s0/train_data.jsonl")}
           for n in (4, 8)}
    assert ids[4] < ids[8]                                                    # nested
    dev = {json.loads(line)["id"] for line in open(sweep_dir / "data/dev.jsonl")}
    assert not dev & ids[8]                                                   # dev never trained on


@pytest.mark.slow
def test_sweep_resumes_evaluation_without_retraining(tmp_path, monkeypatch):
    cfg, sweep_dir = tiny_config(sizes=[4], seeds=[0], evaluate_untuned=False), tmp_path / "sweep"
    Calls(monkeypatch, fail_eval=lambda p: True)
    assert ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).failed
    calls = Calls(monkeypatch)
    assert not ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).failed
    assert calls.train == [] and calls.eval == ["clean-random-assistant-n4-s0"]


@pytest.mark.slow
def test_sweep_retrains_a_finished_run_only_when_a_profile_edit_changes_what_it_trains(tmp_path, monkeypatch):
    """A finished run is kept after a profile edit that its sweep overrides (train_params max_steps: 2), and
    trained and evaluated again after one that changes its resolved TrainConfig (the learning rate)."""
    from dataclasses import replace

    from instructlab import train

    cfg, sweep_dir = tiny_config(sizes=[4], seeds=[0], evaluate_untuned=False), tmp_path / "sweep"
    run_id, smoke = "clean-random-assistant-n4-s0", train.TRAIN_PROFILES["smoke"]
    calls = Calls(monkeypatch)
    assert not ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).failed
    assert calls.train == calls.eval == [run_id]

    def edit_profile(**changes):
        monkeypatch.setitem(train.TRAIN_PROFILES, "smoke", replace(smoke, config=replace(smoke.config, **changes)))

    edit_profile(max_steps=smoke.config.max_steps + 5)          # overridden by the sweep: nothing it trains changes
    calls = Calls(monkeypatch)
    kept = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not kept.failed and kept.rows[0]["skipped"] and calls.train == calls.eval == []

    lr = smoke.config.learning_rate / 4
    edit_profile(learning_rate=lr)
    calls = Calls(monkeypatch)
    again = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not again.failed and not again.rows[0]["skipped"]
    assert calls.train == calls.eval == [run_id]                    # a new adapter is evaluated again
    run = Path(again.rows[0]["run_dir"])
    assert experiment.read_result(run / "train")["config"]["learning_rate"] == lr
    chosen = json.loads((run / "checkpoint_selection.json").read_text())["chosen"]
    assert experiment.read_result(run / "eval")["adapter"] == chosen
    assert (run / "checkpoint_selection.json").stat().st_mtime >= (run / "train" / "result.json").stat().st_mtime
    calls = Calls(monkeypatch)                                      # and is kept from then on
    assert ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).rows[0]["skipped"] and calls.train == []


@pytest.mark.slow
def test_sweep_with_two_worker_processes(tmp_path, capfd):
    cfg, sweep_dir = tiny_config(sizes=[4], seeds=[0, 1], evaluate_untuned=False), tmp_path / "sweep"
    lines = []
    result = ablation.run_sweep(cfg, sweep_dir, workers=2, progress=lines.append)
    assert not result.failed and [r["seed"] for r in result.rows] == [0, 1]
    assert any("2 workers" in line for line in lines)
    # the workers' progress (steps, generation) reaches the sweep's progress, not the workers' own stdout,
    # so a notebook shows each line once (ipykernel would also echo a worker's stdout to the terminal)
    for seed in (0, 1):
        assert any(f"clean-random-assistant-n4-s{seed}: step" in line for line in lines)
    assert "clean-random-assistant-n4-s0: step" not in capfd.readouterr().out
    for row in result.rows:          # each worker wrote its run's log and both results files
        run = Path(row["run_dir"])
        assert (run / "log.txt").exists() and (run / "train" / "result.json").exists() and (run / "eval" / "result.json").exists()


def _stable(rows):
    """A results table without what differs between two executions of the same runs (time, folder)."""
    return [{k: v for k, v in r.items() if k not in ("duration_s", "skipped", "run_dir")} for r in rows]


@pytest.mark.slow
def test_sweep_killed_three_times_resumes_to_the_same_results(tmp_path):
    """A smoke sweep killed (SIGKILL, whole process group) at random points, three times, then resumed,
    gives the same results table as an uninterrupted sweep."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    import yaml

    config = yaml.safe_load((REPO / "configs" / "sweep_smoke.yaml").read_text())
    config.update(sizes=[4], seeds=[0, 1], pool_size=60, comparisons={"size": 4, "variants": [{"train_on": "all"}]})
    path = tmp_path / "sweep_kill.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "instructlab", "sweep", str(path), "--out"]

    start = time.perf_counter()
    clean = subprocess.run(cmd + [str(tmp_path / "clean")], capture_output=True, text=True, timeout=900)
    assert clean.returncode == 0, clean.stderr[-2000:]
    duration = time.perf_counter() - start

    def finished():
        return sum(1 for p in (killed / "runs").glob("*/result.json")) if (killed / "runs").exists() else 0

    rng, killed, cut_short = random.Random(11), tmp_path / "killed", []
    for _ in range(3):
        proc = subprocess.Popen(cmd + [str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0.2, 0.5) * duration)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
            cut_short.append(finished())       # runs finished when this kill struck
        proc.wait(60)
    assert cut_short and min(cut_short) < 5, cut_short     # at least one kill struck before the sweep was done
    done = finished()
    resumed = subprocess.run(cmd + [str(killed)], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{done} already finished" in resumed.stdout
    a = json.loads((tmp_path / "clean" / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert _stable(a) == _stable(b)
    assert json.loads((tmp_path / "clean" / "summary.json").read_text()) == json.loads((killed / "summary.json").read_text())


@pytest.mark.slow
def test_a_profile_edit_of_the_evaluation_evaluates_again_without_retraining(tmp_path, monkeypatch):
    """eval_params that mean "the profile's" (-1 prompts, 0 tokens): a finished run whose evaluation the edited
    profile resolves differently keeps its training (and its run folder) and is only evaluated again; with the
    profile unchanged, or with explicit eval_params, it is kept."""
    from instructlab import metrics

    cfg = tiny_config(sizes=[4], seeds=[0], evaluate_untuned=False, eval_params={})
    sweep_dir, run_id = tmp_path / "sweep", "clean-random-assistant-n4-s0"
    calls = Calls(monkeypatch)
    first = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not first.failed and calls.train == calls.eval == [run_id]
    n, tokens = metrics.eval_settings("smoke")
    calls = Calls(monkeypatch)
    assert ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).rows[0]["skipped"] and calls.eval == []
    monkeypatch.setitem(metrics.EVAL_PROFILES, "smoke", (n - 1, tokens - 1))
    calls = Calls(monkeypatch)
    again = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not again.failed and not again.rows[0]["skipped"]
    assert calls.train == [] and calls.eval == [run_id]                              # evaluated again only
    result = experiment.read_result(Path(again.rows[0]["run_dir"]) / "eval")
    assert result["max_new_tokens"] == tokens - 1 and not list(sweep_dir.glob("runs/*.stale-*"))
    explicit = tiny_config(sizes=[4], seeds=[0], evaluate_untuned=False,
                           eval_params={"n_per_category": n - 1, "max_new_tokens": tokens - 1})
    calls = Calls(monkeypatch)
    kept = ablation.run_sweep(explicit, tmp_path / "sweep2", progress=lambda s: None)
    monkeypatch.setitem(metrics.EVAL_PROFILES, "smoke", (n, tokens))                 # explicit values: no change
    calls = Calls(monkeypatch)
    assert ablation.run_sweep(explicit, tmp_path / "sweep2", progress=lambda s: None).rows[0]["skipped"]
    assert calls.train == calls.eval == [] and not kept.failed


@pytest.mark.slow
def test_a_sweep_run_in_a_relative_folder_and_then_moved_still_finds_its_answers(tmp_path, monkeypatch):
    """Rows name absolute run folders, and a finished sweep copied elsewhere is read where it is now: its
    paired effects and per-prompt table come from the copy's answers (a relative `--out` once left them empty)."""
    import csv
    import shutil

    cfg = tiny_config(sizes=[4, 8], seeds=[0], evaluate_untuned=False)
    monkeypatch.chdir(tmp_path)
    first = ablation.run_sweep(cfg, Path("sweep"), progress=lambda s: None)
    assert not first.failed and all(Path(r["run_dir"]).is_absolute() for r in first.rows)
    assert first.comparisons
    shutil.copytree(tmp_path / "sweep", tmp_path / "elsewhere" / "moved")
    shutil.rmtree(tmp_path / "sweep")
    monkeypatch.chdir(tmp_path / "elsewhere")
    calls = Calls(monkeypatch)
    again = ablation.run_sweep(cfg, tmp_path / "elsewhere" / "moved", progress=lambda s: None)
    assert calls.train == calls.eval == [] and all(r["skipped"] for r in again.rows)
    assert all(r["run_dir"].startswith(str(tmp_path / "elsewhere" / "moved")) for r in again.rows)
    assert _stable(again.comparisons) == _stable(first.comparisons)
    rows = list(csv.DictReader(open(tmp_path / "elsewhere" / "moved" / "per_prompt.csv")))
    assert {r["run_id"] for r in rows} == {r["run_id"] for r in first.rows}


@pytest.mark.slow
def test_another_generation_dtype_evaluates_again_without_retraining(tmp_path, monkeypatch):
    """Answers generated in one precision are not kept for a sweep that now generates in another
    (``INSTRUCTLAB_GENERATION_DTYPE``): the run keeps its training and is evaluated again; an evaluation
    from before the dtype was recorded counts as fp32, as every one was."""
    cfg = tiny_config(sizes=[4], seeds=[0], evaluate_untuned=False)
    sweep_dir, run_id = tmp_path / "sweep", "clean-random-assistant-n4-s0"
    monkeypatch.setenv("INSTRUCTLAB_GENERATION_DTYPE", "float32")
    calls = Calls(monkeypatch)
    first = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not first.failed and calls.train == calls.eval == [run_id]
    result_file = Path(first.rows[0]["run_dir"]) / "eval" / experiment.RESULT_FILE
    assert json.loads(result_file.read_text())["generation_dtype"] == "float32"
    monkeypatch.setenv("INSTRUCTLAB_GENERATION_DTYPE", "bfloat16")
    calls = Calls(monkeypatch)
    again = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not again.failed and calls.train == [] and calls.eval == [run_id]       # evaluated again only
    assert json.loads(result_file.read_text())["generation_dtype"] == "bfloat16"
    calls = Calls(monkeypatch)
    assert ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).rows[0]["skipped"] and calls.eval == []
    recorded = json.loads(result_file.read_text())
    del recorded["generation_dtype"]                                                   # an older run folder
    result_file.write_text(json.dumps(recorded))
    monkeypatch.setenv("INSTRUCTLAB_GENERATION_DTYPE", "float32")
    calls = Calls(monkeypatch)
    assert ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).rows[0]["skipped"] and calls.eval == []
