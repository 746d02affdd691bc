"""The sample cache: generated images kept on disk and shared between protocols.

A pool is keyed by the fitted generator's fingerprint, the run seed and the label
stream (the real train labels, cycled). Sample i always has the same label and
seed (``seeding.sample_seeds``), so a smaller request is a prefix of a larger
pool and a larger request generates only the missing tail: ``replace`` (x1),
``augment`` and the x1..x10 ``scaleup`` draw one pool between them. Pools are
saved after every block, so a killed run keeps what it generated, with each
block's generation seconds, so that the pool task that completes it charges
them too (:meth:`SampleCache.claim_seconds`).
Files are plain ``.npz`` arrays in the disk cache (``cache.py``), which also
sets the policy for an unreadable one.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from synthbench.benchmark import charges
from synthbench.benchmark.cache import NPZ, DiskCache
from synthbench.benchmark.datasets import Split
from synthbench.benchmark.progress import say
from synthbench.benchmark.worklog import log_computed
from synthbench.errors import UserError

BLOCK = 1024


def _length(path: Path) -> int:
    """How many images the pool file holds, from its small labels array alone:
    what a worker waiting for another's pool polls (the full, digest-checked read
    comes once the pool is long enough)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return len(z["labels"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # absent, replaced right now, or corrupt (the
        return 0  # full read then names the file)


class SampleCache:
    def __init__(self, root: str | Path):
        self.cache = DiskCache(root)

    def path(self, generator, run_seed: int, label_stream: torch.Tensor) -> Path:
        identity = (generator.fingerprint(), run_seed, label_stream.to(torch.int64))
        return self.cache.path("samples", generator.name, identity, NPZ)

    def pool(self, generator, run_seed: int, label_stream: torch.Tensor, n: int) -> Split:
        """The first ``n`` samples of the pool (labels ``label_stream`` cycled). The
        harness passes its guarded handle (``guard.Guarded``), which checks every
        block against the adapter contract before it is kept."""
        labels = label_stream[torch.arange(n) % len(label_stream)]
        path = self.path(generator, run_seed, label_stream)
        have_x = self._read(path, labels, n)["images"]
        if len(have_x) < n:
            # One worker extends a pool at a time; another that needs it waits and reads.
            with self._extending(path, n) as mine:
                if mine:
                    have_x = self._extend(generator, run_seed, path, labels, self._read(path, labels, n), n)
            if len(have_x) < n:
                have_x = self._read(path, labels, n)["images"]
        return Split(torch.from_numpy(np.ascontiguousarray(have_x[:n])), labels.clone())

    def claim_seconds(self, generator, run_seed: int, label_stream: torch.Tensor) -> float | None:
        """The generation seconds of the pool's blocks that no record has been
        charged yet, now marked charged: what a pool task charges, including blocks
        a killed run generated and kept. None for a pool written before pools
        kept their blocks' seconds."""
        path = self.path(generator, run_seed, label_stream)
        with self._extending(path, 0):  # no extension is written meanwhile
            pool = self._read(path, label_stream[:0], 0)
            if "block_s" not in pool:
                return None
            seconds = float(pool["block_s"][~pool["block_charged"]].sum())
            if seconds:
                self.cache.save(path, NPZ, {**pool, "block_charged": np.ones_like(pool["block_charged"])})
            return seconds

    def _extending(self, path: Path, n: int):
        """The claim on extending (or rewriting) the pool file: held until the pool
        has ``n`` images or the holder is done."""
        return self.cache.leases.exclusive(f"pool-{path.stem}", lambda: n > 0 and _length(path) >= n,
                                           task=f"sample pool {path.name}")

    def _read(self, path: Path, labels: torch.Tensor, n: int) -> dict[str, np.ndarray]:
        """The pool file's arrays as far as they are on disk (none: empty images);
        the labels must match the request's."""
        if not path.exists():
            return {"images": np.zeros((0,), dtype=np.uint8)}
        pool = self.cache.read(path, NPZ, "sample pool")
        m = min(len(pool["images"]), n)
        if not np.array_equal(pool["labels"][:m], labels[:m].numpy()):
            raise UserError(f"The cached sample pool {path} does not match its key. Delete it and run again.")
        return pool

    def _extend(self, generator, run_seed: int, path: Path, labels: torch.Tensor, pool: dict[str, np.ndarray],
                n: int) -> np.ndarray:
        """Generate the pool's missing tail block by block, saving after each with
        its seconds (``block_s``). A block generated inside a cell is charged with
        the cell's time; one generated by a pool task waits for the task's
        :meth:`claim_seconds`."""
        have_x = pool["images"]
        have = len(have_x)
        if have >= n:
            return have_x
        say(f"{generator.name}: generating samples {have}..{n - 1} (cached pool: {path.name})")
        block_s = list(pool.get("block_s", np.zeros(0)))
        charged = list(pool.get("block_charged", np.ones(len(block_s), dtype=bool)))
        in_cell = charges.current() is not None
        parts = [have_x] if have else []
        for start in range(have, n, BLOCK):
            stop = min(n, start + BLOCK)
            began = time.perf_counter()
            imgs = generator.sample_pool(labels[:stop], run_seed, start)
            block_s.append(time.perf_counter() - began)
            charged.append(in_cell)
            parts.append(imgs.numpy())
            all_x = np.concatenate(parts)
            self.cache.save(path, NPZ, {"images": all_x, "labels": labels[:stop].numpy(),
                                        "block_s": np.asarray(block_s, dtype=np.float64),
                                        "block_charged": np.asarray(charged, dtype=bool)})
            log_computed(self.cache.root.parent, "samples", f"{path.name}[{start}:{stop}]")
            parts = [all_x]
        return parts[0]
