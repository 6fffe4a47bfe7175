import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.picking import PRESETS, build_deepem_cnn, feature_map_sizes, preset_for_box

# The paper's Table 1: C1, S2, C3, S4, C5, S6 edge lengths.
TABLE_1 = {
    "klh": (272, [222, 74, 54, 27, 18, 9]),
    "19s": (160, [141, 47, 38, 19, 16, 8]),
    "26s": (150, [120, 60, 46, 23, 14, 7]),
    "inflammasome": (112, [98, 49, 40, 20, 14, 7]),
}


@pytest.mark.parametrize("name", sorted(TABLE_1))
def test_presets_reproduce_the_feature_map_sizes_of_table_1(name):
    box, sizes = TABLE_1[name]
    preset = PRESETS[name]
    assert preset.box_size == box
    assert feature_map_sizes(box, kernels=preset.kernels, pools=preset.pools) == sizes


@pytest.mark.parametrize("name", ["19s", "inflammasome"])
def test_built_network_has_table_1_layer_shapes_and_one_sigmoid_output(name):
    box, sizes = TABLE_1[name]
    preset = PRESETS[name]
    model = build_deepem_cnn(box, kernels=preset.kernels, pools=preset.pools)
    names = ["C1", "S2", "C3", "S4", "C5", "S6"]
    maps = [6, 6, 12, 12, 12, 12]
    for layer_name, size, n_maps in zip(names, sizes, maps, strict=True):
        assert model.get_layer(layer_name).output.shape[1:] == (size, size, n_maps)
    for conv in ("C1", "C3", "C5"):
        assert model.get_layer(conv).activation.__name__ == "sigmoid"
    assert type(model.get_layer("S2")).__name__ == "AveragePooling2D"
    assert model.output_shape == (None, 1)
    assert model.get_layer("output").activation.__name__ == "sigmoid"


def test_klh_preset_matches_the_original_matlab_kernels_and_pools():
    assert PRESETS["klh"].kernels == (51, 21, 10)
    assert PRESETS["klh"].pools == (3, 2, 2)
    assert PRESETS["19s"].kernels == (20, 10, 4)


@pytest.mark.parametrize("box", [16, 24, 48, 64, 100, 128, 200, 256, 400])
def test_preset_for_any_box_gives_a_network_that_fits(box):
    design = preset_for_box(box)
    sizes = feature_map_sizes(box, kernels=design.kernels, pools=design.pools)
    assert sizes[-1] >= 1
    assert all(s > 0 for s in sizes)


def test_preset_for_a_paper_box_returns_that_preset():
    assert preset_for_box(160) == PRESETS["19s"]


def test_kernels_that_do_not_fit_the_box_are_refused_with_a_fix():
    with pytest.raises(CryomlError, match="too small for pooling"):
        build_deepem_cnn(48, kernels=(40, 10, 10), pools=(2, 2, 2))
    with pytest.raises(CryomlError, match="at least 16"):
        preset_for_box(8)


def test_model_scores_lie_between_zero_and_one():
    import keras

    design = preset_for_box(32)
    model = build_deepem_cnn(32, kernels=design.kernels, pools=design.pools)
    batch = np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype("float32")
    scores = keras.ops.convert_to_numpy(model(batch))
    assert scores.shape == (3, 1)
    assert np.all((scores > 0) & (scores < 1))
