import pytest

from cryoml._errors import CryomlError
from cryoml.subtomo import build_dsrf3d, build_inception3d


@pytest.mark.parametrize("builder", [build_inception3d, build_dsrf3d])
@pytest.mark.parametrize(("shape", "n_classes"), [((40, 40, 40), 23), ((24, 24, 24), 5),
                                                    ((16, 20, 24), 2)])
def test_builders_give_class_probabilities_for_any_box(builder, shape, n_classes):
    model = builder(shape, n_classes)
    assert model.input_shape == (None, *shape, 1)
    assert model.output_shape == (None, n_classes)


@pytest.mark.parametrize("builder", [build_inception3d, build_dsrf3d])
def test_softmax_is_a_separate_layer_after_a_linear_logits_layer(builder):
    model = builder((16, 16, 16), 4)
    logits = model.get_layer("logits")
    assert logits.get_config()["activation"] == "linear"
    assert model.layers[-1].name == "softmax"
    assert model.get_layer("softmax").input is logits.output


def test_inception3d_has_the_160_channel_inception_block():
    model = build_inception3d((40, 40, 40), 23)
    assert model.get_layer("inception").output.shape == (None, 18, 18, 18, 160)
    assert model.get_layer("dropout").rate == pytest.approx(0.7)


@pytest.mark.parametrize("builder", [build_inception3d, build_dsrf3d])
def test_builders_refuse_boxes_too_small_and_single_classes(builder):
    with pytest.raises(CryomlError, match="input_shape"):
        builder((3, 3, 3), 4)
    with pytest.raises(CryomlError, match="n_classes"):
        builder((16, 16, 16), 1)
