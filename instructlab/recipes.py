"""Choosing the training recipe on the dev split: train each recipe, evaluate it on ``dev.jsonl``, one table.

The eval set (``data/kestrel/eval.jsonl``) is for the final before/after table only; every choice between
recipes is made here, on ``data/kestrel/dev.jsonl``, whose prompts share no 8-gram with the eval prompts.
Each recipe is ``experiment.train_run`` (the profile's ``TrainConfig`` with the recipe's fields over it) and
``experiment.eval_run`` on the dev split: the same functions notebooks 02 and 03 call. The untuned model is
evaluated once. Finished runs are kept and skipped when the same command runs again, so a killed search
resumes where it stopped.

    python -m instructlab.recipes configs/recipes_quick.yaml             # every recipe, then the table
    python -m instructlab.recipes configs/recipes_quick.yaml --only lookalike30
    python -m instructlab.recipes configs/recipes_quick.yaml --publish docs/results/recipes-quick

Writes ``<run_root>/<recipe>/train`` and ``/dev-eval`` per recipe, ``<run_root>/untuned``, and
``<run_root>/recipes.csv`` / ``recipes.md`` (each metric with its 95% interval and n).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import ablation, experiment, profiles, stats

__all__ = ["Recipe", "SearchConfig", "load_config", "run_search", "table_rows", "write_table", "publish", "main"]

METRICS = stats.OUTCOME_METRICS
_KEYS = {"profile", "dev_path", "run_root", "eval_params", "base_train", "recipes", "description"}


@dataclass(frozen=True)
class Recipe:
    """One training recipe: a name, why it is tried, and ``TrainConfig`` fields over the profile's."""

    name: str
    why: str = ""
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchConfig:
    """A recipe search (one YAML file)."""

    path: Path
    profile: str
    dev_path: str
    run_root: Path
    eval_params: dict[str, Any]
    recipes: tuple[Recipe, ...]
    # TrainConfig fields every recipe starts from (over the profile's), so that a search keeps meaning the
    # same runs when the profile itself later changes (as the quick profile did, to the recipe this chose)
    base_train: dict[str, Any] = field(default_factory=dict)


def load_config(path: str | Path) -> SearchConfig:
    """Read and check a recipe-search YAML.

    Raises:
        ValueError: naming the file and the key that is wrong (unknown keys, a recipe without a name,
            duplicate names, unknown ``TrainConfig`` or ``EvalParams`` fields, the eval set as dev split).
    """
    import yaml

    from . import train

    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with profile, dev_path, run_root, recipes")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; valid: {sorted(_KEYS)}")
    profile = profiles.check_name(raw.get("profile", "quick"), f"{path}: profile")
    dev_path = str(raw.get("dev_path", "data/kestrel/dev.jsonl"))
    if Path(dev_path).name == "eval.jsonl":
        raise ValueError(f"{path}: dev_path is the eval set ({dev_path}); choose recipes on data/kestrel/dev.jsonl")
    eval_params = dict(raw.get("eval_params") or {})
    bad_eval = set(eval_params) - set(experiment.param_names(experiment.EvalParams))
    if bad_eval:
        raise ValueError(f"{path}: eval_params: unknown fields {sorted(bad_eval)}")
    fields = set(train.TrainConfig.__dataclass_fields__)
    base_train = dict(raw.get("base_train") or {})
    if set(base_train) - fields:
        raise ValueError(f"{path}: base_train: unknown TrainConfig fields {sorted(set(base_train) - fields)}")
    recipes, seen = [], set()
    for i, item in enumerate(raw.get("recipes") or []):
        if not isinstance(item, dict) or not item.get("name"):
            raise ValueError(f"{path}: recipes[{i}] needs a name")
        name = str(item["name"])
        if name in seen:
            raise ValueError(f"{path}: recipes[{i}]: the name {name!r} is used twice")
        seen.add(name)
        overrides = dict(item.get("train") or {})
        bad = set(overrides) - fields
        if bad:
            raise ValueError(f"{path}: recipes[{i}] ({name}): unknown TrainConfig fields {sorted(bad)}")
        recipes.append(Recipe(name, str(item.get("why", "")), overrides))
    if not recipes:
        raise ValueError(f"{path}: no recipes")
    return SearchConfig(path, profile, dev_path, experiment.repo_path(raw.get("run_root", f"runs/recipes-{profile}")),
                        eval_params, tuple(recipes), base_train)


