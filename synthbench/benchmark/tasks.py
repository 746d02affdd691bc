"""Running one task of a plan (``plan.py``) in whatever process an executor put
it in: the same code for ``inline``, worker processes, Ray and SLURM.

A worker rebuilds the grid's context from the task's :class:`Setting` once per
process (the dataset is loaded and its digest checked against the plan's, so a
worker that sees other data fails loudly instead of writing records under the
wrong key), claims the task's lease on the store, does the work unless another
worker finished it meanwhile, and returns a small :class:`TaskResult`. The
record, the fitted weights and the sample pool are on the store; nothing large
travels back.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from synthbench.benchmark import charges
from synthbench.benchmark.cell import Grid, PluginChoice, Status
from synthbench.benchmark.context import FitContext, reference_classifier, reference_classifier_path
from synthbench.benchmark.guard import Guarded
from synthbench.benchmark.lease import LeaseBoard, owner_id
from synthbench.benchmark.plan import Setting, Task, pool_done, task_marker
from synthbench.benchmark.progress import say
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.store import ResultStore
from synthbench.benchmark.atomic import atomic_write_json
from synthbench.benchmark.worklog import log_computed
from synthbench.errors import UserError
from synthbench.plugins import GENERATORS, PROTOCOLS


@dataclass(frozen=True)
class TaskResult:
    """What came of a task: ``computed``, ``cached`` (done before, by this run's
    other workers or an earlier run), ``failed`` (with ``error``) or ``busy``
    (another worker holds it; only when asked not to wait)."""

    key: str
    kind: str
    outcome: str
    error: str | None = None
    seconds: float = 0.0


@dataclass
class _State:
    setting: Setting
    grid: Grid
    store: ResultStore
    samples: SampleCache
    fitted: "OrderedDict[str, Guarded]"
    """Generators this process fitted or loaded, by fit key (the cells of a
    plan come generator by generator)."""


_STATES: "OrderedDict[Setting, _State]" = OrderedDict()
_KEEP_STATES = 4
"""Grids (datasets) a process keeps: a worker sees one or two; a library user
running many grids in one process must not keep every dataset alive."""
_KEEP_FITTED = 2
"""Fitted generators kept per process (the cells of a plan come generator by
generator; an SD pipeline is large)."""


def prime(setting: Setting, grid: Grid) -> None:
    """Give this process a grid already loaded (``inline``: the driver's own,
    which replaces an earlier grid of the same setting: the caller may have
    loaded other data under the same name since)."""
    if setting not in _STATES or _STATES[setting].grid is not grid:
        store = ResultStore(setting.results)
        _STATES[setting] = _State(setting, grid, store, SampleCache(store.cache_dir), OrderedDict())
    _STATES.move_to_end(setting)
    while len(_STATES) > _KEEP_STATES:
        _STATES.popitem(last=False)


def _state(setting: Setting, dataset_digest: str | None, device_type: str | None = None) -> _State:
    if setting not in _STATES:
        from synthbench.benchmark.runner import make_grid

        if setting.threads:
            torch.set_num_threads(setting.threads)
        grid = make_grid({}, {}, setting.dataset, setting.preset, (0,), setting.device, setting.data_root,
                         with_real=False, precision=setting.precision, compile=setting.compile)
        prime(setting, grid)
    state = _STATES[setting]
    if device_type is not None and state.grid.device.type != device_type:
        raise UserError(f"This worker computes on {state.grid.device.type}, but the plan was made for "
                        f"{device_type} (device: {setting.device} resolved on the machine that planned the run). "
                        f"Name the device in the suite (device: cuda or device: cpu) so every machine agrees.")
    if dataset_digest is not None and state.grid.dataset.digest != dataset_digest:
        raise UserError(f"This worker loaded dataset {setting.dataset} with digest {state.grid.dataset.digest[:12]}, "
                        f"but the plan was made with {dataset_digest[:12]}: workers must see the same data as the "
                        f"machine that planned the run. Give every machine the same files (--data-root).")
    return state


def _choice(registry: Any, given: tuple[str, Mapping[str, Any]]) -> PluginChoice:
    name, options = given
    return PluginChoice(name, registry.get(name), dict(options))


def _guarded(state: _State, gen: PluginChoice, overrides: Mapping[str, Any] | None = None) -> Guarded:
    adapter = gen.cls(**{**gen.options, **(overrides or {})})
    return Guarded(adapter, state.setting.adapter_timeout_s, trusted=GENERATORS.origin(gen.name) == "built-in")


def run_task(task: Task, dep_errors: Mapping[str, str] | None = None, wait: bool = True) -> TaskResult:
    """Do ``task`` unless the store already holds its result. ``dep_errors`` are
    the errors of failed tasks it depends on (a cell whose fit failed is recorded
    as failed with that error). With ``wait=False`` a task another worker holds
    returns ``busy`` at once instead of waiting for it."""
    start = time.perf_counter()
    state = _state(task.setting, task.spec.dataset_digest if task.spec is not None else None,
                   task.spec.device_type if task.spec is not None else None)
    board = LeaseBoard(state.store.root / "leases")
    held = None if wait else board.holder(task.key)
    if held is not None and held.get("owner") != owner_id():
        return TaskResult(task.key, task.kind, "busy")
    try:
        outcome, error = {"fit": _fit, "classifier": _classifier, "pool": _pool, "cell": _cell}[task.kind](
            task, state, board, dict(dep_errors or {}))
    except UserError:
        raise
    except Exception as exc:  # a fit or pool that failed: its cells record it
        from synthbench.benchmark.runner import STORAGE_ERRNOS, storage_error

        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:  # the store's problem: every task would fail
            raise storage_error(exc) from exc
        # A cell that gets here has no record (``run_cell`` records every error of the cell itself): the
        # driver counts it failed and the CLI says why (``runner.GridRun``).
        outcome, error = "failed", f"{type(exc).__name__}: {exc}"
        say(f"{task.label}: failed: {error}")
    return TaskResult(task.key, task.kind, outcome, error, time.perf_counter() - start)


def _full_need(task: Task, state: _State) -> Any:
    proto = _choice(PROTOCOLS, task.protocol).instance()
    gen = _choice(GENERATORS, task.generator).instance()
    needs = {need.name: need for need in proto.planned_fits(state.grid.dataset, gen, state.grid.preset)}
    return needs[task.fit]


def _fit(task: Task, state: _State, board: LeaseBoard, dep_errors: dict[str, str]) -> tuple[str, str | None]:
    marker = task_marker(state.store.root, task.key)
    need = _full_need(task, state)
    gen = _choice(GENERATORS, task.generator)
    with board.exclusive(task.key, marker.exists, task=task.label) as mine:
        if not mine:
            return "cached", None
        train = need.train if need.train is not None else state.grid.dataset.train
        say(f"{task.label} ({len(train)} train images, preset {state.grid.preset.name})")
        guarded, cost = _fit_now(state, gen, need.overrides, need.train)
        if need.is_full:
            _remember(state, task.key, guarded)
        _write_marker(marker, {"task": task.label, "fingerprint": guarded.fingerprint(),
                               "cost": {k: round(v, 3) for k, v in cost.items()}})
        _mark_bases_done(state.store.root, task)
        log_computed(state.store.root, "fit", task.key)
    return "computed", None


def _mark_bases_done(root: Path, task: Task) -> None:
    """A fit's deps are the fits it builds on (``plan._base_fit``): it has their
    weights now, trained inside it where their task had not run (its cost is
    then this fit's ``fit_base_s``). Leave each such base a marker without cost,
    so ``status`` and the dry run count it done, never replacing the marker
    (and cost) of a base task that ran."""
    for key in task.deps:
        marker = task_marker(root, key)
        try:
            with open(marker, "x") as fh:
                json.dump({"task": f"trained inside {task.label}", "cost": {}}, fh)
        except FileExistsError:
            pass
        except OSError as exc:
            raise _marker_error(exc, marker) from exc


def _write_marker(marker: Path, content: Mapping[str, Any]) -> None:
    """Write a task's marker (atomically). A marker that cannot be written is a
    problem of the store (``cache/tasks`` a file, a forbidden folder), never of
    the work it marks: the fit, classifier or pool is done and cached, and
    calling it failed would record "fit failed" on every cell that needs it."""
    try:
        atomic_write_json(marker, content)
    except OSError as exc:
        raise _marker_error(exc, marker) from exc


def _marker_error(exc: OSError, marker: Path) -> UserError:
    from synthbench.benchmark.runner import storage_error

    return storage_error(exc, marker, "the task marker (the store's note that shared work is done)")


def _remember(state: _State, key: str, guarded: Guarded) -> None:
    state.fitted[key] = guarded
    state.fitted.move_to_end(key)
    while len(state.fitted) > _KEEP_FITTED:
        state.fitted.popitem(last=False)


def _fitted(task: Task, state: _State) -> tuple[Guarded, dict[str, float]]:
    """The cell's generator fitted on the full train split: this process's own,
    else fitted now, which reads the weights a fit task cached; and the seconds
    that took here (the fit task's own cost is charged through its marker,
    :func:`_claim_shared_cost`)."""
    if task.full_fit in state.fitted:
        state.fitted.move_to_end(task.full_fit)
        return state.fitted[task.full_fit], {"fit_s": 0.0}
    guarded, cost = _fit_now(state, _choice(GENERATORS, task.generator))
    _remember(state, task.full_fit, guarded)
    return guarded, cost


def _fit_now(state: _State, gen: PluginChoice, overrides: Mapping[str, Any] | None = None,
             train: Any = None) -> tuple[Guarded, dict[str, float]]:
    """A fresh instance of ``gen`` (options ``overrides`` replaced) fitted on
    ``train`` (None: the full train split), and the fit's wall seconds by phase
    (``fit_s`` with the training a killed run did before the snapshot it resumed)."""
    guarded = _guarded(state, gen, overrides)
    ctx = FitContext.from_dataset(state.grid.dataset, state.grid.preset, state.grid.device, state.store.cache_dir,
                                  train=train)
    with charges.spent() as cost:  # a fit that went on from a killed run's snapshot costs its training too
        guarded.fitted(ctx)
    return guarded, {"fit_s": cost.seconds, **ctx.cost}


def _classifier(task: Task, state: _State, board: LeaseBoard, dep_errors: dict[str, str]) -> tuple[str, str | None]:
    g = state.grid
    path = reference_classifier_path(g.dataset, g.preset, task.seed, g.device, state.store.cache_dir)
    with board.exclusive(task.key, path.exists, task=task.label) as mine:
        if not mine:
            return "cached", None
        with charges.spent() as cost:  # a killed run's part of the training too
            reference_classifier(g.dataset, g.preset, task.seed, g.device, state.store.cache_dir)
        _write_marker(task_marker(state.store.root, task.key),
                      {"task": task.label, "cost": {"reference_s": round(cost.seconds, 3)}})
    return "computed", None


def _claimed_by(claim: Path, cell_key: str) -> bool:
    """Whether the cost claim file ``claim`` names ``cell_key``: made now
    (``O_EXCL``: of two cells, one), or by the same cell before (a resumed
    run). A claim a full disk cut short is removed before the error goes on:
    an empty one would name no cell, and no record would ever take the cost."""
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            return claim.read_text().strip() == cell_key
        except OSError:
            return False
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(cell_key + "\n")
    except OSError:
        claim.unlink(missing_ok=True)
        raise
    return True


def _claim_shared_cost(root: str | Path, deps: tuple[str, ...], cell_key: str,
                       bases: tuple[str, ...] = ()) -> tuple[dict[str, float], int]:
    """The cost of the shared work (fits, reference classifiers, sample pools)
    that the tasks ``deps`` did and that no record carries yet, claimed for the
    cell ``cell_key``: each finished task's marker is charged to exactly one
    record, whichever process or machine did the work and whether or not the
    worker that did it lived to run a cell. A claim is a file created
    exclusively next to the marker, so two workers never both take it; it names
    the cell, so a cell run again after a crash before its record landed takes
    the cost again instead of losing it.

    A fit among ``bases`` (one the generator's fit builds on) is charged as its
    ``fit_s``, also kept as ``fit_base_s``: the dry run estimates the two fits
    apart (``plan.comparable_costs``).

    Returns the seconds by phase, and the number of images of the sample pools
    claimed (0 when none): a pool's cost grows with its size, which the suite
    sets (x10 with ``scaleup``, x1 without), so the dry run estimates a pool
    per image (``plan.comparable_costs``)."""
    cost: dict[str, float] = {}
    images = 0
    for dep in deps:
        marker = task_marker(root, dep)
        try:
            done = json.loads(marker.read_text())
            shared = done.get("cost") or {}
        except (OSError, ValueError, AttributeError):
            continue  # not finished (or not a task that leaves a marker): nothing to charge
        claim = marker.with_suffix(".charged")
        try:
            if not _claimed_by(claim, cell_key):
                continue
        except OSError as exc:  # the marker was read, so its folder is there: the store refuses the claim
            from synthbench.benchmark.runner import storage_error

            raise storage_error(exc, claim, "the cost claim (which cell carries the cost of shared work)") from exc
        if dep in bases:  # a base trained inside the fit (a marker without cost) adds nothing
            base_s = shared.get("fit_s", 0.0)
            shared = {"fit_s": base_s, "fit_base_s": base_s} if base_s else {}
        for phase, seconds in shared.items():
            if isinstance(seconds, (int, float)):
                cost[phase] = cost.get(phase, 0.0) + float(seconds)
        if "pool_s" in shared:  # a marker written before "images" was kept names the size asked for
            n = done.get("images", done.get("n"))
            images += n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0
    return cost, images


def _pool(task: Task, state: _State, board: LeaseBoard, dep_errors: dict[str, str]) -> tuple[str, str | None]:
    if dep_errors:
        return "failed", next(iter(dep_errors.values()))
    marker = task_marker(state.store.root, task.key)
    with board.exclusive(task.key, lambda: pool_done(task, state.store.root), task=task.label) as mine:
        if not mine:
            return "cached", None
        guarded, cost = _fitted(task, state)  # loading the fit here is part of the pool's cost
        start = time.perf_counter()
        labels = state.grid.dataset.train.labels
        limit = guarded.pool_limit(labels)  # a source of fixed images holds so many: its cells draw no more
        images = task.n if limit is None else max(0, min(task.n, limit))
        state.samples.pool(guarded, task.seed, labels, images)
        # The generation seconds of every block no record carries yet, a killed run's included
        # (sample_cache.py); a pool written before blocks kept their seconds: this run's time.
        claimed = state.samples.claim_seconds(guarded, task.seed, labels)
        cost["pool_s"] = time.perf_counter() - start if claimed is None else claimed
        _write_marker(marker, {"task": task.label, "n": task.n, "images": images,
                               "cost": {k: round(v, 3) for k, v in cost.items() if v}})
    return "computed", None


def _cell(task: Task, state: _State, board: LeaseBoard, dep_errors: dict[str, str]) -> tuple[str, str | None]:
    from synthbench.benchmark.runner import STORAGE_ERRNOS, run_cell

    spec, store = task.spec, state.store
    with board.exclusive(task.key, lambda: store.lookup(spec) is not None, task=task.label) as mine:
        if not mine:
            return "cached", None
        protocol = _choice(PROTOCOLS, task.protocol).instance()
        gen = _choice(GENERATORS, task.generator)
        fit_errors = [e for key, e in dep_errors.items() if key.startswith("fit-")]
        fit_error: Exception | None = RuntimeError(f"{gen.name}.fit failed: {fit_errors[0]}") if fit_errors else None
        generator, fit_cost = _guarded(state, gen), {"fit_s": 0.0}
        if fit_error is None and task.full_fit is not None:
            try:
                generator, fit_cost = _fitted(task, state)
            except UserError:
                raise
            except Exception as exc:
                if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
                    raise
                fit_error = RuntimeError(f"{gen.name}.fit failed: {type(exc).__name__}: {exc}")
                fit_error.__cause__ = exc
        shared, pool_images = _claim_shared_cost(store.root, task.deps, task.key, task.bases)
        for phase, seconds in shared.items():
            fit_cost[phase] = fit_cost.get(phase, 0.0) + seconds
        record = run_cell(spec, protocol, generator, state.grid, state.samples, store, fit_cost, fit_error,
                          pool_images=pool_images)
        store.write(record)
        log_computed(store.root, "cell", task.key)
    return ("failed" if record.status is Status.FAILED else "computed"), record.error


PARENT_CHECK_S = 5.0
"""How often a worker process looks whether its driver is still alive."""


def _exit_with_parent(parent: int) -> None:
    """End this worker once its driver is gone (``kill -9`` of ``synthbench
    run``): ``ProcessPoolExecutor``'s workers otherwise finish their task and
    then wait for more forever, each holding its fitted generators (and a CUDA
    context on a GPU machine) while a resumed run starts new ones. A task cut
    short loses nothing: every write is atomic, and the resumed run redoes it."""
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(1)


def worker_init(threads: int | None, gpu_ids: Any = None, env: Mapping[str, str] | None = None,
                parent: int | None = None) -> None:
    """Set up a worker process before its first task: the environment the driver
    passes on (lease TTL, progress), one GPU of the machine's when ``gpu_ids`` (a
    queue) holds some, its CPU thread count, and (``parent``: the driver's pid)
    a watch that ends it when the driver dies."""
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True,
                         name="synthbench-parent-watch").start()
    os.environ.update(env or {})
    if gpu_ids is not None:
        try:
            gpu = gpu_ids.get_nowait()
        except Exception:  # more workers than GPUs: this one sees every GPU and uses the first
            gpu = None
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads:
        torch.set_num_threads(int(threads))
    from synthbench.benchmark import progress

    progress.set_enabled(os.environ.get("SYNTHBENCH_PROGRESS", "1") != "0")
