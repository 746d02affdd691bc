"""The result store and its executors as a demanding user meets them (the store
review): an error the user must fix stops a run with one paragraph on every
executor, and a run killed with ``kill -9`` resumes without waiting out its own
dead claims; a full disk
under any writer is the system's error, never a failed cell."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthbench.benchmark.plan import Setting, Task
from synthbench.benchmark.tasks import TaskResult
from synthbench.errors import UserError
from test_cli import run_cli


def _task(key: str = "cell-x") -> Task:
    setting = Setting(dataset="digits", preset="smoke", results="/nonexistent", device="cpu", threads=1)
    return Task(kind="cell", key=key, label="edm x replace x digits seed 0", setting=setting)


def test_a_ray_task_hands_a_user_error_back_as_stopped_not_as_a_traceback(monkeypatch):
    """Raised inside a Ray worker, a UserError (a truncated weights file) reached
    the driver as Ray's RayTaskError, whose text is the worker's traceback: the
    CLI printed 40 lines of it under ``error:``. Now the task returns
    ``stopped`` with the paragraph, as a SLURM job does, and the driver raises
    that; a task whose dependency stopped does not run."""
    from synthbench.benchmark.executors import ray_cluster

    paragraph = "The cached edm weights file F is unreadable or damaged. Delete that file and run again."

    def fails(task, errors):
        raise UserError(paragraph)

    monkeypatch.setattr(ray_cluster, "run_task", fails)
    monkeypatch.setattr(ray_cluster, "worker_init", lambda threads: None)
    result = ray_cluster._ray_task(_task(), 1, [])
    assert (result.outcome, result.error) == ("stopped", paragraph)

    ran = []
    monkeypatch.setattr(ray_cluster, "run_task", lambda task, errors: ran.append(task))
    dep = TaskResult("fit-x", "fit", "stopped", paragraph)
    result = ray_cluster._ray_task(_task(), 1, ["fit-x"], dep)
    assert (result.outcome, result.error) == ("stopped", paragraph) and not ran


class _FullDisk:
    """A file whose every ``write`` fails as on a full disk (ENOSPC)."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _disk_full_under(monkeypatch, folder: str) -> None:
    """Writes of kept files under ``folder`` (e.g. ``cache/generators``) fail as on a full disk."""
    from synthbench.benchmark import atomic

    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        return _FullDisk(fh) if f"/{folder}/" in os.readlink(f"/proc/self/fd/{fd}") else fh

    monkeypatch.setattr(atomic.os, "fdopen", fdopen)


def test_a_full_disk_under_torch_save_is_the_systems_error():
    """torch.save turns the file's ENOSPC into RuntimeError('[enforce fail at
    inline_container.cc:...] unexpected pos'), which the store read as a failed
    fit; the kept-file writer hands on the system's error."""
    import torch

    from synthbench.benchmark.atomic import _os_error_within

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    try:
        try:
            raise full
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    except RuntimeError as exc:
        assert _os_error_within(exc) is full
    assert _os_error_within(full) is None and _os_error_within(RuntimeError("no cause")) is None
    assert torch  # the writer below is torch's


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names a file descriptor's path through /proc")
def test_a_full_disk_while_saving_fitted_weights_stops_the_run_with_exit_2(tmp_path, capsys, monkeypatch):
    """A smoke suite on a 2.5 MB tmpfs: every edm cell was recorded ``failed``
    with 'edm.fit failed: RuntimeError: [enforce fail at inline_container.cc:672]
    . unexpected pos 336128 vs 336016' (exit 1). Now the run stops on the full
    disk (exit 2), names the folder, and writes no failed record."""
    _disk_full_under(monkeypatch, "cache/generators")
    code, out, err = run_cli(["evaluate", "-g", "edm", "-p", "replace", "--seed", "0", "--preset", "smoke",
                              "--threads", "1", "--results", str(tmp_path), "-q"], capsys)
    assert code == 2, err
    assert "Traceback" not in err and "enforce fail" not in out + err and "fit failed" not in out + err
    assert f"{tmp_path / 'cache' / 'generators'}: No space left on device. Free disk space" in err
    assert not list((tmp_path / "records").rglob("*.json")) or all(
        "edm" not in str(p) for p in (tmp_path / "records").rglob("*.json"))
    assert not list(tmp_path.rglob("*.tmp"))


_CLAIM = """
import sys, time
from synthbench.benchmark.lease import LeaseBoard
lease = LeaseBoard(sys.argv[1], ttl_s=180).try_claim("cell-k", "a cell")
print("claimed" if lease else "busy", flush=True)
time.sleep(600)
"""


