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

from synthbench.benchmark.cell import (
    CellOutcome,
    CellSpec,
    Grid,
    PluginChoice,
    Record,
    Status,
    choice_label,
)
from synthbench.benchmark.cache import canonical_json
from synthbench.benchmark.charges import Charge, charging
from synthbench.benchmark.context import CellContext
from synthbench.benchmark.datasets import Dataset, load_dataset
from synthbench.benchmark.guard import DEFAULT_TIMEOUT_S
from synthbench.benchmark.options import keyed_options
from synthbench.benchmark.presets import Preset, bf16_instructions, get_preset, run_precision
from synthbench.benchmark.progress import say
from synthbench.benchmark.provenance import device_name, provenance
from synthbench.benchmark.record_schema import check_record
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.store import ResultStore
from synthbench.errors import Unsupported, UserError
from synthbench.plugins import GENERATORS, PROTOCOLS

STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
"""Disk full, quota, read-only, forbidden, failing: a problem of the store, not
of the cell, so every later cell would fail alike and the run stops
(:func:`storage_error`) instead of recording each cell as failed."""

_STORAGE_ADVICE = {
    errno.ENOSPC: "Free disk space on that file system",
    errno.EDQUOT: "Free space within your disk quota (or ask for a larger one)",
    errno.EROFS: "That file system is mounted read-only: give --results a folder on a writable one",
    errno.EACCES: "Fix the permissions of that path (or give --results a folder you can write to)",
    errno.EPERM: "Fix the permissions or ownership of that path (or give --results a folder you own)",
    errno.EIO: "The disk or network file system reported an input/output error: check it (dmesg, the mount) "
               "before trusting files written there",
}


