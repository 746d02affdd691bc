"""The run grid: generators x seeds x protocols on one dataset and preset, and
the library entry point (:func:`evaluate`) that the CLI, ``regress`` and user
code call.

Each cell is independent and idempotent: its spec hashes to a key; a finished
record with that key is reused (a cache hit), anything else is computed and
written at once, so a killed run resumes where it stopped. A cell that crashes
is recorded as ``failed`` with its error and the grid goes on; errors the user
can fix (:class:`UserError`) stop the run with a message, keeping every record
already written.
"""

from __future__ import annotations

import dataclasses
import errno
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from synthbench.benchmark.atomic import remove_orphans
from synthbench.benchmark.cell import (
    CellOutcome,
    CellSpec,
    Grid,
    PluginChoice,
    Record,
    Status,
)
from synthbench.benchmark.context import CellContext, FitContext
from synthbench.benchmark.datasets import Dataset, load_dataset
from synthbench.benchmark.guard import DEFAULT_TIMEOUT_S, Guarded
from synthbench.benchmark.presets import Preset, get_preset
from synthbench.benchmark.progress import say
from synthbench.benchmark.provenance import device_name, provenance
from synthbench.benchmark.record_schema import check_record
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.store import ResultStore
from synthbench.errors import Unsupported, UserError
from synthbench.plugins import GENERATORS, PROTOCOLS

STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
"""Disk full, quota, read-only: a problem of the store, not of the cell."""

PluginsGiven = Mapping[str, Mapping[str, Any]] | Sequence[str] | str


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but PyTorch sees no CUDA device. "
                        "Use --device cpu (or auto), or install a CUDA build of torch.")
    return torch.device(choice)


def _plugin_map(given: PluginsGiven) -> dict[str, dict[str, Any]]:
    if isinstance(given, str):
        given = [given]
    if isinstance(given, Mapping):
        return {str(name): dict(opts or {}) for name, opts in given.items()}
    return {str(name): {} for name in given}


def _choices(generators: PluginsGiven, protocols: PluginsGiven, with_real: bool,
             where: str) -> tuple[tuple[PluginChoice, ...], tuple[PluginChoice, ...]]:
    gens = {**({"real": {}} if with_real else {}), **_plugin_map(generators)}
    return (tuple(PluginChoice.resolve(GENERATORS, name, opts, where) for name, opts in gens.items()),
            tuple(PluginChoice.resolve(PROTOCOLS, name, opts, where) for name, opts in _plugin_map(protocols).items()))


def resolve_grid(dataset: Dataset, generators: PluginsGiven, protocols: PluginsGiven, preset: Preset | str,
                 seeds: Sequence[int], device: torch.device | str = "cpu", with_real: bool = False,
                 where: str = "") -> Grid:
    """A grid on a loaded dataset: names looked up and options checked once
    (every problem is a :class:`UserError`). ``with_real`` puts the ``real``
    oracle row first, as every table is read against it."""
    gens, protos = _choices(generators, protocols, with_real, where)
    the_preset = get_preset(preset) if isinstance(preset, str) else preset
    dev = resolve_device(device) if isinstance(device, str) else device
    return Grid(dataset, gens, protos, the_preset, tuple(int(s) for s in seeds), dev)


def make_grid(generators: PluginsGiven, protocols: PluginsGiven, dataset: str = "digits", preset: str = "fast",
              seeds: Sequence[int] = (0, 1, 2), device: str = "auto", data_root: str | None = None,
              with_real: bool = True, where: str = "", precision: str | None = None) -> Grid:
    """:func:`resolve_grid` on the dataset named ``dataset``, loaded and capped by
    the preset (its classifier ``precision`` replaced when given); the plugins
    and options are checked before the data is read."""
    gens, protos = _choices(generators, protocols, with_real, where)
    the_preset = get_preset(preset, precision)
    dev = resolve_device(device)
    say(f"loading dataset {dataset}")
    data = load_dataset(dataset, data_root).capped(the_preset.max_train_per_class)
    return Grid(data, gens, protos, the_preset, tuple(int(s) for s in seeds), dev)


def plan(grid: Grid, protocol: PluginChoice, store: ResultStore) -> list[CellOutcome]:
    """Every cell of one protocol with its cached record, if any (nothing is computed)."""
    out = []
    for _, spec in grid.specs(protocol):
        rec = store.lookup(spec)
        out.append(CellOutcome(spec, rec, rec is not None))
    return out


