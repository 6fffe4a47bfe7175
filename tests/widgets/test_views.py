"""Each view builds headless (Agg) and forwards events to its state."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

matplotlib.use("agg")

from cryoml.widgets import (
    BoxPicker,
    EmbeddingExplorer,
    MaskPainter,
    PRExplorer,
    PRState,
    SliceViewer,
    TrainingMonitor,
)


@pytest.fixture
def volume():
    return np.random.default_rng(0).normal(size=(6, 40, 40)).astype(np.float32)


def _mouse(view, axes, x, y, *, button=1, key=None):
    return SimpleNamespace(inaxes=axes, xdata=x, ydata=y, button=button, key=key,
                           modifiers=set(), dblclick=False)


def test_slice_viewer_slider_changes_the_image(volume):
    viewer = SliceViewer(volume, overlays={"bright": volume > 1},
                         picks={"p": np.array([[3.0, 10, 10]])})
    before = np.array(viewer.image_artist.get_array())
    viewer.slider.value = 0
    assert viewer.state.index == 0
    assert not np.array_equal(before, np.array(viewer.image_artist.get_array()))
    viewer.state.set_index(1)
    assert viewer.slider.value == 1
    viewer.zoom.value = 2.0
    assert viewer.axes.get_xlim()[1] - viewer.axes.get_xlim()[0] == pytest.approx(20)
    assert [t.get_text() for t in viewer.axes.get_legend().get_texts()] == ["bright", "p"]
    viewer.close()


def test_box_picker_clicks_add_and_shift_clicks_remove(volume, tmp_path):
    picker = BoxPicker(volume, box_size=10, path=tmp_path / "boxes.json")
    picker._on_click(_mouse(picker, picker.axes, 20.0, 15.0))
    assert picker.state.boxes().tolist() == [[3.0, 15.0, 20.0]]
    assert len(picker._patches) == 1
    picker._on_click(_mouse(picker, picker.axes, 21.0, 16.0, key="shift"))
    assert picker.state.counts()["positive"] == 0
    picker.set_buttons.value = "negative"
    picker._on_click(_mouse(picker, picker.axes, 20.0, 15.0))
    assert picker.state.counts() == {"positive": 0, "negative": 1}
    assert "negative: 1" in picker.status.value
    picker.close()


def test_mask_painter_drag_paints_and_undo_button_restores(tmp_path):
    painter = MaskPainter(np.zeros((2, 24, 24), np.float32), pen_size=3,
                          path=tmp_path / "m.npz")
    painter._on_press(_mouse(painter, painter.axes, 2.0, 12.0))
    painter._on_move(_mouse(painter, painter.axes, 20.0, 12.0))
    painter._on_release(_mouse(painter, painter.axes, 20.0, 12.0))
    assert painter.state.masks[0, 12, 2:21].all()
    assert np.asarray(painter.mask_artist.get_array())[12, 10, 3] > 0
    painter.undo_button.click()
    assert not painter.state.masks.any()
    painter.close()


def test_training_monitor_stop_button_requests_a_stop():
    monitor = TrainingMonitor()
    monitor.state.train_begin(epochs=3)
    monitor.state.epoch_end(0, {"loss": 1.0, "val_loss": 1.2})
    assert monitor.progress.value == 1 and "loss" in monitor._lines
    monitor.stop_button.click()
    assert monitor.state.stop_requested
    monitor.close()


def test_pr_explorer_slider_moves_the_point():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=30)
    hits = scores + rng.normal(scale=0.2, size=30) > 0.5
    centres = rng.uniform(0, 100, size=(30, 2))
    state = PRState(scores, hits, int(hits.sum()) + 2, centres=centres)
    explorer = PRExplorer(state, micrograph=rng.normal(size=(100, 100)), true_centres=centres)
    explorer.slider.value = float(np.sort(scores)[-5])
    x, y = explorer.point_artist.get_data()
    assert state.point()["n_kept"] == 5
    assert (x[0], y[0]) == (state.point()["recall"], state.point()["precision"])
    assert "5 picks kept" in explorer.readout.value
    explorer.best_button.click()
    assert state.threshold == state.best["threshold"]
    explorer.close()


def test_embedding_explorer_lasso_shows_the_average():
    rng = np.random.default_rng(0)
    explorer = EmbeddingExplorer(rng.normal(size=(20, 2)), images=rng.normal(size=(20, 4, 8, 8)),
                                 labels=rng.integers(0, 3, 20), clusters=rng.integers(0, 4, 20),
                                 class_names=["a", "b", "c"])
    explorer._on_lasso([(-5, -5), (5, -5), (5, 5), (-5, 5)])
    assert len(explorer.state.selected) == 20
    assert "20 selected" in explorer.status.value
    assert explorer.average_axes.images
    explorer.colour_menu.value = "cluster"
    assert explorer.state.colour_by == "cluster"
    explorer.close()


def test_box_picker_controls_follow_the_state(volume):
    picker = BoxPicker(volume, box_size=10)
    picker.state.set_slice(1)
    picker.state.set_active("negative")
    assert picker.slider.value == 1 and picker.set_buttons.value == "negative"
    picker.close()


def _legend_texts(axes):
    legend = axes.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def test_colour_that_carries_meaning_has_a_legend(volume):
    labels = np.zeros(volume.shape, np.int8)
    labels[:, :10] = 1
    labels[:, 30:] = 2
    viewer = SliceViewer(volume)
    viewer.state.add_overlay("truth", labels, kind="labels",
                             label_names={1: "membrane", 2: "ribosome"})
    assert _legend_texts(viewer.axes) == ["truth: membrane", "truth: ribosome"]
    colours = [tuple(p.get_facecolor()[:3]) for p in viewer.axes.get_legend().get_patches()]
    assert colours[0] != colours[1]
    viewer.close()
    rng = np.random.default_rng(0)
    explorer = EmbeddingExplorer(rng.normal(size=(20, 2)), labels=np.arange(20) % 3,
                                 clusters=np.arange(20) % 4, class_names=["a", "b", "c"])
    assert _legend_texts(explorer.scatter_axes) == ["a", "b", "c"]
    explorer.colour_menu.value = "cluster"
    assert _legend_texts(explorer.scatter_axes) == [f"cluster {i}" for i in range(4)]
    explorer.close()
    centres = rng.uniform(0, 100, size=(10, 2))
    state = PRState(rng.uniform(size=10), np.arange(10) % 2 == 0, 6, centres=centres)
    pr = PRExplorer(state, micrograph=rng.normal(size=(100, 100)), true_centres=centres)
    assert "true centre" in _legend_texts(pr.image_axes)
    pr.close()


def test_a_2d_image_has_no_dead_slice_slider_and_epochs_are_integers():
    viewer = SliceViewer(np.random.default_rng(0).normal(size=(32, 32)))
    assert viewer.slider.layout.display == "none" and viewer.axes.get_title() == ""
    viewer.close()
    from cryoml.tomoseg import plot_history

    figure = plot_history({"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.5, 2.0]})
    ticks = figure.axes[0].get_xticks()
    assert np.allclose(ticks, np.round(ticks)) and figure.axes[0].get_ylabel() == "loss"
    monitor = TrainingMonitor()
    assert monitor.axes.xaxis.get_major_locator()._integer
    monitor.close()
