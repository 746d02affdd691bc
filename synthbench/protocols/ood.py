"""``ood``: the classifiers of ``replace`` and ``augment`` on shifted test sets
(Real-Fake, Yuan et al. 2024, arXiv 2310.10402, Sec. 4.4, Table 4, at the scale we can run).

The classifiers are not retrained: ``ood`` rebuilds the exact training sets of
``replace`` and of ``augment`` (default options) for the cell's seed, and the
classifier cache returns the models those protocols trained (or trains them
once, for both). The real reference is the classifier trained on the real split
with the same seed.

Shifted test sets:
- the corruption suite of ``benchmark/corruptions.py`` (8 types x 5 severities,
  deterministic, computed from the test split; CIFAR-10-C's constants for images
  of 32 px or less, ImageNet-C's above, the set named in ``details``);
- any image folders given with ``--option ood_folder=PATH[,PATH...]``: class
  sub-folders named like the dataset's classes, as a ``samples:`` folder names
  them (the name, its file-safe form such as ``T-shirt_top``, or the class
  index; others are ignored), images resized to the dataset's shape.

Reported per arm (replace, augment): clean accuracy, mean corruption accuracy,
its ratio to the real classifier's, and per type / per severity in ``details``.

Evaluation dominates the cost (3 classifiers x 41 test sets: about 20 min per
cell for 10,000 28x28 test images on one CPU core), so a classifier's accuracies
on the suite are cached under ``cache_dir/ood`` by a hash of its weights and of
the suite (test split, corruption list and constants, Pillow version for JPEG) and the device
type (CUDA evaluates in bfloat16). The real arm is
then evaluated once per seed for every generator, and under ``real`` the
replace arm, which is the reference classifier itself, costs nothing.
"""

from __future__ import annotations

from typing import Any

from pathlib import Path

import numpy as np
import torch

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.corruptions import CONSTANTS, CORRUPTIONS, SEVERITIES, constants_for, corrupt
from synthbench.benchmark.cache import JSON, DiskCache, digest, state_digest
from synthbench.benchmark.options import Option
from synthbench.benchmark.metrics import metric
from synthbench.benchmark.trainer import predict_logits
from synthbench.errors import UserError
from synthbench.protocols.augment import augmented_train_set
from synthbench.protocols.base import Protocol, ProtocolResult

ARMS = ("real", "replace", "augment")


def _folders(text: str) -> list[Path]:
    return [Path(p).expanduser() for p in str(text).split(",") if p.strip()]


def _not_a_folder(path: Path) -> UserError:
    return UserError(f"ood_folder {path} is not a folder. Give a folder of class sub-folders named like the "
                     f"dataset's classes (or by their index).")


