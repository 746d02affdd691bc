"""Speed benchmarks (pytest-benchmark), off by default: ``--benchmark-disable`` in
pyproject.toml makes them run once as plain tests. Measure on purpose with

    python -m pytest tests/benchmarks --benchmark-enable

They time the work a user waits for: EDM sampling throughput at the fast
preset's network size on digits, and one classifier training epoch."""

from __future__ import annotations

import torch

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.trainer import train_classifier
from synthbench.generators.diffusion import EDMDenoiser, build_unet
from synthbench.generators.edm import EDMGenerator


def _untrained_edm(shape=(1, 8, 8), preset="fast") -> EDMGenerator:
    p = PRESETS[preset]
    gen = EDMGenerator(**resolve_options(EDMGenerator.options, {}, "edm"))
    gen.steps, gen.image_shape = p.gen_sampler_steps, shape
    gen.net = EDMDenoiser(build_unet(shape, 10, p.gen_channels, p.gen_layers_per_block)).eval()
    return gen


def test_edm_sampling_256_digits(benchmark):
    gen = _untrained_edm()
    labels = torch.arange(256) % 10
    out = benchmark.pedantic(gen.sample, args=(labels, list(range(256))), rounds=1, iterations=1)
    assert out.shape == (256, 1, 8, 8)


def test_classifier_epoch_digits(benchmark, digits):
    preset = PRESETS["fast"]
    model = benchmark.pedantic(train_classifier, args=(digits.train.images, digits.train.labels, 10, preset, 0,
                                                       torch.device("cpu"), False),
                               kwargs={"epochs": 1}, rounds=1, iterations=1)
    assert model is not None
