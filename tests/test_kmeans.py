"""The one k-means of the methods (vslrepro.methods._kmeans), used by DSOL and CoarsetoFine."""

from __future__ import annotations

import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from vslrepro.methods._kmeans import cluster_means, kmeans


def test_kmeans_is_seeded_and_finds_scikit_learns_optimum():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(4, 8, generator=g) * 3
    points = (centres[torch.arange(200) % 4] + 0.3 * torch.randn(200, 8, generator=g)).double()
    labels, found, inertia = kmeans(points, 4, seed=(0, 3))
    again = kmeans(points, 4, seed=(0, 3))
    assert torch.equal(labels, again[0]) and torch.equal(found, again[1])
    reference = KMeans(n_clusters=4, n_init=10, random_state=0).fit(points.numpy())
    assert adjusted_rand_score(reference.labels_, labels.numpy()) == 1.0
    assert inertia == pytest.approx(reference.inertia_, rel=1e-9)
    assert torch.allclose(found, cluster_means(points, labels, 4))  # Lloyd's fixed point


def test_every_cluster_keeps_a_point():
    """Fewer distinct values than clusters: an empty cluster takes the worst-fit point."""
    labels, _, _ = kmeans(torch.tensor([[0.0], [0.0], [0.0], [1.0]]), 3, seed=0)
    assert sorted(torch.bincount(labels, minlength=3).tolist()) == [1, 1, 2]


def test_separated_clusters_are_found_in_the_points_dtype():
    g = torch.Generator().manual_seed(0)
    truth = torch.tensor([[5.0, 0], [0, 5.0], [-5.0, -5.0]])
    points = torch.cat([c + 0.1 * torch.randn(20, 2, generator=g) for c in truth])  # (60, 2) float32
    _, centres, _ = kmeans(points, 3, seed=1)
    assert centres.dtype == torch.float32
    nearest = torch.cdist(truth, centres).argmin(1)
    assert sorted(nearest.tolist()) == [0, 1, 2]
    assert torch.allclose(centres[nearest], truth, atol=0.1)


def test_errors():
    points = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="1 <= K <= N"):
        kmeans(points, 4)
    with pytest.raises(ValueError, match="restarts and iters"):
        kmeans(points, 2, restarts=0)
