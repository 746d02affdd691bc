"""``scaleup``: synthetic data only, at multiples of the real train size
(Yuan, Zhang, Sun, Torr & Zhao 2024, "Real-Fake: Effective Training Data
Synthesis Through Distribution Matching", ICLR 2024, arXiv 2310.10402, Sec. 4.3,
Table 3 and Fig. 2: x1..x10).

Multiples (option ``multiples``, default ``1,2,5,10``) may be fractional, e.g.
``1,1.5,2,2.5,5,10``, each in (0, 10] and distinct: in Real-Fake's Sec. 4.3 and
Fig. 2 synthetic data overtakes real at x2.5 on IN-10 (x6.5 on IN-100), which integer multiples cannot
locate. A multiple ``m`` trains on ``round(m * n)`` synthetic images (``n``: the
real train size; Python's ``round``, half to even; exact for integer ``m``). In
metric names a multiple reads ``1``, ``2.5`` (never ``2.0``): ``top1_x2.5``.

All sizes are nested prefixes of one sample pool of the largest size, drawn
once (the sample cache generates the x10 pool and every smaller set is its
prefix, so the whole curve costs the x10 generation alone). Each multiple gets a
classifier trained with the preset's recipe; the real reference is the
classifier trained on the real split with the same seed (shared with
``real`` x ``replace``). Reported: top-1 per multiple, the curve, the first
multiple whose accuracy reaches the real one (``multiple_reaching_real``; "not
reached" otherwise) and ``crossing_multiple``, where the curve first crosses the
real accuracy, interpolated linearly between the two multiples that bracket
that crossing (:func:`crossing_multiple`).

Training budget (option ``budget``, recorded in ``details``):
- ``epochs`` (default): the real run's number of epochs at every multiple, so
  compute grows with the data, as in Real-Fake's scale-up;
- ``steps``: the real run's number of optimisation steps at every multiple,
  i.e. a fixed compute budget; a step schedule (the paper presets) decays the
  rate at the real run's steps too, so every multiple trains on the real run's
  schedule.
"""

from __future__ import annotations

from typing import Any

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.options import Option, number_text, parse_float_list
from synthbench.benchmark.metrics import metric
from synthbench.benchmark.presets import STEP_DECAY
from synthbench.protocols.base import Protocol, ProtocolResult


def _valid_multiples(v: tuple[float, ...]) -> bool:
    return all(0 < m <= 10 for m in v) and len(set(v)) == len(v)


REACHED_AT_SMALLEST = "reached at the smallest multiple tried"
NOT_REACHED = "not reached"


def crossing_multiple(multiples: list[float], curve: list[float], real: float
                      ) -> tuple[float | None, tuple[float, float] | None, str]:
    """Where ``curve`` (accuracy at each of the increasing ``multiples``) first
    reaches ``real``: ``(multiple, bracket, note)``.

    The first multiple whose accuracy is at or above ``real`` and the one before
    it (below ``real``, since it is the first) bracket the crossing; the multiple
    is their linear interpolation ``m0 + (real - a0) / (a1 - a0) * (m1 - m0)``, so a
    bracket end exactly at ``real`` gives that multiple. A non-monotone curve
    gives its FIRST crossing. When the smallest multiple is already at or above
    ``real`` the crossing lies at or below it: that multiple, no bracket, and the
    note says so. When no multiple reaches ``real``: ``(None, None, "not reached")``."""
    first = next((i for i, acc in enumerate(curve) if acc >= real), None)
    if first is None:
        return None, None, NOT_REACHED
    if first == 0:
        return multiples[0], None, REACHED_AT_SMALLEST
    (m0, a0), (m1, a1) = (multiples[first - 1], curve[first - 1]), (multiples[first], curve[first])
    value = m0 + (real - a0) / (a1 - a0) * (m1 - m0)  # a1 >= real > a0
    return float(value), (m0, m1), f"interpolated between x{number_text(m0)} and x{number_text(m1)}"


