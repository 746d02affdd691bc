"""End-to-end cost of one generator's row: ``edm`` under all nine protocols on
fashion-mnist at ``fast``, 3 seeds, one thread, exactly as a user runs it
(``synthbench run`` on a suite file), with the CPU-hours per protocol read from
the records' ``cost`` (the same numbers the board's cost table shows):

    python -m pytest tests/benchmarks/test_suite_end_to_end.py --benchmark-enable -s

Hours of compute: it is off by default and never part of CI. The environment
can shrink it to check the benchmark itself (``SYNTHBENCH_BENCH_DATASET=digits
SYNTHBENCH_BENCH_PRESET=smoke SYNTHBENCH_BENCH_SEEDS=1``) or point it at a store
that already holds the records (``SYNTHBENCH_BENCH_RESULTS=results``: nothing is
recomputed, the table is read back). Asserts only that every cell landed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict

import pytest

from synthbench.benchmark.store import ResultStore
from synthbench.leaderboard.audit import record_hours

PROTOCOLS = ("replace", "augment", "scaleup", "recon", "longtail", "ood", "mia", "fidelity", "detect")
SUITE = """name: bench-{generator}
datasets: [{dataset}]
preset: {preset}
seeds: {seeds}
device: cpu
threads: 1
generators: {{{generator}: {{}}}}
protocols: {{{protocols}}}
"""


def test_one_generator_under_every_protocol(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("hours of compute: run with --benchmark-enable")
    dataset = os.environ.get("SYNTHBENCH_BENCH_DATASET", "fashion-mnist")
    preset = os.environ.get("SYNTHBENCH_BENCH_PRESET", "fast")
    seeds = int(os.environ.get("SYNTHBENCH_BENCH_SEEDS", "3"))
    generator = os.environ.get("SYNTHBENCH_BENCH_GENERATOR", "edm")
    results = os.environ.get("SYNTHBENCH_BENCH_RESULTS", str(tmp_path / "results"))
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(generator=generator, dataset=dataset, preset=preset, seeds=seeds,
                                  protocols=", ".join(f"{p}: {{}}" for p in PROTOCOLS)))

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "synthbench", "run", str(suite), "--results", results, "-q"],
                              check=False, capture_output=True, text=True,
                              env={**os.environ, "SYNTHBENCH_PROGRESS": "0"})

    proc = benchmark.pedantic(run, rounds=1, iterations=1)
    assert proc.returncode == 0, proc.stderr[-3000:]

    hours: dict[str, float] = defaultdict(float)
    cells: dict[str, int] = defaultdict(int)
    for rec in ResultStore(results).records():
        s = rec.spec
        if (s.dataset, s.generator, s.preset.get("name")) != (dataset, generator, preset) or s.seed >= seeds \
                or s.protocol not in PROTOCOLS:
            continue
        hours[s.protocol] += record_hours(rec)  # the board's own sum: the cell and the shared work charged to it
        cells[s.protocol] += 1
    print(f"\n{generator} on {dataset} at {preset}, {seeds} seed(s), 1 thread: CPU-hours per protocol "
          f"(cell + the fit, pool and reference classifier charged to it)")
    for p in PROTOCOLS:
        print(f"  {p:<9} {hours[p]:7.3f} h  ({cells[p]} records)")
    print(f"  {'total':<9} {sum(hours.values()):7.3f} h")
    benchmark.extra_info.update(cpu_hours=dict(hours), total_cpu_hours=sum(hours.values()))
    assert all(cells[p] == seeds for p in PROTOCOLS), dict(cells)
