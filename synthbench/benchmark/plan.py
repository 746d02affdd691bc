"""A grid as a plan: tasks with dependencies, which any executor can run
(``benchmark/executors``), rather than a loop (DESIGN.md section 7).

For each dataset of a suite the plan holds (each cell listed right after the
shared work it needs, generator by generator, seed by seed):

1. **fit** tasks: every fit of a generator that some cell will ask for: the full
   fit, ``mia``'s members-only fit, ``longtail``'s long-tailed and unconditional
   fits (``Protocol.generator_fits``), each once however many protocols want it,
   each after the fit of another generator it builds on (``realfake`` on
   ``edm``'s network: ``Generator.builds_on``);
2. **classifier** tasks: each seed's reference classifier (the judge of synthetic
   samples), for the seeds whose protocols use it;
3. **pool** tasks: each (generator, seed)'s shared synthetic pool at the largest
   size any protocol draws (``Protocol.sample_pool_size``), after its fit;
4. **cell** tasks: one per record, after the fit, classifier and pool it uses.

A generator a suite lists under several option sets (ablation arms) is several
rows: each arm's fits, pools and cells are keyed by its options, and labelled by
the options that differ from the defaults (``PluginChoice.label``).

A task is plain data (names, options, a seed), so it pickles to a worker process,
a Ray task or a SLURM job; the worker rebuilds what it needs from the
:class:`Setting`. Every task is idempotent and claims a lease on the store
(``lease.py``) before computing, so two workers, or two runs on one store, never
do the same work at once; dependencies only order the work, they are not needed
for correctness: a cell whose fit is not cached yet fits (or waits for the worker
fitting) itself.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import torch

from synthbench.benchmark.cache import cache_key, canonical_json
from synthbench.benchmark.cell import CellSpec, Grid, PluginChoice, Record, Status
from synthbench.benchmark.context import fit_data_digest, reference_classifier_path
from synthbench.benchmark.guard import DEFAULT_TIMEOUT_S
from synthbench.benchmark.options import keyed_options
from synthbench.benchmark.store import ResultStore, read_record

KINDS = ("fit", "classifier", "pool", "cell")


@dataclass(frozen=True)
class Setting:
    """What a worker needs to rebuild a grid's context: everything but the
    plugins, as plain values (it is pickled with every task)."""

    dataset: str
    preset: str
    results: str
    device: str = "auto"
    precision: str | None = None
    compile: bool | None = None
    data_root: str | None = None
    threads: int | None = None
    adapter_timeout_s: float | None = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Task:
    """One unit of work. ``key`` names it on the store (its lease, its marker);
    ``deps`` are the keys of the tasks it should run after."""

    kind: str
    key: str
    label: str
    """What a person reads in the plan and the progress lines: plugin names with
    their non-default options (``fit realfake (mmd=false) on digits``), so the
    arms of one generator read apart. Not part of the key."""
    setting: Setting
    generator: tuple[str, dict[str, Any]] | None = None
    protocol: tuple[str, dict[str, Any]] | None = None
    seed: int | None = None
    fit: str | None = None
    """For a fit task: the name of the :class:`GeneratorFit` in ``protocol``'s list."""
    n: int = 0
    """For a pool task: how many images."""
    full_fit: str | None = None
    """For a pool or cell task: the key of its generator's full fit, when it uses one."""
    deps: tuple[str, ...] = ()
    spec: CellSpec | None = field(default=None, compare=False)
    """For a cell task: the cell's spec (its key is the record's)."""
    bases: tuple[str, ...] = ()
    """For a cell task: the keys among ``deps`` of fits its generator's fits
    build on (:meth:`Generator.builds_on`); their cost is the record's ``fit_base_s``."""


@dataclass
class Plan:
    """The tasks of one run, in an order that respects every dependency."""

    tasks: list[Task]
    grids: dict[Setting, Grid] = field(default_factory=dict, repr=False)

    def by_kind(self, kind: str) -> list[Task]:
        return [t for t in self.tasks if t.kind == kind]

    def stages(self) -> list[list[Task]]:
        """The tasks in waves: each wave needs only earlier ones (for executors
        that submit job arrays, such as SLURM)."""
        level: dict[str, int] = {}
        for task in self.tasks:
            level[task.key] = 1 + max((level[d] for d in task.deps if d in level), default=-1)
        waves: list[list[Task]] = [[] for _ in range(1 + max(level.values(), default=-1))]
        for task in self.tasks:
            waves[level[task.key]].append(task)
        return waves


