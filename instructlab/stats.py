"""Intervals and effects for the ablation, from per-prompt outcomes (numpy only).

A sweep crosses *seeds* (training runs) with *prompts* (the eval set): every run answers the same
prompts. A t-interval over a handful of seed means ignores the prompts and, with two seeds, runs far
outside the metric's range ("37.5% ± 158.8"). Here the unit of evidence is one answer:

* :func:`per_prompt_outcomes` reads a run's ``<side>_answers.jsonl`` (written by
  ``experiment.eval_run``) into ``{metric: {prompt id: outcome}}``, exactly as
  ``metrics.evaluate_answers`` scores it, so the mean over prompts is the reported value;
* :func:`bootstrap_mean` is a two-level bootstrap of the grand mean: resample seeds, then prompts,
  with one prompt resample shared by every seed (prompts are crossed with seeds). Its percentile
  interval is a mean of observed outcomes, so it never leaves the metric's range;
* :func:`paired_effect` is variant minus baseline on the prompts both arms answered;
* :func:`power_note` turns the measured variance components into "how many seeds / prompts would
  resolve an effect of this size".

What the interval can and cannot see, stated once. With two or three seeds the seed level of the
bootstrap sees only 2-3 values, so the between-seed part of the uncertainty is under-represented (a
bootstrap of S values has (S-1)/S of their variance, and few distinct resamples): the interval then
mostly measures the prompts, and :func:`power_note` says how many seeds a comparison needs. In the
other direction, resampling both seeds and prompts of a crossed design counts the per-answer noise
(the seed x prompt residual) up to three times instead of once (Owen, 2007, "The pigeonhole
bootstrap"), so where that noise dominates, as in a paired difference of yes/no outcomes, the interval
is wider than needed and "resolved" is conservative.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["OUTCOME_METRICS", "METRIC_BOUNDS", "per_prompt_outcomes", "Estimate", "Effect", "bootstrap_mean",
           "paired_effect", "variance_components", "power_note", "resolved_word", "run_effects",
           "before_after_effects"]

OUTCOME_METRICS = ("tone_rubric", "terminology", "appropriate_refusals", "false_rejections")
# The range of each per-prompt outcome (and so of its mean and of any bootstrap interval).
METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    "tone_rubric": (1.0, 5.0), "terminology": (0.0, 1.0), "appropriate_refusals": (0.0, 1.0),
    "false_rejections": (0.0, 1.0), "avoid_terms": (0.0, 1.0), "template_compliance": (0.0, 1.0)}

Outcomes = Mapping[str, float]                               # prompt id -> outcome
BySeed = Mapping[Any, Outcomes] | Sequence[Outcomes]         # seed -> outcomes (a list: seeds 0, 1, ...)


# --------------------------------------------------------------------------- per-prompt outcomes


def _prompt_key(row: Mapping[str, Any]) -> str:
    return str(row["id"]) if row.get("id") is not None else f"prompt: {row.get('prompt', '')}"


def per_prompt_outcomes(eval_dir: str | Path, side: str | None = "after") -> dict[str, dict[str, float]]:
    """The per-prompt outcome of every case-study metric of one evaluation run.

    Read from ``<eval_dir>/<side>_answers.jsonl`` (``metrics.EvalReport.save``: one row per answer with
    its scores), with the same selection as ``metrics.evaluate_answers``:

    * ``tone_rubric``: every answer's rubric score (1-5);
    * ``terminology``: the terminology score (recall of the required terms times the stuffing
      penalty) of every answer whose prompt requires terms;
    * ``appropriate_refusals``: 1.0 when a ``decline`` prompt's answer is a refusal, else 0.0;
    * ``false_rejections``: 1.0 when a ``lookalike`` prompt's answer is a refusal, else 0.0;
    * ``avoid_terms``: 1.0 when a non-empty answer uses a term to avoid (not copied from its prompt);
    * ``template_compliance``: 1.0 when a template prompt's answer has the template's structure.

    The mean of each dict is the report's ``metrics[key].value``.

    Args:
        eval_dir: an ``experiment.eval_run`` folder (in a sweep: ``runs/<run id>/eval``).
        side: "after" (with the adapter), "before" (the model alone), or None: the side the run's
            ``result.json`` reports (``"side"``).
    Returns:
        {metric: {prompt id: outcome}}; the prompt id is the eval record's ``id`` (its prompt text when
        it has none). Metrics with no prompt (no decline prompt evaluated, say) are empty dicts.
    Raises:
        FileNotFoundError: no answers file for that side. ValueError: two answers with the same id.
    """
    eval_dir = Path(eval_dir)
    if side is None:
        result = eval_dir / "result.json"
        side = json.loads(result.read_text(encoding="utf-8")).get("side", "after") if result.exists() else "after"
    path = eval_dir / f"{side}_answers.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no {path.name} in {eval_dir}: run experiment.eval_run there "
                                f"({'with an adapter' if side == 'after' else 'with before=True'}) first")
    out: dict[str, dict[str, float]] = {k: {} for k in METRIC_BOUNDS}
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        key = _prompt_key(row)
        if key in seen:
            raise ValueError(f"{path}: two answers for prompt {key!r}; per-prompt outcomes need unique ids")
        seen.add(key)
        out["tone_rubric"][key] = float(row["tone_rubric"])
        if "terminology" in row:
            out["terminology"][key] = float(row["terminology"]["score"])
        if row.get("category") == "decline":
            out["appropriate_refusals"][key] = float(bool(row["refusal"]))
        if row.get("category") == "lookalike":
            out["false_rejections"][key] = float(bool(row["refusal"]))
        if (row.get("answer") or "").strip():
            out["avoid_terms"][key] = float(bool(row.get("avoid_terms")))
        if "template_result" in row:
            out["template_compliance"][key] = float(bool(row["template_result"]["compliant"]))
    return out


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds x prompts with its percentile bootstrap interval (None when there is nothing
    to resample: one seed and one prompt)."""

    value: float
    low: float | None
    high: float | None
    n_prompts: int
    n_seeds: int
    level: float = 0.95
    n_prompts_dropped: int = 0    # prompts some seeds did not answer (left out)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Effect:
    """Variant minus baseline on shared prompts (:func:`paired_effect`).

    ``resolved``: the interval excludes 0. ``paired``: seeds were resampled jointly (both arms ran the
    same seeds). ``components``: the variance components behind :func:`power_note`.
    """

    effect: float
    low: float | None
    high: float | None
    resolved: bool
    n_prompts: int
    n_seeds_variant: int
    n_seeds_baseline: int
    paired: bool
    level: float = 0.95
    n_prompts_variant_only: int = 0
    n_prompts_baseline_only: int = 0
    components: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _by_seed(outcomes_by_seed: BySeed) -> dict[Any, Outcomes]:
    items = dict(outcomes_by_seed) if isinstance(outcomes_by_seed, Mapping) else dict(enumerate(outcomes_by_seed))
    if not items:
        raise ValueError("no seeds: give at least one {prompt id: outcome} dict")
    return items