def load_ood_folder(path: Path, class_names: list[str], shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images under PATH/<class name>/ for the dataset's classes, as uint8 of ``shape``."""
    from PIL import Image

    if not path.is_dir():
        raise _not_a_folder(path)
    from synthbench.benchmark.sample_files import class_index, decode_file

    mode = "L" if shape[0] == 1 else "RGB"
    # A sub-folder names its class as a samples: folder does (benchmark/sample_files.py): the class name, its
    # file-safe form (Fashion-MNIST's T-shirt/top is T-shirt_top, as export-samples writes it) or its index.
    folders: dict[int, list[Path]] = {label: [] for label in range(len(class_names))}
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        label = class_index(sub.name, class_names, f"ood_folder {path}'s sub-folder {sub.name!r}")
        if label is not None:
            folders[label].append(sub)
    for label, name in enumerate(class_names):
        if "/" in name and (path / name).is_dir():  # read as before: the name as a nested path
            folders[label].append(path / name)
    images, labels = [], []
    for label, folder in ((label, f) for label, fs in folders.items() for f in fs):
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in {".png", ".jpg", ".jpeg", ".bmp", ".webp"}:
                continue
            # decoded as a samples: folder's image is: a 16-bit one (which Pillow's convert clips to white),
            # a floating-point or a transparent one is refused, not guessed at
            try:
                decoded = decode_file(f)
            except UserError as err:
                raise UserError(f"ood_folder: {str(err).removeprefix('samples: ')}") from None
            except OSError as exc:
                raise UserError(f"ood_folder: cannot read {f} ({exc}). Remove or replace it.") from None
            im = Image.fromarray(decoded[..., 0] if decoded.shape[-1] == 1 else decoded)
            arr = np.asarray(im.convert(mode).resize((shape[2], shape[1]), Image.BICUBIC))
            images.append(arr[None] if mode == "L" else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise UserError(f"ood_folder {path} has no images in sub-folders named like the dataset's classes "
                        f"({', '.join(class_names)}).")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def suite_key(test) -> str:
    """Identity of the corruption suite on a test split: its bytes, the
    corruption list, severities and constant set (with its values), and
    Pillow's version (JPEG's codec)."""
    import PIL

    constants = constants_for(test.images.shape[-2])
    return digest(test.images, test.labels, [list(CORRUPTIONS), list(SEVERITIES), constants,
                                             {k: list(v) for k, v in CONSTANTS[constants].items()}, PIL.__version__])


class OODProtocol(Protocol):
    name = "ood"
    version = 2
    """v2: the corruptions use CIFAR-10-C's constants for images of 32 px or less
    (v1 took six of the eight from ImageNet-C while saying CIFAR-C), and records
    name the set (``details.corruption_constants``). Corrupted accuracies change."""
    description = "replace/augment classifiers on corrupted test sets and OOD folders"
    source = "Yuan et al. 2024 (Real-Fake), arXiv 2310.10402 Sec. 4.4, Table 4"
    metrics = {
        "replace_clean_top1": True, "replace_corrupt_top1": True, "replace_corrupt_ratio_to_real": True,
        "augment_clean_top1": True, "augment_corrupt_top1": True, "augment_corrupt_ratio_to_real": True,
        "real_corrupt_top1": None, "{arm}_folder{i}_top1": True,
    }
    headline = "replace_corrupt_top1"
    options = {
        "ood_folder": Option("ood_folder", "", "Comma-separated folders of class sub-folders to test on "
                             "as well (empty: the corruption suite only).", str),
    }

    def table_metrics(self) -> list[str]:
        return ["replace_corrupt_top1", "replace_corrupt_ratio_to_real", "augment_corrupt_top1",
                "augment_corrupt_ratio_to_real"]

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        return n_train

    @classmethod
    def spec_extras(cls, options: dict[str, Any], preset: Any = None) -> dict[str, Any]:
        """The digest of each ``ood_folder`` (as a ``samples:`` folder's: file
        names, class folders, bytes): the path alone keyed a cell, so a folder
        whose images changed was a cache hit with the old accuracies. Without
        folders (every published record) the key is as before."""
        folders = _folders(options.get("ood_folder") or "")
        if not folders:
            return {}
        from synthbench.benchmark.sample_files import source_digest

        missing = [p for p in folders if not p.is_dir()]
        if missing:
            raise _not_a_folder(missing[0])
        return {"ood_folder_digests": [source_digest(p) for p in folders]}

    def run(self, ctx: CellContext) -> ProtocolResult:
        folders = _folders(self.opts["ood_folder"])
        test = ctx.dataset.test
        shape = ctx.dataset.image_shape
        extra_sets = {str(p): load_ood_folder(p, ctx.dataset.class_names, shape) for p in folders}
        replace_train = ctx.synthetic(len(ctx.dataset.train))
        augment_train, _, _ = augmented_train_set(ctx, 1.0, 0.0)
        models = {
            "real": ctx.reference_classifier(),
            "replace": ctx.train(replace_train, desc=f"{ctx.generator.name}/replace seed {ctx.seed}"),
            "augment": ctx.train(augment_train, desc=f"{ctx.generator.name}/augment seed {ctx.seed}"),
        }

        def accuracy(model, images, labels) -> float:
            with ctx.phase("eval_s"):
                pred = predict_logits(model, images, ctx.device).argmax(1)
            return float((pred == labels).float().mean())

        suite = suite_key(test)

        def shifted_accuracy(model, kind: str, severity: int) -> float:
            # one shifted set in memory at a time: all 40 of a 3 x 224 x 224 test split of 10,000 images would hold
            # 60 GB (they were kept for the next arm); each is the same bytes whenever it is computed, and computing
            # the suite again for an arm takes seconds beside its evaluation
            with ctx.phase("corrupt_s"):
                shifted = corrupt(test.images, kind, severity)
            return accuracy(model, shifted, test.labels)

        def suite_scores(model) -> dict:
            """Clean and per-corruption accuracies, from the cache when this
            classifier met this suite before."""
            def compute() -> dict:
                return {"clean": accuracy(model, test.images, test.labels),
                        "per_type": {kind: [shifted_accuracy(model, kind, s) for s in SEVERITIES]
                                     for kind in CORRUPTIONS}}

            # the device is in the key too: the same weights may evaluate differently on another device
            identity = (state_digest(model), suite, ctx.device.type)
            return DiskCache(ctx.cache_dir).load_or_compute("ood", "suite-accuracy", identity, JSON,
                                                            "corruption-suite accuracies", compute)

        scores = {arm: suite_scores(m) for arm, m in models.items()}
        per_type = {arm: scores[arm]["per_type"] for arm in ARMS}
        clean = {arm: scores[arm]["clean"] for arm in ARMS}
        folder_acc = {arm: {name: accuracy(m, x, y) for name, (x, y) in extra_sets.items()}
                      for arm, m in models.items()}
        mean_c = {arm: float(np.mean([a for accs in per_type[arm].values() for a in accs])) for arm in ARMS}
        n_c = len(test) * len(CORRUPTIONS) * len(SEVERITIES)
        metrics = {"real_corrupt_top1": metric(mean_c["real"], None, n_c, True)}
        for arm in ("replace", "augment"):
            metrics[f"{arm}_clean_top1"] = metric(clean[arm], None, len(test), True)
            metrics[f"{arm}_corrupt_top1"] = metric(mean_c[arm], None, n_c, True)
            metrics[f"{arm}_corrupt_ratio_to_real"] = metric(mean_c[arm] / max(mean_c["real"], 1e-12), None, n_c, True)
            for i, name in enumerate(extra_sets):
                metrics[f"{arm}_folder{i}_top1"] = metric(folder_acc[arm][name], None, len(extra_sets[name][1]), True)
        return ProtocolResult(metrics, {
            "clean_top1": clean, "corrupt_top1": mean_c,
            "per_corruption": per_type, "severities": list(SEVERITIES),
            "corruption_constants": constants_for(test.images.shape[-2]),
            "ood_folders": {name: {arm: folder_acc[arm][name] for arm in ARMS} for name in extra_sets},
            "augment_ratio": 1.0,
        })
