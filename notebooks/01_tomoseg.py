# %% [markdown]
# **How to run this notebook.** To box and paint by hand, run it cell by cell
# (Shift+Enter): stop at the `BoxPicker` to click boxes and at the `MaskPainter` to paint the
# membrane, then run on. Run All does not wait for you: where nothing was boxed or painted yet,
# the next cell fills the boxes and masks from the simulation's ground truth, so the notebook
# runs start to end unattended (as `make demo` and the tests do).

# %% [markdown]
# # TomoSeg: segment a tomogram with a 2D CNN trained on a few boxed tiles
#
# **Author:** cryoml developers<br>
# **Date created:** 2026-11-21<br>
# **Last modified:** 2026-11-21<br>
# **Description:** import → preprocess → box positives/negatives → paint masks → build the
# training set → train with a live monitor → preview triplets → apply → merge → choose the
# extraction threshold on marked particles → extract from a new tomogram → average (Chen et
# al. 2017, *Nature Methods* 14:983; EMAN2 `e2tomoseg`).<br>
# **Accelerator:** none needed in QUICK mode (about a minute on 2 CPU cores)
#
# TomoSeg trains one small fully convolutional network **per feature** (membrane,
# microtubule, ribosome, ...) from a handful of hand-annotated 64×64 tiles: about 10
# *positive* tiles with the feature painted, and about 100 *negative* tiles that hold none
# of it. Two architectures, chosen by name:
#
# * `architecture="paper"` — the published network (40@15×15 → pool → 40@15×15 → 1@15×15),
#   exactly; output at half sampling. The paper reports 89–91% correct ribosome annotation
#   from 5+50 or 10+100 tiles.
# * `architecture="unet"` — a small U-Net trained from the same tiles with flips / 90°
#   rotations and a Dice + cross-entropy loss; output at full resolution. On our simulated
#   benchmark (`benchmarks/RESULTS.md`) it gives thin, crisp membrane maps where the paper
#   network's are blurred (and, from one start in three, constant: cryoml then trains it
#   again from new weights). This notebook uses it; pass `"paper"` to follow the paper.
#
# Scores are against the **visible** truth: membrane faces nearly parallel to the slices are
# invisible through the missing wedge, for a person and for a 2D network alike. The rule
# (normal more than 30° from the beam for ±60° tilts) treats the wedge as a cone; a real,
# single-axis wedge also hides faces tilted about the tilt axis — a quarter of the "visible"
# membrane in our QUICK benchmark tomogram, of which the U-Net finds about a fifth
# (`benchmarks/RESULTS.md`, session 13).

# %%
import json
from pathlib import Path

import numpy as np

from cryoml import io, metrics, preprocess, tomoseg
from cryoml.datasets import example_data_dir
from cryoml.simulate import simulate_cell_tomogram
from cryoml.widgets import (BoxPicker, MaskPainter, MaskPainterState, SliceViewer,
                            TrainingMonitor, cut_tiles, setup_notebook, show)

backend = setup_notebook(quiet=True)  # ipympl in JupyterLab, inline headless; quiet TF logs

# %% tags=["parameters"]
QUICK = True
OUT = Path("../outputs/notebooks/01_tomoseg")
SEED = 0

# %%
# 800 Å thick: particles lie wholly inside the slab (its faces are the lamella's surfaces) and
# a ribosome is ~250 Å across, so a thinner slab holds only a few
SHAPE = (80, 160, 160) if QUICK else (96, 320, 320)
N_POSITIVE, N_NEGATIVE = (10, 30) if QUICK else (10, 100)
ARCHITECTURE = "unet"  # or "paper" (the published network)
EPOCHS, N_FILTERS = (5, 12) if QUICK else (60, 32)
# QUICK starts from small U-Nets shipped in data/networks (trained the same way on another
# simulated tomogram by data/make_example_networks.py) and adapts them to this notebook's
# tiles for a few epochs; full mode trains from scratch.
START = {f: example_data_dir() / "networks" / f"{f}_unet.keras" for f in ("membrane", "ribosome")}
TILE = 64
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Import a tomogram
# Real tomograms with complete ground truth do not exist, so we simulate a cellular
# tomogram (membranes, microtubules, ribosomes and other complexes, gold, carbon; tilt series
# ±60° reconstructed, so the missing wedge is real) and import it like any MRC file: the
# voxel size comes with it.

