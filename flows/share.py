"""Weight sharing by k-means with centroid fine-tuning (Deep Compression stage 2).

Per layer, the surviving (unpruned) weights are clustered by scikit-learn's k-means into
`2^b - 1` shared values, with the paper's *linear* initialisation (centroids evenly spaced over
[min, max] of the weights); the code `0` is reserved for the pruned zero, so a layer stores b-bit
indices into a codebook of 2^b entries. Fine-tuning then trains the centroids: each layer's weight
is re-parametrised as `codebook[index] * mask`, so autograd sums the gradients of all weights of a
cluster into its centroid (the paper's Figure 3), and the assignment and the mask never change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn
from torch.nn.utils import parametrize

from flows.prune import prunable_layers

log = logging.getLogger(__name__)


class SharedWeight(nn.Module):
    """Parametrisation weight = centroids[index] where mask, else 0 (centroids are trainable)."""

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.centroids = nn.Parameter(centroids.clone())
        self.register_buffer("index", index)
        self.register_buffer("mask", mask)

    def forward(self, _original: torch.Tensor) -> torch.Tensor:
        return self.centroids[self.index] * self.mask


@dataclass
class LayerSharing:
    name: str
    kind: str
    bits: int
    clusters: int  # nonzero shared values (<= 2^bits - 1)
    active: int
    distinct_values: int  # distinct nonzero values in the final weight (after fine-tuning)


def kmeans_codebook(values: np.ndarray, clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means with linear initialisation; returns (centroids, label per value)."""
    values = values.astype(np.float64).reshape(-1, 1)
    unique = np.unique(values)
    k = int(min(clusters, len(unique)))
    if k <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    if k == len(unique):  # fewer distinct values than clusters: each value is its own centroid
        labels = np.searchsorted(unique, values[:, 0])
        return unique.astype(np.float32), labels.astype(np.int64)
    init = np.linspace(values.min(), values.max(), k).reshape(-1, 1)
    km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=300, tol=1e-8, random_state=seed)
    labels = km.fit_predict(values)
    return km.cluster_centers_[:, 0].astype(np.float32), labels.astype(np.int64)


def attach_sharing(model: nn.Module, bits: dict[str, int], seed: int = 0) -> list[SharedWeight]:
    """Cluster every conv/fc layer (`bits` by kind: {"conv": 8, "fc": 5}) and re-parametrise it."""
    shared = []
    for name, module, kind in prunable_layers(model):
        w = module.weight.detach()
        mask = (w != 0).to(w.dtype)
        nonzero = w[mask.bool()].cpu().numpy()
        b = bits[kind]
        centroids, labels = kmeans_codebook(nonzero, 2**b - 1, seed)
        index = torch.zeros(w.shape, dtype=torch.long)
        index[mask.bool()] = torch.as_tensor(labels)
        if len(centroids) == 0:
            centroids = np.zeros(1, dtype=np.float32)
        param = SharedWeight(torch.as_tensor(centroids), index, mask)
        parametrize.register_parametrization(module, "weight", param, unsafe=True)
        shared.append(param)
        log.info("  %-22s %-4s %d-bit: %d clusters for %d weights", name, kind, b, len(centroids), int(mask.sum()))
    return shared


def centroid_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What fine-tuning trains: the codebooks and the biases (weights themselves are tied)."""
    params = []
    for _, module, _ in prunable_layers(model):
        if parametrize.is_parametrized(module, "weight"):
            params.extend(p.centroids for p in module.parametrizations.weight)
        if module.bias is not None:
            params.append(module.bias)
    return params


def bake_sharing(model: nn.Module, bits: dict[str, int]) -> list[LayerSharing]:
    """Replace the parametrisation by the plain shared weights; report clusters per layer."""
    report = []
    for name, module, kind in prunable_layers(model):
        if not parametrize.is_parametrized(module, "weight"):
            continue
        clusters = int(module.parametrizations.weight[0].centroids.numel())
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        w = module.weight.detach()
        nz = w[w != 0]
        report.append(LayerSharing(name, kind, bits[kind], clusters, int(nz.numel()), int(torch.unique(nz).numel())))
    return report
