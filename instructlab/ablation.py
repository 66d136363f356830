"""LIMA-style ablations: how much data, and which data, does the tuning need?

A sweep trains one LoRA adapter per grid point and evaluates it on the held-out eval set:

* **size** - nested random subsets (every smaller subset lies inside the larger one, same seed), so
  a curve over sizes measures *more data*, not *different data*;
* **data** - the clean training set or its noisy variant (``train_noisy.jsonl``);
* **selection** - a random subset or a quality-selected one (:func:`quality_scores`);
* **train_on** - loss on the responses only (``assistant``) or on the full sequence (``all``).

Each grid point runs for several seeds. :func:`summarize` gives each metric's mean over seeds with a
95% interval: for the case-study metrics the two-level bootstrap over seeds and prompts of
``stats.bootstrap_mean`` (from every run's per-prompt outcomes), which stays inside the metric's range;
for columns without per-prompt outcomes (losses) a t-interval over seeds; its ``ci_method`` says which.
:func:`comparison_effects` gives the paired effect of each comparison (variant minus baseline on the
same eval prompts, ``instructlab.stats``) with the same kind of bootstrap interval, "resolved" when it
excludes 0. Checkpoints are chosen on a small *dev split carved from the training data* (never the
eval set): the dev records are removed from every pool before subsets are drawn.

A run calls the same functions as notebooks 02 and 03 (``experiment.train_run`` and
``experiment.eval_run``), in its own run folder ``<sweep>/runs/<run id>/{train,eval}``, each of
which ends with its ``result.json``; with ``workers > 1`` the runs go to worker processes. A run
whose manifest says it succeeded with the same settings (and whose training still resolves to the
same ``TrainConfig``: ``experiment.training_matches``) is skipped, and a run killed half-way keeps
its finished step, so an interrupted sweep resumes where it stopped.

Beyond one machine, ``engine: submitit`` makes every run one submitit job (:func:`submitit_job`:
the same :func:`execute_run`), submitted as a Slurm job array (``submitit: {cluster: slurm, ...}``)
or run as processes on this machine (``cluster: local``, the tests' backend); finished run folders
are skipped before anything is submitted and the results are read back from the run folders, as
with the process pool (``docs/sweeps.md``).
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import experiment, profiles, runs

__all__ = ["SweepConfigError", "SweepConfig", "SweepData", "SweepResult", "RunSpec", "QualityScore",
           "nested_subsets", "split_dev", "record_key", "quality_scores", "quality_subsets", "t_interval",
           "CI_BOOTSTRAP", "CI_BOOTSTRAP_ONE_SEED", "CI_T", "CI_T_CUT", "CI_NONE", "CI_METHODS", "SUMMARY_TEXT",
           "summarize", "metric_columns", "write_table", "load_sweep_config", "check_config", "train_param_keys",
           "grid", "load_sweep_data", "noise_rate", "dev_as_eval_records", "run_tasks", "run_is_finished",
           "execute_run", "collect_metrics", "loss_curves", "default_sweep_dir", "device_slots", "run_sweep",
           "find_sweep_dir", "load_results", "summary_table", "write_report", "UNTUNED", "CASE_STUDY_METRICS",
           "METRIC_LABELS", "EFFECT_COLUMNS", "EFFECTS_TEXT", "comparison_pairs", "comparison_effects",
           "comparisons_table", "write_comparisons_markdown", "load_comparisons", "ENGINES", "SUBMITIT_CLUSTERS",
           "SUBMITIT_SETTINGS", "submitit_settings", "submitit_executor", "submitit_job", "VARIANT_KEYS",
           "PAIR_KEYS", "explicit_pairs", "LOWER_IS_BETTER", "SIZE_GUIDANCE", "guidance_for", "SIZE_CURVE_TEXT",
           "size_curve_verdicts", "size_curve_table", "PER_PROMPT_COLUMNS", "per_prompt_rows", "write_csv"]

REPO_ROOT = experiment.REPO_ROOT
DATA_CHOICES, SELECTION_CHOICES, TRAIN_ON_CHOICES = ("clean", "noisy"), ("random", "quality"), ("assistant", "all")


class SweepConfigError(ValueError):
    """A sweep configuration that cannot run (unknown key, bad value, missing file)."""


# ---------------------------------------------------------------------------------------------
# Subsets


def nested_subsets(records: Sequence[Any], sizes: Iterable[int], seed: int) -> dict[int, list[Any]]:
    """Random subsets of ``records``, one per size, each inside every larger one.

    One permutation (``random.Random(seed)``) is drawn and each subset is its first ``size``
    elements, so subsets of the same seed are nested and the same seed always gives the same subsets.

    Args:
        records: the pool.
        sizes: subset sizes.
        seed: the permutation's seed.
    Returns:
        {size: list of records}.
    Raises:
        ValueError: a size is < 1 or larger than ``len(records)``.
    """
    sizes = sorted(set(int(s) for s in sizes))
    if not sizes:
        return {}
    if sizes[0] < 1 or sizes[-1] > len(records):
        raise ValueError(f"subset sizes must be between 1 and the {len(records)} available records, "
                         f"got {sizes}; lower the sizes or add training data")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    return {n: [records[i] for i in order[:n]] for n in sizes}


def split_dev(records: Sequence[dict], dev_size: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Carve a dev split (for checkpoint selection) out of the training records.

    Args:
        records: the training records.
        dev_size: records for the dev split.
        seed: the draw's seed.
    Returns:
        (pool, dev): the remaining pool and ``dev_size`` records drawn with ``seed``, order kept.
    Raises:
        ValueError: fewer than ``dev_size + 1`` records.
    """
    if dev_size < 0 or dev_size >= len(records):
        raise ValueError(f"dev_size {dev_size} needs more than {dev_size} training records, got {len(records)}")
    picked = set(random.Random(seed).sample(range(len(records)), dev_size))
    pool = [r for i, r in enumerate(records) if i not in picked]
    return pool, [records[i] for i in sorted(picked)]


def record_key(record: dict) -> str:
    """The identity of a training record: its ``id`` when present, else its first user message."""
    if record.get("id") is not None:
        return str(record["id"])
    return _normalize(next((m["content"] for m in record.get("messages", []) if m["role"] == "user"), ""))


def _normalize(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


# ---------------------------------------------------------------------------------------------
# Quality selection


@dataclass(frozen=True)
class QualityScore:
    """The documented heuristic quality of one training example (higher is better).

    tone: the rule-based tone rubric of ``metrics.rubric_tone`` on the answer, scaled to 0..1;
    terminology: 1 when the answer uses none of the brief's terms to avoid (``metrics.term_rules``), else 0;
    length: 1 inside 25..400 words (declines: 15..150), falling off linearly outside;
    spelling: 1 / (1 + number of answer words found in no other record of the pool): a misspelt
        word is almost always unique, while the vocabulary of a curated set repeats;
    duplicate: the normalised prompt already appeared earlier in the pool (excluded from selection).
    total = tone + terminology + length + spelling (0..4), or -1 for a duplicate.
    """

    tone: float
    terminology: float
    length: float
    spelling: float
    duplicate: bool

    @property
    def total(self) -> float:
        return -1.0 if self.duplicate else self.tone + self.terminology + self.length + self.spelling


def _answer(record: dict) -> str:
    return "\n".join(m["content"] for m in record.get("messages", []) if m["role"] == "assistant")


def _length_score(words: int, decline: bool) -> float:
    low, high = (15, 150) if decline else (25, 400)
    if words < low:
        return words / low
    return 1.0 if words <= high else max(0.0, 1.0 - (words - high) / high)


def quality_scores(records: Sequence[dict]) -> list[QualityScore]:
    """Score every record with the heuristics documented on :class:`QualityScore`.

    Uses ``metrics.rubric_tone`` (the offline rule-based tone scorer) and the glossary's avoid
    patterns (``metrics.term_rules``); no model is loaded.
    """
    from . import metrics

    rules = metrics.term_rules()
    vocab = [set(re.findall(r"[a-z]{3,}", _answer(rec).lower())) for rec in records]
    doc_freq: dict[str, int] = {}
    for words in vocab:
        for w in words:
            doc_freq[w] = doc_freq.get(w, 0) + 1
    seen: set[str] = set()
    scores = []
    for rec, words in zip(records, vocab):
        answer = _answer(rec)
        tone = metrics.rubric_tone(answer)
        tone_value = float(getattr(tone, "score", tone))
        term = 0.0 if any(r.avoided_hits(answer) for r in rules) else 1.0
        prompt = _normalize(" ".join(m["content"] for m in rec.get("messages", []) if m["role"] == "user"))
        decline = rec.get("task_type") == "decline"
        scores.append(QualityScore(tone=(tone_value - 1.0) / 4.0, terminology=term,
                                   length=_length_score(len(answer.split()), decline),
                                   spelling=1.0 / (1 + sum(1 for w in words if doc_freq[w] <= 1)),
                                   duplicate=prompt in seen))
        seen.add(prompt)
    return scores


def quality_subsets(records: Sequence[dict], sizes: Iterable[int], seed: int,
                    scores: Sequence[QualityScore] | None = None) -> dict[int, list[dict]]:
    """The top-scoring records per size, stratified by ``task_type`` so the mix (e.g. ~15%
    declines) stays that of the pool; ties are broken by ``seed``. Subsets are nested, like
    :func:`nested_subsets`. Returns {size: list}."""
    scores = list(scores) if scores is not None else quality_scores(records)
    rng = random.Random(seed)
    jitter = [rng.random() for _ in records]
    ranked = sorted(range(len(records)), key=lambda i: (-scores[i].total, jitter[i]))
    ranked = [i for i in ranked if not scores[i].duplicate]
    sizes = sorted(set(int(s) for s in sizes))
    if sizes and (sizes[0] < 1 or sizes[-1] > len(ranked)):
        raise ValueError(f"quality subset sizes must be between 1 and {len(ranked)} distinct records, got {sizes}")
    strata: dict[str, list[int]] = {}
    for i in ranked:
        strata.setdefault(str(records[i].get("task_type", "")), []).append(i)
    order = _interleave_strata(strata, len(ranked))
    return {n: [records[i] for i in order[:n]] for n in sizes}


def _interleave_strata(strata: dict[str, list[int]], total: int) -> list[int]:
    """Merge ranked strata so every prefix keeps each stratum's share (largest-remainder quotas)."""
    taken = {k: 0 for k in strata}
    order = []
    for n in range(1, total + 1):
        # the stratum furthest below its quota for a prefix of length n goes next
        key = max((k for k in strata if taken[k] < len(strata[k])),
                  key=lambda k: (n * len(strata[k]) / total - taken[k], len(strata[k])))
        order.append(strata[key][taken[key]])
        taken[key] += 1
    return order


# ---------------------------------------------------------------------------------------------
# Confidence intervals and aggregation


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float | int | None]:
    """Mean and Student-t confidence interval of ``values`` (NaN/None dropped).

    Args:
        values: one number per seed.
        confidence: the interval's level.
    Returns:
        {n, mean, std, ci_low, ci_high, half_width}; with n < 2 the interval is None (one seed says
        nothing about the spread: run more seeds).
    """
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None, "half_width": None}
    mean = sum(vals) / n
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None, "half_width": None}
    from scipy import stats

    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "half_width": half}


GROUP_KEYS = ("variant", "data", "selection", "train_on", "size")


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Numeric result columns (metrics and losses), excluding the run's configuration."""
    skip = set(GROUP_KEYS) | {"seed", "n_train", "n_dev", "duration_s", "global_step", "chosen_step"}
    cols: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in skip and k not in cols and isinstance(v, (int, float)) and not isinstance(v, bool):
                cols.append(k)
    return cols


# How a summary row's interval was made (its ``ci_method``); the same words in the table, plots and report.
CI_BOOTSTRAP = "bootstrap over seeds and prompts"
CI_BOOTSTRAP_ONE_SEED = "bootstrap over prompts (one seed)"
CI_T = "t over seeds"
CI_T_CUT = "t over seeds, cut to the metric's range"
CI_NONE = "none (one seed)"
CI_METHODS = (CI_BOOTSTRAP, CI_BOOTSTRAP_ONE_SEED, CI_T, CI_T_CUT, CI_NONE)


