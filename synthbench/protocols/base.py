"""The protocol interface: a dataset, a fitted generator, a preset and a seed in;
metrics (with their uncertainty and direction) and plot-ready details out.
Plugin authors import it from :mod:`synthbench.api`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.metrics import declared_key, metric
from synthbench.benchmark.options import Configurable
from synthbench.benchmark.trainer import Evaluation
from synthbench.errors import Unsupported

__all__ = ["Protocol", "ProtocolResult", "Unsupported"]  # Unsupported: re-exported for one version (errors.py)


@dataclass
class ProtocolResult:
    metrics: dict[str, dict[str, Any]]
    """``{name: {value, stderr, n, higher_is_better}}`` (see ``store.metric``)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Plot-ready data: per-class accuracy, confusion matrix, curves."""


class Protocol(Configurable):
    name: ClassVar[str] = "?"
    version: ClassVar[int] = 1
    """Bump whenever the protocol's numbers change for the same inputs."""
    description: ClassVar[str] = ""
    source: ClassVar[str] = ""
    metrics: ClassVar[dict[str, bool]] = {}
    """Every metric the protocol may report -> higher is better? A name that
    depends on options is a template (``top1_x{m}``, see ``benchmark/metrics.py``)."""
    headline: ClassVar[str] = "top1"
    """The metric the summary table and leaderboard lead with (declared above)."""

    @classmethod
    def declared(cls, name: str) -> str | None:
        """The declared metric or template ``name`` is an instance of, or None."""
        return declared_key(cls.metrics, name)

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
