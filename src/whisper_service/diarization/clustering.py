"""Speaker embeddings into speakers: how many, and who is who.

Agglomerative clustering with average linkage on the cosine similarity of the window
embeddings: clusters merge while the two closest are, on average over their windows,
at least ``SAME_SPEAKER_SIMILARITY`` alike. The number of speakers is where that
stops, moved into ``min_speakers``..``max_speakers`` by cutting the same tree at the
bound. Windows shorter than ``MIN_CLUSTER_SECONDS`` (a speech region that short is
one window) join the speaker they are most alike afterwards: alone they made a new
speaker of nearly every "yeah" in a meeting. One threshold on a similarity the
encoder was trained to make meaningful (CAM++ puts one voice's windows at 0.6-0.95
and different voices' near 0) holds from two readers to a four-person meeting, where
an eigengap count did not (docs/benchmarks.md, "Speaker diarization").

A long recording has too many windows for the pairwise distances (their memory grows
with the square of the count): past ``MAX_AFFINITY_WINDOWS`` the windows are first
grouped by k-means into that many centroids, which are clustered instead.
"""

from __future__ import annotations

import numpy as np

SAME_SPEAKER_SIMILARITY = 0.35
MAX_AFFINITY_WINDOWS = 1000
MIN_CLUSTER_SECONDS = 0.75


def cluster(
    embeddings: np.ndarray,
    min_speakers: int,
    max_speakers: int,
    seconds: np.ndarray | None = None,
) -> np.ndarray:
    """A speaker index (0..n-1) per embedding; deterministic for the same input.

    ``seconds``: each embedding's window length. Windows shorter than
    ``MIN_CLUSTER_SECONDS`` join the speaker they are most alike instead of taking
    part (a third of a second of "yeah" is too little voice to found a speaker on),
    unless every window is short.
    """
    if seconds is not None:
        long = seconds >= MIN_CLUSTER_SECONDS
        if long.any() and not long.all():
            joined = np.zeros(len(embeddings), dtype=int)
            joined[long] = cluster(embeddings[long], min_speakers, max_speakers)
            centroids = np.stack([embeddings[long][joined[long] == k].mean(axis=0)
                                  for k in range(joined[long].max() + 1)])  # fmt: skip
            joined[~long] = np.argmax(embeddings[~long] @ centroids.T, axis=1)
            return joined
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
    high = min(max_speakers, count)
    if high <= 1:
        return np.zeros(count, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(embeddings.astype(np.float64), method="average", metric="cosine")
    found = fcluster(tree, t=1.0 - SAME_SPEAKER_SIMILARITY, criterion="distance")
    speakers = len(set(found))
    bounded = min(max(speakers, min(min_speakers, count)), high)
    if bounded != speakers:
        found = fcluster(tree, t=bounded, criterion="maxclust")
    # fcluster numbers from 1; speakers are numbered from 0.
    return np.asarray(found, dtype=int) - 1
