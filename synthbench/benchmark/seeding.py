"""Explicit, per-purpose random streams.

Every random draw in synthbench comes from a generator seeded here, never from
global state, so a number does not change with batch size, resume or how a grid
was split. ``derive_seed`` turns a tuple of names and integers into a 63-bit seed
by hashing, so streams for different purposes never collide.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from ``parts`` (strings and integers)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_seeds(run_seed: int, start: int, stop: int) -> list[int]:
    """Seeds of synthetic samples ``start..stop-1`` for run seed ``run_seed``.

    Sample ``i`` always gets the same seed, so every pool is a prefix of a larger
    one: the x1..x10 scale-up and the replace/augment protocols share samples."""
    return [derive_seed("sample", run_seed, i) for i in range(start, stop)]


def torch_generator(seed: int, device="cpu"):
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def per_sample_normal(seeds: Sequence[int], shape: Sequence[int], device="cpu"):
    """Standard normal noise, one ``shape`` tensor per seed, stacked.

    Image i depends on ``seeds[i]`` alone (cf. EDM's StackedRandomGenerator)."""
    import torch

    return torch.stack([torch.randn(*shape, generator=torch_generator(s)) for s in seeds]).to(device)


def numpy_rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))
