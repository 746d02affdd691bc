"""``realfake``: the Real-Fake recipe (Yuan et al. 2024, "Real-Fake: Effective
Training Data Synthesis Through Distribution Matching", ICLR, arXiv 2310.10402; Sec. 3
and Appendix E), each component switchable so Table 2's ablation can be rerun.

The three components (all on by default):

- ``mmd``: fine-tuning with the MMD-augmented objective, Eq. 21 = Eq. 7 + the
  plain denoising loss, weight ``mmd_weight`` (gamma). The paper's text gives
  gamma = 0.05 (Appendix E), its released scripts 0.003 on a loss of another
  scale (``distribution_matching.py`` says how they differ); the default is the
  text's, and the value used is in every record (the generator options).
  Off: the same fine-tuning with gamma = 0, so the ablation isolates the term.
- ``visual_guidance`` (Sec. 3.2): the mean image embedding of a random handful
  of real images of the class is added to the conditioning. On Stable
  Diffusion the embedding is CLIP's and is appended to the text tokens; on the
  in-suite backbone it is the penultimate features of a classifier trained on
  the (fit) train split, the stand-in for CLIP that every dataset has, projected
  by a zero-initialised linear layer and added to the class embedding. Each
  image's handful is drawn from its own seed, so guidance varies per sample and
  the fine-tuning sees a fresh handful at every step.
- ``prior_init`` (Sec. 3.3, Table 6): sampling starts from a real train image
  of the requested class (picked by the sample's seed) noised to ``strength``
  (0.75) instead of from pure noise, as in img2img (Meng et al. 2021). On the
  in-suite backbone "strength" keeps its Stable Diffusion meaning, a noise
  level: the signal-to-noise ratio SD's img2img starts from at that strength
  (its scaled-linear schedule at t = strength x 1000; 0.75 -> sigma/sigma_data
  = 4.08, i.e. sigma = 2.04 here), then ``round(strength * N)`` Heun steps on a
  rho = 7 schedule down to sigma_min. (A fraction of EDM's own step grid would
  start at sigma = 19 for 0.75, where the real image is drowned and the
  "informative prior" is no prior at all: version 1 did that.)

Two backbones:

- Stable Diffusion (``sd_model`` = a local diffusers folder or a hub id; an
  ``image_encoder`` folder for CLIP image embeddings): LoRA fine-tuning through
  peft, UniPC 30 steps, guidance 2.0, the prompt "photo of [classname]" and
  Appendix E's negative prompt (``synthbench/generators/realfake_sd.py``).
- In-suite (no ``sd_model``, the default, so the headline command runs on any
  CPU): the ``edm`` network trained in-suite on the dataset (shared with, and
  cached like, the ``edm`` adapter) is fine-tuned for ``finetune_steps`` with
  the same objective, written in EDM's x0 form: the residual is (x0 - D(x_t;
  sigma)) weighted by EDM's lambda(sigma), so with gamma = 0 it is exactly EDM's
  own loss. Sampling is EDM's Heun sampler. This is the recipe at a scale that
  runs anywhere; it is not Stable Diffusion, and the output and the record (the
  spec's ``generator_extra.backbone``) say which backbone ran.

``reconstruct`` (Yamaguchi & Fukuda 2023, arXiv 2311.13090, Algorithm 1) runs on
the fine-tuned network (in-suite, through the diffusion core, exactly as ``edm``:
deterministic Heun unless given ``churn``, from a given noise level ``sigma`` if
asked) or through img2img strength t_re / 100 (Stable Diffusion, which takes
neither keyword). ``recon_sigma`` says the noise level it starts from: the Karras
grid's in-suite; on Stable Diffusion, its scheduler's sqrt((1 - abar) / abar) at
img2img's first timestep, in latent units.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn

from synthbench.benchmark.context import FitContext
from synthbench.benchmark.options import Option, by_preset
from synthbench.benchmark.progress import bar, say
from synthbench.benchmark.seeding import derive_seed, per_sample_normal, torch_generator
from synthbench.errors import Unsupported
from synthbench.generators.base import Generator
from synthbench.generators.diffusion import (
    RHO, SIGMA_DATA, SIGMA_MIN, EDMDenoiser, denoise_in_chunks, edm_loss_terms, fit_edm_unet, heun_sample,
    karras_sigmas, eval_batch_option, network_batch, precision_option, reconstruct_images, recon_start_sigma,
    step_with_ema, to_uint8, train_precision_option, training_arithmetic, unet_recipe, with_precision,
)
from synthbench.generators.distribution_matching import MMD_WEIGHT_PAPER, distribution_matching_loss

BASE_LR = 1e-3
"""Learning rate of the in-suite base EDM (``edm``'s default, so the two share weights)."""
FINETUNE_LR = 2e-4
"""In-suite fine-tuning learning rate: a fifth of the base training's 1e-3."""
GUIDANCE_FEATURE_SEED = 0
"""Seed of the classifier whose features stand in for CLIP's (the same model as
the seed-0 reference classifier when the fit split is the full train split)."""


def prior_init_sigmas(strength: float, n_steps: int) -> torch.Tensor:
    """The Heun schedule of the latent prior init (float64, ending in 0): from
    the noise level Stable Diffusion's img2img starts from at ``strength`` (same
    signal-to-noise ratio; SD v1's scaled-linear betas 0.00085..0.012 over 1000
    steps, the data's std sigma_data = 0.5 here) down to EDM's sigma_min, in
    ``round(strength * n_steps)`` steps on the rho = 7 schedule."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    t = min(999, max(0, round(strength * 1000) - 1))
    sigma_start = SIGMA_DATA * float(((1 - abar[t]) / abar[t]).sqrt())
    n = max(1, round(strength * n_steps))
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = SIGMA_MIN ** (1 / RHO), sigma_start ** (1 / RHO)
    sigmas = (hi + ramp * (lo - hi)) ** RHO
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


class GuidedClassEmbedding(nn.Module):
    """Class embedding + a projected visual-guidance vector (Sec. 3.2).

    The UNet asks its class embedding for ``class_labels``; here those are row
    indices into a table of (class, guidance vector) rows set for the batch at
    hand with :meth:`set_rows`, so each image carries its own guidance while the
    UNet's code stays untouched. ``proj`` starts at zero: the fine-tuning starts
    from the base model exactly."""

    def __init__(self, class_embedding: nn.Embedding, feature_dim: int):
        super().__init__()
        self.class_embedding = class_embedding
        self.proj = nn.Linear(feature_dim, class_embedding.embedding_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self._classes: torch.Tensor | None = None
        self._vectors: torch.Tensor | None = None

    def set_rows(self, classes: torch.Tensor, vectors: torch.Tensor) -> None:
        self._classes, self._vectors = classes, vectors

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if self._classes is None or self._vectors is None:
            raise RuntimeError("GuidedClassEmbedding.set_rows must be called before the forward pass")
        rows = rows.long().to(self._classes.device)
        return self.class_embedding(self._classes[rows]) + self.proj(self._vectors[rows])


class RealFakeGenerator(Generator):
    name = "realfake"
    version = 2
    can_reconstruct = True
    needs = ("nothing on CPU (the recipe on the in-suite EDM backbone, trained and fine-tuned here); "
             "Stable Diffusion weights (--option sd_model=DIR) and a GPU for the paper's backbone")
    paper = ('Yuan, Zhang, Sun, Torr & Zhao 2024, '
             '"Real-Fake: Effective Training Data Synthesis Through Distribution Matching", ICLR 2024, arXiv 2310.10402')
    paper_url = "https://arxiv.org/abs/2310.10402"
    description = ("Real-Fake (Yuan et al. 2024, arXiv 2310.10402): MMD-augmented fine-tuning, visual guidance, "
                   "latent prior init")
    options = {
        "mmd": Option("mmd", True, "Fine-tune with the MMD term of Eq. 21 (off: gamma = 0).", bool),
        "mmd_weight": Option("mmd_weight", MMD_WEIGHT_PAPER, "gamma of Eq. 21 (paper text 0.05; released "
                             "scripts 0.003).", float, check=lambda v: v >= 0, check_help="must be >= 0"),
        "visual_guidance": Option("visual_guidance", True, "Add the class-mean image embedding to the "
                                  "conditioning (Sec. 3.2).", bool),
        "prior_init": Option("prior_init", True, "Start sampling from a noised real image of the class "
                             "(Sec. 3.3).", bool),
        "strength": Option("strength", 0.75, "Noise strength of the latent prior init (Table 6: 0.75).", float,
                           check=lambda v: 0 < v <= 1, check_help="must be in (0, 1]"),
        "guidance_images": Option("guidance_images", 16, "Real images averaged into one guidance vector.",
                                  int, check=lambda v: v >= 1, check_help="must be >= 1"),
        "finetune_steps": Option("finetune_steps", None, "Fine-tuning steps; default: 10 / 400 / 20000 at "
                                 "smoke / fast / paper (in-suite), Table 7's budget on SD; 0: no fine-tuning "
                                 "(Table 2's rows without it; mmd and visual_guidance then do nothing).", int,
                                 check=lambda v: v is None or v >= 0, check_help="must be an integer >= 0",
                                 per_preset=by_preset(smoke=10, fast=400, paper=20_000)),
        "base_train_steps": Option.positive_int("base_train_steps", "Training steps of the in-suite base EDM "
                                                "(shared with the edm adapter's cache); default: the preset's.",
                                                per_preset=lambda p: p.gen_train_steps),
        "finetune_lr": Option("finetune_lr", None, "Learning rate of the fine-tuning; default 2e-4 in-suite "
                              "(full fine-tuning of a small network), Table 7's 1e-4 for SD LoRA.", float,
                              check=lambda v: v is None or v > 0, check_help="must be > 0"),
        "sampler_steps": Option.positive_int("sampler_steps", "Sampler steps; default: the preset's Heun steps "
                                             "(in-suite), 30 UniPC steps (SD).",
                                             per_preset=lambda p: p.gen_sampler_steps),
        "train_seed": Option("train_seed", 0, "Seed of the base training and the fine-tuning.", int),
        "train_precision": train_precision_option("The in-suite backbone's; Stable Diffusion's LoRA training "
                                                  "follows precision."),
        "eval_batch": eval_batch_option(),
        "precision": precision_option(),
        "sd_model": Option("sd_model", "", "Stable Diffusion: a local diffusers folder or a hub id; empty: "
                           "the in-suite backbone.", str),
        "image_encoder": Option("image_encoder", "", "CLIP vision model folder for SD's visual guidance.", str),
        "lora_rank": Option("lora_rank", 4, "LoRA rank on SD's attention projections: 4, the released "
                            "Real-Fake scripts' (Table 7 heads a Rank column but its row gives no rank).", int,
                            check=lambda v: v >= 1, check_help="must be >= 1"),
        "snr_gamma": Option("snr_gamma", None, "Min-SNR loss weighting on SD (Hang et al. 2023, arXiv "
                            "2303.09556), off by default: Table 7 lists an SNR-gamma of 0.75 in a row whose "
                            "columns do not line up; the released scripts weight by min-SNR.", float,
                            check=lambda v: v is None or v > 0, check_help="must be > 0"),
        "guidance_scale": Option("guidance_scale", 2.0, "Classifier-free guidance on SD (Table 6: 2.0); <= 1 "
                                 "turns guidance off.", float, check=lambda v: v >= 0, check_help="must be >= 0"),
    }

    @classmethod
    def spec_extras(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Which backbone runs is part of what a record means; on Stable Diffusion
        also that backbone's own version (``realfake_sd.VERSION``), so a change
        there is a new cell without touching the in-suite backbone's keys."""
        if not options.get("sd_model"):
            return {"backbone": "in-suite-edm"}
        from synthbench.generators.realfake_sd import VERSION as SD_VERSION

        return {"backbone": "stable-diffusion", "sd_backbone_version": SD_VERSION}

    @classmethod
    def builds_on(cls, options: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The in-suite backbone is ``edm``'s network of the same training recipe
        (one weights file); Stable Diffusion is loaded, not fitted here."""
        if options.get("sd_model"):
            return None
        base: dict[str, Any] = {}
        if options.get("base_train_steps") is not None:
            base["train_steps"] = options["base_train_steps"]
        if options.get("train_seed", 0) != 0:
            base["train_seed"] = options["train_seed"]
        if "train_precision" in options:  # always: unset, edm's would follow the run's, not realfake's
            base["train_precision"] = options["train_precision"]
        return "edm", base

    # -- fitting ---------------------------------------------------------
    def fit(self, ctx: FitContext) -> dict[str, Any]:
        self.device = ctx.device
        self.image_shape = ctx.image_shape
        if self.opts["sd_model"]:
            from synthbench.generators.realfake_sd import RealFakeSD

            say(f"realfake: backbone Stable Diffusion ({self.opts['sd_model']})")
            self._sd = RealFakeSD(self.opts["sd_model"], self.opts["image_encoder"] or None, self.opts)
            self._sd.fit(ctx)
            return {"backbone": "stable-diffusion", **self._sd.identity()}
        say("realfake: no Stable Diffusion weights configured (--option sd_model=DIR); the recipe runs on the "
            "in-suite EDM backbone")
        self._sd = None
        self.steps = self.setting("sampler_steps", ctx.preset)
        recipe = unet_recipe(ctx, self.setting("base_train_steps", ctx.preset), BASE_LR, self.opts["train_seed"],
                             conditional=True, precision=self.opts["train_precision"])
        unet, base_key = fit_edm_unet(ctx, recipe, phase="fit_base_s")  # see builds_on
        self._train = ctx.train
        self._by_class = [(ctx.train.labels == c).nonzero().flatten() for c in range(len(ctx.class_names))]
        self._features = None
        steps = self.setting("finetune_steps", ctx.preset)
        identity = {"backbone": "in-suite-edm", "weights": base_key, "dataset_digest": ctx.dataset_digest,
                    "sampler_steps": self.steps}
        if steps == 0:
            # Table 2's "no fine-tuning" rows: the base network as it is.
            self.net = EDMDenoiser(unet).to(self.device).eval()
            return {**identity, "finetune_steps": 0}
        guidance = None
        if self.opts["visual_guidance"]:
            from synthbench.benchmark.analysis import penultimate_features
            from synthbench.benchmark.cache import state_digest

            extractor = ctx.classifier(GUIDANCE_FEATURE_SEED, desc="realfake guidance features")
            self._features = penultimate_features(extractor, ctx.train.images, ctx.device)
            # The fine-tuned weights were trained on this extractor's features:
            # a different extractor (retrained elsewhere) must not reuse them.
            guidance = [self.opts["guidance_images"], state_digest(extractor)[:16]]
            unet.class_embedding = GuidedClassEmbedding(unet.class_embedding, self._features.shape[1])
        cfg = with_precision({
            "base": base_key, "steps": steps, "lr": self.opts["finetune_lr"] or FINETUNE_LR,
            "gamma": self.opts["mmd_weight"] if self.opts["mmd"] else 0.0, "guidance": guidance,
            "batch_size": ctx.preset.gen_batch_size, "seed": self.opts["train_seed"], "hflip": ctx.hflip,
        }, self.opts["train_precision"])
        unet, key = ctx.cached_weights("realfake", cfg, self.version, lambda: unet,
                                       lambda: self._finetune(ctx, unet, cfg), state_key="unet",
                                       phase="fit_finetune_s")
        self.net = EDMDenoiser(unet).to(self.device).eval()
        return {**identity, "weights": key}

    def _guidance_vectors(self, labels: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """One guidance vector per label: the mean feature of ``guidance_images``
        real images of that class drawn with replacement by that image's own
        generator (so a vector never depends on the rest of the batch)."""
        k = self.opts["guidance_images"]
        out = []
        for label, g in zip(labels.tolist(), gens):
            pool = self._by_class[label]
            pick = pool[torch.randint(len(pool), (k,), generator=g)]
            out.append(self._features[pick].mean(0))
        return torch.stack(out)

    def _finetune(self, ctx: FitContext, unet: nn.Module, cfg: dict[str, Any]) -> nn.Module:
        """Eq. 21 fine-tuning in EDM's x0 form (see the module docstring), with an
        EMA of the weights as in the base training."""
        dev = ctx.device
        net = EDMDenoiser(unet).to(dev).train()
        ema = copy.deepcopy(unet).to(dev).eval().requires_grad_(False)
        opt = torch.optim.Adam(unet.parameters(), lr=cfg["lr"])
        ema_decay = 1.0 - 1.0 / max(10.0, cfg["steps"] / 10)
        gen = torch_generator(derive_seed("realfake-finetune", cfg["seed"]))
        x_all, y_all = ctx.train.images, ctx.train.labels
        n = len(x_all)
        bs = min(cfg["batch_size"], n)
        guided = isinstance(unet.class_embedding, GuidedClassEmbedding)
        run = ctx.resumable({"unet": unet, "ema": ema, "opt": opt, "gen": gen})
        progress = bar(range(run.start, cfg["steps"]), desc="fine-tune realfake", unit="step")
        for step in progress:
            idx = torch.randint(n, (bs,), generator=gen)
            x = (x_all[idx].float() / 127.5 - 1.0).to(dev)
            y = y_all[idx]
            if cfg["hflip"]:
                from synthbench.benchmark.trainer import random_crop_flip

                x = random_crop_flip(x, 0, True, gen)
            if guided:
                vectors = self._guidance_vectors(y, [gen] * bs)
                unet.class_embedding.set_rows(y.to(dev), vectors.to(dev))
                ema.class_embedding.set_rows(y.to(dev), vectors.to(dev))
                cond = torch.arange(bs, device=dev)
            else:
                cond = y.to(dev)
            with training_arithmetic(dev, cfg.get("precision", "fp32")):
                denoised, weight = edm_loss_terms(net, x, cond, gen, dev)
            loss, simple, dm = distribution_matching_loss(x, denoised.float(), cfg["gamma"], weight=weight)
            step_with_ema(opt, loss, unet, ema, ema_decay)
            if step % 50 == 0:
                progress.set_postfix(simple=f"{simple.item():.3f}", dm=f"{dm.item():.4f}")
            run.step_done(step)
        return ema.cpu()

    # -- generation ------------------------------------------------------
    def _denoiser(self, labels: torch.Tensor, seeds: Sequence[int]):
        """D(x; sigma) conditioned on class labels, or on per-image (class,
        guidance) rows when visual guidance is on."""
        cond = labels
        emb = self.net.unet.class_embedding
        if isinstance(emb, GuidedClassEmbedding):
            gens = [torch_generator(derive_seed("realfake-guidance", s)) for s in seeds]
            emb.set_rows(labels.to(self.device), self._guidance_vectors(labels, gens).to(self.device))
            cond = torch.arange(len(labels))
        chunk = network_batch(self.opts["eval_batch"], self.device)
        return lambda x, sigma: denoise_in_chunks(self.net, x, sigma, cond, chunk, self.device, self.opts["precision"])

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if self._sd is not None:
            return self._sd.sample(labels, seeds)
        denoise = self._denoiser(labels, seeds)
        sigmas = karras_sigmas(self.steps)
        noise = per_sample_normal(seeds, self.image_shape).double()
        if self.opts["prior_init"]:
            # img2img (Meng et al. 2021) from a real image of the class, at SD's
            # noise level for this strength (see the module docstring).
            sigmas = prior_init_sigmas(self.opts["strength"], len(sigmas) - 1)
            picks = []
            for label, s in zip(labels.tolist(), seeds):
                pool = self._by_class[label]
                picks.append(pool[torch.randint(len(pool), (1,), generator=torch_generator(
                    derive_seed("realfake-prior", s))).item()])
            x0 = self._train.images[torch.tensor(picks, dtype=torch.long)].double() / 127.5 - 1.0
            x = x0 + noise * sigmas[0]
        else:
            x = noise * sigmas[0]
        return to_uint8(heun_sample(denoise, x, sigmas, desc="sample realfake"))

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int, seeds: Sequence[int], *,
                    sigma: float | None = None, churn: float | None = None) -> torch.Tensor:
        """In-suite: Algorithm 1 on the fine-tuned network as ``edm`` runs it
        (from noise level ``sigma`` when given; ``churn``, default 0, makes the
        reverse steps stochastic). Stable Diffusion: img2img at strength t_re /
        100, which takes neither keyword."""
        labels = torch.as_tensor(labels, dtype=torch.long)
        if self._sd is not None:
            if sigma is not None or churn:
                raise Unsupported("realfake on Stable Diffusion reconstructs by img2img at strength t_re / 100: it "
                                  "cannot start from a given noise level (recon's t_re_scale=sigma) or add churn; "
                                  "use recon's defaults (t_re_scale=steps, churn=0).")
            return self._sd.reconstruct(images, labels, t_re, seeds)
        return reconstruct_images(self._denoiser(labels, seeds), images, t_re, seeds, churn or 0.0, sigma=sigma)

    def recon_sigma(self, t_re: int, sigma: float | None = None) -> float | None:
        """In-suite: the Karras T = 100 grid's sigma at step t_re (or ``sigma``).
        Stable Diffusion: sqrt((1 - abar) / abar) of its scheduler at img2img's first
        timestep for strength t_re / 100, in latent units (SD's scaled latents
        have about unit variance, [-1, 1] pixels about 0.5^2; the SNR-equivalent
        pixel sigma is about half); None for a given ``sigma``."""
        if getattr(self, "_sd", None) is not None:
            return None if sigma is not None else self._sd.recon_sigma(t_re)
        if self.opts["sd_model"]:  # not fitted yet: the pipeline's scheduler is unknown
            return None
        return recon_start_sigma(t_re, sigma)
