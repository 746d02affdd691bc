"""The harness's handle on a generator adapter (:class:`Guarded`): the one place
the harness calls into adapter code, so the adapter contract is enforced at run
time rather than only by ``synthbench validate``.

Every call (``fit``, ``sample``, ``reconstruct``):

- runs in a fresh thread, so the adapter's call stack holds nothing of the
  harness: walking ``f_back`` from inside ``sample`` finds the thread's start,
  never the runner's frames and the dataset (with its test split) they hold;
- is bounded by the run's ``--adapter-timeout``. Python cannot stop a thread, so
  a call that overruns is abandoned: its cell is ``failed`` with "timed out", every
  later call on the same instance fails at once (the abandoned call may still be
  changing it), and the grid goes on with the other generators;
- returns output checked against the contract: a uint8 tensor, the requested
  count, the dataset's image shape (``reconstruct``: the shape it was given).
  uint8 bounds the value range to 0..255 by construction; float images in [0, 1]
  would otherwise train a classifier at chance with status ``ok``.

The thread only separates call stacks. Code in the same process can still reach
any object through the garbage collector; an untrusted adapter belongs in a
separate process or machine.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from synthbench.errors import UserError

if TYPE_CHECKING:  # torch is imported where images are checked: the CLI imports this module for its flag
    import torch

DEFAULT_TIMEOUT_S = 24 * 3600.0
"""Per call. Generous: a paper-scale fit (Real-Fake's LoRA on Stable Diffusion)
takes hours on one GPU; the limit exists to end a hang, not to time a fit."""


class AdapterTimeout(RuntimeError):
    """A call into an adapter ran past the run's ``--adapter-timeout``."""


class ContractViolation(ValueError):
    """An adapter returned something other than the contract says."""


def cast_from_unit_range(images: "torch.Tensor") -> bool:
    """Whether uint8 ``images`` look like images in [0, 1] cast to uint8: every
    pixel 0 or 1, some 1 (an all-black batch is a collapsed generator, scored
    as what it is). ``validate`` and the harness's guard share this test."""
    return images.numel() > 0 and int(images.max()) == 1


def check_images(name: str, method: str, images: Any, want: tuple[int, ...] | None, count: int) -> "torch.Tensor":
    """``images`` if it is a uint8 tensor of ``count`` images of shape ``want``
    (C, H, W; None when unknown) in 0..255, else :class:`ContractViolation`
    naming the adapter, the method and what it returned. A batch whose every
    pixel is 0 or 1 (with some 1) is taken for images in [0, 1] cast to uint8,
    the commonest adapter mistake, which was scored as a near-black generator;
    an all-black batch (a collapsed generator) is scored as what it is."""
    import torch

    where = f"generator {name}: {method}()"
    if not isinstance(images, torch.Tensor):
        raise ContractViolation(f"{where} returned {type(images).__name__}; the contract is a torch.uint8 tensor "
                                f"[N, C, H, W]")
    if images.dtype != torch.uint8:
        raise ContractViolation(
            f"{where} returned {images.dtype} images; the contract is torch.uint8 in 0..255 (e.g. "
            f"((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for x in [-1, 1])")
    full = (count, *want) if want is not None else None
    if images.ndim != 4 or images.shape[0] != count or (full is not None and tuple(images.shape) != full):
        raise ContractViolation(f"{where} returned shape {tuple(images.shape)} for {count} requested images; the "
                                f"contract is {full or f'({count}, C, H, W)'}, the dataset's image shape")
    if count > 1 and cast_from_unit_range(images):
        raise ContractViolation(
            f"{where} returned {count} images whose every pixel is 0 or 1: images in [0, 1] cast to uint8, which "
            f"the classifiers would read as near-black. The contract is 0..255: scale before casting, e.g. "
            f"(x * 255).round().clamp(0, 255).to(torch.uint8) for x in [0, 1]")
    return images


class Guarded:
    """A generator adapter behind the harness's checks (module docstring).

    Attributes the harness reads (``name``, ``conditional``, ``fingerprint()``...)
    pass through to the adapter; ``fitted``, ``sample`` and ``reconstruct`` are
    guarded calls. ``spawn`` makes a fresh, unfitted instance of the same adapter
    (``mia`` fits one on the members, ``recon`` one for the held-out images)."""

    def __init__(self, adapter: Any, timeout_s: float | None = DEFAULT_TIMEOUT_S, trusted: bool = False):
        self.adapter = adapter
        self.timeout_s = timeout_s if timeout_s and timeout_s > 0 else None
        self.trusted = trusted
        """A built-in adapter (code reviewed here): ``recon`` may hand it held-out images."""
        self._dataset_shape: tuple[int, ...] | None = None
        self._abandoned: str | None = None

    def __getattr__(self, attr: str) -> Any:
        adapter = self.__dict__.get("adapter")  # absent while unpickling: no recursion
        if adapter is None or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(adapter, attr)

    def __repr__(self) -> str:
        return f"Guarded({self.adapter!r})"

    def spawn(self, **option_overrides: Any) -> "Guarded":
        adapter = type(self.adapter)(**{**self.adapter.opts, **option_overrides})
        return Guarded(adapter, self.timeout_s, self.trusted)

    def fitted(self, ctx: Any) -> "Guarded":
        self._call("fit", self.adapter.fitted, ctx)
        self._dataset_shape = tuple(ctx.image_shape)
        return self

    def sample(self, labels: "torch.Tensor", seeds: Sequence[int]) -> "torch.Tensor":
        out = self._call("sample", self.adapter.sample, labels, seeds)
        return check_images(self.adapter.name, "sample", out, self._dataset_shape, len(labels))

    def sample_pool(self, labels: "torch.Tensor", run_seed: int, start: int) -> "torch.Tensor":
        # named after what the adapter wrote: the base class's sample_pool only calls its sample
        own = not type(self.adapter).sample_pool.__qualname__.startswith("Generator.")
        method = "sample_pool" if own else "sample"
        out = self._call(method, self.adapter.sample_pool, labels, run_seed, start)
        return check_images(self.adapter.name, method, out, self._dataset_shape, len(labels) - start)

    def reconstruct(self, images: "torch.Tensor", labels: "torch.Tensor", t_re: int,
                    seeds: Sequence[int], **options: Any) -> "torch.Tensor":
        """Guarded; keyword ``options`` (``recon``'s ``sigma``, ``churn``) pass
        through to adapters that take them."""
        fn = functools.partial(self.adapter.reconstruct, **options) if options else self.adapter.reconstruct
        out = self._call("reconstruct", fn, images, labels, t_re, seeds)
        return check_images(self.adapter.name, "reconstruct", out, tuple(images.shape[1:]), len(images))

    def recon_sigma(self, t_re: int, sigma: float | None = None) -> float | None:
        fn = getattr(self.adapter, "recon_sigma", None)
        if fn is None:  # an adapter written without the base class: it does not say
            return None
        return self._call("recon_sigma", fn if sigma is None else functools.partial(fn, sigma=sigma), t_re)

    def _call(self, method: str, fn: Callable[..., Any], *args: Any) -> Any:
        if self._abandoned is not None:
            raise AdapterTimeout(f"generator {self.adapter.name}: not called again after {self._abandoned}")
        box: dict[str, Any] = {}
        worker = threading.Thread(target=_run_into, args=(box, fn, args), daemon=True,
                                  name=f"synthbench-{self.adapter.name}-{method}")
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            self._abandoned = f"{method}() timed out after {self.timeout_s:g} s"
            raise AdapterTimeout(
                f"generator {self.adapter.name}: {self._abandoned} (--adapter-timeout; 0 means no limit)")
        if "error" in box:
            raise box["error"]
        return box["value"]


def _run_into(box: dict[str, Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The thread's body: the adapter call, its value or exception kept in ``box``.
    A module-level function, so the thread's frames hold only these three."""
    try:
        box["value"] = fn(*args)
    except BaseException as exc:  # re-raised in the harness's thread, traceback included
        box["error"] = exc


def timeout_option(value: Any) -> float | None:
    """``--adapter-timeout`` seconds as given on the command line or in a config."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not seconds >= 0 or seconds == float("inf"):
        raise UserError(f"--adapter-timeout {value!r}: give a number of seconds >= 0 (0 means no limit), "
                        f"e.g. --adapter-timeout 3600.")
    return seconds or None
