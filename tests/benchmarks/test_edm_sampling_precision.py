"""EDM sampling throughput in fp32 and bf16, eager and compiled, at network batch
64 and 256, in one run (issue 14), on the `fast` preset's fashion-mnist-sized
network (1x28x28, widths 16-32-64) with its 18 Heun steps. Off by default;
measure with

    python -m pytest tests/benchmarks/test_edm_sampling_precision.py --benchmark-enable -s

The network is randomly initialised (speed does not depend on training). The
variants take turns, ``SYNTHBENCH_BENCH_ROUNDS`` rounds (default 2), and each
reports its median, so a machine whose speed drifts during the run (a shared
one) slows every variant alike. The report gives images per CPU-second (and
per wall second) against today's default (fp32, eager, batch 256), a compiled
variant's one-off compile time (measured apart, on one network call), and how
far each variant moves the finished uint8 images from the default's. On a CPU
without bf16 instructions (AVX512-BF16 or AMX), where torch emulates bf16, the
bf16 variants are left out and compiled fp32 at batch 64 is measured instead.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS, bf16_instructions
from synthbench.generators.diffusion import EDMDenoiser, build_unet, denoise_in_chunks
from synthbench.generators.edm import EDMGenerator

N = 256
VARIANTS = [("fp32", False, 64), ("fp32", False, 256), ("bf16", False, 256), ("fp32", True, 256),
            ("bf16", True, 256), ("bf16", True, 64)]
"""(precision, compile, network batch); the first fp32 eager row at 256 is the base."""
FP32_ONLY = [("fp32", False, 64), ("fp32", False, 256), ("fp32", True, 256), ("fp32", True, 64)]
"""The variants where bf16 would be emulated."""


def _generator(precision: str, compile: bool, eval_batch: int) -> EDMGenerator:
    p = PRESETS["fast"]
    given = {"eval_batch": str(eval_batch), "precision": precision, "compile": str(compile)}
    gen = EDMGenerator(**resolve_options(EDMGenerator.options, given, "edm"))
    gen.steps, gen.image_shape, gen.conditional = p.gen_sampler_steps, (1, 28, 28), True
    gen.device = torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gen.net = EDMDenoiser(build_unet((1, 28, 28), 10, p.gen_channels_large, p.gen_layers_per_block)).eval()
    return gen


def _warm_up(gen: EDMGenerator) -> float:
    """Wall seconds of one network call: a compiled variant's compile time (wall,
    because inductor builds its kernels in worker processes)."""
    wall = time.perf_counter()
    denoise_in_chunks(gen.net, torch.zeros(1, 1, 28, 28), 1.0, torch.zeros(1, dtype=torch.long),
                      gen.opts["eval_batch"], gen.device, gen.opts["precision"], gen.opts["compile"])
    return time.perf_counter() - wall


def test_edm_sampling_precision_and_compile(benchmark):
    if benchmark.disabled:
        pytest.skip("a measurement of minutes: run with --benchmark-enable")
    labels, seeds = torch.arange(N) % 10, list(range(N))
    variants = VARIANTS if bf16_instructions("cpu") else FP32_ONLY

    def measure() -> dict[tuple[str, bool, int], tuple[float, float, float, torch.Tensor]]:
        gens = {v: _generator(*v) for v in variants}
        warm = {v: _warm_up(gen) for v, gen in gens.items()}
        per_cpu: dict = {v: [] for v in variants}
        per_wall: dict = {v: [] for v in variants}
        images = {}
        for _ in range(int(os.environ.get("SYNTHBENCH_BENCH_ROUNDS", 2))):
            for v, gen in gens.items():
                wall, cpu = time.perf_counter(), time.process_time()
                images[v] = gen.sample(labels, seeds)
                per_cpu[v].append(N / (time.process_time() - cpu))
                per_wall[v].append(N / (time.perf_counter() - wall))
        return {v: (statistics.median(per_cpu[v]), statistics.median(per_wall[v]), warm[v], images[v])
                for v in variants}

    rates = benchmark.pedantic(measure, rounds=1, iterations=1)
    base = rates[("fp32", False, 256)]
    print(f"\nEDM sampling, {N} images of 1x28x28, 18 Heun steps, {torch.get_num_threads()} threads, "
          f"median of {os.environ.get('SYNTHBENCH_BENCH_ROUNDS', 2)} rounds")
    for (precision, compile, batch), (per_cpu, per_wall, warm, images) in rates.items():
        diff = (images.int() - base[3].int()).abs()
        name = f"{precision} {'compiled' if compile else 'eager'} batch {batch}"
        print(f"{name:<24}: {per_cpu:6.2f} images per CPU-s ({per_wall:6.2f}/s wall), x{per_cpu / base[0]:.2f} "
              f"of fp32 eager at 256; first call {warm:5.1f} s; largest pixel change {int(diff.max())}/255, "
              f"{float((diff > 0).float().mean()):.2%} of pixels changed")
    for precision, compile, batch in variants:  # the network batch never changes an image
        same = [k for k in rates if k[:2] == (precision, compile)]
        assert all(torch.equal(rates[k][3], rates[same[0]][3]) for k in same), (precision, compile)
    benchmark.extra_info.update({f"{p} {'compiled' if c else 'eager'} batch {b}": r[0]
                                 for (p, c, b), r in rates.items()})
