"""The classifier trainer against the loop a user would write, in one run (issue
14). Off by default (it trains four classifiers for minutes); measure with

    python -m pytest tests/benchmarks/test_trainer_vs_plain_loop.py --benchmark-enable -s

Both train the same SmallCNN from the same initial weights with the `fast`
recipe (AdamW, lr 3e-3, cosine schedule, batch 128, 30 epochs, random crop with
padding 4 and a horizontal flip) on the same 3,000 fashion-mnist images (the
`fast` cap), and are tested on the 10,000 test images. The plain loop is the
textbook one: a torchvision dataset of PIL images, ``RandomCrop`` and
``RandomHorizontalFlip`` transforms and a ``DataLoader`` with 0 or 2 workers.
The printed report gives images per second and per CPU-second (the second is
the one to read on a shared machine; for the plain loop with loader workers it
counts the workers' CPU time too, read when they exit), the ratios, test
accuracy, and the trainer's achieved GFLOP per CPU-second against the matmul
rate measured in the same process, for the trainer in fp32, in bf16
(``--precision bf16``) and in bf16 compiled (``--compile``; its images/s
include the compile time). The bf16 rows are left out on a CPU without bf16
instructions (AVX512-BF16 or AMX), where torch emulates bf16 and a step is
about 10x slower than fp32.
``SYNTHBENCH_BENCH_EPOCHS`` shortens the recipe for a quick look (the
accuracies are then not comparable to the 30-epoch ones).

The plain loop runs twice per worker count: in a fresh process with glibc's
allocator at its defaults (``SYNTHBENCH_MALLOC_TUNING=0``), as a user's script
runs, and in this process, where ``import synthbench`` has fixed the
allocator's thresholds (``synthbench/process_defaults.py``) for the trainer and
the loop alike. Ratios are given against both, so what the trainer gains from
the allocator and what it gains from the rest can be told apart.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from synthbench.benchmark.datasets import load_dataset
from synthbench.benchmark.presets import PRESETS, bf16_instructions, get_preset
from synthbench.benchmark.trainer import evaluate, init_model, train_classifier
from synthbench.errors import UserError

CPU = torch.device("cpu")


def _fashion():
    try:
        return load_dataset("fashion-mnist").capped(PRESETS["fast"].max_train_per_class)
    except UserError as exc:
        pytest.skip(f"fashion-mnist is not available here: {exc}")


def _cpu_seconds(children: bool) -> float:
    """CPU seconds of this process, plus (``children``) those of its exited
    child processes: the DataLoader's workers once they are shut down."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


