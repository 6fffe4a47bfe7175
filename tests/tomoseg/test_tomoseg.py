"""TomoSeg: training sets, network, training, apply, merge, extract, consensus (tiny sizes)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from cryoml import io
from cryoml._errors import CryomlError, CryomlWarning
from cryoml.tomoseg import (
    TomoSegmenter,
    TrainingSet,
    apply_network,
    average_subtomograms,
    build_tomoseg_cnn,
    build_training_set,
    consensus_maps,
    cut_subtomograms,
    extract_particles,
    merge_segmentations,
    plot_history,
    preview_grid,
    sample_boxes,
    save_figure,
    seed_filaments,
    shrink_label,
    upsample2,
)

SHAPE = (16, 64, 64)


@pytest.fixture(scope="module")
def lines():
    """A 16×64×64 volume with bright diagonal lines plus noise, and its mask."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: SHAPE[1], : SHAPE[2]]
    plane = (np.abs(yy - xx) < 2) | (np.abs(yy - xx - 30) < 2) | (np.abs(yy - xx + 30) < 2)
    mask = np.broadcast_to(plane, SHAPE).copy()
    volume = (mask * 2.0 + rng.normal(0, 0.5, SHAPE)).astype(np.float32)
    volume = (volume - volume.mean()) / volume.std()
    return volume, mask


@pytest.fixture(scope="module")
def trainset(lines):
    volume, mask = lines
    positives = np.array([[4, 32, 32], [8, 32, 32], [12, 32, 32]])
    big = np.zeros((16, 128, 128), np.float32)  # room for negatives free of the lines
    big[:, :64, :64] = volume
    big_mask = np.zeros(big.shape, bool)
    big_mask[:, :64, :64] = mask
    negatives = np.array([[4, 96, 96], [8, 96, 96], [10, 96, 96]])
    return build_training_set(
        big, positives, big_mask, negatives, feature="line", voxel_size=10.0, random_state=0
    )


@pytest.fixture(scope="module")
def segmenter(trainset):
    return TomoSegmenter(
        feature="line", epochs=2, n_filters=4, kernel_size=5, random_state=0, progress=False
    ).fit(trainset)


# --- training set -----------------------------------------------------------------------------


def test_training_set_balances_positives_and_negatives_with_rotated_copies(trainset):
    assert trainset.tiles.shape == (6, 64, 64, 1)
    assert trainset.labels.shape == (6, 32, 32)
    assert trainset.is_positive.sum() == 3
    assert trainset.labels[~trainset.is_positive].max() == 0
    assert trainset.labels[trainset.is_positive].max() > 0.5


def test_rotated_copies_differ_from_the_original_tile(lines):
    volume, mask = lines
    neg = np.zeros((0, 3))
    ts = build_training_set(volume, [[8, 32, 32]], mask, neg, n_copies=3, random_state=1)
    assert len(ts) == 3
    assert not np.allclose(ts.tiles[0], ts.tiles[1])
    # rotating the mask with the tile keeps the painted area roughly the same
    assert abs(ts.labels[1].sum() - ts.labels[0].sum()) < 0.5 * ts.labels[0].sum()


def test_labels_are_masks_shrunk_by_two():
    mask = np.zeros((4, 4))
    mask[:2, :2] = 1
    mask[2, 2] = 1
    assert shrink_label(mask).tolist() == [[1.0, 0.0], [0.0, 0.25]]


def test_training_set_round_trips_through_npz(trainset, tmp_path):
    path = trainset.save(tmp_path / "set.npz")
    again = TrainingSet.load(path)
    np.testing.assert_array_equal(again.tiles, trainset.tiles)
    assert again.feature == "line" and again.voxel_size == 10.0
    with pytest.raises(CryomlError, match="already exists"):
        trainset.save(path)


def test_two_and_a_half_d_tiles_carry_neighbouring_slices(lines):
    volume, mask = lines
    ts = build_training_set(volume, [[0, 32, 32]], mask, n_neighbours=2)
    assert ts.tiles.shape[-1] == 5 and ts.n_neighbours == 2
    # slice 0 repeats at the top end
    np.testing.assert_array_equal(ts.tiles[0, ..., 0], ts.tiles[0, ..., 2])


def test_no_positives_is_refused(lines):
    volume, mask = lines
    with pytest.raises(CryomlError, match="no positive boxes"):
        build_training_set(volume, np.zeros((0, 3)), mask, [[4, 32, 32]])


def test_empty_mask_is_refused(lines):
    volume, _ = lines
    with pytest.raises(CryomlError, match="is empty"):
        build_training_set(volume, [[4, 32, 32]], np.zeros((1, 64, 64)))


