"""``inline``: every task in this process, in plan order (dependencies first)."""

from __future__ import annotations

from typing import Callable

from synthbench.benchmark.plan import Plan
from synthbench.benchmark.tasks import TaskResult, run_task


class InlineExecutor:
    """Tasks another run holds (two ``synthbench run`` on one store) are put off
    rather than waited for, so this run does what it can meanwhile. After each
    task it looks again from the top of the plan: a put-off task whose holder
    has finished runs next, so plan order (each seed's cells right after the
    work they share) holds across runs instead of a put-off task, and every
    cell depending on it, going to the end of the whole suite. When everything
    left is another run's, it waits for the first and reads what that run wrote."""

    def run(self, plan: Plan, done: Callable[[TaskResult], None]) -> None:
        from synthbench.benchmark.driver import dep_errors

        results: dict[str, TaskResult] = {}
        pending = list(plan.tasks)
        while pending:
            put_off: set[str] = set()  # this pass's: held elsewhere, or after such a task
            for task in pending:
                result = None
                if not put_off.intersection(task.deps):
                    result = run_task(task, dep_errors(task, results), wait=False)
                if result is None or result.outcome == "busy":
                    put_off.add(task.key)
                    continue
                break
            else:  # everything left is another run's: wait for the first
                task = pending[0]
                result = run_task(task, dep_errors(task, results), wait=True)
            results[task.key] = result
            done(result)
            pending.remove(task)
