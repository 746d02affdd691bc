"""What ``import synthbench`` sets for the whole process, before any work: how
idle OpenMP threads wait, and how glibc's allocator keeps freed memory. Both
change only where time goes, never a result, and each yields to a user who set
it. They are set on import because both must be in place before torch allocates
or starts its thread pool: the CLI, the suite's workers and the executors'
workers all import synthbench first.

**OpenMP wait policy.** ``OMP_WAIT_POLICY=PASSIVE`` unless the environment
already sets a policy. torch's OpenMP pool reads the policy once, when torch is
first imported, so this takes effect only when synthbench is imported first.
With the default (active) policy torch's threads spin for a busy core, and on a
shared machine a two-thread run was 2 to 20 times slower than a one-thread run
(``tests/benchmarks/test_thread_wait_policy.py``).

**Freed memory kept for reuse (glibc).** glibc's malloc serves allocations
above a threshold (128 KiB at first, raised as large blocks are freed) with
fresh ``mmap`` pages and hands freed heap memory back to the system once more
than twice that threshold lies free at the top of the heap. A CPU training step
or sampler call allocates and frees its activations (megabytes each) every
call, so with the defaults a process can fault every page of them in again on
every call, zero-filled by the kernel. Whether it does depends on the order of
the process's earlier allocations (glibc's threshold only ever rises), so the
same command ran at different speeds from one process to the next. Fixing the
thresholds (heap allocations up to 32 MiB, glibc's largest; up to 256 MiB of
free heap kept) removed the faults. Measured on a 2-core Intel Xeon with AMX
(``tests/benchmarks/test_allocator.py``, fresh processes taking turns, median
of two each): 256 compiled bf16 EDM samples at one thread went from 25.0 to
28.1 images per CPU-second (1.12x; 850,000 page faults and 1.3 kernel
CPU-seconds to 3,700 and none), six `fast` fashion-mnist training epochs at two
threads from 1,237 to 1,331 images per CPU-second in bf16 and from 626 to 674
in fp32 (1.08x each; up to 1.4 million faults to a few thousand). What it gives
a whole cell is less: a process that has already done large work (an EDM fit)
has raised glibc's thresholds itself. A `fast` fashion-mnist `edm` x `replace`
cell from an empty store (bf16, compiled, one thread; both settings side by
side, one core each) charged 1,256 CPU-seconds against 1,264 with the defaults,
under 1% less, with 1.2 million page faults against 11.9 million: the reference
classifier, trained first, took 58 s against 65, the 3,000-image pool drawn
after the fit 118 s against 116, and the records were identical. So it mostly
makes short and fresh processes fast and steady (the tests, a worker's first
tasks, the benchmarks). The price is that a process keeps up to 256 MiB of
freed memory instead of returning it: the cell's peak resident memory was 1.54
GB against 1.44 GB, six training epochs' 809 MiB against 831 MiB. Set
``SYNTHBENCH_MALLOC_TUNING=0``, or glibc's own ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` (or a ``glibc.malloc.`` tunable in
``GLIBC_TUNABLES``), and synthbench leaves the allocator alone; other C
libraries, and allocators preloaded in glibc's place (jemalloc, tcmalloc), are
left alone too.
"""

from __future__ import annotations

import os

MMAP_THRESHOLD = 32 << 20
"""Allocations up to this size come from the heap (glibc's largest threshold on
64-bit systems; larger values are refused)."""
TRIM_THRESHOLD = 256 << 20
"""Free memory at the top of the heap kept for reuse rather than returned."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
USER_ALLOCATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
"""Environment variables with which a user sets glibc's allocator thresholds:
either of them set, or a ``glibc.malloc.`` tunable in ``GLIBC_TUNABLES``, and
synthbench does not touch the allocator."""


def set_wait_policy() -> None:
    """Idle OpenMP threads sleep instead of spinning, unless a policy is set."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc, whose allocator
    :func:`keep_freed_memory` tunes."""
    import platform

    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Fix glibc's allocation thresholds (see the module docstring); whether
    they were set. A no-op off glibc, when the user opted out or set glibc's
    own variables."""
    if os.environ.get("SYNTHBENCH_MALLOC_TUNING", "1") == "0":
        return False
    if any(name in os.environ for name in USER_ALLOCATOR_SETTINGS):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if not on_glibc():
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # the mmap threshold first: glibc then stops adjusting both thresholds itself
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