def _claimed_in_a_process(leases: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _CLAIM, str(leases)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def test_a_claim_of_a_killed_run_on_this_machine_is_taken_over_at_once(tmp_path):
    """After ``kill -9`` of ``synthbench run``, running it again sat silent for
    up to the 3-minute time to live (every task the dead run held put off, then
    waited for), and ``status`` listed the dead run's fit as running ('fit edm
    on digits (vm:13212:..., 2 min so far)'). A claim whose holder was a
    process of this machine that is gone is now void at once."""
    from synthbench.benchmark.lease import LeaseBoard

    leases = tmp_path / "leases"
    board = LeaseBoard(leases, ttl_s=180)
    proc = _claimed_in_a_process(leases)
    try:
        assert board.holder("cell-k") is not None and board.try_claim("cell-k") is None  # alive: held
    finally:
        proc.kill()
    deadline = time.time() + 30
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.time() < deadline, "the killed process did not end"
        time.sleep(0.05)
    assert board.holder("cell-k") is None  # killed, not yet reaped: a zombie holds nothing ...
    proc.wait()
    assert board.holder("cell-k") is None  # ... and gone: void, long before its time to live
    taker = board.try_claim("cell-k")
    assert taker is not None and taker.generation == 2
    taker.release()


def test_a_claim_from_another_machine_waits_for_its_time_to_live(tmp_path):
    """A pid means nothing on another machine (or container, or boot): only
    the lease's age tells there."""
    from synthbench.benchmark.lease import LeaseBoard

    leases = tmp_path / "leases"
    board = LeaseBoard(leases, ttl_s=180)
    proc = _claimed_in_a_process(leases)
    proc.kill()
    proc.wait()
    path = next(leases.glob("cell-k.*.lease"))
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "machine": f"elsewhere:{info.get('machine')}"}))
    assert board.holder("cell-k") is not None and board.try_claim("cell-k") is None
    path.write_text(json.dumps({k: v for k, v in info.items() if k != "machine"}))  # a lease written before
    assert board.holder("cell-k") is not None


def test_the_processes_executor_hands_workers_no_more_tasks_than_they_can_start(capsys):
    """Every task whose dependencies were done went to the pool at once (a
    suite's fits, all of them, at the start), and leaving the pool waits for
    every task handed to it: a damaged cache file the edm fit met (a UserError)
    was reported after the ddpm and stylegan3 fits had run too (31 s against
    23 s on a smoke digits suite; hours at ``fast``). Now the pool holds at most
    one task per worker, and the run says what it still waits for."""
    from concurrent.futures import Future

    from synthbench.benchmark.executors.processes import ProcessExecutor

    class Pool:
        def __init__(self):
            self.submitted: list[str] = []

        def submit(self, fn, task, errors):
            self.submitted.append(task.key)
            future: Future = Future()
            if task.key == "fit-0":
                future.set_exception(UserError("The cached edm weights file F is unreadable or damaged."))
            return future

    pool = Pool()
    tasks = [_task(f"fit-{i}") for i in range(6)]
    with pytest.raises(UserError, match="unreadable or damaged"):
        ProcessExecutor(workers=2, threads=1)._drive(pool, tasks, {}, lambda result: None, lambda t, r: {})
    assert pool.submitted == ["fit-0", "fit-1"]
    assert "stopping: waiting for the 1 task(s) the other workers are running" in capsys.readouterr().err


def test_a_ray_task_whose_worker_died_on_every_try_is_one_paragraph():
    """A Ray task whose worker died on each of its tries (killed, out of
    memory) reached the CLI as ray.exceptions.WorkerCrashedError, which the CLI
    does not catch: a Python traceback. It is now a UserError naming the task,
    as the processes executor's pool that broke too often is."""
    from synthbench.benchmark.executors import ray_cluster
    from synthbench.benchmark.plan import Plan

    class RayError(Exception):
        pass

    class WorkerCrashedError(RayError):
        pass

    class RemoteFunction:
        def options(self, **kwargs):
            return self

        def remote(self, *args):
            return object()  # an object reference

    class FakeRay:
        exceptions = type("exceptions", (), {"RayError": RayError})

        def remote(self, fn):
            return RemoteFunction()

        def wait(self, pending, num_returns):
            return pending[:1], pending[1:]

        def get(self, ref):
            raise WorkerCrashedError("The worker died unexpectedly while executing this task. Check "
                                     "python-core-worker-*.log files for more information.")

    plan = Plan([_task("cell-x")], {})
    with pytest.raises(UserError, match=r"^edm x replace x digits seed 0: Ray ran it \d+ times and its worker "
                                        r"died each time \(WorkerCrashedError: The worker died unexpectedly"):
        ray_cluster.RayExecutor(workers=1, threads=1)._submit_and_collect(FakeRay(), plan, lambda result: None)


