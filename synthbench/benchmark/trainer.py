"""The classifier trainer every protocol uses.

Data stays as uint8 tensors on the device; augmentation (random crop with
padding, horizontal flip where the dataset allows it) happens there, batched.
Every random draw (init, shuffling, crops, flips) comes from generators seeded
by the caller's seed.

The preset's ``precision`` sets the arithmetic, on any device. ``fp32`` is plain
float32 with NCHW weights; it trains on channels_last activations all the same,
because the batched crop gathers pixels in NHWC order and hands the first
convolution a channels_last batch (``tests/test_trainer.py`` holds it there:
the published fp32 classifiers were trained so; ``detect``'s, trained without
augmentation, see NCHW batches). ``bf16`` trains and evaluates
under bf16 autocast in channels_last, which is what AMX and tensor cores are
fast at. The model is
tagged with its precision, so a classifier is always evaluated the way it was
trained, including one read back from the cache. Measured at the `fast` recipe
on 3,000 fashion-mnist images (``tests/benchmarks/test_trainer_vs_plain_loop.py``),
the fp32 trainer reaches 88-95% of the CPU's fp32 matmul rate and 1.2-1.4x a
torchvision DataLoader loop. bf16 goes further: on a 2-core AMD EPYC with
AVX512-BF16 it ran 1.9x the fp32 trainer and 2.3x the loop, at 76% of the bf16
matmul rate (its convolutions, forward and backward, are 69% of a step; batch
norm, ReLU and pooling most of the rest), test accuracy 0.8669 against 0.8638 in
fp32 and 0.8711 for the loop. On a 2-core Xeon with AMX (quiet, 2 threads, 30
epochs) bf16 ran 3,070 images/s: 2.1x fp32 (1,434) and 2.9x the loop with 0 or 2
loader workers (1,054 and 1,063 images/s; 2.8x per CPU-second, the workers'
CPU time counted), test accuracy 0.8670 against 0.8676 in fp32 and 0.8720 /
0.8703 for the loop; bf16 reached 19% of that CPU's bf16 matmul rate and fp32
62% of its fp32 rate. A bf16 step's time there: convolutions 36% (their
backward 28%), batch norm 29%, ReLU 12%, max-pool 10%, AdamW 3%. At SmallCNN's
widths AMX leaves the memory-bound layers as most of a step, and they are what
holds the ratio under 3x. A step's activations are freed and allocated again
every step; with glibc's allocator at its defaults that could fault them in
again every step and run 1.0x to 1.3x slower from one process to the next,
which ``import synthbench`` prevents (``synthbench/process_defaults.py``;
1.08x in bf16 and in fp32 in a fresh process, less in one that has already
done large work). oneDNN's bf16 mode for fp32 work gave 1.05x
(``tests/benchmarks/test_onednn_fp32_modes.py``), so it is not used.
``torch.compile`` of the training step is a switch (``Preset.compile``,
``--compile``), off by default: with torch 2.14 on a 2-core AMD EPYC, bf16 at
one thread, a 3,000-step ``fast`` training took 449 s compiled against 368 s
eager, and 600 steps 95-97 s against 76-80 s (compiling, 10-40 s, included;
separate processes, taking turns), so compiled steps were no faster there (an
isolated step, compiled and eager interleaved in one process, had suggested
1.14-1.25x). On the AMX Xeon the 30 bf16 epochs took 31 s compiled,
compiling included, against 29 s eager. It is there for GPUs, where it is not
measured yet. Converting an fp32 model to channels_last as well gives nothing
more: its weights after two ``fast`` epochs on 1,280 fashion-mnist images were
the same bits, and its speed the same within the machine's drift (2-core AMD
EPYC, AVX2 only). A
microbenchmark that fed contiguous NCHW batches had suggested 1.15-1.5x a step;
that gain is the one the crop already gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthbench.benchmark.batches import eval_batch, in_fixed_batches
from synthbench.benchmark.classifiers import build_classifier, to_input
from synthbench.benchmark.compiling import compiled, run_compiled
from synthbench.benchmark.metrics import metric
from synthbench.benchmark.presets import STEP_DECAY, Preset
from synthbench.benchmark.progress import bar
from synthbench.benchmark.seeding import derive_seed, torch_generator
from synthbench.benchmark.snapshots import Resumable


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Batched random crop (zero padding ``pad``) and optional horizontal flip."""
    b, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=gen.device).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=gen.device).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # [B,H,1]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # [B,1,W]
        bidx = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand(b, generator=gen, device=gen.device) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


PRECISION_ATTR = "synthbench_precision"
"""The attribute that tags a classifier with the precision it was trained in."""