_OWN_FIELDS = ("n_examples", "epochs", "seed", "train_on")   # TrainParams fields of their own, not overrides


def _train_params(config: SearchConfig, recipe: Recipe) -> experiment.TrainParams:
    fields = {**config.base_train, **recipe.train}
    own = {k: fields[k] for k in _OWN_FIELDS if k in fields}
    overrides = {k: v for k, v in fields.items() if k not in own}
    return experiment.TrainParams(profile=config.profile, eval_path=config.dev_path, overrides=overrides, **own)


def _eval_params(config: SearchConfig, adapter: Path | None) -> experiment.EvalParams:
    return experiment.EvalParams(profile=config.profile, adapter=str(adapter) if adapter else "",
                                 eval_path=config.dev_path, before=adapter is None, **config.eval_params)


def run_search(config: SearchConfig, only: Sequence[str] = (), report: Any = print) -> list[dict[str, Any]]:
    """Train and evaluate every recipe (or those in ``only``) not already finished; return the table rows."""
    names = {r.name for r in config.recipes}
    missing = set(only) - names
    if missing:
        raise ValueError(f"{config.path}: --only {sorted(missing)}: no such recipe; recipes: {sorted(names)}")
    untuned = config.run_root / "untuned"
    if not (experiment.params_match(untuned, _eval_params(config, None)) and experiment.generation_dtype_matches(untuned)):
        report("untuned model on the dev split")
        ablation.fresh_step(untuned)
        experiment.eval_run(_eval_params(config, None), untuned)
    for recipe in config.recipes:
        if only and recipe.name not in only:
            continue
        train_dir, eval_dir = config.run_root / recipe.name / "train", config.run_root / recipe.name / "dev-eval"
        params = _train_params(config, recipe)
        trained = experiment.training_matches(train_dir, params)
        if not trained:
            fields = {**config.base_train, **recipe.train}
            report(f"recipe {recipe.name}: training ({fields or 'the profile as it is'})")
            ablation.fresh_step(train_dir)
            experiment.train_run(params, train_dir, bar=False)
        if not (trained and experiment.params_match(eval_dir, _eval_params(config, train_dir))
                and experiment.generation_dtype_matches(eval_dir)):
            report(f"recipe {recipe.name}: evaluating on {config.dev_path}")
            ablation.fresh_step(eval_dir)
            experiment.eval_run(_eval_params(config, train_dir), eval_dir)
    rows = table_rows(config)
    write_table(config, rows)
    return rows


def _side_metrics(run_dir: Path, side: str) -> dict[str, Any] | None:
    path = run_dir / f"{side}_metrics.json"
    return json.loads(path.read_text(encoding="utf-8"))["metrics"] if path.exists() else None