def _symmetric(mean: float, low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and math.isclose(high - mean, mean - low, rel_tol=1e-9,
                                                                 abs_tol=1e-12)


def _bootstrap_summary(members: Sequence[Mapping[str, Any]], metric: str, cache: dict[str, dict],
                       confidence: float, n_boot: int, seed: int) -> dict[str, Any] | None:
    """The two-level bootstrap summary of ``metric`` over the runs ``members``, or None when some run that
    reports the metric has no per-prompt outcomes of it on disk (no ``run_dir``, no answers file)."""
    from . import stats

    reporting = [r for r in members if r.get(metric) is not None]
    if not reporting or any(not r.get("run_dir") for r in reporting):
        return None
    by_seed = _seed_outcomes(reporting, metric, cache)
    if len(by_seed) != len(reporting):       # a run without answers, or two runs with the same seed
        return None
    try:
        est = stats.bootstrap_mean(by_seed, n_boot=n_boot, seed=seed, bounds=stats.METRIC_BOUNDS[metric],
                                   level=confidence)
    except ValueError:                       # no prompt every seed answered
        return None
    spread = t_interval([r[metric] for r in reporting], confidence)
    return {"n": est.n_seeds, "mean": est.value, "std": spread["std"], "ci_low": est.low, "ci_high": est.high,
            "half_width": (est.high - est.low) / 2 if _symmetric(est.value, est.low, est.high) else None,
            "ci_method": CI_BOOTSTRAP if est.n_seeds > 1 else CI_BOOTSTRAP_ONE_SEED, "n_prompts": est.n_prompts,
            "n_prompts_dropped": est.n_prompts_dropped}


def _t_summary(values: Sequence[Any], metric: str, confidence: float) -> dict[str, Any]:
    """The t-interval over seeds of ``values``, cut to the metric's range when it has one."""
    from . import stats

    out = {**t_interval(values, confidence), "ci_method": CI_T, "n_prompts": None, "n_prompts_dropped": None}
    if out["ci_low"] is None:
        out["ci_method"] = CI_NONE
        return out
    bounds = stats.METRIC_BOUNDS.get(metric)
    if bounds is not None and (out["ci_low"] < bounds[0] or out["ci_high"] > bounds[1]):
        out["ci_low"], out["ci_high"] = max(out["ci_low"], bounds[0]), min(out["ci_high"], bounds[1])
        out["ci_method"] = CI_T_CUT
        out["half_width"] = ((out["ci_high"] - out["ci_low"]) / 2 if _symmetric(out["mean"], out["ci_low"],
                                                                               out["ci_high"]) else None)
    return out


def summarize(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None = None,
              confidence: float = 0.95, n_boot: int = 2000, seed: int = 0,
              cache: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Aggregate per-run results over seeds (failed runs are left out).

    A metric with per-prompt outcomes (``stats.METRIC_BOUNDS``: the case-study metrics, avoid-term use,
    template compliance) whose runs all have their evaluation answers on disk (``<run_dir>/eval``) gets
    the two-level bootstrap of ``stats.bootstrap_mean`` over seeds and prompts, inside the metric's range
    (``ci_method`` :data:`CI_BOOTSTRAP`; :data:`CI_BOOTSTRAP_ONE_SEED` with one seed). Any other column
    (losses, steps) and rows without answers get the Student-t interval over the seeds' values
    (:data:`CI_T`; :data:`CI_T_CUT` when a bounded metric's interval had to be cut to its range,
    :data:`CI_NONE` with one seed).

    Args:
        rows: the per-run result rows.
        metrics: the columns to aggregate (default :func:`metric_columns`).
        confidence: the interval's level.
        n_boot, seed: the bootstrap's resamples and random seed (the result is deterministic).
        cache: the runs' per-prompt outcomes already read ({eval folder: outcomes}; filled here), shared with
            :func:`comparison_effects` and :func:`per_prompt_rows` so each answers file is read once.
    Returns:
        One row per (variant, size, metric): the group keys, metric, n (seeds), mean, std (over the seeds'
        values), ci_low, ci_high, half_width (only for a symmetric interval, else None), ci_method,
        n_prompts and n_prompts_dropped (bootstrap only, else None) and the seeds.
    """
    ok = [r for r in rows if r.get("status", "succeeded") == "succeeded"]
    metrics = list(metrics) if metrics else metric_columns(ok)
    from . import stats

    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in ok:
        groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS), []).append(r)
    cache = {} if cache is None else cache
    out = []
    for key in sorted(groups, key=lambda k: tuple(str(x) if not isinstance(x, int) else f"{x:09d}" for x in k)):
        members = groups[key]
        for m in metrics:
            summary = (_bootstrap_summary(members, m, cache, confidence, n_boot, seed)
                       if m in stats.METRIC_BOUNDS else None)
            if summary is None:
                summary = _t_summary([r.get(m) for r in members], m, confidence)
            if summary["n"]:
                out.append({**dict(zip(GROUP_KEYS, key)), "metric": m, **summary,
                            "seeds": [r.get("seed") for r in members if r.get(m) is not None]})
    return out


def write_table(rows: Sequence[Mapping[str, Any]], path_without_suffix: str | Path,
                columns: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write rows as ``<path>.csv`` and ``<path>.json`` (atomically).

    Args:
        rows: dicts (lists and dicts in cells are JSON-encoded in the CSV).
        path_without_suffix: the file path without its suffix.
        columns: the first CSV columns (in this order, written even when there are no rows).
    Returns:
        (csv path, json path).
    """
    base = Path(path_without_suffix)
    csv_path = write_csv(rows, base.with_name(base.name + ".csv"), columns)
    return csv_path, runs.write_json(base.with_name(base.name + ".json"), list(rows))


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path, columns: Sequence[str] = ()) -> Path:
    """Write rows as one CSV file (atomically); ``columns`` first, then any other key. Returns the path."""
    csv_path = Path(path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    cols: list[str] = list(columns)
    for r in rows:
        cols += [k for k in r if k not in cols]
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    tmp.replace(csv_path)
    return csv_path


# ---------------------------------------------------------------------------------------------
# Sweep configuration and grid


@dataclass(frozen=True)
class RunSpec:
    """One grid point: subset size, seed, data variant, selection and loss masking."""

    size: int
    seed: int
    data: str = "clean"
    selection: str = "random"
    train_on: str = "assistant"

    @property
    def variant(self) -> str:
        return f"{self.data}-{self.selection}-{self.train_on}"

    @property
    def run_id(self) -> str:
        return f"{self.variant}-n{self.size}-s{self.seed}"


@dataclass
class SweepConfig:
    """What a sweep runs; loaded from YAML by :func:`load_sweep_config` (keys = these fields).

    The grid is the ``baseline`` variant at every size x seed, plus each variant of
    ``comparisons["variants"]`` at ``comparisons["size"]`` (or the variant's own ``size``, one of ``sizes``)
    x seed (a variant dict overrides some of data / selection / train_on), plus both sides of every
    explicit pair of ``comparisons["pairs"]`` ({name, variant, baseline}, each side a variant dict with a
    size) x seed. ``train_params`` holds ``train.TrainConfig`` fields (and
    ``n_eval_loss``) for every run's :class:`experiment.TrainParams`; ``eval_params`` the
    :class:`experiment.EvalParams` settings ``n_per_category``, ``max_new_tokens``, ``batch_size``.
    The grid sets ``seed``, ``train_on`` and ``n_examples`` itself.
    """

    name: str = "sweep"
    profile: str = "quick"
    model: str = "smollm2-135m-instruct"
    sizes: list[int] = field(default_factory=lambda: [100, 300, 1000, 1800])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    data: dict[str, str] = field(default_factory=lambda: {"clean": "data/kestrel/train.jsonl",
                                                           "noisy": "data/kestrel/train_noisy.jsonl"})
    eval_path: str = "data/kestrel/eval.jsonl"
    dev_size: int = 32
    dev_seed: int = 0
    baseline: dict[str, str] = field(default_factory=lambda: {"data": "clean", "selection": "random",
                                                               "train_on": "assistant"})
    comparisons: dict[str, Any] = field(default_factory=dict)
    train_params: dict[str, Any] = field(default_factory=dict)
    eval_params: dict[str, Any] = field(default_factory=dict)
    primary_metric: str = ""
    evaluate_untuned: bool = True     # one reference evaluation of the model without adapter
    pool_size: int = 0                # > 0: use only the first N records of each data file (smoke tests)
    select_checkpoint: bool = True    # evaluate the run's checkpoint with the lowest dev loss
    workers: int = 1                  # runs at once, in worker processes: one per GPU; on a CPU they split the cores
    engine: str = "local"             # "local": the process pool; "submitit": one submitit job per run (Slurm arrays)
    submitit: dict[str, Any] = field(default_factory=dict)   # executor settings for engine submitit (SUBMITIT_SETTINGS)

    def path(self, value: str) -> Path:
        """A configured path: absolute, relative to the current directory, or to the repository."""
        return experiment.repo_path(value)


GRID_TRAIN_KEYS = ("seed", "train_on", "n_examples")   # set per run by the grid, never in train_params
EVAL_PARAM_KEYS = ("n_per_category", "max_new_tokens", "batch_size")

ENGINES = ("local", "submitit")             # the process pool of this machine; one submitit job per run
SUBMITIT_CLUSTERS = ("local", "slurm", "debug")
# The keys of a sweep's ``submitit:`` mapping: {key: (what the value must be, what it does)}.
SUBMITIT_SETTINGS: dict[str, tuple[str, str]] = {
    "cluster": ("one of local / slurm / debug", "local: one process per job on this machine (the default); "
                "slurm: a Slurm job array; debug: every job in this process, one after another"),
    "folder": ("a string", "submitit's job folder: pickled jobs and their stdout/stderr logs (default "
               "<sweep>/submitit/%j, %j being the job id; a relative path is relative to the sweep folder)"),
    "timeout_min": ("a positive integer", "the time limit of one job in minutes (default 1440)"),
    "array_parallelism": ("a positive integer", "jobs at once (default: `workers` on the local and debug clusters; "
                          "on Slurm submitit's 256)"),
    "cpus_per_task": ("a positive integer", "CPU cores per job (Slurm's --cpus-per-task; also the job's torch "
                      "threads)"),
    "gpus_per_node": ("an integer >= 0", "GPUs per job on Slurm (the local cluster gives each job one GPU while "
                      "there are GPUs, like the process pool)"),
    "mem_gb": ("a positive number", "memory per job in GB (Slurm's --mem)"),
    "slurm_partition": ("a string", "Slurm partition (--partition)"),
    "slurm_account": ("a string", "Slurm account (--account)"),
    "slurm_qos": ("a string", "Slurm quality of service (--qos)"),
    "slurm_constraint": ("a string", "Slurm node constraint (--constraint)"),
    "slurm_setup": ("a list of strings", "shell lines the sbatch script runs before the job (module load ...)"),
    "slurm_additional_parameters": ("a mapping", "any other sbatch option, e.g. {mail-type: END}"),
    "poll_s": ("a positive number", "seconds between two looks at the jobs (default 1; 10 on Slurm)"),
}


def _is_kind(kind: str, value: Any) -> bool:
    """Whether ``value`` is what ``kind`` (a SUBMITIT_SETTINGS description) asks for."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    checks = {"a string": isinstance(value, str) and bool(value.strip()),
              "a positive integer": is_int and value >= 1,
              "an integer >= 0": is_int and value >= 0,
              "a positive number": (is_int or isinstance(value, float)) and value > 0,
              "a list of strings": isinstance(value, list) and all(isinstance(v, str) for v in value),
              "a mapping": isinstance(value, dict)}
    return checks.get(kind, True)


def _engine_problems(config: SweepConfig) -> list[str]:
    """What is wrong with a config's ``engine`` and ``submitit`` settings (empty when nothing)."""
    import importlib.util

    problems = []
    if config.engine not in ENGINES:
        problems.append(f"engine must be 'local' (the process pool on this machine) or 'submitit' (one submitit job "
                        f"per run: a Slurm job array, or processes on this machine), got {config.engine!r}")
    elif config.engine == "submitit" and importlib.util.find_spec("submitit") is None:
        problems.append("engine 'submitit' needs the submitit package (pinned in requirements.lock): "
                        "pip install submitit")
    settings = config.submitit
    if not isinstance(settings, dict):
        return problems + [f"submitit must be a mapping of executor settings (keys {list(SUBMITIT_SETTINGS)}), "
                           f"got {settings!r}"]
    unknown = sorted(set(settings) - set(SUBMITIT_SETTINGS))
    if unknown:
        problems.append(f"unknown submitit keys {unknown}; valid: {list(SUBMITIT_SETTINGS)}")
    if "cluster" in settings and settings["cluster"] not in SUBMITIT_CLUSTERS:
        problems.append(f"submitit.cluster must be one of {list(SUBMITIT_CLUSTERS)} (local: processes on this "
                        f"machine, slurm: a Slurm job array, debug: in this process), got {settings['cluster']!r}")
    for key, value in settings.items():
        if key in SUBMITIT_SETTINGS and key != "cluster" and not _is_kind(SUBMITIT_SETTINGS[key][0], value):
            problems.append(f"submitit.{key} must be {SUBMITIT_SETTINGS[key][0]} ({SUBMITIT_SETTINGS[key][1]}), "
                            f"got {value!r}")
    return problems


def train_param_keys() -> list[str]:
    """The keys a sweep's ``train_params`` may hold: ``train.TrainConfig`` fields (not those the grid
    sets) and ``n_eval_loss``."""
    from . import train

    return sorted({f.name for f in fields(train.TrainConfig)} - set(GRID_TRAIN_KEYS) | {"n_eval_loss"})


def load_sweep_config(path: str | Path, **overrides: Any) -> SweepConfig:
    """Read a sweep YAML file into a checked :class:`SweepConfig`.

    Args:
        path: the YAML file (one mapping whose keys are SweepConfig fields).
        overrides: fields that win over the file (None values are ignored).
    Returns:
        The checked SweepConfig.
    Raises:
        FileNotFoundError: no such file.
        SweepConfigError: naming the file, for malformed YAML, an empty file, a top-level list or
            scalar, unknown keys (listing the valid ones), unknown ``train_params`` / ``eval_params``
            keys, an unknown profile, bad variant values or sizes.
    """
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sweep config {path}; see configs/sweep_quick.yaml for an example")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SweepConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file, "
                               "see configs/sweep_quick.yaml for an example") from exc
    if raw is None:
        raise SweepConfigError(f"{path}: the file is empty; a sweep config is a mapping such as "
                               "configs/sweep_quick.yaml")
    if not isinstance(raw, dict):
        raise SweepConfigError(f"{path}: the top level is a {type(raw).__name__}, not a mapping of keys "
                               "(name, profile, sizes, ...); see configs/sweep_quick.yaml")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    valid = [f.name for f in fields(SweepConfig)]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise SweepConfigError(f"{path}: unknown keys {unknown}; valid keys: {valid}")
    config = SweepConfig(**raw)
    check_config(config, where=str(path))
    return config


def check_config(config: SweepConfig, where: str = "sweep config") -> None:
    """Validate the values of a config, before any run starts (see :func:`load_sweep_config`).

    Args:
        config: the SweepConfig.
        where: the file name for the messages.
    Raises:
        SweepConfigError: listing every problem found.
    """
    problems = []
    try:
        profiles.check_name(config.profile, "profile")
    except ValueError as exc:
        problems.append(str(exc))
    if not config.sizes or any(not isinstance(s, int) or s < 1 for s in config.sizes):
        problems.append(f"sizes must be positive integers, got {config.sizes}")
    if not config.seeds or any(not isinstance(s, int) for s in config.seeds):
        problems.append(f"seeds must be integers, got {config.seeds}")
    for name, value, keys in (("train_params", config.train_params, train_param_keys()),
                              ("eval_params", config.eval_params, list(EVAL_PARAM_KEYS))):
        if not isinstance(value, dict):
            problems.append(f"{name} must be a mapping, got {value!r}")
            continue
        bad = sorted(set(value) - set(keys))
        if bad:
            grid = [k for k in bad if k in GRID_TRAIN_KEYS]
            problems.append(f"unknown {name} keys {bad}" + (f" ({grid} are set by the grid)" if grid else "")
                            + f"; valid: {keys}")
    try:
        variants = _variant_dicts(config)
    except SweepConfigError as exc:
        problems.append(str(exc))
        variants = []
    for spec in variants:
        spec = {k: v for k, v in spec.items() if k != "size"}
        for key, choices in (("data", DATA_CHOICES), ("selection", SELECTION_CHOICES), ("train_on", TRAIN_ON_CHOICES)):
            if spec.get(key) not in choices:
                problems.append(f"variant {spec}: {key} must be one of {choices}")
        if spec.get("data") and spec.get("data") not in config.data:
            problems.append(f"variant {spec}: no path for data {spec.get('data')!r} under `data:`")
    problems += _comparison_problems(config)
    problems += _engine_problems(config)
    if problems:
        raise SweepConfigError(f"{where}: " + "; ".join(problems))


VARIANT_KEYS = ("data", "selection", "train_on")   # what a comparison variant may set, besides its ``size``
PAIR_KEYS = ("name", "variant", "baseline")        # one entry of ``comparisons.pairs``


def _base_dict(config: SweepConfig) -> dict[str, Any]:
    return {"data": "clean", "selection": "random", "train_on": "assistant", **config.baseline}


def _comparison_size(config: SweepConfig | Mapping[str, Any]) -> int:
    cfg = _config_dict(config)
    return int((cfg.get("comparisons") or {}).get("size", sorted(cfg.get("sizes") or [0])[0]))


def _side_dict(config: SweepConfig, side: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A variant or pair side: the baseline's data/selection/train_on overridden by ``side``, and a size
    (``side["size"]``, default ``comparisons.size``)."""
    if not isinstance(side, Mapping):
        raise SweepConfigError(f"{where} must be a mapping of {list(VARIANT_KEYS) + ['size']}, got {side!r}")
    unknown = [k for k in side if k not in VARIANT_KEYS + ("size",)]
    if unknown:
        raise SweepConfigError(f"{where} may set {list(VARIANT_KEYS)} and size only, got {unknown}")
    size = side.get("size", _comparison_size(config))
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise SweepConfigError(f"{where}: size must be a positive integer, got {size!r}")
    return {**_base_dict(config), **{k: v for k, v in side.items() if k != "size"}, "size": size}


def _comparison_problems(config: SweepConfig) -> list[str]:
    """Comparisons that would run but never be compared: a variant at a size where the baseline does not run;
    pair names that repeat, or that a generated comparison already uses."""
    problems = []
    try:
        variants = [_side_dict(config, v, f"comparison variant {v!r}") for v in config.comparisons.get("variants", [])]
        names = [name for name, _, _ in _pair_dicts(config)]
    except SweepConfigError:
        return []          # reported by check_config
    for v in variants:
        if config.sizes and v["size"] not in config.sizes:
            problems.append(f"comparison variant {v} runs at {v['size']} examples, where the baseline does not run "
                            f"(sizes {config.sizes}): add {v['size']} to sizes, or compare it in comparisons.pairs")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"comparisons.pairs: the names {repeated} are used twice; give every pair its own name")
    generated = [n for n in names if re.search(r" n=\d+ vs n=\d+( \(step\))?$|, n=\d+$", n)]
    if generated:
        problems.append(f"comparisons.pairs: the names {generated} look like the sweep's own comparison names "
                        "(\"<variant> vs <baseline>, n=<size>\", \"<baseline> n=<a> vs n=<b>\"); choose another name")
    return problems


def _variant_dicts(config: SweepConfig) -> list[dict[str, Any]]:
    """The baseline (without a size), then every comparison variant and both sides of every explicit pair
    (each with its size)."""
    out = [_base_dict(config)]
    out += [_side_dict(config, v, f"comparison variant {v!r}") for v in config.comparisons.get("variants", [])]
    for _, variant, baseline in _pair_dicts(config):
        out += [variant, baseline]
    return out


def _pair_dicts(config: SweepConfig) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The checked ``comparisons.pairs``: (name, variant side, baseline side), each side as :func:`_side_dict`."""
    out = []
    for i, pair in enumerate(config.comparisons.get("pairs", []) or []):
        where = f"comparisons.pairs[{i}]"
        if not isinstance(pair, Mapping) or set(pair) - set(PAIR_KEYS) or not {"variant", "baseline"} <= set(pair):
            raise SweepConfigError(f"{where} must be a mapping with variant and baseline (and an optional name), "
                                   f"e.g. {{name: LIMA, variant: {{data: noisy, selection: quality, size: 100}}, "
                                   f"baseline: {{data: noisy, size: 400}}}}; got {pair!r}")
        v, b = (_side_dict(config, pair[k], f"{where}.{k}") for k in ("variant", "baseline"))
        if v == b:
            raise SweepConfigError(f"{where}: variant and baseline are the same runs ({v}); a pair compares "
                                   "two different runs")
        name = pair.get("name") or (f"{_side_spec(v).variant} n={v['size']} vs {_side_spec(b).variant} "
                                    f"n={b['size']}")
        out.append((str(name), v, b))
    return out


def _side_spec(side: Mapping[str, Any]) -> RunSpec:
    """The RunSpec (seed 0) of a :func:`_side_dict`."""
    return RunSpec(side["size"], 0, **{k: side[k] for k in VARIANT_KEYS})


def _as_config(config: SweepConfig | Mapping[str, Any]) -> SweepConfig:
    """A SweepConfig from itself or from its dict (``sweep.json``'s ``config``; unknown keys ignored)."""
    if isinstance(config, SweepConfig):
        return config
    return SweepConfig(**{k: v for k, v in dict(config).items() if k in {f.name for f in fields(SweepConfig)}})


def explicit_pairs(config: SweepConfig | Mapping[str, Any]) -> list[tuple[str, RunSpec, RunSpec]]:
    """The ``comparisons.pairs`` of a config as (name, variant spec, baseline spec), seed 0 (the specs
    name the variant and size; every seed of both runs is compared)."""
    return [(name, _side_spec(v), _side_spec(b)) for name, v, b in _pair_dicts(_as_config(config))]


def grid(config: SweepConfig) -> list[RunSpec]:
    """All runs of a sweep, without duplicates, smallest sizes first: the baseline at every size, each
    comparison variant at its ``size`` (default ``comparisons.size``) and both sides of every explicit
    pair (``comparisons.pairs``), each at every seed.

    Args:
        config: the sweep.
    Returns:
        The RunSpecs.
    """
    base, *variants = _variant_dicts(config)
    specs = [RunSpec(n, s, **base) for s in config.seeds for n in sorted(config.sizes)]
    specs += [replace(_side_spec(v), seed=s) for v in variants for s in config.seeds]
    seen, out = set(), []
    for spec in specs:
        if spec not in seen:
            seen.add(spec)
            out.append(spec)
    return sorted(out, key=lambda r: (r.size, r.seed, r.variant != RunSpec(0, 0, **base).variant, r.variant))


# ---------------------------------------------------------------------------------------------
# Preparing the data of every run


@dataclass
class SweepData:
    """Pools and dev split of a sweep: ``pools[data]`` excludes every dev record."""

    pools: dict[str, list[dict]]
    dev: list[dict]
    eval_path: Path
    scores: dict[str, list[QualityScore]] = field(default_factory=dict)

    def subset(self, spec: RunSpec, sizes: Iterable[int]) -> list[dict]:
        """The training records of ``spec`` (nested across ``sizes`` for the same seed)."""
        pool = self.pools[spec.data]
        if spec.selection == "quality":
            if spec.data not in self.scores:   # scoring 1,800 records takes seconds: once per pool
                self.scores[spec.data] = quality_scores(pool)
            return quality_subsets(pool, sizes, spec.seed, self.scores[spec.data])[spec.size]
        return nested_subsets(pool, sizes, spec.seed)[spec.size]


def load_sweep_data(config: SweepConfig) -> SweepData:
    """Read the configured pools, carve the dev split from the clean data and drop its records
    (matched by :func:`record_key`) from every pool.

    Args:
        config: the sweep.
    Returns:
        SweepData.
    Raises:
        SweepConfigError: a missing data or eval file, or a size larger than its pool.
    """
    needed = {v["data"] for v in _variant_dicts(config)}
    raw: dict[str, list[dict]] = {}
    for name in sorted(needed | {"clean"} & set(config.data)):
        path = config.path(config.data[name])
        if not path.exists():
            raise SweepConfigError(f"training data {name!r} not found at {path}; build it with "
                                   "`python -m instructlab.kestrel` or fix `data:` in the sweep config")
        raw[name] = runs.read_jsonl(path)[:config.pool_size or None]
    first = raw.get("clean") or next(iter(raw.values()))
    _, dev = split_dev(first, config.dev_size, config.dev_seed)
    dev_keys = {record_key(r) for r in dev}
    pools = {name: [r for r in recs if record_key(r) not in dev_keys] for name, recs in raw.items()}
    for spec in grid(config):
        if spec.size > len(pools[spec.data]):
            raise SweepConfigError(f"run {spec.run_id} needs {spec.size} records but the {spec.data!r} pool "
                                   f"has {len(pools[spec.data])} after removing the dev split")
    eval_path = config.path(config.eval_path)
    if not eval_path.exists():
        raise SweepConfigError(f"eval data not found at {eval_path}")
    return SweepData(pools, dev, eval_path)


def noise_rate(records: Sequence[dict]) -> float | None:
    """Share of records labelled as noisy (a truthy ``noise`` field other than "clean"/"none");
    None when no record carries a ``noise`` field."""
    labelled = [r for r in records if "noise" in r]
    if not labelled:
        return None
    return sum(1 for r in labelled if r["noise"] and str(r["noise"]).lower() not in ("clean", "none")) / len(records)


def dev_as_eval_records(dev: Sequence[dict]) -> list[dict]:
    """The dev split in the shape of ``eval.jsonl`` (prompt messages plus a ``reference`` answer),
    which is what notebook 02 reads from ``eval_path`` for its held-out loss and its before/after
    prompts: the training runs of a sweep then never see the eval set."""
    out = []
    for rec in dev:
        msgs = rec["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        out.append({"id": rec.get("id"), "category": rec.get("category", "domain"), "task_type": rec.get("task_type"),
                    "template": rec.get("template"), "expected_terms": [], "messages": msgs[:last],
                    "reference": msgs[last]["content"]})
    return out


# ---------------------------------------------------------------------------------------------
# Executing runs


UNTUNED = "untuned"   # run id and variant of the reference evaluation of the model without adapter


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _train_params(config: SweepConfig, spec: RunSpec, run_dir: Path, dev_eval_path: Path) -> dict[str, Any]:
    """The :class:`experiment.TrainParams` of one run, as a dict."""
    extra = dict(config.train_params)
    epochs, n_eval_loss = extra.pop("epochs", 0.0), extra.pop("n_eval_loss", 0)
    # With checkpoint selection, the dev loss is measured there (on the assistant turns, whatever the run trained
    # on): the trainer's own held-out loss at the start and the end would measure the same split twice more.
    eval_path = "" if config.select_checkpoint else str(dev_eval_path)
    return asdict(experiment.TrainParams(profile=config.profile, model=config.model,
                                         data_path=str(run_dir / "train_data.jsonl"), eval_path=eval_path,
                                         n_examples=spec.size, epochs=epochs, seed=spec.seed, train_on=spec.train_on,
                                         n_eval_loss=n_eval_loss, overrides=extra))


def _eval_params(config: SweepConfig, eval_path: Path, trained: bool) -> dict[str, Any]:
    """The :class:`experiment.EvalParams` of one run, as a dict (its adapter is set once it is chosen)."""
    return asdict(experiment.EvalParams(profile=config.profile, model=config.model, eval_path=str(eval_path),
                                        before=not trained, **config.eval_params))


def _without_paths(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("data_path", "eval_path", "adapter")}


def run_tasks(config: SweepConfig, sweep_dir: Path, data: SweepData) -> list[dict[str, Any]]:
    """One task dict per grid run: its spec, folders, run parameters and a ``signature``.

    The signature is everything that decides the run's result except folder paths; a finished run
    with another signature is run again.  Writes each run's training subset
    (``<run>/train_data.jsonl``) and the shared dev split (``<sweep>/data/dev.jsonl``, and
    ``dev_as_eval.jsonl`` for the training's held-out loss).

    Args:
        config: the sweep.
        sweep_dir: its folder.
        data: the pools (:func:`load_sweep_data`).
    Returns:
        The tasks, the untuned reference evaluation first (when configured).
    """
    runs.write_jsonl(sweep_dir / "data" / "dev.jsonl", data.dev)
    dev_eval_path = runs.write_jsonl(sweep_dir / "data" / "dev_as_eval.jsonl", dev_as_eval_records(data.dev))
    eval_digest = _file_digest(data.eval_path)
    tasks = []
    for spec in grid(config):
        run_dir = sweep_dir / "runs" / spec.run_id
        records = data.subset(spec, [n for n in config.sizes if n >= 1] + [spec.size])
        fp = runs.fingerprint(records)
        train_params = _train_params(config, spec, run_dir, dev_eval_path)
        eval_params = _eval_params(config, data.eval_path, trained=True)
        signature = {"spec": asdict(spec), "data_fingerprint": fp, "dev_fingerprint": runs.fingerprint(data.dev),
                     "eval_sha256": eval_digest, "select_checkpoint": config.select_checkpoint,
                     "train": _without_paths(train_params), "eval": _without_paths(eval_params)}
        tasks.append({"spec": asdict(spec), "run_id": spec.run_id, "run_dir": str(run_dir), "records": records,
                      "dev_records": data.dev, "select_checkpoint": config.select_checkpoint,
                      "n_dev": len(data.dev), "noise_rate": noise_rate(records), "data_fingerprint": fp,
                      "train_params": train_params, "eval_params": eval_params, "signature": signature})
    return ([_untuned_task(config, sweep_dir, data, eval_digest)] if config.evaluate_untuned else []) + tasks


def _untuned_task(config: SweepConfig, sweep_dir: Path, data: SweepData, eval_digest: str) -> dict[str, Any]:
    """The reference run: the model without an adapter, evaluated once."""
    run_dir = sweep_dir / "runs" / UNTUNED
    eval_params = _eval_params(config, data.eval_path, trained=False)
    signature = {"untuned": True, "eval_sha256": eval_digest, "eval": _without_paths(eval_params)}
    return {"spec": asdict(RunSpec(0, 0, "-", "-", "-")), "run_id": UNTUNED, "run_dir": str(run_dir), "records": [],
            "n_dev": 0, "noise_rate": None, "data_fingerprint": None, "untuned": True, "train_params": {},
            "eval_params": eval_params, "signature": signature}


def run_is_finished(task: Mapping[str, Any]) -> bool:
    """True when the run's manifest says it succeeded with the same signature, its result exists and its
    training still matches (``experiment.training_matches``: the same model, data and resolved
    ``TrainConfig``; the signature holds the run's parameters, which resolve differently once the
    profile is edited)."""
    run_dir = Path(task["run_dir"])
    manifest = runs.read_manifest(run_dir)
    if not (manifest.get("status") == "succeeded" and manifest.get("signature") == _jsonable(task["signature"])
            and (run_dir / "result.json").exists()):
        return False
    return (bool(task.get("untuned")) or _training_matches(task)) and _evaluation_matches(task)


def _evaluation_matches(task: Mapping[str, Any]) -> bool:
    """True when the run's finished evaluation answered the prompts and token budget its parameters resolve to
    now (``metrics.eval_settings``: -1 prompts or 0 tokens mean the profile's, so an edit of the profile's
    evaluation settings changes them while the parameters, and the signature, stay the same), in the precision
    generation runs in now (``experiment.generation_dtype``). Such a run keeps its training and only evaluates
    again."""
    from . import metrics

    params = task["eval_params"]
    try:
        recorded = json.loads((Path(task["run_dir"]) / "eval" / experiment.RESULT_FILE).read_text(encoding="utf-8"))
        n, tokens = metrics.eval_settings(params["profile"], params.get("n_per_category"), params.get("max_new_tokens"))
        records = metrics.select_per_category(runs.read_jsonl(experiment.repo_path(params["eval_path"])), n)
    except (OSError, ValueError, KeyError):
        return False
    return (recorded.get("max_new_tokens") == tokens and recorded.get("eval_fingerprint") == runs.fingerprint(records)
            and experiment.generation_dtype_matches(recorded))


def _training_matches(task: Mapping[str, Any]) -> bool:
    """``experiment.training_matches`` of the task's finished training (model and resolved ``TrainConfig``).

    The training data and dev files are compared by content (the task's signature holds their
    fingerprints and is checked before) rather than by path, so a sweep folder that was moved is not
    trained again."""
    train_dir = Path(task["run_dir"]) / "train"
    try:
        recorded = json.loads((train_dir / experiment.RESULT_FILE).read_text(encoding="utf-8")).get("params") or {}
    except (OSError, ValueError):
        return False
    params = experiment.TrainParams(**{**task["train_params"], **{k: recorded[k] for k in ("data_path", "eval_path")
                                                                  if k in recorded}})
    return experiment.training_matches(train_dir, params)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _prepare_run_dir(task: Mapping[str, Any]) -> Path:
    """Create the run folder; a folder left by a run with another signature is moved aside
    (``<run id>.stale-<n>``) so that stale checkpoints are never resumed."""
    run_dir = Path(task["run_dir"])
    manifest = runs.read_manifest(run_dir)
    if manifest and manifest.get("signature") != _jsonable(task["signature"]):
        n = 1
        while run_dir.with_name(f"{run_dir.name}.stale-{n}").exists():
            n += 1
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.stale-{n}"))
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "train_data.jsonl").exists():
        runs.write_jsonl(run_dir / "train_data.jsonl", task["records"])
    runs.write_manifest(run_dir, kind="ablation-run", run_id=task["run_id"], signature=task["signature"],
                        data_fingerprint=task["data_fingerprint"], status="running")
    return run_dir