def init_model(preset: Preset, in_chans: int, num_classes: int, seed: int) -> nn.Module:
    """The preset's classifier with seeded initial weights, tagged with the
    preset's precision (and in channels_last for bf16)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("classifier-init", seed) & 0xFFFF_FFFF)
        model = build_classifier(preset.classifier, in_chans, num_classes)
    setattr(model, PRECISION_ATTR, preset.precision)
    return model.to(memory_format=torch.channels_last) if preset.precision == "bf16" else model


def _bf16(model: nn.Module) -> bool:
    return getattr(model, PRECISION_ATTR, "fp32") == "bf16"


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _layout(x: torch.Tensor, bf16: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if bf16 and x.ndim == 4 else x


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, preset: Preset, seed: int,
                     device: torch.device, hflip: bool, desc: str = "train classifier", epochs: int | None = None,
                     max_steps: int | None = None, augment: bool = True, snapshot: Path | None = None,
                     lr_step: int | None = None) -> nn.Module:
    """Train ``preset.classifier`` on ``images`` and return it in eval mode.

    ``images`` are uint8 images, or float inputs already in the model's input
    space (e.g. ``detect``'s DCT spectra), which are used as they are.
    ``epochs`` overrides the preset's; ``max_steps`` instead fixes the number of
    optimisation steps (a fixed compute budget, used by scale-up); ``augment``
    turns the random crop and flip off (``detect`` looks for pixel-level traces
    that crops would blur). ``snapshot``: where the training's state is kept at
    epoch ends every few minutes, and resumed from (``snapshots.py``).
    ``lr_step``: a step schedule's period in optimisation steps (default
    ``lr_step_epochs`` epochs of these images); scale-up's fixed compute budget
    passes the real run's, since ``lr_step_epochs`` epochs of a set ten times
    the size are more steps than ``max_steps`` holds and the rate would never
    decay."""
    epochs = preset.epochs if epochs is None else epochs
    model = init_model(preset, images.shape[1], num_classes, seed).to(device)
    bf16 = _bf16(model)
    x_all = images.to(device)
    y_all = labels.to(device)
    n = x_all.shape[0]
    bs = min(preset.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    if max_steps is not None:
        epochs = max(1, math.ceil(max_steps / steps_per_epoch))
    total_steps = max_steps if max_steps is not None else epochs * steps_per_epoch

    if preset.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=preset.lr, momentum=0.9, weight_decay=5e-4)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=preset.lr, weight_decay=5e-4)
    if preset.lr_schedule in STEP_DECAY:
        # x0.1 every lr_step_epochs epochs (Yamaguchi & Fukuda 2023, arXiv 2311.13090, Sec. 4.2), or x0.2
        # (Real-Fake, Yuan et al. 2024, arXiv 2310.10402, Table 8: at epochs 50/100/150), applied per step.
        step_len = preset.lr_step_epochs * steps_per_epoch if lr_step is None else max(1, lr_step)
        decay = STEP_DECAY[preset.lr_schedule]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: decay ** (s // step_len))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))

    forward = compiled(model, preset.compile)

    def loss_and_grads(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # forward and backward together: a compiled model may build its backward kernels at the first backward
        with _autocast(device, bf16):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        return loss

    gen = torch_generator(derive_seed("classifier-data", seed))
    run = Resumable(snapshot, {"model": model, "opt": opt, "sched": sched, "gen": gen})  # at epoch ends
    pad = max(1, round(images.shape[-1] / 8))
    model.train()
    step = min(run.start * steps_per_epoch, total_steps)
    progress = bar(total=total_steps, desc=desc, unit="step")
    progress.update(step)
    for epoch in range(run.start, epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(steps_per_epoch):
            if step >= total_steps:
                break
            idx = perm[i * bs:(i + 1) * bs]
            x = x_all[idx]
            x = to_input(x) if x.dtype == torch.uint8 else x
            if augment:
                x = random_crop_flip(x, pad, hflip, gen)
            opt.zero_grad(set_to_none=True)
            loss = run_compiled(loss_and_grads, _layout(x, bf16), y_all[idx],
                                eager="run without --compile (the preset's compile: false)")
            opt.step()
            sched.step()
            step += 1
            progress.update(1)
            if step % 20 == 0:
                progress.set_postfix(loss=f"{loss.item():.3f}")
        run.step_done(epoch)
    progress.close()
    return model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, device: torch.device,
                   batch: int | None = None) -> torch.Tensor:
    """Logits for uint8 images, in float32 on the CPU, in the precision the
    model was trained in; evaluated in fixed-size batches (``batches.py``: the
    device's evaluation batch unless given), so an image's logits do not depend
    on how many came with it."""
    model.eval()
    bf16 = _bf16(model)

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        x = to_input(x) if x.dtype == torch.uint8 else x
        with _autocast(device, bf16):
            return model(_layout(x, bf16))

    return in_fixed_batches(forward, images, batch or eval_batch(device))


@dataclass
class Evaluation:
    top1: float
    n: int
    per_class: list[float]
    confusion: list[list[int]]
    correct: np.ndarray | None = None
    """Per test image, in the split's order: 1 where the prediction was right."""

    @property
    def stderr(self) -> float:
        """Binomial standard error of top-1 over the ``n`` test images."""
        return math.sqrt(max(self.top1 * (1 - self.top1), 0.0) / max(self.n, 1))

    def metric(self) -> dict[str, Any]:
        """top-1 as a record's metric entry, with the per-image outcomes the
        leaderboard's paired test reads."""
        return metric(self.top1, self.stderr, self.n, True, outcomes=self.correct)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
             device: torch.device) -> Evaluation:
    pred = predict_logits(model, images, device).argmax(1).numpy()
    true = labels.numpy()
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(conf, (true, pred), 1)
    support = conf.sum(1)
    per_class = [float(conf[c, c] / support[c]) if support[c] else float("nan") for c in range(num_classes)]
    correct = pred == true
    return Evaluation(top1=float(correct.mean()), n=int(len(true)), per_class=per_class,
                      confusion=conf.tolist(), correct=correct.astype(np.int8))