# %%
cell = simulate_cell_tomogram(SHAPE, voxel_size=10.0, snr=0.1, ribosome_density=40000,
                              random_state=SEED)
io.write_mrc(OUT / "cell.mrc", cell.tomogram, overwrite=True)
tomogram = io.read_mrc(OUT / "cell.mrc")
print(tomogram.data.shape, f"{tomogram.voxel_size} Å/voxel", "features:", list(cell.labels))

# %% [markdown]
# ## 2. Preprocess
# Low-pass (paper 20 Å; it must be coarser than Nyquist, 20 Å at 10 Å/voxel, so 25 Å here),
# high-pass 4000 Å, normalise, clamp ±3 s.d. **Pitfall:** the network remembers this
# preparation and voxel size; a tomogram prepared differently is refused later.

# %%
clean, record = preprocess.preprocess(tomogram.data, voxel_size=tomogram.voxel_size,
                                      lowpass=25.0, highpass=4000.0, clamp_sd=3.0)
visible = cell.visible["membrane"]  # what the wedge lets anyone see (see the intro)
print(f"{visible.sum() / cell.labels['membrane'].sum():.0%} of membrane voxels are visible")
SliceViewer(clean, overlays={"membrane (visible truth)": visible,
                             "ribosome (truth)": cell.labels["ribosome"]}, figsize=(5, 5))

# %% [markdown]
# ## 3. Box positive and negative tiles
# Click on the feature to box a **positive** tile, switch to **negative** and box areas
# without it; shift-click (or right-click) removes a box. Boxes are written to
# `OUT/boxes_positive.json` / `boxes_negative.json` as you click, so a kernel crash loses
# nothing and re-running this cell resumes. **Protocol tips:** include in the negatives the
# things the network must *not* call (other membranes, gold, carbon edges, empty ice);
# choose positives on several slices and orientations.

# %%
picker = BoxPicker(clean, box_size=TILE, path=OUT / "boxes.json", figsize=(5, 5))
picker

# %% [markdown]
# Run headless (tests, `make demo`) nobody clicks: the next cell boxes from the simulation's
# visible truth instead, as a user would (a third of the negatives on other features:
# microtubules, ribosomes, gold, carbon), and only when no boxes were made yet.

# %%
if sum(picker.state.counts().values()) == 0:
    positives, negatives = tomoseg.sample_boxes(visible, N_POSITIVE, N_NEGATIVE, tile_size=TILE,
                                                others=cell.others("membrane"),
                                                random_state=SEED)
    picker.state.add_boxes(positives, name="positive")
    picker.state.add_boxes(negatives, name="negative")
counts = picker.state.counts()
print(f"{counts['positive']} positive and {counts['negative']} negative boxes, saved in",
      ", ".join(p.name for p in picker.state.paths().values()))

# %% [markdown]
# ## 4. Paint the masks of the positive tiles
# Paint the feature on each positive tile (pen size slider; *erase* mode; *Undo*). Masks are
# saved to `OUT/masks.mrc` after every stroke. Paint the membrane as thin as it looks: the
# network learns exactly what you paint.

# %%
painter = MaskPainter(MaskPainterState.from_boxes(clean, picker.state.boxes("positive"),
                                                  tile_size=TILE, path=OUT / "masks.mrc"))
if not painter.state.painted().any():  # headless: copy the ground truth instead of painting
    painter.state.set_masks(cut_tiles(visible, picker.state.boxes("positive"), tile_size=TILE))
painter

# %% [markdown]
# ## 5. Build the training set
# Each positive is copied with random in-plane rotations until positives ≈ negatives
# (EMAN2 `ncopy`). The set keeps the masks at full resolution (for the U-Net) and shrunk ×2
# (for the paper network, whose output has half the sampling).

# %%
trainset = tomoseg.build_training_set(
    clean, picker.state.boxes("positive"), painter.state.masks,
    picker.state.boxes("negative"), feature="membrane", tile_size=TILE,
    voxel_size=record.voxel_size, preprocess=record, random_state=SEED)
print(len(trainset), "tiles,", int(trainset.is_positive.sum()), "positive")

