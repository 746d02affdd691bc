"""EDM sampling throughput in fp32 and bf16, at network batch 64 and 256, in one
run (issue 14), on the `fast` preset's fashion-mnist-sized network (1x28x28,
widths 16-32-64) with its 18 Heun steps. Off by default; measure with

    python -m pytest tests/benchmarks/test_edm_sampling_precision.py --benchmark-enable -s

The network is randomly initialised (speed does not depend on training); the
report also gives how far bf16 moves the finished uint8 images from fp32 ones.
"""

from __future__ import annotations

import time

import pytest
import torch

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.generators.diffusion import EDMDenoiser, build_unet
from synthbench.generators.edm import EDMGenerator

N = 256


def _generator(precision: str, eval_batch: int) -> EDMGenerator:
    p = PRESETS["fast"]
    given = {"eval_batch": str(eval_batch), "precision": precision}
    gen = EDMGenerator(**resolve_options(EDMGenerator.options, given, "edm"))
    gen.steps, gen.image_shape = p.gen_sampler_steps, (1, 28, 28)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gen.net = EDMDenoiser(build_unet((1, 28, 28), 10, p.gen_channels_large, p.gen_layers_per_block)).eval()
    return gen


def test_edm_sampling_fp32_vs_bf16(benchmark):
    if benchmark.disabled:
        pytest.skip("a measurement of minutes: run with --benchmark-enable")
    labels, seeds = torch.arange(N) % 10, list(range(N))

    def measure() -> dict[tuple[str, int], tuple[float, torch.Tensor]]:
        out = {}
        for precision in ("fp32", "bf16"):
            for batch in (64, 256):
                gen = _generator(precision, batch)
                wall, cpu = time.perf_counter(), time.process_time()
                images = gen.sample(labels, seeds)
                out[(precision, batch)] = (N / (time.process_time() - cpu), N / (time.perf_counter() - wall), images)
        return out

    rates = benchmark.pedantic(measure, rounds=1, iterations=1)
    base = rates[("fp32", 256)]
    print(f"\nEDM sampling, {N} images of 1x28x28, 18 Heun steps, {torch.get_num_threads()} threads")
    for (precision, batch), (per_cpu, per_wall, images) in rates.items():
        diff = (images.int() - base[2].int()).abs()
        print(f"{precision} batch {batch:3d}: {per_cpu:6.2f} images per CPU-s ({per_wall:6.2f}/s wall), "
              f"x{per_cpu / base[0]:.2f} of fp32 at 256; largest pixel change {int(diff.max())}/255, "
              f"{float((diff > 0).float().mean()):.1%} of pixels changed")
    for precision in ("fp32", "bf16"):  # the network batch never changes an image
        assert torch.equal(rates[(precision, 64)][2], rates[(precision, 256)][2])
    benchmark.extra_info.update({f"{p} batch {b}": r[0] for (p, b), r in rates.items()})