def storage_error(exc: OSError, path: str | Path | None = None, what: str = "the result store's file") -> UserError:
    """The one-paragraph error that stops a run on a problem of the store (a
    full, read-only, forbidden or failing disk, or a path whose folder is a file):
    every later task would fail alike, so the run stops instead of recording
    each cell as failed, and it names the path and what to do. ``path``: the
    file the run meant to write (a marker), when the system's error may name
    another (the folder it could not make)."""
    where = Path(path) if path is not None else Path(exc.filename) if exc.filename else None
    if where is not None and where.name.startswith(".") and where.name.endswith(".tmp"):
        where = where.parent  # an atomic write's temporary file: the folder is what the user can act on
    blocker = _file_in_the_way(where) if where is not None else None
    named = f" {where}" if where is not None else ""
    if blocker is not None:
        why = f"{blocker} is a file, where the store needs a folder. Move that file away"
    else:
        why = f"{exc.strerror or exc}. {_STORAGE_ADVICE.get(exc.errno, 'Fix the cause the system names')}"
    doing = "Cannot write" if path is not None else "A file operation failed on"  # the system's error: read or write
    return UserError(f"{doing} {what}{named}: {why}, then run the same command again: every record already "
                     f"written is kept and the run resumes from there.")


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest folder above ``path`` that exists as something other than a
    folder (a file named ``cache/tasks``), which makes every write under it fail."""
    for parent in path.parents:
        try:
            if parent.exists():
                return None if parent.is_dir() else parent
        except OSError:
            return None
    return None

PluginsGiven = Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]] | None] | Sequence[str] | str
"""Generators (or protocols) as given: a name, a list of names, or a mapping of
names to option mappings, where a name may map to a list of option mappings:
one row each (ablation arms: ``{"realfake": [{}, {"mmd": False}]}``)."""


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but PyTorch sees no CUDA device. "
                        "Use --device cpu (or auto), or install a CUDA build of torch.")
    return torch.device(choice)


def _plugin_rows(given: PluginsGiven) -> list[tuple[str, dict[str, Any]]]:
    """``given`` as (name, options) rows, in order: one per name, or one per
    option mapping of a name that maps to a list of them."""
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, Mapping):
        return [(str(name), {}) for name in given]
    rows = []
    for name, opts in given.items():
        arms = list(opts) if isinstance(opts, (list, tuple)) else [opts]
        if not arms:
            raise UserError(f"{name} maps to an empty list of option mappings: give one mapping per row "
                            f"({{}} for its defaults), or leave the name out.")
        for arm in arms:
            if arm is not None and not isinstance(arm, Mapping):
                raise UserError(f"{name}: {arm!r} is not a mapping of options; give a mapping ({{}} for the "
                                f"defaults) or a list of them, one per row.")
            rows.append((str(name), dict(arm or {})))
    return rows


def _resolve_rows(registry: Any, rows: list[tuple[str, dict[str, Any]]], where: str,
                  preset: Preset) -> tuple[PluginChoice, ...]:
    """Each row looked up and its options checked. A row given twice exactly
    (``-g edm,edm``, or ``real`` named besides the oracle row ``with_real`` adds)
    is kept once; two rows given differently that key the same cells (an option
    set to its default, or differing only in options that do not change outputs)
    are an error, since their records would be one and the same."""
    out: list[PluginChoice] = []
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, opts in rows:
        choice = PluginChoice.resolve(registry, name, opts, where, preset)
        ident = canonical_json([choice.name, keyed_options(choice.cls.options, choice.options)])
        if ident in seen:
            if seen[ident] == (name, opts):
                continue
            first = seen[ident]
            keyed = keyed_options(choice.cls.options, choice.options)
            same = ", ".join(f"{k}={v}" for k, v in sorted(keyed.items())) or "no options"
            raise UserError(f"The {registry.kind} {choice.name}{' ' + where if where else ''} is given twice with "
                            f"options that make the same row ({first[0]} {first[1]} and {name} {opts}): both key "
                            f"their cells as {choice.name} with {same}. An option at its default, or one outside "
                            f"the cell key (one that does not change outputs, or a path that a label stands for), "
                            f"leaves a row as it is. Give each row once, or set an option of the key apart.")
        seen[ident] = (name, opts)
        out.append(choice)
    return tuple(out)


def _choices(generators: PluginsGiven, protocols: PluginsGiven, with_real: bool, where: str,
             preset: Preset) -> tuple[tuple[PluginChoice, ...], tuple[PluginChoice, ...]]:
    gens = _plugin_rows(generators)
    if with_real:  # the oracle row first, as every table is read against it (the caller's options if it gave any)
        real = [row for row in gens if row[0] == "real"] or [("real", {})]
        gens = real + [row for row in gens if row[0] != "real"]
    return (_resolve_rows(GENERATORS, gens, where, preset),
            _resolve_rows(PROTOCOLS, _plugin_rows(protocols), where, preset))


def resolve_grid(dataset: Dataset, generators: PluginsGiven, protocols: PluginsGiven, preset: Preset | str,
                 seeds: Sequence[int], device: torch.device | str = "cpu", with_real: bool = False,
                 where: str = "") -> Grid:
    """A grid on a loaded dataset: names looked up and options checked once
    (every problem is a :class:`UserError`). ``with_real`` puts the ``real``
    oracle row first, as every table is read against it. A name mapped to a
    list of option mappings gives one row per mapping (:data:`PluginsGiven`)."""
    the_preset = get_preset(preset) if isinstance(preset, str) else preset
    gens, protos = _choices(generators, protocols, with_real, where, the_preset)
    dev = resolve_device(device) if isinstance(device, str) else device
    return Grid(dataset, gens, protos, the_preset, tuple(int(s) for s in seeds), dev)


def make_grid(generators: PluginsGiven, protocols: PluginsGiven, dataset: str = "digits", preset: str = "fast",
              seeds: Sequence[int] = (0, 1, 2), device: str = "auto", data_root: str | None = None,
              with_real: bool = True, where: str = "", precision: str | None = None,
              compile: bool | None = None) -> Grid:
    """:func:`resolve_grid` on the dataset named ``dataset``, loaded and capped by
    the preset (its ``precision`` and ``compile`` replaced when given; ``auto``
    is decided for the device here,
    :func:`~synthbench.benchmark.presets.run_precision`); the plugins and
    options are checked before the data is read."""
    dev = resolve_device(device)
    the_preset = get_preset(preset, run_precision(precision, dev), compile)
    if the_preset.precision == "bf16" and not bf16_instructions(dev):
        lacks = ("no native bf16 (a GPU before compute capability 8.0)" if dev.type == "cuda" else
                 "no bf16 instructions (no AVX512-BF16 or AMX on a CPU)")
        say(f"warning: bf16 classifiers on {dev}, which has {lacks}: torch emulates them, and a training step "
            f"ran 10x slower than fp32 on such a CPU. --precision auto picks fp32 here.")
    gens, protos = _choices(generators, protocols, with_real, where, the_preset)
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
    """Compute every cell of one protocol that the store does not hold (inline)."""
    return run_grid(dataclasses.replace(grid, protocols=(proto,)), store, adapter_timeout_s)


def _check_inputs_unchanged(spec: CellSpec, generator: Any) -> None:
    """Refuse a cell whose generator was fitted on other inputs than its key
    names: each fact of ``spec.generator_extra`` (computed when the run was
    planned: a samples source's or a checkpoint's digest) that the fit's
    identity also holds must be the same there. Files changed in between
    (samples edited during a run) would otherwise give records stored under a
    key that names other files."""
    fitted = getattr(generator, "identity", None)
    if not isinstance(fitted, dict):
        return
    changed = [k for k, planned in spec.generator_extra.items() if k in fitted and fitted[k] != planned]
    if changed:
        k = changed[0]
        raise UserError(f"{spec.generator}'s {k} was {spec.generator_extra[k]!r} when this run was planned and "
                        f"{fitted[k]!r} when the generator was fitted: its input files changed during the run. "
                        f"Leave them alone while a run reads them, and run the same command again (every record "
                        f"already written is kept).")


def run_cell(spec: CellSpec, protocol: Any, generator: Any, grid: Grid, samples: SampleCache, store: ResultStore,
              fit_cost: dict[str, float], fit_error: Exception | None = None, pool_images: int = 0) -> Record:
    ctx = CellContext(dataset=grid.dataset, generator=generator, preset=grid.preset, seed=spec.seed,
                      device=grid.device, options=spec.protocol_options, samples=samples, cache_dir=store.cache_dir)
    say(f"{choice_label(spec.generator, getattr(generator, 'options', {}), spec.generator_options)} x "
        f"{choice_label(spec.protocol, getattr(protocol, 'options', {}), spec.protocol_options)} x {spec.dataset}, "
        f"seed {spec.seed}")
    start = time.perf_counter()
    outcome: dict[str, Any] = {}
    charge = Charge(spec.key)
    try:
        if fit_error is not None:
            raise fit_error
        _check_inputs_unchanged(spec, generator)
        with charging(charge):
            result = protocol.checked_result(protocol.run(ctx))  # only declared metrics reach a record
        notes = getattr(generator, "notes", None)
        details = {**result.details, "generator_notes": dict(notes)} if notes else result.details
        outcome = dict(status=Status.OK, metrics=result.metrics, details=details)
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
    for key, seconds in fit_cost.items():  # the plan's fits charged to this cell (in-cell fits are "cell_fit_s")
        timings[key] = timings.get(key, 0.0) + seconds
    if charge.resumed_s:  # what this cell's killed runs computed and kept (charges.py)
        timings["resumed_s"] = charge.resumed_s
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings["cell_s"] = round(time.perf_counter() - start, 3)
    cost: dict[str, Any] = {"wall_s": timings, "device": device_name(grid.device)}
    if pool_images and "pool_s" in timings:  # the size of the pool whose seconds this record carries
        cost["pool_images"] = pool_images
    record = Record(spec=spec, cost=cost,
                    provenance=provenance(grid.device), **outcome)
    try:  # what every reader will check: a record that fails it would be recomputed on every run
        check_record(record.body())
    except ValueError as exc:
        say(f"cell failed: its result is not a valid record ({exc})")
        return dataclasses.replace(record, status=Status.FAILED, metrics={}, details={}, traceback=None,
                                   error=f"protocol {spec.protocol} returned a result that is not a valid record "
                                         f"({exc}); a metric must be a finite number")
    return record


def grid_setting(grid: Grid, store: ResultStore, adapter_timeout_s: float | None = DEFAULT_TIMEOUT_S) -> Any:
    """The :class:`~synthbench.benchmark.plan.Setting` a worker rebuilds ``grid`` from."""
    from synthbench.benchmark.plan import Setting

    return Setting(dataset=grid.dataset.name, preset=grid.preset.name, results=str(store.root),
                   device=str(grid.device), precision=grid.preset.precision, compile=grid.preset.compile,
                   threads=torch.get_num_threads() if grid.device.type == "cpu" else None,
                   adapter_timeout_s=adapter_timeout_s)


def run_grid(grid: Grid, store: ResultStore, adapter_timeout_s: float | None = DEFAULT_TIMEOUT_S,
             executor: Any = None) -> list[CellOutcome]:
    """Every cell of the grid, as a plan of tasks (``plan.py``) run by ``executor``
    (default: inline, in this process); the outcomes of all its cells, protocol by
    protocol, generator by generator, seed by seed."""
    return run_explained([(grid_setting(grid, store, adapter_timeout_s), grid)], executor).cells


@dataclasses.dataclass
class GridRun:
    """The cells of a run, and why each cell that ended without a record has
    none: a record that cannot be written (its path a folder) or a task that
    died outside the cell (a SLURM job past its time) leaves nothing on the
    store to say so, and must not pass for a run with nothing failed."""

    cells: list[CellOutcome]
    errors: dict[str, str]
    """Cell key (``CellSpec.key``) to the error its task reported."""

    def unrecorded(self) -> list[tuple[CellOutcome, str]]:
        """The cells without a record after the run, each with why."""
        return [(c, self.errors.get(c.spec.key, "its task ended without writing a record and reported no error"))
                for c in self.cells if c.record is None]

    def unrecorded_lines(self, store: ResultStore) -> list[str]:
        """One line per cell without a record: which cell, where its record
        belongs, and why (the CLI prints them, ``evaluate`` raises with them)."""
        from synthbench.benchmark.cell import stored_label

        return [f"{stored_label(GENERATORS, c.spec.generator, c.spec.generator_options)} x "
                f"{stored_label(PROTOCOLS, c.spec.protocol, c.spec.protocol_options)} x {c.spec.dataset}, seed "
                f"{c.spec.seed} ({store.path_for(c.spec)}): {why}" for c, why in self.unrecorded()]

    def failed(self) -> list[CellOutcome]:
        """The cells that did not finish: a ``failed`` record, or none at all."""
        return [c for c in self.cells if c.record is None or c.record.status is Status.FAILED]


class _Keeping:
    """An executor that hands every task result on and keeps the cells' errors:
    the driver reads outcomes back from the store, where a cell whose record
    could not be written has nothing to say why."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.errors: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:  # threads, workers: what callers read off the executor
        if name == "inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def run(self, plan: Any, done: Any) -> None:
        cells = {t.key: t.spec.key for t in plan.by_kind("cell")}

        def keep(result: Any) -> None:
            if result.key in cells and result.outcome == "failed":
                self.errors[cells[result.key]] = result.error or "failed"
            done(result)

        self.inner.run(plan, keep)


