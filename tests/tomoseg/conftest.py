"""TomoSeg test fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def untrained():
    """A factory of small untrained TomoSeg segmenters (paper network or U-Net), ready to
    apply: 4 filters, 5×5 kernels, 10 Å voxels, the architecture's own amplitude."""
    from cryoml.tomoseg import TomoSegmenter, build_tomoseg_cnn, build_tomoseg_unet

    def make(architecture: str, **options) -> TomoSegmenter:
        segmenter = TomoSegmenter(feature="x", architecture=architecture, n_filters=4,
                                  kernel_size=5, progress=False, **options)
        if architecture == "paper":
            segmenter.model_ = build_tomoseg_cnn(n_filters=4, kernel_size=5)
            segmenter.amplitude_ = 1.0
        else:
            segmenter.model_ = build_tomoseg_unet(base_filters=4)
            segmenter.amplitude_ = 0.5
        segmenter.voxel_size_, segmenter.n_neighbours_ = 10.0, 0
        segmenter.preprocess_, segmenter.history_ = {}, {"loss": [], "val_loss": []}
        return segmenter

    return make