def table_rows(config: SearchConfig) -> list[dict[str, Any]]:
    """One row per finished run: the untuned model first, then each recipe, each metric with interval and n."""
    rows = []
    untuned = config.run_root / "untuned"
    baseline = stats.per_prompt_outcomes(untuned, "before") if (untuned / "before_answers.jsonl").exists() else None
    entries = [("untuned", "", {}, untuned, "before")]
    entries += [(r.name, r.why, r.train, config.run_root / r.name / "dev-eval", "after") for r in config.recipes]
    for name, why, overrides, run_dir, side in entries:
        found = _side_metrics(run_dir, side)
        if found is None:
            continue
        row: dict[str, Any] = {"recipe": name, "why": why, "train": json.dumps(overrides, sort_keys=True)}
        train_result = run_dir.parent / "train" / experiment.RESULT_FILE
        if side == "after" and train_result.exists():
            tr = json.loads(train_result.read_text(encoding="utf-8"))
            row["train_minutes"] = round(tr.get("duration_s", 0) / 60, 1) if tr.get("duration_s") else ""
        for key in METRICS:
            m = found[key]
            row[key], row[f"{key}_ci"], row[f"{key}_n"] = m["value"], m.get("ci"), m["n"]
        if side == "after" and baseline is not None:   # recipe minus untuned model on the same dev prompts
            for e in stats.run_effects(stats.per_prompt_outcomes(run_dir, "after"), baseline):
                key = e["metric"]
                row[f"{key}_effect"], row[f"{key}_effect_ci"] = e["effect"], [e["low"], e["high"]]
                row[f"{key}_resolved"] = e["resolved"]
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], key: str) -> str:
    value, ci = row[key], row.get(f"{key}_ci")
    if key == "tone_rubric":
        text = f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.2f}"
    else:
        text = f"{value:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else f"{value:.0%}"
    if f"{key}_effect" in row:
        e, (lo, hi) = row[f"{key}_effect"], row[f"{key}_effect_ci"]
        fmt = "{:+.2f}" if key == "tone_rubric" else "{:+.0%}"
        if lo is None:
            text += f"; {fmt.format(e)}"
        else:
            text += f"; {fmt.format(e)} [{fmt.format(lo)}, {fmt.format(hi)}] {row[f'{key}_resolved']}"
    return text


def write_table(config: SearchConfig, rows: list[dict[str, Any]]) -> None:
    """``recipes.csv`` (every field) and ``recipes.md`` (the table as the README shows it)."""
    config.run_root.mkdir(parents=True, exist_ok=True)
    if rows:
        names = list(dict.fromkeys(k for row in rows for k in row))
        with open(config.run_root / "recipes.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows)
    n = {k: rows[0][f"{k}_n"] for k in METRICS} if rows else {}
    head = ("| recipe (dev split) | train min | " + " | ".join(f"{k.replace('_', ' ')} (n={n.get(k, '?')})"
                                                         for k in METRICS) + " |")
    lines = ["Each cell: the value [95% interval]; then the paired effect against the untuned model on the same "
             "dev prompts [95% bootstrap interval over prompts], *resolved* when that interval excludes 0.", "",
             head, "|" + "---|" * (len(METRICS) + 2)]
    for row in rows:
        lines.append(f"| {row['recipe']} | {row.get('train_minutes', '')} | "
                     + " | ".join(_cell(row, k) for k in METRICS) + " |")
    (config.run_root / "recipes.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def publish(config: SearchConfig, target: str | Path) -> list[Path]:
    """Copy the table and every run's small files (answers, metrics, result, training log; no adapters or
    checkpoints) to ``target``, so that each number of the table can be traced to the text behind it."""
    import shutil

    from .pipeline import small_results

    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    written = [Path(shutil.copy2(config.run_root / name, target / name)) for name in ("recipes.md", "recipes.csv")
               if (config.run_root / name).exists()]
    for run_dir in sorted(p for p in config.run_root.glob("**/result.json")):
        rel = run_dir.parent.relative_to(config.run_root)
        (target / rel).mkdir(parents=True, exist_ok=True)
        written += [Path(shutil.copy2(f, target / rel / f.name)) for f in small_results(run_dir.parent)]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m instructlab.recipes", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="recipe-search YAML, e.g. configs/recipes_quick.yaml")
    p.add_argument("--only", nargs="*", default=(), help="recipe names to run (default: all)")
    p.add_argument("--publish", default=None, metavar="DIR",
                   help="afterwards, copy the table and each run's answers and metrics to DIR (e.g. docs/results/recipes-quick)")
    args = p.parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        run_search(config, args.only)
    except KeyboardInterrupt:
        print("interrupted: finished recipes are kept; the same command resumes", file=sys.stderr)
        return 130
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((config.run_root / "recipes.md").read_text(encoding="utf-8"))
    if args.publish:
        print(f"published {len(publish(config, args.publish))} files to {args.publish}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
