"""``real``: the real train split itself, the oracle row every table is read against.

Under ``replace`` its synthetic set *is* the real train split (same images, same
order). Asked for more than the split holds (scale-up beyond x1) or for single
(label, seed) pairs, it draws real train images of the requested class with
replacement, the draw seeded by the sample's seed alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from synthbench.benchmark.context import FitContext
from synthbench.benchmark.seeding import torch_generator
from synthbench.generators.base import Generator


class RealGenerator(Generator):
    name = "real"
    version = 1
    oracle = True
    needs = "nothing"
    description = "the real train split (oracle reference row)"

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        self._train = ctx.train
        self._by_class = [(ctx.train.labels == c).nonzero().flatten() for c in range(len(ctx.class_names))]
        return super().fit(ctx)

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        out = []
        for label, seed in zip(labels.tolist(), seeds):
            pool = self._by_class[label]
            pick = torch.randint(len(pool), (1,), generator=torch_generator(seed)).item()
            out.append(self._train.images[pool[pick]])
        return torch.stack(out) if out else self._train.images[:0]
