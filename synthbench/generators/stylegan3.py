"""``stylegan3``: StyleGAN3 (Karras et al. 2021, "Alias-Free Generative Adversarial
Networks"), class-conditional.

Two ways to get a network:

- **In-suite** (default): a small StyleGAN3 (``stylegan3_networks.py``: mapping
  network, Fourier-feature input, modulated and demodulated convolutions, the
  filtered leaky ReLU of Sec. 3.2) trained on the real train split against a
  residual discriminator with a projection head (Miyato & Koyama 2018), with
  StyleGAN2's recipe (Sec. 2 and Appendix B of "Analyzing and Improving the Image
  Quality of StyleGAN"; StyleGAN3 Appendix D): the non-saturating logistic loss,
  lazy R1 regularisation (gamma / 2 * E ||grad_x D(x)||^2 on reals, every 16
  D steps, scaled by 16, with Adam's lr and betas adjusted for the interval),
  Adam (beta1 = 0, beta2 = 0.99), and an EMA of the generator's weights
  (half-life ``ema_kimg`` = batch * 10 / 32 thousand images, ramped up over the
  first 5% of training, StyleGAN2-ADA's defaults) that is the network sampled.
  Fake labels are drawn from the real labels, as StyleGAN2-ADA does. Steps, batch
  and widths are options whose defaults depend on the preset. The weights are cached under a hash
  of everything that determines them.
- **Official pickle** (``network_pkl=PATH trust_pickle=true``, optionally
  ``code_dir=PATH`` of a NVlabs/stylegan3 checkout): ``fit`` trains nothing and
  ``sample`` calls the pickle's ``G_ema`` as ``G(z, c, truncation_psi=psi,
  noise_mode='const')``; its [-1, 1] output is converted to uint8 and, if its
  size differs from the dataset's, resized with antialiasing. Pickles run code
  when loaded, hence the opt-in (``pickles.py``).

``psi`` < 1 is the truncation trick (StyleGAN Sec. 3.2): w is pulled toward the
centre of W, here the centre of its own class (estimated after training from 512
z's per class), so that classes survive truncation.

What to expect on digits at the ``fast`` preset (2-core CPU shared with other
jobs, load 5-7): the fit takes about 6 minutes (1,500 steps, cached afterwards);
the reference classifier agrees with the requested label on 86% of samples
(``SYNTHBENCH_SLOW=1 pytest tests/test_stylegan3.py``); ``replace`` top-1 is
0.765 +- 0.017 over 3 seeds (``real``: 0.993); ``detect`` tells its samples from
real ones almost always (pixel 0.999, DCT 0.978; chance is 0.5).

Per-sample randomness: z_i is drawn from a generator seeded by ``seeds[i]``
alone; the network has no noise inputs (StyleGAN3 Sec. 3.1) and no batch
statistics, and runs on fixed ``eval_batch`` chunks (the last one padded), so
image i is computed identically whatever batch it was requested in.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from synthbench.benchmark.cache import file_digest
from synthbench.benchmark.context import FitContext
from synthbench.benchmark.options import Option, by_preset
from synthbench.benchmark.progress import bar
from synthbench.benchmark.seeding import derive_seed, per_sample_normal, torch_generator
from synthbench.errors import UserError
from synthbench.generators.base import Generator
from synthbench.generators.pickles import load_network_pickle, pickle_spec_extras
from synthbench.generators.stylegan3_networks import Discriminator, StyleGAN3Net, resize_images

R1_INTERVAL = 16  # lazy regularisation (StyleGAN2 Sec. 3.1)
W_AVG_SAMPLES = 512  # z's per class for the truncation centre


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """Per-sample ||grad_x D(x)||^2 on real images (R1, Mescheder et al. 2018,
    Eq. 9; StyleGAN2 Appendix B), from D's logits on ``real`` (which must require
    grad), kept differentiable for the D update."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=create_graph)
    return grad.square().sum(list(range(1, real.ndim)))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 (the edm adapter's rounding)."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


# The in-suite training budget is declared per preset on the options below
# (train_steps, batch_size, channels, layers), not in the shared Preset, so that
# adding an adapter never changes every other record's key. channels is the
# width at the coarsest layer (narrower at higher cutoffs, StyleGAN3 Sec. 3.2;
# also the discriminator's); the paper's configs use 14 synthesis layers.


class StyleGAN3Generator(Generator):
    """Class-conditional StyleGAN3, trained in-suite or from an official pickle
    (see the module docstring)."""

    name = "stylegan3"
    version = 1
    needs = ("nothing on CPU (trains a small StyleGAN3 in-suite, cached); an official network pickle only "
             "with network_pkl=PATH trust_pickle=true (and code_dir=PATH of a NVlabs/stylegan3 checkout)")
    paper = ('Karras, Aittala, Laine, Härkönen, Hellsten, Lehtinen & Aila 2021, '
             '"Alias-Free Generative Adversarial Networks", arXiv 2106.12423')
    paper_url = "https://arxiv.org/abs/2106.12423"
    description = "StyleGAN3 (Karras et al. 2021), alias-free, class-conditional; in-suite or official pickle"
    options = {
        "psi": Option("psi", 1.0, "Truncation psi (StyleGAN Sec. 3.2): 1 = none; < 1 pulls w toward its "
                      "class's centre of W.", float, check=lambda v: 0 <= v <= 2, check_help="must be in [0, 2]"),
        "train_steps": Option.positive_int("train_steps", "Training steps (one D and one G update each); "
                                           "default 30 / 1500 / 200000 at smoke / fast / paper.",
                                           per_preset=by_preset(smoke=30, fast=1500, paper=200_000)),
        "batch_size": Option.positive_int("batch_size", "Training batch; default 32 / 32 / 64.",
                                          per_preset=by_preset(smoke=32, fast=32, paper=64)),
        "channels": Option.positive_int("channels", "Width at the coarsest layer (and of D); default "
                                        "16 / 32 / 512.", per_preset=by_preset(smoke=16, fast=32, paper=512)),
        "layers": Option.positive_int("layers", "Alias-free synthesis layers before ToRGB (>= 3); default "
                                      "4 / 6 / 14.", per_preset=by_preset(smoke=4, fast=6, paper=14)),
        "lr": Option("lr", 0.0025, "Adam learning rate of G and D (StyleGAN2/3: 0.0025).", float,
                     check=lambda v: v > 0, check_help="must be > 0"),
        "r1_gamma": Option("r1_gamma", 0.1, "R1 weight gamma (StyleGAN2-ADA: 0.01 on CIFAR-10, more for "
                           "larger images); 0 turns R1 off.", float, check=lambda v: v >= 0,
                           check_help="must be >= 0"),
        "class_gain": Option("class_gain", 1.0, "Weight of the normalised class embedding against z at the "
                             "mapping network's input (1 = StyleGAN2-ADA's).", float,
                             check=lambda v: v > 0, check_help="must be > 0"),
        "mapping_lr": Option("mapping_lr", 0.01, "Learning-rate multiplier of the mapping network "
                             "(StyleGAN: 0.01).", float, check=lambda v: v > 0, check_help="must be > 0"),
        "train_seed": Option("train_seed", 0, "Seed of the in-suite training run.", int),
        "eval_batch": Option.positive_int("eval_batch", "Fixed network batch when sampling (does not change the "
                                          "images).", default=256, in_key=False),
        "network_pkl": Option("network_pkl", None, "Path of an official NVlabs StyleGAN3 network pickle "
                              "(.pkl): skips in-suite training. Needs trust_pickle=true.", str),
        "trust_pickle": Option("trust_pickle", False, "Opt in to unpickling network_pkl: pickles run code "
                               "when loaded, so only for files from a source you trust.", bool),
        "code_dir": Option("code_dir", None, "A NVlabs/stylegan3 checkout whose dnnlib and torch_utils the "
                           "pickle needs (put on sys.path).", str),
    }

    @classmethod
    def spec_extras(cls, options: dict[str, Any]) -> dict[str, Any]:
        return pickle_spec_extras(options)

    # -- fitting ---------------------------------------------------------
    def _train_config(self, ctx: FitContext) -> dict[str, Any]:
        o = self.opts
        channels = self.setting("channels", ctx.preset)
        layers = self.setting("layers", ctx.preset)
        if layers < 3:
            raise UserError(f"stylegan3: layers={layers} is too few; the alias-free schedule needs at least 3 "
                            f"(two of them critically sampled).")
        batch = self.setting("batch_size", ctx.preset)
        return {
            "steps": self.setting("train_steps", ctx.preset),
            "batch_size": batch,
            "channels": channels,
            "layers": layers,
            "w_dim": max(64, channels),
            "lr": o["lr"],
            "r1_gamma": o["r1_gamma"],
            "class_gain": o["class_gain"],
            "mapping_lr": o["mapping_lr"],
            "ema_kimg": batch * 10 / 32,
            "seed": o["train_seed"],
            "image_shape": list(ctx.image_shape),
            "num_classes": len(ctx.class_names),
            "hflip": ctx.hflip,
        }

    @staticmethod
    def _build(cfg: dict[str, Any]) -> tuple[StyleGAN3Net, Discriminator]:
        G = StyleGAN3Net(cfg["image_shape"], cfg["num_classes"], cfg["w_dim"], cfg["channels"],
                               cfg["layers"], mapping_lr_multiplier=cfg["mapping_lr"],
                               class_gain=cfg["class_gain"])
        D = Discriminator(cfg["image_shape"], cfg["num_classes"], cfg["channels"])
        return G, D

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        self.device = ctx.device
        self.image_shape = ctx.image_shape
        self.num_classes = len(ctx.class_names)
        if self.opts["network_pkl"]:
            return self._fit_pickle(ctx)
        self.pickled = False
        cfg = self._train_config(ctx)
        G, key = ctx.cached_weights("stylegan3", cfg, self.version, lambda: self._build(cfg)[0],
                                    lambda: self._train(ctx, cfg), state_key="G_ema")
        self.net = G.to(self.device).eval().requires_grad_(False)
        return {"weights": key, "dataset_digest": ctx.dataset_digest}

    def _fit_pickle(self, ctx: FitContext) -> dict[str, Any]:
        o = self.opts
        G = load_network_pickle(o["network_pkl"], o["trust_pickle"], o["code_dir"], key="G_ema", owner=self.name)
        missing = [a for a in ("z_dim", "c_dim", "img_channels") if not hasattr(G, a)]
        if missing or not callable(G):
            raise UserError(f"The G_ema in {o['network_pkl']} lacks {', '.join(missing) or 'a forward'}; "
                            f"stylegan3 expects an official NVlabs StyleGAN2/3 generator.")
        if G.c_dim not in (0, self.num_classes):
            raise UserError(f"The network pickle {o['network_pkl']} is conditional on {G.c_dim} classes but "
                            f"the dataset has {self.num_classes}; use a pickle trained on this dataset (or an "
                            f"unconditional one, whose samples are pseudo-labelled).")
        if G.img_channels not in (1, 3) or self.image_shape[0] not in (1, 3):
            raise UserError(f"Cannot map the pickle's {G.img_channels}-channel images to the dataset's "
                            f"{self.image_shape[0]} channels.")
        self.pickled = True
        self.conditional = G.c_dim > 0  # unconditional pickles are pseudo-labelled
        self.net = G.to(self.device).eval().requires_grad_(False) if isinstance(G, nn.Module) else G
        return {"network_pkl_sha256": file_digest(o["network_pkl"]), "dataset_digest": ctx.dataset_digest}

    def _train(self, ctx: FitContext, cfg: dict[str, Any]) -> StyleGAN3Net:
        """StyleGAN2's training loop (see the module docstring). Each step draws one
        batch of fakes, updates D on them (detached) and on reals (+ lazy R1),
        then updates G through the updated D on the same fakes, so G runs forward
        once per step."""
        from synthbench.benchmark.trainer import random_crop_flip

        dev = ctx.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("stylegan3-init", cfg["seed"]) & 0xFFFF_FFFF)
            G, D = self._build(cfg)
        G, D = G.to(dev).train(), D.to(dev).train()
        G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        mb = R1_INTERVAL / (R1_INTERVAL + 1)
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg["lr"], betas=(0.0, 0.99), eps=1e-8)
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg["lr"] * mb, betas=(0.0, 0.99 ** mb), eps=1e-8)
        gen = torch_generator(derive_seed("stylegan3-train", cfg["seed"]))
        x_all = ctx.train.images.to(dev)
        y_all = ctx.train.labels.to(dev)
        n, bs, nc = x_all.shape[0], cfg["batch_size"], cfg["num_classes"]
        run = ctx.resumable({"G": G, "D": D, "G_ema": G_ema, "opt_g": opt_g, "opt_d": opt_d, "gen": gen})
        progress = bar(range(run.start, cfg["steps"]), desc="train stylegan3", unit="step")
        for step in progress:
            idx = torch.randint(n, (bs,), generator=gen).to(dev)
            real = x_all[idx].float() / 127.5 - 1.0
            if cfg["hflip"]:
                real = random_crop_flip(real, 0, True, gen)
            c_real = F.one_hot(y_all[idx], nc).float()
            z = torch.randn(bs, G.z_dim, generator=gen).to(dev)
            c_fake = F.one_hot(y_all[torch.randint(n, (bs,), generator=gen).to(dev)], nc).float()
            fake = G(z, c_fake, update_emas=True)

            # D: softplus(D(fake)) + softplus(-D(real)), + lazy R1 on reals.
            D.requires_grad_(True)
            do_r1 = cfg["r1_gamma"] > 0 and step % R1_INTERVAL == 0
            real.requires_grad_(do_r1)
            real_logits = D(real, c_real)
            loss_d = F.softplus(D(fake.detach(), c_fake)).mean() + F.softplus(-real_logits).mean()
            if do_r1:
                r1 = r1_penalty(real_logits, real)
                loss_d = loss_d + r1.mean() * (cfg["r1_gamma"] / 2) * R1_INTERVAL
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

            # G: non-saturating logistic loss softplus(-D(G(z))).
            D.requires_grad_(False)
            loss_g = F.softplus(-D(fake, c_fake)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

            # EMA of G (StyleGAN2-ADA: half-life ema_kimg, ramped up over 5% of training).
            with torch.no_grad():
                ema_nimg = min(cfg["ema_kimg"] * 1000, (step + 1) * bs * 0.05)
                beta = 0.5 ** (bs / max(ema_nimg, 1e-8))
                for pe, p in zip(G_ema.parameters(), G.parameters()):
                    pe.copy_(p.lerp(pe, beta))
                for be, b in zip(G_ema.buffers(), G.buffers()):
                    be.copy_(b)
            if step % 50 == 0:
                progress.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}")
            run.step_done(step)
        G_ema = G_ema.cpu()
        self._estimate_class_centres(G_ema, nc, cfg["seed"])
        return G_ema

    @staticmethod
    @torch.no_grad()
    def _estimate_class_centres(G: StyleGAN3Net, num_classes: int, seed: int) -> None:
        """w_avg[c] = mean of f(z, c) over W_AVG_SAMPLES seeded z's: the centre the
        truncation trick pulls toward, per class."""
        gen = torch_generator(derive_seed("stylegan3-w-avg", seed))
        for c in range(num_classes):
            z = torch.randn(W_AVG_SAMPLES, G.z_dim, generator=gen)
            onehot = F.one_hot(torch.full((W_AVG_SAMPLES,), c), num_classes).float()
            G.mapping.w_avg[c] = G.mapping(z, onehot).mean(0)

    # -- generation ------------------------------------------------------
    @torch.no_grad()
    def _run(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """G on fixed ``eval_batch`` chunks (the last one padded with zeros), so a
        sample's computation does not depend on the batch it came in."""
        chunk = self.opts["eval_batch"]
        psi = self.opts["psi"]
        outs = []
        for i in range(0, z.shape[0], chunk):
            zb, cb = z[i:i + chunk], c[i:i + chunk]
            k = zb.shape[0]
            if k < chunk:
                zb = torch.cat([zb, zb.new_zeros((chunk - k, *zb.shape[1:]))])
                cb = torch.cat([cb, cb.new_zeros((chunk - k, *cb.shape[1:]))])
            zb, cb = zb.to(self.device), cb.to(self.device)
            if self.pickled:
                out = self.net(zb, cb, truncation_psi=psi, noise_mode="const")
            else:
                out = self.net(zb, cb, truncation_psi=psi)
            outs.append(out.float().cpu()[:k])
        return torch.cat(outs)

    def _match_dataset(self, x: torch.Tensor) -> torch.Tensor:
        """An official network's output in the dataset's channels and size."""
        ch = self.image_shape[0]
        if x.shape[1] == 3 and ch == 1:  # ITU-R BT.601 luma
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif x.shape[1] == 1 and ch == 3:
            x = x.expand(-1, 3, -1, -1)
        return resize_images(x, self.image_shape[1:])

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        labels = torch.as_tensor(labels, dtype=torch.long)
        c_dim = self.net.c_dim
        z = per_sample_normal(seeds, (self.net.z_dim,))
        c = F.one_hot(labels, c_dim).float() if c_dim > 0 else torch.zeros(len(seeds), 0)
        x = self._run(z, c)
        if self.pickled:
            x = self._match_dataset(x)
        return to_uint8(x)