def _row_base(task: Mapping[str, Any]) -> dict[str, Any]:
    spec = RunSpec(**task["spec"])
    return {"run_id": task["run_id"], "variant": UNTUNED if task.get("untuned") else spec.variant, "data": spec.data,
            "selection": spec.selection, "train_on": spec.train_on, "size": spec.size, "seed": spec.seed,
            "n_train": len(task["records"]), "n_dev": task["n_dev"], "noise_rate": task["noise_rate"],
            "data_fingerprint": task["data_fingerprint"], "run_dir": task["run_dir"]}


def fresh_step(step_dir: Path) -> None:
    """Remove what a killed step left (partial checkpoints, answers): the step starts over cleanly."""
    import shutil

    if step_dir.exists():
        shutil.rmtree(step_dir)


def _run_steps(task: Mapping[str, Any], report: Callable[[str], None] | None) -> None:
    """Train (``experiment.train_run``), choose the checkpoint on the dev split, evaluate
    (``experiment.eval_run``). A finished training whose model, data and resolved ``TrainConfig`` are
    those of the task (``experiment.training_matches``: a profile edit that changes what is trained
    does not pass) is kept, so a sweep killed during evaluation does not train again; an evaluation is
    kept when its ``result.json`` holds the same parameters and the training was kept."""
    run_dir = Path(task["run_dir"])
    eval_params = dict(task["eval_params"])
    trained = False
    if not task.get("untuned"):
        train_dir = run_dir / "train"
        train_params = experiment.TrainParams(**task["train_params"])
        if _training_matches(task):
            report and report("training already done, kept")
        else:
            fresh_step(train_dir)
            (run_dir / "checkpoint_selection.json").unlink(missing_ok=True)   # chosen among the old checkpoints
            run = experiment.train_run(train_params, train_dir, bar=False, report=report)
            del run
            trained = True
        eval_params["adapter"] = _choose_checkpoint(task, train_dir)
    eval_dir = run_dir / "eval"
    params = experiment.EvalParams(**eval_params)
    # a new adapter (even at the same path), other parameters, or other prompts / token budget from the profile
    if trained or not experiment.params_match(eval_dir, params) or not _evaluation_matches(task):
        fresh_step(eval_dir)
        experiment.eval_run(params, eval_dir, report=report)


