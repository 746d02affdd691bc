"""``augment``: real data plus synthetic data.

Two settings, one option each:

- ``ratio`` (default 1.0): the real train split plus ``ratio`` x its size of
  synthetic samples, same class balance. Yamaguchi & Fukuda 2025 (the ACML
  version of arXiv 2311.13090) find that the samples that hurt as a replacement
  help as an augmentation; Real-Fake (Yuan et al. 2024, arXiv 2310.10402,
  Sec. 4.2) reports it as "Real + Syn".
- ``replace_fraction`` (default 0): before adding, replace this fraction of the
  real images, chosen per class with the seed, by synthetic ones of the same
  class (Basu, Karanam & Ramadwar, "Exploring Synthetic Data Generation using
  Diffusion Models", Sec. 4, Table 4: 2..12% replaced). With ``ratio=0`` this is
  exactly Basu et al.'s partial replacement at constant size.

For the ``real`` oracle the "synthetic" images are real train images (the pool
starts with the real split itself), so its row is real data seen twice as
often: the reference a generator's augmentation has to beat.
"""

from __future__ import annotations

from typing import Any

import torch

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.datasets import Split
from synthbench.benchmark.options import Option
from synthbench.benchmark.seeding import torch_generator, derive_seed
from synthbench.protocols.base import Protocol, ProtocolResult


class AugmentProtocol(Protocol):
    name = "augment"
    version = 1
    description = "real + synthetic (ratio), optionally with a fraction of real replaced"
    source = (
              "Yamaguchi & Fukuda, ACML 2025; Basu, Karanam & Ramadwar, Exploring Synthetic Data Generation using "
              "Diffusion Models Table 4; Yuan et al. 2024 (Real-Fake), arXiv 2310.10402 Sec. 4.2")
    metrics = {"top1": True, "worst_class_acc": True}
    uses_reference_classifier = False
    options = {
        "ratio": Option("ratio", 1.0, "Synthetic samples added, as a multiple of the real train size (0..10).",
                        float, check=lambda v: 0 <= v <= 10, check_help="must be between 0 and 10"),
        "replace_fraction": Option("replace_fraction", 0.0, "Fraction of real train images replaced by "
                                   "synthetic ones of the same class (Basu et al. Table 4), 0..1.", float,
                                   check=lambda v: 0 <= v < 1, check_help="must be in [0, 1)"),
    }

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        return int(round(self.opts["ratio"] * n_train)) + int(round(self.opts["replace_fraction"] * n_train))

    def run(self, ctx: CellContext) -> ProtocolResult:
        train, n_add, n_swap = augmented_train_set(ctx, self.opts["ratio"], self.opts["replace_fraction"])
        model = ctx.train(train, desc=f"{ctx.generator.name}/augment seed {ctx.seed}")
        return self.accuracy_result(ctx.evaluate(model), {
            "train_size": len(train), "synthetic_added": n_add, "real_replaced": n_swap})


def augmented_train_set(ctx: CellContext, ratio: float, replace_fraction: float) -> tuple[Split, int, int]:
    """The augment protocol's training set (also rebuilt by ``ood``, whose
    classifiers then come from the classifier cache instead of being retrained)."""
    real = ctx.dataset.train
    n_real = len(real)
    n_add = int(round(ratio * n_real))
    n_swap = int(round(replace_fraction * n_real))
    synth = ctx.synthetic(n_add + n_swap)
    keep = torch.ones(n_real, dtype=torch.bool)
    swapped = Split(synth.images[:0], synth.labels[:0])
    if n_swap:
        # Replace real images class by class so the class balance is unchanged:
        # synthetic image j (label l_j) takes the place of a random real image of l_j.
        gen = torch_generator(derive_seed("augment-replace", ctx.seed))
        order = torch.randperm(n_real, generator=gen)
        swapped = synth.subset(slice(n_add, n_add + n_swap))
        for label in swapped.labels.tolist():
            pos = order[(real.labels[order] == label) & keep[order]][0]
            keep[pos] = False
    added = synth.subset(slice(0, n_add))
    train = Split(torch.cat([real.images[keep], swapped.images, added.images]),
                  torch.cat([real.labels[keep], swapped.labels, added.labels]))
    return train, n_add, n_swap
