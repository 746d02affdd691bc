"""Fixed-size network batches for evaluation: every image is computed in a
batch of exactly the same size, so its result does not depend on how many
images came with it.

Why fixed: oneDNN (and cuDNN) choose their convolution kernels by shape,
minibatch included, and two kernels can round the same image apart. Measured on
a 2-core Intel Xeon at one thread, a SmallCNN whose last chunk held 17 images
and a ResNet-18 whose last chunk held 12 gave those images other logits than
full batches did, while full batches of 32, 64, 128 and 512 agreed bitwise. A
split whose size leaves an odd remainder meets such a kernel in its last chunk;
padding that chunk to the fixed size (and dropping the padded rows) keeps every
image on the fixed batch's kernel. The generators' samplers do the same with
their own ``eval_batch`` option.

Why 64 on a CPU: small batches keep a layer's activations in cache. Against
batches of 512, at one thread (``tests/benchmarks/test_eval_batch.py``, one run
on a loaded 2-core Intel Xeon): SmallCNN 1.67x on 1x28x28 and 1.61x on 3x32x32,
ResNet-18 1.38x on 3x32x32, all in fp32, with the same logits; bf16 gains
1.04-1.16x. The classifiers cached by the published store's fashion-mnist runs
give the same logits and features in batches of 64 as in the 512 they were
evaluated in. A GPU wants large batches, so it keeps 512.
"""

from __future__ import annotations

from typing import Callable

import torch

CPU_EVAL_BATCH = 64
GPU_EVAL_BATCH = 512


def eval_batch(device: torch.device) -> int:
    """The fixed evaluation batch for ``device`` (see the module's docstring)."""
    return CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH


@torch.no_grad()
def in_fixed_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    """``fn`` over the rows of ``x`` in batches of exactly ``batch`` rows (the
    last one padded with zeros, its padded rows dropped), outputs as float32 on
    the CPU, concatenated in order. ``fn`` moves its input to the device."""
    if len(x) == 0:
        raise ValueError("no images to evaluate")
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        k = len(xb)
        if k < batch:
            xb = torch.cat([xb, xb.new_zeros((batch - k, *xb.shape[1:]))])
        out.append(fn(xb).float().cpu()[:k])
    return torch.cat(out)
