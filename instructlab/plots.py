"""Shared plotting helpers: every figure the kit makes is saved as PNG and SVG and shown.

Other modules may append their own plotting functions here; keep each one small, take data
(lists, dicts, rows) rather than file paths, and return the matplotlib ``Figure`` so a notebook
can both ``save_figure`` it and display it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


__all__ = ["save_figure", "plot_counts", "plot_length_histograms", "plot_before_after", "plot_metric_vs_size",
           "plot_variant_bars", "plot_paired_effects", "plot_loss_curves", "interval_label", "show"]


def _pyplot():
    """Import pyplot lazily, on a headless backend when no display and no notebook is present."""
    import matplotlib

    if "inline" not in matplotlib.get_backend().lower():
        try:
            import IPython  # noqa: F401

            if IPython.get_ipython() is None:
                matplotlib.use("Agg")
        except ImportError:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path_without_suffix: str | Path, dpi: int = 150) -> tuple[Path, Path]:
    """Save ``fig`` as ``<path>.png`` and ``<path>.svg``, creating parent folders.

    Inputs: a matplotlib Figure and a path without suffix (a suffix that is there is replaced).
    Returns (png_path, svg_path). Raises ValueError when ``fig`` is not a matplotlib Figure.
    """
    if not hasattr(fig, "savefig"):
        raise ValueError(f"save_figure needs a matplotlib Figure, got {type(fig).__name__}; "
                         "pass the `fig` from `fig, ax = plt.subplots()`")
    base = Path(path_without_suffix)
    if base.suffix.lower() in {".png", ".svg", ".pdf"}:
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    png, svg = base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    return png, svg


def plot_counts(counts: dict[str, int], title: str, xlabel: str = "count") -> Any:
    """Horizontal bar chart of ``{label: count}`` (largest on top), each bar annotated with its count.

    Returns the Figure (save it with :func:`save_figure`). Added by the data-building module.
    """
    plt = _pyplot()
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(items), 2) + 1.2))
    bars = ax.barh([str(k) for k, _ in items], [v for _, v in items], color="#4C72B0")
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.margins(x=0.12)
    fig.tight_layout()
    return fig


def plot_length_histograms(series: dict[str, list[int]], title: str, bins: int = 30) -> Any:
    """One histogram panel per ``{name: values}`` (e.g. prompt and response lengths in words),
    with the median marked. Returns the Figure. Added by the data-building module."""
    import statistics

    plt = _pyplot()
    fig, axes = plt.subplots(1, max(len(series), 1), figsize=(4.5 * max(len(series), 1), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items()):
        ax.hist(values or [0], bins=bins, color="#55A868")
        if values:
            med = statistics.median(values)
            ax.axvline(med, color="black", linestyle="--", linewidth=1, label=f"median {med:g}")
            ax.legend(fontsize=8)
        ax.set_xlabel(name)
        ax.set_ylabel("examples")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_before_after(rows: list[dict], title: str = "Before versus after tuning") -> Any:
    """Bar chart of the case study's metrics, before and after (added by the evaluation module).

    ``rows``: dicts with ``metric`` (label), ``unit`` ("score 1-5" or "share"), ``before`` and ``after``
    (raw values; None = not measured), e.g. from ``instructlab.metrics.before_after_rows``. Scores go
    on a 1-5 panel, shares on a 0-100% panel. Returns the Figure.
    """
    plt = _pyplot()
    panels = [("score 1-5", [r for r in rows if r["unit"].startswith("score")]),
              ("share", [r for r in rows if not r["unit"].startswith("score")])]
    panels = [(u, rs) for u, rs in panels if rs]
    widths = [max(len(rs), 1) for _, rs in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 + 2.2 * sum(widths), 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (unit, rs) in zip(axes[0], panels):
        scale = 1 if unit.startswith("score") else 100
        xs = range(len(rs))
        for off, side, colour in ((-0.2, "before", "#9aa5b1"), (0.2, "after", "#2a6f97")):
            vals = [(r[side] * scale) if r.get(side) is not None else 0 for r in rs]
            bars = ax.bar([x + off for x in xs], vals, width=0.4, label=side, color=colour)
            for b, r in zip(bars, rs):
                if r.get(side) is not None:
                    ax.annotate(f"{r[side]:.1f}" if scale == 1 else f"{r[side] * 100:.0f}%",
                                (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r["metric"].replace(" (", "\n(") for r in rs], fontsize=8)
        ax.set_ylim(*((1, 5.4) if scale == 1 else (0, 108)))
        ax.set_ylabel("score (1 to 5)" if scale == 1 else "% of prompts")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- ablation plots (added by the pipeline module) ---------------------------------------------


def _metric_scale(metric: str) -> tuple[float, str]:
    """(multiplier, axis label): shares in %, 1-5 scores and losses as they are."""
    if "tone" in metric:
        return 1.0, "score (1 to 5)"
    if "loss" in metric:
        return 1.0, "loss"
    return 100.0, "% of prompts"


def _metric_ylim(ax: Any, metric: str) -> None:
    """Fixed ranges, so panels of different runs compare at a glance: 1-5 for tone, 0-100% for shares."""
    if "tone" in metric:
        ax.set_ylim(0.9, 5.1)
    elif "loss" not in metric:
        ax.set_ylim(-3, 103)


def interval_label(summary: list[dict]) -> str:
    """"95% interval: <method>" for summary rows of ``ablation.summarize`` (their ``ci_method``; several
    methods joined by " / "; rows without one, written before it existed, hold t-intervals over seeds)."""
    methods = list(dict.fromkeys(s.get("ci_method") or "t over seeds" for s in summary))
    return "95% interval: " + " / ".join(methods) if methods else "95% interval"


def plot_metric_vs_size(summary: list[dict], rows: list[dict], metrics: list[str], variant: str,
                        labels: dict[str, str] | None = None, reference: dict[str, float] | None = None,
                        title: str = "Metric versus number of training examples",
                        guidance: dict[str, dict] | None = None) -> Any:
    """One panel per metric: mean over seeds against subset size (log x axis) with the 95% interval as a
    band (its legend names the summary's ``ci_method``, e.g. "bootstrap over seeds and prompts"), each
    seed's value as a dot, and ``reference[metric]`` (e.g. the untuned model) dashed.

    ``summary``: rows of ``ablation.summarize`` (variant, size, metric, mean, ci_low, ci_high, ci_method);
    ``rows``: per-run results (for the seed dots); ``guidance``: {metric: a row of ``ablation.SIZE_GUIDANCE``
    (label, minimum and optimal ranges)}, drawn as two shaded spans of the x axis (which then reaches the
    optimal range's end). Returns the Figure.
    """
    plt = _pyplot()
    labels, reference, guidance = labels or {}, reference or {}, guidance or {}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4 + 0.3 * bool(guidance)),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        scale, unit = _metric_scale(metric)
        g = guidance.get(metric)
        if g:
            ax.axvspan(*g["minimum"], color="#e9c46a", alpha=0.25, lw=0,
                       label=f"guidance minimum {g['minimum'][0]:,}-{g['minimum'][1]:,}")
            ax.axvspan(*g["optimal"], color="#2a9d8f", alpha=0.18, lw=0,
                       label=f"guidance optimal {g['optimal'][0]:,}-{g['optimal'][1]:,}")
        pts = sorted((s for s in summary if s["variant"] == variant and s["metric"] == metric), key=lambda s: s["size"])
        xs = [p["size"] for p in pts]
        ax.plot(xs, [p["mean"] * scale for p in pts], "o-", color="#2a6f97", label="mean over seeds")
        band = [p for p in pts if p.get("ci_low") is not None]
        if band:
            ax.fill_between([p["size"] for p in band], [p["ci_low"] * scale for p in band],
                            [p["ci_high"] * scale for p in band], color="#2a6f97", alpha=0.18,
                            label=interval_label(band))
        seeds = [r for r in rows if r.get("variant") == variant and r.get(metric) is not None
                 and r.get("status", "succeeded") == "succeeded"]
        ax.scatter([r["size"] for r in seeds], [r[metric] * scale for r in seeds], s=12, color="black",
                   alpha=0.6, zorder=3, label="one seed")
        if reference.get(metric) is not None:
            ax.axhline(reference[metric] * scale, color="#c0392b", linestyle="--", linewidth=1, label="untuned model")
        _metric_ylim(ax, metric)
        ax.set_xscale("log")
        if g and xs:
            ax.set_xlim(min(xs) / 1.3, max(max(xs), g["optimal"][1]) * 1.15)
            ax.set_title(f"{labels.get(metric, metric)}\nguidance row: {g['label']}", fontsize=9)
        else:
            ax.set_title(labels.get(metric, metric), fontsize=10)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs], fontsize=8 if len(xs) > 4 else None)
        ax.minorticks_off()
        ax.set_xlabel("training examples (log scale)")
        ax.set_ylabel(unit)
    fig.suptitle(title)
    if guidance:   # the panels' guidance rows differ: one legend for the figure, below the panels
        handles = {}
        for ax in axes[0]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(4, len(handles)), fontsize=7)
        fig.tight_layout(rect=(0, 0.1 + 0.035 * (len(handles) > 4), 1, 1))
    else:
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
    return fig


def plot_variant_bars(summary: list[dict], rows: list[dict], metrics: list[str], size: int,
                      variants: dict[str, str], labels: dict[str, str] | None = None,
                      title: str = "") -> Any:
    """Bars of the mean over seeds for each variant at one subset ``size``, one panel per metric, the
    95% interval of ``ablation.summarize`` as error bars (the panel's subtitle names its ``ci_method``)
    and each seed as a dot. ``variants``: {variant id: bar label}, or {(variant id, size): bar label} for bars
    at different sizes (a LIMA test: a small quality-selected subset against a larger random one)."""
    plt = _pyplot()
    labels = labels or {}
    colours = ["#9aa5b1", "#2a6f97", "#55A868", "#C44E52"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.2 + 1.1 * len(variants) * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        scale, unit = _metric_scale(metric)
        shown = []
        for i, (key, label) in enumerate(variants.items()):
            variant, n = key if isinstance(key, tuple) else (key, size)
            s = next((s for s in summary if s["variant"] == variant and s["size"] == n and s["metric"] == metric), None)
            if s is None:
                continue
            shown.append(s)
            err = None
            if s.get("ci_low") is not None:
                err = [[(s["mean"] - s["ci_low"]) * scale], [(s["ci_high"] - s["mean"]) * scale]]
            ax.bar(i, s["mean"] * scale, yerr=err, capsize=4, color=colours[i % len(colours)], width=0.6)
            dots = [r[metric] * scale for r in rows if r.get("variant") == variant and r.get("size") == n
                    and r.get(metric) is not None and r.get("status", "succeeded") == "succeeded"]
            ax.scatter([i] * len(dots), dots, s=12, color="black", alpha=0.6, zorder=3)
        _metric_ylim(ax, metric)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(list(variants.values()), fontsize=8)
        ax.set_ylabel(unit)
        ax.set_title(labels.get(metric, metric), fontsize=10)
        bars = [s for s in shown if s.get("ci_low") is not None]
        if bars:
            ax.set_xlabel(f"error bars: {interval_label(bars)}", fontsize=7)
    fig.suptitle(title or f"Variants at {size} examples (mean over seeds, 95% interval)")
    fig.tight_layout()
    return fig


def plot_paired_effects(effects: list[dict], metrics: list[str], labels: dict[str, str] | None = None,
                        title: str = "Paired effects (variant minus baseline, 95% interval)") -> Any:
    """A forest plot of ``ablation.comparison_effects``: one panel per metric, one row per comparison, the
    effect as a dot with its 95% interval, filled when "resolved" (the interval excludes 0) and hollow when
    "not resolved", and the zero line. Shares in percentage points, tone in rubric points. Returns the
    Figure."""
    plt = _pyplot()
    labels = labels or {}
    names = list(dict.fromkeys(e["comparison"] for e in effects))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics) + 3.2, 0.9 + 0.38 * max(1, len(names))),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        scale = 1.0 if ("tone" in metric or "loss" in metric) else 100.0
        for i, name in enumerate(names):
            e = next((e for e in effects if e["comparison"] == name and e["metric"] == metric), None)
            if e is None:
                continue
            resolved = e.get("resolved") == "resolved"
            colour = "#2a6f97" if resolved else "#8d99ae"
            if e.get("low") is not None:
                ax.plot([e["low"] * scale, e["high"] * scale], [i, i], color=colour, lw=2)
            ax.plot(e["effect"] * scale, i, "o", color=colour, mfc=colour if resolved else "white", ms=6, zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(labels.get(metric, metric), fontsize=9)
        ax.set_xlabel("rubric points" if scale == 1.0 else "percentage points", fontsize=8)
    axes[0][0].set_yticks(range(len(names)))
    axes[0][0].set_yticklabels(names, fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle(title + " - filled: resolved, hollow: not resolved", fontsize=10)
    fig.tight_layout()
    return fig


def plot_loss_curves(curves: dict[str, list[dict]], colour_by: dict[str, str] | None = None,
                     title: str = "Training loss of every run") -> Any:
    """Overlaid loss curves ``{run id: [{"step", "loss"}]}``; runs sharing a ``colour_by`` group
    (e.g. the subset size) share a colour and one legend entry. Returns the Figure."""
    plt = _pyplot()
    colour_by = colour_by or {k: k for k in curves}
    groups = sorted(set(colour_by.get(k, k) for k in curves), key=lambda g: (len(g), g))
    cmap = plt.get_cmap("viridis", max(len(groups), 2))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    shown = set()
    for run_id, points in sorted(curves.items()):
        group = colour_by.get(run_id, run_id)
        ax.plot([p["step"] for p in points], [p["loss"] for p in points], color=cmap(groups.index(group)),
                alpha=0.75, linewidth=1.2, marker="o" if len(points) < 20 else None, markersize=3,
                label=None if group in shown else group)
        shown.add(group)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7, title="run group", title_fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def show(fig: Any) -> None:
    """Display ``fig`` once in a notebook and close it (so the inline backend does not draw it a
    second time at the end of the cell); outside IPython it is only closed."""
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(fig)
    except ImportError:
        pass
    _pyplot().close(fig)
