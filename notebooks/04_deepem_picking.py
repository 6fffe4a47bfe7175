# %% [markdown]
# **How to run this notebook.** To box particles by hand, run it cell by cell
# (Shift+Enter) and click in the `BoxPicker` before running on. Run All does not wait for you:
# where nothing was boxed yet, the next cell takes the simulation's true centres as the boxes,
# so the notebook runs start to end unattended (as `make demo` and the tests do).

# %% [markdown]
# # DeepEM: pick particles in micrographs with a small CNN
#
# **Author:** cryoml developers<br>
# **Date created:** 2026-11-21<br>
# **Last modified:** 2026-11-21<br>
# **Description:** micrographs → box examples → train → score map → precision–recall
# explorer → F2 threshold → export EMAN2 `.box` and RELION `.star` (Zhu et al. 2017,
# *BMC Bioinformatics* 18:348).<br>
# **Accelerator:** none needed in QUICK mode
#
# DeepEM slides a box over the micrograph and asks a small CNN (three convolution and three
# pooling layers, a sigmoid output) whether a particle sits in the middle. Training needs a
# few hundred boxed particles and as many background boxes, each seen in four rotations.
# The pick threshold is chosen where **F2** peaks on labelled micrographs (recall counts
# twice: missed particles cost more than false ones, which later 2D classification removes);
# boxes whose pixel s.d. is outside a narrow band (carbon, thick ice) are dropped. On KLH the
# paper reached ~90% precision and recall at once.

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import display

from cryoml import io, picking
from cryoml.simulate import simulate_micrographs
from cryoml.widgets import (BoxPicker, PRExplorer, PRState, TrainingMonitor, setup_notebook,
                            show)

backend = setup_notebook()  # ipympl in JupyterLab, inline when headless

# %% tags=["parameters"]
QUICK = True
OUT = Path("../outputs/notebooks/04_deepem_picking")
SEED = 0

# %%
N_TRAIN, N_CALIBRATE, N_TEST = (8, 2, 4) if QUICK else (24, 4, 8)
SHAPE = (512, 512) if QUICK else (1024, 1024)
PARTICLES = 14 if QUICK else 56  # per micrograph, before crowding flags some of them
EPOCHS = 8 if QUICK else 20
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Micrographs
# Simulated KLH micrographs (14 Å/pixel here to keep boxes small) with carbon, ice
# gradient, contamination, overlapping and aggregated particles, and the true centres of the
# good particles. Overlapping, aggregated and on-carbon particles are *not* truth: picking
# them counts as a false pick. **Pitfall:** the picker remembers the pixel size; micrographs
# at another sampling are refused unless rescaled.

# %%
micrographs = simulate_micrographs(N_TRAIN + N_CALIBRATE + N_TEST, shape=SHAPE,
                                   pixel_size=14.0, particle="klh", snr=0.1,
                                   n_particles=PARTICLES, random_state=SEED)
train = micrographs[:N_TRAIN]
calibrate = micrographs[N_TRAIN:N_TRAIN + N_CALIBRATE]
test = micrographs[N_TRAIN + N_CALIBRATE:]
BOX = train[0].box_size
DIAMETER = train[0].params["particle_diameter_A"] / 14.0  # in pixels
print(len(micrographs), "micrographs, box", BOX, "px, particle", round(DIAMETER), "px,",
      sum(len(m.particles) for m in train), "training particles")

# %% [markdown]
# ## 2. Box training particles
# Click particles in **positive**, background in **negative** (the picker also samples
# negatives away from the positives by itself). Boxes are saved as you click. Headless, the
# next cell takes the simulation's true centres instead.

# %%
picker_widget = BoxPicker(train[0].image, box_size=BOX, path=OUT / "train0.box",
                          figsize=(5, 5))
if picker_widget.state.counts()["positive"] == 0:
    picker_widget.state.add_boxes(train[0].particles, name="positive")
picker_widget

# %% [markdown]
# ## 3. Train the CNN, with the live training monitor
# The network's kernel and pooling sizes follow the paper's tables for the box size.
# Positives come from the boxes (first micrograph) and the truth (the others); each box is
# seen in its 8 orientations (4 rotations, mirrored or not), and each particle also in two
# copies shifted by up to 0.1 diameter: the score map is computed on a grid (every 8 px here),
# so most particles sit a few pixels off a grid point, and a network shown only perfectly
# centred boxes answers them at half strength (this alone moved AP from 0.46 to ~0.75 on these
# micrographs). A tenth of the particles is held out (with their copies): the **held-out
# balanced accuracy** (the mean over particles and background) is the check that the network
# learned (0.5 is chance: the picker then warns, and its picks mean nothing). One round of
# **hard-negative mining** (the paper's recursive training, automated) follows: false picks
# on the training micrographs — mostly overlapping, aggregated and on-carbon particles, which
# are not in the truth — become negatives and training continues, the two classes weighted to
# count equally; the monitor shows both rounds. The held-out check stays on the first round's
# boxes, so the rounds compare; the held-out share of the mined boxes is scored on its own
# and is lower by design (the network had called each of them a particle). Three random
# background boxes per particle box (`negative_ratio=3`, the classes still weighted equally)
# show the network more of what is not a particle: run with SEED 0 / 1 / 2 (each seed also
# simulates its own micrographs), this notebook gave AP 0.723 / 0.801 / 0.512 and held-out
# accuracy 0.99 in all three, against 0.741 / 0.760 / 0.459 and 0.86–0.96 with one.
# The network scores boxes on a grid whose step is the product of its pools (8 px here), so
# a particle's centre can lie 4 px from the nearest scored box; `dense_step=4` scores the
# micrograph on a 4-px grid (four shifted passes, 4× the scoring time) and raised the AP to
# 0.784 / 0.826 / 0.533 for the same seeds. Hard negatives are still mined on the 8-px grid,
# which measured better.

