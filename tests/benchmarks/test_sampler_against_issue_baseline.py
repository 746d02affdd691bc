"""EDM sampling now against the code issue 14 was measured on, in one run: the
sampler of commit ``e84f7fa`` (the last before any of issue 14's changes; fp32,
eager, network batches of 256, glibc's allocator at its defaults) and today's
fastest shipped setting (``precision=bf16``, ``compile=true``, the CPU's
default network batch), each in fresh processes that take turns,
``SYNTHBENCH_BENCH_ROUNDS`` rounds (default 2). Both sample 256 images with 18
Heun steps from the `fast` fashion-mnist-sized network (1x28x28, widths
16-32-64) at one thread, the suite's setting; the network is randomly
initialised the same way in both (speed does not depend on training). The
report gives images per CPU-second, the ratio, and how far the finished uint8
images moved. Off by default, and skipped outside a git checkout that holds
the commit; measure with

    python -m pytest tests/benchmarks/test_sampler_against_issue_baseline.py --benchmark-enable -s
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BASELINE = "e84f7fa7049076d16479af95987758ba7176d794"
ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, time
import synthbench, torch
from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.generators.diffusion import EDMDenoiser, build_unet
from synthbench.generators.edm import EDMGenerator
torch.set_num_threads(1)
given = json.loads(sys.argv[1])
p = PRESETS["fast"]
gen = EDMGenerator(**resolve_options(EDMGenerator.options, given, "edm"))
gen.steps, gen.image_shape, gen.conditional, gen.device = p.gen_sampler_steps, (1, 28, 28), True, torch.device("cpu")
torch.manual_seed(0)
gen.net = EDMDenoiser(build_unet((1, 28, 28), 10, p.gen_channels_large, p.gen_layers_per_block)).eval()
n = 256
labels, seeds = torch.arange(n) % 10, list(range(n))
gen.sample(labels[:1], seeds[:1])  # a compiled network compiles here
cpu = time.process_time()
images = gen.sample(labels, seeds)
cpu = time.process_time() - cpu
torch.save(images, sys.argv[2])
print(json.dumps({"per_cpu": n / cpu, "file": synthbench.__file__}))
"""


def _worktree(tmp_path: Path) -> Path:
    """The baseline commit checked out beside this one (skips the test when
    this is no git checkout or lacks the commit, e.g. a shallow clone)."""
    where = tmp_path / "baseline"
    try:
        subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{BASELINE}^{{commit}}"], check=True,
                       capture_output=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), BASELINE], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs a git checkout holding commit {BASELINE[:7]}")
    return where


def _sample(code: Path, given: dict, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(code), "SYNTHBENCH_PROGRESS": "0"}
    run = subprocess.run([sys.executable, "-c", PROBE, json.dumps(given), str(out)], env=env, cwd=out.parent,
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise AssertionError(run.stderr[-2000:])
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().is_relative_to(code.resolve()), result["file"]  # the right code ran
    return result["per_cpu"]


def test_sampler_against_the_code_issue_14_measured(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("a measurement of minutes: run with --benchmark-enable")
    old = _worktree(tmp_path)
    try:
        arms = {"then: fp32 eager, batch 256": (old, {}),
                "now: bf16 compiled": (ROOT, {"precision": "bf16", "compile": "true"})}

        def measure() -> dict[str, list[float]]:
            rates: dict[str, list[float]] = {name: [] for name in arms}
            for _ in range(int(os.environ.get("SYNTHBENCH_BENCH_ROUNDS", 2))):
                for i, (name, (code, given)) in enumerate(arms.items()):
                    rates[name].append(_sample(code, given, tmp_path / f"images{i}.pt"))
            return rates

        rates = benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    then, now = (statistics.median(r) for r in rates.values())
    then_images, now_images = (torch.load(tmp_path / f"images{i}.pt", weights_only=True) for i in (0, 1))
    diff = (then_images.int() - now_images.int()).abs()
    print(f"\nEDM sampling, 256 images of 1x28x28, 18 Heun steps, 1 thread, median of {len(rates[next(iter(rates))])}"
          f" fresh processes each")
    for name, r in rates.items():
        print(f"{name:<30} {statistics.median(r):6.2f} images per CPU-s  ({', '.join(f'{v:.2f}' for v in r)})")
    print(f"ratio x{now / then:.2f}; largest pixel change {int(diff.max())}/255, "
          f"{float((diff > 0).float().mean()):.2%} of pixels changed")
    benchmark.extra_info.update({"then": then, "now": now, "ratio": now / then})
    assert then > 0 and now > 0
