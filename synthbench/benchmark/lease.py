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
exactly one wins. A lease whose holder is a process of the reader's own
machine that no longer runs (``kill -9`` of a run, then the same command
again) is expired at once (:func:`_gone`). The loser of a takeover finds, at its next heartbeat, that a
higher generation exists, and knows its lease is gone; whatever it still writes is
written atomically and, by determinism, holds the same bytes as the new holder's.

Each lease file holds a token of its own (and its holder's time to live), so a
holder that stalled past its lease (a suspended job, ``Ctrl-Z``) and wakes up
after its generation was taken over, released, and created again by a third
worker under the same file name neither touches nor deletes that worker's
lease: it finds another token there and knows its lease is lost. A reader
judges expiry by the longer of its own TTL and the one the lease was taken
with, so a run started with a short ``--lease-ttl`` does not take over live
leases of a run with the default.

What the store's filesystem must give: atomic exclusive create and atomic rename
(``atomic.py``) on a folder every worker sees, and clocks synchronised (NTP)
to well within the lease's time to live, since one machine's clock judges a file
touched by another's. Every POSIX local filesystem, NFSv3+, Lustre, GPFS and
BeeGFS qualify; object stores mounted through FUSE (s3fs, gcsfuse) do not.
"""

from __future__ import annotations

import json
import math
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

MIN_TTL_S = 3.0
"""The shortest time to live a run may give (3 heartbeats of a second)."""

HEARTBEAT_S = 30.0
POLL_S = 1.0
"""How often a worker waiting for another's lease looks again."""

_OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _machine() -> str | None:
    """What names this machine and its process table: the kernel's boot id and
    this process's pid namespace. Two lease holders with the same value see
    the same processes, so a holder's pid tells whether it is alive; on
    another machine, container or boot, or where ``/proc`` does not say, only
    the lease's age tells (None)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{socket.gethostname()}:{boot}:{namespace}" if boot and namespace else None


_MACHINE = _machine()


def _gone(info: dict) -> bool:
    """Whether the holder of a lease (its file's ``info``) is a process of this
    machine that no longer runs (``kill -9``, out of memory, a closed
    terminal): its claim is void at once, so the run started again after it
    takes its work over instead of waiting out the time to live, in silence,
    while ``status`` called the dead run's tasks running. A pid in use by
    another process since reads as alive (the time to live then decides)."""
    owner = info.get("owner")
    if _MACHINE is None or info.get("machine") != _MACHINE or not isinstance(owner, str):
        return False
    parts = owner.split(":")
    if len(parts) < 3 or not parts[-2].isdigit():
        return False
    pid = int(parts[-2])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process (EPERM): alive
        return False
    try:  # killed but not yet reaped by its parent: a zombie holds nothing
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].startswith("Z")
    except (OSError, ValueError):
        return False


def owner_id() -> str:
    """This process's name on leases: host, pid and a random suffix (pids repeat)."""
    global _OWNER
    if not _OWNER.split(":")[1] == str(os.getpid()):  # a forked child is another owner
        _OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return _OWNER


class Lease:
    """One held claim; :meth:`release` when the work is written."""

    def __init__(self, board: "LeaseBoard", key: str, path: Path, generation: int, token: str):
        self.board, self.key, self.path, self.generation, self.token = board, key, path, generation, token
        self.lost = False
        """Set by the heartbeat when another worker took the lease over."""

    def still_ours(self) -> bool:
        """Whether the lease file is still the one this lease created (its token):
        after a takeover, a release and a new claim the same file name can hold
        another worker's lease."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return False
        return isinstance(info, dict) and info.get("token") == self.token

    def release(self) -> None:
        _HEARTBEAT.forget(self)
        if not self.still_ours():  # taken over (and perhaps claimed again under this name): not ours to delete
            return
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
            self.ttl_s = math.nan
        if not MIN_TTL_S <= self.ttl_s < math.inf:  # 0 or less would claim live leases; NaN, inf never expire
            raise UserError(f"lease time to live {given!r} (SYNTHBENCH_LEASE_TTL or --lease-ttl): give a number "
                            f"of seconds of at least {MIN_TTL_S:g}, e.g. {DEFAULT_TTL_S:g} (the default), or "
                            f"unset SYNTHBENCH_LEASE_TTL.")

    def _folder(self) -> None:
        """The lease folder, made when missing; a file in its place is a
        :class:`UserError` (it used to read as "claimed by another worker", and
        a run waited on it forever)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UserError(f"{self.root} is not a folder, but the result store keeps its leases there; move "
                            f"the file away (nothing in it is a result) and run again.") from None

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
        info = info if isinstance(info, dict) else {}  # a hand-edited file: held, unnamed
        theirs = info.get("ttl_s")
        ttl = max(self.ttl_s, float(theirs)) if isinstance(theirs, (int, float)) and math.isfinite(theirs) \
            else self.ttl_s
        if age > ttl or _gone(info):
            return None
        return {**info, "age_s": age}

    def try_claim(self, key: str, task: str = "") -> Lease | None:
        """The lease on ``key`` if nobody holds a live one, else None. Never waits."""
        files = self._files(key)
        if files and self.holder(key) is not None:
            return None
        generation = files[-1][0] + 1 if files else 1
        path = self.root / f"{key}.{generation}.lease"
        self._folder()
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:  # another worker claimed (or took over) first
            return None
        token = uuid.uuid4().hex
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"owner": owner_id(), "task": task or key, "created": time.time(), "token": token,
                           "ttl_s": self.ttl_s, "machine": _MACHINE}, fh)
        except OSError as exc:
            # A full disk: the name was created, its content was not. Left there, the empty file read as a
            # live claim of nobody's, and the run started again once space was freed waited out its TTL.
            path.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        for _, old in files:  # expired generations: ours to clean up now
            try:
                old.unlink()
            except FileNotFoundError:
                pass
        lease = Lease(self, key, path, generation, token)
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
                if lease.lost:
                    continue
                if not lease.still_ours():  # removed, or the name now holds another worker's lease
                    lease.lost = True
                    continue
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
    """``--lease-ttl`` as given; a TTL under 3 heartbeats of a second, or one
    that never expires, is refused."""
    if value is None:
        return None
    if not MIN_TTL_S <= value < math.inf:
        raise UserError(f"--lease-ttl {value}: give at least {MIN_TTL_S:g} seconds, and a finite number (the "
                        f"default is {DEFAULT_TTL_S:g}).")
    return float(value)
