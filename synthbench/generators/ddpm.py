"""``ddpm``: improved DDPM (Nichol & Dhariwal 2021, "Improved Denoising Diffusion
Probabilistic Models"), the generator of Basu, Karanam & Ramadwar ("Exploring
Synthetic Data Generation using Diffusion Models"), trained in-suite and cached;
class-conditional, or unconditional with samples pseudo-labelled by the
classifier trained on real data (Basu et al. Sec. 3.3.2), optionally keeping only
confident ones (``confidence_threshold``).

What makes it "improved" (their Sec. 3), all kept:

- the cosine noise schedule (Sec. 3.2, Eq. 17; diffusers' ``squaredcos_cap_v2``,
  T = 1000);
- learned reverse-process variances (Sec. 3.1, Eq. 15): the network outputs the
  noise and an interpolation v between log beta_t and log beta~_t; diffusers'
  ``DDPMScheduler(variance_type="learned_range")`` samples with it;
- the hybrid objective L_simple + lambda L_vlb, lambda = 0.001 (Sec. 3.1, Eq.
  16), with a stop-gradient on the mean in L_vlb so that term trains the
  variances only; L_vlb's terms are Eq. 5's Gaussian KLs and, at t = 0, the
  discretised Gaussian decoder NLL of Ho et al. (2020) Sec. 3.3 (in bits);
- fast sampling with respaced steps (Sec. 4): ``sampler_steps`` evenly spaced
  timesteps (diffusers' ``linspace`` spacing), the variances re-derived for
  the respaced chain by the scheduler.

``reconstruct``: the real-sample reconstruction of Yamaguchi & Fukuda 2023
(arXiv 2311.13090, Algorithm 1) in DDPM's own terms: diffuse the real
image to step t = t_re / 100 * T in one draw of q(x_t | x_0), then run the
respaced reverse chain from there. The chain is ancestral (it draws fresh noise
at every step, as Algorithm 1's line 8 does). ``recon_sigma`` says the start's
noise level, sqrt((1 - abar_t) / abar_t): 0.52 / 1.02 / 1.99 at t_re 30 / 50 /
70 (``edm``'s Karras grid: 0.29 / 2.40 / 12.1), so equal t_re is not equal noise.
``reconstruct(..., sigma=S)`` starts at the timestep whose level is nearest to
S in log sigma instead (``recon_sigma(t_re, S)`` is that level).

The network is the same diffusers ``UNet2DModel`` the ``edm`` adapter builds
(``diffusion.build_unet``), with twice the output channels. Batch independence:
the network runs on fixed ``eval_batch`` chunks (the last one padded) and every
sample's noise comes from its own generator; that fixed shape is also what lets
``compile=true`` build one graph for every batch.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import nn

from synthbench.benchmark.context import FitContext
from synthbench.benchmark.compiling import compiled, run_compiled
from synthbench.benchmark.options import Option, by_preset
from synthbench.benchmark.progress import bar
from synthbench.benchmark.seeding import derive_seed, per_sample_normal, torch_generator
from synthbench.errors import UserError
from synthbench.generators.base import Generator
from synthbench.generators.diffusion import (
    T_RECON, build_unet, compile_option, eval_batch_option, network_batch, precision_option,
    step_with_ema, to_uint8, train_precision_option, training_arithmetic, unet_recipe, warmup_lr,
)

T_TRAIN = 1000
HYBRID_LAMBDA = 0.001


def make_scheduler(sampler_steps: int | None = None):
    """The cosine-schedule, learned-range DDPM scheduler (respaced when
    ``sampler_steps`` is given)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=T_TRAIN, beta_schedule="squaredcos_cap_v2",
                          variance_type="learned_range", prediction_type="epsilon", clip_sample=True,
                          timestep_spacing="linspace")
    if sampler_steps is not None:
        sched.set_timesteps(sampler_steps)
    return sched


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log p(x) of 8-bit data in [-1, 1] under a Gaussian integrated over each
    pixel's bin of width 2/255 (Ho et al. 2020 Sec. 3.3; edge bins open), nats."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    log_probs = torch.where(x < -0.999, log_cdf_plus,
                            torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))
    return -log_probs


