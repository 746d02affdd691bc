"""glibc's allocator with its defaults against the thresholds ``import
synthbench`` fixes (``synthbench/process_defaults.py``), in one run (issue 14):
EDM sampling (256 images, the `fast` fashion-mnist network, 18 Heun steps, bf16
compiled, one thread) and the classifier trainer (``SYNTHBENCH_BENCH_EPOCHS``
`fast` epochs on 3,000 fashion-mnist images, default 6, after one untimed
epoch, bf16 and fp32, two threads). Off by default; measure with

    python -m pytest tests/benchmarks/test_allocator.py --benchmark-enable -s

Each measurement is a fresh process (``SYNTHBENCH_MALLOC_TUNING=0`` for the
defaults), because what glibc does depends on the process's allocation history;
the two settings take turns, ``SYNTHBENCH_BENCH_ROUNDS`` rounds (default 2),
and the report gives each one's median images per CPU-second with its page
faults and kernel CPU time. The bf16 rows are left out on a CPU without bf16
instructions. Off glibc (macOS, musl) both settings are the same allocator and
the test is skipped.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from synthbench.benchmark.presets import bf16_instructions
from synthbench.process_defaults import on_glibc

SAMPLER = """
import json, resource, sys, time
import synthbench, torch
sys.path.insert(0, sys.argv[1])
from test_edm_sampling_precision import _generator, _warm_up  # the sampling benchmark's network and warm-up
torch.set_num_threads(1)
gen = _generator("bf16", True, 64)
_warm_up(gen)  # compiles
n = 256
labels, seeds = torch.arange(n) % 10, list(range(n))
def work():
    gen.sample(labels, seeds)
    return n
"""

TRAINER = """
import json, os, resource, sys, time
import synthbench, torch
from synthbench.benchmark.datasets import load_dataset
from synthbench.benchmark.presets import PRESETS, get_preset
from synthbench.benchmark.trainer import train_classifier
ds = load_dataset("fashion-mnist").capped(PRESETS["fast"].max_train_per_class)
p = get_preset("fast", sys.argv[1])
epochs = int(os.environ.get("SYNTHBENCH_BENCH_EPOCHS", 6))
train_classifier(ds.train.images, ds.train.labels, 10, p, 0, torch.device("cpu"), hflip=True, epochs=1)
def work():
    train_classifier(ds.train.images, ds.train.labels, 10, p, 0, torch.device("cpu"), hflip=True, epochs=epochs)
    return epochs * (len(ds.train) // p.batch_size) * p.batch_size
"""

MEASURE = """
before, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
images = work()
after, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time() - cpu
print(json.dumps({"per_cpu": images / cpu, "faults": after.ru_minflt - before.ru_minflt,
                  "kernel_s": after.ru_stime - before.ru_stime}))
"""


def _run(probe: str, args: list[str], tuned: bool) -> dict:
    env = {**os.environ, "SYNTHBENCH_MALLOC_TUNING": "1" if tuned else "0", "SYNTHBENCH_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-c", probe + MEASURE, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        if "fashion-mnist" in out.stderr and "UserError" in out.stderr:
            pytest.skip("fashion-mnist is not available here")
        raise AssertionError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_allocator_defaults_against_synthbench_thresholds(benchmark):
    if benchmark.disabled:
        pytest.skip("a measurement of minutes: run with --benchmark-enable")
    if not on_glibc():
        pytest.skip("synthbench tunes glibc's allocator only")
    bf16 = bf16_instructions("cpu")
    cases = ([("EDM sampling, bf16 compiled, 1 thread", SAMPLER, [str(Path(__file__).parent)])] if bf16 else []) + \
        ([("trainer, bf16, 2 threads", TRAINER, ["bf16"])] if bf16 else []) + \
        [("trainer, fp32, 2 threads", TRAINER, ["fp32"])]
    rounds = int(os.environ.get("SYNTHBENCH_BENCH_ROUNDS", 2))

    def measure() -> dict:
        runs: dict = {(name, tuned): [] for name, _, _ in cases for tuned in (False, True)}
        for _ in range(rounds):
            for name, probe, args in cases:
                for tuned in (False, True):
                    runs[(name, tuned)].append(_run(probe, args, tuned))
        return runs

    runs = benchmark.pedantic(measure, rounds=1, iterations=1)
    print(f"\nimages per CPU-second, median of {rounds} fresh processes each (page faults, kernel CPU-s)")
    for name, _, _ in cases:
        med = {tuned: statistics.median(r["per_cpu"] for r in runs[(name, tuned)]) for tuned in (False, True)}
        detail = {tuned: ", ".join(f"{r['faults']:,} faults {r['kernel_s']:.1f} s" for r in runs[(name, tuned)])
                  for tuned in (False, True)}
        print(f"{name:<38} glibc defaults {med[False]:7.1f} ({detail[False]})")
        print(f"{'':<38} synthbench's    {med[True]:7.1f} ({detail[True]})  x{med[True] / med[False]:.2f}")
        benchmark.extra_info[name] = {"defaults": med[False], "synthbench": med[True]}
    assert all(r["per_cpu"] > 0 for rs in runs.values() for r in rs)
