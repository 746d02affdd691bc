"""Real target datasets as uint8 tensors, with class names and a content digest.

Every dataset gives a train split and a held-out test split as ``uint8`` tensors
of shape ``[N, C, H, W]`` plus ``int64`` labels. The SHA-256 digest of the bytes
goes into every result record, so a record says exactly which data it was
computed on. The test split is never handed to a generator (the runner passes
``dataset.train`` only).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthbench.benchmark.options import Option
from synthbench.errors import UserError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Split:
    """Images ``uint8 [N, C, H, W]`` and labels ``int64 [N]``."""

    images: Any  # torch.Tensor
    labels: Any  # torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index) -> "Split":
        return Split(self.images[index], self.labels[index])


@dataclass
class Dataset:
    name: str
    class_names: list[str]
    train: Split
    test: Split
    hflip: bool
    """Whether a horizontal flip keeps an image's class (False for digits)."""
    source: str = ""
    digest: str = field(default="")

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = content_digest(self)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def capped(self, max_per_class: int | None) -> "Dataset":
        """The first ``max_per_class`` train images of each class (test untouched).

        Keeps the train split's order, so the result is deterministic; the digest
        changes with the cap, so records never mix capped and full data."""
        if max_per_class is None:
            return self
        import torch

        counts = torch.bincount(self.train.labels, minlength=self.num_classes)
        if int(counts.max()) <= max_per_class:
            return self
        keep = torch.zeros(len(self.train), dtype=torch.bool)
        for c in range(self.num_classes):
            idx = (self.train.labels == c).nonzero().flatten()[:max_per_class]
            keep[idx] = True
        return Dataset(name=self.name, class_names=self.class_names, train=self.train.subset(keep), test=self.test,
                       hflip=self.hflip, source=f"{self.source}, train capped at {max_per_class}/class")


def content_digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    h.update("\x1f".join(ds.class_names).encode())
    for split in (ds.train, ds.test):
        h.update(str(tuple(split.images.shape)).encode())
        h.update(split.images.contiguous().numpy().tobytes())
        h.update(split.labels.to(dtype=__import__("torch").int64).numpy().tobytes())
    return h.hexdigest()


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split in the same proportion.

    Written with numpy's PCG64 rather than scikit-learn's splitter so the split,
    and hence the digest, does not change with the scikit-learn version."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx = np.concatenate(train)
    test_idx = np.concatenate(test)
    # Interleave classes: shuffle once more so any prefix is near class-balanced.
    return train_idx[rng.permutation(len(train_idx))], test_idx[rng.permutation(len(test_idx))]


def _as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    import torch

    if images.ndim == 3:
        images = images[:, None]
    return Split(torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
                 torch.from_numpy(np.asarray(labels, dtype=np.int64)))


class DatasetLoader:
    """Base of dataset plugins: ``load(data_root, argument)`` returns a :class:`Dataset`."""

    name = "?"
    version = 1
    needs = "nothing"
    description = ""
    options: dict[str, Option] = {}

    def load(self, data_root: str | None, argument: str | None = None) -> Dataset:
        raise NotImplementedError


class Digits(DatasetLoader):
    """scikit-learn's bundled 8x8 digits (1,797 images): the embedded default.

    Pixel values 0..16 are scaled to 0..255. A fixed stratified split holds out
    20% of each class as the test set (1,438 train / 359 test)."""

    name = "digits"
    needs = "nothing (bundled with scikit-learn)"
    description = "8x8 grey digits, 10 classes, 1,438 train / 359 test"

    def load(self, data_root=None, argument=None) -> Dataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        labels = bunch.target.astype(np.int64)
        tr, te = stratified_split(labels, 0.2, seed=0)
        return Dataset(name="digits", class_names=[str(i) for i in range(10)], train=_as_split(images[tr], labels[tr]),
                       test=_as_split(images[te], labels[te]), hflip=False,
                       source="sklearn.datasets.load_digits, stratified 80/20 split (seed 0)")


