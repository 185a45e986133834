"""k-means: the one hard clustering the methods use (DSOL's object dictionary, CoarsetoFine's
pseudo-label centres), seeded, deterministic, torch only.

Lloyd iterations from k-means++ seedings, several restarts, the run of lowest inertia kept, as
scikit-learn's KMeans (its defaults: 10 restarts, 300 iterations) — but seeded through the
package's one seed derivation (`vslrepro.seeding`) and computed in float64 on the CPU, so a run
gives the same clusters on any machine. An empty cluster takes the point farthest from its centre
(scikit-learn's relocation), so every cluster keeps at least one point.
"""

from __future__ import annotations

import torch

from vslrepro.seeding import torch_generator


def squared_distances(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, D), (K, D) -> (N, K) squared Euclidean distances (clamped at 0)."""
    return (points.pow(2).sum(1, keepdim=True) - 2 * points @ centres.T
            + centres.pow(2).sum(1)[None]).clamp_min(0)


def kmeans_plus_plus(points: torch.Tensor, clusters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: the first centre uniform, each next one drawn ∝ its squared distance to the
    nearest centre so far. Returns (K, D) centres."""
    n = points.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [points[first]]
    nearest = squared_distances(points, points[first][None])[:, 0]  # (N,)
    for _ in range(1, clusters):
        weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)  # all points coincide
        pick = int(torch.multinomial(weights, 1, generator=generator))
        centres.append(points[pick])
        nearest = torch.minimum(nearest, squared_distances(points, points[pick][None])[:, 0])
    return torch.stack(centres)


def kmeans(points: torch.Tensor, clusters: int, *, seed: int | tuple[int, ...] = 0, restarts: int = 10,
           iters: int = 300, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Seeded, deterministic k-means (Lloyd) with k-means++ seeding and restarts, torch only.

    Computed in float64 on the CPU. An empty cluster takes the point farthest from its centre (as
    scikit-learn relocates empty clusters), so every cluster keeps at least one point. The labels
    returned are the last assignment step's and the centres their means (Lloyd's fixed point).

    Args:
        points: (N, D) points, N ≥ K.
        clusters: K ≥ 1.
        seed: an int or a tuple of ints (e.g. (seed, epoch)): the key of the k-means++ draws
            (`seeding.torch_generator(*key, purpose="kmeans")`).
        restarts: independent seedings; the run of lowest inertia is kept (scikit-learn: 10).
        iters: the most Lloyd iterations per run (scikit-learn: 300).
        tol: stop when the centres move less than tol (squared, summed) in one iteration.

    Returns:
        (labels (N,) long, centres (K, D) in the points' dtype, inertia Σ min squared distance).

    Raises:
        ValueError: K < 1, fewer points than clusters, or restarts/iters < 1.
    """
    if clusters < 1 or points.shape[0] < clusters:
        raise ValueError(f"k-means needs 1 <= K <= N points, got K = {clusters} and N = {points.shape[0]}")
    if restarts < 1 or iters < 1:
        raise ValueError(f"restarts and iters must be >= 1, got {restarts} and {iters}")
    x = points.detach().to("cpu", torch.float64)
    generator = torch_generator(*(seed if isinstance(seed, tuple) else (seed,)), purpose="kmeans")
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for _ in range(restarts):
        centres = kmeans_plus_plus(x, clusters, generator)
        for _ in range(iters):
            distances = squared_distances(x, centres)  # (N, K)
            labels = distances.argmin(1)
            counts = torch.bincount(labels, minlength=clusters)
            for empty in (counts == 0).nonzero().flatten().tolist():  # relocate: the worst-fit point
                far = int(distances.gather(1, labels[:, None])[:, 0].argmax())
                labels[far] = empty
                distances[far] = 0  # not chosen twice
            moved = cluster_means(x, labels, clusters)
            shift = float((moved - centres).pow(2).sum())
            centres = moved
            if shift <= tol:
                break
        inertia = float((x - centres[labels]).pow(2).sum())  # the last assignment and its means
        if best is None or inertia < best[2]:
            best = (labels, centres, inertia)
    labels, centres, inertia = best
    return labels.to(points.device), centres.to(points.device, points.dtype), inertia


def cluster_means(features: torch.Tensor, labels: torch.Tensor, clusters: int) -> torch.Tensor:
    """(N, C), (N,) -> (K, C): the mean feature of each cluster (the object dictionary)."""
    sums = torch.zeros(clusters, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=clusters).clamp_min(1).to(features.dtype)
    return sums / counts[:, None]
