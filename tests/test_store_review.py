"""The result store and its executors as a demanding user meets them (the store
review): an error the user must fix stops a run with one paragraph on every
executor, and a run killed with ``kill -9`` resumes without waiting out its own
dead claims."""

from __future__ import annotations

import pytest

from synthbench.benchmark.plan import Setting, Task
from synthbench.benchmark.tasks import TaskResult
from synthbench.errors import UserError


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
