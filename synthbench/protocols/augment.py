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
- ``replace_fractions`` (default empty: off): a list of such fractions, e.g.
  ``0.02,0.04,0.08,0.12`` (Basu et al.'s Table 4 range), in one cell: one more
  classifier per fraction (with the ``ratio`` additions as usual), reported as
  ``top1_r{f}`` (``top1_r0.02``...) and ``details.replace_curve``. The headline
  ``top1`` stays the ``replace_fraction`` classifier. The draws are nested, so
  the curve is paired: the synthetic images are drawn once for the largest
  fraction and a smaller fraction uses their prefix, and the real images it
  replaces are a subset of those a larger one replaces (the same seeded order,
  walked further). A fraction's training set is exactly the one
  ``replace_fraction`` = that fraction would train on.

For the ``real`` oracle the "synthetic" images are real train images (the pool
starts with the real split itself), so its row is real data seen twice as
often: the reference a generator's augmentation has to beat.
"""

from __future__ import annotations

from typing import Any

import torch

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.datasets import Split
from synthbench.benchmark.options import Option, number_text, parse_float_list
from synthbench.benchmark.seeding import torch_generator, derive_seed
from synthbench.protocols.base import Protocol, ProtocolResult


def _parse_fractions(text: str) -> tuple[float, ...]:
    """``replace_fractions``: empty text is the empty list (the curve off)."""
    return () if not str(text).strip() else parse_float_list(text)


class AugmentProtocol(Protocol):
    """Version 2: the ``replace_fractions`` curve (metrics ``top1_r{f}``,
    ``details.replace_curve``); with the existing options (``ratio``,
    ``replace_fraction``) the numbers are unchanged."""

    name = "augment"
    version = 2
    description = "real + synthetic (ratio), optionally with a fraction of real replaced"
    source = (
              "Yamaguchi & Fukuda, ACML 2025; Basu, Karanam & Ramadwar, Exploring Synthetic Data Generation using "
              "Diffusion Models Table 4; Yuan et al. 2024 (Real-Fake), arXiv 2310.10402 Sec. 4.2")
    metrics = {"top1": True, "worst_class_acc": True, "top1_r{f}": True}
    uses_reference_classifier = False
    options = {
        "ratio": Option("ratio", 1.0, "Synthetic samples added, as a multiple of the real train size (0..10).",
                        float, check=lambda v: 0 <= v <= 10, check_help="must be between 0 and 10"),
        "replace_fraction": Option("replace_fraction", 0.0, "Fraction of real train images replaced by "
                                   "synthetic ones of the same class (Basu et al. Table 4), 0..1.", float,
                                   check=lambda v: 0 <= v < 1, check_help="must be in [0, 1)"),
        "replace_fractions": Option("replace_fractions", (), "Comma-separated fractions of real train "
                                    "images replaced, one classifier each (e.g. 0.02,0.04,0.08,0.12, Basu "
                                    "et al. Table 4), reported as top1_r{f}; empty: off.", _parse_fractions,
                                    check=lambda v: all(0 <= f < 1 for f in v) and len(set(v)) == len(v),
                                    check_help="give distinct fractions in [0, 1), e.g. 0.02,0.04,0.08,0.12"),
    }

    def _fractions(self) -> list[float]:
        return sorted(self.opts["replace_fractions"])

    def table_metrics(self) -> list[str]:
        return ["top1", "worst_class_acc"] + [f"top1_r{number_text(f)}" for f in self._fractions()]

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        largest = max([self.opts["replace_fraction"], *self._fractions()])
        return int(round(self.opts["ratio"] * n_train)) + int(round(largest * n_train))

    def run(self, ctx: CellContext) -> ProtocolResult:
        ratio, fractions = self.opts["ratio"], self._fractions()
        train, n_add, n_swap = augmented_train_set(ctx, ratio, self.opts["replace_fraction"])
        model = ctx.train(train, desc=f"{ctx.generator.name}/augment seed {ctx.seed}")
        ev = ctx.evaluate(model)
        result = self.accuracy_result(ev, {
            "train_size": len(train), "synthetic_added": n_add, "real_replaced": n_swap})
        if fractions:
            curve = {"fractions": fractions, "top1": [], "real_replaced": [], "train_size": []}
            for f, (split, _, swapped, _) in zip(fractions, augmented_train_sets(ctx, ratio, fractions)):
                same = split.labels.equal(train.labels) and split.images.equal(train.images)
                f_ev = ev if same else ctx.evaluate(
                    ctx.train(split, desc=f"{ctx.generator.name}/augment r{number_text(f)} seed {ctx.seed}"))
                result.metrics[f"top1_r{number_text(f)}"] = f_ev.metric()
                curve["top1"].append(f_ev.top1)
                curve["real_replaced"].append(swapped)
                curve["train_size"].append(len(split))
            result.details["replace_curve"] = curve
        return result


def augmented_train_sets(ctx: CellContext, ratio: float, fractions: list[float]
                         ) -> list[tuple[Split, int, int, torch.Tensor]]:
    """The augment training sets for each replacement fraction, nested: one draw
    of ``round(ratio * n) + round(max(fractions) * n)`` synthetic images, of which
    the first ``round(ratio * n)`` are added to every set and fraction ``f``
    swaps in the next ``round(f * n)``; real images are replaced walking one
    seeded order, so a smaller fraction's replaced real images are the first of a
    larger one's. Per fraction: (train set, images added, images replaced, the
    indices of the replaced real train images in replacement order)."""
    real = ctx.dataset.train
    n_real = len(real)
    n_add = int(round(ratio * n_real))
    n_swaps = [int(round(f * n_real)) for f in fractions]
    largest = max(n_swaps, default=0)
    synth = ctx.synthetic(n_add + largest)
    replaced: list[int] = []
    if largest:
        # Replace real images class by class so the class balance is unchanged:
        # synthetic image j (label l_j) takes the place of a random real image of l_j.
        keep = torch.ones(n_real, dtype=torch.bool)
        gen = torch_generator(derive_seed("augment-replace", ctx.seed))
        order = torch.randperm(n_real, generator=gen)
        for label in synth.labels[n_add:n_add + largest].tolist():
            left = order[(real.labels[order] == label) & keep[order]]
            if not len(left):  # pseudo-labels (an unconditional generator) need not follow the real labels
                _too_few_to_replace(ctx, synth.labels[n_add:n_add + largest], label, max(fractions))
            pos = left[0]
            keep[pos] = False
            replaced.append(int(pos))
    added = synth.subset(slice(0, n_add))
    out = []
    for n_swap in n_swaps:
        keep = torch.ones(n_real, dtype=torch.bool)
        keep[torch.tensor(replaced[:n_swap], dtype=torch.long)] = False
        swapped = synth.subset(slice(n_add, n_add + n_swap))
        train = Split(torch.cat([real.images[keep], swapped.images, added.images]),
                      torch.cat([real.labels[keep], swapped.labels, added.labels]))
        out.append((train, n_add, n_swap, torch.tensor(replaced[:n_swap], dtype=torch.long)))
    return out


def _too_few_to_replace(ctx: CellContext, labels: torch.Tensor, label: int, fraction: float) -> None:
    """Stop with a clear error: the synthetic images drawn to replace real ones
    hold more of class ``label`` than the real train split does. Only pseudo-labels
    can do that (a conditional pool's labels cycle through the real ones)."""
    from synthbench.errors import UserError

    asked = int((labels == label).sum())
    have = int((ctx.dataset.train.labels == label).sum())
    raise UserError(
        f"augment: replace_fraction {number_text(fraction)} draws {len(labels)} synthetic images to replace real ones "
        f"of their class, {asked} of them labelled {ctx.dataset.class_names[label]!r}, and the real train split "
        f"holds only {have} of that class. {ctx.generator.name}'s samples are pseudo-labelled (an unconditional "
        f"generator), so their classes do not follow the real split's; give a smaller replace_fraction, or run the "
        f"generator's conditional form.")


def augmented_train_set(ctx: CellContext, ratio: float, replace_fraction: float) -> tuple[Split, int, int]:
    """The augment protocol's training set (also rebuilt by ``ood``, whose
    classifiers then come from the classifier cache instead of being retrained):
    (train set, synthetic images added, real images replaced)."""
    train, n_add, n_swap, _ = augmented_train_sets(ctx, ratio, [replace_fraction])[0]
    return train, n_add, n_swap
