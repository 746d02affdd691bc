"""Pre-generated images on disk, in the three formats the ``samples`` generator
reads and ``synthbench export-samples`` writes:

- a **folder** of class sub-folders, ``PATH/CLASS/*.png|jpg|jpeg|webp|bmp``;
- an **.npz** with ``images`` (uint8, ``N x C x H x W`` or ``N x H x W x C``, or
  ``N x H x W`` for grey) and integer ``labels`` (and optionally ``class_names``);
- **WebDataset-style .tar shards** (one ``.tar``, or a folder of them): members
  ``KEY.png`` (or ``.jpg``...) and ``KEY.cls`` (the class index, or its name),
  read as a stream; other members (``KEY.json``, ``KEY.txt``...) are skipped.

Which dataset class a source means, by one rule with no overlap:

- a **number** is a class index, always: an .npz label without ``class_names``,
  a ``.cls`` that is a whole number (WebDataset's convention, and what
  ``export-samples`` writes). On a dataset whose classes are named by other
  numbers (an image folder of classes ``1``, ``2``, ``3``), ``.cls`` ``1`` is
  the second class, never the class named ``1``;
- a **name** (a class folder, an .npz's ``class_names`` entry, a ``.cls`` that
  is not a whole number) is the dataset's class of that name, or of that name
  with the characters a file name cannot hold replaced by ``_`` (Fashion-MNIST's
  ``T-shirt/top`` is ``T-shirt_top``); a folder or ``class_names`` entry that
  names no class but is a whole number below the class count is read as that
  index (folders named ``0``..``9``). ``export-samples`` writes folders by
  class name and ``class_names`` in the dataset's order, so its files read back
  as the classes they were written from on every dataset.

Every reader returns the images of each class in one fixed order (the folder's
sorted relative paths, the archive's index or member-name order) and a content
digest over exactly what was read, so changed files make new cells. Bad input is
a :class:`UserError` naming the file and what to do: an unreadable image, an
image of a kind the benchmark does not convert silently (16-bit, a 16-bit RGB
PNG included, float, an alpha channel or a transparent colour), unknown or
missing classes, an empty source.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from synthbench.benchmark.datasets import IMAGE_SUFFIXES as _DATASET_SUFFIXES, not_8_bit
from synthbench.errors import UserError

IMAGE_SUFFIXES = tuple(sorted(_DATASET_SUFFIXES))
"""Image files a samples source may hold: the ones an image-folder dataset reads."""
UNSAFE = re.compile(r"[/\\:*?\"<>|]")


def pool_order(run_seed: int, c: int, count: int) -> np.ndarray:
    """The order in which run seed ``run_seed``'s sample pool takes the ``count``
    images of class ``c`` (the k-th request gets image ``pool_order(...)[k]`` of
    the source's fixed order). ``export-samples --seed S`` lays files out by the
    inverse, so scoring them at run seed S takes them in the exporting adapter's
    own pool order: the same training sets, the same numbers."""
    from synthbench.benchmark.seeding import derive_seed

    return np.random.default_rng(derive_seed("samples-pool", run_seed, c)).permutation(count)


def layout_for_seed(images: np.ndarray, labels: np.ndarray, run_seed: int,
                    num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A pool (images in the order an adapter drew them) rearranged class by
    class so that the samples generator, at run seed ``run_seed``, draws them in
    that same order (see :func:`pool_order`): class-major, each class's images
    at the positions its order will read them from."""
    out_x, out_y = [], []
    for c in range(num_classes):
        mine = np.flatnonzero(labels == c)
        placed = np.empty((len(mine), *images.shape[1:]), dtype=images.dtype)
        placed[pool_order(run_seed, c, len(mine))] = images[mine]
        out_x.append(placed)
        out_y.append(np.full(len(mine), c, dtype=np.int64))
    return np.concatenate(out_x), np.concatenate(out_y)


def safe_class_name(name: str) -> str:
    """A class name as a folder or file name (``T-shirt/top`` -> ``T-shirt_top``)."""
    return UNSAFE.sub("_", name).strip() or "_"


@dataclass
class SampleSet:
    """What a source holds, converted to the dataset's image shape."""

    path: Path
    kind: str
    """``folder``, ``npz`` or ``tar``."""
    by_class: list[np.ndarray]
    """Per dataset class, its images (uint8 ``k x C x H x W``) in the source's fixed order."""
    digest: str
    source_shapes: list[str] = field(default_factory=list)
    """The image shapes the source held (``3x32x32``...), before conversion."""
    converted: str = ""
    """How the images were converted to the dataset's shape, or empty."""

    @property
    def counts(self) -> list[int]:
        return [len(x) for x in self.by_class]


# --------------------------------------------------------------------------- where


def source_kind(path: Path) -> str:
    """``folder``, ``npz`` or ``tar`` for an existing path, else a UserError."""
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "npz"
        if path.name.lower().endswith((".tar", ".tar.gz", ".tgz")):
            return "tar"
        with open(path, "rb") as fh:  # no telling suffix: what the bytes are
            head = fh.read(4)
        if head == b"PK\x03\x04":
            return "npz"
        if tarfile.is_tarfile(path):
            return "tar"
        raise UserError(f"samples: {path} is neither an .npz nor a .tar archive. Give a folder of class "
                        f"sub-folders, an .npz with `images` and `labels`, or WebDataset-style .tar shards.")
    if path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        if entries and all(p.is_file() and p.name.lower().endswith(".tar") for p in entries):
            return "tar"
        return "folder"
    raise UserError(f"samples: {path} does not exist. Give --generator samples:PATH with PATH a folder of class "
                    f"sub-folders, an .npz or .tar shards (`synthbench export-samples` writes all three).")


def _shards(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.iterdir() if p.name.lower().endswith(".tar"))


# --------------------------------------------------------------------------- raw items


@dataclass
class _Item:
    name: str
    """Where it came from, for messages (a file, an archive member, an index)."""
    label: str
    """The class as the source names it."""
    data: Any
    """Encoded bytes (folder, tar) or a decoded array (npz)."""


def _folder_items(path: Path) -> Iterator[_Item]:
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    for c in classes:
        for f in sorted((f for f in c.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                        key=lambda f: f.relative_to(c).as_posix()):
            yield _Item(str(f), c.name, f.read_bytes())


def _tar_items(path: Path) -> Iterator[_Item]:
    """Members grouped by key (``0001.png`` + ``0001.cls``), read as a stream: a
    WebDataset shard keeps an image and its label next to each other. Members
    that are neither an image nor a ``.cls`` (the ``KEY.json``, ``KEY.txt`` an
    img2dataset shard holds beside each image) are skipped unread, wherever
    they sit, and are not in the digest: they do not change what is scored."""
    for shard in _shards(path):
        pending: dict[str, dict[str, bytes]] = {}
        try:
            with tarfile.open(shard, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, dot, ext = member.name.rpartition(".")
                    ext = ext.lower()
                    if not dot or (ext != "cls" and f".{ext}" not in IMAGE_SUFFIXES):
                        continue  # metadata (KEY.json, KEY.txt...): not part of the pair
                    fh = tar.extractfile(member)
                    pending.setdefault(key, {})[ext] = fh.read() if fh is not None else b""
                    parts = pending[key]
                    image_ext = next((e for e in parts if f".{e}" in IMAGE_SUFFIXES), None)
                    if image_ext is not None and "cls" in parts:
                        del pending[key]
                        yield _Item(f"{shard}:{key}.{image_ext}", parts["cls"].decode("utf-8", "replace").strip(),
                                    parts[image_ext])
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserError(f"samples: cannot read the archive {shard} ({type(exc).__name__}: {exc}). Replace it "
                            f"with a complete .tar (e.g. from `synthbench export-samples --format tar`).") from None
        orphans = sorted(pending)
        if orphans:
            raise UserError(f"samples: {shard} has {len(orphans)} member(s) without their pair, e.g. "
                            f"{orphans[0]!r} ({', '.join(sorted(pending[orphans[0]]))}). Each image KEY.png needs a "
                            f"KEY.cls holding its class index or name, next to it in the archive.")


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files or "labels" not in z.files:
                raise UserError(f"samples: {path} holds {sorted(z.files)}; it needs `images` (uint8) and `labels` "
                                f"(class indices), e.g. np.savez(PATH, images=x, labels=y).")
            names = [str(n) for n in z["class_names"].tolist()] if "class_names" in z.files else None
            images, labels = z["images"], z["labels"]
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"samples: cannot read {path} as an .npz ({type(exc).__name__}: {exc}). Write it with "
                        f"numpy.savez (no pickled objects) or `synthbench export-samples --format npz`.") from None
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        # checked here, before the digest reads them as integers (a traceback on string labels otherwise)
        raise UserError(f"samples: {path}'s `labels` must be one integer class index per image ({len(images)}); "
                        f"got {labels.dtype} of shape {labels.shape}. For labels that are class names, store "
                        f"their indices in `labels` and the names in `class_names`.")
    return images, labels, names


# --------------------------------------------------------------------------- decoding


def _decode(item: _Item) -> np.ndarray:
    """An encoded image as uint8 ``H x W x C`` (C = 1 or 3). Other kinds are
    refused, not guessed at: 16-bit (by mode, or a 16-bit PNG of any colour
    type, which Pillow would silently cut to 8 bits), floating point, and any
    transparency, an alpha channel or a transparent colour (a PNG ``tRNS``
    chunk: ``transparency`` in Pillow's ``info``, in any mode)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(item.data)) as im:
            im.load()
            mode = im.mode
            deep = not_8_bit(mode, item.data)
            if deep:
                raise UserError(f"samples: {item.name} is {deep}. The benchmark reads 8-bit grey or RGB images; "
                                f"convert it to 8 bits first (the generator's own uint8 output, or `synthbench "
                                f"export-samples`).")
            if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
                raise UserError(f"samples: {item.name} has an alpha channel ({mode}). Transparency has no meaning "
                                f"for a training image; flatten it onto a background and save it as grey or RGB.")
            if "transparency" in im.info:
                raise UserError(f"samples: {item.name} has a transparent colour ({mode} with a transparency entry, "
                                f"a PNG tRNS chunk). Transparency has no meaning for a training image; flatten it "
                                f"onto a background and save it as grey or RGB without transparency.")
            if mode not in ("L", "1", "RGB", "P", "YCbCr", "CMYK"):
                raise UserError(f"samples: {item.name} is a {mode} image; save it as 8-bit grey or RGB.")
            im = im.convert("L" if mode in ("L", "1") else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except UserError:
        raise
    except Exception as exc:  # PIL raises many kinds on a damaged file
        raise UserError(f"samples: cannot read the image {item.name} ({type(exc).__name__}: {exc}). Remove or "
                        f"replace that file and run again.") from None
    return arr[..., None] if arr.ndim == 2 else arr


def decode_file(path: Path) -> np.ndarray:
    """An image file as uint8 ``H x W x C``, refused as a ``samples:`` folder's
    image is (16-bit, floating point, transparency: :func:`_decode`); ``ood``'s
    folders read theirs so."""
    return _decode(_Item(str(path), path.parent.name, path.read_bytes()))


def _npz_images(images: np.ndarray, path: Path) -> np.ndarray:
    """``images`` as uint8 ``N x H x W x C``; other dtypes and layouts refused."""
    if images.dtype != np.uint8:
        raise UserError(f"samples: {path}'s `images` are {images.dtype}, not uint8. Store 8-bit images "
                        f"(e.g. ((x + 1) * 127.5).round().clip(0, 255).astype(np.uint8) for x in [-1, 1]).")
    if images.ndim == 3:
        return images[..., None]
    if images.ndim != 4:
        raise UserError(f"samples: {path}'s `images` have shape {images.shape}; expected N x C x H x W, "
                        f"N x H x W x C or N x H x W.")
    if images.shape[1] in (1, 3, 4) and images.shape[3] not in (1, 3, 4):
        images = images.transpose(0, 2, 3, 1)
    elif images.shape[3] not in (1, 3, 4):
        raise UserError(f"samples: {path}'s `images` have shape {images.shape}: neither N x C x H x W nor "
                        f"N x H x W x C with 1 (grey) or 3 (RGB) channels.")
    if images.shape[3] == 4:
        raise UserError(f"samples: {path}'s `images` have 4 channels (an alpha channel). Store grey or RGB.")
    return images


def _to_shape(arr: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``H x W x C`` uint8 -> the dataset's ``C x H x W``: channels by PIL's
    conversion (RGB -> grey is ITU-R 601-2 luma), size by antialiased bicubic."""
    from PIL import Image

    c, h, w = shape
    if arr.shape[2] == c and arr.shape[:2] == (h, w):
        return arr.transpose(2, 0, 1)
    im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    im = im.convert("L" if c == 1 else "RGB")
    if im.size != (w, h):
        im = im.resize((w, h), Image.BICUBIC, reducing_gap=None)
    out = np.asarray(im, dtype=np.uint8)
    return (out[..., None] if out.ndim == 2 else out).transpose(2, 0, 1)


# --------------------------------------------------------------------------- classes


def class_index(label: str, class_names: list[str], where: str) -> int | None:
    """The dataset class a source *names* ``label`` by (a folder, an .npz's
    ``class_names`` entry, a non-numeric ``.cls``), or None when it names none:
    a class name first, its file-safe form next, and only when neither matches,
    a whole number below the class count as an index (see the module docstring;
    numeric labels go through :func:`number_index` instead)."""
    matches = {i for i, n in enumerate(class_names) if label in (n, safe_class_name(n))}
    if not matches and _is_number(label) and (index := number_index(label, class_names)) is not None:
        matches = {index}
    if len(matches) > 1:
        raise UserError(f"samples: {where} names the class {label!r}, which matches several of the dataset's "
                        f"classes; name the folders by class index (0..{len(class_names) - 1}) instead.")
    return next(iter(matches), None)


def number_index(label: int | str, class_names: list[str]) -> int | None:
    """The dataset class a *number* means (an .npz label without
    ``class_names``, a ``.cls`` that is a whole number): its index, never a class
    name that looks like it; None when it is not an index of the dataset."""
    value = int(label)
    return value if 0 <= value < len(class_names) else None


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\d+", text) is not None


def _class_mismatch(path: Path, unknown: Iterable[str], missing: Iterable[str], class_names: list[str]) -> UserError:
    unknown, missing = sorted(set(unknown)), sorted(set(missing))
    parts = []
    if unknown:
        parts.append(f"unknown class name(s) {', '.join(map(repr, unknown[:10]))}"
                     + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    if missing:
        parts.append(f"no images of {', '.join(map(repr, missing[:10]))}"
                     + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    return UserError(f"samples: {path} does not match the dataset's classes: {'; '.join(parts)}. The dataset's "
                     f"classes are {', '.join(map(repr, class_names))}; name each class folder (or .cls) by the "
                     f"class name, by it with / \\ : replaced by _, or by its index. A .cls or .npz label that is "
                     f"a number is always the class index (0..{len(class_names) - 1}), never a class name.")


# --------------------------------------------------------------------------- reading


def _hasher(kind: str) -> Any:
    return hashlib.sha256(f"synthbench-samples\x1f{kind}\x1f".encode())


def _hash_item(h: Any, kind: str, item: _Item) -> None:
    """What the digest covers of one encoded image: its name within the source,
    its class as the source names it, and its bytes."""
    name = Path(item.name).name if kind == "folder" else item.name.rpartition(":")[2]
    h.update(f"{name}\x1f{item.label}\x1f{len(item.data)}\x1f".encode())
    h.update(item.data)


def _hash_npz(h: Any, images: np.ndarray, labels: np.ndarray, class_names: list[str] | None) -> None:
    """What the digest covers of an .npz: its images, their shape, its labels
    and, when it has them, its ``class_names``, which decide the class each
    label is (swapping two names swaps two classes, so it must make new cells).
    The names go in as JSON, after the arrays, only when present: an .npz
    without them keeps the digest it had before names were covered."""
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(str(images.shape).encode())
    h.update(labels.astype(np.int64).tobytes())
    if class_names is not None:
        h.update(b"\x1fclass_names\x1f")
        h.update(json.dumps(class_names, ensure_ascii=False).encode())


def _signature(root: Path, kind: str) -> tuple:
    """Sizes and modification times of what the source is read from: a cheap
    stand-in for its content, to reuse a digest within one process."""
    files = (sorted(f for f in root.rglob("*") if f.is_file()) if kind == "folder" else _shards(root)
             if kind == "tar" else [root])
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


_DIGESTS: dict[tuple, str] = {}


def source_digest(path: str | Path) -> str:
    """SHA-256 over the source's content as :func:`read_samples` reads it (file
    names within the source, class names, an .npz's ``class_names``, bytes),
    without decoding anything:
    what a cell's key holds (beside the ``samples`` label), so changed files
    make new cells and the path is not in the key."""
    root = Path(path).expanduser().resolve()
    kind = source_kind(root)
    key = (kind, _signature(root, kind))
    if key not in _DIGESTS:
        h = _hasher(kind)
        if kind == "npz":
            images, labels, names = _npz_arrays(root)
            _hash_npz(h, images, labels, names)
        else:
            for item in _folder_items(root) if kind == "folder" else _tar_items(root):
                _hash_item(h, kind, item)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def read_samples(path: str | Path, class_names: list[str], shape: tuple[int, int, int]) -> SampleSet:
    """Every image of the source at ``path``, by dataset class, converted to ``shape``."""
    root = Path(path).expanduser().resolve()
    kind = source_kind(root)
    before = _signature(root, kind)
    h = _hasher(kind)
    by_class: list[list[np.ndarray]] = [[] for _ in class_names]
    shapes: dict[str, int] = {}
    unknown: set[str] = set()

    def keep(idx: int, image: np.ndarray) -> None:
        shapes[f"{image.shape[2]}x{image.shape[0]}x{image.shape[1]}"] = 1
        by_class[idx].append(_to_shape(image, shape))

    if kind == "npz":
        raw, labels, names = _npz_arrays(root)
        images = _npz_images(raw, root)  # labels: checked by _npz_arrays
        _hash_npz(h, raw, labels, names)
        for i, (img, lab) in enumerate(zip(images, labels.tolist())):
            if names is None:  # a number: the class index, never a class name that looks like it
                idx = number_index(lab, class_names)
                if idx is None:
                    raise UserError(f"samples: {root}'s `labels` hold {lab} (image {i}), but the dataset has "
                                    f"{len(class_names)} classes: a label is a class index, 0..{len(class_names) - 1}. "
                                    f"Relabel the images, or add `class_names` naming the class of each label.")
            elif 0 <= lab < len(names):  # an index into the file's own names, matched by name
                idx = class_index(names[lab], class_names, f"{root}[{i}]")
                if idx is None:
                    unknown.add(names[lab])
                    continue
            else:
                raise UserError(f"samples: {root}'s `labels` hold {lab} (image {i}), which is not an index of its "
                                f"{len(names)} `class_names`. Each label must index `class_names` "
                                f"(0..{len(names) - 1}).")
            keep(idx, img)
    else:
        items = _folder_items(root) if kind == "folder" else _tar_items(root)
        for item in items:
            _hash_item(h, kind, item)
            if kind == "tar" and _is_number(item.label):  # WebDataset's .cls: the class index
                idx = number_index(item.label, class_names)
            else:
                idx = class_index(item.label, class_names, item.name)
            if idx is None:
                unknown.add(item.label)
                continue
            keep(idx, _decode(item))
    total = sum(len(x) for x in by_class)
    if total == 0 and not unknown:
        what = {"folder": "class sub-folders with images (" + ", ".join(IMAGE_SUFFIXES) + ")",
                "npz": "images", "tar": "image + .cls member pairs"}[kind]
        raise UserError(f"samples: {root} holds no images: a {kind} source needs {what}.")
    missing = [class_names[i] for i, x in enumerate(by_class) if not x]
    if unknown or missing:
        raise _class_mismatch(root, unknown, missing, class_names)
    source_shapes = sorted(shapes)
    want = f"{shape[0]}x{shape[1]}x{shape[2]}"
    converted = ("" if source_shapes == [want] else
                 f"{', '.join(source_shapes)} converted to the dataset's {want} (channels by PIL, size by "
                 f"antialiased bicubic resampling)")
    digest = h.hexdigest()
    if _signature(root, kind) == before:  # unchanged while read: :func:`source_digest` need not read it again
        _DIGESTS.setdefault((kind, before), digest)
    return SampleSet(path=root, kind=kind, by_class=[np.stack(x) for x in by_class], digest=digest,
                     source_shapes=source_shapes, converted=converted)


# --------------------------------------------------------------------------- writing


def write_samples(path: str | Path, fmt: str, images: np.ndarray, labels: np.ndarray,
                  class_names: list[str]) -> Path:
    """``images`` (uint8 ``N x C x H x W``) with their ``labels`` in ``fmt``:
    ``folder`` (PNG files ``CLASS/000000.png``, ``CLASS`` the file-safe class
    name), ``npz`` (with ``class_names`` in the dataset's order) or ``tar`` (one
    shard, ``000000.png`` + ``000000.cls`` holding the class index, which
    :func:`read_samples` reads as an index). Each reads back as the classes it
    was written from, whatever the classes are named. Written under a temporary name and moved
    into place, so a half-written export is never read as a source."""
    import os
    import shutil
    import tempfile

    from PIL import Image

    out = Path(path).expanduser().resolve()
    if out.exists():
        raise UserError(f"{out} exists. Give --out a new path (an export never overwrites samples).")
    out.parent.mkdir(parents=True, exist_ok=True)

    def png(img: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(buf, format="PNG")
        return buf.getvalue()

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if fmt == "folder":
            target = tmp / "x"
            for c, name in enumerate(class_names):
                (target / safe_class_name(name)).mkdir(parents=True)
            for i, (img, lab) in enumerate(zip(images, labels.tolist())):
                (target / safe_class_name(class_names[lab]) / f"{i:06d}.png").write_bytes(png(img))
        elif fmt == "npz":
            target = tmp / "x.npz"
            np.savez(target, images=images, labels=labels.astype(np.int64), class_names=np.array(class_names))
        elif fmt == "tar":
            target = tmp / "x.tar"
            with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
                for i, (img, lab) in enumerate(zip(images, labels.tolist())):
                    for name, data in ((f"{i:06d}.png", png(img)), (f"{i:06d}.cls", str(int(lab)).encode())):
                        info = tarfile.TarInfo(name)
                        info.size, info.mtime, info.mode = len(data), 0, 0o644
                        tar.addfile(info, io.BytesIO(data))
        else:
            raise UserError(f"--format {fmt!r}: choose folder, npz or tar.")
        os.replace(target, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
