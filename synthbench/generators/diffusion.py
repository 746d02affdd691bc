"""The diffusion core the in-suite adapters share (``edm``, ``ddpm``, ``realfake``):
the UNet builder, EDM's preconditioning, the Karras sigma grid, a free Heun
sampler, the real-sample reconstruction on that grid, and the training step
(warm-up, Adam, an EMA of the weights) with EDM's training loop.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models" (arXiv 2206.00364): preconditioning Table 1 (c_skip, c_out, c_in,
c_noise = ln(sigma)/4, sigma_data = 0.5, taken from diffusers'
``EDMEulerScheduler``), the rho = 7 schedule with sigma in [0.002, 80],
training with ln(sigma) ~ N(P_mean = -1.2, P_std = 1.2) and loss weight
(sigma^2 + sigma_data^2) / (sigma sigma_data)^2, Heun sampling (Algorithms 1-2).
Like EDM's own ``edm_sampler``, the sampler is a function of a denoiser, the
latents and a noise source, so an adapter brings its network and conditioning
and nothing else.

Batch independence: networks run on fixed-size chunks (:func:`denoise_in_chunks`,
the last one padded), so image i is computed the same way whatever batch the
caller asked for, and depends on its own seed alone.

Precision (the adapters' ``precision`` option): the network may run under bf16
autocast while the sampler's state stays float64. On a 2-core CPU with AMX the
fashion-mnist-sized denoiser then does 1.7x (1 thread) to 1.9x (2 threads) the
evaluations per CPU-second of fp32, and one evaluation moves by at most 9e-3
(``tests/benchmarks/test_edm_sampling_precision.py`` measures both and the change
in finished images). Chunks keep their fixed size in either precision, so
determinism and batch-size independence hold in both (the conformance suite
checks each).

Training precision (the ``train_precision`` option of edm, realfake and ddpm): the
training forward under bf16 autocast, with the loss, the optimiser and the EMA
in fp32 (:func:`training_arithmetic`). On the `fast` fashion-mnist network at
one thread on a CPU with AMX an EDM training step took 0.6 of fp32's CPU time
(``tests/benchmarks/test_edm_training_precision.py``: 1.67x the steps per
CPU-second), and a 2,000-step fit 19.8 minutes against 33.1. The recipe names
bf16 only when it is used, so fp32 weights keep their cache keys.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import Any, Callable, Sequence

import torch
from torch import nn

from synthbench.benchmark.batches import CPU_EVAL_BATCH
from synthbench.benchmark.compiling import compiled, run_compiled
from synthbench.benchmark.context import FitContext
from synthbench.benchmark.options import Option
from synthbench.benchmark.presets import PRECISIONS
from synthbench.benchmark.progress import bar
from synthbench.benchmark.seeding import derive_seed, per_sample_normal, torch_generator
from synthbench.errors import UserError

SIGMA_MIN, SIGMA_MAX, RHO, SIGMA_DATA = 0.002, 80.0, 7.0, 0.5
P_MEAN, P_STD = -1.2, 1.2
T_RECON = 100
"""Reconstruction counts t_re in T = 100 steps (Yamaguchi & Fukuda 2023, arXiv
2311.13090, Sec. 4: "conditional EDM (T = 100)")."""

DDPM_LINEAR_T = T_RECON
DDPM_LINEAR_BETAS = (1e-4, 0.02)
"""The reference noise schedule of ``recon``'s noise levels: DDPM's linear betas
(Ho et al. 2020, 1e-4..0.02 over 1,000 steps), counted in T = 100 steps the way
Nichol & Dhariwal's code respaces a linear schedule to T steps (betas scaled by
1000 / T: 1e-3..0.2 over 100 steps), so t_re is a step of it directly. Its sigma
at t_re 30 / 50 / 70 / 100 is 1.23 / 3.53 / 13.2 / 221. (Reading the 1,000-step
schedule at step 10 t_re instead gives 1.23 / 3.42 / 11.9 / 157.)"""


def _ddpm_linear_log_abar() -> torch.Tensor:
    """log abar_k for k = 0..T of the reference schedule (float64; abar_0 = 1)."""
    scale = 1000 / DDPM_LINEAR_T
    betas = torch.linspace(scale * DDPM_LINEAR_BETAS[0], scale * DDPM_LINEAR_BETAS[1], DDPM_LINEAR_T,
                           dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-betas), 0)])


def ddpm_linear_sigma(t_re: float) -> float:
    """The variance-exploding noise level sigma = sqrt((1 - abar) / abar) of the
    reference DDPM-linear schedule (:data:`DDPM_LINEAR_T`) at step ``t_re`` of 0..100;
    a fractional step interpolates log abar linearly between its neighbours.
    ``recon`` with ``t_re_scale=sigma`` reads t_re on it."""
    t = float(t_re)
    if not 0 <= t <= DDPM_LINEAR_T:
        raise UserError(f"t_re={t_re} is outside 0..{DDPM_LINEAR_T}.")
    table = _ddpm_linear_log_abar()
    k = min(math.floor(t), DDPM_LINEAR_T - 1)
    log_abar = float(table[k] + (t - k) * (table[k + 1] - table[k]))
    return math.sqrt(max(0.0, math.expm1(-log_abar)))


def ddpm_linear_step(sigma: float) -> float:
    """The inverse of :func:`ddpm_linear_sigma`: the (fractional) step of 0..100 at
    which the reference DDPM-linear schedule reaches noise level ``sigma``; 100
    for any sigma at or above its last (221), 0 for sigma 0."""
    sigma = float(sigma)
    if not sigma > 0:
        return 0.0
    table = _ddpm_linear_log_abar()
    log_abar = -math.log1p(sigma * sigma)
    if log_abar <= float(table[-1]):
        return float(DDPM_LINEAR_T)
    k = int(torch.searchsorted(-table, torch.tensor([-log_abar], dtype=torch.float64))[0]) - 1
    k = max(0, min(k, DDPM_LINEAR_T - 1))
    return k + (log_abar - float(table[k])) / float(table[k + 1] - table[k])


Denoiser = Callable[[torch.Tensor, "float | torch.Tensor"], torch.Tensor]
"""D(x; sigma) on float32 images in [-1, 1], conditioning already bound."""


def edm_scheduler():
    from diffusers import EDMEulerScheduler

    return EDMEulerScheduler(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_data=SIGMA_DATA, rho=RHO,
                             sigma_schedule="karras", prediction_type="epsilon")


def karras_sigmas(num_steps: int) -> torch.Tensor:
    """sigma_0 > ... > sigma_{N-1} on the rho = 7 schedule, then a final 0 (float64)."""
    sched = edm_scheduler()
    sched.set_timesteps(num_steps)
    return sched.sigmas.to(torch.float64)


def build_unet(image_shape: Sequence[int], num_classes: int | None, channels: Sequence[int],
               layers_per_block: int, out_channels: int | None = None):
    """A UNet2DModel whose depth fits the image size (each level halves it, so
    28x28 gets at most 3 levels and 8x8 at most 4); class-conditional through a
    class embedding unless ``num_classes`` is None. ``out_channels`` defaults to
    the image's (``ddpm`` asks for twice that: noise and variance)."""
    from diffusers import UNet2DModel

    c, h, w = image_shape
    levels = 1
    while levels < len(channels) and h % (2 ** levels) == 0 and w % (2 ** levels) == 0 and h // 2 ** levels >= 2:
        levels += 1
    chans = tuple(channels[:levels])
    down = ["DownBlock2D"] * (levels - 1) + ["AttnDownBlock2D"]
    up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (levels - 1)
    return UNet2DModel(
        sample_size=(h, w), in_channels=c, out_channels=out_channels or c, block_out_channels=chans,
        down_block_types=tuple(down), up_block_types=tuple(up), layers_per_block=layers_per_block,
        norm_num_groups=min(32, chans[0] // 4), num_class_embeds=num_classes,
        attention_head_dim=min(64, chans[-1]), add_attention=True,
    )


def unet_recipe(ctx: FitContext, steps: int, lr: float, seed: int, conditional: bool,
                precision: str = "fp32", compile: bool = False) -> dict[str, Any]:
    """The in-suite UNet's training recipe from the preset: what its weights'
    cache key holds (shared by ``edm`` and ``realfake``'s base, and by ``ddpm``).
    ``precision`` appears only when it is not fp32 (:func:`with_precision`), and
    ``compile`` (:func:`train_edm`'s compiled steps) only when set, so the eager
    fp32 weights keep the key they always had."""
    p = ctx.preset
    recipe = with_precision({
        "steps": steps,
        "batch_size": p.gen_batch_size,
        "channels": list(p.gen_channels if ctx.image_shape[1] * ctx.image_shape[2] <= 256
                         else p.gen_channels_large),
        "layers_per_block": p.gen_layers_per_block,
        "lr": lr,
        "seed": seed,
        "image_shape": list(ctx.image_shape),
        "num_classes": len(ctx.class_names) if conditional else None,
        "hflip": ctx.hflip,
    }, precision)
    return {**recipe, "compile": True} if compile else recipe


def with_precision(recipe: dict[str, Any], precision: str) -> dict[str, Any]:
    """``recipe`` with ``"precision": precision`` when that is not fp32: a
    training recipe written before training had a precision was fp32, so fp32
    weights keep the cache key they always had."""
    return recipe if precision == "fp32" else {**recipe, "precision": precision}


class EDMDenoiser(nn.Module):
    """D(x; sigma, class) = c_skip x + c_out F(c_in x, c_noise, class) (Karras et al. Eq. 7)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.sched = edm_scheduler()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        sigma = sigma.to(x.dtype).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1)
        x_in = self.sched.precondition_inputs(x, sigma)
        c_noise = self.sched.precondition_noise(sigma.flatten())
        f = self.unet(x_in, c_noise, class_labels=labels).sample
        return self.sched.precondition_outputs(x, f, sigma)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float64 in [-1, 1]."""
    return images.double() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8, rounded and clamped."""
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)



def precision_option() -> Option:
    """The ``precision`` option of the in-suite diffusion adapters (edm and
    realfake through :func:`denoise_in_chunks`, ddpm in its own reverse chain)."""
    return Option("precision", "fp32", "Network arithmetic when sampling and reconstructing: fp32, or bf16 "
                  "autocast (about 1.8x the speed on a CPU with AMX, and the usual choice on a GPU; pixels "
                  "move by a level or so with a deterministic sampler, more with ddpm's stochastic one). "
                  "Unset, it follows the run's --precision (else the preset's: fp32 at smoke and fast, bf16 at "
                  "paper). A different precision is a different cell.", str, choices=PRECISIONS,
                  from_preset="precision")


def train_precision_option(note: str = "") -> Option:
    """The ``train_precision`` option of the adapters that train their UNet
    in-suite (edm, realfake's base and fine-tuning, ddpm); ``note`` ends its help."""
    return Option("train_precision", "fp32", "Arithmetic of in-suite training: fp32, or bf16 autocast for the "
                  "network's forward (loss, optimiser and EMA stay fp32; an EDM training step about 1.7x fp32's "
                  "speed on a CPU with AMX, and the usual choice on a GPU). Unset, it follows the run's "
                  "--precision (else the preset's: fp32 at smoke and fast, bf16 at paper). Other weights, so "
                  "a different cell." + (f" {note}" if note else ""), str, choices=PRECISIONS,
                  from_preset="precision")


@contextlib.contextmanager
def training_arithmetic(device: torch.device, precision: str) -> Iterator[None]:
    """The arithmetic of a training forward: nothing for fp32; for bf16, autocast
    and, on a CPU, attention through the math kernel. The fused (flash) attention
    kernel's backward in bf16 took 29 ms per call against 4.8 ms in fp32 on the
    `fast` fashion-mnist network (one thread, AMX), which cost bf16 training a
    fifth of its gain; the math kernel runs its matmuls in bf16 like the rest."""
    if precision != "bf16":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        if device.type == "cpu":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        yield


CPU_NETWORK_BATCH, OTHER_NETWORK_BATCH = CPU_EVAL_BATCH, 256
"""A sampler's fixed network batch when ``eval_batch`` is unset: the classifiers' CPU batch (the same
cache argument holds, see :func:`network_batch`); a GPU keeps the 256 the adapters always used."""


def eval_batch_option() -> Option:
    """The fixed network batch of the in-suite diffusion samplers. Unset,
    :func:`network_batch` picks it for the device (whose type is in the key),
    and :func:`denoise_in_chunks` pads to it, so how many images a call asks
    for never changes one. Set, it is in the cell's key: the batch itself can
    move an image in the last bits (on a 2-core AMX Xeon at one thread, batches
    of 64, 128 and 256 gave identical images, 16 and 7 moved 3-4 of 4,000 smoke
    EDM images by one level), and an unset batch keys cells as it always did."""
    return Option.positive_int(
        "eval_batch", f"Fixed network batch of the sampler; default: {CPU_NETWORK_BATCH} on a CPU, "
        f"{OTHER_NETWORK_BATCH} on a GPU. Another value is another cell (a batch can move an image in the last "
        f"bits).", default=None, in_key=False, keyed_when_set=True)


def network_batch(value: int | None, device: torch.device) -> int:
    """``eval_batch``, or the device's default when it is unset. 64 on a CPU: on
    the `fast` fashion-mnist network at one thread, the Heun sampler ran 1.07x
    (fp32 eager) and 1.25x (bf16 compiled) the images per CPU-second of batch 256
    (``tests/benchmarks/test_edm_sampling_precision.py``), with identical images;
    small batches keep a layer's activations in cache, as ``benchmark/batches.py``
    found for the classifiers. A GPU keeps 256."""
    if value is not None:
        return value
    return CPU_NETWORK_BATCH if device.type == "cpu" else OTHER_NETWORK_BATCH


def compile_option() -> Option:
    """The ``compile`` option of the in-suite diffusion adapters
    (:func:`~synthbench.benchmark.compiling.compiled`)."""
    return Option("compile", False, "torch.compile the network for sampling and reconstruction (inductor: "
                  "needs a C++ compiler on a CPU, triton on CUDA). With precision=bf16 on a CPU with AMX the "
                  "fast fashion-mnist sampler ran 2.7x fp32 eager's images per CPU-second (bf16 eager 1.8x, "
                  "compiled fp32 1.3x), after a first call of 5-40 s that compiles. Compiled kernels round "
                  "differently, so a compiled cell is a different cell.", bool)


@torch.no_grad()
def denoise_in_chunks(net: nn.Module, x: torch.Tensor, sigma: float | torch.Tensor, cond: torch.Tensor | None,
                      chunk: int, device: torch.device, precision: str = "fp32",
                      compile: bool = False) -> torch.Tensor:
    """``net(x, sigma, cond)`` on fixed ``chunk``-sized batches (the last padded),
    so a row's result never depends on the batch it came in. ``cond`` is None for
    an unconditional network; ``precision`` ``bf16`` runs it under bf16 autocast
    and returns float32 either way; ``compile`` runs it through
    :func:`compiled`."""
    net = compiled(net, compile)
    sig = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
    # contiguous: a compiled network guards on strides, and an expanded (stride-0) sigma in full chunks but a
    # concatenated one in the padded last chunk would cost a second graph
    sig = (sig.expand(x.shape[0]) if sig.numel() == 1 else sig).contiguous()
    outs = []
    for i in range(0, x.shape[0], chunk):
        xb, sb = x[i:i + chunk], sig[i:i + chunk]
        yb = None if cond is None else cond[i:i + chunk]
        k = xb.shape[0]
        if k < chunk:
            xb = torch.cat([xb, xb.new_zeros((chunk - k, *xb.shape[1:]))])
            sb = torch.cat([sb, sb.new_ones(chunk - k)])
            yb = None if yb is None else torch.cat([yb, yb.new_zeros(chunk - k)])
        yb = None if yb is None else yb.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            outs.append(run_compiled(net, xb.to(device), sb.to(device), yb).float().cpu()[:k])
    return torch.cat(outs)


def heun_sample(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, churn: float = 0.0,
                churn_seeds: Sequence[int] = (), desc: str = "sample") -> torch.Tensor:
    """Karras et al. Algorithm 2 (Heun, 2nd order; deterministic when ``churn`` is
    0) along ``sigmas`` (descending, ending in 0). ``x`` is float64 throughout;
    with churn, image i's extra noise comes from ``churn_seeds[i]`` alone.

    Each step's gamma is min(churn / n, sqrt(2) - 1) with n = ``len(sigmas) - 1``,
    the steps this call runs: Algorithm 2's S_churn / N when sampling, but in a
    reconstruction n is t_re (or the levels below ``sigma``), not the grid's 100,
    so one ``churn`` adds more noise per step at a small t_re (churn = 5: gamma
    0.41, the cap, at t_re = 10; 0.17 at 30; 0.05 at 100)."""
    n_steps = len(sigmas) - 1
    churn_gens = [torch_generator(derive_seed("edm-churn", s)) for s in churn_seeds] if churn > 0 else None
    for i in bar(range(n_steps), desc=desc, unit="step"):
        t_cur, t_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = min(churn / n_steps, math.sqrt(2) - 1) if churn > 0 else 0.0
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            eps = torch.stack([torch.randn(x.shape[1:], generator=g, dtype=torch.float64) for g in churn_gens])
            x = x + math.sqrt(t_hat ** 2 - t_cur ** 2) * eps
        d = (x - denoise(x.float(), t_hat).double()) / t_hat
        x_next = x + (t_next - t_hat) * d
        if t_next > 0:
            d2 = (x_next - denoise(x_next.float(), t_next).double()) / t_next
            x_next = x + (t_next - t_hat) * (0.5 * d + 0.5 * d2)
        x = x_next
    return x


def sample_images(denoise: Denoiser, seeds: Sequence[int], image_shape: Sequence[int], num_steps: int,
                  churn: float = 0.0, desc: str = "sample") -> torch.Tensor:
    """uint8 samples: image i starts from ``seeds[i]``'s noise at sigma_max."""
    sigmas = karras_sigmas(num_steps)
    x = per_sample_normal(seeds, image_shape).double() * sigmas[0]
    return to_uint8(heun_sample(denoise, x, sigmas, churn, seeds, desc))


def recon_sigmas(t_re: int, sigma: float | None = None) -> torch.Tensor:
    """The Heun schedule of a reconstruction (float64, descending, ending in 0) on
    EDM's schedule discretised into T = 100 steps: sigma_t_re, ..., sigma_1, 0 of
    the Karras grid; or, given a start noise level ``sigma``, that level followed
    by the grid's levels below it (so a level between two grid points adds one
    step of its own and then follows the grid). Empty for t_re = 0 / sigma = 0."""
    if not 0 <= int(t_re) <= T_RECON:
        raise UserError(f"t_re={t_re} is outside 0..{T_RECON} (reconstruction counts it in steps of "
                        f"T = {T_RECON}).")
    grid = karras_sigmas(T_RECON)  # grid[k] = sigma at step T - k; grid[T] = 0
    if sigma is None:
        return grid[T_RECON - t_re:] if t_re > 0 else grid[:0]
    if not sigma >= 0 or not math.isfinite(sigma):
        raise UserError(f"sigma={sigma} is not a noise level (a finite number >= 0).")
    if sigma == 0:
        return grid[:0]
    return torch.cat([torch.tensor([float(sigma)], dtype=torch.float64), grid[grid < sigma]])


def recon_start_sigma(t_re: int, sigma: float | None = None) -> float:
    """The noise level :func:`reconstruct_images` starts from (0 for t_re = 0):
    the Karras T = 100 grid's at step t_re (0.29 / 2.40 / 12.1 / 80 at 30 / 50 /
    70 / 100), or ``sigma`` itself when given."""
    sigmas = recon_sigmas(t_re, sigma)
    return float(sigmas[0]) if len(sigmas) else 0.0


def reconstruct_images(denoise: Denoiser, images: torch.Tensor, t_re: int, seeds: Sequence[int],
                       churn: float = 0.0, sigma: float | None = None) -> torch.Tensor:
    """Real-sample reconstruction (Yamaguchi & Fukuda 2023, Algorithm 1) on EDM's
    schedule discretised into T = 100 steps: the image is diffused to step t_re in
    one Gaussian step (x_t = x + sigma_t eps, the variance-exploding form of lines
    3-5), then restored by Heun steps along sigma_t_re, ..., sigma_1, 0 (lines
    7-9). t_re = 0 returns the input; t_re = T starts from pure noise.

    ``churn`` > 0 makes the reverse steps stochastic (Karras et al. Algorithm 2's
    S_churn, image i's extra noise from ``seeds[i]``), the counterpart of the
    noise Algorithm 1 adds in its reverse step (line 8); 0 is the deterministic
    Heun sampler. It is spread over the t_re steps run (:func:`heun_sample`), not
    over the grid's T = 100. ``sigma`` (keyword) overrides t_re's position: the image is
    diffused to exactly that noise level and restored along it and the grid's
    levels below it (:func:`recon_sigmas`); the input then always enters, even
    at a level above sigma_max."""
    sigmas = recon_sigmas(t_re, sigma)
    if len(sigmas) == 0:
        return images.clone()
    eps = per_sample_normal([derive_seed("edm-recon", s) for s in seeds], images.shape[1:]).double()
    x = eps * sigmas[0] if sigma is None and t_re == T_RECON else to_unit(images) + eps * sigmas[0]
    return to_uint8(heun_sample(denoise, x, sigmas, churn, seeds, desc=f"reconstruct t_re={t_re}"))


def warmup_lr(opt: torch.optim.Optimizer, base_lr: float, step: int, warmup: int) -> None:
    """Linear learning-rate warm-up over the first ``warmup`` steps, then ``base_lr``."""
    for group in opt.param_groups:
        group["lr"] = base_lr * min(1.0, (step + 1) / warmup)


def step_with_ema(opt: torch.optim.Optimizer, loss: torch.Tensor, model: nn.Module, ema: nn.Module,
                  ema_decay: float) -> None:
    """One optimiser step on ``loss``, then ema <- decay * ema + (1 - decay) * model:
    the EMA is what is saved and sampled from (Karras et al. 2022 and Nichol &
    Dhariwal 2021 both sample from an EMA)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        for pe, pn in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pn, 1.0 - ema_decay)


def edm_loss_terms(net: nn.Module, x: torch.Tensor, cond: torch.Tensor | None, gen: torch.Generator,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of EDM's denoising objective: sigma and noise drawn from ``gen``;
    returns the denoised batch and the per-sample loss weight lambda(sigma)."""
    bs = x.shape[0]
    sigma = (P_MEAN + P_STD * torch.randn(bs, generator=gen)).exp().to(device)
    noise = torch.randn(x.shape, generator=gen).to(device) * sigma.view(-1, 1, 1, 1)
    denoised = net(x + noise, sigma, cond)
    weight = (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2
    return denoised, weight


def train_edm(ctx: FitContext, recipe: dict[str, Any]) -> nn.Module:
    """EDM's training loop on ``ctx.train`` (Adam, a short warm-up, an EMA of the
    weights); returns the EMA UNet on the CPU.

    ``recipe["compile"]`` runs each step's forward and backward through
    ``torch.compile``, in torch's deterministic mode (without it, inductor's
    parallel adds in the class embedding's backward change the weights' last
    bits from run to run). A 2,000-step bf16 `fast` fashion-mnist fit took
    853 s against 972 s eager with inductor's cache warm, 1,035 against 1,048
    s cold (one thread, 2-core Xeon with AMX; measured by
    ``tests/benchmarks/test_edm_training_precision.py``). No adapter option
    sets it yet: ``edm``'s ``compile`` would take it to a weights file that
    ``realfake``'s base (which has no ``compile``) no longer shares, so a suite
    with both would fit the base once more (16 minutes at `fast`) to save two.
    It wants a run-level switch that edm and realfake's base both follow."""
    from synthbench.benchmark.trainer import random_crop_flip

    dev = ctx.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("edm-init", recipe["seed"]) & 0xFFFF_FFFF)
        unet = build_unet(ctx.image_shape, recipe["num_classes"], recipe["channels"], recipe["layers_per_block"])
    net = EDMDenoiser(unet).to(dev).train()
    ema = copy.deepcopy(unet).to(dev).eval().requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=recipe["lr"], betas=(0.9, 0.999))
    warmup = max(1, recipe["steps"] // 20)
    ema_decay = 1.0 - 1.0 / max(10.0, recipe["steps"] / 10)
    gen = torch_generator(derive_seed("edm-train", recipe["seed"]))
    x_all = ctx.train.images.to(dev)
    y_all = ctx.train.labels.to(dev) if recipe["num_classes"] is not None else None
    n = x_all.shape[0]
    bs = min(recipe["batch_size"], n)
    forward = compiled(net, recipe.get("compile", False))

    def train_step(x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        # forward and backward in one call: a compiled network builds its backward kernels at the first backward
        with training_arithmetic(dev, recipe.get("precision", "fp32")):
            denoised, weight = edm_loss_terms(forward, x, cond, gen, dev)
        loss = (weight.view(-1, 1, 1, 1) * (denoised.float() - x) ** 2).mean()
        step_with_ema(opt, loss, unet, ema, ema_decay)
        return loss

    run = ctx.resumable({"unet": unet, "ema": ema, "opt": opt, "gen": gen})
    progress = bar(range(run.start, recipe["steps"]), desc="train edm", unit="step")
    for step in progress:
        idx = torch.randint(n, (bs,), generator=gen).to(dev)
        x = x_all[idx].float() / 127.5 - 1.0
        if recipe["hflip"]:
            x = random_crop_flip(x, 0, True, gen)
        warmup_lr(opt, recipe["lr"], step, warmup)
        loss = run_compiled(train_step, x, y_all[idx] if y_all is not None else None,
                            deterministic=recipe.get("compile", False))
        if step % 50 == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
        run.step_done(step)
    return ema.cpu()


EDM_WEIGHTS_VERSION = 1
"""Part of the in-suite EDM weights' identity (``edm`` v1 wrote it as its own
version): bump it when :func:`train_edm` changes, with the adapters' versions."""


def fit_edm_unet(ctx: FitContext, recipe: dict[str, Any], phase: str = "fit_train_s") -> tuple[nn.Module, str]:
    """The in-suite EDM UNet of ``recipe`` through the weights cache (trained on a
    miss, its seconds charged to the cost ``phase``); ``edm`` and ``realfake``'s
    base share the file. Returns (unet, key)."""
    def build() -> nn.Module:
        return build_unet(ctx.image_shape, recipe["num_classes"], recipe["channels"], recipe["layers_per_block"])

    return ctx.cached_weights("edm", recipe, EDM_WEIGHTS_VERSION, build, lambda: train_edm(ctx, recipe),
                              phase=phase)
