"""KMeans clusters of one layer's neurons over an activation file's tokens, saved as cluster files."""

from __future__ import annotations

import os

import numpy as np
import sklearn

from neuronscope.analysis.clustering import N_INIT, SEED, NeuronClusters, cluster_neurons
from neuronscope.config import Settings
from neuronscope.errors import BadRequest, NotFound
from neuronscope.timestamps import utc_now
from neuronscope.storage.activation_files import ActivationStore
from neuronscope.storage.files import JsonFolder

TOP_NEURONS = 10


def _finite_or_none(values: np.ndarray) -> list[float] | None:
    return None if np.isnan(values).any() else np.round(values, 6).tolist()


class ClusterService:
    def __init__(self, settings: Settings, activations: ActivationStore):
        self.settings = settings
        self.activations = activations
        self.files = JsonFolder(settings.data_dir / "clusters", "cluster")

    def generate(self, activation_file: str, layer_index: int, n_clusters: int) -> dict:
        """Cluster the neurons of ``layer_index`` in ``activation_file`` into ``n_clusters`` groups."""
        meta = self.activations.meta(activation_file)
        if not 0 <= layer_index < meta["n_layers"]:
            raise BadRequest(f"layer_index {layer_index} is out of range: {activation_file} has layers 0..{meta['n_layers'] - 1}")
        acts = self.activations.layers(activation_file, [layer_index])[layer_index]  # [tokens, neurons]
        limit = min(acts.shape[1], self.settings.max_clusters)
        if not 2 <= n_clusters <= limit:
            raise BadRequest(
                f"n_clusters must be between 2 and {limit} (layer {layer_index} has {acts.shape[1]} neurons; "
                f"max_clusters is {self.settings.max_clusters}), got {n_clusters}"
            )
        result = cluster_neurons(acts, n_clusters)
        sizes = np.bincount(result.labels, minlength=n_clusters)
        name = f"{activation_file.removesuffix('.json')}-layer{layer_index}-k{n_clusters}.json"
        data = {
            "activation_file": activation_file,
            "model_name": meta["model_name"],
            "prompt": meta["prompt"],
            "tokens": meta["tokens"],
            "layer_index": layer_index,
            "n_clusters": n_clusters,
            "n_neurons": int(acts.shape[1]),
            "n_tokens": int(acts.shape[0]),
            "method": {
                "algorithm": "k-means (scikit-learn KMeans)",
                "scikit_learn_version": sklearn.__version__,
                "random_state": SEED,
                "n_init": N_INIT,
                "features": "each neuron is the vector of its activations over the file's tokens",
                "standardisation": "per token: z-score over the layer's neurons (StandardScaler)",
            },
            "assignments": result.labels.tolist(),
            "cluster_sizes": sizes.tolist(),
            "centroids": [_finite_or_none(row) for row in result.centroids],
            "clusters": [_summary(result, acts, cluster) for cluster in range(n_clusters)],
            "inertia": result.inertia,
            "silhouette_score": result.silhouette,
            "n_iter": result.n_iter,
            "created_at": utc_now(),
        }
        self.files.write(name, data)
        return {"filename": name, **data}

    def list_files(self) -> dict:
        files = self.files.list()
        return {"files": files, "count": len(files)}

    def read(self, name: str) -> dict:
        return {"filename": name, **self.files.read(name)}

    def latest(self) -> str:
        """The most recently written cluster file; 404 when there is none."""
        files = self.files.list()
        if not files:
            raise NotFound("there are no cluster files yet: POST /api/clusters/generate first")
        return max(files, key=lambda name: (os.stat(self.files.path_for(name)).st_mtime_ns, name))


def _summary(result: NeuronClusters, acts: np.ndarray, cluster: int) -> dict:
    """Cluster ``cluster``'s members and its :data:`TOP_NEURONS` most typical neurons (closest to the
    centroid) with their mean and max activation over the file's tokens (``acts``: ``[tokens, neurons]``)."""
    members = np.nonzero(result.labels == cluster)[0]
    typical = members[np.argsort(result.distances[members], kind="stable")][:TOP_NEURONS]
    return {
        "cluster_id": cluster,
        "size": int(members.size),
        "neuron_indices": members.tolist(),
        "top_neurons": [
            {
                "neuron_index": int(n),
                "distance_to_centroid": round(float(result.distances[n]), 6),
                "mean_activation": round(float(acts[:, n].mean()), 6),
                "max_activation": round(float(acts[:, n].max()), 6),
            }
            for n in typical
        ],
    }
