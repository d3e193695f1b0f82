"""Plots a reader can trust: checked on the matplotlib Figure objects (titles, axis limits, labels, markers)."""

from __future__ import annotations

import pytest

from edgexfer.report import plots


def _row(artifact, precision, runtime, accuracy, p50, passed=True):
    return {"artifact": artifact, "precision": precision, "runtime": runtime, "accuracy": accuracy,
            "latency_ms": {"1": {"p50": p50}, "8": {"p50": p50 * 4}}, "gate": {"passed": passed}}


ROWS = [_row("fp32", "fp32", "ort-cpu", 0.8587, 18.0), _row("fp16", "fp16", "ort-cpu", 0.8587, 17.0),
        _row("int8", "int8", "ort-cpu", 0.8560, 6.0)]


def test_accuracy_axis_zooms_to_the_points_and_shows_the_allowed_drop():
    fig = plots.accuracy_vs_latency_figure(ROWS, 1, max_accuracy_drop=0.01)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 84.0 < low < 84.87 and 85.87 < high < 87.0  # the band (85.87 - 1 pt) and every point, not 0-100
    ys = sorted({round(float(y), 2) for p in ax.patches
                 for y in p.get_path().transformed(p.get_patch_transform()).vertices[:, 1]})
    assert ys == pytest.approx([84.87, 85.87])  # from fp32's accuracy down by the allowed drop
    assert "(%" in ax.get_ylabel() and "batch of 1" in ax.get_xlabel()
    assert ax.get_title() == "Accuracy versus latency at batch 1"  # nothing failed: no "gate failed" in the title
    offsets = [c.get_offsets()[0].tolist() for c in ax.collections]
    assert sorted(y for _x, y in offsets) == pytest.approx([85.60, 85.87, 85.87])  # plotted in percent
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-1] == "allowed drop (1 pt below fp32)"


def test_points_on_one_spot_are_drawn_side_by_side():
    rows = [_row("fp32", "fp32", "ort-cpu", 0.9, 5.0), _row("fp16", "fp16", "ort-cpu", 0.9, 5.05),
            _row("int8", "int8", "ort-cpu", 0.8, 5.0)]
    fig = plots.accuracy_vs_latency_figure(rows, 1)
    fig.canvas.draw()
    shown = {c.get_label(): tuple(c.get_offset_transform().transform(c.get_offsets())[0])
             for c in fig.axes[0].collections}
    (x32, y32), (x16, y16) = shown["fp32 (ort-cpu)"], shown["fp16 (ort-cpu)"]
    assert y32 == pytest.approx(y16) and abs(x32 - x16) >= 10  # pixels apart: both markers whole
    ax = fig.axes[0]
    assert shown["int8 (ort-cpu)"] == pytest.approx(tuple(ax.transData.transform((5.0, 80.0))))  # alone: not moved


def test_an_inconclusive_gate_is_not_called_failed():
    rows = ROWS[:2] + [{**_row("int8", "int8", "ort-cpu", 0.85, 6.0, passed=False),
                        "gate": {"passed": False, "verdict": "inconclusive"}}]
    ax = plots.accuracy_vs_latency_figure(rows, 1).axes[0]
    assert "inconclusive" in ax.get_title() and "failed" not in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "gate inconclusive" in labels and "gate failed" not in labels


def test_latency_by_batch_says_which_precision_is_slower_than_fp32():
    rows = [_row("fp32", "fp32", "ort-cpu", 0.9, 1.0), _row("fp16", "fp16", "ort-cpu", 0.9, 1.02),
            {**_row("int8", "int8", "ort-cpu", 0.9, 0.5), "latency_ms": {"1": {"p50": 0.5}, "8": {"p50": 8.0}}}]
    ax = plots.latency_by_batch_figure(rows).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    # fp16's 2 % is within timing noise; int8 at batch 8 is twice FP32's 4 ms
    assert labels == ["fp32 (ort-cpu)", "fp16 (ort-cpu)", "int8 (ort-cpu): slower than FP32 at batch 8"]
    assert "1 precision(s) slower than FP32" in ax.get_title()


def test_failed_gate_is_said_and_marked():
    rows = ROWS[:2] + [_row("int8", "int8", "ort-cpu", 0.80, 6.0, passed=False)]
    ax = plots.accuracy_vs_latency_figure(rows, 1).axes[0]
    assert "gate failed" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["fp32 (ort-cpu)", "fp16 (ort-cpu)", "int8 (ort-cpu)", "gate failed"]


