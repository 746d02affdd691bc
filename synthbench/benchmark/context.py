"""What a protocol gets for one cell: data, the fitted generator, the preset, the
seed, and helpers that go through the caches (synthetic pools, classifiers)."""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from synthbench.benchmark.datasets import Dataset, Split
from synthbench.benchmark.presets import Preset
from synthbench.benchmark.provenance import compute_tag
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.seeding import sample_seeds
from synthbench.benchmark.trainer import Evaluation, evaluate, train_classifier
from synthbench.errors import UserError, corrupt_cache


def cached_classifier(split: Split, num_classes: int, preset: Preset, seed: int, device: torch.device, hflip: bool,
                      cache_dir: Any, desc: str, **kwargs: Any) -> torch.nn.Module:
    """A classifier trained on ``split`` with the preset's recipe and ``seed``,
    cached under ``cache_dir/classifiers`` by a hash of the data, the preset, the
    seed and the training options: protocols and generators (e.g. ``realfake``'s
    visual guidance) that ask for the same classifier share one file."""
    from synthbench.benchmark.atomic import atomic_torch_save
    from synthbench.benchmark.trainer import _init_model

    h = hashlib.sha256()
    h.update(split.images.numpy().tobytes())
    h.update(split.labels.numpy().tobytes())
    h.update(repr((sorted(preset.as_dict().items()), seed, hflip, compute_tag(device),
                   sorted(kwargs.items()))).encode())
    path = Path(cache_dir) / "classifiers" / f"{h.hexdigest()[:24]}.pt"
    if path.exists():
        model = _init_model(preset, split.images.shape[1], num_classes, seed)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise corrupt_cache("classifier", path, exc) from None
        return model.to(device).eval()
    model = train_classifier(split.images, split.labels, num_classes, preset, seed, device, hflip, desc=desc,
                             **kwargs)
    atomic_torch_save(path, {k: v.cpu() for k, v in model.state_dict().items()})
    return model


@dataclass
class CellContext:
    dataset: Dataset
    generator: Any  # synthbench.generators.base.Generator, fitted
    preset: Preset
    seed: int
    device: torch.device
    options: dict[str, Any]
    samples: SampleCache
    cache_dir: Any
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to ``timings[name]`` (the record's cost)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def synthetic(self, n: int, generator: Any = None, like: Split | None = None) -> Split:
        """The first ``n`` images of this seed's synthetic pool, labels cycling
        through the labels of ``like`` (default: the real train split, so ``n`` =
        its size keeps its class balance exactly).

        ``generator`` defaults to the cell's; protocols pass another fitted one
        (e.g. fitted on MIA members). For the ``real`` oracle the first
        ``len(like)`` images are ``like`` itself; an unconditional generator's
        samples are pseudo-labelled by the reference classifier (seed 003)."""
        real = self.dataset.train if like is None else like
        gen = self.generator if generator is None else generator
        with self.phase("sample_s"):
            if gen.oracle:
                # ``like`` may be a label stream only (no images): then all are drawn.
                have = len(real) if real.images.shape[0] == len(real) else 0
                if n <= have:
                    return real.subset(slice(0, n))
                labels = real.labels[torch.arange(have, n) % len(real)]
                extra = gen.sample(labels, sample_seeds(self.seed, have, n))
                return Split(torch.cat([real.images[:have], extra]), torch.cat([real.labels[:have], labels]))
            pool = self.samples.pool(gen, self.seed, real.labels, n)
        if not gen.conditional:
            return self._pseudo_labelled(gen, pool, n, real)
        return pool

    def _pseudo_labelled(self, gen: Any, pool: Split, n: int, real: Split) -> Split:
        """An unconditional generator's first ``n`` samples, labelled by the
        reference classifier (seed 003 Sec. 3.3.2). With the generator option
        ``confidence_threshold`` > 0, samples below it are dropped and the pool
        grows (as a prefix, so still deterministic) until ``n`` are kept; at most
        20x ``n`` are drawn, then the run stops with a clear error."""
        threshold = float(getattr(gen, "opts", {}).get("confidence_threshold", 0.0) or 0.0)
        labels, conf = self.pseudo_label(pool.images)
        if threshold <= 0:
            return Split(pool.images, labels)
        drawn = n
        while True:
            keep = conf >= threshold
            if int(keep.sum()) >= n:
                idx = keep.nonzero().flatten()[:n]
                return Split(pool.images[idx], labels[idx])
            if drawn >= 20 * n:
                raise UserError(
                    f"{gen.name}: only {int(keep.sum())} of {drawn} samples reach the pseudo-label confidence "
                    f"threshold {threshold}; lower it (--option {gen.name}.confidence_threshold=...) or train "
                    f"the generator longer.")
            drawn = min(20 * n, max(drawn + 1, int(drawn * n / max(1, int(keep.sum())) * 1.2)))
            with self.phase("sample_s"):
                pool = self.samples.pool(gen, self.seed, real.labels, drawn)
            labels, conf = self.pseudo_label(pool.images)

    def train(self, split: Split, desc: str, seed: int | None = None, **kwargs: Any) -> torch.nn.Module:
        """A classifier trained on ``split`` with this cell's seed (or ``seed``),
        cached on disk under a hash of the data, the preset and the seed, so
        protocols reuse each other's classifiers."""
        with self.phase("train_s"):
            return cached_classifier(split, self.dataset.num_classes, self.preset, self.seed if seed is None else seed,
                                     self.device, self.dataset.hflip, self.cache_dir, desc, **kwargs)

    def reference_classifier(self) -> torch.nn.Module:
        """The classifier trained on the real train split with this cell's seed:
        the same (cached) model the ``real`` x ``replace`` cell trains. Seed 000
        Sec. 4.2 treats it as the ideal classifier for judging synthetic samples."""
        return self.train(self.dataset.train, desc=f"reference classifier seed {self.seed}")

    def pseudo_label(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and confidences (max softmax) from the reference classifier, for
        an unconditional generator's samples (seed 003 Sec. 3.3.2)."""
        from synthbench.benchmark.trainer import predict_logits

        with self.phase("pseudo_label_s"):
            probs = predict_logits(self.reference_classifier(), images, self.device).softmax(1)
        conf, labels = probs.max(1)
        return labels, conf

    def fit_generator(self, train: Split, **option_overrides: Any):
        """A fresh instance of this cell's generator, fitted on ``train`` (a subset
        of the real train split, e.g. MIA members or a long-tailed split), with
        some options overridden (e.g. ``conditional=False``). Cached like any fit."""
        from synthbench.generators.base import FitContext

        gen = type(self.generator)(**{**self.generator.opts, **option_overrides})
        with self.phase("fit_s"):
            gen.fit(FitContext.from_dataset(self.dataset, self.preset, self.device, self.cache_dir, train=train))
        return gen

    def evaluate(self, model: torch.nn.Module) -> Evaluation:
        with self.phase("eval_s"):
            test = self.dataset.test
            return evaluate(model, test.images, test.labels, self.dataset.num_classes, self.device)