def test_boxes_off_the_edge_are_refused(lines):
    volume, mask = lines
    with pytest.raises(CryomlError, match="reach outside"):
        build_training_set(volume, [[4, 10, 32]], mask)
    with pytest.raises(CryomlError, match="negative boxes reach outside"):
        build_training_set(volume, [[4, 32, 32]], mask, [[20, 32, 32]])


def test_masks_of_the_wrong_size_are_refused(lines):
    volume, _ = lines
    with pytest.raises(CryomlError, match="expected one 64×64 mask per positive"):
        build_training_set(volume, [[4, 32, 32]], np.ones((1, 32, 32)))


def test_sample_boxes_puts_positives_on_the_feature_and_negatives_off_it():
    mask = np.zeros((4, 200, 200), bool)
    mask[:, 50:60, 20:180] = True
    pos, neg = sample_boxes(mask, 5, 5, random_state=0)
    assert mask[tuple(pos.T)].all()
    for z, y, x in neg:
        assert not mask[z, y - 32 : y + 32, x - 32 : x + 32].any()


def test_sample_boxes_puts_a_share_of_the_negatives_on_other_features():
    mask = np.zeros((4, 200, 200), bool)
    mask[:, 50:60, 20:180] = True
    others = np.zeros_like(mask)
    others[:, 150:154, 20:180] = True  # a "microtubule" 90 voxels from the feature
    pos, neg = sample_boxes(mask, 5, 9, others=others, random_state=0)
    assert len(neg) == 9 and mask[tuple(pos.T)].all()
    assert others[tuple(neg.T)].sum() == 3  # a third on the other feature
    for z, y, x in neg:
        assert not mask[z, y - 32 : y + 32, x - 32 : x + 32].any()
    # without others, the same draws as before the option existed
    np.testing.assert_array_equal(sample_boxes(mask, 5, 9, random_state=0)[1],
                                  sample_boxes(mask, 5, 9, others=others, others_share=0,
                                               random_state=0)[1])
    # several features: the share split evenly, not by size
    gold = np.zeros_like(mask)
    gold[:, 120:123, 100:103] = True
    _, neg = sample_boxes(mask, 5, 12, others={"microtubule": others, "gold": gold},
                          random_state=0)
    assert others[tuple(neg.T)].sum() == 2 and gold[tuple(neg.T)].sum() == 2
    with pytest.raises(CryomlError, match="same tomogram"):
        sample_boxes(mask, 5, 9, others=others[:2], random_state=0)
    # no tile on the other feature is free of this one: plain negatives, with a warning
    with pytest.warns(CryomlWarning, match="nearly"):
        _, neg = sample_boxes(mask, 5, 9, others=mask, random_state=0)
    assert len(neg) == 9
    for z, y, x in neg:
        assert not mask[z, y - 32 : y + 32, x - 32 : x + 32].any()


# --- network and training ---------------------------------------------------------------------


def test_network_has_the_paper_architecture():
    model = build_tomoseg_cnn((64, 64))
    kernels = [layer.kernel.shape for layer in model.layers if hasattr(layer, "kernel")]
    assert kernels == [(15, 15, 1, 40), (15, 15, 40, 40), (15, 15, 40, 1)]
    assert tuple(model.output.shape) == (None, 32, 32, 1)
    assert build_tomoseg_cnn(n_channels=5).input_shape[-1] == 5


def test_loss_ignores_outputs_above_one():
    from keras import ops

    from cryoml.tomoseg import min1_log_mse

    label = np.ones((1, 4, 4, 1), np.float32)
    high = float(ops.convert_to_numpy(min1_log_mse(label, 5 * label)))
    half = float(ops.convert_to_numpy(min1_log_mse(label, 0.5 * label)))
    assert high < -15 and abs(half - np.log(0.25)) < 1e-4


def test_training_records_history_and_amplitude(segmenter):
    assert len(segmenter.history_["loss"]) == 2
    assert segmenter.amplitude_ > 0
    assert segmenter.voxel_size_ == 10.0


def test_unknown_recipe_is_refused(trainset):
    with pytest.raises(CryomlError, match="unknown training recipe"):
        TomoSegmenter(recipe="fast", progress=False).fit(trainset)


def test_predict_before_fit_is_refused():
    with pytest.raises(CryomlError, match="not trained yet"):
        TomoSegmenter().predict(np.zeros((2, 32, 32), np.float32))


