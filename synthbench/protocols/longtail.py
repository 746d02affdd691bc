"""``longtail``: a long-tailed train split, topped up with synthetic samples
(Basu, Karanam & Ramadwar, "Exploring Synthetic Data Generation using Diffusion Models", Sec. 3).

The long-tailed split keeps N_i = N_max * lambda^(i / (C - 1)) train images of
class i (Basu et al. Eq. 1; lambda = 0.1 by default, option ``lam``), the first
ones of each class in the split's order. Arms, each a classifier trained with the
preset's recipe and tested on the real (balanced) test split:

- ``lt``: the long-tailed split alone;
- ``balanced``: topped up to N_max in every class with conditional samples;
- ``targeted``: conditional samples added only to the chosen classes (option
  ``target_classes``, default the three smallest: on CIFAR-10 horse, ship and
  truck; Basu et al. chose dog, ship and truck): by default each is topped up to N_max (option ``topup=to_max``);
  ``topup=N`` (a positive integer) adds a fixed N synthetic images to each
  chosen class whatever its count, as Basu et al. add 500 a class. Those N are a
  separate draw (its own label stream: N of each chosen class, in the order of
  ``target_classes``), not part of the balanced arm's pool; for the ``real``
  oracle they are the class's real train images the long tail left out, as many
  as there are up to N (``details.targeted_added`` says how many each class got);
- ``control``: the same number of samples as ``targeted`` adds, drawn from an
  unconditional generator and pseudo-labelled by the classifier trained on real
  data (Basu et al. Sec. 3.3.2), so the comparison is at equal size.

The conditional generator is the cell's, fitted on the full train split as in
Basu et al. (option ``fit_on=longtail`` fits it on the long-tailed split instead,
the harder, realistic setting). The control's unconditional generator is the
same adapter made unconditional when it declares how (``Generator.unconditional_options``: ``edm``, ``ddpm``);
otherwise it is the adapter sampled with uniformly random class labels and then
pseudo-labelled, which ``details.control_generator`` says. Either way the
control's generator is fitted on the full train split, also under
``fit_on=longtail``: there it has seen the minority classes' images that the
targeted arm's generator was denied, so read targeted against control at the
default ``fit_on`` (the paper's setting); the other arms hold under both.

An unconditional generator (``conditional=false``) is unsupported: its
pseudo-labelled samples cannot fill the classes the balanced and targeted arms
ask for, and its unconditional form is the control arm of its conditional one.
"""

from __future__ import annotations

from typing import Any

import torch

from synthbench.benchmark.context import CellContext, GeneratorFit
from synthbench.benchmark.datasets import Dataset, Split
from synthbench.benchmark.options import Option, parse_int_list
from synthbench.benchmark.seeding import derive_seed, torch_generator
from synthbench.benchmark.metrics import metric
from synthbench.protocols.base import Protocol, ProtocolResult

ARMS = ("lt", "balanced", "targeted", "control")
TO_MAX = "to_max"


def _parse_topup(text: str) -> str | int:
    """``topup``: ``to_max`` or a positive integer (images added to each target class)."""
    text = str(text).strip()
    return TO_MAX if text == TO_MAX else int(text)


def _valid_topup(v: object) -> bool:
    return v == TO_MAX or (isinstance(v, int) and not isinstance(v, bool) and v > 0)


def _valid_targets(text: str) -> bool:
    """``target_classes``: empty, or distinct class indices (their range is checked against the dataset in ``run``)."""
    if not str(text).strip():
        return True
    try:
        targets = parse_int_list(text)
    except ValueError:
        return False
    return len(set(targets)) == len(targets)


def long_tail_counts(n_max: int, num_classes: int, lam: float) -> list[int]:
    """N_i = N_max * lam^(i / (C - 1)) (Basu et al. Eq. 1), at least one image a class."""
    return [max(1, int(n_max * lam ** (i / (num_classes - 1)))) for i in range(num_classes)]


def long_tail_split(train: Split, counts: list[int]) -> Split:
    keep = torch.zeros(len(train), dtype=torch.bool)
    for c, n in enumerate(counts):
        keep[(train.labels == c).nonzero().flatten()[:n]] = True
    return train.subset(keep)


