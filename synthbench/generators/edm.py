"""``edm``: a class-conditional EDM (Karras et al. 2022, "Elucidating the Design
Space of Diffusion-Based Generative Models"), trained in-suite and cached.

The network, preconditioning, training loop, sampler and reconstruction live in
the diffusion core (``generators/diffusion.py``), shared with ``realfake``:

- Network: diffusers' ``UNet2DModel`` with a class embedding, wrapped in EDM's
  preconditioning (Karras et al. Table 1); trained with EDM's loss, Adam with a
  short warm-up and an EMA of the weights; the number of steps and the widths
  come from the preset. The weights are cached under a digest of everything that
  determines them.
- Sampling: the deterministic Heun sampler (Karras et al. Algorithm 1/2) on the
  rho = 7 noise schedule, sigma in [0.002, 80]; 18 steps = 35 network evaluations
  by default; ``churn`` > 0 adds Algorithm 2's stochasticity.
- ``reconstruct``: the real-sample reconstruction of Yamaguchi & Fukuda 2023
  (arXiv 2311.13090, Algorithm 1) on EDM's schedule discretised into T = 100
  steps (their Sec. 4: "conditional EDM (T = 100)"); t_re = 0 returns the input,
  t_re = T starts from pure noise. ``recon_sigma`` says the noise level it
  starts from (the grid's sigma at step t_re: 0.29 / 2.40 / 12.1 / 80 at 30 / 50
  / 70 / 100); ``reconstruct(..., sigma=S)`` starts at exactly S instead and
  follows the grid's levels below it; ``reconstruct(..., churn=C)`` overrides
  the ``churn`` option for the reverse steps.

Official checkpoints: ``--option network_pkl=PATH --option trust_pickle=true``
(and ``code_dir=PATH`` of an NVlabs/edm checkout, whose ``dnnlib`` and
``torch_utils`` the pickle imports) loads NVlabs' ``EDMPrecond`` network from
its ``'ema'`` entry instead of training one (e.g. ``edm-cifar10-32x32-cond-vp.pkl``
for ``cifar10``). Pickles run code when loaded, so without ``trust_pickle`` the
run stops with a refusal (``generators/pickles.py``). The file's SHA-256 is part
of the cell's spec, so a different pickle is a different record. With
``conditional=false`` (``longtail``'s unconditional control does this) a
class-conditional pickle samples from its marginal as NVlabs' ``generate.py``
does without ``--class``: each image's class is drawn uniformly from its seed
(a conditional EDM is trained without label dropout, so an all-zero label is
no "unconditional" input); reconstructing from a real image that way would
not be the marginal, so ``reconstruct`` is then unsupported.

Batch independence: the network runs on fixed-size chunks (``eval_batch``).
Speed: ``precision=bf16`` and ``compile=true`` (the diffusion core's
:func:`~synthbench.generators.diffusion.compiled`) change how the network
computes, and so the cell; neither changes the sampler. ``train_precision=bf16``
trains under bf16 autocast (:func:`~synthbench.generators.diffusion.training_arithmetic`):
other weights, so another cell and another weights file.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from synthbench.benchmark.cache import file_digest
from synthbench.benchmark.context import FitContext
from synthbench.benchmark.options import Option
from synthbench.benchmark.seeding import derive_seed, torch_generator
from synthbench.errors import Unsupported, UserError
from synthbench.generators.base import Generator
from synthbench.generators.pickles import pickle_spec_extras
from synthbench.generators.diffusion import (
    EDMDenoiser, compile_option, denoise_in_chunks, eval_batch_option, fit_edm_unet, network_batch, precision_option,
    reconstruct_images, recon_start_sigma, sample_images, train_precision_option, unet_recipe,
)


UNCONDITIONAL_PICKLE = "class-per-seed"
"""How a class-conditional pickle samples with ``conditional=false`` (module docstring)."""


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
    _marginal_classes = 0
    """Classes of a conditional pickle sampled with ``conditional=false`` (0: none)."""
    needs = "nothing on CPU (trains a small EDM in-suite, cached); a GPU for the paper preset"
    paper = ('Karras, Aittala, Aila & Laine 2022, '
             '"Elucidating the Design Space of Diffusion-Based Generative Models", arXiv 2206.00364')
    paper_url = "https://arxiv.org/abs/2206.00364"
    description = "EDM (Karras et al. 2022), Heun sampler, t_re reconstruction (Yamaguchi & Fukuda 2023, Alg. 1)"
    options = {
        "sampler_steps": Option.positive_int("sampler_steps", "Heun steps (N steps = 2N-1 network "
                                             "evaluations); default: the preset's (18 at fast/paper).",
                                             per_preset=lambda p: p.gen_sampler_steps),
        "churn": Option("churn", 0.0, "S_churn of Karras et al. Algorithm 2; 0 = deterministic.",
                        float, check=lambda v: v >= 0, check_help="must be >= 0"),
        "train_steps": Option.positive_int("train_steps", "Training steps; default: the preset's.",
                                           per_preset=lambda p: p.gen_train_steps),
        "train_seed": Option("train_seed", 0, "Seed of the in-suite training run.", int),
        "lr": Option("lr", 1e-3, "Adam learning rate of in-suite training.", float,
                     check=lambda v: v > 0, check_help="must be > 0"),
        "train_precision": train_precision_option(),
        "conditional": Option("conditional", True, "Class-conditional (True) or unconditional "
                              "(False: samples are pseudo-labelled by the reference classifier).", bool),
        "eval_batch": eval_batch_option(),
        "precision": precision_option(),
        "compile": compile_option(),
        "network_pkl": Option("network_pkl", "", "An official NVlabs EDM network pickle to sample from "
                              "instead of training (needs trust_pickle=true).", str),
        "trust_pickle": Option("trust_pickle", False, "Opt in to unpickling network_pkl (pickles run code).",
                               bool),
        "code_dir": Option("code_dir", "", "A checkout of NVlabs/edm for the pickle's dnnlib/torch_utils.", str),
    }

    @classmethod
    def spec_extras(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The pickle's digest and, with a pickle, how ``conditional=false`` samples it:
        a key of its own, so cells and samples made before a conditional pickle's
        unconditional samples drew a class per image are not reused."""
        extras = pickle_spec_extras(options)
        return {**extras, "unconditional_pickle": UNCONDITIONAL_PICKLE} if extras else extras

    @classmethod
    def unconditional_options(cls) -> dict[str, Any]:
        return {"conditional": False}

    # -- fitting ---------------------------------------------------------
    def fit(self, ctx: FitContext) -> dict[str, Any]:
        self.conditional = bool(self.opts["conditional"])
        self.device = ctx.device
        self.image_shape = ctx.image_shape
        self.steps = self.setting("sampler_steps", ctx.preset)
        self._marginal_classes = 0
        if self.opts["network_pkl"]:
            return self._load_official(ctx)
        recipe = unet_recipe(ctx, self.setting("train_steps", ctx.preset), self.opts["lr"], self.opts["train_seed"],
                             self.conditional, self.opts["train_precision"])
        unet, key = fit_edm_unet(ctx, recipe)
        self.net = EDMDenoiser(unet).to(self.device).eval()
        return {"weights": key, "dataset_digest": ctx.dataset_digest, "sampler_steps": self.steps}

    def _load_official(self, ctx: FitContext) -> dict[str, Any]:
        """NVlabs' EDMPrecond from an opted-in pickle (see the module docstring)."""
        from synthbench.generators.pickles import load_network_pickle

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
        self._marginal_classes = label_dim if not self.conditional else 0
        return {"network_pkl_sha256": file_digest(self.opts["network_pkl"]), "dataset_digest": ctx.dataset_digest,
                "sampler_steps": self.steps, "unconditional_pickle": UNCONDITIONAL_PICKLE}

    # -- generation ------------------------------------------------------
    def _denoiser(self, labels: torch.Tensor):
        cond = torch.as_tensor(labels, dtype=torch.long) if self.conditional or self._marginal_classes else None
        chunk = network_batch(self.opts["eval_batch"], self.device)
        return lambda x, sigma: denoise_in_chunks(self.net, x, sigma, cond, chunk, self.device, self.opts["precision"],
                                                   self.opts["compile"])

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        classes = self._marginal_classes
        if classes:  # a class-conditional pickle made unconditional: a class per image, from its seed
            labels = torch.tensor([int(torch.randint(classes, (1,), generator=torch_generator(
                derive_seed("edm-marginal-class", s)))) for s in seeds], dtype=torch.long)
        return sample_images(self._denoiser(labels), seeds, self.image_shape, self.steps, self.opts["churn"],
                             desc="sample edm")

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int, seeds: Sequence[int], *,
                    sigma: float | None = None, churn: float | None = None) -> torch.Tensor:
        """Algorithm 1 from step t_re of the Karras T = 100 grid, or from noise
        level ``sigma`` when given; ``churn`` (None: the ``churn`` option) makes
        the reverse steps stochastic (``diffusion.reconstruct_images``)."""
        if self._marginal_classes:
            raise Unsupported("edm with conditional=false on a class-conditional pickle samples from its marginal "
                              "(a random class per image); reconstructing a real image needs the class, so run "
                              "recon with conditional=true or an unconditional checkpoint.")
        churn = self.opts["churn"] if churn is None else churn
        return reconstruct_images(self._denoiser(labels), images, t_re, seeds, churn, sigma=sigma)

    def recon_sigma(self, t_re: int, sigma: float | None = None) -> float | None:
        return recon_start_sigma(t_re, sigma)
