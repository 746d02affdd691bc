"""oneDNN's reduced-precision mode for fp32 work against fp32 and bf16 autocast
(issue 14 asks whether it pays): torch can let oneDNN run the convolutions and
matmuls of an fp32 model in bf16 (``torch.backends.mkldnn.{conv,matmul}.fp32_precision
= "bf16"``) without touching the model or the optimiser. Measured in one run,
alternating modes, at one thread: SmallCNN training steps at the ``fast`` batch,
and forwards of the ``fast`` fashion-mnist-sized EDM denoiser. Off by default;
measure with

    python -m pytest tests/benchmarks/test_onednn_fp32_modes.py --benchmark-enable -s

Why synthbench does not set the mode: on the 2-core AMD EPYC (AVX512-BF16, no
AMX) of 2026-11-30 it gave SmallCNN training 1.01-1.06x while moving its loss,
and left the denoiser's output bit-identical and its speed no better (0.9x;
oneDNN did not take the bf16 path for those convolutions), where bf16 autocast
gave the denoiser 1.6-2.0x. A CPU or build where the mode pays shows it here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F

from synthbench.benchmark.classifiers import SmallCNN
from synthbench.benchmark.presets import PRESETS
from synthbench.generators.diffusion import EDMDenoiser, build_unet

MODES = ("fp32", "onednn-bf16", "autocast-bf16")
BATCH = PRESETS["fast"].batch_size


@contextlib.contextmanager
def _mode(mode: str) -> Iterator[None]:
    """The arithmetic of one measurement; the process's oneDNN setting is restored after it."""
    mk = torch.backends.mkldnn
    before = (mk.conv.fp32_precision, mk.matmul.fp32_precision)
    mk.conv.fp32_precision = mk.matmul.fp32_precision = "bf16" if mode == "onednn-bf16" else "ieee"
    try:
        with torch.autocast("cpu", torch.bfloat16) if mode == "autocast-bf16" else contextlib.nullcontext():
            yield
    finally:
        mk.conv.fp32_precision, mk.matmul.fp32_precision = before


def _per_cpu_s(work: Callable[[], torch.Tensor], n: int) -> tuple[float, torch.Tensor]:
    """Calls per CPU-second after one warm-up call, and the last output."""
    out = work()
    start = time.process_time()
    for _ in range(n):
        out = work()
    return n / (time.process_time() - start), out.detach().float()


def _train_steps(mode: str) -> tuple[float, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, 1, 28, 28, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallCNN(1, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def step() -> torch.Tensor:
        with _mode(mode):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return _per_cpu_s(step, 8)


def _denoiser_forwards(mode: str) -> tuple[float, torch.Tensor]:
    p = PRESETS["fast"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = EDMDenoiser(build_unet((1, 28, 28), 10, p.gen_channels_large, p.gen_layers_per_block)).eval()
    g = torch.Generator().manual_seed(0)
    x, sigma, labels = torch.randn(BATCH, 1, 28, 28, generator=g), torch.ones(BATCH), torch.arange(BATCH) % 10

    def forward() -> torch.Tensor:
        with torch.inference_mode(), _mode(mode):
            return net(x, sigma, labels)

    return _per_cpu_s(forward, 6)


def test_onednn_reduced_precision_fp32(benchmark):
    if benchmark.disabled:
        pytest.skip("a measurement of a minute: run with --benchmark-enable")
    if not hasattr(torch.backends.mkldnn, "conv"):
        pytest.skip("this torch has no per-operation oneDNN fp32_precision setting")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def measure() -> dict[tuple[str, str], list[tuple[float, torch.Tensor]]]:
            out: dict[tuple[str, str], list[tuple[float, torch.Tensor]]] = {}
            for _ in range(2):  # alternate, so a change in the machine's load touches every mode alike
                for mode in MODES:
                    out.setdefault(("smallcnn training step", mode), []).append(_train_steps(mode))
                    out.setdefault(("edm denoiser forward", mode), []).append(_denoiser_forwards(mode))
            return out

        runs = benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    print(f"\noneDNN fp32 modes at 1 thread, batch {BATCH} (best of 2 alternating runs; ratio to fp32)")
    for work in ("smallcnn training step", "edm denoiser forward"):
        base_rate, base_out = max(r for r, _ in runs[(work, "fp32")]), runs[(work, "fp32")][0][1]
        for mode in MODES:
            rate, out = max(r for r, _ in runs[(work, mode)]), runs[(work, mode)][0][1]
            change = float((out - base_out).abs().max())
            print(f"{work:24s} {mode:14s} {rate * BATCH:8.1f} images/CPU-s  x{rate / base_rate:.2f}  "
                  f"largest output change {change:.2e}")
            benchmark.extra_info[f"{work}, {mode}"] = rate * BATCH
        # the fp32 run is the reference the ratios are read against: it must repeat itself exactly
        assert torch.equal(runs[(work, "fp32")][0][1], runs[(work, "fp32")][1][1])
