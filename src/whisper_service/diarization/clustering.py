"""Speaker embeddings into speakers: how many, and who is who.

Spectral clustering on the cosine affinity of the window embeddings, the number of
speakers from the largest eigengap of the normalised Laplacian of a refined affinity
(each row keeps its closest 20 % and damps the rest, as in Wang et al., "Speaker
diarization with LSTM", ICASSP 2018), within ``min_speakers``..``max_speakers``.
Tuned on the shared recordings (docs/benchmarks.md, "Speaker diarization"): windows of
1.5 s, rows refined at the 80th percentile.

A long recording has too many windows for an eigendecomposition (its cost grows with
the cube of the count): past ``MAX_AFFINITY_WINDOWS`` the windows are first grouped by
k-means into that many centroids, which are clustered instead.
"""

from __future__ import annotations

import numpy as np

ROW_PERCENTILE = 0.8
DAMPING = 0.01
MAX_AFFINITY_WINDOWS = 1000


def _affinity(embeddings: np.ndarray) -> np.ndarray:
    similarity: np.ndarray = np.clip(embeddings @ embeddings.T, 0.0, 1.0)
    return similarity


def estimate_speakers(embeddings: np.ndarray, min_speakers: int, max_speakers: int) -> int:
    """The number of speakers, by the largest eigengap, within the bounds."""
    count = len(embeddings)
    high = min(max_speakers, count)
    low = min(min_speakers, high)
    if high <= 1:
        return 1
    refined = _affinity(embeddings)
    thresholds = np.quantile(refined, ROW_PERCENTILE, axis=1, keepdims=True)
    refined = np.where(refined < thresholds, refined * DAMPING, refined)
    refined = np.maximum(refined, refined.T)
    degree = refined.sum(axis=1)
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    laplacian = np.eye(count) - refined * np.outer(scale, scale)
    eigenvalues = np.sort(np.linalg.eigvalsh(laplacian))[: high + 1]
    gaps = np.diff(eigenvalues)  # gaps[k - 1]: the gap after the k-th eigenvalue
    candidates = range(low, high + 1)
    return max(candidates, key=lambda k: gaps[k - 1] if k - 1 < len(gaps) else -np.inf)


def cluster(embeddings: np.ndarray, min_speakers: int, max_speakers: int) -> np.ndarray:
    """A speaker index (0..n-1) per embedding; deterministic for the same input."""
    count = len(embeddings)
    if count == 0:
        return np.zeros(0, dtype=int)
    if count > MAX_AFFINITY_WINDOWS:
        from sklearn.cluster import KMeans

        grouping = KMeans(n_clusters=MAX_AFFINITY_WINDOWS, n_init=1, random_state=0)
        groups = grouping.fit_predict(embeddings)
        centroids = grouping.cluster_centers_
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        labels: np.ndarray = cluster(centroids, min_speakers, max_speakers)[groups]
        return labels
    speakers = estimate_speakers(embeddings, min_speakers, max_speakers)
    if speakers <= 1:
        return np.zeros(count, dtype=int)
    from sklearn.cluster import SpectralClustering

    spectral = SpectralClustering(n_clusters=speakers, affinity="precomputed", random_state=0)
    found: np.ndarray = spectral.fit_predict(_affinity(embeddings))
    return found
