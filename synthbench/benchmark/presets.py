"""The three presets: one switch sets classifier, epochs, sample counts and the
in-suite generators' training budget, so a protocol runs at three scales.

- ``smoke``: seconds, for tests;
- ``fast``: minutes on a 2-core CPU, the default;
- ``paper``: the recipe of Yamaguchi & Fukuda 2023 (arXiv 2311.13090, Sec. 4.2:
  ResNet-18, SGD lr 0.01, x0.1 every 30 epochs, 100 epochs), for a GPU, where
  its classifiers train in bf16 (as they always have on CUDA);
- ``paper-r50``: Real-Fake's downstream recipe (Yuan et al. 2024, "Real-Fake:
  Effective Training Data Synthesis Through Distribution Matching", arXiv
  2310.10402, Appendix F, Table 8, the IN-10/IN-100 column): ResNet-50 on
  224x224 inputs, SGD lr 0.1 (momentum 0.9, weight decay 5e-4), x0.2 at epochs
  50/100/150, 200 epochs, mixed precision; the generators' budget is
  ``paper``'s. Table 8's batch is 128 per GPU on 8 GPUs; one device runs 128 at
  the same lr. ``configs/paper-r50-cifar10.yaml`` runs the Real-Fake rows with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from synthbench.errors import UserError


@dataclass(frozen=True)
class Preset:
    name: str
    classifier: str
    """Classifier architecture: ``smallcnn``, ``resnet18`` or ``resnet50`` (small-image stem)."""
    epochs: int
    batch_size: int
    optimizer: str
    """``sgd`` (momentum 0.9, weight decay 5e-4) or ``adamw``."""
    lr: float
    lr_schedule: str
    """``step`` (x0.1 every ``lr_step_epochs``), ``step-x0.2`` (x0.2 every
    ``lr_step_epochs``) or ``cosine``."""
    lr_step_epochs: int
    max_train_per_class: int | None
    """Cap on real train images per class (``None``: all). Keeps ``fast`` at minutes
    on 60k-image datasets; recorded in every cell through the preset."""
    gen_train_steps: int
    """Optimisation steps for generators trained in-suite (EDM)."""
    gen_batch_size: int
    gen_channels: tuple[int, ...]
    """UNet block widths of in-suite diffusion generators, for images of at most
    16x16 pixels (digits)."""
    gen_channels_large: tuple[int, ...]
    """The same for larger images (28x28, 32x32): narrower at full resolution,
    where a CPU spends most of its time, and one level deeper."""
    gen_layers_per_block: int
    """ResNet layers per UNet level of in-suite diffusion generators."""
    gen_sampler_steps: int
    """Heun steps of the EDM sampler: 18 steps = 35 network evaluations (Karras et al.)."""
    precision: str = "fp32"
    """Classifier arithmetic, training and evaluation: ``fp32``, or ``bf16``
    (autocast and channels_last). A field added after records were first
    written: its default reproduces them (``synthbench records migrate`` adds it
    to older specs). ``--precision`` overrides a preset's."""
    compile: bool = False
    """``torch.compile`` the classifier's training step (``compiling.py``;
    evaluation stays eager). Compiled kernels round differently, so a compiled
    classifier is another cell and cache entry. Stored only where true
    (:data:`STORED_WHEN_SET`): every spec and key written before it existed
    stays the same. ``--compile`` sets it; the diffusion networks have their own
    ``compile`` option, because on a CPU compiling pays for their sampling and
    not for this training (``trainer.py``)."""

    def as_dict(self) -> dict:
        """JSON-shaped (lists, not tuples), as it is stored in records; the
        fields of :data:`STORED_WHEN_SET` only where they differ from their
        default."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if not (k in STORED_WHEN_SET and v == STORED_WHEN_SET[k])}


STORED_WHEN_SET: dict[str, Any] = {"compile": False}
"""Preset fields added after records were written, left out of a spec (and so
of every key) at these defaults, which reproduce the records written before
them: no store needs migrating when one is added."""


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke", classifier="smallcnn", epochs=10, batch_size=64, optimizer="adamw",
        lr=3e-3, lr_schedule="cosine", lr_step_epochs=30, max_train_per_class=40,
        gen_train_steps=30, gen_batch_size=64, gen_channels=(16, 32), gen_channels_large=(16, 32),
        gen_layers_per_block=1,
        gen_sampler_steps=4,
    ),
    "fast": Preset(
        name="fast", classifier="smallcnn", epochs=30, batch_size=128, optimizer="adamw",
        lr=3e-3, lr_schedule="cosine", lr_step_epochs=30, max_train_per_class=300,
        gen_train_steps=2000, gen_batch_size=128, gen_channels=(32, 64), gen_channels_large=(16, 32, 64),
        gen_layers_per_block=1,
        gen_sampler_steps=18,
    ),
    "paper": Preset(
        name="paper", classifier="resnet18", epochs=100, batch_size=128, optimizer="sgd",
        lr=0.01, lr_schedule="step", lr_step_epochs=30, max_train_per_class=None,
        gen_train_steps=200_000, gen_batch_size=512, gen_channels=(128, 256, 256, 256),
        gen_channels_large=(128, 256, 256, 256), gen_layers_per_block=2, gen_sampler_steps=18, precision="bf16",
    ),
    "paper-r50": Preset(
        name="paper-r50", classifier="resnet50-224", epochs=200, batch_size=128, optimizer="sgd",
        lr=0.1, lr_schedule="step-x0.2", lr_step_epochs=50, max_train_per_class=None,
        gen_train_steps=200_000, gen_batch_size=512, gen_channels=(128, 256, 256, 256),
        gen_channels_large=(128, 256, 256, 256), gen_layers_per_block=2, gen_sampler_steps=18, precision="bf16",
    ),
}

STEP_DECAY = {"step": 0.1, "step-x0.2": 0.2}
"""The learning-rate factor of each step schedule, applied every ``lr_step_epochs``."""

PRECISIONS = ("fp32", "bf16")
PRECISION_CHOICES = (*PRECISIONS, "auto")
"""What ``--precision`` and a suite's ``precision:`` take: ``auto`` is resolved by
:func:`run_precision` before any cell is keyed, so a spec always names fp32 or bf16."""


def native_bf16(device: Any) -> bool:
    """Whether ``device`` computes bf16 natively enough for it to pay: a CUDA
    device that supports it, or a CPU with AMX tiles (bf16 trained SmallCNN about
    2x as fast as fp32 on a 2-core Xeon with AMX). AVX512-BF16 alone is not
    decided for: bf16 ran 1.9x fp32 on a 2-core AMD EPYC with it but 0.95x on a
    2-core Intel Xeon with it and no AMX
    (``tests/benchmarks/test_trainer_vs_plain_loop.py``), so ``auto`` keeps fp32
    there, never slower than the default. torch exposes the AMX probe only
    privately; a torch without it reads as no AMX. On CUDA, native means
    compute capability 8.0 (Ampere) or later: torch's
    ``is_bf16_supported()`` also says yes on older GPUs (a V100, a T4) where
    bf16 merely runs, emulated and without bf16 tensor cores, so ``auto`` would
    have picked it there."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        if torch.version.hip:  # ROCm: bf16 on every AMD GPU arch torch supports (as is_bf16_supported says)
            return True
        # the capability itself: is_bf16_supported(including_emulation=False) asks the same, but a torch
        # between the emulation fallback (2024) and that keyword answers yes for emulation too
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(index).major >= 8
    return device.type == "cpu" and _cpu_has("_is_amx_tile_supported")