# %% [markdown]
# ## 6. Train with a live monitor
# The monitor shows the loss curves per epoch. Training runs in a background thread so the
# **Stop** button reaches the kernel; stopping keeps the weights of the best epoch. The
# U-Net's recipe is Adam at 1e-3 with a Dice + cross-entropy loss. In QUICK mode the network
# starts from the shipped example (see the parameters) and trains on for 5 epochs in smaller
# steps (3e-4; over four seeds the membrane Dice of section 8 then ranged 0.80–0.82, and
# fine-tuning at 1e-3 spread it more). `random_state` makes a run repeatable.
# **Pitfall** (paper network): its log-MSE loss can drive it to a constant map from some
# starting weights (one seed in three in our full-size benchmark) — cryoml then trains again
# from new weights, up to `restarts=2` times, and warns only if every try collapsed.

# %%
monitor = TrainingMonitor()
if QUICK:
    segmenter = tomoseg.TomoSegmenter.load(START["membrane"], progress=False)
    segmenter.epochs, segmenter.learning_rate, segmenter.random_state = EPOCHS, 3e-4, SEED
else:
    segmenter = tomoseg.TomoSegmenter(feature="membrane", architecture=ARCHITECTURE,
                                      epochs=EPOCHS, n_filters=N_FILTERS, random_state=SEED,
                                      progress=False)
job = monitor.run_in_background(segmenter.fit, trainset, continue_training=QUICK)
monitor

# %%
segmenter = job.result()  # waits for the training to end
segmenter.save(OUT / "membrane.keras", overwrite=True)
print("best loss", round(segmenter.best_loss_, 4), "epochs run", len(segmenter.history_["loss"]))
show(tomoseg.plot_history(segmenter.history_, title="membrane"))

# %% [markdown]
# ## 7. Preview: tile, manual mask, network output
# Look at every triplet before applying the network: the output should follow the painted
# mask. If outputs on negatives light up, box more negatives of that kind (section 9).

# %%
show(tomoseg.preview_grid(trainset, segmenter, max_tiles=8))

# %% [markdown]
# ## 8. Apply to the whole tomogram
# The net is fully convolutional, so it runs on whole slices (extended by reflection at
# their edges, so no bright frame). Every output is scaled so that **1 is the natural cut**:
# for the paper network 1 is its mean response on painted pixels (EMAN2's amplitude), for
# the U-Net 1 is a probability of 0.5. We cut at 1.
#
# The network decides each slice on its own, so a wall it finds in one slice can be lost in
# the next. For the U-Net, `apply_network` therefore smooths the output along Z only (a
# Gaussian of σ = 40 Å, at most a quarter of the painted features' size; the slice plane stays
# sharp). On the benchmark's simulated tomograms (cuts chosen on the training tomogram) this
# raised the membrane Dice by 0.02–0.04 at this notebook's size (four seeds) and left it level
# at full size, and the microtubule Dice by up to 0.13 here and by 0.02 on average at full
# size. Pass `smooth_z=0` to see the raw slice-by-slice map; the paper network is applied as
# EMAN2 does, unsmoothed.

# %%
CUT = 1.0
membrane = tomoseg.apply_network(clean, segmenter, voxel_size=record.voxel_size,
                                 progress=False)
dice_visible = metrics.dice(membrane >= CUT, visible)
print(f"membrane Dice at {CUT}: {dice_visible:.3f} against the visible truth, "
      f"{metrics.dice(membrane >= CUT, cell.labels['membrane']):.3f} against the full truth")
SliceViewer(membrane, overlays={"membrane (visible truth)": visible}, figsize=(5, 5))

# %% [markdown]
# ## 9. Correct the network's mistakes and train again
# The paper's iterative refinement: box a few places where the output fires but should not
# (here on the output map), and train on with them as negatives. Headless, the boxes go on
# the largest blobs of the output that lie away from any membrane (what a user would box).
# A round removes false positives but can also make the network more cautious on true
# membrane, so the Dice may move either way (over four seeds here it fell by 0.04–0.10); compare
# the two maps and keep the better — `segmenter.weights_before_corrections_` holds the
# weights from before (`segmenter.model_.set_weights(...)` restores them). Here the
# simulation's truth stands in for the user's eye.

