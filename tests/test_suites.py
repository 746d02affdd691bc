"""Suites on every executor (smoke preset, digits, one thread per task): the same
records whoever runs them, every fit and cell computed exactly once when two
runs share a store, a worker killed with SIGKILL mid-suite costs nothing but
time, and `synthbench status` reads progress from the store alone."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from synthbench.benchmark.store import ResultStore, read_record
from synthbench.benchmark.suite import load_suite, parse_seeds
from synthbench.benchmark.worklog import read_worklog
from synthbench.errors import UserError
from synthbench.plugins import PROTOCOLS
from test_cli import run_cli

SUITE = """
name: {name}
dataset: digits
preset: smoke
seeds: {seeds}
device: cpu
threads: 1
generators: {generators}
protocols: {protocols}
"""


def write_suite(tmp_path: Path, name: str = "s", seeds: str = "[0, 1]", generators: str = "{real: {}, edm: {}}",
                protocols: str = "{replace: {}, fidelity: {}}") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, seeds=seeds, generators=generators, protocols=protocols))
    return path


def results_by_cell(root: Path) -> dict[str, str]:
    """Every record's spec, metrics and details as canonical JSON, by path: what
    must not depend on who computed it (costs and provenance may)."""
    out = {}
    for path in ResultStore(root).paths():
        data = json.loads(path.read_text())
        out[str(path.relative_to(root))] = json.dumps(
            {k: data[k] for k in ("cell_hash", "spec", "status", "metrics", "details")}, sort_keys=True)
    return out


def computed(root: Path) -> Counter:
    return Counter((e["kind"], e["name"]) for e in read_worklog(root))


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthbench", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "SYNTHBENCH_PROGRESS": "0", **(env or {})})


# --------------------------------------------------------------------------- suite files


def test_seeds_are_a_count_a_range_or_a_list():
    assert parse_seeds(3) == (0, 1, 2) and parse_seeds("3") == (0, 1, 2)
    assert parse_seeds("0-2") == (0, 1, 2) and parse_seeds("4-5") == (4, 5)
    assert parse_seeds("0,3,7") == (0, 3, 7) and parse_seeds([2, 2, 5]) == (2, 5)
    for bad in ("2-1", "a", "", -1, 0, "1.5", True):
        with pytest.raises(UserError, match="seeds"):
            parse_seeds(bad)


def test_a_switch_is_a_bool_or_its_quoted_name():
    from synthbench.benchmark.suite import parse_switch

    assert parse_switch(True) is True and parse_switch(" TRUE ") is True and parse_switch("false") is False
    assert parse_switch(None) is None and parse_switch("yes") == "yes" and parse_switch(1) == 1  # refused later


@pytest.mark.parametrize("text, message", [
    ("generators: [real\n", "not valid YAML"),
    ("generators: {real: {}}\nprotocols: {replace: {}}\ndataset: digits\ndatasets: [digits]\n", "not both"),
    ("generators: {real: {}}\nprotocols: {replace: {}}\nbogus: 1\n", "unknown keys bogus"),
    ("generators: {real: {}}\nprotocols: {replace: {}}\nseeds: 0-x\n", "seeds must be"),
    ("generators: {real: {}}\nprotocols: {replace: {}}\npreset: huge\n", "preset 'huge'"),
    ("generators: {real: {}}\nprotocols: {nosuch: {}}\n", "nosuch"),
    ("generators: {real: {}}\nprotocols: {replace: {}}\ncompile: maybe\n", "compile 'maybe' must be true or false"),
])
def test_bad_suites_are_one_paragraph_errors(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, out, err = run_cli(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run"], capsys)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_shipped_suites_parse():
    root = Path(__file__).resolve().parents[1] / "configs"
    fashion = load_suite(root / "fashion-fast.yaml")
    assert fashion.datasets == ("fashion-mnist",) and fashion.seeds == (0, 1, 2)
    assert set(fashion.protocols) == set(PROTOCOLS.names())  # the board's suites run every protocol
    assert {"real", "edm", "ddpm", "stylegan3", "realfake"} <= set(fashion.generators)
    assert load_suite(root / "paper-cifar10.yaml").preset == "paper"
    digits = load_suite(root / "digits-fast.yaml")
    assert digits.datasets == ("digits",) and set(digits.protocols) == set(PROTOCOLS.names())


def test_evaluate_takes_several_generators_protocols_and_one_seed(tmp_path, capsys):
    code, out, err = run_cli(["evaluate", "-g", "edm,real", "-p", "replace,detect", "--seed", "1", "--preset",
                              "smoke", "--results", str(tmp_path), "-q"], capsys)
    assert code == 0, err
    specs = [read_record(p).spec for p in ResultStore(tmp_path).paths()]
    assert sorted((s.generator, s.protocol, s.seed) for s in specs) == [
        ("edm", "detect", 1), ("edm", "replace", 1), ("real", "detect", 1), ("real", "replace", 1)]
    assert out.count("seeds 1, device") == 2  # one table per protocol
    code, out, _ = run_cli(["evaluate", "-g", "edm", "-p", "replace", "--seeds", "0-1", "--preset", "smoke",
                            "--results", str(tmp_path), "--dry-run"], capsys)
    assert code == 0 and "seed 0  to compute" in out and "seed 1  cached" in out


# --------------------------------------------------------------------------- executors


def test_processes_executor_gives_the_inline_records_byte_for_byte(tmp_path, capsys):
    suite = write_suite(tmp_path)
    inline, procs = tmp_path / "inline", tmp_path / "procs"
    code, out, err = run_cli(["run", str(suite), "--results", str(inline), "-q"], capsys)
    assert code == 0, err
    code, out2, err = run_cli(["run", str(suite), "--results", str(procs), "-q", "--executor", "processes",
                               "--workers", "2"], capsys)
    assert code == 0, err
    a, b = results_by_cell(inline), results_by_cell(procs)
    assert len(a) == 8 and a == b
    assert out.count("| edm") == 2  # a table per protocol
    for root in (inline, procs):
        counts = computed(root)
        assert max(counts.values()) == 1  # nothing computed twice
        assert sum(1 for kind, _ in counts if kind == "cell") == 8
        assert sum(1 for kind, _ in counts if kind == "fit") == 2  # real and edm, once for both protocols
    # a second run of the finished suite computes nothing
    code, out, _ = run_cli(["run", str(suite), "--results", str(procs), "-q", "--executor", "processes",
                            "--workers", "2"], capsys)
    assert code == 0 and sum(computed(procs).values()) == sum(computed(inline).values())


def test_two_runs_on_one_store_compute_every_fit_and_cell_once(tmp_path):
    suite = write_suite(tmp_path, seeds="[0, 1, 2]", protocols="{replace: {}, augment: {}, fidelity: {}}")
    store = tmp_path / "shared"
    env = {**os.environ, "SYNTHBENCH_PROGRESS": "0"}
    runs = [subprocess.Popen([sys.executable, "-m", "synthbench", "run", str(suite), "--results", str(store), "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [r.communicate(timeout=600) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [o[1][-2000:] for o in outs]
    counts = computed(store)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    cells = [k for k in counts if k[0] == "cell"]
    assert len(cells) == 2 * 3 * 3 and len({e["owner"] for e in read_worklog(store)}) == 2  # both did work
    assert len([k for k in counts if k[0] == "fit"]) == 2
    assert len(ResultStore(store).paths()) == 18
    # both printed the full tables, read from the one store
    assert all(o[0].count("| edm") == 3 and o[0].count("| real") == 3 for o in outs)


def _record_costs(root: Path) -> list[dict]:
    return [json.loads(p.read_text())["cost"]["wall_s"] for p in ResultStore(root).paths()]


def _marker_costs(root: Path, prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in (root / "cache" / "tasks").glob(f"{prefix}*.json"):
        for phase, seconds in json.loads(path.read_text())["cost"].items():
            out[phase] = out.get(phase, 0.0) + seconds
    return out


def test_shared_work_is_charged_once_even_when_its_worker_dies_before_any_cell(tmp_path):
    """Fits, reference classifiers and pools done by a worker that never ran a
    cell (killed, or its session ended) are still charged, each to exactly one
    record: the CPU-hours the board reports must add up."""
    from synthbench.benchmark import tasks
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.plan import build_plan

    suite = write_suite(tmp_path, seeds="[0, 1]", generators="{edm: {}}", protocols="{replace: {}, fidelity: {}}")
    store = tmp_path / "r"
    plan = build_plan(suite_grids(load_suite(suite), str(store)))
    for task in plan.tasks:  # the first worker: every shared task, then it dies
        if task.kind != "cell":
            assert tasks.run_task(task).outcome == "computed"
    tasks._STATES.clear()
    shared = {kind: _marker_costs(store, kind) for kind in ("fit", "classifier", "pool")}
    assert shared["fit"]["fit_s"] > 0 and shared["pool"]["pool_s"] > 0 and shared["classifier"]["reference_s"] > 0

    proc = cli("run", str(suite), "--results", str(store), "-q")  # a second worker does the cells
    assert proc.returncode == 0, proc.stderr[-2000:]
    costs = _record_costs(store)
    assert len(costs) == 4
    for phase, prefix in (("pool_s", "pool"), ("reference_s", "classifier")):
        assert sum(c.get(phase, 0.0) for c in costs) == pytest.approx(shared[prefix][phase], abs=1e-6)
    charged = [c["fit_s"] for c in costs if c.get("fit_s", 0.0) >= shared["fit"]["fit_s"]]
    assert len(charged) == 1  # the fit, once (the other cells only loaded its weights)
    # a record charged a pool names the pool's size, which the dry run's per-image estimate needs
    pools = [json.loads(p.read_text()) for p in (store / "cache" / "tasks").glob("pool*.json")]
    full = [json.loads(p.read_text())["cost"] for p in ResultStore(store).paths()]
    assert sorted(c["pool_images"] for c in full if "pool_s" in c["wall_s"]) == sorted(m["images"] for m in pools)
    assert all("pool_images" not in c for c in full if "pool_s" not in c["wall_s"])
    assert len(list((store / "cache" / "tasks").glob("*.charged"))) == len(list(
        (store / "cache" / "tasks").glob("*.json")))


def test_a_claim_on_shared_cost_is_kept_by_its_cell_and_refused_to_others(tmp_path):
    from synthbench.benchmark.atomic import atomic_write_json
    from synthbench.benchmark.plan import task_marker
    from synthbench.benchmark.tasks import _claim_shared_cost

    atomic_write_json(task_marker(tmp_path, "fit-a"), {"cost": {"fit_s": 2.0, "fit_train_s": 1.5}})
    atomic_write_json(task_marker(tmp_path, "pool-a-s0"), {"n": 300, "images": 250, "cost": {"pool_s": 3.0}})
    deps = ("fit-a", "classifier-missing", "pool-a-s0")
    shared = {"fit_s": 2.0, "fit_train_s": 1.5, "pool_s": 3.0}
    assert _claim_shared_cost(tmp_path, deps, "cell-1") == (shared, 250)  # the images the pool holds
    assert _claim_shared_cost(tmp_path, deps, "cell-2") == ({}, 0)
    # cell-1 run again (its record never landed): it takes the cost again instead of losing it
    assert _claim_shared_cost(tmp_path, deps, "cell-1") == (shared, 250)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in cmd:
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds worker processes through /proc")
def test_kill_9_of_a_worker_mid_suite_loses_and_duplicates_nothing(tmp_path):
    suite = write_suite(tmp_path, seeds="[0, 1, 2]", protocols="{replace: {}, augment: {}, fidelity: {}}")
    store = tmp_path / "store"
    env = {**os.environ, "SYNTHBENCH_PROGRESS": "0", "SYNTHBENCH_LEASE_TTL": "4"}
    run = subprocess.Popen([sys.executable, "-m", "synthbench", "run", str(suite), "--results", str(store),
                            "--executor", "processes", "--workers", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not any(e["kind"] == "cell" for e in read_worklog(store)):
        time.sleep(0.2)
    workers = _children(run.pid)
    assert workers, "no worker processes found"
    os.kill(workers[0], signal.SIGKILL)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]
    assert "a worker process died" in err
    paths = ResultStore(store).paths()
    assert len(paths) == 18
    for path in paths:  # every record whole and valid, none failed
        assert read_record(path).status.value == "ok"
    assert not list(store.rglob("*.tmp"))
    counts = computed(store)
    assert len([k for k in counts if k[0] == "cell"]) == 18 and max(n for k, n in counts.items() if k[0] == "cell") == 1


@pytest.mark.parametrize("module, flags", [
    ("submitit", ["--executor", "slurm", "--slurm-cluster", "local"]),  # submitit's local executor, same path
    ("ray", ["--executor", "ray", "--workers", "2"]),  # Ray started here with 2 CPUs
])
def test_cluster_engines_run_a_two_cell_suite(tmp_path, capsys, module, flags):
    if os.environ.get("SYNTHBENCH_REQUIRE_CLUSTER") == "1":  # CI installs the cluster extra: no silent skip
        __import__(module)
    else:
        pytest.importorskip(module, reason="the cluster extra is not installed (pip install -e '.[cluster]')")
    suite = write_suite(tmp_path, seeds="[0]", protocols="{replace: {}}")
    code, out, err = run_cli(["run", str(suite), "--results", str(tmp_path / "r"), "-q", *flags], capsys)
    assert code == 0, err
    assert results_by_cell(tmp_path / "r") == _inline_reference(tmp_path, suite, capsys)


def _inline_reference(tmp_path: Path, suite: Path, capsys) -> dict[str, str]:
    code, _, err = run_cli(["run", str(suite), "--results", str(tmp_path / "inline"), "-q"], capsys)
    assert code == 0, err
    reference = results_by_cell(tmp_path / "inline")
    assert len(reference) == 2
    return reference


@pytest.mark.parametrize("engine, module", [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_cluster_engine_names_the_extra(tmp_path, capsys, monkeypatch, engine, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    suite = write_suite(tmp_path, seeds="[0]", protocols="{replace: {}}")
    code, _, err = run_cli(["run", str(suite), "--results", str(tmp_path / "r"), "--executor", engine], capsys)
    assert code == 2 and ".[cluster]" in err and module in err


# --------------------------------------------------------------------------- status and the plan


def test_status_and_dry_run_read_progress_from_the_store(tmp_path, capsys):
    suite = write_suite(tmp_path, seeds="[0, 1]", protocols="{replace: {}}")
    store = tmp_path / "r"
    code, out, _ = run_cli(["status", str(suite), "--results", str(store)], capsys)
    assert code == 0 and "cells: 0 done, 0 running, 0 failed, 4 to do, of 4" in out
    # one cell finished (seed 0 of edm through evaluate: the same key), one being computed elsewhere
    code, _, err = run_cli(["evaluate", "-g", "edm", "-p", "replace", "--seed", "0", "--preset", "smoke",
                            "--results", str(store), "--device", "cpu", "--threads", "1", "-q"], capsys)
    assert code == 0, err
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.lease import LeaseBoard
    from synthbench.benchmark.plan import build_plan

    plan = build_plan(suite_grids(load_suite(suite), str(store)))
    running = next(t for t in plan.by_kind("cell") if t.spec.generator == "edm" and t.spec.seed == 1)
    held = LeaseBoard(store / "leases").try_claim(running.key)
    try:
        code, out, _ = run_cli(["status", str(suite), "--results", str(store)], capsys)
    finally:
        held.release()
    assert "cells: 2 done, 1 running, 0 failed, 1 to do, of 4" in out  # seed 0 of edm and of real (evaluate's)
    # the running cell, named with its holder, its time so far and the estimate from seed 0's record
    from synthbench.benchmark.lease import owner_id

    assert re.search(rf"running: edm x replace x digits seed 1 \({re.escape(owner_id())}, \d+ min so far; "
                     rf"estimated \d+ min\)", out), out
    assert "running: real" not in out  # only tasks with a live lease
    assert "fit tasks: 2 done" in out  # evaluate's fits at one thread are the suite's
    assert re.search(r"left: about \d+\.\d h of compute for \d+ tasks", out), out  # what is left, estimated
    code, out, _ = run_cli(["run", str(suite), "--results", str(store), "--dry-run"], capsys)
    assert code == 0 and "plan: " in out and "edm x replace x digits seed 1" in out
    row = next(line for line in out.splitlines() if "edm x replace x digits seed 1" in line)
    assert "to run" in row and row.split("|")[4].strip() != ""  # an estimate from the seed-0 record's cost
    assert "training snapshots" not in out
    snapshot = store / "cache" / "generators" / "edm-0123.snapshot.pt"
    snapshot.write_bytes(b"\0" * 2**21)  # a stopped fit's (status reads no snapshot, only its size and age)
    code, out, _ = run_cli(["status", str(suite), "--results", str(store)], capsys)
    assert "training snapshots (1; a stopped training resumes from its own): " \
           "generators/edm-0123.snapshot.pt (2 MiB, written 0 min ago)" in out
    # seed 0 alone is finished: with its caches gone, its fits are work no cell needs, which a run skips, so
    # the dry run neither lists them as to run nor counts them in its estimate
    shutil.rmtree(store / "cache")
    done = write_suite(tmp_path, name="done", seeds="[0]", protocols="{replace: {}}")
    code, out, _ = run_cli(["status", str(done), "--results", str(store)], capsys)
    assert "cells: 2 done, 0 running, 0 failed, 0 to do, of 2" in out and "fit tasks: 2 not needed" in out
    assert "left:" not in out
    code, out, _ = run_cli(["run", str(done), "--results", str(store), "--dry-run"], capsys)
    assert code == 0 and "plan: 6 tasks (2 cached, 4 not needed); estimated 0.00 h" in out, out


def test_on_a_machine_with_gpus_each_worker_takes_one(monkeypatch):
    import queue

    from synthbench.benchmark.executors import processes
    from synthbench.benchmark.tasks import worker_init

    monkeypatch.setattr(processes, "_gpu_count", lambda: 4)
    assert processes.ProcessExecutor().workers == 4  # one worker per GPU by default
    assert processes.ProcessExecutor(workers=2).workers == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("SYNTHBENCH_LEASE_TTL", "180")
    ids = queue.Queue()
    ids.put(3)
    worker_init(None, ids, {"SYNTHBENCH_LEASE_TTL": "9"})
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and os.environ["SYNTHBENCH_LEASE_TTL"] == "9"


def test_a_fit_that_builds_on_another_generators_fit_runs_after_it_as_a_task(tmp_path):
    """``realfake`` fine-tunes the network ``edm`` trains: the plan holds that
    fit as a task of its own (keyed as ``edm``'s, so a suite listing both fits it
    once), before realfake's, for the members-only fit too, and every cell
    depends on it (the dry run counts its hours; a cell claims its cost)."""
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.plan import build_plan

    both = write_suite(tmp_path, "both", seeds="[0]", generators="{edm: {}, realfake: {}}",
                       protocols="{replace: {}, mia: {}}")
    alone = write_suite(tmp_path, "alone", seeds="[0]", generators="{realfake: [{}, {mmd: false}]}",
                        protocols="{replace: {}, mia: {}}")
    store = str(tmp_path / "r")
    plan_both, plan_alone = (build_plan(suite_grids(load_suite(s), store)) for s in (both, alone))
    edm_fits = {t.fit: t.key for t in plan_both.by_kind("fit") if t.generator[0] == "edm"}
    assert set(edm_fits) == {"full", "members"} and len(plan_both.by_kind("fit")) == 4  # edm's own are the bases
    keys = [t.key for t in plan_alone.tasks]
    assert len(keys) == len(set(keys))
    for plan in (plan_both, plan_alone):
        order = {t.key: i for i, t in enumerate(plan.tasks)}
        fits = [t for t in plan.by_kind("fit") if t.generator[0] == "realfake"]
        assert {t.fit for t in fits} == {"full", "members"}
        for t in fits:
            assert t.deps == (edm_fits[t.fit],) and order[edm_fits[t.fit]] < order[t.key]
        for cell in (t for t in plan.by_kind("cell") if t.generator[0] == "realfake"):
            wanted = edm_fits["members" if cell.protocol[0] == "mia" else "full"]
            assert cell.bases == (wanted,) and wanted in cell.deps
            assert cell.deps.index(wanted) < min(cell.deps.index(k) for k in cell.deps if k.startswith("fit-")
                                                 and k != wanted)
    # the two arms share one base fit task
    assert sum(t.generator[0] == "edm" for t in plan_alone.by_kind("fit")) == 2
    # a generator that builds on nothing has no base (edm's own cells)
    assert all(t.bases == () for t in plan_both.by_kind("cell") if t.generator[0] != "realfake")


def test_a_suite_fits_realfakes_base_once_and_charges_it_as_fit_base_s(tmp_path, capsys):
    """Run end to end: ``edm``'s network is a fit task of its own (computed once
    for two arms), each arm's fine-tuning reads it from the cache, and the first
    cell to land carries the base's seconds in ``fit_s`` and ``fit_base_s``."""
    suite = write_suite(tmp_path, seeds="[0]", generators="{realfake: [{}, {mmd: false}]}",
                        protocols="{replace: {}}")
    store = tmp_path / "r"
    code, _, err = run_cli(["run", str(suite), "--results", str(store), "-q"], capsys)
    assert code == 0, err
    fits = [e["name"] for e in read_worklog(store) if e["kind"] == "fit"]
    assert len(fits) == len(set(fits)) == 3  # edm's network, then each arm's fine-tuning
    walls = _record_costs(store)
    assert len(walls) == 2
    based = [w for w in walls if w.get("fit_base_s")]
    assert len(based) == 1 and based[0]["fit_s"] > based[0]["fit_base_s"] > 0
    assert based[0].get("fit_finetune_s", 0) > 0 and "fit_train_s" not in based[0]  # the base: one figure


