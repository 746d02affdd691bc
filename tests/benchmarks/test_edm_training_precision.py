"""EDM training steps in fp32 and bf16 (``train_precision``), in one run (issue
14): the in-suite training loop itself (:func:`~synthbench.generators.diffusion.train_edm`:
data, augmentation, loss, Adam, EMA) on the `fast` preset's fashion-mnist network
(1x28x28, widths 16-32-64, batch 128). Off by default; measure with

    python -m pytest tests/benchmarks/test_edm_training_precision.py --benchmark-enable -s

The two precisions take turns, ``SYNTHBENCH_BENCH_ROUNDS`` rounds (default 3)
of ``SYNTHBENCH_BENCH_STEPS`` steps (default 8) each, and each reports its
median, so a machine whose speed drifts slows both alike. The report gives
steps per CPU-second and the ratio; a step's arithmetic does not depend on the
data, so the first 3,000 fashion-mnist train images stand in for any.
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

PRECISIONS = ("fp32", "bf16")


def test_edm_training_precision(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("a measurement of minutes: run with --benchmark-enable")
    try:
        ds = load_dataset("fashion-mnist").capped(PRESETS["fast"].max_train_per_class)
    except UserError as exc:
        pytest.skip(f"fashion-mnist is not available here: {exc}")
    steps = int(os.environ.get("SYNTHBENCH_BENCH_STEPS", 8))
    rounds = int(os.environ.get("SYNTHBENCH_BENCH_ROUNDS", 3))

    def measure() -> dict[str, list[float]]:
        per_cpu: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for r in range(rounds):
            for precision in PRECISIONS:
                ctx = FitContext.from_dataset(ds, PRESETS["fast"], torch.device("cpu"), tmp_path / f"{precision}{r}")
                recipe = unet_recipe(ctx, steps, 1e-3, 0, True, precision)
                cpu = time.process_time()
                train_edm(ctx, recipe)
                per_cpu[precision].append(steps / (time.process_time() - cpu))
        return per_cpu

    per_cpu = benchmark.pedantic(measure, rounds=1, iterations=1)
    rate = {p: statistics.median(v) for p, v in per_cpu.items()}
    print(f"\nEDM training, fast fashion-mnist network, batch {PRESETS['fast'].gen_batch_size}, "
          f"{torch.get_num_threads()} threads, median of {rounds} rounds of {steps} steps")
    for precision in PRECISIONS:
        print(f"{precision}: {rate[precision]:.3f} steps per CPU-s ({1000 / rate[precision]:.0f} ms of CPU a step), "
              f"x{rate[precision] / rate['fp32']:.2f} of fp32")
    benchmark.extra_info.update(rate)
    assert all(r > 0 for r in rate.values())
