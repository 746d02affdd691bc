"""Findings of the determinism-contract review (digits, preset smoke): each test
fails on the code before its fix."""

from __future__ import annotations

from pathlib import Path

SUITE = """name: {name}
datasets: [digits]
preset: smoke
seeds: [0]
device: cpu
generators: {{edm: {{}}}}
protocols: {{replace: {{}}, fidelity: {{}}}}
"""


def _plan(tmp_path: Path, threads: int):
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.plan import build_plan
    from synthbench.benchmark.suite import load_suite

    suite = tmp_path / f"t{threads}.yaml"
    suite.write_text(SUITE.format(name=f"t{threads}"))
    return build_plan(suite_grids(load_suite(suite), str(tmp_path / "r"), threads=threads))


def test_reference_classifier_task_is_keyed_by_thread_count_like_its_weights_file(tmp_path):
    """The reference classifier's weights file is keyed by the thread count
    (``compute_tag``), and so is every fit task; the classifier *task* was not.
    Found running a suite at --threads 1 (replace) and then at --threads 2
    (replace, fidelity) on one store: the 2-thread run trained a second
    reference classifier and wrote its reference_s (1.104 s) over the 1-thread
    run's marker, whose .charged already named the 1-thread replace cell, so
    the new fidelity record carried no reference_s: the training was charged
    to no record."""
    import torch

    before = torch.get_num_threads()
    try:
        one, two = (_plan(tmp_path, threads) for threads in (1, 2))
    finally:
        torch.set_num_threads(before)
    keys = {threads: {t.key for t in plan.by_kind(kind)} for threads, plan in ((1, one), (2, two))
            for kind in ("classifier",)}
    fits = {threads: {t.key for t in plan.by_kind("fit")} for threads, plan in ((1, one), (2, two))}
    assert fits[1].isdisjoint(fits[2])  # the fits already were
    assert keys[1] and keys[2]
    assert keys[1].isdisjoint(keys[2]), keys
