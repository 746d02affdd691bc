"""Leases on the store (``benchmark/lease.py``): one holder at a time, taken over
only after expiry, kept alive by the heartbeat, and a cached file computed once
by two processes that miss it together."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from synthbench.benchmark import lease as lease_mod
from synthbench.benchmark.cache import JSON, DiskCache
from synthbench.benchmark.lease import LeaseBoard
from synthbench.benchmark.worklog import read_worklog


def test_one_holder_at_a_time_and_release(tmp_path):
    board = LeaseBoard(tmp_path / "leases", ttl_s=60)
    first = board.try_claim("k", "task k")
    assert first is not None and board.holder("k")["task"] == "task k"
    assert board.try_claim("k") is None  # held and live: nobody else gets it
    first.release()
    assert board.holder("k") is None
    again = board.try_claim("k")
    assert again is not None and again.generation == 1
    again.release()


def test_a_lease_file_that_is_not_a_mapping_reads_as_held_by_nobody_named(tmp_path):
    """``status`` and the plan read every live lease: one edited by hand (a JSON
    list, say) still counts as held, and names no owner rather than raising."""
    (tmp_path / "leases").mkdir()
    (tmp_path / "leases" / "k.1.lease").write_text("[1, 2]")
    held = LeaseBoard(tmp_path / "leases", ttl_s=60).holder("k")
    assert held is not None and "owner" not in held and held["age_s"] >= 0


def test_an_expired_lease_is_taken_over_once(tmp_path):
    board = LeaseBoard(tmp_path / "leases", ttl_s=5)
    dead = board.try_claim("k")
    lease_mod._HEARTBEAT.forget(dead)  # its worker was killed: nobody touches it any more
    old = time.time() - 60
    os.utime(dead.path, (old, old))
    assert board.holder("k") is None
    taker = board.try_claim("k")
    assert taker is not None and taker.generation == 2
    assert not dead.path.exists()  # the expired generation is cleaned up by the new holder
    assert board.try_claim("k") is None  # a second taker loses to the first
    taker.release()


def test_the_heartbeat_keeps_a_lease_alive_and_notices_a_takeover(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_mod, "HEARTBEAT_S", 0.2)
    board = LeaseBoard(tmp_path / "leases", ttl_s=3)
    held = board.try_claim("k")
    start = held.path.stat().st_mtime
    time.sleep(1.0)
    assert held.path.stat().st_mtime > start  # touched while held
    # another worker, believing it expired, took it over: the holder learns it lost the lease
    (tmp_path / "leases" / "k.2.lease").write_text(json.dumps({"owner": "elsewhere"}))
    time.sleep(1.0)
    assert held.lost
    held.release()


def _compute_once(root: str, out: str) -> None:
    def slow() -> dict:
        time.sleep(1.5)
        return {"value": 42}

    value = DiskCache(Path(root) / "cache").load_or_compute("things", "thing", "id", JSON, "thing", slow)
    Path(out).write_text(json.dumps(value["value"]))


def test_two_processes_missing_one_cached_file_compute_it_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_compute_once, args=(str(tmp_path), str(tmp_path / f"out{i}"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert [json.loads((tmp_path / f"out{i}").read_text()) for i in range(2)] == [42, 42]
    computed = [e for e in read_worklog(tmp_path) if e["kind"] == "cache"]
    assert len(computed) == 1  # the other process waited on the lease and read the file


def test_a_lease_held_by_an_abandoned_call_of_this_process_is_not_waited_for(tmp_path):
    board = LeaseBoard(tmp_path / "leases", ttl_s=60)
    held = board.try_claim("k")
    with pytest.raises(RuntimeError, match="abandoned"):
        with board.exclusive("k", lambda: False):
            pass
    held.release()


def test_a_run_takes_up_work_it_put_off_as_soon_as_its_holder_finishes(monkeypatch):
    """Two runs on one store: what this run put off because the other held it
    (and what depends on it) runs as soon as the other run finishes it, in plan
    order, not after the rest of the suite."""
    from synthbench.benchmark.executors import inline
    from synthbench.benchmark.plan import Plan, Task
    from synthbench.benchmark.tasks import TaskResult

    def task(key: str, *deps: str) -> Task:
        return Task("cell", key, key, setting=None, deps=deps)

    # "pool" is the other run's until this run has finished one task ("c1")
    plan = Plan([task("pool"), task("cell", "pool"), task("c1"), task("c2"), task("c3")])
    order, calls = [], []

    def fake_run_task(t: Task, dep_errors=None, wait: bool = True) -> TaskResult:
        calls.append((t.key, wait))
        if t.key == "pool" and not order:
            return TaskResult(t.key, t.kind, "busy")
        order.append(t.key)
        return TaskResult(t.key, t.kind, "cached" if t.key == "pool" else "computed")

    monkeypatch.setattr(inline, "run_task", fake_run_task)
    inline.InlineExecutor().run(plan, lambda result: None)
    assert order == ["c1", "pool", "cell", "c2", "c3"]  # before this fix: c1, c2, c3, pool, cell
    assert ("cell", False) not in calls[:2]  # not tried while what it depends on was held elsewhere

    # when everything left is held elsewhere, the run waits for the first task instead of spinning
    order.clear()
    calls.clear()

    def held_until_waited_for(t: Task, dep_errors=None, wait: bool = True) -> TaskResult:
        calls.append((t.key, wait))
        if t.key == "pool" and not wait:
            return TaskResult(t.key, t.kind, "busy")
        order.append(t.key)
        return TaskResult(t.key, t.kind, "cached")

    monkeypatch.setattr(inline, "run_task", held_until_waited_for)
    inline.InlineExecutor().run(Plan([task("pool"), task("cell", "pool")]), lambda result: None)
    assert order == ["pool", "cell"] and calls == [("pool", False), ("pool", True), ("cell", False)]


def test_a_holder_that_wakes_after_its_name_was_claimed_again_leaves_the_new_lease_alone(tmp_path):
    """A stalls past its TTL; B takes over (generation 2) and releases; C then
    claims generation 1 again, A's old file name. A's release and heartbeat
    must not delete or touch C's lease (two workers would compute at once)."""
    board = LeaseBoard(tmp_path / "leases", ttl_s=5)
    a = board.try_claim("k", "A")
    lease_mod._HEARTBEAT.forget(a)  # A is suspended: nothing touches its file
    old = time.time() - 60
    os.utime(a.path, (old, old))
    b = board.try_claim("k", "B")
    assert b is not None and b.generation == 2
    b.release()
    c = board.try_claim("k", "C")
    assert c is not None and c.path == a.path  # the same file name as A's
    assert not a.still_ours() and c.still_ours()
    a.release()  # A wakes up and finishes
    assert c.path.exists() and board.holder("k")["task"] == "C"
    assert board.try_claim("k", "D") is None  # C still holds it
    c.release()
    assert board.holder("k") is None