def test_interrupt_keeps_the_best_weights(trainset, monkeypatch):
    import keras

    seg = TomoSegmenter(epochs=3, n_filters=4, kernel_size=5, progress=False, random_state=0)
    calls = {"n": 0}
    original = keras.callbacks.Callback.on_epoch_end

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls["n"] += 1
            if epoch == 1:
                raise KeyboardInterrupt

    real_fit = keras.Model.fit

    def fit_with_interrupt(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), Boom()]
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_interrupt)
    seg.fit(trainset)
    assert seg.interrupted_ and len(seg.history_["loss"]) == 2 and calls["n"] == 2
    assert np.isfinite(seg.best_loss_)
    del original


def test_early_stopping_stops_before_the_last_epoch(trainset):
    seg = TomoSegmenter(
        epochs=30,
        n_filters=2,
        kernel_size=3,
        learning_rate=1e-9,
        patience=1,
        progress=False,
        random_state=0,
    ).fit(trainset)
    assert len(seg.history_["loss"]) < 30


def test_saved_network_keeps_its_metadata_and_outputs(segmenter, trainset, tmp_path):
    path = segmenter.save(tmp_path / "line.keras")
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("cryoml_tomoseg.json"))
    assert meta["feature"] == "line" and meta["recipe"] == "eman2"
    loaded = TomoSegmenter.load(path)
    assert loaded.amplitude_ == pytest.approx(segmenter.amplitude_)
    np.testing.assert_allclose(
        loaded.predict_tiles(trainset.tiles[:2]),
        segmenter.predict_tiles(trainset.tiles[:2]),
        atol=1e-5,
    )
    with pytest.raises(CryomlError, match="already exists"):
        segmenter.save(path)


def test_continue_training_starts_from_the_saved_weights(segmenter, trainset, tmp_path):
    loaded = TomoSegmenter.load(segmenter.save(tmp_path / "a.keras"), progress=False)
    before = [w.copy() for w in loaded.model_.get_weights()]
    loaded.epochs, loaded.learning_rate = 1, 1e-4
    loaded.fit(trainset, continue_training=True)
    after = loaded.model_.get_weights()
    assert len(loaded.history_["loss"]) == 3  # 2 saved + 1 new
    assert max(float(np.abs(a - b).max()) for a, b in zip(after, before, strict=True)) < 0.1


def test_preview_shows_a_triplet_per_tile(segmenter, trainset, tmp_path):
    figure = preview_grid(trainset, segmenter)
    assert sum(1 for ax in figure.axes if ax.images) == 3 * len(trainset)
    path = save_figure(plot_history(segmenter.history_), tmp_path / "h.png")
    assert path.stat().st_size > 1000


# --- apply ------------------------------------------------------------------------------------


def test_apply_engines_and_tiling_agree(segmenter, lines):
    volume, _ = lines
    volume = np.concatenate([volume, volume], axis=2)[:3, :, :126]  # odd-free, non-square
    reference = apply_network(volume, segmenter, voxel_size=10.0, engine="keras", progress=False)
    assert reference.shape == volume.shape and reference.min() >= 0
    fft = apply_network(volume, segmenter, voxel_size=10.0, engine="fft", progress=False)
    tiled = apply_network(
        volume,
        segmenter,
        voxel_size=10.0,
        engine="keras",
        tile_size=64,
        overlap=20,
        batch_size=3,
        progress=False,
    )
    np.testing.assert_allclose(fft, reference, atol=1e-4)
    np.testing.assert_allclose(tiled, reference, atol=1e-4)


def test_fused_engine_upsamples_and_scales_on_the_device_like_the_host_path(segmenter, lines):
    volume, _ = lines
    volume = volume[:3, :, :126]
    reference = apply_network(volume, segmenter, voxel_size=10.0, engine="keras", progress=False)
    fused = apply_network(volume, segmenter, voxel_size=10.0, engine="fused", progress=False)
    np.testing.assert_allclose(fused, reference, atol=1e-4)
    half = apply_network(volume, segmenter, voxel_size=10.0, engine="fused",
                         precision="bfloat16", progress=False)
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal to it.
    assert np.abs(half - reference).max() < 0.05 * max(reference.max(), 1e-3) + 0.02
    assert not np.array_equal(half, reference)


def test_apply_scales_training_positives_to_one(segmenter, trainset):
    output = segmenter.predict_tiles(trainset.tiles[trainset.is_positive])
    on = trainset.labels[trainset.is_positive] > 0.7
    assert output[on].mean() == pytest.approx(1.0, rel=1e-3)


