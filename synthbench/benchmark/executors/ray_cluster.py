"""``ray``: each task a Ray task, with ``num_cpus`` = the threads it uses and
``num_gpus`` = the GPUs it needs; a task's dependencies are passed as the
object references of the tasks it waits for, so Ray starts it when they are
done. ``--ray-address auto`` (or ``ray://HOST:10001``) joins a running
cluster; without it Ray starts on this machine with ``--workers`` x
``--threads`` CPUs. Ray runs a task again when its worker dies (up to
:data:`RETRIES` times); the lease of the dead attempt is void at once when
its process was on the same machine as the retry, else once it expires. A task
whose worker died every time stops the run with one paragraph, as the
``processes`` executor's pool that broke too often does.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from synthbench.benchmark.executors import need_cluster_extra, wants_gpu
from synthbench.benchmark.executors.processes import forwarded_env
from synthbench.benchmark.plan import Plan, Task
from synthbench.benchmark.progress import say
from synthbench.benchmark.tasks import TaskResult, run_task, worker_init
from synthbench.errors import UserError

RETRIES = 3


def _ray_task(task: Task, threads: int, dep_keys: list[str], *deps: TaskResult) -> TaskResult:
    """What a Ray worker runs: the results of the tasks it depends on arrive
    as arguments (Ray resolved them), their errors go to the task.

    An error the user must fix (:class:`UserError`: a damaged cache file, a
    store that refuses writes) comes back as a ``stopped`` result, as from a
    SLURM job, and the driver stops with its paragraph: raised here, Ray hands
    the driver a ``RayTaskError`` whose text is the worker's whole traceback,
    and the CLI printed that. A task whose dependency stopped stops with it
    rather than running on what is missing."""
    stopped = next((r for r in deps if r.outcome == "stopped"), None)
    if stopped is not None:
        return TaskResult(task.key, task.kind, "stopped", stopped.error)
    worker_init(threads)
    errors = {r.key: r.error or "failed" for r in deps if r.outcome == "failed"}
    try:
        return run_task(task, errors)
    except UserError as exc:
        return TaskResult(task.key, task.kind, "stopped", str(exc))


class RayExecutor:
    def __init__(self, address: str | None = None, workers: int | None = None, threads: int | None = None,
                 gpus_per_task: float | None = None):
        self.address = address
        self.threads = int(threads or 1)
        self.workers = workers
        self.gpus_per_task = gpus_per_task

    def run(self, plan: Plan, done: Callable[[TaskResult], None]) -> None:
        try:
            import ray
        except ImportError:
            raise need_cluster_extra("ray", "ray") from None
        started = False
        if not ray.is_initialized():
            env = {"env_vars": forwarded_env()}
            if self.address:
                say(f"ray executor: joining the cluster at {self.address}")
                ray.init(address=self.address, runtime_env=env, log_to_driver=False)
            else:
                cpus = (self.workers or max(1, (os.cpu_count() or 1) // self.threads)) * self.threads
                say(f"ray executor: starting Ray on this machine with {cpus} CPUs")
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env=env)
            started = True
        try:
            self._submit_and_collect(ray, plan, done)
        finally:
            if started:
                ray.shutdown()

    def _gpus(self, task: Task) -> float:
        if self.gpus_per_task is not None:
            return float(self.gpus_per_task)
        return float(wants_gpu(task))

    def _submit_and_collect(self, ray: Any, plan: Plan, done: Callable[[TaskResult], None]) -> None:
        remote = ray.remote(_ray_task)
        refs: dict[str, Any] = {}
        for task in plan.tasks:
            dep_keys = [d for d in task.deps if d in refs]
            refs[task.key] = remote.options(num_cpus=self.threads, num_gpus=self._gpus(task), max_retries=RETRIES,
                                            name=task.label[:60]).remote(task, self.threads, dep_keys,
                                                                         *(refs[d] for d in dep_keys))
        label = {ref: task.label for task, ref in zip(plan.tasks, refs.values())}
        pending = list(refs.values())
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise UserError(ray_failure(label[ref], exc)) from None
                done(result)  # a stopped task's UserError is raised by ``done``


DEAD_WORKER_ERRORS = {"WorkerCrashedError", "OutOfMemoryError", "NodeDiedError"}
"""Ray's errors (by class name, as ``ray.exceptions`` names them) for a task whose worker died."""


def ray_failure(label: str, exc: BaseException) -> str:
    """The one paragraph for a task Ray could not finish: a worker that died on
    every try (killed, out of memory, its node lost) is told so; any other Ray
    error (a cancelled task, a lost object, an error inside Ray) is not
    blamed on a dead worker."""
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    kept = "Every finished record is kept: run the same command again"
    if any(c.__name__ in DEAD_WORKER_ERRORS for c in type(exc).__mro__):
        return (f"{label}: Ray ran it {RETRIES + 1} times and its worker died each time ({type(exc).__name__}: "
                f"{why[:300]}). {kept}, with fewer --workers or more memory per task if memory ran out.")
    return (f"{label}: Ray could not finish it ({type(exc).__name__}: {why[:300]}). {kept}; if it fails again, run "
            f"it with --executor processes or inline to see the task's own error.")