def task_marker(results: str | Path, key: str) -> Path:
    """The file a finished fit or pool task leaves (under the cache: deleting the
    cache deletes the work it records)."""
    return Path(results) / "cache" / "tasks" / f"{key}.json"


def fit_key(grid: Grid, gen: PluginChoice, overrides: dict[str, Any], data_digest: str, threads: int) -> str:
    options = keyed_options(gen.cls.options, {**gen.options, **overrides})
    ident = {"generator": gen.name, "version": gen.cls.version, "options": options, "data": data_digest,
             "preset": grid.preset.as_dict(), "device": grid.device.type, "threads": threads}
    extra = gen.cls.spec_extras({**gen.options, **overrides})
    if extra:  # what the options do not say (a checkpoint's or a samples source's digest); absent: keys as before
        ident["extra"] = extra
    return "fit-" + cache_key(canonical_json(ident))


def classifier_key(grid: Grid, data_digest: str, seed: int, threads: int) -> str:
    """The key of a seed's reference-classifier task: keyed like the weights
    file it computes (``context._classifier_identity``: the preset, the device
    type and the thread count), so that a run at another thread count or on
    another device, which trains another file, has its own marker and its own
    cost claim. (Without the device and threads, a run at 2 threads overwrote
    the 1-thread run's marker, whose ``.charged`` already named a 1-thread
    cell, so the 2-thread training's ``reference_s`` went to no record.)"""
    compute = cache_key(canonical_json({"preset": grid.preset.as_dict(), "device": grid.device.type,
                                        "threads": threads}))
    return f"classifier-{data_digest[:12]}-{compute[:12]}-s{seed}"


def build_plan(grids: Iterable[tuple[Setting, Grid]]) -> Plan:
    """Every task of the grids (see the module docstring), deduplicated by key."""
    plan = Plan([])
    seen: set[str] = set()

    def add(task: Task) -> None:
        if task.key not in seen:
            seen.add(task.key)
            plan.tasks.append(task)

    fits, classifiers, pools, cells = [], [], [], []
    order: dict[str, tuple[int, int, int, int]] = {}  # cell key -> (grid, generator row, seed, protocol)
    for g_index, (setting, grid) in enumerate(grids):
        plan.grids[setting] = grid
        ds = grid.dataset
        threads = setting.threads or torch.get_num_threads()
        for p_index, proto in enumerate(grid.protocols):
            protocol = proto.instance()
            for r_index, gen in enumerate(grid.generators):
                generator = gen.instance()
                unsupported = protocol.unsupported_reason(generator) is not None
                fit_keys: dict[str, str] = {}
                base_keys: dict[str, str] = {}  # need name -> the key of the fit it builds on
                if not unsupported:
                    for need in protocol.planned_fits(ds, generator, grid.preset):
                        key = fit_key(grid, gen, need.overrides, fit_data_digest(ds, need.train), threads)
                        fit_keys[need.name] = key
                        base = _base_fit(setting, grid, gen, proto, protocol, need.name, threads)
                        if base is not None:
                            fits.append(base)
                            base_keys[need.name] = base.key
                        what = "" if need.is_full else f" ({need.name})"
                        fits.append(Task("fit", key, f"fit {gen.label}{what} on {ds.name}", setting,
                                         (gen.name, gen.options), (proto.name, proto.options), fit=need.name,
                                         deps=tuple(k for k in [base_keys.get(need.name)] if k)))
                pool_n = 0 if unsupported or generator.oracle else protocol.sample_pool_size(len(ds.train),
                                                                                              grid.preset)
                for seed in grid.seeds:
                    deps = []  # each fit after the one it builds on (a cell claims the cost of both)
                    for name in sorted(fit_keys, key=lambda n: n != "full"):
                        deps += [k for k in (base_keys.get(name), fit_keys[name]) if k]
                    if protocol.uses_reference_classifier and not unsupported:
                        ckey = classifier_key(grid, ds.digest, seed, threads)
                        classifiers.append(Task("classifier", ckey, f"reference classifier seed {seed} on {ds.name}",
                                                setting, seed=seed))
                        deps.append(ckey)
                    if pool_n and "full" in fit_keys:
                        pools.append(Task("pool", f"pool-{fit_keys['full']}-s{seed}",
                                          f"{gen.label} samples seed {seed} on {ds.name}", setting,
                                          (gen.name, gen.options), seed=seed, n=pool_n, deps=(fit_keys["full"],),
                                          full_fit=fit_keys["full"]))
                        deps.append(f"pool-{fit_keys['full']}-s{seed}")
                    spec = CellSpec.of(ds, gen, proto, grid.preset, seed, grid.device)
                    order.setdefault(f"cell-{spec.key[:32]}", (g_index, r_index, seed, p_index))
                    cells.append(Task("cell", f"cell-{spec.key[:32]}",
                                      f"{gen.label} x {proto.label} x {ds.name} seed {seed}", setting,
                                      (gen.name, gen.options), (proto.name, proto.options), seed,
                                      deps=tuple(deps), full_fit=fit_keys.get("full"), spec=spec,
                                      bases=tuple(base_keys.values())))
    # a pool wanted at several sizes: the largest one, under one key
    largest: dict[str, Task] = {}
    for task in pools:
        if task.key not in largest or task.n > largest[task.key].n:
            largest[task.key] = task
    # Each cell right after the shared work it needs, generator by generator and seed by seed: records land
    # from the first minutes of a long run (a run stopped early keeps finished rows, not a cache of fits and
    # pools), and workers walking the list in order still spread out (a task another worker holds is put
    # off, with what depends on it).
    shared = {t.key: t for t in fits + classifiers + list(largest.values())}
    for task in sorted(cells, key=lambda t: order[t.key]):
        for dep in task.deps:
            if dep in shared:
                add(shared[dep])
        add(task)
    for task in shared.values():  # shared work no cell needs (none today): still in the plan
        add(task)
    return plan