def test_precisions_on_one_spot_stay_visible():
    """fp32 and fp16 at the same place: the larger marker is hollow and drawn first, so both show."""
    rows = [_row("fp32", "fp32", "ort-cpu", 0.9, 5.0), _row("fp16", "fp16", "ort-cpu", 0.9, 5.0),
            _row("int8", "int8", "ort-cpu", 0.9, 5.0)]
    ax = plots.accuracy_vs_latency_figure(rows, 1).axes[0]
    sizes = [float(c.get_sizes()[0]) for c in ax.collections]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3  # largest underneath
    hollow = [len(c.get_facecolors()) == 0 or c.get_facecolors()[0][3] == 0 for c in ax.collections]
    assert hollow[:2] == [True, True]  # the two that would cover the smallest are hollow


def test_latency_by_batch_says_per_image():
    ax = plots.latency_by_batch_figure(ROWS).axes[0]
    assert "per image" in ax.get_title() and "per image" in ax.get_ylabel()
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [1, 8] and list(line.get_ydata()) == pytest.approx([18.0, 9.0])  # 72 ms / 8


def test_training_curve_phase_labels_sit_above_the_frame():
    history = [{"epoch_global": e, "stage": "phase1" if e <= 3 else "phase2-stage1", "accuracy": 0.5 + e / 20,
                "val_accuracy": 0.5, "loss": 1 / e, "val_loss": 1.0} for e in range(1, 7)]
    figures = plots.training_curves_figures(history)
    ax = figures["accuracy"].axes[0]
    assert ax.get_ylim() == (0, 1.0)
    labels = {t.get_text(): t for t in ax.texts}
    assert set(labels) == {"phase 1", "phase 2, stage 1"}  # in words, not the history's keys
    for text in labels.values():
        assert text.xy[1] == 1.0 and text.get_va() == "bottom"  # at the top edge, drawn upwards: outside the frame
        assert text.get_fontsize() >= 8
    assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"] == [3.5]


def test_a_far_slower_runtime_switches_latency_to_log_scale():
    rows = ROWS + [_row("keras", "fp32", "keras", 0.8587, 160.0)]
    ax = plots.accuracy_vs_latency_figure(rows, 1).axes[0]
    assert ax.get_xscale() == "log" and "log scale" in ax.get_xlabel()
    colors = {tuple(c.get_edgecolor()[0]) for c in ax.collections}
    assert len(colors) == len(rows)  # every point its own colour, named in the legend


def test_training_accuracy_axis_reads_in_percent():
    history = [{"epoch_global": 1, "stage": "phase1", "accuracy": 0.5, "val_accuracy": 0.4}]
    ax = plots.training_curves_figures(history)["accuracy"].axes[0]
    assert ax.get_ylabel() == "accuracy (%)"
    assert ax.yaxis.get_major_formatter()(1.0, 0) == "100%"


def test_training_curves_name_stages_given_and_star_the_saved_epoch():
    history = [{"epoch_global": e, "epoch": e if e <= 3 else e - 3, "stage": "phase1" if e <= 3 else "phase2_stage1",
                "accuracy": 0.5, "val_accuracy": 0.4 + e / 20, "loss": 1.0, "val_loss": 2 - e / 10}
               for e in range(1, 6)]
    figures = plots.training_curves_figures(history, stage_labels={"phase1": "phase 1: head, frozen backbone"},
                                            saved_epoch=4, monitor="val_loss")
    for metric, value in (("accuracy", 0.6), ("loss", 1.6)):
        ax = figures[metric].axes[0]
        assert {t.get_text() for t in ax.texts} == {"phase 1: head, frozen backbone", "phase 2, stage 1"}
        star = next(line for line in ax.get_lines() if line.get_marker() == "*")
        assert list(star.get_xdata()) == [4] and list(star.get_ydata()) == pytest.approx([value])
        assert "saved model (epoch 4, best val_loss)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_classification_plot_titles_name_the_images_and_the_normalisation(tmp_path, monkeypatch):
    import numpy as np

    titles = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: titles.append(fig.axes[0].get_title()) or path)
    y = np.array([0, 1, 1, 0])
    plots.classification_plots(y, np.eye(2)[[0, 1, 0, 0]], ["normal", "pneumonia"], tmp_path,
                               title="test split, 4 images")
    counts, normalized, roc = titles
    assert all("test split, 4 images" in t for t in titles), titles
    assert "counts" in counts and "normalized by true class" in normalized and "one vs rest" in roc