# %%
fix_picker = BoxPicker(membrane, box_size=TILE, path=OUT / "corrections.json", figsize=(5, 5))
if sum(fix_picker.state.counts().values()) == 0:
    blobs = tomoseg.largest_blobs(membrane, threshold=CUT, count=5, tile_size=TILE,
                                  exclude=cell.labels["membrane"])
    fix_picker.state.add_boxes(blobs, name="negative")
corrections = fix_picker.state.boxes("negative")
print(len(corrections), "false-positive boxes")
if len(corrections):
    before = membrane
    segmenter.add_corrections(clean, corrections, epochs=5)
    membrane = tomoseg.apply_network(clean, segmenter, voxel_size=record.voxel_size,
                                     progress=False)
    dice_after = metrics.dice(membrane >= CUT, visible)
    print(f"membrane Dice {dice_visible:.3f} before the corrections, {dice_after:.3f} after")
    if dice_after < dice_visible:  # keep the better map, as a user comparing the two would
        segmenter.model_.set_weights(segmenter.weights_before_corrections_)
        membrane = before
        print("the corrections made this map worse: the weights from before are restored")
    else:
        dice_visible = dice_after
fix_picker

# %% [markdown]
# ## 10. A second feature, and merging
# Train a ribosome network the same way (boxes drawn from the truth here, to keep the
# notebook short), then merge: each voxel takes the feature with the highest output if it
# exceeds the threshold (EMAN2 `mergetomoseg`). **Pitfall:** negatives boxed only on empty
# cytoplasm teach "dense and dark = ribosome", and the network then fires along microtubules
# and membranes; box a third of them on those features.

# %%
pos, neg = tomoseg.sample_boxes(cell.labels["ribosome"], N_POSITIVE, N_NEGATIVE, tile_size=TILE,
                                others=cell.others("ribosome"), random_state=SEED)
ribo_set = tomoseg.build_training_set(clean, pos, cell.labels["ribosome"], neg,
                                      feature="ribosome", voxel_size=record.voxel_size,
                                      preprocess=record, random_state=SEED)
if QUICK:
    ribo_net = tomoseg.TomoSegmenter.load(START["ribosome"], progress=False)
    ribo_net.epochs, ribo_net.learning_rate, ribo_net.random_state = EPOCHS, 3e-4, SEED
else:
    ribo_net = tomoseg.TomoSegmenter(feature="ribosome", architecture=ARCHITECTURE,
                                     epochs=EPOCHS, n_filters=N_FILTERS, random_state=SEED,
                                     progress=False)
ribo_net.fit(ribo_set, continue_training=QUICK)
ribosome = tomoseg.apply_network(clean, ribo_net, voxel_size=record.voxel_size, progress=False)

# %% [markdown]
# One correction round for it too, as in section 9: its largest false positives (here along
# the microtubules, dense like ribosomes) become negatives. Then merge.

# %%
mistakes = tomoseg.largest_blobs(ribosome, threshold=CUT, count=5, tile_size=TILE,
                                 exclude=cell.labels["ribosome"])
if len(mistakes):
    ribo_net.add_corrections(clean, mistakes, epochs=5)
    ribosome = tomoseg.apply_network(clean, ribo_net, voxel_size=record.voxel_size,
                                     progress=False)
labels, names = tomoseg.merge_segmentations([membrane, ribosome], names=["membrane", "ribosome"],
                                            threshold=CUT)
io.write_mrc(OUT / "labels.mrc", labels, voxel_size=record.voxel_size, overwrite=True)
SliceViewer(clean, overlays={"membrane (network)": labels == 1,
                             "ribosome (network)": labels == 2}, figsize=(5, 5))

# %% [markdown]
# ## 11. Choose the extraction threshold and least mass where particles are marked
# Extraction thresholds the ribosome output, keeps connected components heavier than
# `min_mass` voxels and takes each one's maximum as a particle. EMAN2's defaults (threshold 1,
# more than 20 voxels, against ~3,400 per ribosome at 10 Å) keep every small blob the network
# leaves, so choose both on a tomogram whose particles you marked — not the one the network
# trained on, which it answers more strongly than new data (there a cut of 1.5 once looked
# perfect and then picked nothing elsewhere): `calibrate_extraction` scores a grid of
# thresholds and masses against the marks (F1, a pick right within half a ribosome) and keeps
# the best. Here a second simulated tomogram, 960 Å thick so that it holds a dozen or more
# ribosomes, is the marked one; its true ribosome centres stand in for the marks.
# From the shell: `cryoml tomoseg extract ... --calibrate-on OUTPUT.mrc --calibrate-coords`.

