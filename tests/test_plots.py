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
