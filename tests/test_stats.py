"""stats: per-prompt outcomes, the two-level bootstrap, paired effects and the power note."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from instructlab import ablation, experiment, metrics, runs, stats

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------ per-prompt outcomes


def assert_means_match_report(outcomes, report_metrics):
    """The mean of every metric's per-prompt outcomes is the report's value, over as many prompts."""
    checked = 0
    for key, per_prompt in outcomes.items():
        reported = report_metrics[key]
        value, n = (reported["value"], reported["n"]) if isinstance(reported, dict) else (reported.value, reported.n)
        assert len(per_prompt) == n, key
        if n:
            assert math.isclose(sum(per_prompt.values()) / n, value, abs_tol=1e-12), key
            lo, hi = stats.METRIC_BOUNDS[key]
            assert all(lo <= x <= hi for x in per_prompt.values()), key
            checked += 1
    return checked


def test_outcomes_mean_equals_the_report_on_scored_answers(tmp_path):
    """Gold references with every third answer replaced by a decline: every metric takes several values."""
    records = runs.read_jsonl(REPO / "data" / "kestrel" / "eval.jsonl")[:60]
    decline = metrics.always_decline_answers(records[:1])[0]
    answers = [decline if i % 3 == 0 else a for i, a in enumerate(metrics.gold_answers(records))]
    report = metrics.evaluate_answers(records, answers)
    report.save(tmp_path, "after")
    outcomes = stats.per_prompt_outcomes(tmp_path, side="after")
    assert assert_means_match_report(outcomes, report.metrics) == len(stats.METRIC_BOUNDS)
    assert set(outcomes["tone_rubric"]) == {r["id"] for r in records}
    assert set(outcomes["appropriate_refusals"]) == {r["id"] for r in records if r["category"] == "decline"}
    assert set(outcomes["false_rejections"]) == {r["id"] for r in records if r["category"] == "lookalike"}
    assert 0 < sum(outcomes["false_rejections"].values()) < len(outcomes["false_rejections"])


def test_outcomes_mean_equals_the_report_of_a_smoke_eval_run(tmp_path):
    """A real eval folder: experiment.eval_run with the smoke profile (tiny-random model, the model alone)."""
    params = experiment.EvalParams(profile="smoke", n_per_category=2, max_new_tokens=8, batch_size=8)
    experiment.eval_run(params, tmp_path, report=None)
    result = experiment.read_result(tmp_path)
    outcomes = stats.per_prompt_outcomes(tmp_path, side=None)          # the run's side: "before"
    assert outcomes == stats.per_prompt_outcomes(tmp_path, side="before")
    reported = json.loads((tmp_path / "before_metrics.json").read_text())["metrics"]
    assert assert_means_match_report(outcomes, reported) >= 3
    for key in stats.OUTCOME_METRICS:
        if outcomes[key]:
            assert math.isclose(sum(outcomes[key].values()) / len(outcomes[key]), result["metrics"][key])
    with pytest.raises(FileNotFoundError, match="after_answers.jsonl"):
        stats.per_prompt_outcomes(tmp_path, side="after")


# ------------------------------------------------------------------------ bootstrap: bounds and coverage


def seeds_of(matrix):
    return {s: {f"p{j}": float(v) for j, v in enumerate(row)} for s, row in enumerate(np.asarray(matrix))}


@pytest.mark.parametrize("fill, bounds", [(0.0, (0, 1)), (1.0, (0, 1)), (1.0, (1, 5)), (5.0, (1, 5))])
def test_constant_outcomes_give_a_point_interval_at_the_bound(fill, bounds):
    est = stats.bootstrap_mean(seeds_of(np.full((3, 20), fill)), bounds=bounds)
    assert est.value == est.low == est.high == fill and (est.n_seeds, est.n_prompts) == (3, 20)


def test_intervals_stay_inside_the_range_where_the_t_interval_does_not():
    # two seeds that disagree on few prompts: the t-interval over the two seed means leaves [0, 1]
    binary = seeds_of([[1, 1, 0, 1], [0, 0, 0, 1]])
    t = ablation.t_interval([0.75, 0.25])
    assert t["ci_low"] < 0 and t["ci_high"] > 1
    est = stats.bootstrap_mean(binary, bounds=(0, 1))
    assert 0 <= est.low <= est.value == 0.5 <= est.high <= 1
    tone = seeds_of([[1, 5, 5, 1, 5], [1, 1, 1, 5, 1]])
    est = stats.bootstrap_mean(tone, bounds=(1, 5))
    assert 1 <= est.low <= est.value <= est.high <= 5
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = (rng.random((2, 6)) < rng.random()).astype(float)
        est = stats.bootstrap_mean(seeds_of(x), n_boot=300, bounds=(0, 1))
        assert 0 <= est.low <= est.value <= est.high <= 1
        eff = stats.paired_effect(seeds_of(x), seeds_of(1 - x), n_boot=300, bounds=(0, 1))
        assert -1 <= eff.low <= eff.effect <= eff.high <= 1
    assert stats.bootstrap_mean({0: {"a": 1.0}}).low is None                 # nothing to resample


def test_one_seed_resamples_prompts_only_and_is_deterministic():
    x = seeds_of([[0, 1, 1, 0, 1, 1, 1, 0]])
    a, b = stats.bootstrap_mean(x, seed=3), stats.bootstrap_mean(x, seed=3)
    assert a == b and a.n_seeds == 1 and a.low < a.value < a.high
    assert stats.bootstrap_mean([x[0], x[0]]).n_seeds == 2                   # a list: seeds 0, 1


def test_bootstrap_mean_covers_the_true_mean():
    """200 simulated sweeps of yes/no outcomes: P(yes) = prompt difficulty + seed shift, population mean 0.5."""
    rng, covered = np.random.default_rng(1), 0
    for i in range(200):
        q = rng.uniform(0.1, 0.9, 40)                       # prompt difficulty, mean 0.5
        a = rng.uniform(-0.1, 0.1, 4)                       # seed shift, mean 0
        y = (rng.random((4, 40)) < q[None, :] + a[:, None]).astype(float)
        est = stats.bootstrap_mean(seeds_of(y), n_boot=500, seed=i, bounds=(0, 1))
        covered += est.low <= 0.5 <= est.high
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_paired_effect_covers_the_true_effect():
    """200 simulated comparisons with a known effect of +0.1 on a yes/no metric (4 seeds per arm, 60
    prompts): prompt difficulty shared by the arms, each run its own seed shift (no clipping: the true
    effect is exactly 0.1)."""
    rng, covered = np.random.default_rng(2), 0
    for i in range(200):
        q = rng.uniform(0.25, 0.6, 60)
        base = (rng.random((4, 60)) < q + rng.uniform(-0.15, 0.15, (4, 1))).astype(float)
        var = (rng.random((4, 60)) < q + 0.1 + rng.uniform(-0.15, 0.15, (4, 1))).astype(float)
        eff = stats.paired_effect(seeds_of(var), seeds_of(base), n_boot=500, seed=i, bounds=(0, 1))
        covered += eff.low <= 0.1 <= eff.high
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_paired_effect_is_conservative_when_per_answer_noise_dominates():
    """No seed or prompt interaction at all, only yes/no noise: the two-level bootstrap counts that noise
    more than once (stats module docstring), so it covers at least as often as it should."""
    rng, covered = np.random.default_rng(4), 0
    for i in range(100):
        q = rng.uniform(0.2, 0.8, 40)
        base, var = ((rng.random((3, 40)) < q).astype(float) for _ in range(2))
        eff = stats.paired_effect(seeds_of(var), seeds_of(base), n_boot=500, seed=i)
        covered += eff.low <= 0 <= eff.high
    assert covered / 100 >= 0.95, covered


# ------------------------------------------------------------------------ paired effects


def test_large_effect_is_resolved_and_zero_effect_is_not():
    rng = np.random.default_rng(5)
    q = rng.uniform(0.1, 0.5, 80)
    base = (rng.random((3, 80)) < q).astype(float)
    better = (rng.random((3, 80)) < q + 0.45).astype(float)
    same = (rng.random((3, 80)) < q).astype(float)
    big = stats.paired_effect(seeds_of(better), seeds_of(base), bounds=(0, 1))
    assert big.resolved and big.low > 0 and big.effect > 0.3 and big.paired
    none = stats.paired_effect(seeds_of(same), seeds_of(base), bounds=(0, 1))
    assert not none.resolved and none.low <= 0 <= none.high
    assert stats.resolved_word(big.resolved) == "resolved" and stats.resolved_word(none.resolved) == "not resolved"
    worse = stats.paired_effect(seeds_of(base), seeds_of(better), bounds=(0, 1))
    assert worse.resolved and worse.high < 0


def test_all_one_against_all_zero_is_a_resolved_effect_of_one():
    eff = stats.paired_effect(seeds_of(np.ones((2, 10))), seeds_of(np.zeros((2, 10))), bounds=(0, 1))
    assert (eff.effect, eff.low, eff.high, eff.resolved) == (1.0, 1.0, 1.0, True)
    tone = stats.paired_effect(seeds_of(np.full((2, 10), 5.0)), seeds_of(np.ones((2, 10))), bounds=(1, 5))
    assert (tone.effect, tone.low, tone.high) == (4.0, 4.0, 4.0)


def test_effect_uses_only_the_prompts_both_arms_answered():
    variant = {0: {"a": 1.0, "b": 1.0, "c": 1.0, "x": 0.0}, 1: {"a": 1.0, "b": 0.0, "c": 1.0, "x": 0.0}}
    baseline = {0: {"a": 0.0, "b": 0.0, "c": 0.0, "d": 1.0}, 1: {"a": 0.0, "b": 1.0, "d": 1.0}}
    eff = stats.paired_effect(variant, baseline, bounds=(0, 1))
    # "c" is missing for baseline seed 1, "x" and "d" each in one arm only: a and b remain
    assert eff.n_prompts == 2 and eff.n_prompts_variant_only == 2 and eff.n_prompts_baseline_only == 2
    assert eff.effect == pytest.approx((1 + 1 + 1 + 0) / 4 - (0 + 0 + 0 + 1) / 4)
    with pytest.raises(ValueError, match="share no prompt"):
        stats.paired_effect({0: {"a": 1.0}}, {0: {"b": 1.0}})
    est = stats.bootstrap_mean(baseline)
    assert est.n_prompts == 3 and est.n_prompts_dropped == 1                  # "c": one seed only


def test_seeds_are_paired_only_when_both_arms_ran_the_same_seeds():
    v, b = seeds_of(np.eye(3, 12)), seeds_of(np.zeros((3, 12)))
    assert stats.paired_effect(v, b).paired
    assert not stats.paired_effect(v, b, paired=False).paired
    other = {s + 10: o for s, o in b.items()}
    unpaired = stats.paired_effect(v, other)
    assert not unpaired.paired and (unpaired.n_seeds_variant, unpaired.n_seeds_baseline) == (3, 3)
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_effect(v, other, paired=True)
    assert stats.paired_effect(v, {0: b[0]}).n_seeds_baseline == 1


# ------------------------------------------------------------------------ variance components and power


def test_variance_components_recover_the_simulated_ones():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 0.3, (40, 1)) + rng.normal(0, 0.5, (1, 200)) + rng.normal(0, 0.2, (40, 200))
    comp = stats.variance_components(x, np.zeros_like(x), paired=True)
    assert comp["seed_var"] == pytest.approx(0.09, rel=0.35)
    assert comp["prompt_var"] == pytest.approx(0.25, rel=0.25)
    assert comp["residual_var"] == pytest.approx(0.04, rel=0.05)
    assert comp["se"] ** 2 == pytest.approx(comp["seed_var"] / 40 + comp["prompt_var"] / 200
                                            + comp["residual_var"] / 8000)


def test_power_note_solves_the_normal_approximation():
    eff = stats.Effect(0.1, -0.02, 0.22, False, 50, 2, 2, True,
                       components={"seed_var": 0.001, "prompt_var": 0.05, "residual_var": 0.2, "se": 0.06,
                                   "seeds_known": 1.0})
    note = stats.power_note(eff)
    k = note["multiplier"]
    assert k == pytest.approx(1.959964 + 0.841621, abs=1e-5) and note["mde"] == pytest.approx(k * 0.06)

    def se(s, p):
        return math.sqrt(0.001 / s + 0.05 / p + 0.2 / (s * p))

    s, p = note["seeds_needed"], note["prompts_needed"]
    assert k * se(s, 50) <= 0.1 < k * se(s - 1, 50)
    assert k * se(2, p) <= 0.1 < k * se(2, p - 1)
    assert f"about {s} seed(s) per arm" in note["sentence"] and f"about {p} prompts" in note["sentence"]
    # too few prompts for any number of seeds: only more prompts help
    tight = stats.power_note({**eff.as_dict(), "effect": 0.08, "n_prompts": 20})
    assert tight["seeds_needed"] is None and tight["prompts_needed"] and "whatever the number of seeds" in tight["sentence"]
    zero = stats.power_note({**eff.as_dict(), "effect": 0.0})
    assert zero["seeds_needed"] is None and zero["prompts_needed"] is None and "No difference" in zero["sentence"]
    flat = stats.power_note(stats.paired_effect(seeds_of(np.ones((2, 5))), seeds_of(np.ones((2, 5)))))
    assert flat["mde"] == 0 and "no variation" in flat["sentence"]


def test_power_note_from_a_measured_effect_says_when_the_seed_variance_is_unknown():
    rng = np.random.default_rng(3)
    q = rng.uniform(0.2, 0.6, 30)
    base = (rng.random((1, 30)) < q).astype(float)
    var = (rng.random((1, 30)) < q + 0.2).astype(float)
    note = stats.power_note(stats.paired_effect(seeds_of(var), seeds_of(base), bounds=(0, 1)))
    assert "between-seed variance is unknown" in note["sentence"]
    assert note["se"] > 0 and note["mde"] > 0


def test_before_after_effects_of_an_eval_folder_and_its_command(tmp_path, capsys):
    """Gold answers after, always-decline before: tone and terminology rise, false rejections fall, resolved."""
    records = runs.read_jsonl(REPO / "data" / "kestrel" / "eval.jsonl")[:90]
    metrics.evaluate_answers(records, metrics.always_decline_answers(records)).save(tmp_path, "before")
    metrics.evaluate_answers(records, metrics.gold_answers(records)).save(tmp_path, "after")
    rows = {r["metric"]: r for r in stats.before_after_effects(tmp_path)}
    assert set(rows) == set(stats.OUTCOME_METRICS)
    fr = rows["false_rejections"]
    assert fr["before"] == 1.0 and fr["after"] == 0.0 and fr["effect"] == -1.0 and fr["resolved"] == "resolved"
    assert rows["tone_rubric"]["effect"] > 1 and rows["tone_rubric"]["low"] > 0
    assert stats.main([str(tmp_path)]) == 0
    assert "| false_rejections | 100% | 0% | -100%" in capsys.readouterr().out
    assert stats.main([str(tmp_path / "missing")]) == 2
    assert "before_answers.jsonl" in capsys.readouterr().err