def run_protocol(grid: Grid, proto: PluginChoice, store: ResultStore,
                 adapter_timeout_s: float | None = DEFAULT_TIMEOUT_S) -> list[CellOutcome]:
    """Compute every cell of one protocol that the store does not hold. Adapters
    are called through :class:`~synthbench.benchmark.guard.Guarded` (contract
    checks, ``adapter_timeout_s`` per call, None for no limit)."""
    cells = plan(grid, proto, store)
    if store.root.is_dir() and remove_orphans(store.root):
        say(f"removed temporary files that killed writes left in {store.root}")
    dataset, preset, device = grid.dataset, grid.preset, grid.device
    samples = SampleCache(store.cache_dir)
    protocol = proto.instance()
    for g in grid.generators:
        todo = [c for c in cells if c.spec.generator == g.name and not c.cached]
        if not todo:
            continue
        generator = Guarded(g.instance(), adapter_timeout_s, trusted=GENERATORS.origin(g.name) == "built-in")
        fit_ctx = FitContext.from_dataset(dataset, preset, device, store.cache_dir)
        start = time.perf_counter()
        # A generator the protocol cannot use is recorded as such without being
        # trained first (minutes for stylegan3 under recon, for nothing), and a
        # protocol that fits its own (mia: on the members) skips the full fit
        # (half an hour for the fashion-mnist EDM on one core).
        fit_error: Exception | None = None
        if protocol.unsupported_reason(generator) is None and protocol.needs_fitted_generator():
            say(f"{g.name}: fitting on {dataset.name} ({len(dataset.train)} train images, preset {preset.name})")
            try:
                generator.fitted(fit_ctx)
            except UserError:
                raise
            except Exception as exc:  # every cell of this generator is recorded as failed; the grid goes on
                if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
                    raise
                fit_error = RuntimeError(f"{g.name}.fit failed: {type(exc).__name__}: {exc}")
                fit_error.__cause__ = exc
        # The fit is paid once, charged to the first cell computed.
        fit_cost = {"fit_s": time.perf_counter() - start, **fit_ctx.cost}
        for cell in todo:
            cell.record = _run_cell(cell.spec, protocol, generator, grid, samples, store, fit_cost, fit_error)
            store.write(cell.record)
            fit_cost = {"fit_s": 0.0}
    return cells


def _run_cell(spec: CellSpec, protocol: Any, generator: Any, grid: Grid, samples: SampleCache, store: ResultStore,
              fit_cost: dict[str, float], fit_error: Exception | None = None) -> Record:
    ctx = CellContext(dataset=grid.dataset, generator=generator, preset=grid.preset, seed=spec.seed,
                      device=grid.device, options=spec.protocol_options, samples=samples, cache_dir=store.cache_dir)
    say(f"{spec.generator} x {spec.protocol} x {spec.dataset}, seed {spec.seed}")
    start = time.perf_counter()
    outcome: dict[str, Any] = {}
    try:
        if fit_error is not None:
            raise fit_error
        result = protocol.run(ctx)
        outcome = dict(status=Status.OK, metrics=result.metrics, details=result.details)
    except UserError:
        raise
    except Unsupported as exc:
        outcome = dict(status=Status.UNSUPPORTED, error=str(exc))
        say(f"not supported: {exc}")
    except Exception as exc:  # recorded, never silently dropped
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:  # every later cell would fail alike: stop
            raise
        outcome = dict(status=Status.FAILED, error=f"{type(exc).__name__}: {exc}",
                       traceback=traceback.format_exc(limit=8))
        say(f"cell failed: {outcome['error']}")
    timings = dict(ctx.timings)
    for key, seconds in fit_cost.items():  # added: a protocol's own fits (mia) time a phase "fit_s" too
        timings[key] = timings.get(key, 0.0) + seconds
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings["cell_s"] = round(time.perf_counter() - start, 3)
    record = Record(spec=spec, cost={"wall_s": timings, "device": device_name(grid.device)},
                    provenance=provenance(grid.device), **outcome)
    try:  # what every reader will check: a record that fails it would be recomputed on every run
        check_record(record.body())
    except ValueError as exc:
        say(f"cell failed: its result is not a valid record ({exc})")
        return dataclasses.replace(record, status=Status.FAILED, metrics={}, details={}, traceback=None,
                                   error=f"protocol {spec.protocol} returned a result that is not a valid record "
                                         f"({exc}); a metric must be a finite number")
    return record


def run_grid(grid: Grid, store: ResultStore, adapter_timeout_s: float | None = DEFAULT_TIMEOUT_S) -> list[CellOutcome]:
    """Every protocol of the grid in turn; the outcomes of all its cells."""
    return [cell for proto in grid.protocols for cell in run_protocol(grid, proto, store, adapter_timeout_s)]


def evaluate(generators: PluginsGiven, protocols: PluginsGiven = "replace", dataset: str = "digits",
             preset: str = "fast", seeds: Sequence[int] = (0, 1, 2), results: str | Path = "runs",
             device: str = "auto", threads: int | None = None, data_root: str | None = None,
             with_real: bool = True, adapter_timeout_s: float | None = DEFAULT_TIMEOUT_S,
             precision: str | None = None) -> list[Record]:
    """Run a grid from Python and return its records (cached ones included), e.g.
    ``evaluate({"edm": {"churn": 0.5}}, ["replace", "fidelity"], preset="smoke")``.
    The same cells, keys and records as ``synthbench evaluate``; each call into an
    adapter may last ``adapter_timeout_s`` seconds (None: no limit)."""
    if threads:
        torch.set_num_threads(int(threads))
    grid = make_grid(generators, protocols, dataset, preset, seeds, device, data_root, with_real,
                     precision=precision)
    return [c.record for c in run_grid(grid, ResultStore(results), adapter_timeout_s) if c.record is not None]
