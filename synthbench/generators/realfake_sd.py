"""The Stable Diffusion backbone of ``realfake``: the Real-Fake recipe (Yuan et
al. 2024, ICLR, arXiv 2310.10402; Sec. 3, Appendix E, Tables 6 and 7) on a diffusers
Stable Diffusion folder, fine-tuned with peft LoRA. ``realfake.py`` holds the
adapter (options, the in-suite backbone) and hands over to :class:`RealFakeSD`
when SD weights are configured; the pipeline helpers are shared with the
vanilla ``sd`` adapter (``sd.py``).

- Fine-tuning (Sec. 3.1, Appendix E, Table 7): LoRA of rank ``lora_rank`` (4, the
  released scripts'; Table 7 gives none) on the
  UNet's attention projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` (self-
  and cross-attention), AdamW at ``lr`` (Table 7: 1e-4), on the fit split's
  images resized to the pipeline's resolution (greyscale repeated to RGB),
  encoded by the frozen VAE. The loss is Eq. 21 on the noise prediction
  (``distribution_matching.py``): L_simple + gamma * L_DM, gamma = ``mmd_weight``
  with ``mmd`` on and 0 with it off, so the ablation isolates the term,
  optionally min-SNR weighted (``snr_gamma``, off by default). The
  target is the noise (or the velocity for a v-prediction model).
- Visual guidance (Sec. 3.2): "the mean of image embeddings for randomly sampled
  images of a class", CLIP's (``CLIPVisionModelWithProjection`` from
  ``image_encoder``). Each image gets its own handful of ``guidance_images`` real
  images of its class, drawn by its seed (at sampling) or by the training stream
  (a fresh handful at every step), as on the in-suite backbone. The mean
  embedding goes through a trainable linear layer (zero-initialised, trained
  with the LoRA) to the cross-attention width and is appended as one extra
  token after the prompt's 77 text tokens: the "[Intra-class Visual Guidance]"
  part of "photo of [classname], [Intra-class Visual Guidance]" (no BLIP-2
  captions, as Appendix E does for the non-ImageNet datasets). The negative
  (unconditional) branch of classifier-free guidance gets a copy of its own last
  padding token instead, so it stays a text-only condition of the same length.
  Visual guidance without an ``image_encoder`` is a :class:`UserError` naming
  both ways out (give an encoder, or turn ``visual_guidance`` off): a recipe
  component that silently does not run would make the ablation lie. With
  ``finetune_steps=0`` (Table 2's rows without fine-tuning, none of which has
  visual guidance) there is no guidance token, as on the in-suite backbone: the
  untrained zero projection would still append a zero token, whose zero key
  takes a share of every cross-attention's weights (version 1 did that, so its
  "no fine-tuning" samples were not vanilla SD's).
- Sampling (Table 6): UniPC, ``sampler_steps`` (30), classifier-free guidance
  ``guidance`` (2.0) with Appendix E's negative prompt "distorted, unrealistic,
  blurry, out of frame".
- Latent prior initialisation (Sec. 3.3, Table 6): with ``prior_init``, img2img
  (Meng et al. 2021) from a real train image of the requested class, picked by
  the image's seed, at ``strength`` (0.75); otherwise text-to-image from noise.
- ``reconstruct``: img2img at strength t_re / 100 (as ``sd``).

The LoRA weights and the projection are cached as safetensors under
``ctx.cache_dir/generators`` keyed by a hash of everything that determines them
(weights and encoder fingerprints, dataset digest, training settings); the CLIP
embeddings of the fit split likewise. Nothing is unpickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from synthbench.benchmark import charges
from synthbench.benchmark.cache import SAFETENSORS, cache_key, snapshot_of
from synthbench.benchmark.context import FitContext
from synthbench.benchmark.progress import bar
from synthbench.benchmark.seeding import derive_seed, torch_generator
from synthbench.benchmark.snapshots import Resumable
from synthbench.errors import UserError
from synthbench.generators.distribution_matching import MMD_WEIGHT_PAPER, distribution_matching_loss
from synthbench.generators.sd import (
    APPENDIX_E_NEGATIVE_PROMPT, SDRunner, autocast, image_generators, load_pipeline, native_size, quiet_libraries,
    split_templates, to_dataset_images, to_pipeline_images, valid_templates, weights_fingerprint,
)

VERSION = 2
"""Bump when the fine-tuning or the sampling changes for the same settings (part
of ``realfake``'s ``spec_extras`` on this backbone). 2: no guidance token
without fine-tuning."""
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TABLE7_EPOCHS = 300
DEFAULT_FINETUNE_STEPS = {"smoke": 2, "fast": 200}
"""Fine-tuning steps when none are given: a token budget for the small presets;
at ``paper``, Table 7's 300 epochs of the fit split at ``batch_size``."""
CLIP_BATCH = 64


@dataclass(frozen=True)
class RealFakeSDConfig:
    """The settings of the SD backbone, read from the ``realfake`` options."""

    mmd: bool = True
    mmd_weight: float = MMD_WEIGHT_PAPER
    """gamma of Eq. 21 (paper text 0.05, released scripts 0.003)."""
    visual_guidance: bool = True
    prior_init: bool = True
    strength: float = 0.75
    """Img2img strength of the latent prior init (Table 6)."""
    guidance_images: int = 16
    """Real images whose CLIP embeddings are averaged into one guidance vector."""
    lora_rank: int = 4
    """The released Real-Fake scripts' rank; Table 7's row gives none."""
    finetune_steps: int | None = None
    lr: float = 1e-4
    """Table 7."""
    batch_size: int = 8
    """Per step; Table 7's 8x8 is 8 GPUs x 8."""
    snr_gamma: float | None = None
    """Min-SNR loss weighting (Hang et al. 2023), off by default: Table 7 lists an
    "SNR-gamma" of 0.75 in a row whose columns do not line up, so it is offered,
    not assumed."""
    sampler_steps: int = 30
    guidance: float = 2.0
    prompt: str = "photo of {}"
    negative_prompt: str = APPENDIX_E_NEGATIVE_PROMPT
    resolution: int | None = None
    """Fine-tuning and generation size; default: the pipeline's (512 for SD 1.5)."""
    train_seed: int = 0
    eval_batch: int = 8
    """Fixed pipeline batch (``sd_eval_batch``); not ``realfake``'s in-suite
    ``eval_batch``, whose 256 would not fit 512x512 SD on one GPU."""
    precision: str = "auto"

    ALIASES = {"lr": ("lr", "finetune_lr"), "guidance": ("guidance", "guidance_scale"),
               "eval_batch": ("sd_eval_batch",), "resolution": ("resolution", "sd_resolution"),
               "prompt": ("prompt", "sd_prompt"), "negative_prompt": ("negative_prompt", "sd_negative_prompt")}

    @classmethod
    def from_opts(cls, opts: dict[str, Any]) -> "RealFakeSDConfig":
        """Known keys of ``opts`` (or their aliases, e.g. ``finetune_lr`` for
        ``lr``); a missing key or a None value keeps the default above."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            for key in cls.ALIASES.get(f.name, (f.name,)):
                if opts.get(key) is not None and opts.get(key) != "":
                    values[f.name] = opts[key]
                    break
        cfg = cls(**values)
        if not valid_templates(cfg.prompt):
            raise UserError(f"realfake prompt {cfg.prompt!r}: give templates separated by |, each with one {{}}.")
        if not 0 < cfg.strength <= 1:
            raise UserError(f"realfake strength={cfg.strength} must be in (0, 1].")
        return cfg


def resolve_encoder(image_encoder: str) -> tuple[Path, Path]:
    """(model folder, image-processor folder) of a CLIP vision encoder: a folder
    holding both, a diffusers-style folder with ``image_encoder/`` and
    ``feature_extractor/``, or a hub id from the local cache (or the hub when online)."""
    path = Path(image_encoder).expanduser()
    if not path.is_dir():
        if path.exists() or image_encoder.count("/") != 1 or image_encoder.startswith((".", "/", "~")):
            raise UserError(f"realfake.image_encoder={image_encoder!r} is not a folder. Give the folder of a "
                            f"CLIPVisionModelWithProjection (e.g. `huggingface-cli download openai/clip-vit-large-"
                            f"patch14 --local-dir DIR` on a machine with network).")
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "*.txt"]
        try:
            path = Path(snapshot_download(image_encoder, allow_patterns=patterns, local_files_only=True))
        except Exception:
            try:
                path = Path(snapshot_download(image_encoder, allow_patterns=patterns))
            except Exception as exc:
                raise UserError(f"realfake.image_encoder={image_encoder!r} is neither a folder nor a hub id in "
                                f"the local cache, and the hub is out of reach ({type(exc).__name__}). Download it "
                                f"on a machine with network (`huggingface-cli download {image_encoder} --local-dir "
                                f"DIR`) and pass --option realfake.image_encoder=DIR.") from None
    if (path / "image_encoder").is_dir():
        proc = path / "feature_extractor" if (path / "feature_extractor").is_dir() else path / "image_encoder"
        return path / "image_encoder", proc
    return path, path


class _Trainable:
    """The trainable part of a :class:`RealFakeSD` (LoRA and projection) as one
    state dict: what a training snapshot keeps of it, instead of the whole UNet."""

    def __init__(self, owner: "RealFakeSD"):
        self.owner = owner

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.owner.trainable_state()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.owner.load_trainable(state)


class RealFakeSD:
    """Real-Fake on Stable Diffusion (module docstring). ``realfake.py`` calls
    ``RealFakeSD(model, image_encoder, opts)``, ``fit(ctx)``, ``identity()``,
    ``sample(labels, seeds)`` and ``reconstruct(images, labels, t_re, seeds)``."""

    def __init__(self, model: str, image_encoder: str | None, opts: dict[str, Any]):
        self.model = model
        self.image_encoder = image_encoder or None
        self.cfg = RealFakeSDConfig.from_opts(opts)
        if self.cfg.visual_guidance and self.cfg.finetune_steps != 0 and not self.image_encoder:
            raise UserError(
                "realfake: visual guidance (Real-Fake Sec. 3.2) on Stable Diffusion needs a CLIP image encoder: "
                "pass --option realfake.image_encoder=DIR (the folder of a CLIPVisionModelWithProjection, e.g. "
                "openai/clip-vit-large-patch14 downloaded with `huggingface-cli download ... --local-dir DIR`), "
                "or run without it: --option realfake.visual_guidance=false.")
        self._identity: dict[str, Any] = {}

    # -- setup -----------------------------------------------------------
    def setup(self, ctx: FitContext) -> None:
        """Load the pipeline, inject the (untrained) LoRA and the guidance
        projection, and encode the prompts and the fit split's CLIP embeddings.
        ``fit`` = ``setup`` + fine-tuning (or loading it from the cache)."""
        from peft import LoraConfig

        cfg = self.cfg
        self.device = ctx.device
        self.image_shape = tuple(ctx.image_shape)
        self.class_names = list(ctx.class_names)
        self.train = ctx.train
        self.hflip = ctx.hflip
        self._by_class = [(ctx.train.labels == c).nonzero().flatten() for c in range(len(ctx.class_names))]
        pipe, img2img, _, self.weights = load_pipeline(self.model, "realfake.sd_model", None)
        self.pipe = pipe
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):  # LoRA's Gaussian init draws from the global stream
            torch.manual_seed(derive_seed("realfake-sd-lora-init", cfg.train_seed) & 0xFFFF_FFFF)
            pipe.unet.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank,
                                             init_lora_weights="gaussian", target_modules=LORA_TARGETS))
        self.proj: nn.Linear | None = None
        self.encoder_fingerprint: str | None = None
        if cfg.visual_guidance and self.finetune_steps(ctx) > 0:  # no token without fine-tuning (docstring)
            self._clip = self._image_embeddings(ctx)
            self.proj = nn.Linear(self._clip.shape[1], pipe.unet.config.cross_attention_dim)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
            self.proj.to(ctx.device)
        pipe.to(ctx.device)
        self.size = native_size(pipe, cfg.resolution, "realfake.resolution")
        self.templates = split_templates(cfg.prompt)
        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        with torch.no_grad():
            prompts = [t.format(name.replace("_", " ")) for t in self.templates for name in self.class_names]
            text, _ = pipe.encode_prompt(prompts, ctx.device, 1, False)
            self._text = text.float().reshape(len(self.templates), len(self.class_names), *text.shape[1:])
            neg, _ = pipe.encode_prompt([cfg.negative_prompt], ctx.device, 1, False)
            self._neg = neg.float()
        self.runner = SDRunner(pipe, img2img, self.size, cfg.eval_batch, cfg.sampler_steps, cfg.guidance,
                               ctx.device, cfg.precision)

    def _image_embeddings(self, ctx: FitContext) -> torch.Tensor:
        """CLIP image embeddings ``[N, E]`` of the fit split (cached), the
        material of Sec. 3.2's class-mean guidance."""
        model_dir, proc_dir = resolve_encoder(self.image_encoder)
        self.encoder_fingerprint = weights_fingerprint(model_dir)
        identity = {"encoder": self.encoder_fingerprint, "data": ctx.dataset_digest, "version": VERSION}
        return ctx.cache.load_or_compute(
            "generators", "realfake-sd-clip", identity, SAFETENSORS, "CLIP embeddings file",
            lambda: {"embeds": self._clip_embeddings(ctx, model_dir, proc_dir)}, lambda content: content["embeds"])

    def _clip_embeddings(self, ctx: FitContext, model_dir: Path, proc_dir: Path) -> torch.Tensor:
        """The CLIP image embeddings of the fit split (computed on a cache miss)."""
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        quiet_libraries()
        try:
            model = CLIPVisionModelWithProjection.from_pretrained(model_dir, local_files_only=True,
                                                                  use_safetensors=True).to(ctx.device).eval()
            processor = CLIPImageProcessor.from_pretrained(proc_dir, local_files_only=True)
        except Exception as exc:
            raise UserError(f"realfake.image_encoder={self.image_encoder!r}: {model_dir} does not hold a "
                            f"CLIPVisionModelWithProjection with safetensors weights and its image processor "
                            f"({type(exc).__name__}: {exc}).") from None
        images = ctx.train.images
        out = []
        with torch.no_grad():
            for i in bar(range(0, len(images), CLIP_BATCH), desc="clip embeddings", unit="batch"):
                x = images[i:i + CLIP_BATCH]
                x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x
                pixels = processor(images=list(x), return_tensors="pt")["pixel_values"].to(ctx.device)
                out.append(model(pixel_values=pixels).image_embeds.float().cpu())
        return torch.cat(out)

    # -- fine-tuning -----------------------------------------------------
    def finetune_steps(self, ctx: FitContext) -> int:
        """The option's steps when given (0: no fine-tuning, Table 2's first and
        sixth rows), else the preset's budget."""
        if self.cfg.finetune_steps is not None:
            return int(self.cfg.finetune_steps)
        if ctx.preset.name in DEFAULT_FINETUNE_STEPS:
            return DEFAULT_FINETUNE_STEPS[ctx.preset.name]
        return math.ceil(TABLE7_EPOCHS * len(ctx.train) / self.cfg.batch_size)

    def train_identity(self, ctx: FitContext) -> dict[str, Any]:
        """Everything that determines the fine-tuned weights."""
        cfg = self.cfg
        return {
            "version": VERSION, "weights": self.weights, "image_encoder": self.encoder_fingerprint,
            "dataset_digest": ctx.dataset_digest, "hflip": ctx.hflip, "size": self.size,
            "gamma": self.gamma, "visual_guidance": self.proj is not None,
            "guidance_images": cfg.guidance_images if self.proj is not None else None,
            "lora_rank": cfg.lora_rank, "steps": self.finetune_steps(ctx), "lr": cfg.lr,
            "batch_size": cfg.batch_size, "snr_gamma": cfg.snr_gamma, "prompt": cfg.prompt,
            "train_seed": cfg.train_seed, "precision": cfg.precision, "class_names": self.class_names,
            "compute": ctx.compute_tag,
        }

    @property
    def gamma(self) -> float:
        """Eq. 21's gamma: ``mmd_weight`` with ``mmd`` on, 0 with it off."""
        return float(self.cfg.mmd_weight) if self.cfg.mmd else 0.0

    def fit(self, ctx: FitContext) -> None:
        """Set up the pipeline and fine-tune it (or load the cached LoRA weights)."""
        self.setup(ctx)
        ident = self.train_identity(ctx)
        snapshot = snapshot_of(ctx.cache.path("generators", "realfake-sd", ident, SAFETENSORS), SAFETENSORS)

        def train() -> dict[str, torch.Tensor]:
            with charges.spent() as cost:  # a killed run's training before the snapshot counts too
                self.train_steps(ctx.train, ident["steps"], snapshot, ctx.snapshot_every_s)
            ctx.cost["fit_train_s"] = cost.seconds
            return self.trainable_state()

        ctx.cache.load_or_compute("generators", "realfake-sd", ident, SAFETENSORS, "Real-Fake LoRA weights file",
                                  train, self.load_trainable)
        self.pipe.unet.eval()
        cfg = self.cfg
        self._identity = {
            "weights": self.weights, "lora": cache_key(ident),
            "sampling": {"steps": cfg.sampler_steps, "guidance": cfg.guidance, "prompt": cfg.prompt,
                         "negative_prompt": cfg.negative_prompt, "prior_init": cfg.prior_init,
                         "strength": cfg.strength if cfg.prior_init else None, "size": self.size,
                         "precision": cfg.precision, "version": VERSION},
        }

    def identity(self) -> dict[str, Any]:
        """What determines this fitted backbone's samples (for the sample cache key)."""
        return dict(self._identity)

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = [p for p in self.pipe.unet.parameters() if p.requires_grad]
        return params + (list(self.proj.parameters()) if self.proj is not None else [])

    def trainable_state(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        state = {f"lora.{k}": v for k, v in get_peft_model_state_dict(self.pipe.unet).items()}
        if self.proj is not None:
            state.update({f"proj.{k}": v for k, v in self.proj.state_dict().items()})
        return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """Load LoRA and projection weights (read through the disk cache, whose
        reader turns a mismatch into its one error naming the file)."""
        from peft.utils import set_peft_model_state_dict

        lora = {k[5:]: v for k, v in state.items() if k.startswith("lora.")}
        result = set_peft_model_state_dict(self.pipe.unet, lora)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected or not lora:
            raise ValueError(f"LoRA keys do not match the UNet ({len(lora)} keys, unexpected {unexpected[:3]})")
        if self.proj is not None:
            self.proj.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("proj.")})

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Eq. 21 on one batch of real images (uint8 ``[B, C, H, W]``): VAE
        latents, noise and timesteps from ``generator``, the UNet's prediction
        under the class prompt (+ the visual-guidance token). Returns ``total``,
        ``simple``, ``dm`` and the ``target`` and ``prediction`` they came from."""
        dev = self.device
        bs = images.shape[0]
        x = to_pipeline_images(images, self.size) * 2.0 - 1.0
        if self.hflip:
            flip = torch.rand(bs, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        with torch.no_grad(), autocast(dev, self.cfg.precision):
            posterior = self.pipe.vae.encode(x.to(dev)).latent_dist
            latents = posterior.sample(generator=generator).float() * self.pipe.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator).to(dev)
        sched = self.noise_scheduler
        t = torch.randint(0, sched.config.num_train_timesteps, (bs,), generator=generator).to(dev)
        noisy = sched.add_noise(latents, noise, t)
        target = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(latents, noise, t)
        template = torch.randint(len(self.templates), (bs,), generator=generator)
        labels = torch.as_tensor(labels, dtype=torch.long).cpu()
        states = self._text[template.to(dev), labels.to(dev)]
        if self.proj is not None:
            vectors = torch.stack([self._guidance_vector(int(c), generator) for c in labels]).to(dev)
            states = torch.cat([states, self.proj(vectors)[:, None, :]], dim=1)
        with autocast(dev, self.cfg.precision):
            pred = self.pipe.unet(noisy, t, encoder_hidden_states=states).sample
        weight = None
        if self.cfg.snr_gamma:
            from diffusers.training_utils import compute_snr

            snr = compute_snr(sched, t)
            weight = torch.clamp(snr, max=self.cfg.snr_gamma) / (snr if sched.config.prediction_type == "epsilon"
                                                                  else snr + 1)
        total, simple, dm = distribution_matching_loss(target.float(), pred.float(), self.gamma, weight)
        return {"total": total, "simple": simple, "dm": dm, "target": target.float(), "prediction": pred.float()}

    def optimizer(self, lr: float | None = None) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.trainable_parameters(), lr=self.cfg.lr if lr is None else lr)

    def train_steps(self, train, steps: int, snapshot: Path | None = None,
                    every_s: float | None = None) -> list[float]:
        """LoRA (+ projection) fine-tuning for ``steps`` steps on ``train``
        (batches drawn by the ``train_seed`` stream), resumed from and
        snapshotted to ``snapshot`` (``snapshots.py``). Returns the losses of the
        steps run here."""
        unet = self.pipe.unet
        unet.train()
        opt = self.optimizer()
        gen = torch_generator(derive_seed("realfake-sd-train", self.cfg.train_seed))
        run = Resumable(snapshot, {"trainable": _Trainable(self), "opt": opt, "gen": gen}, every_s)
        n = len(train)
        bs = min(self.cfg.batch_size, n)
        losses = []
        progress = bar(range(run.start, steps), desc="finetune realfake sd", unit="step")
        for step in progress:
            idx = torch.randint(n, (bs,), generator=gen)
            out = self.training_loss(train.images[idx], train.labels[idx], gen)
            opt.zero_grad(set_to_none=True)
            out["total"].backward()
            torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), 1.0)
            opt.step()
            losses.append(out["total"].item())
            if step % 10 == 0:
                progress.set_postfix(loss=f"{losses[-1]:.4f}")
            run.step_done(step)
        unet.eval()
        return losses

    # -- conditioning ----------------------------------------------------
    def _guidance_vector(self, label: int, generator: torch.Generator) -> torch.Tensor:
        """Mean CLIP embedding of a random handful of the class's fit images."""
        pool = self._by_class[label]
        if len(pool) == 0:
            raise UserError(f"realfake: class {self.class_names[label]!r} has no train images to guide with.")
        pick = pool[torch.randperm(len(pool), generator=generator)[:self.cfg.guidance_images]]
        return self._clip[pick].mean(0)

    def encode(self, conds: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(prompt embeddings, negative embeddings) of a chunk of (label, seed):
        the class prompt's text tokens, plus the projected visual-guidance token
        drawn by the seed; the negative prompt plus a copy of its last token."""
        dev = self.device
        labels = torch.tensor([c for c, _ in conds])
        tmpl = torch.tensor([derive_seed("sd-prompt", s) % len(self.templates) for _, s in conds])
        states = self._text[tmpl.to(dev), labels.to(dev)]
        neg = self._neg.expand(len(conds), -1, -1)
        if self.proj is not None:
            vectors = torch.stack([self._guidance_vector(c, torch_generator(derive_seed("realfake-sd-guidance", s)))
                                   for c, s in conds]).to(dev)
            states = torch.cat([states, self.proj(vectors)[:, None, :].to(states.dtype)], dim=1)
            neg = torch.cat([neg, neg[:, -1:]], dim=1)
        return states, (neg if self.cfg.guidance > 1.0 else None)

    def prior_images(self, labels: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        """Sec. 3.3's latent prior: one real fit image of each requested class,
        picked by the image's seed (uint8, dataset shape)."""
        picks = []
        for label, seed in zip(labels, seeds):
            pool = self._by_class[int(label)]
            if len(pool) == 0:
                raise UserError(f"realfake: class {self.class_names[int(label)]!r} has no train image for the "
                                f"latent prior init; run with --option realfake.prior_init=false.")
            g = torch_generator(derive_seed("realfake-sd-prior", seed))
            picks.append(int(pool[torch.randint(len(pool), (1,), generator=g)]))
        return self.train.images[picks]

    # -- generation ------------------------------------------------------
    @staticmethod
    def _conds(labels: list[int], seeds: Sequence[int]) -> list[tuple[int, int]]:
        return list(zip(labels, [int(s) for s in seeds]))

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        labels = torch.as_tensor(labels, dtype=torch.long).tolist()
        conds = self._conds(labels, seeds)
        gens = image_generators(seeds, "realfake-sd-sample")
        # Without the prior init, text-to-image from noise (``strength`` then unused).
        init = to_pipeline_images(self.prior_images(labels, seeds), self.size) if self.cfg.prior_init else None
        x = self.runner.generate(conds, gens, self.encode, init_images=init, strength=self.cfg.strength,
                                 desc="sample realfake sd")
        return to_dataset_images(x, self.image_shape)

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int,
                    seeds: Sequence[int]) -> torch.Tensor:
        return self.runner.reconstruct(images, labels, t_re, seeds, self._conds, self.encode, "realfake-sd-recon",
                                       self.image_shape)

    def recon_sigma(self, t_re: int) -> float:
        """The noise level ``reconstruct`` starts from (``SDRunner.recon_sigma``, latent units)."""
        return self.runner.recon_sigma(t_re)