def _cpu_has(probe_name: str) -> bool:
    """One of torch's private CPU feature probes (``torch.cpu._is_*``); a torch
    without it, or a probe that fails, reads as "no": never rely on it then."""
    import torch

    probe = getattr(torch.cpu, probe_name, None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - a probe that fails means "do not rely on it"
        return False


def bf16_instructions(device: Any) -> bool:
    """Whether ``device`` has bf16 arithmetic at all: a CUDA device that supports
    it, or a CPU with AMX or AVX512-BF16. Elsewhere torch emulates bf16, and a
    ``fast`` SmallCNN training step ran 10x slower than in fp32 (2-core AMD
    EPYC with AVX2 only), so a run asking for bf16 there is warned."""
    import torch

    device = torch.device(device)
    return (device.type == "cpu" and _cpu_has("_is_avx512_bf16_supported")) or native_bf16(device)


def run_precision(choice: str | None, device: Any) -> str | None:
    """``--precision`` resolved on ``device``: ``auto`` becomes bf16 where
    :func:`native_bf16` says it pays and fp32 elsewhere; None (the preset's) and
    fp32/bf16 pass through; anything else is a :class:`UserError`."""
    if choice is not None and choice not in PRECISION_CHOICES:
        raise UserError(f"--precision {choice!r}: choose one of {', '.join(PRECISION_CHOICES)}.")
    if choice == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return choice


def get_preset(name: str, precision: str | None = None, compile: bool | None = None) -> Preset:
    """The preset ``name``, with its classifier ``precision`` and ``compile``
    replaced when given."""
    if name not in PRESETS:
        raise UserError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)}.")
    preset = PRESETS[name]
    if precision is not None:
        if precision not in PRECISIONS:
            raise UserError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}.")
        preset = replace(preset, precision=precision)
    return preset if compile is None else replace(preset, compile=bool(compile))


def preset_label(preset: dict) -> str:
    """How a table names a record's preset: its name, its precision when that is
    not the preset's own, and ``compiled`` (``fast, bf16, compiled``), so no two
    look alike."""
    name = str(preset.get("name", "?"))
    precision = preset.get("precision")
    own = PRESETS[name].precision if name in PRESETS else None
    parts = [name, *([precision] if precision not in (None, own) else [])]
    return ", ".join(parts + ["compiled"] * bool(preset.get("compile")))