# %%
SHAPE_B = (96, *SHAPE[1:])  # 960 Å thick: room for more ribosomes to mark and to pick


def another_tomogram(seed):
    """A further simulated tomogram, prepared as the first, and the ribosome network's output."""
    other = simulate_cell_tomogram(SHAPE_B, voxel_size=10.0, snr=0.1, ribosome_density=40000,
                                   random_state=seed)
    prepared, _ = preprocess.preprocess(other.tomogram, voxel_size=10.0, lowpass=25.0,
                                        highpass=4000.0, clamp_sd=3.0)
    output = tomoseg.apply_network(prepared, ribo_net, voxel_size=record.voxel_size,
                                   progress=False)
    return other, prepared, output


cell_m, _, ribosome_m = another_tomogram(SEED + 2)
truth_centres = cell_m.particles.centres[cell_m.particles.classes == 0]  # the "marked" ones
calibration = tomoseg.calibrate_extraction(ribosome_m, truth_centres, box_size=24, radius=12.5,
                                           min_distance=12, edge=6)
i, j = list(calibration.thresholds).index(1.0), list(calibration.min_masses).index(20)
print(f"chosen: threshold {calibration.threshold:g}, min_mass {calibration.min_mass} "
      f"(precision {calibration.precision:.2f}, recall {calibration.recall:.2f} here); "
      f"EMAN2's 1 and 20: precision {calibration.precisions[i, j]:.2f}, "
      f"recall {calibration.recalls[i, j]:.2f}")

# %% [markdown]
# ## 12. Extract particles from a new tomogram and average them
# A third simulated tomogram (another seed, prepared the same way, as thick) stands for the
# rest of a data set: the ribosome network and the calibrated threshold and mass are applied
# to it as they are, and the picks are scored against its truth, which the calibration never
# saw. Then cut subtomograms and average them. **Pitfall:** with a handful of noisy particles
# and no alignment the average is blurry, even low-passed to 40 Å as shown; it checks that
# the picks are centred on ribosome-sized density, not the structure.

# %%
cell_b, clean_b, ribosome_b = another_tomogram(SEED + 1)
picks = tomoseg.extract_particles(ribosome_b, **calibration.extract_kwargs)
io.write_coordinates(OUT / "ribosomes.star", picks, overwrite=True)
truth_b = cell_b.particles.centres[cell_b.particles.classes == 0]
inside = ((truth_b >= 6) & (truth_b <= np.subtract(clean_b.shape, 7))).all(axis=1)
scores = metrics.detection_scores(picks.centres, truth_b[inside], 12.5)
print(f"{len(picks)} picks of {int(inside.sum())} ribosomes in the new tomogram: "
      f"precision {scores['precision']:.2f}, recall {scores['recall']:.2f}")
fits = ((picks.centres >= 12) & (picks.centres <= np.subtract(clean_b.shape, 13))).all(axis=1)
if fits.any():  # only boxes that lie wholly inside the volume can be cut
    boxes = tomoseg.cut_subtomograms(clean_b, io.Particles(picks.centres[fits]), box_size=24)
    average = preprocess.bandpass(tomoseg.average_subtomograms(boxes), voxel_size=10.0,
                                  lowpass=40.0)
    print(f"average of {int(fits.sum())} picks whose 24³ box fits in the volume (below)")

# %% [markdown]
# The average of the picks (low-passed to 40 Å), slice by slice through its 24³ box; dense
# matter is dark:

# %%
SliceViewer(average, figsize=(3, 3)) if fits.any() else print("no pick's box fits: no average")

# %%
headline = {"architecture": ARCHITECTURE, "membrane_dice_visible": round(dice_visible, 3),
            "ribosome_picks": len(picks), "ribosome_recall": round(scores["recall"], 3),
            "ribosome_precision": round(scores["precision"], 3),
            "average_shown": bool(fits.any()), "average_of": int(fits.sum())}
print("headline:", json.dumps(headline))
