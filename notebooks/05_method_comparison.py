# %% [markdown]
# **How to run this notebook.** Run it cell by cell (Shift+Enter) to read each
# comparison as it appears. There is nothing to box or paint by hand here: Run All gives the
# same results.

# %% [markdown]
# # Method comparison: each method beside its baseline, and beside the paper
#
# **Author:** cryoml developers<br>
# **Date created:** 2026-11-21<br>
# **Last modified:** 2026-11-21<br>
# **Description:** On shared data made on the spot: DeepEM vs template matching (picking),
# Inception3D vs RIF-SVM (subtomogram classification), TomoSeg 2D vs its 2.5D variant
# (segmentation); our figures next to the published ones.<br>
# **Accelerator:** none needed in QUICK mode
#
# **Read the paper columns with care.** The papers used far larger data (Xu et al.: 23
# classes × 1000 subtomograms per condition; Zhu et al.: 800+800 KLH boxes; Chen et al.: a
# real cyanobacterium tomogram) and GPUs. QUICK mode trains for seconds on a few examples,
# so its numbers show that the pipeline runs end to end and how the methods rank, not the
# papers' accuracy. Run with `QUICK = False` (and a GPU) for the full-size comparison; the
# `benchmarks/` scripts measure the same things at scale.
#
# **What QUICK must show:** every method above chance by at least `MARGIN` = 0.1 (absolute),
# with chance defined per task below and printed beside each score; the tests check it.

# %%
from pathlib import Path

import numpy as np
from IPython.display import Image, display

from cryoml import metrics, picking, preprocess, subtomo, tomoseg
from cryoml.datasets import example_data_dir
from cryoml.simulate import simulate_cell_tomogram, simulate_subtomograms
from cryoml.widgets import headline, plot_comparison, setup_notebook, show

backend = setup_notebook()  # ipympl in JupyterLab, inline when headless; quiet TensorFlow

# %% tags=["parameters"]
QUICK = True
OUT = Path("../outputs/notebooks/05_method_comparison")
SEED = 0

# %%
OUT.mkdir(parents=True, exist_ok=True)
EPOCHS = 5 if QUICK else 20
MARGIN = 0.1  # every method must beat its chance level by this much
ours, paper, chance = {}, {}, {}

# %% [markdown]
# ## 1. Picking: DeepEM against template matching
# Same micrographs, same calibration (F2 threshold), same matching radius. Zhu et al. report
# precision and recall both near 0.9 on KLH. **Chance:** as many picks as particles, placed at
# random: a pick is true when it falls within the matching radius of a particle, so
# precision = recall = F2 ≈ (particles × π radius²) / micrograph area.

# %%
mics = picking.toy_micrographs(8 if QUICK else 28, shape=(256, 256) if QUICK else (512, 512),
                               box_size=48, n_particles=12, snr=0.3, random_state=SEED)
train, calib, test = mics[:4], mics[4:6], mics[6:]
diameter, radius = train[0].diameter, picking.match_radius(train[0].diameter)
pickers = {"DeepEM": picking.ParticlePicker(48, recipe="modern", epochs=EPOCHS + 3,
                                            particle_diameter=diameter, random_state=SEED,
                                            progress=False),
           "template matching": picking.TemplateMatcher(48, particle_diameter=diameter)}
evaluations = {}
for name, method in pickers.items():
    method.fit([m.image for m in train], [m.particles for m in train])
    method.calibrate_threshold([m.image for m in calib], [m.particles for m in calib])
    evaluations[name] = picking.evaluate_picks(
        [method.candidates(m.image) for m in test], [m.particles for m in test],
        radius=radius, threshold=method.threshold_)
    ours[f"{name} F2"] = evaluations[name].fbeta
    per_micrograph = np.mean([len(m.particles) for m in test])
    chance[f"{name} F2"] = min(1.0, per_micrograph * np.pi * radius**2
                               / np.prod(test[0].image.shape))
paper["DeepEM F2"] = 0.90  # KLH: precision ≈ recall ≈ 0.9, so F2 ≈ 0.9
pr_png = picking.plot_precision_recall(evaluations, OUT / "picking_pr.png", overwrite=True)
display(Image(filename=str(pr_png)))

# %% [markdown]
# ## 2. Subtomogram classification: CNN against rotation-invariant features
# Table 1 of Xu et al. at SNR 0.1, ±60°: Inception3D 0.851, DSRF3D 0.891, RIF-SVM 0.762 over 23
# classes. QUICK uses 4 complexes and the empty class, SNR 0.5, 16³ boxes at 18.4 Å/voxel and
# batches of 16. **Chance:** 1 / number of classes.

