"""Classifier evaluation throughput by batch size, in one run (issue 14): the
`fast` preset's SmallCNN on fashion-mnist-sized (1x28x28) and CIFAR-sized
(3x32x32) images, and the `paper` preset's ResNet-18 on 3x32x32, in batches of
32, 64, 128 and 512, fp32 and bf16. Off by default; measure with

    python -m pytest tests/benchmarks/test_eval_batch.py --benchmark-enable -s

It reports images per CPU-second and whether each batch size gives the logits
of the device's fixed evaluation batch (``benchmark/batches.py``) bitwise:
the CPU batch was chosen from this table.
"""

from __future__ import annotations

import time

import pytest
import torch

from synthbench.benchmark.batches import eval_batch
from synthbench.benchmark.classifiers import build_classifier
from synthbench.benchmark.trainer import PRECISION_ATTR, predict_logits

CASES = [("smallcnn", 1, 28, 4096), ("smallcnn", 3, 32, 2048), ("resnet18", 3, 32, 512)]
BATCHES = (32, 64, 128, 512)


def _model(arch: str, chans: int, precision: str) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_classifier(arch, chans, 10)
        for m in model.modules():  # batch-norm statistics away from the identity, as after training
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    if precision == "bf16":
        setattr(model, PRECISION_ATTR, "bf16")
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def test_eval_batch_throughput(benchmark):
    if benchmark.disabled:
        pytest.skip("a measurement of minutes: run with --benchmark-enable")
    device = torch.device("cpu")
    fixed = eval_batch(device)

    def measure() -> dict:
        out = {}
        for arch, chans, size, n in CASES:
            images = torch.randint(0, 256, (n, chans, size, size), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(1))
            for precision in ("fp32", "bf16"):
                model = _model(arch, chans, precision)
                ref = predict_logits(model, images, device, fixed)
                for batch in BATCHES:
                    cpu = time.process_time()
                    logits = predict_logits(model, images, device, batch)
                    out[(arch, chans, size, precision, batch)] = (n / (time.process_time() - cpu),
                                                                  torch.equal(logits, ref))
        return out

    rates = benchmark.pedantic(measure, rounds=1, iterations=1)
    print(f"\nclassifier evaluation, {torch.get_num_threads()} threads; fixed CPU batch {fixed}")
    for (arch, chans, size, precision, batch), (rate, same) in rates.items():
        base = rates[(arch, chans, size, precision, 512)][0]
        print(f"{arch} {chans}x{size}x{size} {precision} batch {batch:3d}: {rate:7.0f} images per CPU-s "
              f"(x{rate / base:.2f} of batch 512); logits {'equal to' if same else 'DIFFER from'} batch {fixed}'s")
    benchmark.extra_info.update({" ".join(map(str, k)): v[0] for k, v in rates.items()})