def _plain_loop(ds, epochs: int, workers: int) -> tuple[torch.nn.Module, float, float]:
    """The loop a user would write with torchvision; returns (model, images/s,
    images per CPU-second of this process and its loader workers)."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class Images(Dataset):
        def __init__(self, images, labels, transform):
            self.images, self.labels, self.transform = images, labels, transform

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.transform(Image.fromarray(self.images[i, 0].numpy(), mode="L")), int(self.labels[i])

    p = PRESETS["fast"]
    tf = transforms.Compose([transforms.RandomCrop(28, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    loader = DataLoader(Images(ds.train.images, ds.train.labels, tf), batch_size=p.batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, generator=torch.Generator().manual_seed(0),
                        persistent_workers=workers > 0)
    model = init_model(p, 1, 10, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=5e-4)
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    model.train()
    seen, start, cpu = 0, time.perf_counter(), _cpu_seconds(children=True)
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(y)
    wall = time.perf_counter() - start
    del loader  # its persistent workers exit and are reaped, so RUSAGE_CHILDREN holds their CPU time
    gc.collect()
    return model.eval(), seen / wall, seen / (_cpu_seconds(children=True) - cpu)


def _plain_loop_with_glibc_defaults(epochs: int, workers: int) -> tuple[float, float, float]:
    """:func:`_plain_loop` in a fresh process whose allocator synthbench leaves
    at glibc's defaults; (images/s, images per CPU-second, test top-1)."""
    env = {**os.environ, "SYNTHBENCH_MALLOC_TUNING": "0", "SYNTHBENCH_PROGRESS": "0"}
    out = subprocess.run([sys.executable, __file__, str(epochs), str(workers)], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise AssertionError(out.stderr[-2000:])
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def _matmul_gflops(size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP per CPU-second of a square matmul: the per-core rate, which a busy
    machine lowers less than it lowers a wall-clock rate."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.process_time()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.process_time() - start) / 1e9


def _train_flops_per_image(model: torch.nn.Module) -> float:
    """Forward and backward FLOPs of one training image (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(128, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 128


def test_trainer_against_a_plain_pytorch_loop(benchmark):
    if benchmark.disabled:
        pytest.skip("a measurement of minutes: run with --benchmark-enable")
    ds = _fashion()
    epochs = int(os.environ.get("SYNTHBENCH_BENCH_EPOCHS", PRESETS["fast"].epochs))
    bf16 = bf16_instructions(CPU)
    peak = {"fp32": _matmul_gflops(), "bf16": _matmul_gflops(dtype=torch.bfloat16) if bf16 else 0.0}

    def ours(precision: str, compile: bool = False) -> tuple[torch.nn.Module, float, float]:
        p = get_preset("fast", precision, compile)
        start, cpu = time.perf_counter(), time.process_time()
        model = train_classifier(ds.train.images, ds.train.labels, 10, p, 0, CPU, hflip=True, epochs=epochs)
        seen = epochs * (len(ds.train) // p.batch_size) * p.batch_size
        return model, seen / (time.perf_counter() - start), seen / (time.process_time() - cpu)

    def top1(model: torch.nn.Module) -> float:
        return evaluate(model, ds.test.images, ds.test.labels, 10, CPU).top1

    model, *rates = benchmark.pedantic(ours, args=("fp32",), rounds=1, iterations=1)
    rows = [("synthbench trainer, fp32", *rates, top1(model))]
    if bf16:
        model, *rates = ours("bf16")
        rows.append(("synthbench trainer, bf16", *rates, top1(model)))
        model, *rates = ours("bf16", True)  # its compile time included (torch's on-disk kernel cache may shorten it)
        rows.append(("trainer, bf16, compiled", *rates, top1(model)))
    ours_rows = len(rows)
    for workers in (0, 2):
        rows.append((f"plain loop, {workers} workers", *_plain_loop_with_glibc_defaults(epochs, workers)))
    for workers in (0, 2):
        model, *rates = _plain_loop(ds, epochs, workers)
        rows.append((f"plain loop, {workers} w., tuned malloc", *rates, top1(model)))
    flops = _train_flops_per_image(init_model(PRESETS["fast"], 1, 10, 0))
    print(f"\nthreads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"{epochs} epochs, matmul per CPU-second: fp32 {peak['fp32']:.0f} GFLOP, bf16 {peak['bf16']:.0f} GFLOP")
    plain_wall, plain_cpu = rows[ours_rows][1], rows[ours_rows][2]
    tuned_wall = rows[ours_rows + 2][1]
    for name, wall, per_cpu, acc in rows:
        print(f"{name:<32} {wall:6.0f} images/s (x{wall / plain_wall:.2f}, x{wall / tuned_wall:.2f}) "
              f"{per_cpu:6.0f} per CPU-s (x{per_cpu / plain_cpu:.2f})  top1 {acc:.4f}")
    print("(ratios to the plain loop with 0 workers, first with glibc's defaults, then with synthbench's "
          "allocator thresholds; per CPU-second counts the loader workers' CPU time too)")
    if not bf16:
        print("(no bf16 rows: this CPU has no AVX512-BF16 or AMX, so torch would emulate bf16)")
    for (name, _, per_cpu, _) in rows[:ours_rows]:
        achieved = flops * per_cpu / 1e9
        precision = "bf16" if "bf16" in name else "fp32"
        print(f"{name}: {achieved:.1f} GFLOP per CPU-s = {achieved / peak[precision]:.0%} of the "
              f"{precision} matmul rate")
    benchmark.extra_info.update({name: {"images_per_s": wall, "images_per_cpu_s": per_cpu, "top1": acc}
                                 for name, wall, per_cpu, acc in rows})
    assert all(wall > 0 for _, wall, _, _ in rows)


if __name__ == "__main__":  # the plain loop alone, for _plain_loop_with_glibc_defaults
    _ds = _fashion()
    _model, _wall, _per_cpu = _plain_loop(_ds, int(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps([_wall, _per_cpu, evaluate(_model, _ds.test.images, _ds.test.labels, 10, CPU).top1]))
