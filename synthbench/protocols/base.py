"""The protocol interface: a dataset, a fitted generator, a preset and a seed in;
metrics (with their uncertainty and direction) and plot-ready details out.
Plugin authors import it from :mod:`synthbench.api`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from synthbench.benchmark.context import CellContext, GeneratorFit
from synthbench.benchmark.datasets import Dataset
from synthbench.benchmark.metrics import declared_key, metric
from synthbench.benchmark.options import Configurable
from synthbench.benchmark.trainer import Evaluation
from synthbench.errors import Unsupported

__all__ = ["Protocol", "ProtocolResult", "UndeclaredMetric", "Unsupported"]  # Unsupported: re-exported for one version (errors.py)


@dataclass
class ProtocolResult:
    metrics: dict[str, dict[str, Any]]
    """``{name: {value, stderr, n, higher_is_better}}`` (see ``store.metric``)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Plot-ready data: per-class accuracy, confusion matrix, curves."""


class UndeclaredMetric(ValueError):
    """A protocol's ``run`` returned something other than a :class:`ProtocolResult`
    whose metrics it declares: its cell is ``failed`` with this message instead
    of being stored as a record whose columns no table or ranking rule knows."""


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

    @classmethod
    def spec_extras(cls, options: dict[str, Any], preset: Any = None) -> dict[str, Any]:
        """Facts beyond the options that belong in a cell's key, computed when
        the cell is planned (``preset``: the grid's): the content of a file or
        folder an option names (``ood``'s folders), so that changed files make
        a new cell instead of a cache hit on the old numbers; or a fix that
        moves the numbers of one configuration only, which no published record
        uses, keyed there instead of bumping ``version`` (which would supersede
        every record of the protocol). Empty (the default) leaves the key as it
        was without this hook."""
        return {}

    def needs_fitted_generator(self) -> bool:
        """Whether ``run`` uses the cell's generator fitted on the full train
        split. A protocol that fits its own (``mia`` fits on the members only)
        says False, so the runner does not train a model nobody samples from."""
        return True

    def generator_fits(self, dataset: Dataset, generator: Any, preset: Any = None) -> list[GeneratorFit]:
        """Every fit of the cell's generator (an unfitted instance) that ``run``
        will ask for, so a suite's plan runs each once, as a task before the cells
        (``benchmark/plan.py``). Default: the full fit, when
        :meth:`needs_fitted_generator`. A protocol that fits on a subset
        (``mia``, its members and, with ``shadows_from=generator``, its shadow
        halves) or with other options (``longtail``'s control) lists those; one
        it leaves out is still fitted by ``run`` through ``ctx.fit_generator``,
        only not shared ahead of time. ``preset`` is the grid's, for fits whose
        number depends on a per-preset option (an override written before it
        existed, without the parameter, is still called)."""
        return [GeneratorFit("full")] if self.needs_fitted_generator() else []

    def planned_fits(self, dataset: Dataset, generator: Any, preset: Any) -> list[GeneratorFit]:
        """:meth:`generator_fits` as the planner calls it: with the preset where
        the override takes one."""
        import inspect

        if "preset" in inspect.signature(self.generator_fits).parameters:
            return self.generator_fits(dataset, generator, preset=preset)
        return self.generator_fits(dataset, generator)

    uses_reference_classifier: ClassVar[bool] = True
    """Whether ``run`` asks for ``ctx.reference_classifier()`` (the plan trains it
    once per seed before the cells that need it)."""

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        """How many images of the seed's shared synthetic pool (labels cycling
        through the real train labels) ``run`` draws, so the plan generates the
        largest such pool once before the cells; 0: none."""
        return 0

    def run(self, ctx: CellContext) -> ProtocolResult:
        """The cell's metrics and details. The runner checks what it returns
        (:meth:`checked_result`): a :class:`ProtocolResult` whose every metric
        is declared in :attr:`metrics`, exactly or as an instance of a template."""
        raise NotImplementedError

    def checked_result(self, result: Any) -> ProtocolResult:
        """``result`` if it is a :class:`ProtocolResult` of metrics this protocol
        declares, else :class:`UndeclaredMetric` naming the protocol and what to fix."""
        if not isinstance(result, ProtocolResult) or not isinstance(result.metrics, dict):
            raise UndeclaredMetric(
                f"protocol {self.name}: run() returned {type(result).__name__}; it must return "
                f"synthbench.api.ProtocolResult(metrics={{name: metric(value, stderr, n, higher_is_better)}}, "
                f"details={{...}})")
        undeclared = sorted(m for m in result.metrics if not isinstance(m, str) or self.declared(m) is None)
        if undeclared:
            raise UndeclaredMetric(
                f"protocol {self.name}: run() emitted {', '.join(map(repr, undeclared))}, which its metrics "
                f"({', '.join(self.metrics) or 'none'}) do not declare. Declare every metric it may emit in the "
                f"class's metrics with its ranking rule (a name that depends on options as a template, e.g. "
                f"'top1_x{{m}}'), or stop emitting it; the leaderboard would have no rule to rank it by")
        return result

    def table_metrics(self) -> list[str]:
        """The metrics the summary table shows, in order (options may add some,
        e.g. one accuracy per scale-up multiple). Default: the declared names
        that are not templates; a template (``top1_x{m}``) is a column only
        through the names an override lists for the options (``scaleup``:
        ``top1_x1``, ``top1_x2``...), since a column named after the template
        itself never holds a value."""
        from synthbench.benchmark.metrics import is_template

        return [m for m in self.metrics if not is_template(m)]

    def accuracy_result(self, ev: Evaluation, extra: dict[str, Any] | None = None) -> ProtocolResult:
        """top-1 (binomial stderr over the test set), per-class accuracy and the
        confusion matrix, the common core of the classification protocols."""
        metrics = {"top1": ev.metric()}
        ok = [a for a in ev.per_class if a == a]
        metrics["worst_class_acc"] = metric(min(ok), None, len(ok), True)
        details = {"per_class_accuracy": ev.per_class, "confusion_matrix": ev.confusion}
        details.update(extra or {})
        return ProtocolResult(metrics, details)
