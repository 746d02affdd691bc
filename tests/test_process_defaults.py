"""What ``import synthbench`` sets for the process (``synthbench/process_defaults.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from synthbench.process_defaults import USER_ALLOCATOR_SETTINGS, keep_freed_memory, on_glibc

# Rounds of activation-like buffers (1.5 to 12 MiB, 112 MiB in all), written and
# freed: the page faults of the later rounds say whether freed memory came back
# without the kernel's help.
FAULTS = """
import json, resource, sys
import synthbench, torch
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [torch.ones(size << 10) for _ in range(5) for size in (384, 768, 1536, 3072)]
    del buffers
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def _faults(env: dict[str, str]) -> list[int]:
    ours = (*USER_ALLOCATOR_SETTINGS, "GLIBC_TUNABLES", "SYNTHBENCH_MALLOC_TUNING")
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    out = subprocess.run([sys.executable, "-c", FAULTS], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not on_glibc(), reason="synthbench tunes glibc's allocator only")
def test_freed_activations_are_reused_without_page_faults():
    """With glibc's defaults the second round faults its buffers in again (and
    later rounds may or may not, depending on where glibc's own thresholds
    have drifted); with synthbench's, every later round reuses the
    heap once its free blocks have settled into the sizes asked for (a round or
    three)."""
    tuned = _faults({})
    default = _faults({"SYNTHBENCH_MALLOC_TUNING": "0"})
    assert max(tuned[4:]) < 1_000, tuned
    assert sum(tuned[1:]) < sum(default[1:]) / 2, (tuned, default)


def test_a_users_allocator_settings_win(monkeypatch):
    for name in (*USER_ALLOCATOR_SETTINGS, "GLIBC_TUNABLES", "SYNTHBENCH_MALLOC_TUNING"):
        monkeypatch.delenv(name, raising=False)
    for name in USER_ALLOCATOR_SETTINGS:
        monkeypatch.setenv(name, "1")
        assert keep_freed_memory() is False
        monkeypatch.delenv(name)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.x86_non_temporal_threshold=1:glibc.malloc.trim_threshold=1")
    assert keep_freed_memory() is False
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.x86_non_temporal_threshold=1")  # no allocator setting
    assert keep_freed_memory() is on_glibc()
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("SYNTHBENCH_MALLOC_TUNING", "0")
    assert keep_freed_memory() is False