# %%
positives = [picker_widget.state.particles("positive")] + [m.particles for m in train[1:]]
picker = picking.ParticlePicker(BOX, recipe="modern", epochs=EPOCHS, batch_size=32,
                                learning_rate=3e-3, negative_ratio=3.0,
                                particle_diameter=DIAMETER,
                                hard_negative_rounds=1, dense_step=4, random_state=SEED,
                                progress=False)
monitor = TrainingMonitor()
display(monitor)
picker.fit([m.image for m in train], positives, callbacks=[monitor.callback()])
print(f"held-out balanced accuracy {picker.validation_accuracy_:.3f} (chance 0.5); "
      f"held-out mined negatives called background: {picker.hard_negative_accuracy_:.2f}")

# %% [markdown]
# ## 4. Score map
# Each position's score is the mean over the box's four 90° rotations, drawn at the box
# centres over the micrograph; bright spots should sit on the good particles (circles).

# %%
score_map = picker.score(test[0].image)
half = score_map.step / 2  # each score covers one grid step around its box centre
(y0, x0), (y1, x1) = score_map.centres()[0, 0] - half, score_map.centres()[-1, -1] + half
figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
left.imshow(test[0].image.data, cmap="gray")
left.set_title("test micrograph, true particles")
right.set_title("particle score")
image = right.imshow(score_map.scores, cmap="magma", vmin=0, vmax=1,
                     extent=(x0, x1, y1, y0))
for axes in (left, right):
    axes.scatter(test[0].particles.centres[:, 1], test[0].particles.centres[:, 0], s=80,
                 facecolors="none", edgecolors="cyan", linewidths=0.8)
figure.colorbar(image, ax=right, label="score (0 background … 1 particle)")
show(figure)

# %% [markdown]
# ## 5. Choose the threshold: precision–recall explorer
# All local maxima of the score map are candidates (kept at least half a particle diameter
# apart, so touching particles both count); matched to the true centres they give a
# precision–recall curve. Move the slider to see which picks survive (green: true, red:
# false); the star marks the F2 optimum on the calibration micrographs.

# %%
picker.calibrate_threshold([m.image for m in calibrate], [m.particles for m in calibrate])
candidates = picker.candidates(test[0].image, score_map=score_map)
radius = picking.match_radius(picker.diameter)
pr = PRState.from_picks(candidates, test[0].particles, radius=radius, beta=2.0)
explorer = PRExplorer(pr, micrograph=test[0].image, true_centres=test[0].particles,
                      box_size=BOX)
explorer

# %% [markdown]
# The F2 threshold chosen on the calibration micrographs, applied to all test micrographs
# (AP: the area under their precision–recall curve):

# %%
evaluation = picking.evaluate_picks([picker.candidates(m.image) for m in test],
                                    [m.particles for m in test], radius=radius,
                                    threshold=picker.threshold_)
print(f"threshold {picker.threshold_:.3f}: precision {evaluation.precision:.3f}, "
      f"recall {evaluation.recall:.3f}, F2 {evaluation.fbeta:.3f}, "
      f"AP {evaluation.average_precision:.3f}")

# %% [markdown]
# ## 6. Export the picks
# EMAN2 `.box` (corner coordinates) and RELION `.star` (centres); conversion happens only
# in `cryoml.io`, so both describe the same particles.
#
# **Going further:** `picking.PickerEnsemble.train(picker, micrographs, particles,
# n_models=3)` trains three networks with these settings from different random starts and
# averages their score maps; it picks, calibrates and saves like one picker. On this
# notebook's QUICK micrographs (`benchmarks/picking_notebook_set.py`, 4-px grid) it raised
# the AP from 0.786 (one network, mean of three seeds) to 0.817 (mean of three ensembles of
# three; Topaz trained on the same boxes: 0.831), at three times the training and scoring
# time — which is why this QUICK run trains one.

# %%
picks = picker.pick(test[0].image)
io.write_coordinates(OUT / "test0.box", picks, overwrite=True)
io.write_coordinates(OUT / "test0.star", picks, micrograph_name="test0.mrc", overwrite=True)
print(len(picks), "picks written;", io.read_coordinates(OUT / "test0.box").centres[:3])
headline = {"heldout_accuracy": round(picker.validation_accuracy_, 3),
            "heldout_mined_negatives": round(picker.hard_negative_accuracy_, 3),
            "ap": round(evaluation.average_precision, 3),
            "precision": round(evaluation.precision, 3), "recall": round(evaluation.recall, 3),
            "threshold_f2": round(picker.threshold_, 3)}
print("headline:", json.dumps(headline))
