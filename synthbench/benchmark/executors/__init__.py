"""Executors: who runs a plan's tasks (``--executor``). Each takes a
:class:`~synthbench.benchmark.plan.Plan` and calls ``done(TaskResult)`` as tasks
finish; the store is where their work meets.

- ``inline``: in this process, in plan order (the default);
- ``processes``: a pool of worker processes on this machine (one per GPU, or the
  CPU cores split between them), from the standard library;
- ``ray``: each task a Ray task (``pip install -e ".[cluster]"``);
- ``slurm``: job arrays through submitit (``pip install -e ".[cluster]"``).

A new executor is a module here with a class that has ``run(plan, done)``, and a
line in :func:`make_executor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthbench.benchmark.executors.inline import InlineExecutor
from synthbench.errors import UserError

if TYPE_CHECKING:
    from synthbench.benchmark.plan import Task

EXECUTORS = ("inline", "processes", "ray", "slurm")


def make_executor(name: str, **options: Any) -> Any:
    """The executor ``name`` with its options (``workers``, ``threads``,
    ``ray_address``, ``slurm_*``); a clear error when its engine is missing."""
    if name == "inline":
        return InlineExecutor()
    if name == "processes":
        from synthbench.benchmark.executors.processes import ProcessExecutor

        return ProcessExecutor(workers=options.get("workers"), threads=options.get("threads"))
    if name == "ray":
        from synthbench.benchmark.executors.ray_cluster import RayExecutor

        return RayExecutor(address=options.get("ray_address"), workers=options.get("workers"),
                           threads=options.get("threads"), gpus_per_task=options.get("gpus_per_task"))
    if name == "slurm":
        from synthbench.benchmark.executors.slurm import SlurmExecutor

        return SlurmExecutor(folder=options["folder"], threads=options.get("threads"),
                             partition=options.get("slurm_partition"), time_min=options.get("slurm_time"),
                             gpus_per_task=options.get("gpus_per_task"),
                             array_parallelism=options.get("slurm_array_parallelism"),
                             cluster=options.get("slurm_cluster"))
    raise UserError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}.")


def need_cluster_extra(engine: str, module: str) -> UserError:
    return UserError(f"--executor {engine} needs the Python package `{module}`, which is not installed. Install "
                     f"synthbench's cluster extra: pip install -e \".[cluster]\" (or pip install {module}).")


def wants_gpu(task: Task) -> bool:
    """Whether a task's setting asks for a GPU: ``cuda``, or ``auto`` where the
    driver's machine has one (a head node without GPUs should say ``cuda``)."""
    if task.setting.device.startswith("cuda"):
        return True
    if task.setting.device == "auto":
        import torch

        return torch.cuda.is_available()
    return False
