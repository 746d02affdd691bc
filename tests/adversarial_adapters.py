"""Two generators a benchmark must not reward, built for the leaderboard tests:
``copycat`` returns its training images (a memoriser), ``peeker`` returns test
images it loads itself (the harness never hands an adapter the test split; a
model trained on web-scale data may have seen a public test set all the same).
Both keep the adapter contract: image i depends on labels[i] and seeds[i] only."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from synthbench.api import FitContext, Generator


def _pick(pool: dict[int, torch.Tensor], labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    return torch.stack([pool[int(y)][int(s) % len(pool[int(y)])] for y, s in zip(labels, seeds)])


class CopyCat(Generator):
    name = "copycat"
    description = "returns its training images (a memoriser, for tests)"

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        self.pool = {c: ctx.train.images[ctx.train.labels == c] for c in range(len(ctx.class_names))}
        return {"dataset_digest": ctx.dataset_digest}

    def sample(self, labels, seeds):
        return _pick(self.pool, labels, seeds)


class Peeker(Generator):
    name = "peeker"
    description = "returns test images it loads itself (contaminated, for tests)"

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        from synthbench.benchmark.datasets import load_dataset

        test = load_dataset("digits").test
        self.pool = {c: test.images[test.labels == c] for c in range(len(ctx.class_names))}
        return {"dataset_digest": ctx.dataset_digest, "peeks": "digits test split"}

    def sample(self, labels, seeds):
        return _pick(self.pool, labels, seeds)
