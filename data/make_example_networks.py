"""Train the small TomoSeg U-Nets that notebooks 01 and 05 start from in QUICK mode.

Usage (from the repository root; about 3.5 min on 2 CPU cores)::

    python data/make_example_networks.py                 # all three
    python data/make_example_networks.py membrane_25d    # only the ones named

Each network is trained as notebook 01 trains in full mode — a U-Net (``architecture="unet"``,
12 filters) from 10 positive tiles painted from the visible truth and 100 negatives, a third
of them on other features (``sample_boxes(..., others=cell.others(feature))``), then one
round of the paper's refinement (the 10 largest false positives boxed as negatives, 10 more
epochs; kept only where it raises the Dice on that tomogram) — on a
simulated cellular tomogram (64×256×256 at 10 Å, SNR 0.1, ±60°, seed 7; not the notebooks' own
tomograms), preprocessed as the notebooks do (low-pass 25 Å, high-pass 4000 Å, clamp ±3 s.d.):

* ``membrane_unet.keras`` and ``ribosome_unet.keras``: 2D (notebook 01, notebook 05's 2D row);
* ``membrane_25d_unet.keras``: membrane in 2.5D, the slices 2 above and 2 below as extra
  channels (notebook 05's 2.5D row).

The files are written to ``networks/<name>_unet.keras``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: name → (feature, n_neighbours, seed of the tile sampling and training)
NETWORKS = {"membrane": ("membrane", 0, 0), "ribosome": ("ribosome", 0, 1),
            "membrane_25d": ("membrane", 2, 0)}


def main(names: list[str] | None = None) -> None:
    """Simulate, box, train and save the networks named (default: all)."""
    from cryoml import preprocess, tomoseg
    from cryoml.metrics import dice
    from cryoml.simulate import simulate_cell_tomogram

    names = names or list(NETWORKS)
    unknown = sorted(set(names) - set(NETWORKS))
    if unknown:
        sys.exit(f"unknown network {unknown}; choose from {sorted(NETWORKS)}")
    cell = simulate_cell_tomogram((64, 256, 256), voxel_size=10.0, snr=0.1,
                                  ribosome_density=40000, random_state=7)
    clean, record = preprocess.preprocess(cell.tomogram.data, voxel_size=10.0, lowpass=25.0,
                                          highpass=4000.0, clamp_sd=3.0)
    (HERE / "networks").mkdir(exist_ok=True)
    for name in names:
        feature, neighbours, seed = NETWORKS[name]
        truth = cell.visible[feature]
        # a third of the negatives on other features, as the paper's users box them
        positives, negatives = tomoseg.sample_boxes(truth, 10, 100, others=cell.others(feature),
                                                    random_state=seed)
        trainset = tomoseg.build_training_set(clean, positives, truth, negatives,
                                              feature=feature, n_neighbours=neighbours,
                                              voxel_size=10.0, preprocess=record,
                                              random_state=seed)
        segmenter = tomoseg.TomoSegmenter(feature=feature, architecture="unet", n_filters=12,
                                          epochs=40, random_state=seed, progress=True)
        segmenter.fit(trainset)
        out = segmenter.predict(clean, voxel_size=10.0, progress=False)
        first = dice(out >= 1.0, truth)
        path = HERE / "networks" / f"{name}_unet.keras"
        segmenter.save(path, overwrite=True)
        # the paper's refinement, one round: the largest false positives become negatives;
        # kept only where it helps, as a user who compares the two maps would
        mistakes = tomoseg.largest_blobs(out, threshold=1.0, count=10,
                                         exclude=cell.labels[feature])
        if len(mistakes):
            segmenter.add_corrections(clean, mistakes, epochs=10, random_state=seed)
            out = segmenter.predict(clean, voxel_size=10.0, progress=False)
            kept = dice(out >= 1.0, truth) > first
            if kept:
                segmenter.save(path, overwrite=True)
            print(f"{name}: Dice on its own tomogram {first:.3f}; after {len(mistakes)} "
                  f"correction boxes {dice(out >= 1.0, truth):.3f} "
                  f"({'kept' if kept else 'not kept'})")
        print(np.round(segmenter.history_["loss"][-3:], 3))


if __name__ == "__main__":
    main(sys.argv[1:])