def test_a_fit_that_trained_its_base_inside_marks_the_base_done_without_cost(tmp_path):
    """A realfake fit whose base task had not run (a store from before the base
    was a task, a worker that took the fit first) trains edm's network inside
    itself and charges it as ``fit_base_s``: the base then reads as done, at no
    cost of its own, so the dry run neither redoes nor counts it twice."""
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.plan import build_plan, task_marker, task_states
    from synthbench.benchmark.tasks import run_task

    suite = write_suite(tmp_path, seeds="[0]", generators="{realfake: {}}", protocols="{replace: {}}")
    store = tmp_path / "r"
    plan = build_plan(suite_grids(load_suite(suite), str(store)))
    fit = next(t for t in plan.by_kind("fit") if t.generator[0] == "realfake")
    (base,) = fit.deps
    assert run_task(fit).outcome == "computed"
    assert json.loads(task_marker(store, base).read_text())["cost"] == {}
    assert json.loads(task_marker(store, fit.key).read_text())["cost"]["fit_base_s"] > 0
    assert task_states(plan, ResultStore(store))[base] == "cached"
    # a base task's own marker (with its cost) is never replaced
    task_marker(store, fit.key).unlink()
    task_marker(store, base).write_text(json.dumps({"cost": {"fit_s": 5.0}}))
    assert run_task(fit).outcome == "computed"
    assert json.loads(task_marker(store, base).read_text()) == {"cost": {"fit_s": 5.0}}


DRIVER = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from synthbench.benchmark.tasks import worker_init

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init,
                             initargs=(1, None, {}, os.getpid())) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(600)
"""


def test_a_worker_process_ends_when_its_driver_is_killed(tmp_path):
    """kill -9 of the driver (``synthbench run`` with ``--executor processes``):
    its workers must not wait for tasks forever, holding their memory."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "SYNTHBENCH_PROGRESS": "0"})
    worker = int(driver.stdout.readline())
    driver.kill()
    driver.wait()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        try:  # reaped by init once it exits; a zombie of ours would still answer kill 0
            with open(f"/proc/{worker}/stat") as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    break
        except OSError:
            break
        time.sleep(0.5)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its driver by 30 s")


def test_slurm_refuses_a_fraction_of_a_gpu_per_task(tmp_path):
    """int(0.5) is 0: the job would have asked for no GPU at all."""
    from synthbench.benchmark.executors.slurm import SlurmExecutor

    with pytest.raises(UserError, match="whole number"):
        SlurmExecutor(tmp_path, gpus_per_task=0.5)
    assert SlurmExecutor(tmp_path, gpus_per_task=2.0).gpus_per_task == 2.0
