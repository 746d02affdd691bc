"""``slurm``: the plan's waves (fits and classifiers, then pools, then cells;
``Plan.stages``) as SLURM job arrays through submitit's ``AutoExecutor``. The
driver (``synthbench run`` on a login node, or in a small job of its own) waits
for each wave before submitting the next; every job claims its task's lease on
the shared store, so a job that SLURM starts twice (requeue, preemption) never
computes a task twice at once. ``--slurm-cluster local`` runs the same path
with submitit's local executor (jobs as processes on this machine): the tests
use it, and it is a way to try a suite before queueing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from synthbench.benchmark.executors import need_cluster_extra, wants_gpu
from synthbench.benchmark.plan import Plan, Task
from synthbench.benchmark.progress import say
from synthbench.benchmark.tasks import TaskResult, run_task, worker_init
from synthbench.errors import UserError


def _slurm_task(task: Task, threads: int, errors: dict[str, str]) -> TaskResult:
    """What a SLURM job runs (pickled by submitit)."""
    worker_init(threads)
    try:
        return run_task(task, errors)
    except UserError as exc:  # submitit would hand the driver a traceback; the driver stops with the message
        return TaskResult(task.key, task.kind, "stopped", str(exc))


class SlurmExecutor:
    def __init__(self, folder: str | Path, threads: int | None = None, partition: str | None = None,
                 time_min: int | None = None, gpus_per_task: int | None = None, array_parallelism: int | None = None,
                 cluster: str | None = None):
        self.folder = Path(folder)
        self.threads = int(threads or 1)
        self.partition = partition
        self.time_min = int(time_min or 24 * 60)
        if gpus_per_task is not None and not float(gpus_per_task).is_integer():  # int() would round 0.5 to 0
            raise UserError(f"--gpus-per-task {gpus_per_task:g}: SLURM gives a job whole GPUs; give a whole "
                            f"number (a fraction of a GPU per task is for --executor ray).")
        self.gpus_per_task = gpus_per_task
        self.array_parallelism = array_parallelism
        self.cluster = cluster or "slurm"

    def _executor(self, gpus: int):
        try:
            import submitit
        except ImportError:
            raise need_cluster_extra("slurm", "submitit") from None
        try:
            ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=self.cluster)
        except Exception as exc:  # e.g. no sbatch on this machine
            raise UserError(f"--executor slurm could not start submitit's {self.cluster} executor ({exc}). Run it "
                            f"on a machine with SLURM's commands (a login node), or give --slurm-cluster local to "
                            f"run the jobs on this machine.") from None
        params = {"timeout_min": self.time_min, "cpus_per_task": self.threads, "name": "synthbench"}
        if gpus:
            params["gpus_per_node"] = gpus
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.array_parallelism:
            params["slurm_array_parallelism"] = int(self.array_parallelism)
        ex.update_parameters(**params)
        return ex

    def run(self, plan: Plan, done: Callable[[TaskResult], None]) -> None:
        from synthbench.benchmark.driver import dep_errors

        gpus = int(self.gpus_per_task) if self.gpus_per_task is not None else int(any(map(wants_gpu, plan.tasks)))
        ex = self._executor(gpus)
        results: dict[str, TaskResult] = {}
        for wave in plan.stages():
            jobs = ex.map_array(_slurm_task, wave, [self.threads] * len(wave),
                                [dep_errors(t, results) for t in wave])
            say(f"slurm executor: submitted {len(wave)} {'/'.join(sorted({t.kind for t in wave}))} tasks as job "
                f"array {jobs[0].job_id.split('_')[0] if jobs else '-'} (logs under {self.folder})")
            for task, job in zip(wave, jobs):
                try:
                    result = job.result()
                except UserError:
                    raise
                except Exception as exc:  # the job died (time limit, preemption, node failure)
                    result = TaskResult(task.key, task.kind, "failed",
                                        f"SLURM job {job.job_id} ended without a result: {' '.join(str(exc).split())[:400]}")
                results[result.key] = result
                done(result)