class _TorchvisionMNISTLike(DatasetLoader):
    tv_class = "MNIST"
    hflip = False
    class_names: list[str] = [str(i) for i in range(10)]

    def _root(self, data_root: str | None) -> Path:
        if data_root:
            return Path(data_root)
        return Path(os.environ.get("SYNTHBENCH_DATA", "~/.cache/synthbench/data")).expanduser()

    def _tv(self, root: Path, download: bool):
        import torchvision.datasets as tvd

        cls = getattr(tvd, self.tv_class)
        return cls(str(root), train=True, download=download), cls(str(root), train=False, download=download)

    def _from_tv(self, train, test, source: str) -> Dataset:
        return Dataset(name=self.name, class_names=list(self.class_names), hflip=self.hflip, source=source,
                       train=_as_split(train.data.numpy(), train.targets.numpy()),
                       test=_as_split(test.data.numpy(), test.targets.numpy()))

    def load(self, data_root=None, argument=None) -> Dataset:
        root = self._root(data_root)
        try:
            train, test = self._tv(root, download=False)
            return self._from_tv(train, test, f"torchvision {self.tv_class} at {root}")
        except RuntimeError:
            pass
        if data_root is not None:
            raise UserError(f"--data-root {data_root} holds no {self.name} in torchvision's layout "
                            f"({root}/{self.tv_class}/raw/*-ubyte). Point --data-root at a folder that has it, or "
                            f"leave --data-root out to download it (needs network).")
        try:
            train, test = self._tv(root, download=True)
        except Exception as exc:  # torchvision's text spans lines (one per mirror tried): one paragraph here
            why = " ".join(str(exc).split()).rstrip(". ")
            raise UserError(f"Could not load {self.name}: {type(exc).__name__}: {why}. Provide it one of these ways: "
                            f"--data-root DIR with torchvision's {self.tv_class} layout, or a network connection for "
                            f"torchvision to download it into {root}.") from None
        return self._from_tv(train, test, f"torchvision {self.tv_class}, downloaded to {root}")


class MNIST(_TorchvisionMNISTLike):
    """MNIST through torchvision (``--data-root`` or download)."""

    name = "mnist"
    needs = "--data-root with torchvision's MNIST files, or network to download"
    description = "28x28 grey digits, 60k train / 10k test"


