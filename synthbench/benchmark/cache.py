"""Digests and the one content-keyed disk cache every kept artefact goes through.

Trained weights (in-suite generators, fine-tunings), classifiers, real-split
features, reconstructions and corruption-suite accuracies are all cached the
same way: ``CACHE/<folder>/<prefix>-<key>.<suffix>``, where ``key`` is the first
:data:`KEY_CHARS` hex characters of :func:`digest` over an *identity* (everything
that determines the file's content: data digests, recipe, seeds, versions,
``provenance.compute_tag``). A hit loads the file; a miss computes it and
writes it atomically (``atomic.py``), so a killed run leaves no half file.

Every cached file carries the digest of its own content (tensor and array
values, JSON values), written in the same atomic write, and is checked against
it on every read: a flipped byte in a weights file, which torch's reader loads
without complaint, is caught before the weights are used.

Policy for a cached file that exists but cannot be read (truncated, edited,
changed on disk, written by an incompatible version): the run stops with one
paragraph naming the file and saying to delete it
(:func:`synthbench.errors.corrupt_cache`), never a silent recompute. A bad file
means a failing disk, a copy gone wrong or someone else's hand in the cache;
recomputing over it would hide that, and could cost hours (an EDM fit, a
fashion-mnist reconstruction sweep) without the user knowing why. Deleting the
one file is the recovery, and finished records are never touched.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from synthbench.benchmark import atomic, charges
from synthbench.benchmark.worklog import log_computed
from synthbench.errors import corrupt_cache

if TYPE_CHECKING:
    from synthbench.benchmark.lease import LeaseBoard

KEY_CHARS = 24
"""Hex characters of a cache key (96 bits: no collision among any store's files)."""

T = TypeVar("T")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, ``str`` for anything else: the text every digest of
    a mapping (cell specs, identities) is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _scalar_or_str(obj: Any) -> Any:
    if hasattr(obj, "detach") or hasattr(obj, "tobytes"):
        raise TypeError("pass tensors and arrays to digest() as parts of their own, not inside a mapping "
                        "(their repr elides values)")
    return str(obj)


def _bytes(part: Any) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    if hasattr(part, "detach"):  # a torch tensor: its values, not its repr
        return part.detach().cpu().contiguous().numpy().tobytes()
    if hasattr(part, "tobytes"):  # a numpy array
        return part.tobytes()
    return json.dumps(part, sort_keys=True, separators=(",", ":"), default=_scalar_or_str).encode()


def digest(*parts: Any) -> str:
    """SHA-256 (hex) over ``parts`` in order: bytes as they are, strings as UTF-8,
    tensors and arrays by their values, anything else as canonical JSON. Parts are
    length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` differ."""
    h = hashlib.sha256()
    for part in parts:
        blob = _bytes(part)
        h.update(len(blob).to_bytes(8, "little"))
        h.update(blob)
    return h.hexdigest()


def state_digest(model: Any) -> str:
    """SHA-256 (hex) of a network's weights, by parameter name: names a trained
    classifier in the identity of what was computed from it."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks (weights files, pickles)."""
    h = hashlib.sha256()
    with Path(path).expanduser().open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_digest(content: Any) -> str:
    """SHA-256 (hex) of a cached file's content: mappings by sorted key, tensors and
    arrays by dtype, shape and bytes, anything else as canonical JSON. What is
    read back must digest to what was written."""
    import torch

    h = hashlib.sha256()

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for key in sorted(obj):
                h.update(f"<{key}>".encode())
                walk(obj[key])
        elif hasattr(obj, "detach"):  # a tensor of any dtype, by its bytes
            t = obj.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif hasattr(obj, "tobytes") and hasattr(obj, "dtype"):  # a numpy array
            h.update(f"{obj.dtype}{tuple(obj.shape)}".encode())
            h.update(obj.tobytes())
        else:
            h.update(canonical_json(obj).encode())

    walk(content)
    return h.hexdigest()


DIGEST_KEY = "__digest__"
"""The entry of a cached file that holds the digest of the rest of it."""

MADE_KEY = "__made__"
"""The entry of a file computed inside a cell that names the cell and the
seconds it took (a JSON string, under the digest): ``charges.py``."""


def cache_key(identity: Any) -> str:
    """The key of a cached file: the first :data:`KEY_CHARS` hex characters of its
    identity's digest (a tuple identity is digested part by part, so tensors may
    be parts of it). Identities of derived files (a fine-tuning of cached base
    weights) name their parent by this key."""
    parts = identity if isinstance(identity, tuple) else (identity,)
    return digest(*parts)[:KEY_CHARS]


@dataclass(frozen=True)
class Format:
    """How one kind of cached file is written and read."""

    suffix: str
    save: Callable[[Path, Any], Any]
    load: Callable[[Path], Any]


def _torch_load(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)  # tensors only: never runs code


def _npz_load(path: Path) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        content = {name: z[name] for name in z.files}
    for key in (DIGEST_KEY, MADE_KEY):  # 0-d unicode arrays, not pickles
        if key in content:
            content[key] = str(content[key])
    return content


def _npz_save(path: Path, content: dict[str, Any]) -> None:
    import numpy as np

    arrays = {k: np.asarray(v) for k, v in content.items()}  # digest and note: 0-d unicode arrays, not pickles
    atomic.atomic_save_npz(path, **arrays)


def _safetensors_save(path: Path, content: dict[str, Any]) -> None:
    from safetensors.torch import save

    tensors = {k: v.contiguous() for k, v in content.items() if k not in (DIGEST_KEY, MADE_KEY)}
    blob = save(tensors, metadata={k: content[k] for k in (DIGEST_KEY, MADE_KEY) if k in content} or None)
    atomic.atomic_write(path, lambda fh: fh.write(blob))


def _safetensors_load(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        content = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata() or {}
    content.update({k: metadata[k] for k in (DIGEST_KEY, MADE_KEY) if k in metadata})
    return content


TORCH = Format(".pt", atomic.atomic_torch_save, _torch_load)
NPZ = Format(".npz", _npz_save, _npz_load)
JSON = Format(".json", atomic.atomic_write_json, lambda path: json.loads(path.read_text()))
SAFETENSORS = Format(".safetensors", _safetensors_save, _safetensors_load)
SNAPSHOT = Format(".snapshot.pt", atomic.atomic_torch_save, _torch_load)
"""A training snapshot of a file being computed (``snapshots.py``): the file's
name with this suffix instead of its own. :meth:`DiskCache.load_or_compute`
removes it once the file is written."""


def snapshot_of(path: Path, fmt: Format) -> Path:
    """Where the training snapshot of the cached file ``path`` (of format ``fmt``) lives."""
    return path.with_name(path.name[:-len(fmt.suffix)] + SNAPSHOT.suffix)


def safe_name(name: str) -> str:
    """``name`` as one file or folder name: runs of anything but letters, digits,
    ``.``, ``_`` and ``-`` become ``_``, at most 80 characters (a record's folders
    and a cache file's label; names already safe are unchanged)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


class DiskCache:
    """The cache folder of one result store (``RESULTS/cache``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, folder: str, prefix: str, identity: Any, fmt: Format) -> Path:
        """Where the file for ``identity`` lives (whether or not it exists yet).
        ``prefix`` is a label for people (the key names the content), made safe
        for a file name: ``imagefolder:/data/x`` made nested folders, with a
        colon no Windows path may hold."""
        return self.root / folder / f"{safe_name(prefix)}-{cache_key(identity)}{fmt.suffix}"

    @staticmethod
    def save(path: Path, fmt: Format, content: dict[str, Any]) -> None:
        """Write ``content`` (a mapping) with the digest of its values, atomically."""
        fmt.save(path, {**content, DIGEST_KEY: content_digest(content)})

    @staticmethod
    def read(path: Path, fmt: Format, what: str, build: Callable[[Any], T] | None = None) -> T:
        """``build(content)`` (or the content) of the file at ``path`` once its
        digest checks; any failure, in reading, checking or building from it, is
        the cache's one error (see the module docstring)."""
        try:
            content = fmt.load(path)
            stored = content.pop(DIGEST_KEY, None) if isinstance(content, dict) else None
            if stored is None:
                raise ValueError("it carries no digest of its content")
            if stored != content_digest(content):
                raise ValueError("its content does not match the digest written with it (changed on disk)")
            charges.read_back(path, content.pop(MADE_KEY, None))
            return build(content) if build is not None else content
        except Exception as exc:
            raise corrupt_cache(what, path, exc) from None

    def load_or_compute(self, folder: str, prefix: str, identity: Any, fmt: Format, what: str,
                        compute: Callable[[], Any], build: Callable[[Any], T] | None = None) -> T:
        """The cached value for ``identity``: read and ``build`` it when the file
        exists; otherwise ``compute()`` the content, save it, and ``build`` that.
        ``build`` turns stored content (a state dict, arrays) into what the caller
        uses (a network); it also checks the content, raising on a mismatch."""
        path = self.path(folder, prefix, identity, fmt)
        if path.exists():
            return self.read(path, fmt, what, build)
        with self.leases.exclusive(f"cache-{path.stem}", path.exists, task=f"{what} {path.name}") as mine:
            if mine:
                start = time.perf_counter()
                content = compute()
                made = charges.made_here(path, snapshot_of(path, fmt), time.perf_counter() - start)
                self.save(path, fmt, content if made is None else {**content, MADE_KEY: made})
                snapshot_of(path, fmt).unlink(missing_ok=True)  # the file is written: its snapshot is spent
                log_computed(self.root.parent, "cache", path.name)
                return build(content) if build is not None else content
        return self.read(path, fmt, what, build)  # another worker computed it meanwhile

    @property
    def leases(self) -> "LeaseBoard":
        """Claims on files being computed, shared with the store's cells (``lease.py``):
        two workers that miss the same file compute it once; the second waits and reads."""
        from synthbench.benchmark.lease import LeaseBoard

        return LeaseBoard(self.root.parent / "leases")