class LongTailProtocol(Protocol):
    name = "longtail"
    version = 1
    description = "long-tailed split: alone, balanced, targeted top-up, and the unconditional control"
    source = (
              "Basu, Karanam & Ramadwar, Exploring Synthetic Data Generation using Diffusion Models Sec. 3, Eq. 1, "
              "Fig. 2-6")
    metrics = {f"{arm}_{m}": (None if arm == "lt" else True) for arm in ARMS
               for m in ("top1", "worst_class_acc", "target_acc")}
    """``lt_*``: the long-tailed split alone, with no generator: the baseline every row shares, not ranked."""
    headline = "balanced_top1"
    options = {
        "lam": Option("lam", 0.1, "Imbalance factor lambda: the smallest class keeps lambda x N_max.",
                      float, check=lambda v: 0 < v <= 1, check_help="must be in (0, 1]"),
        "target_classes": Option("target_classes", "", "Comma-separated class indices for the targeted "
                                 "arm (empty: the three smallest classes).", str, check=_valid_targets,
                                 check_help="give distinct class indices, e.g. 7,8,9 (empty: the three smallest "
                                            "classes)"),
        "fit_on": Option("fit_on", "full", "Fit the generator on the full train split (Basu et al.) or on "
                         "the long-tailed split.", str, choices=("full", "longtail")),
        "topup": Option("topup", TO_MAX, "Targeted arm: to_max tops each target class up to the largest "
                        "class; an integer N adds N synthetic images to each target class (Basu et al. add "
                        "500).", _parse_topup, check=_valid_topup,
                        check_help="give to_max or a positive integer, e.g. topup=500"),
    }

    def table_metrics(self) -> list[str]:
        return [f"{arm}_top1" for arm in ARMS] + ["targeted_target_acc", "control_target_acc"]

    @staticmethod
    def _unconditional_reason(name: str) -> str:
        return (f"generator {name!r} is unconditional (its samples are pseudo-labelled), so it cannot top up the "
                f"classes longtail asks for: its balanced and targeted arms would hold whatever classes it drew, "
                f"not the long tail's deficits (Basu et al. top up with class-conditional samples, Sec. 3.3.1). "
                f"Run its conditional form; longtail's control arm is already its unconditional one, "
                f"pseudo-labelled (Sec. 3.3.2).")

    def unsupported_reason(self, generator: Any) -> str | None:
        """An adapter made unconditional by an option (``conditional=false``) is
        refused before it is trained; one found unconditional only once fitted
        (e.g. an unconditional pickle) is refused by ``run``."""
        if generator.oracle:
            return None
        if generator.unconditional_by_options(generator.opts):
            return self._unconditional_reason(generator.name)
        return None

    def _targets(self, counts: list[int]) -> list[int]:
        text = str(self.opts["target_classes"]).strip()
        if text:
            from synthbench.errors import UserError

            targets = list(parse_int_list(text))
            if not all(0 <= t < len(counts) for t in targets):
                raise UserError(f"target_classes={text!r}: class indices must be in 0..{len(counts) - 1}.")
            return targets
        return sorted(range(len(counts)), key=lambda c: (counts[c], -c))[:3]

    def _long_tail(self, dataset: Dataset) -> tuple[int, list[int], Split]:
        """n_max, the per-class counts and the long-tailed split of the train split."""
        train = dataset.train
        n_max = int(torch.bincount(train.labels, minlength=dataset.num_classes).min())
        counts = long_tail_counts(n_max, dataset.num_classes, self.opts["lam"])
        return n_max, counts, long_tail_split(train, counts)

    def generator_fits(self, dataset: Dataset, generator: Any, preset: Any = None) -> list[GeneratorFit]:
        """The top-up generator (on the full or the long-tailed split) and the
        unconditional control; the full fit only where ``run`` samples from it
        (the top-up with ``fit_on=full``, or the random-label control of an
        adapter without an unconditional mode)."""
        if generator.oracle:
            return [GeneratorFit("full")]  # its top-up is the real images the tail left out
        overrides = generator.unconditional_options()
        fits = []
        if self.opts["fit_on"] == "full" or overrides is None:
            fits.append(GeneratorFit("full"))
        if self.opts["fit_on"] == "longtail" and generator.refits:
            fits.append(GeneratorFit("longtail", self._long_tail(dataset)[2]))
        elif self.opts["fit_on"] == "longtail" and not any(f.is_full for f in fits):
            fits.append(GeneratorFit("full"))  # fixed images (samples): the top-up is drawn from them as they are
        if overrides is not None:
            fits.append(GeneratorFit("unconditional", None, dict(overrides)))
        return fits

    def run(self, ctx: CellContext) -> ProtocolResult:
        from synthbench.errors import Unsupported

        reason = self.unsupported_reason(ctx.generator)
        if reason is None and not ctx.generator.oracle and not ctx.generator.conditional:
            reason = self._unconditional_reason(ctx.generator.name)
        if reason is not None:
            raise Unsupported(reason)
        train = ctx.dataset.train
        num_classes = ctx.dataset.num_classes
        n_max, counts, lt = self._long_tail(ctx.dataset)
        targets = self._targets(counts)

        generator = ctx.generator
        if self.opts["fit_on"] == "longtail" and not generator.oracle and generator.refits:
            generator = ctx.fit_generator(lt)
        # One pool of conditional samples covers every class's deficit; the
        # targeted arm takes the target classes' part of it.
        deficit = torch.cat([torch.full((n_max - n,), c, dtype=torch.long) for c, n in enumerate(counts)])
        topup = ctx.synthetic(len(deficit), generator=generator, like=Split(train.images[:0], deficit)) \
            if not generator.oracle else self._real_topup(train, counts, n_max)
        if self.opts["topup"] == TO_MAX:
            targeted_add = topup.subset(torch.isin(topup.labels, torch.tensor(targets)))
        else:
            targeted_add = self._fixed_topup(ctx, generator, counts, targets, self.opts["topup"])
        control_add, control_kind = self._control(ctx, len(targeted_add))

        sets = {
            "lt": lt,
            "balanced": Split(torch.cat([lt.images, topup.images]), torch.cat([lt.labels, topup.labels])),
            "targeted": Split(torch.cat([lt.images, targeted_add.images]), torch.cat([lt.labels, targeted_add.labels])),
            "control": Split(torch.cat([lt.images, control_add.images]), torch.cat([lt.labels, control_add.labels])),
        }
        metrics, details = {}, {"per_class_accuracy": {}, "confusion_matrix": {}, "class_counts": {}}
        for arm, split in sets.items():
            ev = ctx.evaluate(ctx.train(split, desc=f"{ctx.generator.name}/longtail {arm} seed {ctx.seed}"))
            metrics[f"{arm}_top1"] = ev.metric()
            metrics[f"{arm}_worst_class_acc"] = metric(min(ev.per_class), None, num_classes, True)
            metrics[f"{arm}_target_acc"] = metric(sum(ev.per_class[t] for t in targets) / len(targets),
                                                  None, len(targets), True)
            details["per_class_accuracy"][arm] = ev.per_class
            details["confusion_matrix"][arm] = ev.confusion
            details["class_counts"][arm] = torch.bincount(split.labels, minlength=num_classes).tolist()
        details.update(lam=self.opts["lam"], n_max=n_max, long_tail_counts=counts, target_classes=targets,
                       control_generator=control_kind, fit_on=self.opts["fit_on"], topup=self.opts["topup"],
                       targeted_added=[int((targeted_add.labels == t).sum()) for t in targets])
        if self.opts["fit_on"] == "longtail" and not ctx.generator.oracle and not ctx.generator.refits:
            # fixed images (samples:) or weights used as they are: nothing is fitted on the long tail, so
            # the record would otherwise claim the harder setting while holding fit_on=full's numbers
            details["note"] = (f"fit_on=longtail did not apply: {ctx.generator.name} is not fitted (fixed images "
                               "or pretrained weights used as they are), so the top-up comes from the same samples "
                               "as under fit_on=full and every arm measures that setting")
        return ProtocolResult(metrics, details)

    @staticmethod
    def _real_topup(train: Split, counts: list[int], n_max: int) -> Split:
        """For the ``real`` oracle: the real images the long tail left out."""
        parts = [(train.labels == c).nonzero().flatten()[n:n_max] for c, n in enumerate(counts)]
        return train.subset(torch.cat(parts))

    @staticmethod
    def _fixed_topup(ctx: CellContext, generator: Any, counts: list[int], targets: list[int], n: int) -> Split:
        """``n`` images of each target class: conditional samples (their own
        label stream), or for the ``real`` oracle the real train images the long
        tail left out of the class, as many as there are up to ``n``."""
        train = ctx.dataset.train
        if generator.oracle:
            parts = [(train.labels == c).nonzero().flatten()[counts[c]:counts[c] + n] for c in targets]
            return train.subset(torch.cat(parts))
        labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c in targets])
        return ctx.synthetic(len(labels), generator=generator, like=Split(train.images[:0], labels))

    def _control(self, ctx: CellContext, n: int) -> tuple[Split, str]:
        """``n`` pseudo-labelled samples from an unconditional generator."""
        generator = ctx.generator
        if n == 0:
            return Split(ctx.dataset.train.images[:0], ctx.dataset.train.labels[:0]), "none"
        overrides = generator.unconditional_options()
        if overrides is not None:
            uncond = ctx.fit_generator(ctx.dataset.train, **overrides)
            placeholder = torch.zeros(n, dtype=torch.long)  # ignored by an unconditional model
            made = ", ".join(f"{k}={v}" for k, v in overrides.items())
            return ctx.synthetic(n, generator=uncond, like=Split(ctx.dataset.train.images[:0], placeholder)), \
                f"{generator.name} with {made}, pseudo-labelled"
        g = torch_generator(derive_seed("longtail-control", ctx.seed))
        random_labels = torch.randint(ctx.dataset.num_classes, (n,), generator=g)
        drawn = ctx.synthetic(n, like=Split(ctx.dataset.train.images[:0], random_labels))
        labels, _ = ctx.pseudo_label(drawn.images)
        return Split(drawn.images, labels), f"{generator.name} with random class labels, pseudo-labelled"
