"""``processes``: a pool of worker processes on this machine
(``concurrent.futures`` with the ``spawn`` start method, so no worker inherits
the driver's threads or CUDA state).

On a machine with GPUs each worker gets one (``CUDA_VISIBLE_DEVICES``) and
``--workers`` defaults to their number; on a CPU the cores are split between the
workers (``--threads`` each, default cores // workers), and the thread count goes
into every cache key as always. A task is submitted once the tasks it depends
on are finished and a worker is free, in plan order. A worker that dies (killed, out of memory) breaks the pool: a
new pool is started and the unfinished tasks are submitted again; the dead
worker's leases are void at once (its process is gone from this machine,
``lease.py``) and its tasks are taken over.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from synthbench.benchmark.plan import Plan, Task
from synthbench.benchmark.progress import say
from synthbench.benchmark.tasks import TaskResult, run_task, worker_init
from synthbench.errors import UserError

RESTARTS = 3
"""Pools started again after a worker died, before the run gives up."""


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # no usable CUDA: a CPU machine
        return 0


def forwarded_env() -> dict[str, str]:
    """The driver's settings a worker must share (lease TTL, progress output)."""
    return {k: v for k, v in os.environ.items() if k.startswith("SYNTHBENCH_")}


class ProcessExecutor:
    def __init__(self, workers: int | None = None, threads: int | None = None):
        gpus = _gpu_count()
        self.gpus = gpus
        self.workers = int(workers or gpus or max(1, (os.cpu_count() or 1) // (threads or 1)))
        self.threads = int(threads or max(1, (os.cpu_count() or 1) // self.workers))

    def run(self, plan: Plan, done: Callable[[TaskResult], None]) -> None:
        from synthbench.benchmark.driver import dep_errors

        results: dict[str, TaskResult] = {}
        pending = list(plan.tasks)
        say(f"processes executor: {self.workers} workers x {self.threads} threads"
            + (f", one of {self.gpus} GPUs each" if self.gpus else ""))
        for attempt in range(RESTARTS + 1):
            ctx = multiprocessing.get_context("spawn")
            gpu_ids = ctx.Queue() if self.gpus else None
            for i in range(min(self.workers, self.gpus)):
                gpu_ids.put(i)
            try:
                with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=worker_init,
                                         initargs=(self.threads, gpu_ids, forwarded_env(), os.getpid())) as pool:
                    self._drive(pool, pending, results, done, dep_errors)
                return
            except BrokenProcessPool:
                pending = [t for t in pending if t.key not in results]
                if attempt == RESTARTS:
                    raise UserError(f"Worker processes died {RESTARTS + 1} times (killed, or out of memory); "
                                    f"{len(pending)} tasks are left. Every finished record is kept: run the same "
                                    f"command again, with fewer --workers if memory ran out.") from None
                print(f"warning: a worker process died; starting a new pool for the {len(pending)} unfinished tasks "
                      f"(the dead worker's claims are void and taken over)", file=sys.stderr,
                      flush=True)

    def _drive(self, pool: ProcessPoolExecutor, pending: list[Task], results: dict[str, TaskResult],
               done: Callable[[TaskResult], None], dep_errors: Callable) -> None:
        waiting = [t for t in pending if t.key not in results]
        keys = {t.key for t in waiting}
        running: dict[Future, Task] = {}
        try:
            while waiting or running:
                for task in list(waiting):
                    if len(running) >= self.workers:  # no more than the workers can start now: see below
                        break
                    if not any(d in keys and d not in results for d in task.deps):
                        running[pool.submit(run_task, task, dep_errors(task, results))] = task
                        waiting.remove(task)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    result = future.result()  # a UserError or a broken pool stops the run here
                    results[result.key] = result
                    done(result)
        except BrokenProcessPool:  # the pool is gone (a worker died): run() starts another and goes on
            raise
        except BaseException:
            # Leaving the pool waits for every task handed to it. Every task whose dependencies were done
            # used to be handed over at once (a suite's fits, all of them, at the start), so a UserError
            # the first fit raised (a damaged cache file) reached the user only after every other fit had
            # run. Only as many tasks as there are workers are handed over now: the others are running.
            others = sum(not future.done() for future in running)
            if others:
                print(f"stopping: waiting for the {others} task(s) the other workers are running (their work "
                      f"is kept)", file=sys.stderr, flush=True)
            raise