def test_apply_writes_a_memory_mapped_mrc_from_a_memory_mapped_input(segmenter, lines, tmp_path):
    volume, _ = lines
    source = io.write_mrc(tmp_path / "tomo.mrc", volume, voxel_size=10.0)
    out = apply_network(source, segmenter, output=tmp_path / "seg.mrc", progress=False)
    back = io.read_mrc(tmp_path / "seg.mrc")
    assert back.voxel_size == pytest.approx(10.0)
    np.testing.assert_allclose(back.data, np.asarray(out))
    assert not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(CryomlError, match="already exists"):
        apply_network(source, segmenter, output=tmp_path / "seg.mrc", progress=False)


def test_pipelined_apply_keeps_every_slice_in_place_and_the_header_right(
    segmenter, lines, tmp_path
):
    # Reading, computing and writing overlap (three batches in flight): one slice per batch
    # and an uneven last batch must give the same volume as one batch of everything.
    volume, _ = lines
    volume = volume[:5]
    source = io.write_mrc(tmp_path / "tomo.mrc", volume, voxel_size=10.0)
    whole = apply_network(volume, segmenter, voxel_size=10.0, engine="keras",
                          batch_size=5, progress=False)
    for batch_size in (1, 2):
        target = tmp_path / f"seg{batch_size}.mrc"
        apply_network(source, segmenter, output=target, engine="keras",
                      batch_size=batch_size, progress=False)
        # Batch size changes the float summation order: relative, not absolute, agreement.
        np.testing.assert_allclose(io.read_mrc(target).data, whole, rtol=1e-5, atol=1e-5)
    import mrcfile

    with mrcfile.open(tmp_path / "seg1.mrc", permissive=True) as handle:
        assert float(handle.header.dmean) == pytest.approx(float(whole.mean()), rel=1e-4)
        assert float(handle.header.dmax) == pytest.approx(float(whole.max()), rel=1e-5)


def test_engines_are_reused_and_notice_new_weights(lines):
    from cryoml.tomoseg import TomoSegmenter
    from cryoml.tomoseg.models import build_tomoseg_cnn

    volume, _ = lines
    segmenter = TomoSegmenter(feature="x", n_filters=4, kernel_size=5, progress=False)
    segmenter.model_ = build_tomoseg_cnn(n_filters=4, kernel_size=5)
    # Fixed weights with positive biases: a random 4-filter init can leave every ReLU off,
    # and an all-zero output cannot show that new weights were noticed.
    rng = np.random.default_rng(0)
    segmenter.model_.set_weights([
        rng.uniform(-0.3, 0.3, w.shape).astype(w.dtype) if w.ndim > 1
        else np.full(w.shape, 0.1, w.dtype)
        for w in segmenter.model_.get_weights()
    ])
    segmenter.amplitude_, segmenter.voxel_size_, segmenter.n_neighbours_ = 1.0, 10.0, 0
    segmenter.preprocess_, segmenter.history_ = {}, {"loss": [], "val_loss": []}
    options = {"voxel_size": 10.0, "engine": "keras", "batch_size": 2, "progress": False}
    first = apply_network(volume[:3], segmenter, **options)
    again = apply_network(volume[:3], segmenter, **options)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first).max() > 1e-3
    assert len(segmenter._cryoml_engines) == 1
    segmenter.model_.set_weights([2 * w for w in segmenter.model_.get_weights()])
    changed = apply_network(volume[:3], segmenter, **options)
    assert len(segmenter._cryoml_engines) == 2
    assert np.abs(changed - first).max() > 1e-3


