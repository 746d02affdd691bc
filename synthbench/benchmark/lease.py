"""Claims (leases) on the result store: how workers that share nothing but the
store's folder avoid computing the same cell, fit, sample pool or cached file at
once (DESIGN.md section 7). No lock server, no ``flock``/``fcntl`` (which NFS
honours badly or not at all): a lease is a small file created with
``O_CREAT | O_EXCL``, which NFSv3 and later perform atomically on the server.

A lease on key K is the file ``LEASES/K.<generation>.lease`` with the highest
generation. Its holder touches it (``os.utime``) every :data:`HEARTBEAT_S`;
a lease whose file was not touched for ``ttl_s`` seconds has expired (its worker
was killed, or its machine lost), and the next worker takes it over by creating
generation + 1, again with ``O_EXCL``, so of two workers that both see it expire
exactly one wins. The loser of a takeover finds, at its next heartbeat, that a
higher generation exists, and knows its lease is gone; whatever it still writes is
written atomically and, by determinism, holds the same bytes as the new holder's.

What the store's filesystem must give: atomic exclusive create and atomic rename
(``atomic.py``) on a folder every worker sees, and clocks synchronised (NTP)
to well within the lease's time to live, since one machine's clock judges a file
touched by another's. Every POSIX local filesystem, NFSv3+, Lustre, GPFS and
BeeGFS qualify; object stores mounted through FUSE (s3fs, gcsfuse) do not.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from synthbench.errors import UserError

DEFAULT_TTL_S = 180.0
"""A lease not touched for this long is taken over. Long enough that a loaded
machine or a slow filesystem never lets a live holder's lease lapse; short
enough that a killed worker's task restarts within minutes."""

HEARTBEAT_S = 30.0
POLL_S = 1.0
"""How often a worker waiting for another's lease looks again."""

_OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_id() -> str:
    """This process's name on leases: host, pid and a random suffix (pids repeat)."""
    global _OWNER
    if not _OWNER.split(":")[1] == str(os.getpid()):  # a forked child is another owner
        _OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return _OWNER


class Lease:
    """One held claim; :meth:`release` when the work is written."""

    def __init__(self, board: "LeaseBoard", key: str, path: Path, generation: int):
        self.board, self.key, self.path, self.generation = board, key, path, generation
        self.lost = False
        """Set by the heartbeat when another worker took the lease over."""

    def release(self) -> None:
        _HEARTBEAT.forget(self)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class LeaseBoard:
    """The lease folder of one result store (``RESULTS/leases``)."""

    def __init__(self, root: str | Path, ttl_s: float | None = None):
        self.root = Path(root)
        given = ttl_s if ttl_s is not None else os.environ.get("SYNTHBENCH_LEASE_TTL", DEFAULT_TTL_S)
        try:
            self.ttl_s = float(given)
        except (TypeError, ValueError):
            raise UserError(f"SYNTHBENCH_LEASE_TTL={given!r} is not a number of seconds; unset it or give e.g. "
                            f"SYNTHBENCH_LEASE_TTL=180 (or --lease-ttl 180).") from None

    def _files(self, key: str) -> list[tuple[int, Path]]:
        out = []
        for path in self.root.glob(f"{key}.*.lease"):
            gen = path.name[len(key) + 1:-len(".lease")]
            if gen.isdigit():
                out.append((int(gen), path))
        return sorted(out)

    def holder(self, key: str) -> dict | None:
        """Who holds ``key`` now (``owner``, ``task``, ``age_s``), or None when no
        live lease exists."""
        files = self._files(key)
        if not files:
            return None
        _, path = files[-1]
        try:
            age = time.time() - path.stat().st_mtime
            info = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):  # released meanwhile, or being written: treat as held, briefly
            return {"owner": "?", "task": key, "age_s": 0.0}
        if age > self.ttl_s:
            return None
        return {**(info if isinstance(info, dict) else {}), "age_s": age}  # a hand-edited file: held, unnamed

    def try_claim(self, key: str, task: str = "") -> Lease | None:
        """The lease on ``key`` if nobody holds a live one, else None. Never waits."""
        files = self._files(key)
        if files and self.holder(key) is not None:
            return None
        generation = files[-1][0] + 1 if files else 1
        path = self.root / f"{key}.{generation}.lease"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:  # another worker claimed (or took over) first
            return None
        with os.fdopen(fd, "w") as fh:
            json.dump({"owner": owner_id(), "task": task or key, "created": time.time()}, fh)
        for _, old in files:  # expired generations: ours to clean up now
            try:
                old.unlink()
            except FileNotFoundError:
                pass
        lease = Lease(self, key, path, generation)
        _HEARTBEAT.keep(lease)
        return lease

    @contextmanager
    def exclusive(self, key: str, done: Callable[[], bool], task: str = "") -> Iterator[bool]:
        """Wait until either ``done()`` holds (another worker finished the work:
        yields False) or this process holds the lease on ``key`` (yields True: do
        the work, then leave the block, which releases it). ``done`` is asked
        again once the lease is held, so work finished meanwhile is not redone."""
        lease = None
        while True:
            if done():
                yield False
                return
            lease = self.try_claim(key, task)
            if lease is not None:
                break
            held = self.holder(key)
            if held is not None and held.get("owner") == owner_id():
                raise RuntimeError(f"{task or key} is held by a call of this same process that did not return "
                                   f"(an adapter call abandoned after --adapter-timeout); not waiting for it")
            time.sleep(POLL_S)
        try:
            yield not done()
        finally:
            lease.release()


class _Heartbeat:
    """One daemon thread per process that touches every held lease."""

    def __init__(self) -> None:
        self._held: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._wake = threading.Event()
        """Set when a lease is added: the interval may have to shrink to its TTL's."""

    def keep(self, lease: Lease) -> None:
        with self._lock:
            self._held[id(lease)] = lease
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, daemon=True, name="synthbench-lease-heartbeat")
                self._thread.start()
        self._wake.set()

    def forget(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(id(lease), None)

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            interval = min(HEARTBEAT_S, max(0.2, _min_ttl(self) / 6))
            self._wake.wait(max(0.0, last + interval - time.monotonic()))
            self._wake.clear()  # woken by a new lease: the interval is recomputed, the schedule kept
            if time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            with self._lock:
                leases = list(self._held.values())
            for lease in leases:
                try:
                    os.utime(lease.path)
                except FileNotFoundError:
                    lease.lost = True
                    continue
                except OSError:
                    continue
                files = lease.board._files(lease.key)
                if files and files[-1][0] > lease.generation:
                    lease.lost = True


def _min_ttl(hb: _Heartbeat) -> float:
    with hb._lock:
        return min((lease.board.ttl_s for lease in hb._held.values()), default=HEARTBEAT_S * 6)


_HEARTBEAT = _Heartbeat()


def lease_ttl_option(value: float | None) -> float | None:
    """``--lease-ttl`` as given; a TTL under 3 heartbeats of a second is refused."""
    if value is None:
        return None
    if not value >= 3:
        raise UserError(f"--lease-ttl {value}: give at least 3 seconds (the default is {DEFAULT_TTL_S:g}).")
    return float(value)
