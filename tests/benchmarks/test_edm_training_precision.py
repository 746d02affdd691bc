"""EDM training steps in fp32, bf16 (``train_precision``) and bf16 compiled
(``recipe["compile"]``, which no option sets yet: see ``train_edm``), in one
run (issue 14): the in-suite training loop itself
(:func:`~synthbench.generators.diffusion.train_edm`: data, augmentation, loss,
Adam, EMA) on the `fast` preset's fashion-mnist network
(1x28x28, widths 16-32-64, batch 128). Off by default; measure with

    python -m pytest tests/benchmarks/test_edm_training_precision.py --benchmark-enable -s

The three take turns, ``SYNTHBENCH_BENCH_ROUNDS`` rounds (default 3) of
``SYNTHBENCH_BENCH_STEPS`` steps (default 8) each, and each reports its median,
so a machine whose speed drifts slows all alike. The compiled arm compiles once,
in a first call of two steps before the rounds, whose wall time is reported
apart (inductor's on-disk cache makes it seconds after a first run on a machine,
a minute or more before). The report gives steps per CPU-second and the ratios;
a step's arithmetic does not depend on the data, so the first 3,000
fashion-mnist train images stand in for any.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch

from synthbench.benchmark.context import FitContext
from synthbench.benchmark.datasets import load_dataset
from synthbench.benchmark.presets import PRESETS
from synthbench.errors import UserError
from synthbench.generators.diffusion import train_edm, unet_recipe

ARMS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16 compiled": ("bf16", True)}
"""Each arm's (train_precision, compile)."""


def test_edm_training_precision(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("a measurement of minutes: run with --benchmark-enable")
    try:
        ds = load_dataset("fashion-mnist").capped(PRESETS["fast"].max_train_per_class)
    except UserError as exc:
        pytest.skip(f"fashion-mnist is not available here: {exc}")
    steps = int(os.environ.get("SYNTHBENCH_BENCH_STEPS", 8))
    rounds = int(os.environ.get("SYNTHBENCH_BENCH_ROUNDS", 3))

    def run(arm: str, n_steps: int, where: str) -> float:
        """CPU-seconds of one training of ``n_steps`` steps."""
        precision, compile = ARMS[arm]
        ctx = FitContext.from_dataset(ds, PRESETS["fast"], torch.device("cpu"), tmp_path / where)
        cpu = time.process_time()
        train_edm(ctx, unet_recipe(ctx, n_steps, 1e-3, 0, True, precision, compile))
        return time.process_time() - cpu

    wall = time.perf_counter()
    run("bf16 compiled", 2, "compile")
    compile_wall = time.perf_counter() - wall

    def measure() -> dict[str, list[float]]:
        per_cpu: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for r in range(rounds):
            for arm in ARMS:
                per_cpu[arm].append(steps / run(arm, steps, f"{arm}{r}"))
        return per_cpu

    per_cpu = benchmark.pedantic(measure, rounds=1, iterations=1)
    rate = {arm: statistics.median(v) for arm, v in per_cpu.items()}
    print(f"\nEDM training, fast fashion-mnist network, batch {PRESETS['fast'].gen_batch_size}, "
          f"{torch.get_num_threads()} threads, median of {rounds} rounds of {steps} steps")
    for arm in ARMS:
        print(f"{arm}: {rate[arm]:.3f} steps per CPU-s ({1000 / rate[arm]:.0f} ms of CPU a step), "
              f"x{rate[arm] / rate['fp32']:.2f} of fp32, x{rate[arm] / rate['bf16']:.2f} of bf16")
    print(f"bf16 compiled, first call (2 steps, compiling included): {compile_wall:.1f} s wall")
    benchmark.extra_info.update(rate, compile_wall_s=compile_wall)
    assert all(r > 0 for r in rate.values())
