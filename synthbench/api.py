"""synthbench's one public module: everything a plugin author or a library user
needs, and nothing they should not depend on.

Stable interface: the names in ``__all__`` keep their meaning and signatures
within a major version; anything imported from another synthbench module may
change in any release. A third-party generator adapter looks like this::

    from synthbench.api import FitContext, Generator, Option, by_preset

    class MyGenerator(Generator):
        name = "mine"
        version = 1
        options = {"steps": Option.positive_int("steps", "Sampler steps; default: the preset's.",
                                                per_preset=by_preset(smoke=4, fast=50, paper=250))}

        def fit(self, ctx: FitContext) -> dict:
            ...  # train on ctx.train (never the test split); cache weights in ctx.cache
            return {"dataset_digest": ctx.dataset_digest}   # what determines the samples

        def sample(self, labels, seeds):  # uint8 [N, C, H, W]; image i from seeds[i] alone
            ...

and registers under the entry-point group ``synthbench.generators``
(``examples/synthbench-classgauss`` is a complete package). ``synthbench
validate NAME`` runs the conformance checks on it.

From Python, :func:`evaluate` runs a grid and returns its records, the same
cells and records as ``synthbench evaluate``::

    from synthbench.api import evaluate
    records = evaluate({"edm": {}}, ["replace"], dataset="digits", preset="smoke", seeds=[0])
    records[1].metrics["top1"]["value"]
"""

from __future__ import annotations

from synthbench.benchmark.cache import digest
from synthbench.benchmark.cell import CellSpec, Grid, PluginChoice, Record, Status
from synthbench.benchmark.context import CellContext, FitContext, GeneratorFit
from synthbench.benchmark.datasets import Dataset, DatasetLoader, Split
from synthbench.benchmark.metrics import Target, metric
from synthbench.benchmark.options import Option, by_preset, number_text, parse_float_list, parse_int_list
from synthbench.benchmark.presets import Preset
from synthbench.plugins import DATASETS, GENERATORS, PROTOCOLS
from synthbench.benchmark.runner import evaluate, make_grid, run_grid
from synthbench.benchmark.store import ResultStore
from synthbench.leaderboard.export import load_results
from synthbench.errors import Unsupported, UserError
from synthbench.generators.base import Generator
from synthbench.protocols.base import Protocol, ProtocolResult

__all__ = [
    # writing plugins
    "Generator", "FitContext", "Protocol", "CellContext", "ProtocolResult", "GeneratorFit", "metric", "Option",
    "by_preset",
    # a ranking rule beside True / False / None (closest to a value is best), and for list-valued options and
    # the metric names a template stands for (``top1_x{m}`` -> f"top1_x{number_text(m)}")
    "Target", "number_text", "parse_int_list", "parse_float_list",
    "Split", "Dataset", "DatasetLoader", "Preset", "Unsupported", "UserError", "digest",
    # running and reading
    "evaluate", "make_grid", "run_grid", "load_results", "Grid", "PluginChoice", "CellSpec", "Record", "Status", "ResultStore",
    "GENERATORS", "PROTOCOLS", "DATASETS",
]
