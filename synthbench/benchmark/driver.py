"""From grids to records: build the plan, leave out what the store already
holds, hand the rest to an executor, and read back every cell's record.

The driver is the only process that needs the whole plan; workers get single
tasks. Whatever executor ran them, the records are read from the store
afterwards, so ``inline``, worker processes, Ray and SLURM give the same
outcomes (and the same bytes: the tests compare them).
"""

from __future__ import annotations

from typing import Any, Iterable

from synthbench.benchmark.atomic import remove_orphans
from synthbench.benchmark.cell import CellOutcome, Grid
from synthbench.benchmark.plan import Plan, Setting, Task, build_plan, needed_keys
from synthbench.benchmark.progress import bar, say
from synthbench.benchmark.store import ResultStore, read_record
from synthbench.benchmark.tasks import TaskResult, prime
from synthbench.errors import UserError


def to_run(plan: Plan) -> Plan:
    """The part of ``plan`` not done yet (:func:`~synthbench.benchmark.plan.needed_keys`):
    a suite whose records all exist fits nothing, even when its caches were deleted."""
    needed = needed_keys(plan)
    return Plan([t for t in plan.tasks if t.key in needed], plan.grids)


def dep_errors(task: Task, results: dict[str, TaskResult]) -> dict[str, str]:
    """The errors of the failed tasks ``task`` depends on."""
    return {d: results[d].error or "failed" for d in task.deps if d in results and results[d].outcome == "failed"}


def run_plan(grids: Iterable[tuple[Setting, Grid]], executor: Any = None) -> list[CellOutcome]:
    """Run every cell of ``grids`` not in the store yet on ``executor`` (default
    inline) and return each cell's outcome in plan order."""
    from synthbench.benchmark.executors import InlineExecutor

    grids = list(grids)
    for setting, grid in grids:
        prime(setting, grid)
        root = ResultStore(setting.results).root
        if root.is_dir() and remove_orphans(root):
            say(f"removed temporary files that killed writes left in {root}")
    plan = build_plan(grids)
    todo = to_run(plan)
    results: dict[str, TaskResult] = {}
    if todo.tasks:
        executor = executor or InlineExecutor()
        with bar(total=len(todo.tasks), desc="suite", unit="task") as progress:
            def done(result: TaskResult) -> None:
                if result.outcome == "stopped":  # a worker met an error the user must fix
                    raise UserError(result.error or "a worker stopped the run")
                results[result.key] = result
                progress.update(1)

            executor.run(todo, done)
    return outcomes(plan, results)


def outcomes(plan: Plan, results: dict[str, TaskResult]) -> list[CellOutcome]:
    out = []
    for task in plan.by_kind("cell"):
        store = ResultStore(task.setting.results)
        record = store.lookup(task.spec)
        if record is None and store.path_for(task.spec).exists():  # a failed cell's record
            try:
                record = read_record(store.path_for(task.spec))
            except ValueError:
                record = None
        result = results.get(task.key)
        out.append(CellOutcome(task.spec, record, result is None or result.outcome == "cached"))
    return out


def suite_grids(suite: Any, results: str, threads: int | None = None, adapter_timeout_s: float | None = None,
                data_root: str | None = None) -> list[tuple[Setting, Grid]]:
    """One grid per dataset of a suite (``suite.py``), every plugin and option
    checked before anything is computed, with the :class:`Setting` a worker
    rebuilds it from. ``threads`` (CPU threads per task) overrides the suite's."""
    import torch

    from synthbench.benchmark.guard import DEFAULT_TIMEOUT_S
    from synthbench.benchmark.runner import make_grid

    threads = threads or suite.threads
    if threads:
        torch.set_num_threads(threads)
    root = data_root or suite.data_root
    out = []
    for dataset in suite.datasets:
        grid = make_grid(suite.generators, suite.protocols, dataset, suite.preset, suite.seeds, suite.device, root,
                         with_real=False, where=f"in suite {suite.path}", precision=suite.precision,
                         compile=suite.compile)
        setting = Setting(dataset=dataset, preset=suite.preset, results=str(results), device=suite.device,
                          precision=grid.preset.precision, compile=grid.preset.compile, data_root=root, threads=threads,
                          adapter_timeout_s=DEFAULT_TIMEOUT_S if adapter_timeout_s is None else adapter_timeout_s)
        out.append((setting, grid))
    return out