class ScaleUpProtocol(Protocol):
    """Version 2: fractional multiples accepted (``1,1.5,2,2.5,...``) and the new
    metric ``crossing_multiple``; every version-1 metric is computed as before
    (same numbers and names for integer multiples)."""

    name = "scaleup"
    version = 2
    description = "synthetic only at x1..x10 the real size: the curve and where it reaches real"
    source = "Yuan et al. 2024 (Real-Fake), arXiv 2310.10402 Sec. 4.3, Table 3, Fig. 2"
    metrics = {"top1_x{m}": True, "top1": True, "best_top1": True, "real_top1": None, "reached_real": True,
               "multiple_reaching_real": False, "crossing_multiple": False}
    # real_top1 is the real reference every row shares (the same classifier, any gap between rows is the
    # CPU it ran on), so it ranks nothing: starring one row's copy of it on the board said nothing of the
    # generator. Records carry higher_is_better=True for it, as they always did; the declared rule decides.
    options = {
        "multiples": Option("multiples", (1, 2, 5, 10), "Comma-separated multiples of the real "
                            "train size, each in (0, 10], fractions allowed (e.g. 1,1.5,2,2.5,5,10); "
                            "a multiple m trains on round(m x the real size) images.", parse_float_list,
                            check=_valid_multiples,
                            check_help="give distinct numbers in (0, 10], e.g. 1,2,5,10 or 1,1.5,2,2.5,5,10"),
        "budget": Option("budget", "epochs", "epochs: the real run's epochs at every multiple; "
                         "steps: the real run's optimisation steps (fixed compute).", str,
                         choices=("epochs", "steps")),
    }

    def _multiples(self) -> list[float]:
        return sorted(self.opts["multiples"])

    def table_metrics(self) -> list[str]:
        return [f"top1_x{number_text(m)}" for m in self._multiples()] + \
            ["real_top1", "multiple_reaching_real", "crossing_multiple"]

    @classmethod
    def spec_extras(cls, options: dict[str, Any], preset: Any = None) -> dict[str, Any]:
        """``budget=steps`` on a step-schedule preset decays the rate at the real
        run's steps; before, past x1 it never decayed. Those cells are
        keyed apart, so a store's cells computed the old way are not cache hits;
        no published record is of that configuration, and every other cell keys
        as before."""
        if options.get("budget") == "steps" and getattr(preset, "lr_schedule", None) in STEP_DECAY:
            return {"lr_decay": "at the real run's steps"}
        return {}

    @staticmethod
    def _size(m: float, n: int) -> int:
        """Images trained on at multiple ``m`` of ``n`` real ones."""
        return int(round(m * n))

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        return self._size(max(self._multiples()), n_train)

    def run(self, ctx: CellContext) -> ProtocolResult:
        n = len(ctx.dataset.train)
        asked = self._multiples()
        if self._size(asked[0], n) < 1:
            from synthbench.errors import UserError

            raise UserError(f"multiples: x{number_text(asked[0])} of the {n} real train images is "
                            f"{self._size(asked[0], n)} images; give multiples of at least {1 / n:.3g}.")
        limit = ctx.generator.pool_limit(ctx.dataset.train.labels)  # a fixed set of images holds so many
        # x1 short: the pool says so
        mults = [m for m in asked if limit is None or self._size(m, n) <= limit] or asked[:1]
        note = ("" if mults == asked else
                f"the samples hold {limit} images in the real class balance ({limit / n:.2f}x the real train split): "
                f"x{', x'.join(map(number_text, sorted(set(asked) - set(mults))))} not run, and no headline top1 (the "
                f"largest multiple)")
        ctx.synthetic(self._size(max(mults), n))  # draw the largest pool once; the rest are its prefixes
        real_ev = ctx.evaluate(ctx.reference_classifier())
        steps_real = ctx.preset.epochs * max(1, n // min(ctx.preset.batch_size, n))
        lr_step_real = ctx.preset.lr_step_epochs * max(1, n // min(ctx.preset.batch_size, n))
        metrics, curve, per_class = {}, [], {}
        for m in mults:
            split = ctx.synthetic(self._size(m, n))
            kwargs = {"max_steps": steps_real} if self.opts["budget"] == "steps" else {}
            if kwargs and ctx.preset.lr_schedule in STEP_DECAY:  # decay at the real run's steps, not its epochs
                kwargs["lr_step"] = lr_step_real
            model = ctx.train(split, desc=f"{ctx.generator.name}/scaleup x{number_text(m)} seed {ctx.seed}",
                              **kwargs)
            ev = ctx.evaluate(model)
            metrics[f"top1_x{number_text(m)}"] = ev.metric()
            curve.append(ev.top1)
            per_class[f"x{number_text(m)}"] = ev.per_class
        reached = next((m for m, acc in zip(mults, curve) if acc >= real_ev.top1), None)
        if mults[-1] == asked[-1]:
            metrics["top1"] = metrics[f"top1_x{number_text(mults[-1])}"]
        metrics["best_top1"] = metric(max(curve), None, real_ev.n, True)
        metrics["real_top1"] = real_ev.metric()
        metrics["reached_real"] = metric(float(reached is not None), None, 1, True)
        if reached is not None:
            metrics["multiple_reaching_real"] = metric(reached, None, 1, False)
        crossing, bracket, how = crossing_multiple(mults, curve, real_ev.top1)
        if crossing is not None:
            metrics["crossing_multiple"] = metric(crossing, None, 1, False)
        return ProtocolResult(metrics, {
            "curve": {"multiples": mults, "top1": curve, "real_top1": real_ev.top1},
            "reached_real_at": reached if reached is not None else NOT_REACHED,
            "crossing": {"multiple": crossing, "bracket": list(bracket) if bracket else None, "note": how},
            "budget": self.opts["budget"], "steps_per_classifier": steps_real if self.opts["budget"] == "steps" else None,
            "per_class_accuracy": per_class, "train_sizes": [self._size(m, n) for m in mults],
            **({"note": note} if note else {}),
        })