def _base_fit(setting: Setting, grid: Grid, gen: PluginChoice, proto: PluginChoice, protocol: Any, need: str,
              threads: int) -> Task | None:
    """The fit task of the generator ``gen``'s fit ``need`` starts from
    (:meth:`Generator.builds_on`), keyed as that generator's own fit, so a suite
    listing both fits it once; None when it builds on nothing, or the protocol
    asks no such fit of the base."""
    from synthbench.plugins import GENERATORS

    built = gen.cls.builds_on(dict(gen.options))
    if built is None:
        return None
    name, options = built
    base = PluginChoice.resolve(GENERATORS, name, options, where=f"(the fit {gen.label} builds on)",
                                preset=grid.preset)
    ds = grid.dataset
    needs = {n.name: n for n in protocol.planned_fits(ds, base.instance(), grid.preset)}
    if need not in needs:
        return None
    base_need = needs[need]
    key = fit_key(grid, base, base_need.overrides, fit_data_digest(ds, base_need.train), threads)
    what = "" if base_need.is_full else f" ({need})"
    return Task("fit", key, f"fit {base.label}{what} on {ds.name}", setting, (base.name, base.options),
                (proto.name, proto.options), fit=need)


# --------------------------------------------------------------------------- what is done


def needed_keys(plan: Plan) -> set[str]:
    """Keys of the tasks a run of ``plan`` does: the cells without a finished
    record, and the fits, classifiers and pools those cells depend on. Shared
    work that only finished cells need is not redone, even when its cache was
    deleted: a run, its ``--dry-run`` and ``status`` (:func:`task_states`) all
    read this one rule."""
    return _needed([t for t in plan.tasks if t.kind == "cell"
                    and ResultStore(t.setting.results).lookup(t.spec) is None])


def _needed(unfinished: list[Task]) -> set[str]:
    return {d for t in unfinished for d in t.deps} | {t.key for t in unfinished}


def task_states(plan: Plan, store: ResultStore) -> dict[str, str]:
    """Each task's state, from the store alone, each record read once:
    ``cached``, ``failed`` (a cell whose record is a failure), ``running`` (a
    live lease), ``to run``, or ``not needed`` (shared work no unfinished cell
    depends on, which a run skips: :func:`needed_keys`)."""
    states = {t.key: _stored_state(t, plan.grids[t.setting], store) for t in plan.tasks}
    needed = _needed([t for t in plan.tasks if t.kind == "cell" and states[t.key] != "cached"])
    return {k: "not needed" if s == "to run" and k not in needed else s for k, s in states.items()}


