"""What a plugin gets from the harness: :class:`FitContext` for a generator's
``fit`` (the real train split, never the test split) and :class:`CellContext`
for a protocol's ``run`` (data, the fitted generator, the preset, the seed, and
helpers that go through the caches: synthetic pools, classifiers, fits)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from synthbench.benchmark import charges
from synthbench.benchmark.cache import TORCH, DiskCache, cache_key, digest, snapshot_of
from synthbench.benchmark.datasets import Dataset, Split
from synthbench.benchmark.presets import Preset
from synthbench.benchmark.provenance import compute_tag
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.seeding import sample_seeds
from synthbench.benchmark.snapshots import Resumable
from synthbench.benchmark.trainer import Evaluation, evaluate, init_model, train_classifier
from synthbench.errors import UserError


def cached_classifier(split: Split, num_classes: int, preset: Preset, seed: int, device: torch.device, hflip: bool,
                      cache_dir: Any, desc: str, **kwargs: Any) -> torch.nn.Module:
    """A classifier trained on ``split`` with the preset's recipe and ``seed``,
    cached under ``cache_dir/classifiers`` by a digest of the data, the preset, the
    seed and the training options: protocols and generators (e.g. ``realfake``'s
    visual guidance, through :meth:`FitContext.classifier`) that ask for the same
    classifier share one file. A training killed part-way goes on from its last
    snapshot (``snapshots.py``)."""
    identity = _classifier_identity(split, preset, seed, device, hflip, kwargs)

    def build(state: dict[str, torch.Tensor]) -> torch.nn.Module:
        model = init_model(preset, split.images.shape[1], num_classes, seed)
        model.load_state_dict(state)
        return model.to(device).eval()

    cache = DiskCache(cache_dir)
    snapshot = snapshot_of(cache.path("classifiers", "classifier", identity, TORCH), TORCH)

    def train() -> dict[str, torch.Tensor]:
        model = train_classifier(split.images, split.labels, num_classes, preset, seed, device, hflip, desc=desc,
                                 snapshot=snapshot, **kwargs)
        return {k: v.cpu() for k, v in model.state_dict().items()}

    return cache.load_or_compute("classifiers", "classifier", identity, TORCH, "classifier", train, build)


def _classifier_identity(split: Split, preset: Preset, seed: int, device: torch.device, hflip: bool,
                         kwargs: dict[str, Any]) -> tuple:
    return (split.images, split.labels, sorted(preset.as_dict().items()), seed, hflip, compute_tag(device),
            sorted(kwargs.items()))


def reference_classifier_path(ds: Dataset, preset: Preset, seed: int, device: torch.device, cache_dir: Any) -> Path:
    """Where the seed's reference classifier (:meth:`CellContext.reference_classifier`)
    is cached, so a plan can tell whether it exists without loading it."""
    identity = _classifier_identity(ds.train, preset, seed, device, ds.hflip, {})
    return DiskCache(cache_dir).path("classifiers", "classifier", identity, TORCH)


def reference_classifier(ds: Dataset, preset: Preset, seed: int, device: torch.device, cache_dir: Any) -> torch.nn.Module:
    """The classifier trained on the real train split with ``seed``: the judge of
    synthetic samples, shared by every protocol of the seed (and the ``real`` x
    ``replace`` cell's model)."""
    return cached_classifier(ds.train, ds.num_classes, preset, seed, device, ds.hflip, cache_dir,
                             desc=f"reference classifier seed {seed}")


@dataclass(frozen=True)
class GeneratorFit:
    """A fit of the cell's generator that a protocol's ``run`` will ask for
    (:meth:`Protocol.generator_fits`): the planner runs it as a task of its own,
    before the cells, so that workers share one fit instead of each training it.

    ``train`` is the split to fit on (None: the full real train split, the fit
    every cell's generator gets); ``overrides`` are generator options replaced for
    this fit (e.g. the unconditional control of ``longtail``)."""

    name: str
    train: Split | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def is_full(self) -> bool:
        """The cell's own generator, fitted on the whole train split."""
        return self.train is None and not self.overrides


def fit_data_digest(ds: Dataset, train: Split | None) -> str:
    """The digest a fit on ``train`` (a subset of ``ds.train``, None: all of it) is
    keyed by. A ``train`` holding the whole train split is keyed as None: it is
    the same training, so one weights file. (``longtail``'s control fits the
    unconditional generator on ``ds.train`` given explicitly; keyed apart, it
    trained a second copy of the fit the plan had just made, half an hour at
    `fast` on fashion-mnist.)"""
    if train is None or _whole(train, ds.train):
        return ds.digest
    return digest(ds.digest, train.images, train.labels)


def _whole(part: Split, full: Split) -> bool:
    """Whether ``part`` is the split ``full`` (the same object, or the same
    images and labels in the same order)."""
    if part is full:
        return True
    return (part.images.shape == full.images.shape and torch.equal(part.labels, full.labels)
            and torch.equal(part.images, full.images))


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
    """Wall seconds of the fit's phases (e.g. ``fit_train_s``), added to the record's cost."""
    snapshot_every_s: float | None = None
    """Seconds of training between two snapshots of a fit (None: 5 minutes, or
    ``SYNTHBENCH_SNAPSHOT_S``: :func:`~synthbench.benchmark.snapshots.interval_s`)."""
    _snapshot: Path | None = field(default=None, init=False, repr=False)

    @property
    def compute_tag(self) -> str:
        """Device type, and thread count on a CPU: put it in the identity of cached
        weights (see :func:`synthbench.benchmark.provenance.compute_tag`)."""
        return compute_tag(self.device)

    @property
    def cache(self) -> DiskCache:
        """The store's disk cache: keep trained weights here (``cache.py``)."""
        return DiskCache(self.cache_dir)

    def cached_weights(self, name: str, recipe: dict[str, Any], version: int,
                       build: Callable[[], torch.nn.Module], train: Callable[[], torch.nn.Module],
                       state_key: str = "ema", phase: str = "fit_train_s") -> tuple[torch.nn.Module, str]:
        """A network trained in-suite on ``train``, through the disk cache: keyed by
        the data digest, the training ``recipe``, the adapter's ``version`` and the
        compute tag. ``build()`` makes an untrained network of the recipe's shape
        (the global RNG is left untouched), ``train()`` returns a trained one (its
        wall time is the fit's ``phase`` in the record's cost; a loop that uses
        :meth:`resumable` survives a kill). Returns the network on the CPU and its
        weights key, for the adapter's identity."""
        identity = {"dataset_digest": self.dataset_digest, "train": recipe, "version": version,
                    "compute": self.compute_tag}

        snapshot = snapshot_of(self.cache.path("generators", name, identity, TORCH), TORCH)

        def compute() -> dict[str, Any]:
            outer, self._snapshot = self._snapshot, snapshot  # a fit inside another's train() keeps its own
            try:
                with charges.spent() as cost:  # a killed run's training before the snapshot counts too
                    state = train().state_dict()
            finally:
                self._snapshot = outer
            self.cost[phase] = self.cost.get(phase, 0.0) + cost.seconds
            return {state_key: state}

        def load(content: dict[str, Any]) -> torch.nn.Module:
            with torch.random.fork_rng(devices=[]):
                net = build()
            net.load_state_dict(content[state_key])
            return net

        net = self.cache.load_or_compute("generators", name, identity, TORCH, f"{name} weights file", compute, load)
        return net, cache_key(identity)

    def resumable(self, state: dict[str, Any]) -> Resumable:
        """A training loop's :class:`~synthbench.benchmark.snapshots.Resumable`:
        inside :meth:`cached_weights`'s ``train()`` it resumes from, and writes,
        the snapshot of the weights file being computed; elsewhere it never writes.
        ``state`` names what the loop mutates (modules, optimisers, the
        ``torch.Generator`` of its draws); start at ``.start`` and call
        ``.step_done(step)`` after each step::

            run = ctx.resumable({"net": net, "ema": ema, "opt": opt, "gen": gen})
            for step in range(run.start, steps):
                ...
                run.step_done(step)
        """
        return Resumable(self._snapshot, state, self.snapshot_every_s)

    def classifier(self, seed: int, desc: str) -> torch.nn.Module:
        """The preset's classifier trained on ``train`` with ``seed``, shared through
        the classifier cache with the protocols (for the full train split and seed
        0, it is the seed-0 reference classifier)."""
        return cached_classifier(self.train, len(self.class_names), self.preset, seed, self.device, self.hflip,
                                 self.cache_dir, desc)

    @classmethod
    def from_dataset(cls, ds: Dataset, preset: Preset, device: torch.device, cache_dir: Path,
                     train: Split | None = None) -> "FitContext":
        """Fit on ``ds.train``, or on ``train`` (a subset of it, e.g. the members
        of a membership-inference split); the digest then names that subset."""
        return cls(train=ds.train if train is None else train, class_names=ds.class_names,
                   image_shape=ds.image_shape, dataset_digest=fit_data_digest(ds, train), preset=preset, device=device,
                   cache_dir=Path(cache_dir), hflip=ds.hflip)


@dataclass
class CellContext:
    dataset: Dataset
    generator: Any  # a fitted Generator behind the harness's checks (benchmark/guard.py: Guarded)
    preset: Preset
    seed: int
    device: torch.device
    options: dict[str, Any]
    samples: SampleCache
    cache_dir: Any
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str, shared: bool = False) -> Iterator[None]:
        """Add the wall time of the block to ``timings[name]`` (the record's cost).

        ``shared``: the block computes something into the cache that later cells
        read instead of computing it again (``recon``'s reconstructions, which
        every seed shares; a fit trained inside a cell). Its time is also added
        to ``shared_s``, so that ``--dry-run`` does not expect each later cell to
        pay for it again (``plan.comparable_costs``)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.timings[name] = self.timings.get(name, 0.0) + seconds
            if shared:
                self.timings["shared_s"] = self.timings.get("shared_s", 0.0) + seconds

    def synthetic(self, n: int, generator: Any = None, like: Split | None = None) -> Split:
        """The first ``n`` images of this seed's synthetic pool, labels cycling
        through the labels of ``like`` (default: the real train split, so ``n`` =
        its size keeps its class balance exactly).

        ``generator`` defaults to the cell's; protocols pass another fitted one
        (e.g. fitted on MIA members). For the ``real`` oracle the first
        ``len(like)`` images are ``like`` itself; an unconditional generator's
        samples are pseudo-labelled by the reference classifier (Basu et al.)."""
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
        reference classifier (Basu et al. Sec. 3.3.2). With the generator's
        ``pseudo_label_threshold()`` > 0, samples below it are dropped and the pool
        grows (as a prefix, so still deterministic) until ``n`` are kept; at most
        20x ``n`` are drawn, then the run stops with a clear error."""
        threshold = float(gen.pseudo_label_threshold())
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
                    f"threshold {threshold}; lower the threshold (`synthbench list generators` names the "
                    f"option) or train the generator longer.")
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
        the same (cached) model the ``real`` x ``replace`` cell trains. Yamaguchi &
        Fukuda 2023 (arXiv 2311.13090, Sec. 4.2) treat it as the ideal classifier
        for judging synthetic samples."""
        with self.phase("train_s"):
            return reference_classifier(self.dataset, self.preset, self.seed, self.device, self.cache_dir)

    def pseudo_label(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and confidences (max softmax) from the reference classifier, for
        an unconditional generator's samples (Basu et al. Sec. 3.3.2)."""
        from synthbench.benchmark.trainer import predict_logits

        with self.phase("pseudo_label_s"):
            probs = predict_logits(self.reference_classifier(), images, self.device).softmax(1)
        conf, labels = probs.max(1)
        return labels, conf

    def fit_generator(self, train: Split, **option_overrides: Any):
        """A fresh instance of this cell's generator, fitted on ``train`` (a subset
        of the real train split, e.g. MIA members or a long-tailed split), with
        some options overridden (e.g. ``conditional=False``). Cached like any fit.
        Its time is the cell's ``cell_fit_s`` phase, inside ``cell_s``: a fit the
        plan ran ahead (``Protocol.generator_fits``) is read from the cache here
        and charged once, as the shared ``fit_s``; one it did not plan is trained
        here and charged once, as part of the cell (``cell.COST_PHASES``)."""
        gen = self.generator.spawn(**option_overrides)
        with self.phase("cell_fit_s", shared=True):
            gen.fitted(FitContext.from_dataset(self.dataset, self.preset, self.device, self.cache_dir, train=train))
        return gen

    def held_out_generator(self) -> Any | None:
        """A separate instance of this cell's generator, fitted like it on the real
        train split (from the weights cache), for work on held-out images: ``recon``
        reconstructs test images with it and discards it with the cell, so the
        instance that samples never receives a test image. None for a third-party
        adapter, whose code the harness cannot vouch for (it could keep what it is
        handed in global state): held-out images reach only built-in adapters."""
        if not getattr(self.generator, "trusted", False):
            return None
        gen = self.generator.spawn()
        with self.phase("cell_fit_s", shared=True):
            return gen.fitted(FitContext.from_dataset(self.dataset, self.preset, self.device, self.cache_dir))

    def evaluate(self, model: torch.nn.Module) -> Evaluation:
        with self.phase("eval_s"):
            test = self.dataset.test
            return evaluate(model, test.images, test.labels, self.dataset.num_classes, self.device)
