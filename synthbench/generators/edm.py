"""``edm``: a class-conditional EDM (Karras et al. 2022, "Elucidating the Design
Space of Diffusion-Based Generative Models"), trained in-suite and cached.

- Network: diffusers' ``UNet2DModel`` with a class embedding, wrapped in EDM's
  preconditioning (Karras et al. Table 1: c_skip, c_out, c_in, c_noise =
  ln(sigma)/4, sigma_data = 0.5), taken from diffusers' ``EDMEulerScheduler``.
- Training: ln(sigma) ~ N(P_mean = -1.2, P_std = 1.2), loss weight
  (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2, Adam with a short warm-up,
  an EMA of the weights; the number of steps and the widths come from the preset.
  The trained weights are cached under a hash of everything that determines them.
- Sampling: the deterministic Heun sampler (Karras et al. Algorithm 1/2) on the
  rho = 7 noise schedule, sigma in [0.002, 80]; 18 steps = 35 network evaluations
  by default; ``churn`` > 0 adds Algorithm 2's stochasticity.
- ``reconstruct``: seed 000's Algorithm 1 (real sample reconstruction) on EDM's
  schedule, discretised into T = 100 steps as in seed 000 Sec. 4 ("conditional EDM
  (T = 100)"): the real image is diffused to step t_re in one Gaussian step
  (x_t = x + sigma_t * eps, the variance-exploding form of lines 3-5, whose
  iterated corruptions compose to one Gaussian), then restored by Heun steps
  along sigma_t_re, ..., sigma_1, 0 (lines 7-9). t_re = 0 returns the input;
  t_re = T starts from pure noise, i.e. plain sampling on the T-step grid.

Official checkpoints: ``--option network_pkl=PATH --option trust_pickle=true``
(and ``code_dir=PATH`` of an NVlabs/edm checkout, whose ``dnnlib`` and
``torch_utils`` the pickle imports) loads NVlabs' ``EDMPrecond`` network from
its ``'ema'`` entry instead of training one (e.g. ``edm-cifar10-32x32-cond-vp.pkl``
for ``cifar10``). Pickles run code when loaded, so without ``trust_pickle`` the
run stops with a refusal (``generators/pickles.py``). The file's SHA-256 is part
of the cell's spec, so a different pickle is a different record.

Batch independence: the network always runs on fixed-size chunks
(``eval_batch``, the last one padded), so image i is computed the same way
whatever batch the caller asked for, and depends on its own seed alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from typing import Any, Sequence

import torch
from torch import nn

from synthbench.benchmark.atomic import atomic_torch_save
from synthbench.benchmark.options import Option
from synthbench.benchmark.progress import bar
from synthbench.benchmark.seeding import derive_seed, per_sample_normal, torch_generator
from synthbench.errors import UserError, corrupt_cache
from synthbench.generators.base import FitContext, Generator
from synthbench.generators.training import step_with_ema, warmup_lr

SIGMA_MIN, SIGMA_MAX, RHO, SIGMA_DATA = 0.002, 80.0, 7.0, 0.5
P_MEAN, P_STD = -1.2, 1.2
T_RECON = 100


def _positive_or_none(v: Any) -> bool:
    return v is None or v > 0


def _edm_scheduler():
    from diffusers import EDMEulerScheduler

    return EDMEulerScheduler(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_data=SIGMA_DATA, rho=RHO,
                             sigma_schedule="karras", prediction_type="epsilon")


def karras_sigmas(num_steps: int) -> torch.Tensor:
    """sigma_0 > ... > sigma_{N-1} on the rho = 7 schedule, then a final 0."""
    sched = _edm_scheduler()
    sched.set_timesteps(num_steps)
    return sched.sigmas.to(torch.float64)


def build_unet(image_shape: tuple[int, int, int], num_classes: int | None, channels: Sequence[int],
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


class EDMDenoiser(nn.Module):
    """D(x; sigma, class) = c_skip x + c_out F(c_in x, c_noise, class) (Karras et al. Eq. 7)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.sched = _edm_scheduler()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        sigma = sigma.to(x.dtype).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1)
        x_in = self.sched.precondition_inputs(x, sigma)
        c_noise = self.sched.precondition_noise(sigma.flatten())
        f = self.unet(x_in, c_noise, class_labels=labels).sample
        return self.sched.precondition_outputs(x, f, sigma)


