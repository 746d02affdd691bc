"""Nearest-neighbour copy checks, shared by the protocols that look for real
images in a generator's samples: ``mia`` (a generator fitted on a member half,
the other half unseen) and ``copies`` (the generator as every other protocol
fits it, against the whole train split and the test split).

The rule is the same in both: a sample *copies* a reference set when it lies
nearer its nearest reference image than all but a ``quantile`` (1% by default)
of real images the generator never drew from that set do. Fresh samples from the
data distribution then score about ``quantile``; a set made of the reference
images scores 1. Distances are Euclidean, in float64, computed in fixed chunks
of ``CHUNK`` queries: ``torch.cdist`` takes another arithmetic path for small
chunks (at most 25 rows), so the chunk is a constant, never a batch size a
user sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

CHUNK = 1024
"""Queries per ``torch.cdist`` call: bounds memory (1,024 x 50,000 float64
distances is 400 MB). Changing it may move a distance in its last bits."""


def nearest_distances(queries: torch.Tensor, refs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from each query to its nearest reference, and its index."""
    dists, idx = [], []
    for i in range(0, len(queries), CHUNK):
        d = torch.cdist(queries[i:i + CHUNK].double(), refs.double())
        m = d.min(1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists), torch.cat(idx)


@dataclass(frozen=True)
class CopyCheck:
    """One copy check of samples against a reference set."""

    fraction: float
    """The share of samples nearer a reference image than ``threshold``."""
    threshold: float
    """The ``quantile`` of the unseen images' nearest-reference distances."""
    distances: torch.Tensor
    """Each sample's distance to its nearest reference image."""
    nearest: torch.Tensor
    """The index of that reference image."""
    unseen_distances: torch.Tensor
    """Each unseen image's distance to its nearest reference image."""

    def exact_copies(self, samples: torch.Tensor, references: torch.Tensor) -> int:
        """How many samples (uint8 images) equal their nearest reference image
        bit for bit. Compared as images, not as distance 0: ``torch.cdist``'s
        matrix-product path leaves a rounding residue on identical vectors."""
        return int((samples == references[self.nearest]).flatten(1).all(1).sum())

    def closest_pairs(self, samples: torch.Tensor, references: torch.Tensor, labels: torch.Tensor, count: int,
                      key: str) -> list[dict[str, Any]]:
        """The ``count`` samples nearest a reference image, each with that image
        (under ``key``), the distance and the sample's label: what the
        leaderboard shows to let a reader judge a copy by eye."""
        order = torch.argsort(self.distances)[:count]
        return [{"distance": float(self.distances[i]), "synthetic": samples[i].tolist(),
                 key: references[self.nearest[i]].tolist(), "label": int(labels[i])} for i in order.tolist()]


def copy_check(samples: torch.Tensor, references: torch.Tensor, unseen: torch.Tensor, quantile: float) -> CopyCheck:
    """How many ``samples`` (embedded, ``[N, D]``) sit markedly near a
    ``references`` image: nearer than the ``quantile`` of the nearest-reference
    distances of ``unseen``, real images from the same distribution that are not
    in ``references``. The search runs where the tensors are (a GPU's float64
    is fast enough for paper-sized splits); what it returns is on the CPU."""
    d, idx = nearest_distances(samples, references)
    d_unseen, _ = nearest_distances(unseen, references)
    threshold = float(torch.quantile(d_unseen, quantile))
    return CopyCheck(float((d < threshold).double().mean()), threshold, d.cpu(), idx.cpu(), d_unseen.cpu())