def test_a_claim_that_a_full_disk_cut_short_leaves_no_empty_lease(tmp_path, monkeypatch):
    """On a full disk the lease file's name is created and its content is not:
    the empty file stayed, read as a live claim of nobody's, and the run
    started again once space was freed waited out the 3-minute time to live
    on it (``status``: running). Now the file is removed and the error names it."""
    from synthbench.benchmark import lease as lease_mod
    from synthbench.benchmark.lease import LeaseBoard

    real_fdopen = os.fdopen
    monkeypatch.setattr(lease_mod.os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k)))
    board = LeaseBoard(tmp_path / "leases", ttl_s=180)
    with pytest.raises(OSError) as raised:
        board.try_claim("cell-k", "a cell")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "leases" / "cell-k.1.lease")
    monkeypatch.undo()
    assert list((tmp_path / "leases").iterdir()) == [] and board.holder("cell-k") is None
    again = board.try_claim("cell-k")
    assert again is not None
    again.release()


def test_a_broken_pool_is_not_announced_as_stopping(capsys):
    """A worker that died breaks the pool, and the executor starts another and
    goes on: that is no stop, and says nothing of one."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from synthbench.benchmark.executors.processes import ProcessExecutor

    class Pool:
        def submit(self, fn, task, errors):
            future: Future = Future()
            if task.key == "fit-0":
                future.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
            return future

    with pytest.raises(BrokenProcessPool):
        ProcessExecutor(workers=2, threads=1)._drive(Pool(), [_task(f"fit-{i}") for i in range(3)], {},
                                                     lambda result: None, lambda t, r: {})
    assert "stopping" not in capsys.readouterr().err


def test_status_counts_an_edited_record_to_do_not_failed(tmp_path, capsys):
    """A record edited by hand (or truncated) is no result, and a run computes
    the cell again; ``status`` and ``--dry-run`` counted it 'failed' ('cells: 7
    done, 0 running, 1 failed'), though no cell failed."""
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.plan import build_plan, task_states
    from synthbench.benchmark.store import ResultStore
    from synthbench.benchmark.suite import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndataset: digits\npreset: smoke\nseeds: [0]\ndevice: cpu\nthreads: 1\n"
                     "generators: {real: {}}\nprotocols: {replace: {}}\n")
    store = ResultStore(tmp_path / "r")
    plan = build_plan(suite_grids(load_suite(suite), str(store.root)))
    cell = next(t for t in plan.by_kind("cell"))
    path = store.path_for(cell.spec)
    path.parent.mkdir(parents=True)
    path.write_text('{"status": "ok", "metrics": {"top1": 0.99')  # cut short
    assert task_states(plan, store)[cell.key] == "to run"
    err = capsys.readouterr().err
    assert "is not a valid record" in err  # and it is named,
    assert "recomputing" not in err and "a run computes the cell again" in err  # without saying status computes it


def test_a_cost_claim_that_a_full_disk_cut_short_is_removed(tmp_path, monkeypatch):
    """The claim on a shared task's cost (``.charged``) is created before the
    cell's key is written into it: on a full disk the empty file stayed, named
    no cell, and no record, that cell's included, ever took the fit's cost."""
    from synthbench.benchmark import tasks
    from synthbench.benchmark.atomic import atomic_write_json
    from synthbench.benchmark.plan import task_marker

    atomic_write_json(task_marker(tmp_path, "fit-a"), {"cost": {"fit_s": 2.0}})
    real_fdopen = os.fdopen
    monkeypatch.setattr(tasks.os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k)))
    with pytest.raises(UserError, match=r"Cannot write the cost claim .*fit-a\.charged: No space left on device"):
        tasks._claim_shared_cost(tmp_path, ("fit-a",), "cell-1")
    monkeypatch.undo()
    assert not task_marker(tmp_path, "fit-a").with_suffix(".charged").exists()
    assert tasks._claim_shared_cost(tmp_path, ("fit-a",), "cell-1") == ({"fit_s": 2.0}, 0)  # space freed: charged


def test_a_ray_error_that_is_no_dead_worker_is_not_called_one():
    """Every RayError read 'its worker died each time', a cancelled task or a
    lost object included; only a crashed worker (or out of memory, a lost node)
    is now said to have died."""
    ray_errors = pytest.importorskip("ray.exceptions")
    from synthbench.benchmark.executors.ray_cluster import ray_failure

    crashed = ray_failure("edm x replace", ray_errors.WorkerCrashedError())
    assert "worker died each time (WorkerCrashedError: The worker died unexpectedly" in crashed
    other = ray_failure("edm x replace", ray_errors.RayError("object lost"))
    assert "died" not in other and "Ray could not finish it (RayError: object lost)" in other
    assert "Every finished record is kept" in other