def test_a_failure_during_apply_leaves_no_output(segmenter, lines, tmp_path, monkeypatch):
    from cryoml.tomoseg import _apply

    volume, _ = lines
    calls = []

    def failing_forward(self, batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return np.zeros((len(batch), batch.shape[1] // 2, batch.shape[2] // 2), np.float32)

    monkeypatch.setattr(_apply._KerasForward, "__call__", failing_forward)
    with pytest.raises(RuntimeError, match="device lost"):
        apply_network(volume[:6], segmenter, voxel_size=10.0, engine="keras", batch_size=1,
                      output=tmp_path / "seg.mrc", progress=False)
    assert not list(tmp_path.iterdir())


def test_apply_refuses_a_different_voxel_size_unless_overridden(segmenter, lines):
    volume, _ = lines
    with pytest.raises(CryomlError, match="voxel size mismatch"):
        apply_network(volume[:1], segmenter, voxel_size=20.0, progress=False)
    out = apply_network(
        volume[:1], segmenter, voxel_size=20.0, override_voxel_size=True, progress=False
    )
    assert out.shape == (1, 64, 64)


def test_upsampling_keeps_constant_images_constant_and_doubles_size():
    out = upsample2(np.full((2, 3, 4), 2.0, np.float32), (6, 7))
    assert out.shape == (2, 6, 7) and np.allclose(out, 2.0)


# --- merge, extract, consensus ----------------------------------------------------------------


def test_merge_picks_the_strongest_network_above_the_threshold():
    a = np.array([[[0.1, 0.9, 2.0, 0.5]]])
    b = np.array([[[0.2, 1.5, 0.5, 0.79]]])
    labels, table = merge_segmentations([a, b], names=["membrane", "ribosome"])
    assert labels.tolist() == [[[0, 2, 1, 0]]]
    assert table == {0: "background", 1: "membrane", 2: "ribosome"}
    with pytest.raises(CryomlError, match="one shape"):
        merge_segmentations([a, b[..., :2]])


def test_extract_finds_one_particle_per_blob_and_drops_small_and_edge_ones():
    seg = np.zeros((40, 60, 60), np.float32)
    zz, yy, xx = np.mgrid[:40, :60, :60]
    for centre in ((20, 20, 20), (20, 40, 40)):
        seg += 2 * (((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) < 16)
    seg[5, 5, 30] = 3  # a one-voxel speck: mass 1
    seg[20, 57:, 30] = 3  # at the edge
    picks = extract_particles(seg, box_size=10)
    assert len(picks) == 2
    np.testing.assert_allclose(np.sort(picks.centres[:, 1]), [20, 40], atol=3)


def test_extract_suppresses_peaks_closer_than_the_minimum_distance():
    seg = np.zeros((30, 30, 60), np.float32)
    seg[15, 15, 20:40] = 1
    seg[14:17, 14:17, 20:40] = 1.5
    seg[15, 15, 38] = 3
    picks = extract_particles(seg, box_size=10, min_mass=5)
    assert len(picks) == 1


def test_picks_write_to_star_json_and_csv(tmp_path):
    seg = np.zeros((30, 30, 30), np.float32)
    seg[13:18, 13:18, 13:18] = 2
    picks = extract_particles(seg, box_size=10, min_mass=10)
    for suffix in (".star", ".json", ".csv"):
        path = io.write_coordinates(tmp_path / f"p{suffix}", picks)
        np.testing.assert_allclose(io.read_coordinates(path).centres, picks.centres)


def test_filament_seeds_lie_in_the_mask_and_keep_apart():
    mask = np.zeros((20, 40, 80), bool)
    mask[8:12, 18:22, :] = True
    seeds = seed_filaments(mask, 6, box_size=8, random_state=0)
    assert 1 < len(seeds) <= 6
    assert mask[tuple(seeds.centres.astype(int).T)].all()
    gaps = np.linalg.norm(seeds.centres[:, None] - seeds.centres[None], axis=-1)
    assert gaps[np.triu_indices(len(seeds), 1)].min() >= 2


def test_subtomogram_average_and_off_edge_refusal():
    volume = np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32)
    picks = io.Particles(np.array([[10.0, 10, 10], [9, 9, 9]]), box_size=6)
    boxes = cut_subtomograms(volume, picks)
    assert boxes.shape == (2, 6, 6, 6)
    np.testing.assert_allclose(average_subtomograms(boxes), boxes.mean(0), rtol=1e-6)
    with pytest.raises(CryomlError, match="reach outside"):
        cut_subtomograms(volume, io.Particles(np.array([[1.0, 10, 10]]), box_size=6))


def test_consensus_gives_mean_and_spread():
    mean, sd = consensus_maps([np.zeros((1, 2, 2)), np.full((1, 2, 2), 2.0)])
    assert np.allclose(mean, 1) and np.allclose(sd, 1)
    with pytest.raises(CryomlError, match="at least two"):
        consensus_maps([np.zeros((1, 2, 2))])


@pytest.mark.parametrize(
    "name",
    [
        "cryoml.tomoseg.models",
        "cryoml.tomoseg._merge",
        "cryoml.tomoseg._consensus",
        "cryoml.tomoseg._training",
    ],
)
def test_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_fit_gives_back_the_callers_random_streams(trainset):
    import random

    from cryoml._keras_fit import keras_seed

    np.random.seed(5)  # noqa: NPY002 - the user's global stream, which fit must not reseed
    random.seed(5)
    expected = (np.random.random(), random.random())  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    random.seed(5)
    TomoSegmenter(feature="line", epochs=1, n_filters=4, kernel_size=5, random_state=0,
                  progress=False).fit(trainset)
    assert (np.random.random(), random.random()) == expected  # noqa: NPY002
    with keras_seed(3):  # inside, the seed holds: the same draws each time
        first = np.random.random()  # noqa: NPY002
    with keras_seed(3):
        assert np.random.random() == first  # noqa: NPY002
