"""``synthbench run SUITE.yaml`` and ``synthbench status SUITE.yaml``: a whole
grid in one command, on any executor, and its progress read from the store."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from synthbench.benchmark.guard import DEFAULT_TIMEOUT_S, timeout_option
from synthbench.errors import UserError

if TYPE_CHECKING:  # the CLI imports the harness lazily, when a command runs
    from synthbench.benchmark.plan import Estimate, Plan
    from synthbench.benchmark.store import ResultStore


def executor_options(fn: Callable) -> Callable:
    """The flags that choose and size an executor (``run`` and ``regress``)."""
    options = [
        click.option("--executor", type=click.Choice(["inline", "processes", "ray", "slurm"]), default="inline",
                     show_default=True, help="Who runs the tasks: this process; worker processes on this machine; "
                                             "a Ray cluster; SLURM job arrays (submitit). ray and slurm need "
                                             "pip install -e \".[cluster]\"."),
        click.option("--workers", type=click.IntRange(1, 4096), default=None, metavar="N",
                     help="processes: worker processes (default: one per GPU, else cores / --threads); ray "
                          "started here: CPUs = N x --threads."),
        click.option("--threads", type=click.IntRange(1, 1024), default=None, metavar="N",
                     help="CPU threads per task (default: the suite's, else cores / workers). Trained weights "
                          "differ between thread counts, so it is part of every cache key."),
        click.option("--ray-address", default=None, metavar="ADDR",
                     help="ray: join a running cluster (auto, or ray://HOST:10001); without it Ray starts here."),
        click.option("--gpus-per-task", type=click.FloatRange(min=0), default=None, metavar="G",
                     help="ray / slurm: GPUs each task asks for (default: 1 when the device is a GPU)."),
        click.option("--slurm-partition", default=None, metavar="NAME", help="slurm: the partition."),
        click.option("--slurm-time", type=click.IntRange(1), default=None, metavar="MINUTES",
                     help="slurm: time limit of each job (default 1440)."),
        click.option("--slurm-array-parallelism", type=click.IntRange(1), default=None, metavar="N",
                     help="slurm: most jobs of one array running at once."),
        click.option("--slurm-cluster", type=click.Choice(["slurm", "local"]), default="slurm", show_default=True,
                     help="slurm: local runs the same job arrays as processes here (submitit's local executor)."),
        click.option("--lease-ttl", type=click.FloatRange(min=3), default=None, metavar="SECONDS",
                     help="A task whose worker stopped touching its claim for this long is taken over "
                          "(default 180; SYNTHBENCH_LEASE_TTL)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_executor_from(params: dict[str, Any], results: str) -> Any:
    """The executor the flags name; the lease TTL goes to workers through the environment."""
    from synthbench.benchmark.executors import make_executor

    if params.get("lease_ttl"):
        os.environ["SYNTHBENCH_LEASE_TTL"] = str(params["lease_ttl"])
    return make_executor(params["executor"], workers=params.get("workers"), threads=params.get("threads"),
                         ray_address=params.get("ray_address"), gpus_per_task=params.get("gpus_per_task"),
                         slurm_partition=params.get("slurm_partition"), slurm_time=params.get("slurm_time"),
                         slurm_array_parallelism=params.get("slurm_array_parallelism"),
                         slurm_cluster=params.get("slurm_cluster"), folder=Path(results) / "submitit")


@click.command(name="run")
@click.argument("suite_file", metavar="SUITE.yaml")
@click.option("--results", default="runs", show_default=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Result store shared by every worker (on a cluster: a shared filesystem).")
@executor_options
@click.option("--data-root", default=None, metavar="DIR", help="Folder holding the datasets' files (offline use).")
@click.option("--adapter-timeout", type=click.FloatRange(min=0), default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
              help="Longest one call into a generator may take; 0: no limit.")
@click.option("--dry-run", is_flag=True, help="Print the plan (each task cached / running / to run / not needed, "
                                              "with an estimated cost); compute nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
def run(suite_file: str, results: str, data_root: str | None, adapter_timeout: float, dry_run: bool, quiet: bool,
        **params: Any) -> None:
    """Run a whole suite: datasets x generators x protocols x seeds.

    The suite expands into a plan (generator fits, reference classifiers, sample
    pools, then cells); tasks already in the store are skipped, the rest run on
    the chosen executor, and every worker meets the others only through the store.
    Prints one table per dataset and protocol.
    """
    from synthbench.benchmark import progress
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.runner import run_explained
    from synthbench.benchmark.suite import load_suite

    if quiet:
        progress.set_enabled(False)
        os.environ["SYNTHBENCH_PROGRESS"] = "0"
    suite = load_suite(suite_file)
    # CPU threads per task: the flag, else the suite's, else the executor's own
    # choice (worker processes split the cores; inline leaves torch's). The plan
    # keys fits by it, so it must be the count the workers will use.
    executor = make_executor_from({**params, "threads": params.get("threads") or suite.threads}, results)
    threads = params.get("threads") or suite.threads or getattr(executor, "threads", None)
    grids = suite_grids(suite, results, threads, timeout_option(adapter_timeout), data_root)
    if dry_run:
        click.echo(plan_text(grids, results))
        return
    _writable(results)
    try:
        ran = run_explained(grids, executor)
        cells = ran.cells
    except KeyboardInterrupt:
        raise UserError(f"Interrupted. Every finished cell is kept in {results}/records; run the same command "
                        f"again to resume.") from None
    _print_tables(grids, cells)
    click.echo(f"records: {Path(results) / 'records'}")
    from synthbench.benchmark.store import ResultStore
    from synthbench.cli import copy_notes, failure_lines, next_steps, thread_notes

    for line in copy_notes(cells):
        click.echo(line)
    from torch import get_num_threads

    from synthbench.benchmark.executors import InlineExecutor

    for line in thread_notes(cells, threads or (get_num_threads() if isinstance(executor, InlineExecutor) else None)):
        click.echo(line, err=True)
    click.echo(next_steps(suite.preset, results))
    lines = failure_lines(ran, ResultStore(results))
    if lines:
        for line in lines:
            click.echo(line, err=True)
        sys.exit(1)


def _writable(results: str) -> None:
    try:
        (Path(results) / "records").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot write results to {results} ({exc.strerror}). Give --results a folder you can "
                        f"write to.") from None


def _print_tables(grids: list, cells: list) -> None:
    from synthbench.benchmark.cache import canonical_json
    from synthbench.benchmark.options import keyed_options
    from synthbench.cli import summary_table

    for setting, grid in grids:
        for proto in grid.protocols:  # a protocol listed under several option sets: a table per set
            options = canonical_json(keyed_options(proto.cls.options, proto.options))
            group = [c for c in cells if c.spec.dataset == grid.dataset.name and c.spec.protocol == proto.name
                     and canonical_json(c.spec.protocol_options) == options]
            click.echo(f"\n{proto.label} on {grid.dataset.name}, preset {grid.preset.name}, seeds "
                       f"{','.join(map(str, grid.seeds))}")
            click.echo(summary_table(group, proto.instance().table_metrics()))


def left_estimates(plan: Plan, state_of: dict[str, str], store: ResultStore,
                   states: tuple[str, ...] = ("to run", "failed")) -> dict[str, Estimate | None]:
    """The estimate (or None) of each task in ``states``, by default those a run
    would still do: the dry run lists them, ``status`` sums them (and asks for
    the running ones too, to say how far along they are)."""
    from synthbench.benchmark.plan import comparable_costs, estimate_tasks

    return estimate_tasks([t for t in plan.tasks if state_of[t.key] in states], comparable_costs(store.records()))


def _left_summary(estimates: dict[str, Estimate | None]) -> tuple[float, int]:
    """Seconds of the estimated tasks, and how many have no estimate."""
    return (sum(e.seconds for e in estimates.values() if e is not None),
            sum(e is None for e in estimates.values()))


def plan_text(grids: list, results: str) -> str:
    """The plan, task by task: state and estimated cost from comparable records."""
    from tabulate import tabulate

    from synthbench.benchmark.plan import build_plan, task_states
    from synthbench.benchmark.store import ResultStore

    store = ResultStore(results)
    plan = build_plan(grids)
    state_of = task_states(plan, store)
    estimates = left_estimates(plan, state_of, store)
    rows, counts = [], {}
    for task in plan.tasks:
        state, est = state_of[task.key], estimates.get(task.key)
        counts[state] = counts.get(state, 0) + 1
        shown = "" if est is None else est.text()
        rows.append([task.kind, task.label, state, shown, ", ".join(d.split("-")[0] for d in task.deps) or "-"])
    todo_s, unknown = _left_summary(estimates)
    scaled = sorted({e.scaled_from for e in estimates.values() if e is not None and e.scaled_from})
    head = (f"plan: {len(plan.tasks)} tasks ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); "
            f"estimated {todo_s / 3600:.2f} h of compute for the tasks to run"
            + (f", {unknown} of them without a comparable record to estimate from" if unknown else "")
            + (f"; '(~{', '.join(scaled)})': no record of that generator here, so its cost on that "
               f"dataset, scaled by the other generators' cost ratio between the two" if scaled else ""))
    return head + "\n" + tabulate(rows, headers=["task", "what", "state", "est. s", "after"], tablefmt="github")


@click.command()
@click.argument("suite_file", metavar="SUITE.yaml")
@click.option("--results", default="runs", show_default=True, metavar="DIR", type=click.Path(file_okay=False),
              help="The result store the suite runs into.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, metavar="N",
              help="The threads per task the run uses (part of the fits' keys; default: the suite's).")
@click.option("--data-root", default=None, metavar="DIR", help="Folder holding the datasets' files.")
def status(suite_file: str, results: str, threads: int | None, data_root: str | None) -> None:
    """Progress of a suite, read from the store alone: done / running / failed /
    to do per generator x protocol. Works from any machine that sees the store
    (a login node while a cluster runs the suite)."""
    from tabulate import tabulate

    from synthbench.benchmark import progress
    from synthbench.benchmark.cell import stored_label
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.plan import build_plan, task_states
    from synthbench.benchmark.store import ResultStore
    from synthbench.benchmark.suite import load_suite
    from synthbench.plugins import GENERATORS, PROTOCOLS

    progress.set_enabled(False)
    suite = load_suite(suite_file)
    grids = suite_grids(suite, results, threads, None, data_root)
    plan = build_plan(grids)
    store = ResultStore(results)
    state_of = task_states(plan, store)
    table: dict[tuple[str, str, str], dict[str, int]] = {}
    other: dict[str, dict[str, int]] = {}
    for task in plan.tasks:
        state = {"cached": "done"}.get(state_of[task.key], state_of[task.key])
        if task.kind == "cell":  # one row per generator and protocol options: ablation arms apart
            row = table.setdefault((task.spec.dataset, stored_label(GENERATORS, *task.generator),
                                    stored_label(PROTOCOLS, *task.protocol)), {})
        else:
            row = other.setdefault(task.kind, {})
        row[state] = row.get(state, 0) + 1
    states = ["done", "running", "failed", "to run"]
    rows = [[d, g, p, *(row.get(s, 0) for s in states)] for (d, g, p), row in table.items()]
    click.echo(tabulate(rows, headers=["dataset", "generator", "protocol", *states], tablefmt="github"))
    total = {s: sum(r.get(s, 0) for r in table.values()) for s in states}
    click.echo(f"cells: {total['done']} done, {total['running']} running, {total['failed']} failed, "
               f"{total['to run']} to do, of {sum(total.values())}")
    for kind, row in other.items():  # shared work only finished cells need is "not needed": a run skips it
        click.echo(f"{kind} tasks: " + ", ".join(f"{row.get(s, 0)} {s}" for s in [*states, "not needed"]
                                                 if row.get(s)))
    estimates = left_estimates(plan, state_of, store, ("to run", "failed", "running"))
    running = {k: e for k, e in estimates.items() if state_of[k] == "running"}
    estimates = {k: e for k, e in estimates.items() if k not in running}
    for line in _running_lines(plan, running, store):
        click.echo(line)
    if estimates:
        left_s, unknown = _left_summary(estimates)
        click.echo(f"left: about {left_s / 3600:.1f} h of compute for {len(estimates)} tasks "
                   f"(the dry run's estimate, task by task: --dry-run)"
                   + (f"; {unknown} with nothing to estimate from" if unknown else ""))
    kept = _training_snapshots(store.cache_dir)
    if kept:
        click.echo(f"training snapshots ({len(kept)}; a stopped training resumes from its own): " + "; ".join(kept))


def _running_lines(plan: Plan, running: dict[str, Estimate | None], store: ResultStore) -> list[str]:
    """One line per running task: which worker holds it, for how long, and the
    dry run's estimate beside it, so that a task far past its estimate (a slow
    node, a hung adapter) shows from the login node. A worker killed without
    releasing its lease is not listed: once its lease is past its time to live
    the task reads "to run" and the next worker takes it over."""
    import time

    from synthbench.benchmark.lease import LeaseBoard

    board = LeaseBoard(store.root / "leases")
    out = []
    for task in plan.tasks:
        if task.key not in running:
            continue
        held = board.holder(task.key)
        if held is None:  # finished, or lapsed, since the states were read
            continue
        since = held.get("created")
        took = f"{max(0.0, time.time() - float(since)) / 60:.0f} min so far" if isinstance(since, (int, float)) \
            else "started at an unknown time"
        est = running[task.key]
        out.append(f"running: {task.label} ({held.get('owner', '?')}, {took}"
                   + (f"; estimated {est.text('min')}" if est is not None else "") + ")")
    return out


def _training_snapshots(cache_dir: Path) -> list[str]:
    """The trainings in progress or stopped that have kept a snapshot
    (``snapshots.py``): name, size and age, from the file system alone (a large
    network's snapshot is not read just to report on it)."""
    import time

    out = []
    for path in sorted(Path(cache_dir).glob("*/*.snapshot.pt")):
        try:
            st = path.stat()
        except OSError:  # finished and removed meanwhile
            continue
        out.append(f"{path.parent.name}/{path.name} ({st.st_size / 2**20:.0f} MiB, "
                   f"written {max(0.0, time.time() - st.st_mtime) / 60:.0f} min ago)")
    return out
