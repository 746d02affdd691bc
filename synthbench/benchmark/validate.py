"""``synthbench validate NAME``: the generator contract (``synthbench.api.Generator``,
DESIGN.md section 3) checked on any registered adapter, built-in or installed
through the generators entry-point group, with a readable report.

The checks are the ones ``tests/test_conformance.py`` runs on every built-in:

- declaration: a ``name`` matching the registered one, an integer ``version``,
  options with defaults;
- determinism: the same (label, seed) pairs give identical bytes; other seeds
  give other images;
- batch-size independence: one batch, pieces of 5 and a single image agree;
- shape, dtype and range: uint8 ``[N, C, H, W]`` with the dataset's C, H, W, and
  not a constant image;
- label adherence (conditional adapters): how often a classifier trained on the
  real train split agrees with the requested label, against ``min_adherence``;
- reconstruction (when ``can_reconstruct``): t_re = 0 returns the input and the
  output has the input's shape and dtype;
- options outside the key: every option declared ``in_key=False`` (left out of
  cell keys because it does not change outputs, e.g. ``eval_batch``) gives
  bit-identical samples at another value;
- speed: samples per second over ``n`` samples (reported, never judged: it
  depends on the machine).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from synthbench.benchmark.context import FitContext, cached_classifier
from synthbench.benchmark.datasets import Dataset
from synthbench.benchmark.guard import cast_from_unit_range
from synthbench.benchmark.presets import Preset
from synthbench.benchmark.seeding import sample_seeds
from synthbench.benchmark.trainer import predict_logits


@dataclass
class Check:
    name: str
    passed: bool | None
    """True / False; None for a report-only line (speed) or a check that does not apply."""
    detail: str


def _check(name: str, fn) -> Check:
    """Run one check; an exception is a failed check with its message, so one
    broken method never hides the rest of the report."""
    try:
        passed, detail = fn()
        return Check(name, passed, detail)
    except Exception as exc:  # reported, not raised: the report is the product
        return Check(name, False, f"raised {type(exc).__name__}: {exc}")


def validate_generator(name: str, cls: type, options: dict[str, Any], dataset: Dataset, preset: Preset,
                       device: torch.device, cache_dir: Path, n: int = 64,
                       min_adherence: float = 0.5) -> list[Check]:
    """Fit ``cls(**options)`` on ``dataset`` and run every check on it."""
    checks = [_check("declaration", lambda: (
        getattr(cls, "name", None) == name and isinstance(getattr(cls, "version", None), int),
        f"name={getattr(cls, 'name', None)!r} (registered as {name!r}), version={getattr(cls, 'version', None)!r}, "
        f"conditional={getattr(cls, 'conditional', True)}, can_reconstruct={getattr(cls, 'can_reconstruct', False)}"))]
    gen = cls(**options)
    fit_ctx = FitContext.from_dataset(dataset, preset, device, cache_dir)
    start = time.perf_counter()
    try:
        gen.fitted(fit_ctx)
    except Exception as exc:
        checks.append(Check("fit", False, f"raised {type(exc).__name__}: {exc}"))
        return checks
    checks.append(Check("fit", True, f"{time.perf_counter() - start:.1f} s on {len(dataset.train)} images"))

    c = dataset.num_classes
    labels = torch.arange(n) % c
    seeds = sample_seeds(12345, 0, n)
    state: dict[str, torch.Tensor] = {}

    def first() -> torch.Tensor:
        if "x" not in state:
            t0 = time.perf_counter()
            state["x"] = gen.sample(labels, seeds)
            state["t"] = torch.tensor(time.perf_counter() - t0)
        return state["x"]

    def shape() -> tuple[bool, str]:
        x = first()
        want = (n, *dataset.image_shape)
        ok = isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and tuple(x.shape) == want
        varied = ok and bool(x.float().std() > 0)
        # [0, 1] floats cast to uint8 are 0s and 1s: "uint8" by type, black by eye, and at chance under replace
        scaled = not varied or not cast_from_unit_range(x)
        problem = ("" if not ok else "; every pixel equal" if not varied else "" if scaled else
                   f"; every pixel is 0 or 1 (max {int(x.max())}): images in [0, 1] cast to uint8? Scale them to "
                   f"0..255 first, e.g. (x * 255).round().clamp(0, 255).to(torch.uint8)")
        return ok and varied and scaled, (f"{getattr(x, 'dtype', type(x).__name__)} "
                                          f"{tuple(getattr(x, 'shape', ()))}, expected torch.uint8 {want}" + problem)

    def determinism() -> tuple[bool, str]:
        x = first()
        same = torch.equal(x, gen.sample(labels, seeds))
        other = not torch.equal(x[:8], gen.sample(labels[:8], sample_seeds(54321, 0, 8)))
        return same and other, f"same seeds identical: {same}; other seeds differ: {other}"

    def batches() -> tuple[bool, str]:
        x = first()
        k = min(n, 12)
        pieces = torch.cat([gen.sample(labels[i:min(k, i + 5)], seeds[i:min(k, i + 5)]) for i in range(0, k, 5)])
        single = gen.sample(labels[k - 1:k], seeds[k - 1:k])
        a, b = torch.equal(x[:k], pieces), torch.equal(x[k - 1:k], single)
        return a and b, f"batches of 5 match: {a}; single image matches: {b}"

    def adherence() -> tuple[bool | None, str]:
        if not getattr(gen, "conditional", True):
            return None, "unconditional: samples are pseudo-labelled by the reference classifier (not checked)"
        x = first()
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *dataset.image_shape):
            return None, "not checked: the samples do not have the dataset's shape (see 'shape, dtype, range')"
        judge = cached_classifier(dataset.train, c, preset, 0, device, dataset.hflip, cache_dir,
                                  desc="validate: classifier trained on real data")
        pred = predict_logits(judge, first(), device).argmax(1)
        rate = float((pred == labels).float().mean())
        real_rate = float((predict_logits(judge, dataset.test.images, device).argmax(1)
                           == dataset.test.labels).float().mean())
        return rate >= min_adherence, (f"{rate:.3f} of {n} samples classified as their label (floor "
                                       f"{min_adherence}; the judge scores {real_rate:.3f} on real test images)")

    def reconstruct() -> tuple[bool | None, str]:
        if not getattr(gen, "can_reconstruct", False):
            return None, "not declared (can_reconstruct = False)"
        imgs, lab = dataset.train.images[:4], dataset.train.labels[:4]
        same = gen.reconstruct(imgs, lab, 0, seeds[:4])
        half = gen.reconstruct(imgs, lab, 50, seeds[:4])
        again = torch.equal(half, gen.reconstruct(imgs, lab, 50, seeds[:4]))
        ok = torch.equal(same, imgs) and half.dtype == torch.uint8 and half.shape == imgs.shape and again
        return ok, (f"t_re=0 returns the input: {torch.equal(same, imgs)}; t_re=50 shape {tuple(half.shape)}, "
                    f"same seeds identical: {again}")

    def pool() -> tuple[bool, str]:
        k, part = min(n, 12), min(n, 12) // 2
        whole = gen.sample_pool(labels[:k], 777, 0)
        extended = torch.cat([gen.sample_pool(labels[:part], 777, 0), gen.sample_pool(labels[:k], 777, part)])
        ok_shape = isinstance(whole, torch.Tensor) and tuple(whole.shape) == (k, *dataset.image_shape)
        prefix, again = ok_shape and torch.equal(whole, extended), ok_shape and torch.equal(
            whole, gen.sample_pool(labels[:k], 777, 0))
        return prefix and again, (f"a pool of {k} equals a pool of {part} extended: {prefix}; "
                                  f"drawn again identical: {again}")

    def outside_key() -> tuple[bool | None, str]:
        specs = getattr(cls, "options", {})
        declared = [o.name for o in specs.values() if not o.in_key and not o.keyed_when_set]  # those set: keyed
        # an int option left unset (None: e.g. a plugin's device-dependent batch) is checked at a small batch
        unset = {o: UNSET_PROBE for o in declared if options[o] is None and specs[o].type is int
                 and _valid(specs[o], UNSET_PROBE)}
        names = [o for o in declared if isinstance(options[o], (bool, int)) or o in unset]
        skipped = [o for o in declared if o not in names]  # e.g. samples' path: its content is keyed instead
        note = f"; {', '.join(skipped)} not checked (not a number: spec_extras keys what it names)" if skipped else ""
        if not names:
            return None, ("none declared" if not declared else note.removeprefix("; "))
        k = min(n, 12)
        results = []
        for opt in names:
            other = unset[opt] if opt in unset else _another_value(options[opt])
            twin = cls(**{**options, opt: other}).fitted(fit_ctx)
            results.append((opt, other, torch.equal(first()[:k], twin.sample(labels[:k], seeds[:k]))))
        return all(same for *_, same in results), "; ".join(
            f"{opt}={other}: {'identical' if same else 'DIFFERENT'} samples" for opt, other, same in results) + note

    checks += [_check("shape, dtype, range", shape), _check("determinism", determinism),
               _check("batch-size independence", batches), _check("pool prefix stability", pool),
               _check("label adherence", adherence),
               _check("reconstruct", reconstruct), _check("options outside the key", outside_key)]
    if "t" in state:
        secs = float(state["t"])
        checks.append(Check("speed", None, f"{n / max(secs, 1e-9):.1f} samples/s ({n} samples in {secs:.2f} s, "
                                           f"{device.type})"))
    return checks


UNSET_PROBE = 5
"""The value an unset (None) int option outside the key is checked at: a batch
that splits validate's 12 images unevenly (5, 5, 2), so padding shows."""


