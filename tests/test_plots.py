"""Plot helpers: figures saved as PNG and SVG, ablation plots drawn from summary rows."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from instructlab import ablation, plots  # noqa: E402


def test_save_figure_writes_png_and_svg(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    png, svg = plots.save_figure(fig, tmp_path / "sub" / "curve.png")   # a suffix given is replaced
    assert (png.name, svg.name) == ("curve.png", "curve.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in svg.read_text()[:500]
    plt.close(fig)


def test_save_figure_rejects_non_figures(tmp_path):
    with pytest.raises(ValueError, match="matplotlib Figure"):
        plots.save_figure([1, 2], tmp_path / "x")


def _rows():
    rows = []
    for variant, data, sel, train_on in (("clean-random-assistant", "clean", "random", "assistant"),
                                         ("noisy-random-assistant", "noisy", "random", "assistant")):
        for size in (50, 100, 200):
            for seed in (0, 1, 2):
                rows.append({"variant": variant, "data": data, "selection": sel, "train_on": train_on, "size": size,
                             "seed": seed, "status": "succeeded", "terminology": size / 400 + seed / 50,
                             "tone_rubric": 2 + size / 100})
    return rows


def test_metric_vs_size_uses_log_axis_and_ci_band():
    rows = _rows()
    summary = ablation.summarize(rows)
    fig = plots.plot_metric_vs_size(summary, rows, ["terminology", "tone_rubric"], "clean-random-assistant",
                                    reference={"terminology": 0.1})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(fig.axes) == 2
    line = ax.lines[0]
    assert list(line.get_xdata()) == [50, 100, 200]
    assert line.get_ydata()[0] == pytest.approx(100 * (50 / 400 + 0.02))     # shares drawn in %
    assert ax.collections, "the 95% CI band and the seed dots are drawn"
    plt.close(fig)


def test_variant_bars_and_loss_curves():
    rows = _rows()
    fig = plots.plot_variant_bars(ablation.summarize(rows), rows, ["terminology"], 100,
                                  {"clean-random-assistant": "clean", "noisy-random-assistant": "noisy"})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([100 * (0.25 + 0.02)] * 2)
    plt.close(fig)
    curves = {"a": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], "b": [{"step": 1, "loss": 2.1}]}
    fig = plots.plot_loss_curves(curves, colour_by={"a": "n=50", "b": "n=50"})
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[0].get_legend().get_texts()) == 1
    plots.show(fig)                        # outside IPython: just closed
    assert not plt.fignum_exists(fig.number)


def test_write_report_embeds_relative_figures(tmp_path):
    import pandas as pd

    fig, ax = plt.subplots()
    png, _ = plots.save_figure(fig, tmp_path / "fig")
    plt.close(fig)
    report = ablation.write_report(tmp_path / "report.md", "T", "intro", [("Curve", png, "text")],
                                   table=pd.DataFrame([{"a": 1}]))
    text = report.read_text()
    assert "![Curve](fig.png)" in text and "| a |" in text and "| 1 |" in text


def test_metric_vs_size_draws_the_guidance_bands_and_reaches_the_optimal_range():
    rows = _rows()
    summary = ablation.summarize(rows)
    guidance = {m: ablation.guidance_for(m) for m in ("terminology", "tone_rubric")}
    fig = plots.plot_metric_vs_size(summary, rows, ["terminology", "tone_rubric"], "clean-random-assistant",
                                    guidance=guidance)
    for ax, metric in zip(fig.axes, ("terminology", "tone_rubric")):
        spans = [p for p in ax.patches if type(p).__name__ in ("Polygon", "Rectangle")]
        assert len(spans) == 2                                      # minimum and optimal
        assert ax.get_xlim()[1] >= guidance[metric]["optimal"][1]   # the optimal range is on the axis
        assert guidance[metric]["label"] in ax.get_title()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "guidance minimum 500-1,000" in labels and "guidance optimal 500-1,000" in labels   # both rows' spans
    plt.close(fig)
    fig = plots.plot_metric_vs_size(summary, rows, ["terminology"], "clean-random-assistant")
    assert not fig.axes[0].patches and fig.axes[0].get_xlim()[1] < 1000   # no guidance: nothing drawn
    plt.close(fig)


def test_paired_effects_forest_marks_resolved_filled_and_not_resolved_hollow():
    effects = [{"comparison": "a vs b", "metric": "terminology", "effect": 0.2, "low": 0.1, "high": 0.3,
                "resolved": "resolved"},
               {"comparison": "c vs b", "metric": "terminology", "effect": 0.05, "low": -0.1, "high": 0.2,
                "resolved": "not resolved"},
               {"comparison": "a vs b", "metric": "tone_rubric", "effect": 1.0, "low": 0.5, "high": 1.5,
                "resolved": "resolved"}]
    fig = plots.plot_paired_effects(effects, ["terminology", "tone_rubric"])
    ax = fig.axes[0]
    dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert [d.get_xdata()[0] for d in dots] == pytest.approx([20.0, 5.0])           # percentage points
    assert dots[0].get_markerfacecolor() != "white" and dots[1].get_markerfacecolor() == "white"
    whisker = next(ln for ln in ax.lines if ln.get_marker() != "o" and len(ln.get_xdata()) == 2
                   and list(ln.get_ydata()) == [0, 0])
    assert list(whisker.get_xdata()) == pytest.approx([10.0, 30.0])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a vs b", "c vs b"]
    tone_dots = [ln for ln in fig.axes[1].lines if ln.get_marker() == "o"]
    assert tone_dots[0].get_xdata()[0] == pytest.approx(1.0)                         # rubric points as they are
    plt.close(fig)


def test_variant_bars_at_different_sizes():
    rows = _rows()
    fig = plots.plot_variant_bars(ablation.summarize(rows), rows, ["terminology"], 50,
                                  {("clean-random-assistant", 200): "random 200",
                                   ("noisy-random-assistant", 50): "noisy 50"})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([100 * (200 / 400 + 0.02), 100 * (50 / 400 + 0.02)])
    plt.close(fig)
