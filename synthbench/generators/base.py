"""The generator adapter interface (DESIGN.md section 3).

An adapter turns (label, seed) pairs into uint8 images of the dataset's shape.
Contract, checked for every registered adapter by ``tests/test_conformance.py``:

- ``sample(labels, seeds)``: image i depends on ``seeds[i]`` and ``labels[i]``
  only, never on the batch it was drawn in; the same seeds give identical bytes;
- output is ``uint8 [N, C, H, W]`` with the dataset's C, H, W;
- a conditional adapter's image i shows class ``labels[i]``; an unconditional one
  sets ``conditional = False`` and its samples are pseudo-labelled by the
  reference classifier (seed 003);
- ``reconstruct`` (optional, ``can_reconstruct = True``) is seed 000's
  Algorithm 1 or its equivalent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from synthbench.benchmark.datasets import Dataset, Split
from synthbench.benchmark.options import Option
from synthbench.benchmark.presets import Preset


@dataclass
class FitContext:
    """What ``fit`` may use: the real train split (never the test split), the
    dataset's metadata, the preset, a device and a cache folder for weights."""

    train: Split
    class_names: list[str]
    image_shape: tuple[int, int, int]
    dataset_digest: str
    preset: Preset
    device: torch.device
    cache_dir: Path
    hflip: bool = False
    cost: dict[str, float] = field(default_factory=dict)

    @property
    def compute_tag(self) -> str:
        """Device type, and thread count on a CPU: put it in the key of cached
        weights (see :func:`synthbench.benchmark.provenance.compute_tag`)."""
        from synthbench.benchmark.provenance import compute_tag

        return compute_tag(self.device)

    @classmethod
    def from_dataset(cls, ds: Dataset, preset: Preset, device: torch.device, cache_dir: Path,
                     train: Split | None = None) -> "FitContext":
        """Fit on ``ds.train``, or on ``train`` (a subset of it, e.g. the members
        of a membership-inference split); the digest then names that subset."""
        digest = ds.digest
        if train is not None:
            h = hashlib.sha256(ds.digest.encode())
            h.update(train.images.numpy().tobytes())
            h.update(train.labels.numpy().tobytes())
            digest = h.hexdigest()
        return cls(train=ds.train if train is None else train, class_names=ds.class_names,
                   image_shape=ds.image_shape, dataset_digest=digest, preset=preset, device=device,
                   cache_dir=cache_dir, hflip=ds.hflip)


class Generator:
    """Base class of generator adapters."""

    name: ClassVar[str] = "?"
    version: ClassVar[int] = 1
    """Bump whenever the adapter's outputs change for the same options."""
    conditional: ClassVar[bool] = True
    can_reconstruct: ClassVar[bool] = False
    oracle: ClassVar[bool] = False
    """True only for ``real``: its x1 pool is the real train split itself."""
    needs: ClassVar[str] = "nothing"
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, **options: Any):
        self.opts = dict(options)
        self.device = torch.device("cpu")
        self._fit_identity: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------
    def fit(self, ctx: FitContext) -> None:
        """Train or fine-tune on ``ctx.train`` (optional). Must set the identity
        returned by :meth:`fit_identity` so the sample cache can key on it."""
        self.device = ctx.device
        self._fit_identity = {"dataset_digest": ctx.dataset_digest}

    def fit_identity(self) -> dict[str, Any]:
        """Everything that determines this fitted generator's outputs."""
        return {"name": self.name, "version": self.version, "options": self.opts, **self._fit_identity}

    def fingerprint(self) -> str:
        blob = json.dumps(self.fit_identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- generation ------------------------------------------------------
    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int,
                    seeds: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} cannot reconstruct real samples")