# %%
names = ["4v4r", "3j9i", "1bxn", "3cf3"] if QUICK else subtomo.XU2017_COMPLEXES
snr, box, voxel, n_train = (0.5, 16, 18.4, 30) if QUICK else (0.1, 40, 9.2, 500)
sub_train = simulate_subtomograms(names, n_train, snr=snr, box=box, voxel_size=voxel,
                                  random_state=SEED)
sub_test = simulate_subtomograms(names, n_train // 2, snr=snr, box=box, voxel_size=voxel,
                                 random_state=SEED + 1)
cnn = subtomo.SubtomoClassifier(model="inception3d", recipe="modern", epochs=2 * EPOCHS,
                                batch_size=16 if QUICK else 64, normalize=False,
                                random_state=SEED, progress=False).fit(sub_train)
ours["Inception3D acc."] = cnn.evaluate(sub_test)["accuracy"]
rif = subtomo.RIFSVM(max_degree=6 if QUICK else 10, random_state=SEED).fit(sub_train)
ours["RIF-SVM acc."] = rif.evaluate(sub_test)["accuracy"]
paper.update({"Inception3D acc.": 0.851, "RIF-SVM acc.": 0.762})
chance.update(dict.fromkeys(["Inception3D acc.", "RIF-SVM acc."], 1 / len(sub_test.class_names)))

# %% [markdown]
# ## 3. Segmentation: TomoSeg 2D against the 2.5D variant
# The paper suggests feeding neighbouring slices as extra channels to see across the
# missing-wedge-smeared Z direction. Same boxes, same masks, same training (the U-Net
# architecture, as in notebook 01); Dice against the membrane visible through the wedge, at
# the natural cut 1. (The paper measured ~90% correct ribosome annotations, not a Dice.)
# QUICK starts each from a small U-Net shipped in `data/networks` (2D and 2.5D, trained the
# same way on another simulated tomogram by `data/make_example_networks.py`) and trains on for
# a few epochs; a U-Net trained from scratch for that long on 8 tiles stays at chance.
# **Chance:** the Dice of calling every voxel membrane, 2f / (1 + f) for a membrane fraction f.

# %%
cell = simulate_cell_tomogram((32, 128, 128) if QUICK else (64, 320, 320), voxel_size=10.0,
                              random_state=SEED)
clean, record = preprocess.preprocess(cell.tomogram.data, voxel_size=10.0, lowpass=25.0,
                                      highpass=4000.0, clamp_sd=3.0)
mask = cell.visible["membrane"]
positives, negatives = tomoseg.sample_boxes(mask, 8, 24, random_state=SEED)
for name, neighbours, start in (("TomoSeg 2D Dice", 0, "membrane"),
                                ("TomoSeg 2.5D Dice", 2, "membrane_25d")):
    trainset = tomoseg.build_training_set(clean, positives, mask, negatives,
                                          n_neighbours=neighbours, voxel_size=10.0,
                                          random_state=SEED)
    if QUICK:
        net = tomoseg.TomoSegmenter.load(example_data_dir() / "networks" / f"{start}_unet.keras",
                                         progress=False)
        net.epochs = EPOCHS
    else:
        net = tomoseg.TomoSegmenter(architecture="unet", epochs=60, n_filters=32,
                                    random_state=SEED, progress=False)
    net.fit(trainset, continue_training=QUICK)
    output = tomoseg.apply_network(clean, net, voxel_size=10.0, progress=False)
    ours[name] = metrics.dice(output >= 1.0, mask)
    chance[name] = 2 * mask.mean() / (1 + mask.mean())

# %% [markdown]
# ## 4. Side by side
# Grey bars are the papers' figures where one exists for the same quantity. Each line below
# says whether the method beats chance by the margin on this run.

# %%
for name, value in ours.items():
    verdict = "above" if value >= chance[name] + MARGIN else "NOT above"
    print(f"{name:>24}: {value:.3f}, chance {chance[name]:.3f}: {verdict} chance + {MARGIN}")
show(plot_comparison(ours, paper, ylabel="score", title="this run vs the papers"))
headline(margin=MARGIN, methods={name: {"score": float(value), "chance": float(chance[name])}
                                 for name, value in ours.items()})