def _valid(option: Any, value: Any) -> bool:
    try:
        option.parse(value, "validate")
        return True
    except Exception:
        return False


def _another_value(value: Any) -> Any:
    """A different valid value for an option left out of cell keys: half (at least
    1) or one more of an integer (the batch sizes such options are), the flip of a
    bool."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value // 2 if value > 1 else value + 1
    raise TypeError(f"cannot choose another value for {value!r}; only int and bool options may be in_key=False")


def dataset_problems(ds: Any, name: str) -> list[str]:
    """What breaks the dataset contract in what a loader returned (empty when
    nothing): a :class:`Dataset` whose train and test splits hold torch uint8
    images ``[N, C, H, W]`` of one shape and int64 labels ``[N]`` in
    ``0..len(class_names)-1`` with every class in the train split, and no test
    image repeated in the train split (``tests/test_conformance.py`` checks the
    built-ins alike)."""
    if not isinstance(ds, Dataset):
        return [f"load() returned {type(ds).__name__}, not a synthbench.api.Dataset"]
    problems: list[str] = []
    shapes = {}
    for split_name in ("train", "test"):
        split = getattr(ds, split_name)
        x, y = getattr(split, "images", None), getattr(split, "labels", None)
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            problems.append(f"its {split_name} split holds {type(x).__name__} images and {type(y).__name__} labels, "
                            f"not torch tensors (torch.from_numpy(array) converts a numpy array)")
            continue
        if x.dtype != torch.uint8 or x.ndim != 4:
            problems.append(f"its {split_name} images are {x.dtype} {tuple(x.shape)}, not torch.uint8 [N, C, H, W] in "
                            f"0..255")
        if y.dtype != torch.int64 or y.ndim != 1 or len(y) != len(x):
            problems.append(f"its {split_name} labels are {y.dtype} {tuple(y.shape)}, not torch.int64 [N] with one "
                            f"label per image ({len(x)})")
        elif len(y) and (int(y.min()) < 0 or int(y.max()) >= len(ds.class_names)):
            problems.append(f"its {split_name} labels run {int(y.min())}..{int(y.max())}, outside 0.."
                            f"{len(ds.class_names) - 1} (an index into its {len(ds.class_names)} class_names)")
        shapes[split_name] = tuple(x.shape[1:])
    if not problems:
        if shapes["train"] != shapes["test"]:
            problems.append(f"its train images are {shapes['train']} and its test images {shapes['test']}; both "
                            f"splits need one image shape")
        absent = sorted(set(range(len(ds.class_names))) - set(ds.train.labels.tolist()))
        if absent:
            problems.append(f"its train split has no image of class {', '.join(ds.class_names[c] for c in absent)}")
    if not problems:
        seen = {bytes(img.contiguous().numpy().tobytes()) for img in ds.train.images}
        leaked = sum(bytes(img.contiguous().numpy().tobytes()) in seen for img in ds.test.images)
        share = f"{leaked} of its {len(ds.test)} test images also appear in its train split"
        if leaked > LEAK_TOLERATED * len(ds.test):
            problems.append(f"{share}; the test split must be held out")
        elif leaked:  # real datasets hold a few exact duplicates across splits (CIFAR's do): said, not refused
            print(f"warning: dataset {name}: {share}; their scores are not held out (under "
                  f"{LEAK_TOLERATED:.0%} of the test split, so it runs)", file=sys.stderr, flush=True)
    return problems


LEAK_TOLERATED = 0.01
"""The share of an installed dataset's test images that may also sit in its
train split, as exact copies, before the dataset is refused: a few duplicates
are a fact of collected data, a copied split is a bug."""


def checked_dataset_loader(cls: type) -> type:
    """``cls`` (an installed dataset plugin) with :meth:`load` checked by
    :func:`dataset_problems`: a wrong dataset is a one-paragraph error naming the
    plugin before any cell runs, instead of records scored on float, misshapen
    or leaked data with status ``ok``."""
    from synthbench.errors import UserError

    def load(self: Any, data_root: str | None = None, argument: str | None = None) -> Dataset:
        try:
            ds = cls.load(self, data_root, argument)
        except UserError:
            raise
        except Exception as exc:  # Dataset() digests its splits: numpy arrays fail there, inside load()
            raise UserError(f"The dataset plugin {cls.name!r} ({cls.__module__}:{cls.__qualname__}) failed in load(): "
                            f"{type(exc).__name__}: {exc}. A Dataset's train and test are Splits of torch tensors "
                            f"(uint8 images [N, C, H, W], int64 labels [N]; torch.from_numpy converts an array); "
                            f"fix its load() and run again.") from exc
        problems = dataset_problems(ds, cls.name)
        if problems:
            raise UserError(f"The dataset plugin {cls.name!r} ({cls.__module__}:{cls.__qualname__}) loaded data that "
                            f"breaks the dataset contract: {'; '.join(problems)}. Fix its load() (see "
                            f"synthbench.api.Dataset and Split) and run again.")
        return ds

    return type(cls.__name__, (cls,), {"load": load, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                       "__doc__": cls.__doc__})
