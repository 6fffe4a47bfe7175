import numpy as np
import pytest

from cryoml._errors import CryomlError
from cryoml.subtomo import cluster_size_stats, pose_normalised_kmeans, subdivide, tsne_embedding

from .conftest import make_set


def test_subdivide_over_partitions_and_reports_cluster_sizes():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(c, 0.1, (30, 4)) for c in (0, 5, 10)])
    division = subdivide(features, k=6, random_state=0)
    assert division.labels.shape == (90,)
    assert sum(division.stats["sizes"]) == 90
    assert division.stats["n_clusters"] == 6
    truth = np.repeat(np.arange(3), 30)
    assert division.enrichment(truth, 1).max() == 1.0
    assert subdivide(features, k=3, method="minibatch", random_state=0).method == "minibatch"


def test_subdivide_refuses_more_clusters_than_vectors():
    with pytest.raises(CryomlError, match="'k'"):
        subdivide(np.zeros((5, 2)), k=10)


def test_cluster_size_stats_count_small_and_empty_clusters():
    stats = cluster_size_stats(np.array([0] * 20 + [1] * 5), n_clusters=3)
    assert stats["sizes"] == [20, 5, 0]
    assert stats["n_le_10"] == 2
    assert stats["max_over_median"] == 4.0


def test_pose_normalised_kmeans_clusters_every_subtomogram():
    data, _, _ = make_set(n_classes=2, n_per_class=8, box=16, noise=0.1)
    division = pose_normalised_kmeans(-data, k=4, n_components=5, random_state=0)
    assert division.labels.shape == (16,)


def test_pose_normalisation_threads_do_not_change_the_clusters():
    data, _, _ = make_set(n_classes=3, n_per_class=20, box=16, noise=0.1, seed=2)
    serial = pose_normalised_kmeans(-data, k=5, n_components=8, random_state=0, n_jobs=None)
    threaded = pose_normalised_kmeans(-data, k=5, n_components=8, random_state=0, n_jobs=3)
    np.testing.assert_array_equal(serial.labels, threaded.labels)


def test_tsne_embeds_in_two_dimensions():
    rng = np.random.default_rng(1)
    embedding = tsne_embedding(rng.normal(size=(20, 5)), max_iter=250, random_state=0)
    assert embedding.shape == (20, 2)
    assert embedding.dtype == np.float32
