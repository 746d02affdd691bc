"""Where a number came from: versions, git revision, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import synthbench


@functools.lru_cache(maxsize=1)
def git_revision(folder: str | Path | None = None) -> str | None:
    """The git commit checked out at ``folder`` (default: synthbench's own), or None."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder or Path(synthbench.__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@functools.cache  # read once per process: every record asks
def cpu_model() -> str | None:
    """The CPU's model name (Linux's /proc/cpuinfo, else what ``platform`` says).
    fp32 results repeat bitwise only on the same kind of CPU: oneDNN picks its
    kernels by instruction set, and an AMD EPYC and an Intel Xeon round a smoke
    suite's training apart (``configs/regress.yaml``)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if fields.get("model name"):  # a virtual machine's name can be generic: family and model tell the part
        numbers = [f"{k} {fields[k]}" for k in ("cpu family", "model") if fields.get(k)]
        return fields["model name"] + (f" ({', '.join(numbers)})" if numbers else "")
    return platform.processor() or None


def compute_tag(device) -> str:
    """What trained weights depend on beyond their inputs and seeds: on a CPU,
    the intra-op thread count (float reductions are split per thread, so training
    at 1 and at 2 threads drifts apart); elsewhere the device type. It is part of
    every cached classifier's and in-suite generator's key, so a record never
    mixes weights trained under another thread count than its ``cost.device``
    says. ``synthbench evaluate --threads N`` pins the count."""
    import torch

    if device.type == "cpu":
        return f"cpu-{torch.get_num_threads()}t"
    return device.type


def provenance(device) -> dict:
    import torch

    return {
        "synthbench_version": synthbench.__version__,
        "git_revision": git_revision(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "cpu": cpu_model(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
