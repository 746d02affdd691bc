"""``torch.compile`` as the harness uses it: for the classifier trainer's step
(``Preset.compile``), for the diffusion networks' sampling (their ``compile``
option) and for EDM's training steps (``train_edm``'s ``recipe["compile"]``,
which no option sets yet). One policy for all:

- A module is compiled once and the wrapper kept on it (outside its submodules
  and state dict), so every call reuses one compilation, and modules of one
  class share their graphs (weights are graph inputs, not constants).
- ``dynamic=False``: callers feed fixed shapes, so a row is computed the same
  way in any batch.
- Past dynamo's recompile limit a module would quietly run eagerly, which rounds
  differently; a compiled cell must never be an eager one, so that raises.
- A machine that cannot build kernels (no C++ compiler on a CPU, no triton on
  CUDA) gets a :class:`UserError` that says what to do, not inductor's traceback.
- Compiled EDM training runs in torch's deterministic mode
  (:func:`deterministic_kernels`): the UNet's embeddings' backward is
  otherwise built from racing atomic adds. Compiled sampling does not need it
  (its outputs were the same bits with and without it, fp32 and bf16, edm's
  and ddpm's networks), nor do the classifier trainer's compiled steps
  (deterministic without it; it would change their kernels).

Measured and not used (2-core Xeon with AMX, `fast` fashion-mnist EDM network,
bf16, batch 64, one thread):

- Inductor's freezing (weights as graph constants, packed once for oneDNN): a
  network call 1.1-1.2x faster, but the whole Heun sampler only 1.06x (36.4-37.7
  against 34.9-35.1 images per CPU-second), and it needs a graph per network
  *instance*. Dynamo guards those graphs on the weights' ids and does not drop
  them when a network is freed, so a worker that loads networks cell after cell
  would exhaust the recompile limit (and an id reused by a later network would
  be checked against constants from a dead one). Freezing has to be set in
  inductor's global config while dynamo traces; ``torch.compile(options=
  {"freezing": True})`` gave unfrozen graphs.
- Where the compiled bf16 call spends its time: GroupNorm (+SiLU) kernels about
  half, oneDNN convolutions 28%. Inductor lays activations out channels_last and
  reduces each group of 4 channels with a masked Welford that fills 4 of 16
  vector lanes (3 ms for 64x16x28x28, against 0.75 ms for ATen's group_norm on
  NCHW data). Turning off layout optimisation or weight prepacking, calling
  ATen's group_norm as an opaque op, or writing the norm as sums all left the
  call as slow or slower.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Iterator

import torch
from torch import nn

from synthbench.errors import UserError

_COMPILED = "_synthbench_compiled"
RECOMPILE_LIMIT = 64
"""Graphs per module class a process may build: one per image shape, batch,
precision, conditioning and train/eval mode it meets; a suite over several
datasets passes dynamo's default of 8."""


def compiled(module: nn.Module, enabled: bool) -> nn.Module | Callable[..., Any]:
    """``module`` itself, or (``enabled``) its ``torch.compile`` wrapper, made
    once per module and kept on it."""
    if not enabled:
        return module
    wrapper = module.__dict__.get(_COMPILED)
    if wrapper is None:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        # diffusers' up-sampling blocks ask is_torch_version() (an lru_cache) on every call; dynamo traces
        # through the cache and says so once per block, which tells a user nothing they can act on
        warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
        wrapper = torch.compile(module, dynamic=False)
        object.__setattr__(module, _COMPILED, wrapper)  # not Module.__setattr__: it is no submodule
    return wrapper


def _compile_failure(exc: Exception) -> bool:
    """Whether ``exc`` is torch.compile failing to build its kernels (imported
    here: only a failure pays for loading the compiler's modules)."""
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.exc import InductorError

    return isinstance(exc, (BackendCompilerFailed, InductorError))


@contextlib.contextmanager
def deterministic_kernels(enabled: bool = True) -> Iterator[None]:
    """torch's deterministic mode while compiled code is built and run.

    Inductor writes a scatter-add (an embedding's backward: the diffusion
    UNets' class and time embeddings; ``index_put`` with accumulation) as
    atomic adds from parallel threads, so the order of the additions, and the
    sum's last bits, changed from run to run: two trainings of ``ddpm``'s
    network of five steps, compiled, same seeds, ended 1e-7 apart in two runs
    of three (2 threads). Under deterministic mode it calls ATen's ordered
    kernel instead, and two whole compiled EDM fits, one compiling cold and one
    with inductor's cache warm, gave the same weights to the bit. The mode is
    also a guard of the compiled graph, so every call of compiled code runs
    under it, the backward too (built at the first backward). Off again
    outside, so eager cells are untouched; ``warn_only``, so an op without a
    deterministic kernel (some on CUDA) warns instead of stopping the cell, and
    uninitialised memory is not filled (a cost on every allocation that buys
    nothing here: every buffer is written before it is read)."""
    if not enabled:
        yield
        return
    import torch.utils.deterministic

    was = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def run_compiled(fn: Callable[..., Any], *args: Any, deterministic: bool = False,
                 eager: str = "run with --option compile=false (the default)", **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, with a failed compilation turned into a
    :class:`UserError` that ends with ``eager``, how to get the eager cell;
    ``deterministic``: under :func:`deterministic_kernels` (compiled EDM
    training, whose embeddings' backward needs it)."""
    try:
        with deterministic_kernels(deterministic):
            return fn(*args, **kwargs)
    except Exception as exc:
        if not _compile_failure(exc):
            raise
        raise UserError(f"torch.compile could not compile the network ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no message'}). It needs a C++ compiler "
                        f"(gcc or clang on the PATH) on a CPU and triton on CUDA; install one, or {eager}, "
                        f"which gives the eager cell.") from exc