def _stored_state(task: Task, grid: Grid, store: ResultStore) -> str:
    from synthbench.benchmark.lease import LeaseBoard

    if task.kind == "cell":
        path = store.path_for(task.spec)
        if path.exists():
            rec = store.lookup(task.spec)
            if rec is not None:
                return "cached"
            running = LeaseBoard(store.root / "leases").holder(task.key)
            if running:
                return "running"
            try:  # a failed record, or one that is not a record at all (edited, truncated: lookup warned)
                read_record(path)
            except ValueError:
                return "to run"  # no cell failed: a run computes it as if the file were not there
            return "failed"
    elif task.kind == "fit" and task_marker(store.root, task.key).exists():
        return "cached"
    elif task.kind == "classifier":
        if reference_classifier_path(grid.dataset, grid.preset, task.seed, grid.device, store.cache_dir).exists():
            return "cached"
    elif task.kind == "pool" and pool_done(task, store.root):
        return "cached"
    return "running" if LeaseBoard(store.root / "leases").holder(task.key) else "to run"


def pool_done(task: Task, results: str | Path) -> bool:
    """Whether a pool task's marker says its pool holds at least ``task.n``
    images (the pool's file name holds the fitted generator's fingerprint, known
    only after the fit; an earlier, smaller pool is extended, not skipped)."""
    marker = task_marker(results, task.key)
    if not marker.exists():
        return False
    try:
        return int(json.loads(marker.read_text()).get("n", 0)) >= task.n
    except (OSError, ValueError, TypeError, AttributeError):
        return False


@dataclass(frozen=True)
class Estimate:
    """A task's likely seconds, and where the figure comes from: ``scaled_from``
    is None when comparable records of the same dataset give it, else the
    dataset whose records of the same generator were scaled (see
    :func:`estimate_s`)."""
    seconds: float
    scaled_from: str | None = None

    def text(self, unit: Literal["s", "min"] = "s") -> str:
        """The figure in seconds (``s``) or minutes (``min``), with ``(~digits)``
        after one carried over from another dataset: the dry run's table and
        ``status``'s running lines say it the same way."""
        figure = f"{self.seconds:.0f}" if unit == "s" else f"{self.seconds / 60:.0f} min"
        return figure + (f" (~{self.scaled_from})" if self.scaled_from else "")


def _comparable_key(task: Task) -> tuple:
    if task.kind == "cell":
        return ("cell", task.spec.dataset, task.spec.preset["name"], task.generator[0], task.protocol[0])
    if task.kind in ("fit", "pool"):
        return (task.kind, task.setting.dataset, task.setting.preset, task.generator[0])
    return ("classifier", task.setting.dataset, task.setting.preset)


def _scaled(key: tuple, comparable: dict[tuple, list[float]]) -> Estimate | None:
    """The same generator's cost on another dataset, times how much dearer this
    dataset is for the generators measured on both.

    A new row of a grid (ddpm on fashion-mnist, say) has no record of its own to
    estimate from, but the generator usually has records on another dataset at
    the same preset, and other generators have records on both: the median of
    their cost ratios (this dataset over the other, task kind and protocol
    alike) carries the generator's own figure across. Of the other datasets, the
    one with the most such reference generators is used."""
    if len(key) < 4:  # a reference classifier has no generator to carry over
        return None
    kind, dataset, preset, generator, rest = key[0], key[1], key[2], key[3], key[4:]
    best: tuple[int, str, float] | None = None
    for other in sorted({k[1] for k in comparable if k[0] == kind and k[1] != dataset and k[2] == preset}):
        own = comparable.get((kind, other, preset, generator, *rest))
        if not own:
            continue
        ratios = []
        for k, here in comparable.items():
            if k[:3] == (kind, dataset, preset) and k[4:] == rest and k[3] != generator:
                there = comparable.get((kind, other, preset, k[3], *rest))
                if there and statistics.median(there) > 0:
                    ratios.append(statistics.median(here) / statistics.median(there))
        if ratios and (best is None or len(ratios) > best[0]):
            best = (len(ratios), other, statistics.median(own) * statistics.median(ratios))
    return None if best is None else Estimate(best[2], best[1])


