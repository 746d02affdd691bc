"""``replace``: train on synthetic data in place of the real train set.

The synthetic set has the real train split's size and exact class balance (the
pool's labels cycle through the real labels), the classifier is trained with the
preset's recipe and tested on the real test split. With the ``real`` generator
this is the oracle: the real train split itself (seed 000 Table 2, t_re = 0;
seed 004 Table 1, "Real" row)."""

from __future__ import annotations

from synthbench.benchmark.context import CellContext
from synthbench.protocols.base import Protocol, ProtocolResult


class ReplaceProtocol(Protocol):
    name = "replace"
    version = 1
    description = "synthetic train set of the real size and class balance; test on real"
    source = "seed 000 Sec. 4.2; seed 004 Sec. 4.2"
    metrics = {"top1": True, "worst_class_acc": True}

    def run(self, ctx: CellContext) -> ProtocolResult:
        synth = ctx.synthetic(len(ctx.dataset.train))
        model = ctx.train(synth, desc=f"{ctx.generator.name}/replace seed {ctx.seed}")
        return self.accuracy_result(ctx.evaluate(model), {"train_size": len(synth)})
