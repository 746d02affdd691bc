"""``inline``: every task in this process, in plan order (dependencies first)."""

from __future__ import annotations

import time
from typing import Callable

from synthbench.benchmark.plan import Plan
from synthbench.benchmark.tasks import TaskResult, run_task

POLL_S = 1.0


class InlineExecutor:
    """Tasks another run holds (two ``synthbench run`` on one store) are put off
    rather than waited for, so this run does what it can meanwhile; at the end it
    waits for them and reads what the other run wrote."""

    def run(self, plan: Plan, done: Callable[[TaskResult], None]) -> None:
        from synthbench.benchmark.driver import dep_errors

        results: dict[str, TaskResult] = {}
        pending = list(plan.tasks)
        while pending:
            later, later_keys = [], set()
            for task in pending:
                result = None
                if not later_keys.intersection(task.deps):
                    result = run_task(task, dep_errors(task, results), wait=False)
                if result is None or result.outcome == "busy":  # after a task put off, or another run's
                    later.append(task)
                    later_keys.add(task.key)
                    continue
                results[task.key] = result
                done(result)
            if later and len(later) == len(pending):  # everything left is another run's: wait for the first
                task = later.pop(0)
                result = run_task(task, dep_errors(task, results), wait=True)
                results[task.key] = result
                done(result)
            elif later:
                time.sleep(0 if len(later) < len(pending) else POLL_S)
            pending = later