class FashionMNIST(_TorchvisionMNISTLike):
    """Fashion-MNIST through torchvision's loader, found in this order: ``--data-root``;
    Debian's ``dataset-fashion-mnist`` files under /usr/share/datasets/fashion-mnist;
    a download when online."""

    name = "fashion-mnist"
    tv_class = "FashionMNIST"
    hflip = True
    class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    needs = "--data-root, or `apt-get install dataset-fashion-mnist`, or network to download"
    description = "28x28 grey clothing, 10 classes, 60k train / 10k test"

    def _stage_debian(self) -> Path | None:
        """Debian ships gzipped idx files in a flat folder; torchvision wants them
        unpacked under ROOT/FashionMNIST/raw. Unpack once into our data cache."""
        files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        if not all((DEBIAN_FASHION_MNIST / f"{f}.gz").exists() for f in files):
            return None
        root = self._root(None) / "debian"
        raw = root / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for f in files:
            if not (raw / f).exists():
                tmp = raw / f"{f}.tmp"
                with gzip.open(DEBIAN_FASHION_MNIST / f"{f}.gz", "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(tmp, raw / f)
        return root

    def load(self, data_root=None, argument=None) -> Dataset:
        if data_root is None:
            staged = self._stage_debian()
            if staged is not None:
                train, test = self._tv(staged, download=False)
                return self._from_tv(train, test, f"Debian dataset-fashion-mnist ({DEBIAN_FASHION_MNIST})")
        try:
            return super().load(data_root)
        except UserError as err:
            raise UserError(f"{err} Offline, `apt-get install dataset-fashion-mnist` puts the files under "
                            f"{DEBIAN_FASHION_MNIST}, which synthbench finds by itself.") from None


class _TorchvisionCIFAR(_TorchvisionMNISTLike):
    hflip = True

    def _from_tv(self, train, test, source: str) -> Dataset:
        return Dataset(name=self.name, class_names=list(train.classes), hflip=True, source=source,
                       train=_as_split(train.data.transpose(0, 3, 1, 2), np.asarray(train.targets)),
                       test=_as_split(test.data.transpose(0, 3, 1, 2), np.asarray(test.targets)))


class CIFAR10(_TorchvisionCIFAR):
    """CIFAR-10 through torchvision (``--data-root`` or download): the seeds' dataset."""

    name = "cifar10"
    tv_class = "CIFAR10"
    needs = "--data-root with torchvision's cifar-10-batches-py, or network to download"
    description = "32x32 colour, 10 classes, 50k train / 10k test (paper scale, GPU)"


class CIFAR100(_TorchvisionCIFAR):
    """CIFAR-100 through torchvision (``--data-root`` or download)."""

    name = "cifar100"
    tv_class = "CIFAR100"
    needs = "--data-root with torchvision's cifar-100-python, or network to download"
    description = "32x32 colour, 100 classes, 50k train / 10k test (paper scale, GPU)"


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bit_depth(data: bytes) -> int | None:
    """The bits per sample a PNG's IHDR declares, or None for another format.
    Read from the header because Pillow opens a 16-bit RGB PNG as mode ``RGB``
    (keeping the high byte of each sample): its mode cannot tell it apart from
    an 8-bit one. (Every PNG starts with the signature, then IHDR: length,
    ``IHDR``, width, height, bit depth.)"""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 25:
        return None
    return data[24]


def not_8_bit(mode: str, head: bytes) -> str | None:
    """What an image of Pillow ``mode`` whose file starts with ``head`` (25 bytes
    suffice) is, when it is not 8 bits per sample ("a 16-bit PNG (...)"), else
    None. Such images are refused rather than converted: Pillow's ``convert``
    clips 16-bit grey to white and cuts 16-bit RGB to its high bytes, so a
    dataset or samples folder of them would be scored as other images."""
    if mode in ("I;16", "I;16B", "I;16L", "I", "F") or mode.startswith("I;"):
        return f"a {mode} image (16-bit or floating point)"
    if png_bit_depth(head) == 16:
        return f"a 16-bit PNG ({mode}, 16 bits per channel)"
    return None


class ImageFolder(DatasetLoader):
    """``imagefolder:PATH``: the user's own images.

    PATH holds ``train/`` and ``test/`` folders of class sub-folders, or only class
    sub-folders, in which case a stratified 20% is held out as the test split
    (seed 0). Either way the train split comes in one seeded shuffled order,
    never class by class: protocols draw class-balanced sets as prefixes of its
    labels. All images are resized (antialiased) to the first image's size and
    kept grey if every image is grey, RGB otherwise."""

    name = "imagefolder"
    needs = "a folder: imagefolder:PATH"
    description = "your images: PATH/{train,test}/CLASS/*.png, or PATH/CLASS/*.png"

    @staticmethod
    def _scan(folder: Path) -> dict[str, list[Path]]:
        classes = sorted(p for p in folder.iterdir() if p.is_dir())
        return {c.name: sorted(f for f in c.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
                for c in classes}

    def load(self, data_root=None, argument=None) -> Dataset:
        from PIL import Image

        if not argument:
            raise UserError("The imagefolder dataset needs a path: --dataset imagefolder:PATH.")
        root = Path(argument).expanduser().resolve()  # one name (and cell key) for ./x and /abs/x
        if not root.is_dir():
            raise UserError(f"imagefolder: {root} is not a folder. Give --dataset imagefolder:PATH "
                            f"with PATH holding class sub-folders (or train/ and test/ of them).")
        split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
        if not split_dirs and ((root / "train").is_dir() or (root / "test").is_dir()):
            have, lack = ("train", "test") if (root / "train").is_dir() else ("test", "train")
            raise UserError(f"imagefolder: {root} has {have}/ but no {lack}/. Give both, each of class "
                            f"sub-folders, or put the class sub-folders directly in {root} for a stratified 20% "
                            f"test split.")
        parts = {n: self._scan(root / n) for n in ("train", "test")} if split_dirs else {"all": self._scan(root)}
        if split_dirs and set(parts["train"]) != set(parts["test"]):
            only = {n: sorted(set(parts[n]) - set(parts[o])) for n, o in (("train", "test"), ("test", "train"))}
            raise UserError(f"imagefolder: {root}'s train/ and test/ hold different classes ("
                            + "; ".join(f"only in {n}/: {', '.join(c)}" for n, c in only.items() if c)
                            + "). Give both the same class sub-folders: a class without test images cannot be "
                              "scored, and one without train images cannot be learnt.")
        class_names = sorted({c for p in parts.values() for c in p})
        all_files = [f for p in parts.values() for files in p.values() for f in files]
        if len(class_names) < 2 or not all_files:
            raise UserError(f"imagefolder: {root} needs at least two class sub-folders with images "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))}).")
        def header(f: Path) -> tuple[tuple[int, int], str]:
            try:
                with Image.open(f) as im:
                    size, mode = im.size, im.mode
                with open(f, "rb") as fh:
                    deep = not_8_bit(mode, fh.read(32))
            except Exception as exc:  # PIL raises many kinds on a damaged file
                raise _unreadable(f, exc) from None
            if deep:
                # a 16-bit grey PNG opens as I;16 (convert clips it to near white); a 16-bit colour one opens as
                # RGB, LA or RGBA with each sample's high byte kept, which is no clipping
                loss = ("clip it to near white" if mode.startswith("I") or mode == "F" else
                        "keep only the high byte of each sample")
                raise UserError(f"imagefolder: {f} is {deep}. The benchmark reads 8-bit grey or RGB images "
                                f"(Pillow would {loss}); convert the dataset to 8 bits first.")
            return size, mode

        size = header(all_files[0])[0]
        modes = {"L" if header(f)[1] in ("L", "1") else "RGB" for f in all_files}
        mode = "L" if modes == {"L"} else "RGB"

        def read(files_by_class: dict[str, list[Path]]):
            imgs, labs = [], []
            for c, files in files_by_class.items():
                for f in files:
                    try:
                        with Image.open(f) as im:
                            arr = np.asarray(im.convert(mode).resize(size, Image.BICUBIC))
                    except Exception as exc:
                        raise _unreadable(f, exc) from None
                    imgs.append(arr if mode == "RGB" else arr[..., None])
                    labs.append(class_names.index(c))
            return np.stack(imgs).transpose(0, 3, 1, 2), np.asarray(labs)

        if split_dirs:
            tr_x, tr_y = read(parts["train"])
            te_x, te_y = read(parts["test"])
            # read class by class: interleave the train split once (seeded, as stratified_split does), so that
            # any prefix is near class-balanced; protocols take prefixes of it (augment's added and replaced
            # images follow train.labels[arange(n) % len], so a class-sorted split gave them the first classes only)
            order = np.random.default_rng(0).permutation(len(tr_y))
            tr_x, tr_y = tr_x[order], tr_y[order]
        else:
            x, y = read(parts["all"])
            tr, te = stratified_split(y, 0.2, seed=0)
            tr_x, tr_y, te_x, te_y = x[tr], y[tr], x[te], y[te]
        for split, labels in (("train", tr_y), ("test", te_y)):
            empty = [class_names[c] for c in range(len(class_names)) if not (labels == c).any()]
            if empty:
                raise UserError(f"imagefolder: {root} leaves no {split} image of class {', '.join(empty)} "
                                + ("(a class sub-folder of train/ or test/ without images)." if split_dirs else
                                   "(20% of each class is held out for testing, so a class needs at least 3 "
                                   "images).")
                                + " Add images, or remove that class.")
        return Dataset(name=f"imagefolder:{root}", class_names=class_names,
                       train=_as_split(tr_x, tr_y), test=_as_split(te_x, te_y), hflip=True,
                       source=f"image folder {root}")


def _unreadable(path: Path, exc: BaseException) -> UserError:
    return UserError(f"imagefolder: cannot read the image {path} ({type(exc).__name__}: {exc}). Remove or replace "
                     f"that file and run again.")


def load_dataset(spec: str, data_root: str | None = None) -> Dataset:
    """``"digits"`` or ``"imagefolder:PATH"`` -> a loaded :class:`Dataset`."""
    from synthbench.plugins import DATASETS

    name, _, argument = spec.partition(":")
    loader = DATASETS.get(name)()
    if data_root is not None and not Path(data_root).expanduser().is_dir():
        raise UserError(f"--data-root {data_root} is not a folder. Create it, or leave the option out.")
    return loader.load(data_root, argument or None)
