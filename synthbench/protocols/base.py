"""The protocol interface: a dataset, a fitted generator, a preset and a seed in;
metrics (with their uncertainty and direction) and plot-ready details out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.options import Option
from synthbench.benchmark.store import metric
from synthbench.benchmark.trainer import Evaluation


class Unsupported(Exception):
    """Raised by ``run`` when the generator cannot take part in the protocol (e.g.
    ``recon`` on a generator that cannot reconstruct). The cell is recorded with
    status ``unsupported`` and the reason, which counts as finished."""


@dataclass
class ProtocolResult:
    metrics: dict[str, dict[str, Any]]
    """``{name: {value, stderr, n, higher_is_better}}`` (see ``store.metric``)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Plot-ready data: per-class accuracy, confusion matrix, curves."""


class Protocol:
    name: ClassVar[str] = "?"
    version: ClassVar[int] = 1
    """Bump whenever the protocol's numbers change for the same inputs."""
    description: ClassVar[str] = ""
    source: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    metrics: ClassVar[dict[str, bool]] = {}
    """Every metric the protocol reports -> higher is better?"""
    headline: ClassVar[str] = "top1"
    """The metric the summary table and leaderboard lead with."""

    def __init__(self, **options: Any):
        self.opts = dict(options)

    def unsupported_reason(self, generator: Any) -> str | None:
        """Why ``generator`` (not yet fitted) cannot take part, or None. Asked
        before the generator is trained, so an unsupported cell costs nothing;
        ``run`` raises :class:`Unsupported` with the same reason."""
        return None

    def needs_fitted_generator(self) -> bool:
        """Whether ``run`` uses the cell's generator fitted on the full train
        split. A protocol that fits its own (``mia`` fits on the members only)
        says False, so the runner does not train a model nobody samples from."""
        return True

    def run(self, ctx: CellContext) -> ProtocolResult:
        raise NotImplementedError

    def table_metrics(self) -> list[str]:
        """The metrics the summary table shows, in order (options may add some,
        e.g. one accuracy per scale-up multiple)."""
        return list(self.metrics)

    def accuracy_result(self, ev: Evaluation, extra: dict[str, Any] | None = None) -> ProtocolResult:
        """top-1 (binomial stderr over the test set), per-class accuracy and the
        confusion matrix, the common core of the classification protocols."""
        metrics = {"top1": metric(ev.top1, ev.stderr, ev.n, True)}
        ok = [a for a in ev.per_class if a == a]
        metrics["worst_class_acc"] = metric(min(ok), None, len(ok), True)
        details = {"per_class_accuracy": ev.per_class, "confusion_matrix": ev.confusion}
        details.update(extra or {})
        return ProtocolResult(metrics, details)