class DiffusionTerms:
    """The closed-form quantities of the forward process used by the VLB, as
    float64 tables indexed by t (Ho et al. Eq. 6-7; Nichol & Dhariwal Eq. 10-13)."""

    def __init__(self, sched):
        self.betas = sched.betas.double()
        self.abar = sched.alphas_cumprod.double()
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.abar[:-1]])
        self.post_var = self.betas * (1 - abar_prev) / (1 - self.abar)
        # beta~_0 = 0: clip its log to beta~_1's, as Nichol & Dhariwal do.
        self.post_logvar = torch.log(torch.cat([self.post_var[1:2], self.post_var[1:]]))
        self.coef_x0 = self.betas * abar_prev.sqrt() / (1 - self.abar)
        self.coef_xt = (1 - abar_prev) * (1 - self.betas).sqrt() / (1 - self.abar)

    def _g(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return table.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def vlb_terms(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                  v: torch.Tensor) -> torch.Tensor:
        """L_t per sample, in bits per dimension (Nichol & Dhariwal Eq. 4-6):
        KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for t > 0 and the decoder NLL
        -log p(x_0|x_1) for t = 0. ``eps`` should be detached (stop-gradient on
        the mean, Sec. 3.1) and ``v`` in [-1, 1] as the network outputs it.

        The model mean is computed from the predicted x0 clipped to [-1, 1], as
        sampling does; Nichol & Dhariwal's training loss does not clip it
        (the mean from eps, Ho et al. 2020 Eq. 11; their code's ``training_losses`` passes
        ``clip_denoised=False``). The two agree where the clip is inactive and
        part ways at large t: with an eps error of std 0.2 on digits, L_t is
        0.0002 against 0.0006 bits/dim at t = 900 and 0.0001 against 0.0067 at
        t = 990. Kept as it is: the published ``ddpm`` records were trained so."""
        g = self._g
        true_mean = g(self.coef_x0, t, x0) * x0 + g(self.coef_xt, t, x0) * xt
        true_logvar = g(self.post_logvar, t, x0)
        x0_pred = ((xt - g((1 - self.abar).sqrt(), t, xt) * eps) / g(self.abar.sqrt(), t, xt)).clamp(-1, 1)
        model_mean = g(self.coef_x0, t, x0) * x0_pred + g(self.coef_xt, t, x0) * xt
        frac = (v + 1) / 2
        model_logvar = frac * g(torch.log(self.betas), t, x0) + (1 - frac) * true_logvar
        kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).flatten(1).mean(1) / math.log(2.0)
        nll = discretized_gaussian_nll(x0, model_mean, 0.5 * model_logvar).flatten(1).mean(1) / math.log(2.0)
        return torch.where(t == 0, nll, kl)


