"""Shared fixtures: the digits dataset capped as the smoke preset caps it, a
fitted smoke EDM, and a result store in a temporary folder. Progress bars off."""

from __future__ import annotations

import os
from contextlib import contextmanager

os.environ.setdefault("SYNTHBENCH_PROGRESS", "0")

import pytest
import torch

from synthbench.benchmark import progress
from synthbench.benchmark.datasets import load_dataset
from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.plugins import GENERATORS
from synthbench.generators.base import FitContext

progress.set_enabled(False)

MAX_WORKERS = 4
"""``-n auto`` (pyproject's addopts) runs the tests in one process per core, this
many at most. Most tests are single-threaded Python around small tensors, so a
2-core machine runs them in about half the time in 2 processes (988 s measured
against about 1,600 s estimated in one). The cap keeps a many-core machine from loading
torch and its own copy of the session fixtures (smoke fits; about 1.3 GB a
process) dozens of times over; 4 itself was not measured."""


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config):
    if config.getoption("benchmark_enable", False):
        return 0  # a speed measurement needs the machine to itself: no workers beside it
    return max(1, min(_cores(), MAX_WORKERS))


if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # share the cores between the workers instead of each one spinning threads for all of them (a busy
    # core makes torch's spinning threads 2-10x slower); a test that sets a thread count still gets it
    torch.set_num_threads(max(1, _cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def smoke_digits(digits):
    return digits.capped(PRESETS["smoke"].max_train_per_class)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synthbench-cache")


def fit_generator(name: str, dataset, cache_dir, **options):
    cls = GENERATORS.get(name)
    gen = cls(**resolve_options(cls.options, options, name))
    return gen.fitted(FitContext.from_dataset(dataset, PRESETS["smoke"], torch.device("cpu"), cache_dir))


def run_cells(dataset, generators, protocol, seeds, store, preset="smoke"):
    """The cells of one protocol on a loaded dataset, computed (or read) through
    the run grid: ``generators``/``protocol`` as ``resolve_grid`` takes them."""
    from synthbench.benchmark.runner import resolve_grid, run_protocol

    grid = resolve_grid(dataset, generators, protocol, preset, seeds, "cpu")
    return run_protocol(grid, grid.protocols[0], store)


@pytest.fixture(scope="session")
def reference_classifier(digits):
    """A SmallCNN trained on the full real digits train split (a few seconds)."""
    from synthbench.benchmark.trainer import train_classifier

    return train_classifier(digits.train.images, digits.train.labels, 10, PRESETS["fast"], 0,
                            torch.device("cpu"), hflip=False, epochs=8)


@contextmanager
def killed_after(monkeypatch, step: int, only=lambda run: True):
    """Inside, a training loop (``snapshots.Resumable``) dies right after its step
    ``step`` is done and its snapshot, if due, written: a killed worker. The
    block must end in that death."""
    from synthbench.benchmark.snapshots import Resumable

    step_done = Resumable.step_done

    def dies(self, done):
        step_done(self, done)
        if done == step and only(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(Resumable, "step_done", dies)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(Resumable, "step_done", step_done)
