"""Train the small TomoSeg U-Nets that notebook 01 starts from in QUICK mode.

Usage (from the repository root; ~10 min on 2 CPU cores)::

    python data/make_example_networks.py

Each network (membrane, ribosome) is trained as notebook 01 trains in full mode — a U-Net
(``architecture="unet"``, 12 filters) from 10 positive tiles painted from the visible truth and
100 negatives — on a simulated cellular tomogram (48×256×256 at 10 Å, SNR 0.1, ±60°, seed 7;
not the notebook's own tomogram), preprocessed as the notebook does (low-pass 25 Å, high-pass
4000 Å, clamp ±3 s.d.). The files are written to ``networks/<feature>_unet.keras``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Simulate, box, train and save the two networks."""
    from cryoml import preprocess, tomoseg
    from cryoml.simulate import simulate_cell_tomogram

    cell = simulate_cell_tomogram((48, 256, 256), voxel_size=10.0, snr=0.1,
                                  ribosome_density=40000, random_state=7)
    clean, record = preprocess.preprocess(cell.tomogram.data, voxel_size=10.0, lowpass=25.0,
                                          highpass=4000.0, clamp_sd=3.0)
    (HERE / "networks").mkdir(exist_ok=True)
    for index, feature in enumerate(("membrane", "ribosome")):
        truth = cell.visible[feature]
        positives, negatives = tomoseg.sample_boxes(truth, 10, 100, random_state=index)
        trainset = tomoseg.build_training_set(clean, positives, truth, negatives,
                                              feature=feature, voxel_size=10.0,
                                              preprocess=record, random_state=index)
        segmenter = tomoseg.TomoSegmenter(feature=feature, architecture="unet", n_filters=12,
                                          epochs=40, random_state=index, progress=True)
        segmenter.fit(trainset)
        out = segmenter.predict(clean, voxel_size=10.0, progress=False)
        from cryoml.metrics import dice

        print(feature, "Dice on its own tomogram:", round(dice(out >= 1.0, truth), 3))
        segmenter.save(HERE / "networks" / f"{feature}_unet.keras", overwrite=True)
        print(np.round(segmenter.history_["loss"][-3:], 3))


if __name__ == "__main__":
    main()