class DDPMGenerator(Generator):
    name = "ddpm"
    version = 1
    can_reconstruct = True
    needs = "nothing on CPU (trains a small improved DDPM in-suite, cached); a GPU for the paper preset"
    paper = ('Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models", '
             'arXiv 2102.09672')
    paper_url = "https://arxiv.org/abs/2102.09672"
    description = "improved DDPM (Nichol & Dhariwal 2021): cosine schedule, learned variances, hybrid loss"
    options = {
        "conditional": Option("conditional", True, "Class-conditional (True) or unconditional (False: "
                              "samples are pseudo-labelled by the real-trained classifier, Basu et al.).", bool),
        "confidence_threshold": Option("confidence_threshold", 0.0, "Unconditional only: keep samples whose "
                                       "pseudo-label confidence (max softmax) is at least this; 0 keeps all.",
                                       float, check=lambda v: 0 <= v < 1, check_help="must be in [0, 1)"),
        "sampler_steps": Option("sampler_steps", None, "Respaced sampling steps, at most T = 1000; default 4 / "
                                "50 / 250 at smoke / fast / paper (Nichol & Dhariwal Sec. 4: 50-100 steps lose "
                                "little FID with learned variances; 250 is close to the full chain).", int,
                                check=lambda v: v is None or 0 < v <= T_TRAIN,
                                check_help=f"must be a whole number in 1..{T_TRAIN} (the respaced chain takes at "
                                           f"most one step per timestep of the T = {T_TRAIN} training chain)",
                                per_preset=by_preset(smoke=4, fast=50, paper=250)),
        "train_steps": Option.positive_int("train_steps", "Training steps; default: the preset's.",
                                           per_preset=lambda p: p.gen_train_steps),
        "train_seed": Option("train_seed", 0, "Seed of the in-suite training run.", int),
        "lr": Option("lr", 1e-3, "Adam learning rate (short warm-up).", float, check=lambda v: v > 0,
                     check_help="must be > 0"),
        "vlb_weight": Option("vlb_weight", HYBRID_LAMBDA, "lambda of the hybrid loss (Eq. 16: 0.001).", float,
                             check=lambda v: v >= 0, check_help="must be >= 0"),
        "train_precision": train_precision_option(),
        "eval_batch": eval_batch_option(),
        "precision": precision_option(),
        "compile": compile_option(),
    }

    @classmethod
    def unconditional_options(cls) -> dict[str, Any]:
        return {"conditional": False}

    def pseudo_label_threshold(self) -> float:
        return float(self.opts.get("confidence_threshold") or 0.0)

    # -- fitting ---------------------------------------------------------
    def fit(self, ctx: FitContext) -> dict[str, Any]:
        self.conditional = bool(self.opts["conditional"])
        self.device = ctx.device
        self.image_shape = ctx.image_shape
        self.steps = self.setting("sampler_steps", ctx.preset)
        recipe = {**unet_recipe(ctx, self.setting("train_steps", ctx.preset), self.opts["lr"], self.opts["train_seed"],
                                self.conditional, self.opts["train_precision"]), "vlb_weight": self.opts["vlb_weight"]}

        def build() -> nn.Module:
            return build_unet(ctx.image_shape, recipe["num_classes"], recipe["channels"], recipe["layers_per_block"],
                              2 * ctx.image_shape[0])

        unet, key = ctx.cached_weights("ddpm", recipe, self.version, build, lambda: self._train(ctx, recipe))
        self.unet = unet.to(self.device).eval()
        return {"weights": key, "dataset_digest": ctx.dataset_digest, "sampler_steps": self.steps}

    def _train(self, ctx: FitContext, cfg: dict[str, Any]) -> nn.Module:
        from synthbench.benchmark.trainer import random_crop_flip

        dev = ctx.device
        c = ctx.image_shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("ddpm-init", cfg["seed"]) & 0xFFFF_FFFF)
            unet = build_unet(ctx.image_shape, cfg["num_classes"], cfg["channels"], cfg["layers_per_block"], 2 * c)
        unet = unet.to(dev).train()
        ema = copy.deepcopy(unet).eval().requires_grad_(False)
        opt = torch.optim.Adam(unet.parameters(), lr=cfg["lr"])
        warmup = max(1, cfg["steps"] // 20)
        ema_decay = 1.0 - 1.0 / max(10.0, cfg["steps"] / 10)
        terms = DiffusionTerms(make_scheduler())
        abar = terms.abar.float().to(dev)
        gen = torch_generator(derive_seed("ddpm-train", cfg["seed"]))
        x_all = ctx.train.images
        y_all = ctx.train.labels if cfg["num_classes"] else None
        n = len(x_all)
        bs = min(cfg["batch_size"], n)
        run = ctx.resumable({"unet": unet, "ema": ema, "opt": opt, "gen": gen})
        progress = bar(range(run.start, cfg["steps"]), desc="train ddpm", unit="step")
        for step in progress:
            idx = torch.randint(n, (bs,), generator=gen)
            x0 = (x_all[idx].float() / 127.5 - 1.0).to(dev)
            if cfg["hflip"]:
                x0 = random_crop_flip(x0, 0, True, gen)
            t = torch.randint(T_TRAIN, (bs,), generator=gen).to(dev)
            noise = torch.randn(x0.shape, generator=gen).to(dev)
            a = abar[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            with training_arithmetic(dev, cfg.get("precision", "fp32")):
                out = unet(xt, t, class_labels=None if y_all is None else y_all[idx].to(dev)).sample.float()
            eps, v = out[:, :c], out[:, c:]
            mse = (eps - noise).pow(2).mean()
            # Eq. 16: L_vlb = sum_t L_t = T * E_t[L_t]; the stop-gradient on eps
            # lets this term train the variances only (Sec. 3.1).
            vlb = terms.vlb_terms(x0.double(), xt.double(), t, eps.detach().double(), v.double()).mean()
            loss = mse + cfg["vlb_weight"] * T_TRAIN * vlb.float()
            warmup_lr(opt, cfg["lr"], step, warmup)
            step_with_ema(opt, loss, unet, ema, ema_decay)
            if step % 50 == 0:
                progress.set_postfix(mse=f"{mse.item():.3f}", vlb=f"{vlb.item():.3f}")
            run.step_done(step)
        return ema.cpu()

    # -- generation ------------------------------------------------------
    @torch.no_grad()
    def _reverse(self, x: torch.Tensor, timesteps: list[int], labels: torch.Tensor, seeds: Sequence[int],
                 desc: str) -> torch.Tensor:
        """The respaced reverse chain along ``timesteps`` (descending), in fixed
        ``eval_batch`` chunks; sample i's noise comes from its own generator."""
        chunk = network_batch(self.opts["eval_batch"], self.device)
        unet = compiled(self.unet, self.opts["compile"])
        out = []
        for i in range(0, len(x), chunk):
            xb, yb = x[i:i + chunk].float(), labels[i:i + chunk]
            gens = [torch_generator(derive_seed("ddpm-reverse", s)) for s in seeds[i:i + chunk]]
            k = len(xb)
            if k < chunk:  # pad to the fixed network batch; padded rows are dropped
                xb = torch.cat([xb, xb.new_zeros((chunk - k, *xb.shape[1:]))])
                yb = torch.cat([yb, yb.new_zeros(chunk - k)])
                gens += [torch_generator(0) for _ in range(chunk - k)]
            sched = make_scheduler()
            sched.set_timesteps(timesteps=timesteps)
            xb = xb.to(self.device)
            cond = yb.to(self.device) if self.conditional else None
            for t in bar(sched.timesteps, desc=desc, unit="step"):
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.opts["precision"] == "bf16"):
                    model_out = run_compiled(unet, xb, t.to(self.device), class_labels=cond).sample.float()
                # one generator per row: diffusers draws each row's noise from its own
                xb = sched.step(model_out, t, xb, generator=gens).prev_sample
            out.append(xb.cpu()[:k])
        return torch.cat(out)

    def _labels(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(labels, dtype=torch.long)

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        labels = self._labels(labels)
        timesteps = make_scheduler(self.steps).timesteps.tolist()
        x = per_sample_normal(seeds, self.image_shape)
        return to_uint8(self._reverse(x, timesteps, labels, seeds, desc="sample ddpm"))

    def _recon_start(self, t_re: int, sigma: float | None) -> int:
        """The timestep of the 1000-step cosine schedule a reconstruction starts
        from: t_re / 100 * T, or, given a noise level ``sigma``, the timestep whose
        sigma = sqrt((1 - abar_t) / abar_t) is nearest to it in log sigma."""
        if sigma is None:
            return min(T_TRAIN - 1, round(t_re / T_RECON * T_TRAIN))
        abar = make_scheduler().alphas_cumprod.double()
        table = ((1 - abar) / abar).sqrt().log()
        return int((table - math.log(sigma)).abs().argmin())

    def recon_sigma(self, t_re: int, sigma: float | None = None) -> float | None:
        """sqrt((1 - abar) / abar) of the cosine schedule at the start timestep
        (0.52 / 1.02 / 1.99 at t_re 30 / 50 / 70; 2.0e4 at 100, t = 999)."""
        if (t_re == 0 and sigma is None) or sigma == 0:
            return 0.0
        abar = make_scheduler().alphas_cumprod[self._recon_start(t_re, sigma)].double()
        return float(((1 - abar) / abar).sqrt())

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int, seeds: Sequence[int], *,
                    sigma: float | None = None, churn: float | None = None) -> torch.Tensor:
        """Algorithm 1 from timestep t_re / 100 * T of the cosine schedule or, given
        a noise level ``sigma``, from the timestep whose level is nearest to it
        (``recon_sigma`` says which level that is). The reverse chain is ancestral,
        stochastic as Algorithm 1's line 8 is, so ``churn`` does not apply: it is
        accepted and ignored."""
        if not 0 <= int(t_re) <= T_RECON:
            raise UserError(f"t_re={t_re} is outside 0..{T_RECON} (reconstruction counts it in steps of "
                            f"T = {T_RECON}).")
        if sigma is not None and not (sigma >= 0 and math.isfinite(sigma)):
            raise UserError(f"sigma={sigma} is not a noise level (a finite number >= 0).")
        if (t_re == 0 and sigma is None) or sigma == 0:
            return images.clone()
        labels = self._labels(labels)
        t_start = self._recon_start(t_re, sigma)
        timesteps = [t for t in make_scheduler(self.steps).timesteps.tolist() if t < t_start]
        timesteps = [t_start] + timesteps
        abar = make_scheduler().alphas_cumprod[t_start]
        eps = per_sample_normal([derive_seed("ddpm-recon", s) for s in seeds], self.image_shape)
        x0 = images.float() / 127.5 - 1.0
        x = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        return to_uint8(self._reverse(x, timesteps, labels, seeds, desc=f"reconstruct t_re={t_re}"))