class _OfficialDenoiser(nn.Module):
    """NVlabs' EDMPrecond behind this adapter's (x, sigma, labels) call: it is
    already D(x; sigma) (Karras et al. Eq. 7) and takes one-hot class labels."""

    def __init__(self, net: nn.Module, label_dim: int):
        super().__init__()
        self.net = net
        self.label_dim = label_dim

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        onehot = None
        if self.label_dim:
            onehot = torch.zeros(x.shape[0], self.label_dim, device=x.device)
            if labels is not None:
                onehot[torch.arange(x.shape[0], device=x.device), labels.long()] = 1
        return self.net(x, sigma.reshape(-1).to(x.dtype), onehot).to(x.dtype)


class EDMGenerator(Generator):
    """Class-conditional EDM trained in-suite (see the module docstring)."""

    name = "edm"
    version = 1
    can_reconstruct = True
    needs = "nothing on CPU (trains a small EDM in-suite, cached); a GPU for the paper preset"
    description = "EDM (Karras et al. 2022), Heun sampler, t_re reconstruction (seed 000 Alg. 1)"
    options = {
        "sampler_steps": Option("sampler_steps", None, "Heun steps (N steps = 2N-1 network "
                                "evaluations); default: the preset's (18 at fast/paper).",
                                int, check=_positive_or_none, check_help="must be a positive integer"),
        "churn": Option("churn", 0.0, "S_churn of Karras et al. Algorithm 2; 0 = deterministic.",
                        float, check=lambda v: v >= 0, check_help="must be >= 0"),
        "train_steps": Option("train_steps", None, "Training steps; default: the preset's.",
                              int, check=_positive_or_none, check_help="must be a positive integer"),
        "train_seed": Option("train_seed", 0, "Seed of the in-suite training run.", int),
        "lr": Option("lr", 1e-3, "Adam learning rate of in-suite training.", float,
                     check=lambda v: v > 0, check_help="must be > 0"),
        "conditional": Option("conditional", True, "Class-conditional (True) or unconditional "
                              "(False: samples are pseudo-labelled by the reference classifier, seed 003).",
                              bool),
        "eval_batch": Option("eval_batch", 256, "Fixed network batch of the sampler (does not "
                             "change the images).", int, check=lambda v: v > 0,
                             check_help="must be a positive integer"),
        "network_pkl": Option("network_pkl", "", "An official NVlabs EDM network pickle to sample from "
                              "instead of training (needs trust_pickle=true).", str),
        "trust_pickle": Option("trust_pickle", False, "Opt in to unpickling network_pkl (pickles run code).",
                               bool),
        "code_dir": Option("code_dir", "", "A checkout of NVlabs/edm for the pickle's dnnlib/torch_utils.", str),
    }

    @classmethod
    def spec_extras(cls, options: dict[str, Any]) -> dict[str, Any]:
        """An official checkpoint's content digest belongs in the cell's key."""
        if not options.get("network_pkl"):
            return {}
        from synthbench.generators.pickles import file_sha256

        path = options["network_pkl"]
        try:
            return {"network_pkl_sha256": file_sha256(path)}
        except OSError:
            return {"network_pkl_sha256": f"missing: {path}"}  # fit() then says what to do

    # -- fitting ---------------------------------------------------------
    def _train_config(self, ctx: FitContext) -> dict[str, Any]:
        p = ctx.preset
        return {
            "steps": self.opts["train_steps"] or p.gen_train_steps,
            "batch_size": p.gen_batch_size,
            "channels": list(p.gen_channels if ctx.image_shape[1] * ctx.image_shape[2] <= 256
                             else p.gen_channels_large),
            "layers_per_block": p.gen_layers_per_block,
            "lr": self.opts["lr"],
            "seed": self.opts["train_seed"],
            "image_shape": list(ctx.image_shape),
            "num_classes": len(ctx.class_names) if self.opts["conditional"] else None,
            "hflip": ctx.hflip,
        }

    def fit(self, ctx: FitContext) -> None:
        self.conditional = bool(self.opts["conditional"])
        self.device = ctx.device
        self.preset = ctx.preset
        self.image_shape = ctx.image_shape
        if self.opts["network_pkl"]:
            self._load_official(ctx)
            return
        cfg = self._train_config(ctx)
        identity = {"dataset_digest": ctx.dataset_digest, "train": cfg, "version": self.version,
                    "compute": ctx.compute_tag}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
        path = ctx.cache_dir / "generators" / f"edm-{key}.pt"
        if path.exists():
            unet = build_unet(ctx.image_shape, cfg["num_classes"], cfg["channels"], cfg["layers_per_block"])
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                unet.load_state_dict(state["ema"])
            except Exception as exc:
                raise corrupt_cache("EDM weights file", path, exc) from None
        else:
            start = time.perf_counter()
            unet = self._train(ctx, cfg)
            ctx.cost["fit_train_s"] = time.perf_counter() - start
            atomic_torch_save(path, {"ema": unet.state_dict(), "identity": identity})
        self.net = EDMDenoiser(unet).to(self.device).eval()
        self._fit_identity = {"weights": key, "dataset_digest": ctx.dataset_digest,
                              "sampler_steps": self._steps()}

    def _load_official(self, ctx: FitContext) -> None:
        """NVlabs' EDMPrecond from an opted-in pickle (see the module docstring)."""
        from synthbench.generators.pickles import file_sha256, load_network_pickle

        net = load_network_pickle(self.opts["network_pkl"], self.opts["trust_pickle"],
                                  self.opts["code_dir"] or None, key="ema", owner="edm")
        shape = (getattr(net, "img_channels", None), getattr(net, "img_resolution", None),
                 getattr(net, "img_resolution", None))
        if shape != tuple(ctx.image_shape):
            raise UserError(f"The EDM pickle {self.opts['network_pkl']} makes {shape[0]}x{shape[1]}x{shape[2]} "
                            f"images but the dataset's are {ctx.image_shape[0]}x{ctx.image_shape[1]}x"
                            f"{ctx.image_shape[2]}: use the checkpoint trained on this dataset (e.g. "
                            f"edm-cifar10-32x32-cond-vp.pkl for cifar10).")
        label_dim = int(getattr(net, "label_dim", 0) or 0)
        if self.conditional and label_dim != len(ctx.class_names):
            raise UserError(f"The EDM pickle {self.opts['network_pkl']} is conditioned on {label_dim} classes, the "
                            f"dataset has {len(ctx.class_names)}; use a matching class-conditional checkpoint "
                            f"or --option conditional=false with an unconditional one.")
        self.net = _OfficialDenoiser(net.to(self.device).eval(), label_dim)
        self._fit_identity = {"network_pkl_sha256": file_sha256(self.opts["network_pkl"]),
                              "dataset_digest": ctx.dataset_digest, "sampler_steps": self._steps()}

    def _train(self, ctx: FitContext, cfg: dict[str, Any]) -> nn.Module:
        from synthbench.benchmark.trainer import random_crop_flip

        dev = ctx.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("edm-init", cfg["seed"]) & 0xFFFF_FFFF)
            unet = build_unet(ctx.image_shape, cfg["num_classes"], cfg["channels"], cfg["layers_per_block"])
        net = EDMDenoiser(unet).to(dev).train()
        ema = copy.deepcopy(unet).to(dev).eval().requires_grad_(False)
        opt = torch.optim.Adam(unet.parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
        warmup = max(1, cfg["steps"] // 20)
        ema_decay = 1.0 - 1.0 / max(10.0, cfg["steps"] / 10)
        gen = torch_generator(derive_seed("edm-train", cfg["seed"]))
        x_all = ctx.train.images.to(dev)
        y_all = ctx.train.labels.to(dev) if self.conditional else None
        n = x_all.shape[0]
        bs = min(cfg["batch_size"], n)
        progress = bar(range(cfg["steps"]), desc="train edm", unit="step")
        for step in progress:
            idx = torch.randint(n, (bs,), generator=gen).to(dev)
            x = x_all[idx].float() / 127.5 - 1.0
            if cfg["hflip"]:
                x = random_crop_flip(x, 0, True, gen)
            sigma = (P_MEAN + P_STD * torch.randn(bs, generator=gen)).exp().to(dev)
            noise = torch.randn(x.shape, generator=gen).to(dev) * sigma.view(-1, 1, 1, 1)
            denoised = net(x + noise, sigma, y_all[idx] if y_all is not None else None)
            weight = (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2
            loss = (weight.view(-1, 1, 1, 1) * (denoised - x) ** 2).mean()
            warmup_lr(opt, cfg["lr"], step, warmup)
            step_with_ema(opt, loss, unet, ema, ema_decay)
            if step % 50 == 0:
                progress.set_postfix(loss=f"{loss.item():.3f}")
        return ema.cpu()

    # -- generation ------------------------------------------------------
    def _steps(self) -> int:
        return self.opts["sampler_steps"] or self.preset.gen_sampler_steps

    @torch.no_grad()
    def _denoise(self, x: torch.Tensor, sigma: float | torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """D(x; sigma) on fixed ``eval_batch`` chunks (padded) for batch independence."""
        chunk = self.opts["eval_batch"]
        sig = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
        sig = sig.expand(x.shape[0]) if sig.numel() == 1 else sig
        outs = []
        for i in range(0, x.shape[0], chunk):
            xb, sb, yb = x[i:i + chunk], sig[i:i + chunk], labels[i:i + chunk]
            k = xb.shape[0]
            if k < chunk:
                xb = torch.cat([xb, xb.new_zeros((chunk - k, *xb.shape[1:]))])
                sb = torch.cat([sb, sb.new_ones(chunk - k)])
                yb = torch.cat([yb, yb.new_zeros(chunk - k)])
            yb = yb.to(self.device) if self.conditional else None
            outs.append(self.net(xb.to(self.device), sb.to(self.device), yb).float().cpu()[:k])
        return torch.cat(outs)

    def _heun(self, x: torch.Tensor, sigmas: torch.Tensor, labels: torch.Tensor,
              seeds: Sequence[int], desc: str) -> torch.Tensor:
        """Karras et al. Algorithm 2 (Heun, 2nd order; deterministic when churn = 0),
        along ``sigmas`` (descending, ending in 0). x is float64 throughout."""
        n_steps = len(sigmas) - 1
        churn = self.opts["churn"]
        churn_gens = [torch_generator(derive_seed("edm-churn", s)) for s in seeds] if churn > 0 else None
        for i in bar(range(n_steps), desc=desc, unit="step"):
            t_cur, t_next = float(sigmas[i]), float(sigmas[i + 1])
            gamma = min(churn / n_steps, math.sqrt(2) - 1) if churn > 0 else 0.0
            t_hat = t_cur + gamma * t_cur
            if gamma > 0:
                eps = torch.stack([torch.randn(x.shape[1:], generator=g, dtype=torch.float64) for g in churn_gens])
                x = x + math.sqrt(t_hat ** 2 - t_cur ** 2) * eps
            d = (x - self._denoise(x.float(), t_hat, labels).double()) / t_hat
            x_next = x + (t_next - t_hat) * d
            if t_next > 0:
                d2 = (x_next - self._denoise(x_next.float(), t_next, labels).double()) / t_next
                x_next = x + (t_next - t_hat) * (0.5 * d + 0.5 * d2)
            x = x_next
        return x

    @staticmethod
    def _to_uint8(x: torch.Tensor) -> torch.Tensor:
        return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        labels = torch.as_tensor(labels, dtype=torch.long)
        sigmas = karras_sigmas(self._steps())
        x = per_sample_normal(seeds, self.image_shape).double() * sigmas[0]
        return self._to_uint8(self._heun(x, sigmas, labels, seeds, desc="sample edm"))

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int,
                    seeds: Sequence[int]) -> torch.Tensor:
        if not 0 <= int(t_re) <= T_RECON:
            raise UserError(f"t_re={t_re} is outside 0..{T_RECON} (seed 000 counts it in steps of T = {T_RECON}).")
        if t_re == 0:
            return images.clone()
        labels = torch.as_tensor(labels, dtype=torch.long)
        grid = karras_sigmas(T_RECON)  # grid[k] = sigma at step T - k; grid[T] = 0
        sigmas = grid[T_RECON - t_re:]
        eps = per_sample_normal([derive_seed("edm-recon", s) for s in seeds], self.image_shape).double()
        x0 = images.double() / 127.5 - 1.0
        x = eps * sigmas[0] if t_re == T_RECON else x0 + eps * sigmas[0]
        return self._to_uint8(self._heun(x, sigmas, labels, seeds, desc=f"reconstruct t_re={t_re}"))
