"""``scaleup``: synthetic data only, at multiples of the real train size
(Real-Fake, Yuan et al. 2024, arXiv 2310.10402, Sec. 4.3, Table 3 and Fig. 2: x1..x10).

All sizes are nested prefixes of one sample pool of the largest size, drawn
once (the sample cache generates the x10 pool and every smaller set is its
prefix, so the whole curve costs the x10 generation alone). Each multiple gets a
classifier trained with the preset's recipe; the real reference is the
classifier trained on the real split with the same seed (shared with
``real`` x ``replace``). Reported: top-1 per multiple, the curve, and the first
multiple whose accuracy reaches the real one ("not reached" otherwise).

Training budget (option ``budget``, recorded in ``details``):
- ``epochs`` (default): the real run's number of epochs at every multiple, so
  compute grows with the data, as in Real-Fake's scale-up;
- ``steps``: the real run's number of optimisation steps at every multiple,
  i.e. a fixed compute budget.
"""

from __future__ import annotations

from typing import Any

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.options import Option, parse_int_list
from synthbench.benchmark.metrics import metric
from synthbench.protocols.base import Protocol, ProtocolResult


def _valid_multiples(v: tuple[int, ...]) -> bool:
    return all(1 <= m <= 10 for m in v) and len(set(v)) == len(v)


class ScaleUpProtocol(Protocol):
    name = "scaleup"
    version = 1
    description = "synthetic only at x1..x10 the real size: the curve and where it reaches real"
    source = "Yuan et al. 2024 (Real-Fake), arXiv 2310.10402 Sec. 4.3, Table 3, Fig. 2"
    metrics = {"top1_x{m}": True, "top1": True, "best_top1": True, "real_top1": True, "reached_real": True,
               "multiple_reaching_real": False}
    options = {
        "multiples": Option("multiples", (1, 2, 5, 10), "Comma-separated multiples of the real "
                            "train size, each in 1..10.", parse_int_list, check=_valid_multiples,
                            check_help="give distinct integers between 1 and 10, e.g. 1,2,5,10"),
        "budget": Option("budget", "epochs", "epochs: the real run's epochs at every multiple; "
                         "steps: the real run's optimisation steps (fixed compute).", str,
                         choices=("epochs", "steps")),
    }

    def _multiples(self) -> list[int]:
        return sorted(self.opts["multiples"])

    def table_metrics(self) -> list[str]:
        return [f"top1_x{m}" for m in self._multiples()] + ["real_top1", "multiple_reaching_real"]

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        return max(self._multiples()) * n_train

    def run(self, ctx: CellContext) -> ProtocolResult:
        n = len(ctx.dataset.train)
        asked = self._multiples()
        limit = ctx.generator.pool_limit(ctx.dataset.train.labels)  # a fixed set of images holds so many
        mults = [m for m in asked if limit is None or m * n <= limit] or asked[:1]  # x1 short: the pool says so
        note = ("" if mults == asked else
                f"the samples hold {limit} images in the real class balance ({limit / n:.2f}x the real train split): "
                f"x{', x'.join(map(str, sorted(set(asked) - set(mults))))} not run, and no headline top1 (the "
                f"largest multiple)")
        ctx.synthetic(max(mults) * n)  # draw the largest pool once; the rest are its prefixes
        real_ev = ctx.evaluate(ctx.reference_classifier())
        steps_real = ctx.preset.epochs * max(1, n // min(ctx.preset.batch_size, n))
        metrics, curve, per_class = {}, [], {}
        for m in mults:
            split = ctx.synthetic(m * n)
            kwargs = {"max_steps": steps_real} if self.opts["budget"] == "steps" else {}
            model = ctx.train(split, desc=f"{ctx.generator.name}/scaleup x{m} seed {ctx.seed}", **kwargs)
            ev = ctx.evaluate(model)
            metrics[f"top1_x{m}"] = ev.metric()
            curve.append(ev.top1)
            per_class[f"x{m}"] = ev.per_class
        reached = next((m for m, acc in zip(mults, curve) if acc >= real_ev.top1), None)
        if mults[-1] == asked[-1]:
            metrics["top1"] = metrics[f"top1_x{mults[-1]}"]
        metrics["best_top1"] = metric(max(curve), None, real_ev.n, True)
        metrics["real_top1"] = real_ev.metric()
        metrics["reached_real"] = metric(float(reached is not None), None, 1, True)
        if reached is not None:
            metrics["multiple_reaching_real"] = metric(reached, None, 1, False)
        return ProtocolResult(metrics, {
            "curve": {"multiples": mults, "top1": curve, "real_top1": real_ev.top1},
            "reached_real_at": reached if reached is not None else "not reached",
            "budget": self.opts["budget"], "steps_per_classifier": steps_real if self.opts["budget"] == "steps" else None,
            "per_class_accuracy": per_class, "train_sizes": [m * n for m in mults],
            **({"note": note} if note else {}),
        })