def estimate_s(task: Task, comparable: dict[tuple, list[float]]) -> Estimate | None:
    """Seconds a task is likely to take (the median), from the ``cost`` of
    comparable records in the store: a cell from cells of the same dataset,
    preset, generator and protocol; a fit, a pool or a reference classifier from
    the ``fit_s``, ``pool_s`` or ``reference_s`` charged to such cells (a pool
    per image, times its size, where the records name their pool's size:
    ``cost.pool_images``; a fit from the fits that trained, not those that read
    cached weights, less the base a fit trained inside it: ``fit_base_s``).
    Without any, the generator's records on another dataset, scaled
    (:func:`_scaled`). None when neither exists."""
    if task.kind == "pool" and task.n:  # per image where records say their pool's size (a pool is x1 or x10)
        per_image = estimate_for_key(("pool_image", *_comparable_key(task)[1:]), comparable)
        if per_image is not None:
            return Estimate(per_image.seconds * task.n, per_image.scaled_from)
    if task.kind == "fit":  # a task that runs trains: the fits that read cached weights are no guide
        trained = estimate_for_key(("fit_trained", *_comparable_key(task)[1:]), comparable)
        if trained is not None:
            return trained
    return estimate_for_key(_comparable_key(task), comparable)


def estimate_tasks(tasks: Iterable[Task], comparable: dict[tuple, list[float]]) -> dict[str, Estimate | None]:
    """:func:`estimate_s` of each task, keyed by task, with the shared work of
    cells counted once.

    A cell's records are comparable without the work it put in the cache for
    later cells (``shared_s``: ``recon``'s reconstructions, which every seed
    reads; a fit trained inside a cell). Where the row has records on this
    dataset, the first of them did that work and it is cached: no task pays it
    again. For a row new to the dataset (estimated from another dataset), the
    first of its tasks, in plan order, pays it: its estimate is the cells' own
    work plus the shared work, both scaled. A cache deleted since the records
    were written is not seen: the estimate is then too low by that work."""
    out: dict[str, Estimate | None] = {}
    paid: set[tuple] = set()
    for task in tasks:
        est = estimate_s(task, comparable)
        if task.kind == "cell" and est is not None:
            key = _comparable_key(task)
            if key not in comparable and key not in paid:
                shared = estimate_for_key(("cell_shared", *key[1:]), comparable)
                if shared is not None:
                    est = Estimate(est.seconds + shared.seconds, est.scaled_from or shared.scaled_from)
            paid.add(key)
        out[task.key] = est
    return out


def estimate_for_key(key: tuple, comparable: dict[tuple, list[float]]) -> Estimate | None:
    """:func:`estimate_s` for a key of :func:`comparable_costs`."""
    values = comparable.get(key)
    return Estimate(statistics.median(values)) if values else _scaled(key, comparable)


def comparable_costs(records: Iterable[Record]) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = {}
    for rec in records:
        if rec.status is not Status.OK:
            continue
        wall = rec.cost.get("wall_s", {})
        s = rec.spec
        fit_s = float(wall.get("fit_s", 0.0))
        cell = (s.dataset, s.preset.get("name"), s.generator, s.protocol)
        shared = float(wall.get("shared_s", 0.0))  # work later cells read from the cache (CellContext.phase)
        out.setdefault(("cell", *cell), []).append(
            # a resumed cell's whole work (resumed_s), less what later cells read instead of doing
            float(wall.get("cell_s", 0.0)) + float(wall.get("resumed_s", 0.0)) - shared)
        if shared > 1.0:
            out.setdefault(("cell_shared", *cell), []).append(shared)
        own_fit_s = fit_s - float(wall.get("fit_base_s", 0.0))  # a base trained inside is a task of its own
        if own_fit_s > 1.0:
            out.setdefault(("fit", s.dataset, s.preset.get("name"), s.generator), []).append(own_fit_s)
            if any(k.startswith("fit_") and k not in ("fit_s", "fit_base_s") and float(v) > 0
                   for k, v in wall.items()):  # the fit trained here, not read from the weights cache
                out.setdefault(("fit_trained", s.dataset, s.preset.get("name"), s.generator), []).append(own_fit_s)
        if wall.get("pool_s"):
            out.setdefault(("pool", s.dataset, s.preset.get("name"), s.generator), []).append(float(wall["pool_s"]))
            images = rec.cost.get("pool_images")
            if isinstance(images, int) and images > 0:  # records since the size was kept: seconds per image
                out.setdefault(("pool_image", s.dataset, s.preset.get("name"), s.generator), []).append(
                    float(wall["pool_s"]) / images)
        if wall.get("reference_s"):
            out.setdefault(("classifier", s.dataset, s.preset.get("name")), []).append(float(wall["reference_s"]))
    return out
