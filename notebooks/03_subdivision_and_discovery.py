# %% [markdown]
# **How to run this notebook.** Run it cell by cell (Shift+Enter) to explore the
# embedding by hand (lasso or double-click in the `EmbeddingExplorer`). There is nothing to
# box or paint here: Run All gives the same results and starts the explorer on one class.

# %% [markdown]
# # Subdivision and discovery: CNN features, k-means, t-SNE, unseen structures
#
# **Author:** cryoml developers<br>
# **Date created:** 2026-11-21<br>
# **Last modified:** 2026-11-21<br>
# **Description:** Take a trained classifier's linear-layer outputs as features, over-partition
# them with k-means, explore them with t-SNE and the `EmbeddingExplorer`, and rediscover a
# complex the network never saw (Xu et al. 2017, *Bioinformatics* 33:i13).<br>
# **Accelerator:** none needed in QUICK mode
#
# **Subdivision** groups a large, heterogeneous set of subtomograms into small, nearly pure
# subsets that can be aligned and averaged separately. Xu et al. remove the softmax, use the
# linear layer's outputs as features and run k-means with k = 100 (deliberately too many
# clusters). Cluster sizes come out even, unlike k-means on pose-normalised voxels, where a
# few huge clusters swallow most subtomograms. **Discovery**: train without class C, and C
# still lands in a cluster of its own, which averaging turns into a recognisable structure.

# %%
from pathlib import Path

from cryoml import subtomo
from cryoml.simulate import load_density, simulate_subtomograms
from cryoml.widgets import EmbeddingExplorer, setup_notebook

backend = setup_notebook()  # ipympl in JupyterLab, inline when headless

# %% tags=["parameters"]
QUICK = True
OUT = Path("../outputs/notebooks/03_subdivision_and_discovery")
SEED = 0

# %%
COMPLEXES = ["4v4r", "3j9i", "1bxn", "3cf3"] if QUICK else subtomo.XU2017_COMPLEXES
N_TRAIN, N_TEST = (30, 15) if QUICK else (500, 500)
BOX, VOXEL, SNR, EPOCHS, K = (16, 18.4, 0.5, 5, 12) if QUICK else (40, 9.2, 0.1, 20, 100)
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Data and a trained network
# As in `02_subtomogram_classification` (smaller here; raw input, as Inception3D needs). The
# features are only as good as the classifier: check its accuracy before trusting clusters —
# a network at chance (1 / number of classes) gives features that mean nothing.

# %%
train = simulate_subtomograms(COMPLEXES, N_TRAIN, snr=SNR, box=BOX, voxel_size=VOXEL,
                              random_state=SEED)
test = simulate_subtomograms(COMPLEXES, N_TEST, snr=SNR, box=BOX, voxel_size=VOXEL,
                             random_state=SEED + 1)
classifier = subtomo.SubtomoClassifier(model="inception3d", recipe="modern", epochs=EPOCHS,
                                       normalize=False, random_state=SEED,
                                       progress=False).fit(train)
print("test accuracy", round(classifier.evaluate(test)["accuracy"], 3))

# %% [markdown]
# ## 2. Features and k-means subdivision, against the pose-normalised baseline
# The statistic to read is max/median cluster size: near 1 means even clusters.

# %%
features = subtomo.linear_features(classifier, test)
cnn = subtomo.subdivide(features, k=K, random_state=SEED)
baseline = subtomo.pose_normalised_kmeans(test.data, k=K, n_components=20, random_state=SEED)
for name, result in (("CNN features", cnn), ("pose-normalised voxels", baseline)):
    stats = result.stats
    print(f"{name:>24}: largest {stats['max']}, median {stats['median']}, "
          f"max/median {stats['max'] / max(stats['median'], 1):.1f}")

# %% [markdown]
# ## 3. Explore the embedding
# t-SNE places similar feature vectors together (for viewing only: distances between
# far-apart groups mean little). Colour by true class or by cluster; draw a lasso around a
# group (or double-click a point) to see its subtomograms' central slices and their average.

# %%
embedding = subtomo.tsne_embedding(features, perplexity=15 if QUICK else 30, random_state=SEED)
explorer = EmbeddingExplorer(embedding, images=test.data, labels=test.labels,
                             clusters=cnn.labels, class_names=test.class_names)
explorer.state.select_group(0, by="class")  # start with the ribosomes (class 0)
explorer

# %% [markdown]
# ## 4. Discovery of a structure the network never saw
# Train without class C (the first complex: the 70S ribosome 4v4r in QUICK mode, 1bxn in
# full mode), project the test set, cluster, take the cluster richest in C, run reference-free
# classification and averaging inside it, and compare the best average with the true map by
# FSC at 0.5. Success is a resolution of 7 nm or better. **Pitfall:** QUICK mode uses few
# subtomograms, few iterations and a coarse rotation grid; expect a coarse resolution.

# %%
true_map = load_density(COMPLEXES[0], voxel_size=VOXEL, box=BOX)
discovery = subtomo.leave_one_out(
    train, test, 0, true_map, voxel_size=VOXEL, model="inception3d",
    classifier_options={"epochs": EPOCHS, "recipe": "modern", "normalize": False}, k=K,
    n_iterations=2 if QUICK else 5, angular_step=45 if QUICK else 25, random_state=SEED)
print({key: value for key, value in discovery.items() if key != "cluster_size_stats"})
