"""The widget state classes, driven with synthetic events and MagicMock callbacks."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from unittest.mock import MagicMock

import numpy as np
import pytest

from cryoml import CryomlError
from cryoml.io import read_coordinates, read_mrc
from cryoml.widgets import (
    BoxPickerState,
    EmbeddingState,
    MaskPainterState,
    PRState,
    SliceState,
    TrainingMonitorState,
)


@pytest.fixture
def volume():
    return np.random.default_rng(0).normal(size=(10, 48, 64)).astype(np.float32)


def test_state_module_imports_neither_ipywidgets_nor_matplotlib():
    code = (
        "import sys; import cryoml.widgets as w; w.SliceState; w.PRState; "
        "print(sorted(m for m in ('ipywidgets', 'matplotlib', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_docstring_examples_of_the_states_run():
    import cryoml.widgets._state as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- SliceState ------------------------------------------------------------------------------


def test_moving_the_slice_emits_the_new_index_and_changes_the_image(volume):
    state = SliceState(volume)
    callback = MagicMock()
    state.on_change(callback)
    before = state.image().copy()
    state.set_index(3)
    callback.assert_called_once_with("index", 3)
    assert not np.array_equal(before, state.image())
    np.testing.assert_array_equal(state.image(), volume[3])


def test_slice_index_is_clamped_and_unchanged_index_emits_nothing(volume):
    state = SliceState(volume, index=0)
    callback = MagicMock()
    state.on_change(callback)
    state.set_index(99)
    assert state.index == 9
    callback.reset_mock()
    state.set_index(9)
    callback.assert_not_called()


def test_slicing_along_x_gives_zy_planes(volume):
    state = SliceState(volume, axis=2, index=5)
    np.testing.assert_array_equal(state.image(), volume[:, :, 5])
    assert state.n_slices == 64


def test_contrast_must_be_increasing(volume):
    state = SliceState(volume)
    with pytest.raises(CryomlError, match="vmin < vmax"):
        state.set_contrast(1.0, 1.0)


def test_zoom_window_stays_inside_the_slice(volume):
    state = SliceState(volume)
    state.set_zoom(4.0, centre=(0, 0))
    row0, row1, col0, col1 = state.view_window()
    assert (row0, col0) == (0.0, 0.0)
    assert (row1, col1) == (12.0, 16.0)


def test_overlays_must_match_the_volume_and_picks_show_near_their_slice(volume):
    state = SliceState(volume, index=4)
    with pytest.raises(CryomlError, match="must match"):
        state.add_overlay("mask", np.zeros((2, 2, 2), bool))
    state.add_overlay("membrane", volume > 1)
    np.testing.assert_array_equal(state.overlay_slice("membrane"), volume[4] > 1)
    state.add_picks("ribosomes", np.array([[4.0, 10, 20], [9.0, 30, 30]]), radius=1)
    assert state.picks_on_slice("ribosomes").tolist() == [[10.0, 20.0]]
    assert state.legend_names() == ["membrane", "ribosomes"]


# --- BoxPickerState --------------------------------------------------------------------------


def test_a_click_adds_a_box_and_writes_it_to_disk(tmp_path):
    state = BoxPickerState(np.zeros((100, 120), np.float32), box_size=20,
                           path=tmp_path / "mic.box")
    callback = MagicMock()
    state.on_change(callback)
    assert state.click(40.0, 50.0) == "added"
    events = [c.args[0] for c in callback.call_args_list]
    assert events == ["boxes", "saved"]
    saved = read_coordinates(tmp_path / "mic_positive.box")
    np.testing.assert_allclose(saved.centres, [[40.0, 50.0]])
    assert saved.box_size == 20


def test_shift_click_removes_the_box_under_it_and_rewrites_the_file(tmp_path):
    state = BoxPickerState(np.zeros((100, 120), np.float32), box_size=20,
                           path=tmp_path / "mic.json")
    state.click(40, 50)
    state.click(70, 90)
    assert state.click(75, 95, shift=True) == "removed"
    assert state.boxes().tolist() == [[40.0, 50.0]]
    assert len(read_coordinates(tmp_path / "mic_positive.json")) == 1
    assert state.click(5, 5, shift=True) == "none"


def test_positive_and_negative_sets_are_kept_apart(tmp_path):
    state = BoxPickerState(np.zeros((100, 100), np.float32), box_size=16,
                           path=tmp_path / "b.star")
    state.click(30, 30)
    state.set_active("negative")
    state.click(60, 60)
    state.click(70, 20)
    assert state.counts() == {"positive": 1, "negative": 2}
    assert len(read_coordinates(tmp_path / "b_negative.star")) == 2
    with pytest.raises(CryomlError, match="unknown box set"):
        state.set_active("maybe")


def test_boxes_at_the_edge_move_inward_so_they_fit(tmp_path):
    state = BoxPickerState(np.zeros((50, 50), np.float32), box_size=20)
    state.click(1, 49)
    assert state.boxes().tolist() == [[10.0, 40.0]]


def test_boxes_on_a_volume_remember_their_slice_and_are_loaded_again(tmp_path, volume):
    path = tmp_path / "tomo.json"
    state = BoxPickerState(volume, box_size=16, path=path)
    state.set_slice(2)
    state.click(20, 30)
    state.set_slice(7)
    state.click(25, 35)
    assert state.boxes_on_slice("positive").tolist() == [[25.0, 35.0]]
    again = BoxPickerState(volume, box_size=16, path=path)  # e.g. after a kernel crash
    np.testing.assert_allclose(again.boxes("positive"), [[2, 20, 30], [7, 25, 35]])
    info = json.loads((tmp_path / "tomo_positive.json").read_text())
    assert len(info["boxes_3d"]) == 2


def test_existing_boxes_are_not_overwritten_without_consent(tmp_path):
    path = tmp_path / "m.csv"
    BoxPickerState(np.zeros((64, 64)), box_size=8, path=path).click(10, 10)
    with pytest.raises(CryomlError, match="resume=True"):
        BoxPickerState(np.zeros((64, 64)), box_size=8, path=path, resume=False)
    fresh = BoxPickerState(np.zeros((64, 64)), box_size=8, path=path, resume=False,
                           overwrite=True)
    assert fresh.counts()["positive"] == 0


def test_box_files_of_volumes_cannot_be_eman2_box(volume, tmp_path):
    with pytest.raises(CryomlError, match=r"\.box files hold 2-D"):
        BoxPickerState(volume, box_size=8, path=tmp_path / "x.box")


# --- MaskPainterState ------------------------------------------------------------------------


def test_a_paint_stroke_changes_the_mask_and_undo_restores_it(tmp_path):
    path = tmp_path / "masks.mrc"
    painter = MaskPainterState(np.zeros((2, 32, 32), np.float32), pen_size=4, path=path,
                               voxel_size=10.0)
    callback = MagicMock()
    painter.on_change(callback)
    painter.stroke([(16, 4), (16, 28)])
    assert painter.masks[0, 16, 4:29].all()
    assert not painter.masks[1].any()
    assert ("mask", 0) in [c.args for c in callback.call_args_list]
    assert read_mrc(path).data[0].sum() == painter.masks[0].sum()
    assert painter.undo() is True
    assert not painter.masks.any()
    assert read_mrc(path).data.sum() == 0
    assert painter.undo() is False


def test_erasing_removes_paint_and_pen_size_sets_the_width():
    painter = MaskPainterState(np.zeros((1, 40, 40)), pen_size=9)
    painter.stroke([(20, 5), (20, 35)])
    assert painter.masks[0, 16:25, 20].all() and not painter.masks[0, 14, 20]
    painter.set_pen_size(3)
    painter.stroke([(20, 20)], erase=True)
    assert not painter.masks[0, 20, 20] and painter.masks[0, 20, 10]
    assert painter.erase is False


def test_mouse_drag_events_paint_a_stroke_and_save_on_release(tmp_path):
    painter = MaskPainterState(np.zeros((1, 16, 16)), pen_size=1, path=tmp_path / "m.npz")
    painter.begin_stroke(2, 2)
    painter.extend_stroke(2, 10)
    assert not (tmp_path / "m.npz").exists() or not np.load(tmp_path / "m.npz")["masks"].any()
    painter.end_stroke()
    assert np.load(tmp_path / "m.npz")["masks"][0, 2, 2:11].all()


def test_painted_masks_are_loaded_again(tmp_path):
    path = tmp_path / "m.npz"
    MaskPainterState(np.zeros((3, 16, 16)), path=path).stroke([(8, 8)])
    again = MaskPainterState(np.zeros((3, 16, 16)), path=path)
    assert again.painted().tolist() == [True, False, False]


def test_tiles_are_cut_around_the_boxes(volume):
    painter = MaskPainterState.from_boxes(volume, [[3, 24, 32], [5, 0, 0]], tile_size=16)
    assert painter.tiles.shape == (2, 16, 16)
    np.testing.assert_array_equal(painter.tiles[0], volume[3, 16:32, 24:40])
    np.testing.assert_array_equal(painter.tiles[1], volume[5, 0:16, 0:16])


# --- TrainingMonitorState --------------------------------------------------------------------


def test_the_monitor_records_epochs_marks_the_best_and_requests_a_stop():
    state = TrainingMonitorState()
    callback = MagicMock()
    state.on_change(callback)
    state.train_begin(epochs=4)
    state.epoch_end(0, {"loss": 1.0, "val_loss": 0.8})
    state.epoch_end(1, {"loss": 0.7, "val_loss": 0.9})
    assert state.history == {"loss": [1.0, 0.7], "val_loss": [0.8, 0.9]}
    assert state.best_epoch == 0 and state.progress() == 0.5
    assert state.batch_end(3) is False
    state.request_stop()
    assert state.batch_end(4) is True
    state.train_end()
    assert state.status == "stopped"
    callback.assert_any_call("status", "stopped")


# --- PRState ---------------------------------------------------------------------------------


@pytest.fixture
def pr_state():
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2])
    hits = np.array([True, True, False, True, True, False, True, False])
    return PRState(scores, hits, n_true=6)


def test_moving_the_threshold_moves_the_pr_point(pr_state):
    callback = MagicMock()
    pr_state.on_change(callback)
    pr_state.set_threshold(0.85)
    first = callback.call_args.args[1]
    assert callback.call_args.args[0] == "threshold"
    assert (first["precision"], first["recall"]) == (1.0, pytest.approx(2 / 6))
    pr_state.set_threshold(0.25)
    second = callback.call_args.args[1]
    assert second["n_kept"] == 7
    assert second["recall"] == pytest.approx(5 / 6)
    assert second["precision"] == pytest.approx(5 / 7)


def test_the_f2_optimal_threshold_is_where_f2_peaks(pr_state):
    values = {}
    for threshold in pr_state.scores:
        pr_state.set_threshold(threshold)
        values[float(threshold)] = pr_state.point()["fbeta"]
    assert pr_state.best["threshold"] == max(values, key=values.get)
    pr_state.use_best()
    assert pr_state.point()["fbeta"] == pytest.approx(max(values.values()))


def test_pr_state_judges_picks_against_true_centres():
    from cryoml.io import Particles

    picks = Particles(np.array([[10.0, 10], [50, 50], [90, 90]]), scores=np.array([0.9, 0.5,
                                                                                    0.1]))
    state = PRState.from_picks(picks, np.array([[11.0, 10], [90, 91], [200, 200]]), radius=5)
    assert state.is_true_positive.tolist() == [True, False, True]
    assert state.n_true == 3


# --- EmbeddingState --------------------------------------------------------------------------


def test_selecting_points_gives_their_indices_and_the_average_central_slice():
    rng = np.random.default_rng(1)
    subtomograms = rng.normal(size=(5, 6, 8, 8)).astype(np.float32)
    embedding = np.array([[0, 0], [1, 0], [0, 1], [5, 5], [6, 5]], float)
    state = EmbeddingState(embedding, images=subtomograms, labels=[0, 0, 0, 1, 1],
                           clusters=[2, 2, 1, 0, 0])
    callback = MagicMock()
    state.on_change(callback)
    chosen = state.select_in_polygon([(-1, -1), (2, -1), (2, 2), (-1, 2)])
    assert chosen.tolist() == [0, 1, 2]
    assert callback.call_args.args[0] == "selection"
    np.testing.assert_allclose(state.average(), subtomograms[:3, 3].mean(axis=0), rtol=1e-6)
    assert state.select_nearest(5.8, 5.1, add=True) == 4
    assert state.selected.tolist() == [0, 1, 2, 4]
    state.set_colour_by("cluster")
    assert state.select_group(0).tolist() == [3, 4]
    state.clear()
    assert state.average() is None


def test_embedding_must_be_two_dimensional():
    with pytest.raises(CryomlError, match=r"\(N, 2\)"):
        EmbeddingState(np.zeros((4, 3)))


def test_boxes_added_by_code_are_saved_once_and_masks_can_be_set_and_undone(tmp_path, volume):
    state = BoxPickerState(volume, box_size=16, path=tmp_path / "b.json")
    callback = MagicMock()
    state.on_change(callback)
    state.add_boxes(np.array([[1, 20, 20], [2, 30, 40]]), name="negative")
    assert [c.args[0] for c in callback.call_args_list] == ["boxes", "saved"]
    assert len(read_coordinates(tmp_path / "b_negative.json")) == 2
    painter = MaskPainterState.from_boxes(volume, state.boxes("negative"), tile_size=16)
    painter.set_masks(np.ones((2, 16, 16), bool))
    assert painter.painted().all()
    painter.undo()
    painter.undo()
    assert not painter.painted().any()


def test_boxes_saved_for_another_image_are_refused_on_resume(tmp_path):
    path = tmp_path / "b.json"
    BoxPickerState(np.zeros((100, 100)), box_size=10, path=path).click(90, 90)
    with pytest.raises(CryomlError, match="made for another image"):
        BoxPickerState(np.zeros((50, 50)), box_size=10, path=path)
