"""The optimisation step the in-suite generators share (``edm``, ``ddpm``,
``realfake``'s fine-tuning): a linear learning-rate warm-up, one Adam step and
an exponential moving average of the weights, the EMA being what is saved and
sampled from (Karras et al. 2022 and Nichol & Dhariwal 2021 both sample from
an EMA)."""

from __future__ import annotations

import torch
from torch import nn


def warmup_lr(opt: torch.optim.Optimizer, base_lr: float, step: int, warmup: int) -> None:
    """Linear warm-up over the first ``warmup`` steps, then ``base_lr``."""
    for group in opt.param_groups:
        group["lr"] = base_lr * min(1.0, (step + 1) / warmup)


def step_with_ema(opt: torch.optim.Optimizer, loss: torch.Tensor, model: nn.Module, ema: nn.Module,
                  ema_decay: float) -> None:
    """One optimiser step on ``loss``, then ema <- decay * ema + (1 - decay) * model."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        for pe, pn in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pn, 1.0 - ema_decay)
