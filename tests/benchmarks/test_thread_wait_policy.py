"""How torch's OpenMP wait policy behaves when another job shares the cores
(issue 14): SmallCNN training steps per second at 2 threads, quiet and beside
one busy process, with OMP_WAIT_POLICY unset (GNU OpenMP's default: idle threads
spin a while, then sleep), ACTIVE (they spin) and PASSIVE (they sleep at once:
what ``import synthbench`` sets). Each measurement
is a fresh process, because the policy is read once when torch loads. Off by
default; measure with

    python -m pytest tests/benchmarks/test_thread_wait_policy.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

STEPS = """
import time, torch, torch.nn.functional as F
from synthbench.benchmark.classifiers import SmallCNN
torch.set_num_threads(2)
torch.manual_seed(0)
model = SmallCNN(1, 10)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3):
    step()
start, n = time.perf_counter(), 0
while time.perf_counter() - start < 8:
    step(); n += 1
print(n / (time.perf_counter() - start))
"""

BUSY = "while True: pass"
POLICIES = ("unset", "ACTIVE", "PASSIVE")


def _steps_per_s(policy: str, busy: bool) -> float:
    # torch is imported by the probe before synthbench sets anything, so the
    # environment given here is the policy the pool sees
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "unset":
        env["OMP_WAIT_POLICY"] = policy
    competitor = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        out = subprocess.run([sys.executable, "-c", "import torch\n" + STEPS], env=env, capture_output=True,
                             text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return float(out.stdout.strip().splitlines()[-1])


def test_passive_wait_policy_on_a_shared_machine(benchmark):
    if benchmark.disabled:
        pytest.skip("a measurement of a minute: run with --benchmark-enable")
    rates = benchmark.pedantic(lambda: {(policy, busy): _steps_per_s(policy, busy)
                                        for busy in (False, True) for policy in POLICIES},
                               rounds=1, iterations=1)
    print(f"\nSmallCNN training steps/s at 2 threads ({os.cpu_count()} cores)")
    for busy in (False, True):
        r = {policy: rates[(policy, busy)] for policy in POLICIES}
        print(f"{'beside a busy process' if busy else 'quiet':<22} "
              + "  ".join(f"{policy} {v:6.1f}" for policy, v in r.items())
              + f"  PASSIVE/unset x{r['PASSIVE'] / r['unset']:.2f}")
    benchmark.extra_info.update({f"{p}{' busy' if b else ''}": r for (p, b), r in rates.items()})
    assert all(r > 0 for r in rates.values())
