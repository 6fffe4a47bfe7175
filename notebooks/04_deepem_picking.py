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
from pathlib import Path

from cryoml import io, picking
from cryoml.simulate import simulate_micrographs
from cryoml.widgets import BoxPicker, PRExplorer, PRState, SliceViewer, setup_notebook

backend = setup_notebook()  # ipympl in JupyterLab, inline when headless

# %% tags=["parameters"]
QUICK = True
OUT = Path("../outputs/notebooks/04_deepem_picking")
SEED = 0

# %%
N_TRAIN, N_CALIBRATE, N_TEST = (4, 2, 2) if QUICK else (16, 4, 8)
SHAPE = (384, 384) if QUICK else (1024, 1024)
EPOCHS = 6 if QUICK else 20
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Micrographs
# Simulated KLH micrographs (10 Å/pixel here to keep boxes small) with carbon, ice
# gradient, contamination, overlapping and aggregated particles, and the true centres of the
# good particles. **Pitfall:** the picker remembers the pixel size; micrographs at another
# sampling are refused unless rescaled.

# %%
micrographs = simulate_micrographs(N_TRAIN + N_CALIBRATE + N_TEST, shape=SHAPE,
                                   pixel_size=10.0, particle="klh", snr=0.1, random_state=SEED)
train = micrographs[:N_TRAIN]
calibrate = micrographs[N_TRAIN:N_TRAIN + N_CALIBRATE]
test = micrographs[N_TRAIN + N_CALIBRATE:]
BOX = train[0].box_size
print(len(micrographs), "micrographs, box", BOX, "px,",
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
# ## 3. Train the CNN
# The network's kernel and pooling sizes follow the paper's tables for the box size.
# Positives come from the boxes (first micrograph) and the truth (the others).

# %%
positives = [picker_widget.state.particles("positive")] + [m.particles for m in train[1:]]
picker = picking.ParticlePicker(BOX, recipe="modern", epochs=EPOCHS, random_state=SEED,
                                progress=False)
picker.fit([m.image for m in train], positives)
print("held-out box accuracy", round(picker.validation_accuracy_, 3))

# %% [markdown]
# ## 4. Score map
# Each position's score is the mean over the box's four 90° rotations.

# %%
score_map = picker.score(test[0].image)
SliceViewer(score_map.scores, figsize=(4, 4))

# %% [markdown]
# ## 5. Choose the threshold: precision–recall explorer
# All local maxima of the score map are candidates; matched to the true centres they give a
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
# The F2 threshold chosen on the calibration micrographs, applied to all test micrographs:

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

# %%
picks = picker.pick(test[0].image)
io.write_coordinates(OUT / "test0.box", picks, overwrite=True)
io.write_coordinates(OUT / "test0.star", picks, micrograph_name="test0.mrc", overwrite=True)
print(len(picks), "picks written;", io.read_coordinates(OUT / "test0.box").centres[:3])
