"""``sd``: vanilla Stable Diffusion prompted with class names, the "FakeIt"-style
baseline (Sariyildiz et al. 2023) that Real-Fake (Yuan et al. 2024, arXiv
2310.10402) improves on; and the helpers its Real-Fake backbone
(``realfake_sd.py``) shares: loading a pipeline from a local diffusers folder,
prompts, fixed-size padded chunks with per-image generators, and the
conversions between the dataset's images and the pipeline's.

- Weights: option ``model`` = a local diffusers folder (loaded with
  ``local_files_only`` and safetensors only, nothing is unpickled) or a hub id
  (resolved from the local hub cache, downloaded only when online). Nothing
  configured, or a hub id that cannot be had offline, is a :class:`UserError`
  that says how to fetch a folder on a machine with network.
- Prompts: ``prompt`` is a template with ``{}`` for the class name ("a photo of
  a {}" by default); several templates separated by ``|`` are drawn per image
  from its seed. ``negative_prompt`` is empty by default (vanilla SD); Real-Fake
  Appendix E's is "distorted, unrealistic, blurry, out of frame".
- Sampler: diffusers' ``UniPCMultistepScheduler``, 30 steps, classifier-free
  guidance 2.0: Real-Fake Table 6's generation settings, so that ``sd`` and
  ``realfake`` differ only in the recipe. 2.0, not diffusers' 7.5, also because
  low guidance trades prompt fidelity for diversity, which training data needs
  (Sariyildiz et al. 2023 report low scales, around 2, training better ImageNet
  classifiers than the usual 7.5); set ``guidance=7.5`` for the text-to-image
  setting.
- Output: generated at the pipeline's size (``resolution`` overrides it),
  resized to the dataset's H x W with antialiasing, converted to greyscale
  (ITU-R 601 luma) when the dataset has one channel, ``uint8 [N, C, H, W]``.
- Determinism: each image has its own CPU ``torch.Generator`` seeded from its
  seed (the pipelines accept one per image, for the initial latents, the VAE
  posterior sample and img2img's noise), and the pipeline always runs on
  fixed-size chunks of ``eval_batch`` images (the last one padded), so image i
  depends on its own seed and label only, never on the batch it was drawn in.
- ``reconstruct(images, labels, t_re, seeds)``: img2img (SDEdit, Meng et al.
  2021) at strength t_re / 100, the latent-model equivalent of Yamaguchi & Fukuda's
  Algorithm 1; t_re = 0 returns the input exactly. ``recon_sigma(t_re)`` is the
  noise level img2img starts from, sqrt((1 - abar) / abar) at its first timestep,
  in latent units; ``reconstruct`` takes no ``sigma`` or ``churn``, so ``recon``'s
  ``t_re_scale=sigma`` and ``churn > 0`` report ``sd`` as unsupported.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from synthbench.benchmark.options import Option
from synthbench.benchmark.progress import bar
from synthbench.benchmark.seeding import derive_seed, torch_generator
from synthbench.errors import UserError
from synthbench.benchmark.context import FitContext
from synthbench.generators.base import Generator

T_RECON = 100
APPENDIX_E_NEGATIVE_PROMPT = "distorted, unrealistic, blurry, out of frame"
"""Real-Fake (Yuan et al. 2024) Appendix E: "all generations use a uniform set of negative prompts"."""
SD15_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_WEIGHT_SUFFIXES = (".json", ".txt", ".safetensors")


def offline_hint(option: str) -> str:
    """How to give Stable Diffusion weights without network on this machine."""
    return (f"Give a local diffusers folder: on a machine with network run `huggingface-cli download "
            f"{SD15_HUB_ID} --local-dir /path/to/stable-diffusion-v1-5 "
            f"--exclude '*.ckpt' '*.bin' '*.fp16.*' '*non_ema*' 'v1-5-*'`, copy the "
            f"folder here and pass `--option {option}=/path/to/stable-diffusion-v1-5`.")


# -- weights -------------------------------------------------------------
def resolve_model_folder(model: str | None, option: str, what: str = "Stable Diffusion weights") -> Path:
    """The local folder of ``model``: the folder itself, or a hub id resolved
    through the local hub cache (downloaded only when online, safetensors only).
    Raises a :class:`UserError` naming ``option`` when there is nothing to load."""
    if not model:
        raise UserError(f"No {what} configured (option {option} is empty). {offline_hint(option)}")
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise UserError(f"{option}={model!r} is neither a diffusers folder nor a hub id (owner/name). "
                        f"{offline_hint(option)}")
    from diffusers import DiffusionPipeline

    errors = []
    for local_only in (True, False):
        if not local_only and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            break
        try:
            return Path(DiffusionPipeline.download(model, local_files_only=local_only, use_safetensors=True))
        except Exception as exc:  # offline, unknown id, gated repo: all end in the same advice
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise UserError(f"Could not load {what} {model!r} from the hub cache or the hub ({'; '.join(errors)}). "
                    f"{offline_hint(option)}")


def weights_fingerprint(folder: Path) -> str:
    """A cheap digest of a weights folder: every config, vocabulary and
    safetensors file's relative path, size, and its first and last MiB. Copies
    of the same folder agree; a changed file (almost surely) does not. Reading
    whole multi-GB checkpoints on every run would cost more than it guards."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
                    and ".cache" not in p.parts):
        size = f.stat().st_size
        h.update(f"{f.relative_to(folder).as_posix()}\x1f{size}\x1f".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def quiet_libraries() -> None:
    """diffusers' and transformers' own progress bars and advice off: the
    adapters show synthbench's bars (``benchmark/progress.py``) instead."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()


def load_pipeline(model: str | None, option: str, device: torch.device | None):
    """(text-to-image pipeline with UniPC, img2img pipeline sharing its modules,
    weights folder, weights fingerprint), from safetensors only; moved to
    ``device`` unless it is None (to change the modules on the CPU first)."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline, UniPCMultistepScheduler

    folder = resolve_model_folder(model, option)
    quiet_libraries()
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, safety_checker=None,
            requires_safety_checker=False, dtype=torch.float32)
    except Exception as exc:
        raise UserError(f"{option}={model!r}: {folder} is not a loadable Stable Diffusion diffusers folder with "
                        f"safetensors weights ({type(exc).__name__}: {exc}). {offline_hint(option)}") from None
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    if device is not None:
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    return pipe, img2img, folder, weights_fingerprint(folder)


