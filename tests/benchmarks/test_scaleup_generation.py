"""Scale-up generation cost: drawing the x1, x2, x5 and x10 sets should cost no
more than generating the x10 pool alone (target: at most 1.1 times), because
every set is a prefix of one pool. Measured, not asserted on time:

    python -m pytest tests/benchmarks/test_scaleup_generation.py --benchmark-enable -s

prints the ratio; the test asserts only the deterministic part (exactly 10N
samples are generated in all)."""

from __future__ import annotations

import time

from conftest import fit_generator

from synthbench.benchmark.sample_cache import SampleCache

MULTIPLES = (1, 2, 5, 10)


def test_scaleup_draws_cost_the_x10_pool_alone(benchmark, smoke_digits, session_cache, tmp_path):
    gen = fit_generator("edm", smoke_digits, session_cache, eval_batch="64")
    labels = smoke_digits.train.labels
    n = len(labels)
    counted = {"n": 0}
    sample = gen.sample

    def counting_sample(lab, seeds):
        counted["n"] += len(seeds)
        return sample(lab, seeds)

    gen.sample = counting_sample

    start = time.perf_counter()
    SampleCache(tmp_path / "alone").pool(gen, 0, labels, 10 * n)
    alone = time.perf_counter() - start

    counted["n"] = 0
    runs = iter(range(1000))

    def scaleup_draws():
        cache = SampleCache(tmp_path / f"scaleup{next(runs)}")
        # worst order for the cache: smallest first, so every step extends the pool
        return [len(cache.pool(gen, 0, labels, m * n)) for m in MULTIPLES]

    start = time.perf_counter()
    sizes = benchmark.pedantic(scaleup_draws, rounds=1, iterations=1)
    all_draws = time.perf_counter() - start
    benchmark.extra_info.update(x10_alone_s=alone, x1_to_x10_s=all_draws, ratio=all_draws / alone)
    print(f"\nx10 pool alone: {alone:.2f}s; x1,x2,x5,x10 draws: {all_draws:.2f}s; ratio {all_draws / alone:.3f}")
    assert sizes == [m * n for m in MULTIPLES]
    assert counted["n"] == 10 * n  # nothing generated twice