def test_the_heartbeat_marks_a_lease_whose_file_another_worker_now_holds_as_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_mod, "HEARTBEAT_S", 0.2)
    board = LeaseBoard(tmp_path / "leases", ttl_s=3)
    held = board.try_claim("k")
    other = json.loads(held.path.read_text())
    held.path.write_text(json.dumps({**other, "token": "someone else"}))
    before = held.path.stat().st_mtime
    deadline = time.time() + 5
    while not held.lost and time.time() < deadline:
        time.sleep(0.1)
    assert held.lost and held.path.stat().st_mtime == before  # not kept alive for its new holder
    held.release()
    assert held.path.exists()  # nor deleted


def test_expiry_is_judged_by_the_longer_of_the_readers_and_the_holders_ttl(tmp_path):
    default = LeaseBoard(tmp_path / "leases", ttl_s=180)
    held = default.try_claim("k")
    lease_mod._HEARTBEAT.forget(held)
    ten_s_ago = time.time() - 10
    os.utime(held.path, (ten_s_ago, ten_s_ago))
    hasty = LeaseBoard(tmp_path / "leases", ttl_s=5)  # another run started with --lease-ttl 5
    assert hasty.holder("k") is not None and hasty.try_claim("k") is None
    long_ago = time.time() - 200
    os.utime(held.path, (long_ago, long_ago))
    assert hasty.holder("k") is None and hasty.try_claim("k") is not None


@pytest.mark.parametrize("ttl", ["0", "-1", "2.5", "nan", "inf", "soon"])
def test_a_time_to_live_that_would_break_the_exclusion_is_refused(tmp_path, monkeypatch, ttl):
    from synthbench.errors import UserError

    monkeypatch.setenv("SYNTHBENCH_LEASE_TTL", ttl)
    with pytest.raises(UserError, match="at least 3"):
        LeaseBoard(tmp_path / "leases")
    with pytest.raises(UserError, match="at least 3"):
        lease_mod.lease_ttl_option(float(ttl) if ttl != "soon" else float("nan"))


def test_a_file_where_the_lease_folder_belongs_is_a_clear_error_not_an_endless_wait(tmp_path):
    from synthbench.errors import UserError

    (tmp_path / "leases").write_text("not a folder")
    board = LeaseBoard(tmp_path / "leases", ttl_s=60)
    with pytest.raises(UserError, match="is not a folder"):
        board.try_claim("k")