def _shared_prompts(*arms: dict[Any, Outcomes]) -> tuple[list[str], set[str]]:
    """(sorted prompt ids every seed of every arm answered, the union of all prompt ids)."""
    sets = [set(o) for arm in arms for o in arm.values()]
    shared, union = set.intersection(*sets), set.union(*sets)
    return sorted(shared), union


def _matrix(arm: dict[Any, Outcomes], seeds: Sequence[Any], prompts: Sequence[str]) -> np.ndarray:
    return np.array([[float(arm[s][p]) for p in prompts] for s in seeds], dtype=float).reshape(len(seeds), len(prompts))


def _counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) resampling counts: how often each of n units is drawn in each resample."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def _resampled_means(x: np.ndarray, seed_counts: np.ndarray, prompt_counts: np.ndarray) -> np.ndarray:
    """Mean of x[seeds*][:, prompts*] per resample, from the counts (no copy of the matrix)."""
    s, p = x.shape
    return ((seed_counts @ x) * prompt_counts).sum(axis=1) / (s * p)


def _percentiles(values: np.ndarray, level: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
    if bounds is not None:      # a mean of in-range outcomes is in range; this only removes rounding
        low, high = min(max(low, bounds[0]), bounds[1]), min(max(high, bounds[0]), bounds[1])
    return low, high


def bootstrap_mean(outcomes_by_seed: BySeed, n_boot: int = 2000, seed: int = 0,
                   bounds: tuple[float, float] | None = None, level: float = 0.95) -> Estimate:
    """Grand mean over seeds and prompts with a two-level (hierarchical) percentile bootstrap.

    Each resample draws S seeds with replacement, then P prompts with replacement, the same prompt
    draw for every seed (prompts are crossed with seeds: every run answered the same prompts), and
    takes the mean of the resampled S x P outcomes. The interval is the percentiles of those means.

    Args:
        outcomes_by_seed: {seed: {prompt id: outcome}} (or a list of such dicts), e.g. one
            :func:`per_prompt_outcomes` metric per run. Only prompts every seed answered are used.
        n_boot: resamples. seed: the random seed (the result is deterministic).
        bounds: the metric's range (:data:`METRIC_BOUNDS`); the interval is kept inside it.
        level: the interval's coverage.
    Returns:
        :class:`Estimate` (value = mean of the per-seed means, each over the shared prompts).
    Raises:
        ValueError: no seeds, or no prompt that every seed answered.
    """
    arm = _by_seed(outcomes_by_seed)
    prompts, union = _shared_prompts(arm)
    if not prompts:
        raise ValueError("no prompt was answered by every seed")
    x = _matrix(arm, list(arm), prompts)
    s, p = x.shape
    value = float(x.mean())
    if s < 2 and p < 2:
        return Estimate(value, None, None, p, s, level, len(union) - p)
    rng = np.random.default_rng(seed)
    means = _resampled_means(x, _counts(rng, s, n_boot), _counts(rng, p, n_boot))
    low, high = _percentiles(means, level, bounds)
    return Estimate(value, low, high, p, s, level, len(union) - p)


# --------------------------------------------------------------------------- effects


def _two_way(x: np.ndarray) -> tuple[float, float, float]:
    """(seed, prompt, residual) variance components of a seeds x prompts matrix without replication,
    by the ANOVA method of moments (negative estimates set to 0). With one seed the seed component is
    unknown (0) and the residual is folded into the prompt component."""
    s, p = x.shape
    rows, cols = x.mean(axis=1), x.mean(axis=0)
    if s < 2:
        return 0.0, float(np.var(x[0], ddof=1)) if p > 1 else 0.0, 0.0
    if p < 2:
        return float(np.var(rows, ddof=1)), 0.0, 0.0
    resid = float(((x - rows[:, None] - cols[None, :] + x.mean()) ** 2).sum() / ((s - 1) * (p - 1)))
    seed_var = max(0.0, (p * float(np.var(rows, ddof=1)) - resid) / p)
    prompt_var = max(0.0, (s * float(np.var(cols, ddof=1)) - resid) / s)
    return seed_var, prompt_var, resid


def variance_components(v: np.ndarray, b: np.ndarray, paired: bool) -> dict[str, float]:
    """Variance components of the effect ``mean(v) - mean(b)`` (seeds x prompts matrices, same prompts).

    Model per arm: outcome = mean + seed effect + prompt effect + residual. Paired: the components of
    the difference matrix v - b. Unpaired: the seed and residual components of each arm add up; the
    prompt component is that of the per-prompt difference of the arms' means, less its residual part.
    The standard error of the effect with S seeds per arm and P prompts is then

        se(S, P)^2 = seed_var / S + prompt_var / P + residual_var / (S * P)

    Returns:
        {seed_var, prompt_var, residual_var, se (with the actual seeds per arm), seeds_known (1.0 when
        every arm has two or more seeds, else 0.0: one seed says nothing about the seed variance)}.
    """
    sv, p = v.shape
    sb = b.shape[0]
    if paired:
        seed_var, prompt_var, resid = _two_way(v - b)
        se2 = seed_var / sv + prompt_var / p + resid / (sv * p)
    else:
        av, _, ev = _two_way(v)
        ab, _, eb = _two_way(b)
        d = v.mean(axis=0) - b.mean(axis=0)
        spread = float(np.var(d, ddof=1)) if p > 1 else 0.0
        prompt_var = max(0.0, spread - ev / sv - eb / sb)
        seed_var, resid = av + ab, ev + eb
        se2 = av / sv + ab / sb + prompt_var / p + ev / (sv * p) + eb / (sb * p)
    return {"seed_var": seed_var, "prompt_var": prompt_var, "residual_var": resid, "se": math.sqrt(max(se2, 0.0)),
            "seeds_known": float(min(sv, sb) >= 2)}


def paired_effect(variant_by_seed: BySeed, baseline_by_seed: BySeed, n_boot: int = 2000, seed: int = 0,
                  bounds: tuple[float, float] | None = None, level: float = 0.95,
                  paired: bool | None = None) -> Effect:
    """Variant minus baseline on the SAME prompts, with a two-level bootstrap interval.

    Only prompts that every seed of both arms answered count (``n_prompts``; the others are counted in
    ``n_prompts_variant_only`` / ``n_prompts_baseline_only``). Each resample draws one prompt resample,
    shared by both arms and all seeds, and resamples seeds:

    * **paired** (default when both arms ran exactly the same seed labels): one seed resample for both
      arms. In a sweep the same seed means the same subset draw and the same LoRA initialisation, so the
      arms share that part of their noise and the difference cancels it;
    * **unpaired** (different seed sets, or ``paired=False``): each arm's seeds independently.

    Args:
        variant_by_seed, baseline_by_seed: {seed: {prompt id: outcome}} per arm.
        n_boot: resamples. seed: random seed. level: coverage.
        bounds: the metric's range (lo, hi); the effect's interval stays inside (lo - hi, hi - lo).
        paired: force the pairing; True with different seed sets raises.
    Returns:
        :class:`Effect`; ``resolved`` when the interval excludes 0.
    Raises:
        ValueError: no seeds, no shared prompt, or ``paired=True`` with different seeds.
    """
    var_arm, base_arm = _by_seed(variant_by_seed), _by_seed(baseline_by_seed)
    same_seeds = set(var_arm) == set(base_arm)
    if paired is None:
        paired = same_seeds
    elif paired and not same_seeds:
        raise ValueError(f"paired=True needs the same seeds in both arms, got {sorted(var_arm, key=str)} and "
                         f"{sorted(base_arm, key=str)}")
    prompts, _ = _shared_prompts(var_arm, base_arm)
    if not prompts:
        raise ValueError("the variant and the baseline share no prompt answered by all of their seeds")
    shared = set(prompts)
    only_v = set.union(*(set(o) for o in var_arm.values())) - shared
    only_b = set.union(*(set(o) for o in base_arm.values())) - shared
    seeds_v = sorted(var_arm, key=str)
    seeds_b = seeds_v if paired else sorted(base_arm, key=str)
    v, b = _matrix(var_arm, seeds_v, prompts), _matrix(base_arm, seeds_b, prompts)
    effect = float(v.mean() - b.mean())
    components = variance_components(v, b, paired)
    sv, p, sb = v.shape[0], len(prompts), b.shape[0]
    eff_bounds = (bounds[0] - bounds[1], bounds[1] - bounds[0]) if bounds is not None else None
    if max(sv, sb) < 2 and p < 2:
        low = high = None
    else:
        rng = np.random.default_rng(seed)
        cp = _counts(rng, p, n_boot)
        if paired:
            diffs = _resampled_means(v - b, _counts(rng, sv, n_boot), cp)
        else:
            diffs = _resampled_means(v, _counts(rng, sv, n_boot), cp) - _resampled_means(b, _counts(rng, sb, n_boot), cp)
        low, high = _percentiles(diffs, level, eff_bounds)
    resolved = low is not None and (low > 0 or high < 0)
    return Effect(effect, low, high, bool(resolved), p, sv, sb, paired, level, len(only_v), len(only_b), components)


def resolved_word(resolved: bool) -> str:
    """"resolved" (the interval excludes 0) or "not resolved"."""
    return "resolved" if resolved else "not resolved"


# --------------------------------------------------------------------------- power


def power_note(effect_result: Effect | Mapping[str, Any], power: float = 0.8) -> dict[str, Any]:
    """How many seeds and prompts a comparison of this effect size needs, by a normal approximation.

    With the variance components of :func:`variance_components`, the effect's standard error with S
    seeds per arm and P prompts is ``se(S, P)^2 = seed_var/S + prompt_var/P + residual_var/(S*P)``. The
    interval at level L excludes 0 with probability ``power`` when the true effect is d if

        (z_{(1+L)/2} + z_{power}) * se(S, P) <= |d|      (1.96 + 0.84 = 2.80 for 95% and 80%).

    Solved for S at the current P (``seeds_needed``, per arm), and for P at the current S
    (``prompts_needed``); None when no number of one alone suffices (the other term is already too
    large). ``mde`` is the smallest effect the current design resolves with that power.

    Args:
        effect_result: an :class:`Effect` (or its ``as_dict()``).
        power: the wanted probability that the interval excludes 0.
    Returns:
        {sentence, effect, se, mde, seeds_needed, prompts_needed, multiplier, seed_var, prompt_var,
        residual_var}.
    """
    e = effect_result.as_dict() if isinstance(effect_result, Effect) else dict(effect_result)
    comp = e.get("components") or {}
    seed_var, prompt_var, resid = (float(comp.get(k, 0.0)) for k in ("seed_var", "prompt_var", "residual_var"))
    level = float(e.get("level", 0.95))
    k = NormalDist().inv_cdf((1 + level) / 2) + NormalDist().inv_cdf(power)
    s_now = max(1, min(int(e["n_seeds_variant"]), int(e["n_seeds_baseline"])))
    p_now = max(1, int(e["n_prompts"]))
    se = float(comp.get("se", math.sqrt(seed_var / s_now + prompt_var / p_now + resid / (s_now * p_now))))
    d = abs(float(e["effect"]))
    mde = k * se
    seeds_needed = prompts_needed = None
    if d > 0:
        target = (d / k) ** 2
        room = target - prompt_var / p_now
        if room > 0:
            seeds_needed = max(1, math.ceil((seed_var + resid / p_now) / room - 1e-9))
        room = target - seed_var / s_now
        if room > 0:
            prompts_needed = max(1, math.ceil((prompt_var + resid / s_now) / room - 1e-9))
    pct = f"{level:.0%}"
    if d == 0 and se == 0:
        sentence = ("No difference and no variation were measured (every answer of both arms scored alike): "
                    "nothing to size a comparison from.")
    elif d == 0:
        sentence = (f"No difference was measured; with {s_now} seed(s) per arm and {p_now} prompt(s) the {pct} "
                    f"interval would exclude 0 ({power:.0%} of the time) only for effects of about ±{mde:.3g} or more.")
    else:
        seeds = f"about {seeds_needed} seed(s) per arm at the current {p_now} prompt(s)" if seeds_needed else \
            f"more prompts than the current {p_now} whatever the number of seeds"
        prompts = f"about {prompts_needed} prompts at the current {s_now} seed(s)" if prompts_needed else \
            f"more seeds than the current {s_now} whatever the number of prompts"
        sentence = (f"An effect of {d:.3g} needs {seeds}, or {prompts}, for the {pct} interval to exclude 0 "
                    f"{power:.0%} of the time (normal approximation, se now {se:.3g}; the current design resolves "
                    f"about ±{mde:.3g}).")
    if not comp.get("seeds_known", 1.0):
        sentence += " With one seed in an arm the between-seed variance is unknown (taken as 0): run more seeds."
    return {"sentence": sentence, "effect": float(e["effect"]), "se": se, "mde": mde, "seeds_needed": seeds_needed,
            "prompts_needed": prompts_needed, "multiplier": k, "seed_var": seed_var, "prompt_var": prompt_var,
            "residual_var": resid}


def run_effects(variant: Mapping[str, Outcomes], baseline: Mapping[str, Outcomes], n_boot: int = 2000,
                seed: int = 0) -> list[dict[str, Any]]:
    """Variant minus baseline per case-study metric, from two runs' :func:`per_prompt_outcomes` (one seed each:
    the interval resamples prompts only; the between-seed variance of training is not in it, a sweep with
    seeds measures that). Rows: metric, baseline, variant, effect, low, high, resolved, n_prompts."""
    rows = []
    for key in OUTCOME_METRICS:
        e = paired_effect([variant[key]], [baseline[key]], n_boot=n_boot, seed=seed, bounds=METRIC_BOUNDS[key])
        rows.append({"metric": key, "baseline": float(np.mean(list(baseline[key].values()))),
                     "variant": float(np.mean(list(variant[key].values()))), "effect": e.effect, "low": e.low,
                     "high": e.high, "resolved": resolved_word(e.resolved), "n_prompts": e.n_prompts})
    return rows


def before_after_effects(eval_dir: str | Path, n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """After minus before on the same prompts of one ``experiment.eval_run`` folder (:func:`run_effects`).
    Rows: metric, before, after, effect, low, high, resolved, n_prompts."""
    before = per_prompt_outcomes(eval_dir, "before")
    rows = run_effects(per_prompt_outcomes(eval_dir, "after"), before, n_boot=n_boot, seed=seed)
    return [{"before" if k == "baseline" else "after" if k == "variant" else k: v for k, v in r.items()} for r in rows]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m instructlab.stats <eval folder>``: the before/after paired effects of an evaluation."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m instructlab.stats", description=main.__doc__)
    p.add_argument("eval_dir", help="a notebook-03 / experiment.eval_run folder with before_ and after_answers.jsonl")
    args = p.parse_args(argv)
    try:
        rows = before_after_effects(args.eval_dir)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {args.eval_dir}: {err}", file=sys.stderr)
        return 2
    print("| metric | before | after | after - before [95% interval over prompts] | | n |\n|---|---|---|---|---|---|")
    for r in rows:
        f = "{:.2f}" if r["metric"] == "tone_rubric" else "{:.0%}"
        g = "{:+.2f}" if r["metric"] == "tone_rubric" else "{:+.0%}"
        print(f"| {r['metric']} | {f.format(r['before'])} | {f.format(r['after'])} | {g.format(r['effect'])} "
              f"[{g.format(r['low'])}, {g.format(r['high'])}] | {r['resolved']} | {r['n_prompts']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