# -- prompts ---------------------------------------------------------------
def split_templates(text: str) -> list[str]:
    """``"a photo of a {}|a {} in the wild"`` -> two templates."""
    return [t.strip() for t in text.split("|") if t.strip()]


def valid_templates(text: str) -> bool:
    templates = split_templates(text)
    return bool(templates) and all(t.count("{}") == 1 for t in templates)


def class_prompts(template_text: str, class_names: Sequence[str], labels: Sequence[int],
                  seeds: Sequence[int]) -> list[str]:
    """One prompt per image: its class name (underscores as spaces) in a
    template drawn by its seed when several are given."""
    templates = split_templates(template_text)
    return [templates[derive_seed("sd-prompt", seed) % len(templates)].format(
        str(class_names[int(label)]).replace("_", " ")) for label, seed in zip(labels, seeds)]


# -- images ----------------------------------------------------------------
def to_pipeline_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` (C = 1 or 3) -> float RGB in [0, 1] at size x size
    (antialiased bilinear), the range the pipelines' image processor expects."""
    import torchvision.transforms.functional as TF

    x = images.float() / 255.0
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if tuple(x.shape[-2:]) != (size, size):
        x = TF.resize(x, [size, size], antialias=True)
    return x.clamp(0.0, 1.0)


def to_dataset_images(x: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """float RGB ``[N, 3, h, w]`` in [0, 1] -> uint8 ``[N, C, H, W]`` of the
    dataset: antialiased resize, then luma (ITU-R 601) when C = 1."""
    import torchvision.transforms.functional as TF

    c, h, w = image_shape
    x = x.float().cpu().clamp(0.0, 1.0)
    if tuple(x.shape[-2:]) != (h, w):
        x = TF.resize(x, [h, w], antialias=True)
    if c == 1:
        x = TF.rgb_to_grayscale(x)
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)


def image_generators(seeds: Sequence[int], purpose: str) -> list[torch.Generator]:
    """One CPU generator per image, seeded from its seed and the purpose."""
    return [torch_generator(derive_seed(purpose, s)) for s in seeds]


def img2img_steps(steps: int, strength: float) -> int:
    """Sampler steps for img2img at ``strength``: diffusers runs the last
    int(steps * strength) of them, so raise the count until at least one runs
    (a small t_re with few steps would otherwise run none)."""
    n = steps
    while int(n * strength) < 1:
        n += 1
    return n


def autocast(device: torch.device, precision: str):
    """Mixed precision on CUDA (``auto`` = bf16, which does not overflow in the
    VAE as fp16 can); full fp32 on the CPU."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


def native_size(pipe, resolution: int | None, option: str) -> int:
    """The pipeline's own image size (UNet sample size x VAE scale), or ``resolution``."""
    factor = pipe.vae_scale_factor
    if resolution is None:
        size = pipe.unet.config.sample_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        return int(size) * factor
    if resolution % factor:
        raise UserError(f"{option}={resolution} must be a multiple of the VAE's scale factor {factor}.")
    return int(resolution)


@dataclass
class SDRunner:
    """Runs a text-to-image or img2img pipeline on fixed-size padded chunks with
    per-image generators (see the module docstring on determinism)."""

    pipe: Any
    img2img: Any
    size: int
    chunk: int
    steps: int
    guidance: float
    device: torch.device
    precision: str = "auto"

    @torch.no_grad()
    def generate(self, conds: list[Any], generators: list[torch.Generator],
                 encode: Callable[[list[Any]], tuple[torch.Tensor, torch.Tensor | None]],
                 init_images: torch.Tensor | None = None, strength: float = 1.0,
                 desc: str = "sample sd") -> torch.Tensor:
        """float RGB ``[N, 3, size, size]`` in [0, 1] on the CPU.

        ``conds[i]`` is image i's condition (a prompt, a label, ...);
        ``encode(conds_of_a_chunk)`` returns (prompt_embeds, negative_prompt_embeds)
        for a full chunk. ``init_images`` (float [0, 1] at ``size``) switches to
        img2img at ``strength``. Padding entries get their own generators, so
        the real images' generators are consumed exactly as if alone."""
        n = len(conds)
        if n == 0:
            return torch.zeros(0, 3, self.size, self.size)
        outs = []
        for start in bar(range(0, n, self.chunk), desc=desc, unit="chunk"):
            k = min(self.chunk, n - start)
            pad = self.chunk - k
            c = list(conds[start:start + k]) + [conds[start + k - 1]] * pad
            gens = list(generators[start:start + k]) + [torch_generator(derive_seed("sd-pad", j))
                                                          for j in range(pad)]
            with autocast(self.device, self.precision):
                prompt_embeds, negative_embeds = encode(c)
                kwargs = dict(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds,
                              guidance_scale=self.guidance, generator=gens, output_type="pt")
                if init_images is None:
                    out = self.pipe(height=self.size, width=self.size, num_inference_steps=self.steps,
                                    **kwargs).images
                else:
                    img = init_images[start:start + k]
                    img = torch.cat([img, img[-1:].expand(pad, *img.shape[1:])]) if pad else img
                    out = self.img2img(image=img.to(self.device), strength=strength,
                                       num_inference_steps=img2img_steps(self.steps, strength), **kwargs).images
            outs.append(out.float().cpu()[:k])
        return torch.cat(outs)

    def recon_sigma(self, t_re: int) -> float:
        """The noise level :meth:`reconstruct` starts from at ``t_re``:
        sqrt((1 - abar_t) / abar_t) of the scheduler at the first timestep diffusers'
        img2img runs for strength t_re / 100 (the one its initial latents are
        noised to), in latent units (the scaled latents have about unit variance)."""
        if not 0 <= int(t_re) <= T_RECON:
            raise UserError(f"t_re={t_re} is outside 0..{T_RECON} (img2img strength = t_re / {T_RECON}).")
        if t_re == 0:
            return 0.0
        strength = t_re / T_RECON
        n = img2img_steps(self.steps, strength)
        sched = type(self.img2img.scheduler).from_config(self.img2img.scheduler.config)
        sched.set_timesteps(n)
        # StableDiffusionImg2ImgPipeline.get_timesteps
        start = max(n - min(int(n * strength), n), 0)
        t = int(sched.timesteps[start * sched.order])
        abar = sched.alphas_cumprod[t].double()
        return float(((1 - abar) / abar).sqrt())

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int, seeds: Sequence[int], conds: Callable,
                    encode: Callable, purpose: str, image_shape: Sequence[int]) -> torch.Tensor:
        """The adapters' ``reconstruct`` (module docstring): img2img of ``images``
        under ``conds(labels, seeds)`` with generators for ``purpose``."""
        if not 0 <= int(t_re) <= T_RECON:
            raise UserError(f"t_re={t_re} is outside 0..{T_RECON} (img2img strength = t_re / {T_RECON}).")
        if t_re == 0:
            return images.clone()
        x = self.generate(conds(torch.as_tensor(labels, dtype=torch.long).tolist(), seeds),
                          image_generators(seeds, purpose), encode, init_images=to_pipeline_images(images, self.size),
                          strength=t_re / T_RECON, desc=f"reconstruct t_re={t_re}")
        return to_dataset_images(x, image_shape)


class StableDiffusionGenerator(Generator):
    """Vanilla Stable Diffusion prompted with class names (module docstring)."""

    name = "sd"
    version = 1
    conditional = True
    can_reconstruct = True
    refits = False
    """``fit`` loads the pretrained weights as they are, whatever split it is
    handed, so ``mia`` (which fits on the members half) records unsupported
    rather than score a model that never saw the members."""
    needs = ("Stable Diffusion weights (a local diffusers folder or hub id: --option sd.model=DIR) and a GPU "
             "(hours on a CPU at 512x512)")
    paper = ('Rombach, Blattmann, Lorenz, Esser & Ommer 2022, '
             '"High-Resolution Image Synthesis with Latent Diffusion Models", arXiv 2112.10752')
    paper_url = "https://arxiv.org/abs/2112.10752"
    description = "vanilla Stable Diffusion prompted with class names (FakeIt-style baseline), UniPC, CFG"
    options = {
        "model": Option("model", "", "A local diffusers Stable Diffusion folder (e.g. stable-diffusion-v1-5) or a "
                        "hub id (hub only when online).", str),
        "prompt": Option("prompt", "a photo of a {}", "Prompt template, {} = class name; several separated by "
                         "| are drawn per image by its seed.", str, check=valid_templates,
                         check_help="give one or more templates separated by |, each with exactly one {}"),
        "negative_prompt": Option("negative_prompt", "", "Negative prompt (Real-Fake Appendix E uses "
                                  f"'{APPENDIX_E_NEGATIVE_PROMPT}').", str),
        "sampler_steps": Option.positive_int("sampler_steps", "UniPC steps (Real-Fake Table 6: 30).", default=30),
        "guidance": Option("guidance", 2.0, "Classifier-free guidance scale (Real-Fake Table 6: 2.0; "
                           "diffusers' default 7.5); <= 1 turns guidance off.", float,
                           check=lambda v: v >= 0, check_help="must be >= 0"),
        "resolution": Option.positive_int("resolution", "Generation size in pixels; default: the pipeline's "
                                          "(512 for SD 1.5). Images are then resized to the dataset's."),
        "eval_batch": Option.positive_int("eval_batch", "Fixed pipeline batch (does not change the images).",
                                          default=8),
        "precision": Option("precision", "auto", "Autocast on CUDA: auto = bf16; always fp32 on a CPU.", str,
                            choices=PRECISIONS),
    }

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        """Nothing is trained: load the weights and note the dataset's classes and shape."""
        self.device = ctx.device
        self.image_shape = tuple(ctx.image_shape)
        self.class_names = list(ctx.class_names)
        pipe, img2img, _, fingerprint = load_pipeline(self.opts["model"], "sd.model", ctx.device)
        self.pipe = pipe
        self.runner = SDRunner(pipe, img2img, native_size(pipe, self.opts["resolution"], "sd.resolution"),
                               self.opts["eval_batch"], self.opts["sampler_steps"], self.opts["guidance"],
                               ctx.device, self.opts["precision"])
        return {"weights": fingerprint, "dataset_digest": ctx.dataset_digest, "class_names": self.class_names,
                "image_shape": list(self.image_shape)}

    def _prompts(self, labels: list[int], seeds: Sequence[int]) -> list[str]:
        return class_prompts(self.opts["prompt"], self.class_names, labels, seeds)

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The pipeline's own CLIP text encoding of ``prompts`` and of the negative
        prompt (None without classifier-free guidance)."""
        do_cfg = self.opts["guidance"] > 1.0
        negative = [self.opts["negative_prompt"]] * len(prompts) if do_cfg else None
        cond, neg = self.pipe.encode_prompt(prompts, self.pipe._execution_device, 1, do_cfg, negative_prompt=negative)
        return cond, (neg if do_cfg else None)

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        prompts = self._prompts(torch.as_tensor(labels, dtype=torch.long).tolist(), seeds)
        x = self.runner.generate(prompts, image_generators(seeds, "sd-sample"), self._encode, desc="sample sd")
        return to_dataset_images(x, self.image_shape)

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int,
                    seeds: Sequence[int]) -> torch.Tensor:
        return self.runner.reconstruct(images, labels, t_re, seeds, self._prompts, self._encode, "sd-recon",
                                       self.image_shape)

    def recon_sigma(self, t_re: int, sigma: float | None = None) -> float | None:
        """img2img's start level at strength t_re / 100 (:meth:`SDRunner.recon_sigma`,
        latent units); None for a given ``sigma``: ``reconstruct`` cannot start
        from one."""
        return None if sigma is not None else self.runner.recon_sigma(t_re)