def _choose_checkpoint(task: Mapping[str, Any], train_dir: Path) -> str:
    """The adapter to evaluate: the dev-loss choice of ``experiment.select_checkpoint`` (kept on disk)."""
    if not task.get("select_checkpoint", True):
        return str(train_dir)
    saved = train_dir.parent / "checkpoint_selection.json"
    if saved.exists() and saved.stat().st_mtime >= (train_dir / experiment.RESULT_FILE).stat().st_mtime:
        return json.loads(saved.read_text(encoding="utf-8"))["chosen"]
    model = experiment.read_result(train_dir)["model"]
    return experiment.select_checkpoint(model, train_dir, task["dev_records"])["chosen"]


def execute_run(task: Mapping[str, Any], progress: Callable[[str], None] = print,
                on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Run one grid point (train, choose the checkpoint, evaluate, collect) unless it already finished.

    What the steps print and warn goes to ``<run>/log.txt``; ``progress`` gets short lines (training
    steps with loss and ETA, generation) prefixed by the run id.

    Args:
        task: one of :func:`run_tasks`.
        progress: called with progress lines.
        on_start: called with the run folder once it is prepared, before the steps (a submitit job
            records itself in the run's manifest there).
    Returns:
        The run's result row (``status`` succeeded/failed, ``skipped`` True when it was resumed from disk).
        A failing run never raises: the row carries ``error``, the run folder its log.
    """
    run_dir = Path(task["run_dir"])
    if run_is_finished(task):   # the folder where it is now (a sweep folder may have been moved or copied)
        return {**json.loads((run_dir / "result.json").read_text(encoding="utf-8")), "run_dir": str(run_dir),
                "skipped": True}
    _prepare_run_dir(task)
    if on_start is not None:
        on_start(run_dir)
    start = time.perf_counter()

    import contextlib
    import sys

    terminal = sys.stdout   # the steps' own output goes to log.txt; progress lines to the terminal

    def report(line: str) -> None:
        with contextlib.redirect_stdout(terminal):
            progress(f"  {task['run_id']}: {line.strip()}")

    try:
        _quietly(lambda: _run_steps(task, report), run_dir / "log.txt")
        metrics = collect_metrics(run_dir)
    except Exception as exc:  # one failed run must not stop the sweep; it is reported at the end
        runs.write_manifest(run_dir, status="failed", error=f"{type(exc).__name__}: {exc}")
        return {**_row_base(task), "status": "failed", "error": f"{type(exc).__name__}: {exc}", "skipped": False}
    row = {**_row_base(task), **metrics, "status": "succeeded", "duration_s": round(time.perf_counter() - start, 1)}
    runs.write_json(run_dir / "result.json", row)
    runs.write_manifest(run_dir, status="succeeded", error=None, duration_s=row["duration_s"])
    return {**row, "skipped": False}


def _quietly(fn: Callable[[], Any], log_path: Path) -> Any:
    """Call ``fn()`` with its printed output and warnings going to ``log_path`` (progress lines,
    written to the terminal saved before, still show)."""
    import contextlib
    import warnings

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def flatten_numbers(obj: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict[str, float]:
    """Numeric leaves of a nested dict as {"a.b": value} (booleans and lists left out)."""
    out: dict[str, float] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[key] = v
        elif isinstance(v, Mapping) and depth > 1:
            out.update(flatten_numbers(v, key + ".", depth - 1))
    return out


def collect_metrics(run_dir: str | Path) -> dict[str, float]:
    """The numbers of one run, from its documented results files.

    ``train/result.json`` gives ``train_loss``, ``final_loss``, ``global_step`` and ``dev_loss`` (the
    trainer's eval loss: its eval data is the dev split); ``checkpoint_selection.json`` the dev loss of
    the chosen checkpoint and ``chosen_step``; ``eval/result.json`` the evaluation metrics.

    Args:
        run_dir: a sweep run folder.
    Returns:
        {column: number}.
    Raises:
        FileNotFoundError: the evaluation did not finish (no ``eval/result.json``).
    """
    run_dir = Path(run_dir)
    out: dict[str, float] = {}
    if (run_dir / "train" / experiment.RESULT_FILE).exists():
        train = experiment.read_result(run_dir / "train")["metrics"]
        out.update({k: train[k] for k in ("train_loss", "final_loss", "global_step") if k in train})
        if "eval_loss" in train:
            out["dev_loss"] = train["eval_loss"]
    selection = run_dir / "checkpoint_selection.json"
    if selection.exists():
        chosen = json.loads(selection.read_text(encoding="utf-8"))
        out["dev_loss"] = chosen["dev_loss"]
        out["chosen_step"] = _checkpoint_step(chosen["chosen"], out.get("global_step"))
    out.update(flatten_numbers(experiment.read_result(run_dir / "eval")["metrics"]))
    return out


def _checkpoint_step(path: str, final_step: Any) -> Any:
    name = Path(path).name
    return int(name.split("-")[-1]) if name.startswith("checkpoint-") else final_step


def loss_curves(sweep_dir: str | Path) -> dict[str, list[dict[str, float]]]:
    """Training log of every run of a sweep: {run_id: [{"step", "loss"} ...]} read from
    ``runs/<id>/train/log_history.jsonl`` (runs without one are left out)."""
    out = {}
    for path in sorted(Path(sweep_dir).glob("runs/*/train/log_history.jsonl")):
        rows = [r for r in runs.read_jsonl(path) if "loss" in r]
        if rows:
            out[path.parent.parent.name] = [{"step": r.get("step", i + 1), "loss": r["loss"]} for i, r in enumerate(rows)]
    return out


# ---------------------------------------------------------------------------------------------
# The sweep


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns: per-run rows, the aggregated summary and the files written."""

    sweep_dir: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    files: dict[str, Path]
    duration_s: float
    comparisons: list[dict[str, Any]] = field(default_factory=list)   # :func:`comparison_effects`

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("status") != "succeeded"]


def default_sweep_dir(config: SweepConfig) -> Path:
    """``<runs root>/sweep-<name>``: a stable folder, so running the same sweep again resumes it."""
    return runs.runs_root() / f"sweep-{config.name}"


def device_slots(workers: int) -> list[str | None]:
    """One device per worker: CUDA device ids while there are GPUs, else None (CPU). More workers
    than GPUs is refused, because two runs on one GPU compete for its memory."""
    try:
        import torch

        n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        n_gpu = 0
    if n_gpu:
        if workers > n_gpu:
            raise ValueError(f"--workers {workers} but only {n_gpu} GPU(s): use at most one worker per device")
        return [str(i) for i in range(workers)]
    return [None] * workers


_PROGRESS_QUEUE: list[Any] = []   # in a pool worker: the queue its progress lines go to (set by _init_worker)


def _init_worker(slots: Any, threads: int, lines: Any = None) -> None:
    """Process-pool initializer: pin this worker to its device, or to its share of the CPU threads, and keep
    the queue its progress lines go to."""
    import os

    device = slots.get()
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    elif threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    _PROGRESS_QUEUE[:] = [lines] if lines is not None else []


def _pool_run(task: Mapping[str, Any]) -> dict[str, Any]:
    if _PROGRESS_QUEUE:
        return execute_run(task, progress=_PROGRESS_QUEUE[0].put)
    return execute_run(task, progress=lambda s: print(s, flush=True))


def run_sweep(config: SweepConfig, sweep_dir: str | Path | None = None, workers: int | None = None,
              progress: Callable[[str], None] = print, data: SweepData | None = None) -> SweepResult:
    """Run (or resume) every run of the grid and write ``results`` and ``summary`` (CSV + JSON).

    Every run calls ``experiment.train_run`` and ``experiment.eval_run`` (see :func:`execute_run`):
    with ``config.engine`` "local" in this process with one worker, else in a pool of spawned worker
    processes; with "submitit" in one submitit job per run (a Slurm job array, or processes on this
    machine; see :func:`submitit_executor`). Either way finished run folders are skipped before
    anything starts, and the results are read back from the run folders' rows.

    Args:
        config: the SweepConfig (checked when loaded by :func:`load_sweep_config`).
        sweep_dir: the sweep folder (default :func:`default_sweep_dir`); the same folder resumes.
        workers: runs at once (default: the config's); one per GPU, on a CPU they split the cores
            (with engine submitit: the default ``array_parallelism`` of the local and debug clusters).
        progress: called with progress lines (each run's start, steps and result).
        data: the pools from :func:`load_sweep_data` when already loaded.
    Returns:
        SweepResult; ``<sweep>/results.{csv,json}`` hold one row per run (config, seed, data
        fingerprint, noise rate, metrics), ``<sweep>/summary.{csv,json}`` mean over seeds and 95% interval
        (:func:`summarize`: ``ci_method`` says bootstrap over seeds and prompts, or t over seeds),
        ``<sweep>/comparisons.{csv,json,md}`` the paired effects (:func:`comparison_effects`).
    Raises:
        SweepConfigError: before any run starts (bad config or data). Failed runs do not raise:
        they are listed in ``SweepResult.failed`` (with their run folders and logs).
    """
    start = time.perf_counter()
    started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # absolute: the rows name their run folders, which later readers (a notebook elsewhere) must find
    sweep_dir = (Path(sweep_dir) if sweep_dir else default_sweep_dir(config)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    data = data or load_sweep_data(config)
    tasks = run_tasks(config, sweep_dir, data)
    runs.write_json(sweep_dir / "sweep.json", {"config": asdict(config), "runs": [t["run_id"] for t in tasks]})
    runs.write_manifest(sweep_dir, kind="sweep", name=config.name, config=asdict(config), status="running",
                        n_runs=len(tasks))
    todo = [t for t in tasks if not run_is_finished(t)]
    todo_ids = {t["run_id"] for t in todo}
    progress(f"sweep {config.name!r}: {len(tasks)} runs, {len(tasks) - len(todo)} already finished, "
             f"{len(todo)} to run -> {sweep_dir}")
    rows = {t["run_id"]: execute_run(t, progress) for t in tasks if t["run_id"] not in todo_ids}
    workers = max(1, int(workers or config.workers))
    runner = (_execute_submitit(todo, config, sweep_dir, workers, progress) if config.engine == "submitit"
              else _execute_all(todo, workers, progress))
    for i, row in enumerate(runner, 1):
        rows[row["run_id"]] = row
        progress(f"[{i}/{len(todo)}] {_describe_row(row)}")
    ordered = [rows[t["run_id"]] for t in tasks]
    outcomes: dict[str, dict] = {}      # every run's per-prompt outcomes, read once for the three tables
    summary = summarize(ordered, cache=outcomes)
    files = dict(zip(("results_csv", "results_json"), write_table(ordered, sweep_dir / "results")))
    files.update(zip(("summary_csv", "summary_json"), write_table(summary, sweep_dir / "summary")))
    effects = comparison_effects(ordered, config, cache=outcomes)
    files.update(zip(("comparisons_csv", "comparisons_json"),
                     write_table(effects, sweep_dir / "comparisons", columns=EFFECT_COLUMNS)))
    files["comparisons_md"] = write_comparisons_markdown(effects, sweep_dir / "comparisons.md",
                                                         title=f"Sweep {config.name!r}: paired effects")
    files["per_prompt_csv"] = write_csv(per_prompt_rows(ordered, cache=outcomes), sweep_dir / "per_prompt.csv",
                                         PER_PROMPT_COLUMNS)
    duration = round(time.perf_counter() - start, 1)
    failed = [r["run_id"] for r in ordered if r.get("status") != "succeeded"]
    # Every call of the sweep, kept across resumes: a resumed sweep's duration_s is that call's alone, the
    # sessions say how long the runs took and on which machine (the CPU kind decides the precision and speed).
    before = runs.read_manifest(sweep_dir)
    previous = before.get("sessions") or ([{   # a sweep from before sessions were kept: its last call
        "started_utc": before.get("created_utc"), "duration_s": before["duration_s"], "ran": None,
        "device": None, "note": "recorded before the sweep kept its sessions: the duration of its last call"}]
        if before.get("duration_s") is not None else [])
    session = {"started_utc": started_utc, "duration_s": duration, "ran": len(todo), "workers": workers,
               "engine": config.engine, "failed": len(failed),
               "device": _device_description() if config.engine == "local" else
               "the submitit jobs' nodes (each run's manifest.json: job host)"}
    runs.write_manifest(sweep_dir, status="failed" if failed else "succeeded", failed_runs=failed,
                        duration_s=duration, files={k: str(v) for k, v in files.items()},
                        sessions=[*previous, session], run_time_s=round(sum(
                            float(r.get("duration_s") or 0) for r in ordered), 1))
    return SweepResult(sweep_dir, ordered, summary, files, duration, effects)


def _device_description() -> str:
    """This machine's device and precision line (``models.device_settings().description``), or why not."""
    try:
        from . import models

        return models.device_settings().description
    except Exception as exc:   # a sweep's bookkeeping never fails the sweep
        return f"unknown ({type(exc).__name__}: {exc})"


def _execute_all(tasks: list[dict[str, Any]], workers: int, progress: Callable[[str], None]):
    """Yield result rows as runs finish: in this process for one worker, else in a spawn pool."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            progress(f"run {task['run_id']} ...")
            yield execute_run(task, progress)
        return
    import multiprocessing as mp
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    slots = device_slots(workers)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    for s in slots:
        queue.put(s)
    threads = max(1, (os.cpu_count() or 1) // workers)
    progress(f"{workers} workers on {'GPUs ' + ','.join(slots) if slots[0] else f'CPU ({threads} threads each)'}")
    # The workers send their progress lines here and this process prints them: in a notebook they reach the
    # cell's output once (a worker printing to its own stdout would also be echoed to the terminal by ipykernel).
    # A SimpleQueue's put writes at once (no feeder thread), so a run's lines are in the pipe before its result.
    lines = ctx.SimpleQueue()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(queue, threads, lines)) as pool:
        pending = {pool.submit(_pool_run, t) for t in tasks}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _relay(lines, progress)
            for fut in done:
                yield fut.result()
    _relay(lines, progress)     # the workers have exited: nothing more can arrive


def _relay(lines: Any, progress: Callable[[str], None]) -> None:
    """Print the progress lines the workers have queued so far."""
    while not lines.empty():
        progress(lines.get())


def _describe_row(row: Mapping[str, Any]) -> str:
    if row.get("status") != "succeeded":
        return f"{row['run_id']}: FAILED {row.get('error', '')}"
    shown = {k: v for k, v in row.items() if k in metric_columns([row]) and k not in ("noise_rate",)}
    nums = ", ".join(f"{k}={v:.3g}" for k, v in list(shown.items())[:6])
    took = "resumed" if row.get("skipped") else f"{row.get('duration_s')} s"
    return f"{row['run_id']}: {took}; {nums}"


# ---------------------------------------------------------------------------------------------
# The submitit engine: one job per run (Slurm job arrays, or processes on this machine)


def submitit_settings(config: SweepConfig, sweep_dir: str | Path, workers: int | None = None) -> dict[str, Any]:
    """The ``submitit:`` settings of a sweep with their defaults filled in (see :data:`SUBMITIT_SETTINGS`).

    Args:
        config: the sweep (checked).
        sweep_dir: its folder (a relative ``folder`` setting is relative to it).
        workers: the runs at once asked for (default: the config's ``workers``).
    Returns:
        The settings, with ``cluster`` (default "local"), ``folder`` (absolute; default
        ``<sweep>/submitit/%j``), ``timeout_min`` (default 1440), ``array_parallelism`` (default
        ``workers`` on the local and debug clusters, None on Slurm: submitit's own limit) and ``poll_s``.
    """
    settings = dict(config.submitit)
    cluster = settings.get("cluster", "local")
    folder = Path(settings.get("folder") or "submitit/%j")
    folder = folder if folder.is_absolute() else Path(sweep_dir).absolute() / folder
    parallel = settings.get("array_parallelism") or (None if cluster == "slurm" else
                                                      max(1, int(workers or config.workers)))
    return {**settings, "cluster": cluster, "folder": str(folder), "timeout_min": settings.get("timeout_min", 1440),
            "array_parallelism": parallel, "poll_s": settings.get("poll_s", 10.0 if cluster == "slurm" else 1.0)}


def submitit_executor(settings: Mapping[str, Any], name: str = "sweep") -> Any:
    """The submitit executor of resolved settings (:func:`submitit_settings`).

    * local: ``submitit.LocalExecutor``: each job is a process on this machine. It has no array limit,
      so the sweep hands it one job per free slot (``array_parallelism`` at once, one GPU each while
      there are GPUs, else a share of the CPU cores), as the process pool does;
    * slurm: ``submitit.AutoExecutor(cluster="slurm")`` with the job name, ``timeout_min``,
      ``cpus_per_task``, ``gpus_per_node``, ``mem_gb``, the ``slurm_*`` settings and the array's
      parallelism (``slurm_array_parallelism``): the sweep submits one job array with ``map_array``;
    * debug: ``submitit.DebugExecutor``: every job runs in this process when the sweep looks at it.

    Args:
        settings: from :func:`submitit_settings`.
        name: the Slurm job name.
    Returns:
        The executor.
    Raises:
        SweepConfigError: cluster slurm where submitit finds no Slurm (no ``srun``).
    """
    import submitit

    cluster, folder = settings["cluster"], settings["folder"]
    if cluster == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=settings["timeout_min"])
        return executor
    if cluster == "debug":
        return submitit.DebugExecutor(folder)
    try:
        executor = submitit.AutoExecutor(folder, cluster="slurm")
    except RuntimeError as exc:
        raise SweepConfigError(f"cluster 'slurm': {exc} Start the sweep on a machine that submits Slurm jobs "
                               "(a login node), or use --cluster local") from exc
    params: dict[str, Any] = {"name": name, "timeout_min": settings["timeout_min"]}
    params.update({k: settings[k] for k in ("cpus_per_task", "gpus_per_node", "mem_gb") if settings.get(k) is not None})
    params.update({k: v for k, v in settings.items() if k.startswith("slurm_") and v is not None})
    if settings.get("array_parallelism"):
        params["slurm_array_parallelism"] = settings["array_parallelism"]
    executor.update_parameters(**params)
    return executor


def submitit_job(task: Mapping[str, Any], threads: int = 0, token: str = "") -> dict[str, Any]:
    """What one submitit job runs: :func:`execute_run` of one grid run, in its own run folder.

    Its progress lines go to the job's stdout log. When the run starts, its manifest gets ``job``:
    the job id, cluster, host, process id, the job's stdout / stderr logs and ``token`` (which
    submission this is).

    Args:
        task: one of :func:`run_tasks`.
        threads: > 0: the job's CPU threads (OMP_NUM_THREADS and torch's).
        token: written into the manifest's ``job`` entry.
    Returns:
        The run's result row, as :func:`execute_run`.
    """
    import os
    import socket
    import sys

    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    info: dict[str, Any] = {"engine": "submitit", "token": token, "host": socket.gethostname(), "pid": os.getpid(),
                            "threads": threads or None}
    try:
        import submitit

        env = submitit.JobEnvironment()
        info.update(cluster=env.cluster, job_id=env.job_id, stdout=str(env.paths.stdout), stderr=str(env.paths.stderr))
    except Exception:   # the debug cluster runs the job in this process, outside a job environment
        pass
    return execute_run(task, progress=lambda s: print(s, flush=True),
                       on_start=lambda run_dir: runs.write_manifest(run_dir, job=info))


def _job_state(job: Any) -> str:
    try:
        return str(job.state)
    except Exception:
        return "unknown"


def _job_row(job: Any, task: Mapping[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    """The result row of a finished job: what it returned; when it ended without one (killed, out of
    memory, past its time limit) a failed row naming its stderr log, also written into the run's manifest."""
    from submitit.core.utils import FailedJobError

    try:
        row = job.result()
    except Exception as exc:
        if run_is_finished(task):   # the run finished, the job died before handing its row back
            return {**json.loads((Path(task["run_dir"]) / "result.json").read_text(encoding="utf-8")), "skipped": False}
        what = ("raised an error" if isinstance(exc, FailedJobError) else f"ended without a result (submitit state "
                f"{_job_state(job)}: killed, out of memory or past timeout_min?)")
        error = f"submitit job {job.job_id} {what}; stderr log: {job.paths.stderr}"
        if (Path(task["run_dir"]) / "manifest.json").exists():
            runs.write_manifest(task["run_dir"], status="failed", error=error)
        return {**_row_base(task), "status": "failed", "error": error, "skipped": False}
    if row.get("status") != "succeeded":
        progress(f"  {task['run_id']}: job {job.job_id} logs {job.paths.stdout} and {job.paths.stderr}; "
                 f"the run's own log {Path(task['run_dir']) / 'log.txt'}")
    return row


def _cancel_jobs(jobs: Sequence[Any], cluster: str) -> None:
    """Cancel unfinished jobs: on Slurm one ``scancel`` for all of them, elsewhere each job's own cancel
    (local jobs that the terminal's Ctrl-C reached too get 3 s to stop by themselves first)."""
    import subprocess

    if cluster == "slurm" and jobs:
        try:
            subprocess.call(["scancel", *[job.job_id for job in jobs]])
        except OSError:
            pass
        return
    if cluster == "local":
        deadline = time.monotonic() + 3
        while jobs and time.monotonic() < deadline:
            jobs = [job for job in jobs if not job.done()]
            if jobs:
                time.sleep(0.1)
    for job in jobs:
        try:
            job.cancel(check=False)
        except Exception:
            pass


def _execute_submitit(tasks: list[dict[str, Any]], config: SweepConfig, sweep_dir: Path, workers: int,
                      progress: Callable[[str], None]):
    """Yield result rows as submitit jobs finish: one job per run (:func:`submitit_job`), submitted as a
    Slurm job array (``map_array``), or on the local cluster one job per free slot. Ctrl-C cancels the
    unfinished jobs, so that running the sweep again (which skips the finished run folders) is safe."""
    if not tasks:
        return
    import os
    import uuid

    settings = submitit_settings(config, sweep_dir, workers)
    cluster, parallel, poll = settings["cluster"], settings["array_parallelism"], float(settings["poll_s"])
    executor = submitit_executor(settings, name=f"sweep-{config.name}")
    tokens = {t["run_id"]: uuid.uuid4().hex for t in tasks}
    waiting, running, started = list(tasks), {}, set()
    free: list[str | None] = []
    if cluster == "local":
        free = device_slots(parallel)
        threads = 0 if free[0] is not None else max(1, (os.cpu_count() or 1) // parallel)
        where = f"GPUs {','.join(free)}" if free[0] is not None else f"CPU ({threads} threads each)"
        progress(f"submitit (local): {len(tasks)} jobs, {parallel} at once on {where}; job folder {settings['folder']}")
    else:
        threads = int(settings.get("cpus_per_task") or 0) if cluster == "slurm" else 0
        jobs = executor.map_array(submitit_job, waiting, [threads] * len(waiting),
                                  [tokens[t["run_id"]] for t in waiting])
        running = {job.job_id: (job, task, None) for job, task in zip(jobs, waiting)}
        waiting = []
        how = (f"as job array {jobs[0].job_id.split('_')[0]}" + (f", at most {parallel} at once" if parallel else "")
               if cluster == "slurm" else "(they run in this process, one after another)")
        progress(f"submitit ({cluster}): submitted {len(jobs)} jobs {how}; job folder {settings['folder']}")
        for job, task in zip(jobs, tasks):
            progress(f"  job {job.job_id}: {task['run_id']}")
    try:
        while waiting or running:
            while waiting and free:
                task, slot = waiting.pop(0), free.pop(0)
                if slot is not None:
                    executor.update_parameters(gpus_per_node=1, visible_gpus=(int(slot),))
                job = executor.submit(submitit_job, task, threads, tokens[task["run_id"]])
                running[job.job_id] = (job, task, slot)
                progress(f"  submitted job {job.job_id}: {task['run_id']}{f' on GPU {slot}' if slot else ''}; "
                         f"logs {job.paths.stdout.parent}")
            for job_id, (job, task, slot) in list(running.items()):
                finished = job.done()
                info = runs.read_manifest(Path(task["run_dir"])).get("job") or {}
                if task["run_id"] not in started and info.get("token") == tokens[task["run_id"]]:
                    started.add(task["run_id"])
                    progress(f"  started {task['run_id']}: job {job_id} on {info.get('host')}")
                if finished:
                    del running[job_id]
                    if cluster == "local":
                        free.append(slot)
                    yield _job_row(job, task, progress)
            if running or waiting:
                time.sleep(poll)
    except (KeyboardInterrupt, GeneratorExit):
        _cancel_jobs([job for job, _, _ in running.values()], cluster)
        ids = sorted(running)
        progress(f"interrupted: cancelled {len(running)} unfinished submitit job(s) "
                 f"{ids if len(ids) <= 8 else ids[:8] + ['...']}"
                 + (f", {len(waiting)} run(s) not submitted yet" if waiting else "")
                 + f"; the finished run folders in {Path(sweep_dir) / 'runs'} are kept: run the same sweep "
                 "again to resume (only the unfinished runs are submitted)")
        raise


# ---------------------------------------------------------------------------------------------
# Reading results back (notebooks 04 and 05)


CASE_STUDY_METRICS = ("tone_rubric", "terminology", "appropriate_refusals", "false_rejections")
METRIC_LABELS = {"tone_rubric": "tone (rule-based rubric, 1-5)", "terminology": "terminology",
                 "appropriate_refusals": "appropriate refusals", "false_rejections": "false rejections (lower is better)",
                 "template_compliance": "template compliance", "dev_loss": "dev loss", "train_loss": "train loss"}


def find_sweep_dir(path: str | Path) -> Path:
    """The sweep folder inside ``path``.

    Args:
        path: a sweep folder, or a notebook-04 run folder (holding ``sweep/``, or naming its sweep folder in
            its manifest's ``sweep_dir`` when notebook 04 ran with a ``sweep_dir`` of its own).
    Returns:
        ``path`` itself when it holds ``results.json``, else its ``sweep/`` subfolder, else the manifest's.
    Raises:
        FileNotFoundError: saying what to run first.
    """
    path = Path(path)
    named = runs.read_manifest(path).get("sweep_dir")
    for candidate in (path, path / "sweep", *([Path(named)] if named else [])):
        if (candidate / "results.json").exists():
            return candidate
    raise FileNotFoundError(f"no sweep results (results.json) in {path} or {path / 'sweep'}; run notebook "
                            "04_lima_ablation or `python -m instructlab sweep <config>` first")


def load_results(path: str | Path) -> tuple[list[dict], list[dict], dict]:
    """The results of a sweep.

    Args:
        path: a sweep folder or a notebook-04 run folder (see :func:`find_sweep_dir`).
    Returns:
        (per-run rows, summary rows, sweep config dict); the summary is ``summary.json``, or :func:`summarize`
        of the rows when there is none or it was written before ``ci_method`` existed.
    Raises:
        FileNotFoundError: no results there.
    """
    sweep_dir = find_sweep_dir(path)
    rows = json.loads((sweep_dir / "results.json").read_text(encoding="utf-8"))
    summary_path = sweep_dir / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else []
    if not summary or any("ci_method" not in s for s in summary):   # none, or t-intervals of an older sweep
        summary = summarize(rows)
    sweep = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8")) if (sweep_dir / "sweep.json").exists() else {}
    return rows, summary, sweep.get("config", {})


def _interval_text(s: Mapping[str, Any], scale: float) -> str:
    """"mean ± half-width" for a symmetric interval, else "mean [low, high]" (shares in %)."""
    unit = "%" if scale == 100 else ""
    text = f"{s['mean'] * scale:.1f}{unit}"
    if s.get("ci_low") is None or s.get("ci_high") is None:
        return text
    if s.get("half_width") is not None:
        return f"{text} ± {s['half_width'] * scale:.1f}"
    return f"{text} [{s['ci_low'] * scale:.1f}, {s['ci_high'] * scale:.1f}]"


def summary_table(summary: Sequence[Mapping[str, Any]], metrics: Sequence[str] = CASE_STUDY_METRICS):
    """DataFrame, one row per (variant, size): the number of seeds, for each metric its mean with the 95%
    interval (shares in %, tone in rubric points) written "mean ± half-width" when the interval is
    symmetric, else "mean [low, high]", and the ``interval method``: the ``ci_method`` of the row's
    metrics (:data:`CI_METHODS`; "metric: method; ..." when they differ). See :data:`SUMMARY_TEXT`."""
    import pandas as pd

    table: dict[tuple, dict[str, Any]] = {}
    methods: dict[tuple, dict[str, str]] = {}
    for s in summary:
        if s["metric"] not in metrics:
            continue
        key = (s["variant"], s["size"])
        row = table.setdefault(key, {"variant": s["variant"], "size": s["size"], "seeds": s["n"]})
        scale = 1 if "tone" in s["metric"] or "loss" in s["metric"] else 100
        row[s["metric"]] = _interval_text(s, scale)
        # a summary written before ci_method existed holds t-intervals over seeds
        methods.setdefault(key, {})[s["metric"]] = s.get("ci_method") or (CI_T if s.get("ci_low") is not None
                                                                         else CI_NONE)
    for key, row in table.items():
        used = methods[key]
        row["interval method"] = (next(iter(used.values())) if len(set(used.values())) == 1
                                  else "; ".join(f"{m}: {how}" for m, how in used.items()))
    return pd.DataFrame(list(table.values()))


SUMMARY_TEXT = ("Values are means over seeds (shares in % of eval prompts, tone on the 1-5 rubric). The 95% "
                f"interval of a case-study metric is a two-level bootstrap (\"{CI_BOOTSTRAP}\"; with one seed, "
                f"\"{CI_BOOTSTRAP_ONE_SEED}\"), so it stays inside the metric's range; a column without per-prompt "
                f"outcomes (a loss) has a t-interval over the seeds' values (\"{CI_T}\"). The \"interval method\" "
                "column names the method of each row. An interval is written \"mean ± half-width\" when it is "
                "symmetric (a t-interval), else \"mean [low, high]\" (as a bootstrap interval usually is).")


def _markdown_table(table: Any) -> list[str]:
    """A DataFrame as Markdown table lines (a blank line after)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)] + [""]


def write_report(path: str | Path, title: str, intro: str, sections: Sequence[tuple[str, Path | None, str]],
                 table: Any = None, tables: Sequence[tuple[str, Any, str]] = ()) -> Path:
    """A short Markdown report: ``intro``, an optional table (DataFrame), then each of ``tables``
    (heading, DataFrame, text: e.g. :func:`comparisons_table` with "resolved" / "not resolved"), then for
    each section (heading, figure PNG or None, text) the heading, the text and the figure embedded by a
    path relative to the report. Returns the report path."""
    path = Path(path)
    lines = [f"# {title}", "", intro.strip(), ""]
    if table is not None and len(table):
        lines += _markdown_table(table)
    for heading, extra, text in tables:
        lines += [f"## {heading}", "", text.strip(), ""]
        lines += _markdown_table(extra) if extra is not None and len(extra) else ["(no rows)", ""]
    for heading, figure, text in sections:
        lines += [f"## {heading}", "", text.strip(), ""]
        if figure is not None:
            rel = Path(figure).resolve().relative_to(path.parent.resolve()) if Path(figure).resolve().is_relative_to(
                path.parent.resolve()) else Path(figure).resolve()
            lines += [f"![{heading}]({rel.as_posix()})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Paired effects of the comparisons (instructlab.stats)


EFFECT_COLUMNS = ("comparison", "metric", "effect", "low", "high", "resolved", "n_prompts", "n_seeds_variant",
                  "n_seeds_baseline")


def _config_dict(config: SweepConfig | Mapping[str, Any]) -> dict[str, Any]:
    return asdict(config) if isinstance(config, SweepConfig) else dict(config)


def comparison_pairs(rows: Sequence[Mapping[str, Any]], config: SweepConfig | Mapping[str, Any]
                     ) -> list[tuple[str, list[Mapping[str, Any]], list[Mapping[str, Any]]]]:
    """The comparisons of a sweep, as (name, variant runs, baseline runs), from its succeeded runs:

    * each comparison variant against the baseline at the variant's size (``comparisons.size`` unless the
      variant sets its own ``size``);
    * each explicit pair of ``comparisons.pairs`` (for example a LIMA test: a small quality-selected subset
      against a larger random one), under its ``name``;
    * the baseline at its largest size against the baseline at its smallest (more data: larger minus
      smaller);
    * with three sizes or more, each step of the data-size curve (the baseline at each size against the
      next smaller one): where the resolved gains of a metric stop.

    Args:
        rows: the per-run result rows (``results.json``).
        config: the SweepConfig, or its dict (``sweep.json``'s ``config``).
    Returns:
        The pairs, in that order; a comparison whose runs are missing (or have no succeeded run) is left out.
    """
    cfg = _config_dict(config)
    base = RunSpec(0, 0, **_base_dict(_as_config(cfg))).variant
    ok = [r for r in rows if r.get("status", "succeeded") == "succeeded" and r.get("variant") != UNTUNED]
    size = _comparison_size(cfg) if (cfg.get("sizes") or cfg.get("comparisons")) else (
        min((r["size"] for r in ok), default=0))

    def runs_of(variant: str, n: int) -> list[Mapping[str, Any]]:
        return [r for r in ok if r["variant"] == variant and r["size"] == n]

    pairs = []
    comparisons = cfg.get("comparisons") or {}
    # a config without comparisons (rows only, or a sweep.json from before): every other variant at the size
    variants = comparisons.get("variants", [] if comparisons else None)
    if variants is None:
        wanted = [(v, size) for v in dict.fromkeys(r["variant"] for r in ok if r["size"] == size and r["variant"] != base)]
    else:
        wanted = []
        for v in variants:
            spec = _side_spec(_side_dict(_as_config(cfg), v, f"comparison variant {v!r}"))
            if spec.variant != base and (spec.variant, spec.size) not in wanted:
                wanted.append((spec.variant, spec.size))
    for variant, n in wanted:
        if runs_of(variant, n) and runs_of(base, n):
            pairs.append((f"{variant} vs {base}, n={n}", runs_of(variant, n), runs_of(base, n)))
    for name, vs, bs in explicit_pairs(cfg):
        if runs_of(vs.variant, vs.size) and runs_of(bs.variant, bs.size):
            pairs.append((name, runs_of(vs.variant, vs.size), runs_of(bs.variant, bs.size)))
    # the curve is the baseline at the configured sizes (a pair's side may be a baseline run at another size)
    base_sizes = sorted({r["size"] for r in ok if r["variant"] == base
                         and (not cfg.get("sizes") or r["size"] in cfg["sizes"])})
    if len(base_sizes) >= 2:
        small, large = base_sizes[0], base_sizes[-1]
        pairs.append((f"{base} n={large} vs n={small}", runs_of(base, large), runs_of(base, small)))
    if len(base_sizes) >= 3:
        for small, large in zip(base_sizes, base_sizes[1:]):
            pairs.append((f"{base} n={large} vs n={small} (step)", runs_of(base, large), runs_of(base, small)))
    return pairs


def _run_outcomes(run: Mapping[str, Any], cache: dict[str, dict]) -> dict[str, dict]:
    """{metric: {prompt: outcome}} of one run (``stats.per_prompt_outcomes`` of ``<run_dir>/eval``, read once
    into ``cache``); {} when its answers are not on disk."""
    from . import stats

    eval_dir = str(Path(run["run_dir"]) / "eval")
    if eval_dir not in cache:
        try:
            cache[eval_dir] = stats.per_prompt_outcomes(eval_dir, side=None)
        except FileNotFoundError:
            cache[eval_dir] = {}
    return cache[eval_dir]


def _seed_outcomes(runs_: Sequence[Mapping[str, Any]], metric: str, cache: dict[str, dict]) -> dict[Any, dict]:
    """{seed: {prompt: outcome}} of ``metric`` for the runs whose evaluation answers are on disk."""
    return {r["seed"]: outcomes[metric] for r in runs_ if (outcomes := _run_outcomes(r, cache)).get(metric)}


def comparison_effects(rows: Sequence[Mapping[str, Any]], config: SweepConfig | Mapping[str, Any],
                       metrics: Sequence[str] = CASE_STUDY_METRICS, n_boot: int = 2000,
                       seed: int = 0, cache: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """The paired effect of every comparison of :func:`comparison_pairs`, per metric.

    Each run's per-prompt outcomes come from its evaluation answers (``stats.per_prompt_outcomes`` of
    ``<run>/eval``); the effect is variant minus baseline on the prompts both answered, with the two-level
    bootstrap of ``stats.paired_effect`` (seeds paired when both arms ran the same seeds) and its interval
    kept inside the metric's range. Runs without an answers file are left out.

    Args:
        rows: the per-run result rows. config: the sweep's config (or its dict).
        metrics: the metrics (default the case study's four). n_boot, seed: the bootstrap's.
        cache: the runs' per-prompt outcomes already read (as in :func:`summarize`).
    Returns:
        One row per (comparison, metric): :data:`EFFECT_COLUMNS` (``resolved`` is "resolved" when the 95%
        interval excludes 0, else "not resolved"; effects in the metric's unit: shares 0-1, tone points),
        then variant, baseline, their sizes, ``paired``, and the power note (``stats.power_note``:
        ``seeds_needed``, ``prompts_needed``, ``mde``, ``power_note``).
    """
    from . import stats

    cache = {} if cache is None else cache
    out = []
    for name, variant_runs, baseline_runs in comparison_pairs(rows, config):
        for metric in metrics:
            v, b = _seed_outcomes(variant_runs, metric, cache), _seed_outcomes(baseline_runs, metric, cache)
            if not v or not b:
                continue
            try:
                eff = stats.paired_effect(v, b, n_boot=n_boot, seed=seed, bounds=stats.METRIC_BOUNDS.get(metric))
            except ValueError:        # no prompt both arms answered
                continue
            note = stats.power_note(eff)
            out.append({"comparison": name, "metric": metric, "effect": round(eff.effect, 6),
                        "low": None if eff.low is None else round(eff.low, 6),
                        "high": None if eff.high is None else round(eff.high, 6),
                        "resolved": stats.resolved_word(eff.resolved), "n_prompts": eff.n_prompts,
                        "n_seeds_variant": eff.n_seeds_variant, "n_seeds_baseline": eff.n_seeds_baseline,
                        "variant": variant_runs[0]["variant"], "baseline": baseline_runs[0]["variant"],
                        "size_variant": variant_runs[0]["size"], "size_baseline": baseline_runs[0]["size"],
                        "paired": eff.paired, "seeds_needed": note["seeds_needed"],
                        "prompts_needed": note["prompts_needed"], "mde": round(note["mde"], 6),
                        "power_note": note["sentence"]})
    return out


def _effect_text(metric: str, value: float | None, sign: bool = True) -> str:
    if value is None:
        return "n/a"
    if "tone" in metric or "loss" in metric:
        return f"{value:+.2f}" if sign else f"{value:.2f}"
    return f"{100 * value:+.1f} pp" if sign else f"{100 * value:.1f} pp"


def comparisons_table(effects: Sequence[Mapping[str, Any]]):
    """DataFrame of :func:`comparison_effects` for reading: comparison, metric, effect (shares in
    percentage points, tone in rubric points), its 95% interval, "resolved" / "not resolved", prompts,
    seeds (variant / baseline) and the power note."""
    import pandas as pd

    return pd.DataFrame([{"comparison": e["comparison"], "metric": METRIC_LABELS.get(e["metric"], e["metric"]),
                          "effect": _effect_text(e["metric"], e["effect"]),
                          "95% interval": "n/a" if e["low"] is None else
                          f"[{_effect_text(e['metric'], e['low'])}, {_effect_text(e['metric'], e['high'])}]",
                          "resolved": e["resolved"], "prompts": e["n_prompts"],
                          "seeds": f"{e['n_seeds_variant']} / {e['n_seeds_baseline']}",
                          "power": e.get("power_note", "")} for e in effects],
                        columns=["comparison", "metric", "effect", "95% interval", "resolved", "prompts", "seeds",
                                 "power"])


EFFECTS_TEXT = ("Effect = variant minus baseline (for the size comparisons: the larger minus the smaller size, the "
                "largest against the smallest and, marked \"(step)\", each size against the next smaller one) on the "
                "same eval prompts, shares in percentage points and tone in rubric points. The 95% interval is a "
                "two-level bootstrap (seeds, then prompts shared by both arms; seeds paired when both arms ran the "
                "same seeds), so it stays inside the metric's range. \"resolved\": the interval excludes 0; "
                "\"not resolved\": this sweep cannot tell the two apart. Lower is better for false rejections.")


def write_comparisons_markdown(effects: Sequence[Mapping[str, Any]], path: str | Path,
                               title: str = "Paired effects") -> Path:
    """Write :func:`comparisons_table` as a Markdown file (with :data:`EFFECTS_TEXT`). Returns its path."""
    path = Path(path)
    table = comparisons_table(effects)
    n_res = sum(e["resolved"] == "resolved" for e in effects)
    lines = [f"# {title}", "", EFFECTS_TEXT, "",
             f"{n_res} of {len(effects)} effects resolved, {len(effects) - n_res} not resolved.", ""]
    lines += _markdown_table(table) if len(table) else ["(no comparison: the sweep has one size and no variant)", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


def load_comparisons(path: str | Path) -> list[dict[str, Any]]:
    """The paired effects of a sweep: ``comparisons.json``, or computed from its runs' answers for a
    sweep written before it existed. ``path``: a sweep folder or a notebook-04 run folder."""
    sweep_dir = find_sweep_dir(path)
    saved = sweep_dir / "comparisons.json"
    rows, _, config = load_results(sweep_dir)
    if saved.exists():
        effects = json.loads(saved.read_text(encoding="utf-8"))
        # written by this version when it names the same comparisons (an older one had no steps or pairs)
        if {e["comparison"] for e in effects} == {name for name, _, _ in comparison_pairs(rows, config)}:
            return effects
    return comparison_effects(rows, config)


# ---------------------------------------------------------------------------------------------
# The data-size curve against the guidance table


LOWER_IS_BETTER = frozenset({"false_rejections", "dev_loss", "train_loss"})

# The case study's guidance table (how many examples each kind of specialisation needs; the issue of the
# ablation quotes it): a range for the minimum and a range for the optimum, and the case-study metrics that
# measure that kind. Tone is style; terminology and the refusal boundary (which team owns what) are the new
# domain. Guidance, not a measurement: the reference sweep tests it.
SIZE_GUIDANCE: dict[str, dict[str, Any]] = {
    "style": {"label": "style (tone, format)", "minimum": (100, 300), "optimal": (500, 1000),
              "metrics": ("tone_rubric",)},
    "domain": {"label": "moderately complex new domain", "minimum": (500, 1000), "optimal": (2000, 5000),
               "metrics": ("terminology", "appropriate_refusals", "false_rejections")},
}


def guidance_for(metric: str) -> dict[str, Any] | None:
    """The :data:`SIZE_GUIDANCE` row that covers ``metric`` (None for metrics outside the table)."""
    return next((dict(row, key=k) for k, row in SIZE_GUIDANCE.items() if metric in row["metrics"]), None)


def _improves(effect: Mapping[str, Any]) -> bool | None:
    """True for a resolved gain, False for a resolved loss, None when not resolved (direction per metric)."""
    if effect.get("resolved") != "resolved":
        return None
    better = effect["effect"] < 0 if effect["metric"] in LOWER_IS_BETTER else effect["effect"] > 0
    return better


def _where_in_guidance(n: int, g: Mapping[str, Any]) -> str:
    """Where ``n`` examples lie against a :data:`SIZE_GUIDANCE` row's ranges."""
    (lo, hi), (olo, ohi) = g["minimum"], g["optimal"]
    if n < lo:
        return "below the guidance minimum"
    if n <= hi:
        return "inside the guidance minimum"
    if n < olo:
        return "between the guidance minimum and optimal"
    return "inside the guidance optimal" if n <= ohi else "above the guidance optimal"


def _range_text(pair: Sequence[int]) -> str:
    return f"{pair[0]:,}-{pair[1]:,}"


SIZE_CURVE_TEXT = ("Each step is the baseline at one size minus the next smaller size, on the same prompts, with the "
                   "paired effects' 95% interval. \"Last resolved gain\" is the largest size reached by a step whose "
                   "interval shows an improvement; a step that is not resolved means this sweep cannot tell its gain "
                   "from none, not that there is none. The guidance columns are the case study's table (guidance, not "
                   "a measurement).")


def size_curve_verdicts(effects: Sequence[Mapping[str, Any]],
                        metrics: Sequence[str] = CASE_STUDY_METRICS) -> list[dict[str, Any]]:
    """Where resolved gains stop on the data-size curve, per metric, next to the guidance table.

    Reads the size steps of :func:`comparison_effects` (comparisons named ``"... n=<b> vs n=<a> (step)"``;
    a sweep with two sizes has its largest-against-smallest comparison as its only step).

    Args:
        effects: rows of :func:`comparison_effects`. metrics: which metrics.
    Returns:
        One dict per metric with steps: ``metric``, ``steps`` (e.g. ``"30->100 +1.2 [+0.9, +1.5] resolved"``
        joined by "; "), ``last_gain`` (the largest size a resolved gain reached, or None), ``largest`` (the
        curve's largest size), ``verdict`` (a sentence), ``guidance`` (the :data:`SIZE_GUIDANCE` label),
        ``guidance_minimum``, ``guidance_optimal`` (ranges as text) and ``against_guidance`` (a sentence).
    """
    pattern = re.compile(r" n=(\d+) vs n=(\d+)( \(step\))?$")
    out = []
    for metric in metrics:
        sized = [(m, e) for e in effects if e["metric"] == metric and (m := pattern.search(e["comparison"]))]
        # the steps; with two sizes, the largest-vs-smallest comparison is the curve's one step
        chosen = [(m, e) for m, e in sized if m.group(3)] or sized
        steps = sorted(((int(m.group(2)), int(m.group(1)), e) for m, e in chosen), key=lambda t: t[0])
        if not steps:
            continue
        largest = steps[-1][1]
        gains = [b for a, b, e in steps if _improves(e)]
        last_gain = max(gains) if gains else None
        if last_gain is None:
            verdict = f"no step resolved a gain between {steps[0][0]} and {largest} examples"
        elif last_gain == largest:
            verdict = f"still improving at {largest} examples: the last step resolved a gain (no plateau in range)"
        else:
            later = [(a, b, e) for a, b, e in steps if b > last_gain]
            unresolved = [f"{a}->{b}" for a, b, e in later if _improves(e) is None]
            verdict = f"no resolved gain after {last_gain} examples"
            if unresolved:
                verdict += (f" ({', '.join(unresolved)} not resolved: the sweep cannot tell "
                            f"{'its' if len(unresolved) == 1 else 'their'} gain from none)")
        losses = [f"{a}->{b}" for a, b, e in steps if _improves(e) is False]
        if losses:
            verdict += f"; a resolved loss at {', '.join(losses)}"
        g = guidance_for(metric)
        against = ""
        if g is not None:
            ranges = f"minimum {_range_text(g['minimum'])}, optimal {_range_text(g['optimal'])}"
            if last_gain is None:
                against = f"guidance ({g['label']}): {ranges}; this sweep resolved no gain to compare"
            elif last_gain == largest:
                against = f"still rising at {largest}, {_where_in_guidance(largest, g)} ({ranges})"
            else:
                against = f"resolved gains stop after {last_gain}, {_where_in_guidance(last_gain, g)} ({ranges})"
        out.append({"metric": metric, "label": METRIC_LABELS.get(metric, metric),
                    "steps": "; ".join(f"{a}->{b} {_effect_text(metric, e['effect'])} "
                                       f"[{_effect_text(metric, e['low'])}, {_effect_text(metric, e['high'])}] "
                                       f"{e['resolved']}" for a, b, e in steps),
                    "last_gain": last_gain, "largest": largest, "verdict": verdict,
                    "guidance": g["label"] if g else "", "guidance_minimum": _range_text(g["minimum"]) if g else "",
                    "guidance_optimal": _range_text(g["optimal"]) if g else "", "against_guidance": against})
    return out


def size_curve_table(verdicts: Sequence[Mapping[str, Any]]):
    """DataFrame of :func:`size_curve_verdicts` for reading (one row per metric)."""
    import pandas as pd

    return pd.DataFrame([{"metric": v["label"], "steps (larger minus smaller, 95% interval)": v["steps"],
                          "last resolved gain": v["last_gain"] if v["last_gain"] is not None else "none",
                          "verdict": v["verdict"], "guidance row": v["guidance"],
                          "guidance minimum": v["guidance_minimum"], "guidance optimal": v["guidance_optimal"],
                          "against the guidance": v["against_guidance"]} for v in verdicts])


PER_PROMPT_COLUMNS = ("run_id", "variant", "size", "seed", "metric", "prompt", "outcome")


def per_prompt_rows(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = CASE_STUDY_METRICS,
                    cache: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Every run's per-prompt outcome of every metric (``stats.per_prompt_outcomes`` of ``<run>/eval``), one
    row each: what the bootstrap intervals and paired effects resample, in one table anyone can re-analyse.
    Runs without an answers file are left out. ``cache``: as in :func:`summarize`."""
    cache = {} if cache is None else cache
    out = []
    for r in rows:
        if r.get("status", "succeeded") != "succeeded" or not r.get("run_dir"):
            continue
        try:
            outcomes = _run_outcomes(r, cache)
        except ValueError:   # an answers file the intervals cannot use either (two answers with the same id)
            continue
        for metric in metrics:
            for prompt, value in (outcomes.get(metric) or {}).items():
                out.append({"run_id": r["run_id"], "variant": r["variant"], "size": r["size"], "seed": r["seed"],
                            "metric": metric, "prompt": prompt, "outcome": value})
    return out