def run_explained(grids: Sequence[tuple[Any, Grid]], executor: Any = None) -> GridRun:
    """Every cell of ``grids`` (``(Setting, Grid)`` pairs) not in the store yet,
    run on ``executor`` (default inline): each cell's outcome, and the errors of
    the cells that ended without a record (:class:`GridRun`)."""
    from synthbench.benchmark.driver import run_plan
    from synthbench.benchmark.executors import InlineExecutor

    keeping = _Keeping(executor or InlineExecutor())
    cells = run_plan(grids, keeping)
    return GridRun(cells, keeping.errors)


def evaluate(generators: PluginsGiven, protocols: PluginsGiven = "replace", dataset: str = "digits",
             preset: str = "fast", seeds: Sequence[int] = (0, 1, 2), results: str | Path = "runs",
             device: str = "auto", threads: int | None = None, data_root: str | None = None,
             with_real: bool = True, adapter_timeout_s: float | None = DEFAULT_TIMEOUT_S,
             precision: str | None = None, compile: bool | None = None) -> list[Record]:
    """Run a grid from Python and return its records (cached ones included), e.g.
    ``evaluate({"edm": {"churn": 0.5}}, ["replace", "fidelity"], preset="smoke")``.
    The same cells, keys and records as ``synthbench evaluate``; each call into an
    adapter may last ``adapter_timeout_s`` seconds (None: no limit)."""
    if threads:
        torch.set_num_threads(int(threads))
    grid = make_grid(generators, protocols, dataset, preset, seeds, device, data_root, with_real,
                     precision=precision, compile=compile)
    store = ResultStore(results)
    ran = run_explained([(grid_setting(grid, store, adapter_timeout_s), grid)])
    missing = ran.unrecorded_lines(store)
    if missing:  # a list without them would pass for the whole grid
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UserError(f"{len(missing)} of {len(ran.cells)} cells ended without a record: "
                        f"{'; '.join(missing[:5])}{more}. Every "
                        f"record that was written is kept in {store.root}; fix the cause and call evaluate again "
                        f"(finished cells are cache hits).")
    return [c.record for c in ran.cells]
