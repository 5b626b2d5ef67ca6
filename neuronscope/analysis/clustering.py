"""KMeans over the neurons of one layer, each neuron a vector of its activations over a text's tokens."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

SEED = 0
N_INIT = 10


@dataclass(frozen=True)
class NeuronClusters:
    """KMeans result over ``n`` neurons and ``t`` tokens.

    ``labels`` ``[n]``; ``centroids`` ``[k, t]``: mean raw activation of each cluster's neurons per
    token (NaN rows for empty clusters); ``distances`` ``[n]``: each neuron's distance to its own
    cluster centre in the standardised space; ``silhouette`` is None where it is undefined.
    """

    labels: np.ndarray
    centroids: np.ndarray
    distances: np.ndarray
    inertia: float
    silhouette: float | None
    n_iter: int


def standardise(acts: np.ndarray) -> np.ndarray:
    """The neuron vectors ``[neurons, tokens]`` of ``acts`` ``[tokens, neurons]``, z-scored per token.

    Each token's activations are centred and scaled over the neurons, so a token with huge
    activations everywhere (often the first one) does not dominate the distances.
    """
    return StandardScaler().fit_transform(acts.T)


def cluster_neurons(acts: np.ndarray, n_clusters: int, seed: int = SEED, n_init: int = N_INIT) -> NeuronClusters:
    """KMeans (scikit-learn, fixed ``seed``) of the neurons of ``acts`` ``[tokens, neurons]``."""
    vectors = standardise(acts)  # [neurons, tokens]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct neurons than clusters
        kmeans = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init).fit(vectors)
    labels = kmeans.labels_
    distances = np.linalg.norm(vectors - kmeans.cluster_centers_[labels], axis=1)
    centroids = np.full((n_clusters, acts.shape[0]), np.nan)
    for cluster in np.unique(labels):
        centroids[cluster] = acts[:, labels == cluster].mean(axis=1)
    distinct = len(np.unique(labels))
    silhouette = float(silhouette_score(vectors, labels)) if 2 <= distinct < len(labels) else None
    return NeuronClusters(labels, centroids, distances, float(kmeans.inertia_), silhouette, int(kmeans.n_iter_))
