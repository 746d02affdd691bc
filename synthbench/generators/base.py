"""The generator adapter interface (DESIGN.md section 3); plugin authors import
it from :mod:`synthbench.api`.

An adapter turns (label, seed) pairs into uint8 images of the dataset's shape.
Contract, checked for every registered adapter by ``synthbench validate`` (and so
by ``tests/test_conformance.py``):

- ``fit(ctx)`` trains on ``ctx.train`` (never the test split) and returns its
  *identity*: whatever, beyond name, version and options, determines its outputs
  (the data digest, a weights digest); the sample cache keys on it;
- ``sample(labels, seeds)``: image i depends on ``seeds[i]`` and ``labels[i]``
  only, never on the batch it was drawn in; the same seeds give identical bytes;
- output is ``uint8 [N, C, H, W]`` with the dataset's C, H, W;
- a conditional adapter's image i shows class ``labels[i]``; an unconditional one
  sets ``conditional = False`` and its samples are pseudo-labelled by the
  reference classifier (Basu, Karanam & Ramadwar, "Exploring Synthetic Data
  Generation using Diffusion Models", Sec. 3.3.2);
- ``reconstruct`` (optional, ``can_reconstruct = True``) is the real-sample
  reconstruction of Yamaguchi & Fukuda 2023 (arXiv 2311.13090, Algorithm 1) or
  its equivalent.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch

from synthbench.benchmark.cache import digest
from synthbench.benchmark.context import FitContext
from synthbench.benchmark.options import Configurable, keyed_options
from synthbench.errors import UserError

__all__ = ["FitContext", "Generator"]  # FitContext: re-exported for one version (it moved to the harness)


class Generator(Configurable):
    """Base class of generator adapters."""

    name: ClassVar[str] = "?"
    version: ClassVar[int] = 1
    """Bump whenever the adapter's outputs change for the same options."""
    conditional: bool = True
    """Whether sample i shows ``labels[i]``; an adapter may set it per instance in
    ``fit`` (an unconditional checkpoint). False: pseudo-labelled samples."""
    can_reconstruct: ClassVar[bool] = False
    oracle: ClassVar[bool] = False
    """True only for ``real``: its x1 pool is the real train split itself."""
    needs: ClassVar[str] = "nothing"
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    """The method's paper, cited by authors, year, title and arXiv id (the
    leaderboard's generator card shows it)."""
    paper_url: ClassVar[str] = ""
    argument_option: ClassVar[str | None] = None
    """The option ``NAME:ARGUMENT`` sets (``samples:PATH`` sets ``path``), or None
    when the adapter takes no argument after its name."""
    refits: ClassVar[bool] = True
    """False for an adapter whose images no fit changes (``samples``; ``sd``,
    pretrained weights used as they are): protocols that fit it on another split
    (``mia``'s members) record ``unsupported``."""

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.device = torch.device("cpu")
        self.identity: dict[str, Any] = {}
        """What :meth:`fit` returned (set by :meth:`fitted`)."""
        self.notes: dict[str, Any] = {}
        """What the record should say about how the samples were made (``fit``
        may set it: the source read, a conversion); kept in each record's
        ``details["generator_notes"]``."""

    # -- declarations the harness asks ------------------------------------
    @classmethod
    def spec_extras(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Facts beyond the options that belong in a cell's key (e.g. a checkpoint
        file's digest), computed before anything is fitted. A fact that ``fit``
        also returns in its identity, under the same name, must come out the
        same there: the harness refuses a cell whose inputs changed between
        planning and fitting (a samples folder edited during a run), which
        would otherwise be stored under a key that names other files."""
        return {}

    @classmethod
    def builds_on(cls, options: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The generator whose fit this one's starts from, as (registered name,
        options), or None. ``realfake`` fine-tunes the network ``edm`` trains:
        the plan runs that fit as a task of its own, before this one's, so a dry
        run and ``status`` count its hours when its weights are not cached, and
        the arms of an ablation wait for one base instead of for each other.
        Options as a suite gives them (the base's defaults fill the rest); the
        base itself builds on nothing (one level). A fit that trains its base
        itself charges it to the cost phase ``fit_base_s``, which the dry run
        leaves out of this generator's own fit estimate."""
        return None

    @classmethod
    def resolve_argument(cls, argument: str, given: dict[str, Any]) -> dict[str, Any]:
        """The options ``NAME:ARGUMENT`` stands for, ``given`` ones kept (an
        adapter with an :attr:`argument_option` may normalise the argument)."""
        if cls.argument_option is None:
            raise UserError(f"The generator {cls.name} takes no argument after its name; give it as {cls.name}, "
                            f"and its options with --option KEY=VALUE.")
        return {**given, cls.argument_option: argument}

    @classmethod
    def unconditional_options(cls) -> dict[str, Any] | None:
        """Option overrides that make this adapter unconditional (``longtail``'s
        control, Basu et al. Sec. 3.3.2), or None when it has no such mode."""
        return None

    @classmethod
    def unconditional_by_options(cls, options: dict[str, Any]) -> bool:
        """Whether ``options`` set the unconditional mode
        :meth:`unconditional_options` declares: known before any fit (an adapter
        may still turn out unconditional in ``fit``, from its checkpoint)."""
        overrides = cls.unconditional_options() or {}
        return bool(overrides) and all(options.get(k) == v for k, v in overrides.items())

    def pseudo_label_threshold(self) -> float:
        """Unconditional samples whose pseudo-label confidence falls below this
        are dropped (Basu et al. Sec. 3.3.2); 0 keeps every sample."""
        return 0.0

    # -- lifecycle -------------------------------------------------------
    def fit(self, ctx: FitContext) -> dict[str, Any]:
        """Train or fine-tune on ``ctx.train`` (optional) and return the fitted
        identity, e.g. ``{"dataset_digest": ctx.dataset_digest, "weights": key}``."""
        self.device = ctx.device
        return {"dataset_digest": ctx.dataset_digest}

    def fitted(self, ctx: FitContext) -> "Generator":
        """Fit and keep the identity ``fit`` returns: how the harness fits."""
        identity = self.fit(ctx)
        if not isinstance(identity, dict):
            raise UserError(
                f"Generator {self.name}'s fit() returned {type(identity).__name__}, not its identity. fit must "
                f"return a dict of what determines its samples beyond name, version and options, e.g. "
                f"{{'dataset_digest': ctx.dataset_digest}} (see synthbench.api.Generator.fit).")
        self.identity = identity
        return self

    def fit_identity(self) -> dict[str, Any]:
        """Everything that determines this fitted generator's outputs (options
        declared ``in_key=False``, which do not, are left out)."""
        return {"name": self.name, "version": self.version, "options": keyed_options(self.options, self.opts),
                **self.identity}

    def fingerprint(self) -> str:
        return digest(self.fit_identity())

    # -- generation ------------------------------------------------------
    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def sample_pool(self, labels: torch.Tensor, run_seed: int, start: int) -> torch.Tensor:
        """Images ``start..len(labels)-1`` of run seed ``run_seed``'s sample pool,
        whose label stream begins with ``labels``: what the sample cache asks, block
        by block. By default sample i is ``sample`` with the i-th pool seed
        (``seeding.sample_seeds``); an adapter that must not repeat an image within
        a pool (``samples``) overrides it, prefix-stably."""
        from synthbench.benchmark.seeding import sample_seeds

        return self.sample(labels[start:], sample_seeds(run_seed, start, len(labels)))

    def pool_limit(self, labels: torch.Tensor) -> int | None:
        """The longest pool (over ``labels`` cycled) this adapter can draw, or None
        when it has no limit; ``scaleup`` runs only the multiples that fit."""
        return None

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor, t_re: int,
                    seeds: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} cannot reconstruct real samples")

    def recon_sigma(self, t_re: int, sigma: float | None = None) -> float | None:
        """Optional: the noise level ``reconstruct`` starts from at ``t_re``, as the
        variance-exploding sigma of x_t = x_0 + sigma eps (a variance-preserving
        model's sqrt((1 - abar_t) / abar_t) at its start step), in the units of
        what its network denoises ([-1, 1] pixels; a latent model's latents). With
        ``sigma``: the level it actually starts from when asked for that one by
        ``reconstruct(..., sigma=sigma)`` (a discrete schedule rounds it), or None
        when it cannot start from a given level. Asked of a fitted generator.

        ``recon`` records it per t_re with the equivalent step of the reference
        DDPM-linear schedule (``diffusion.ddpm_linear_step``). None, the default:
        unknown; ``recon`` then records no noise level, and its ``t_re_scale=sigma``
        mode, which needs ``reconstruct`` to take a keyword ``sigma`` (and
        ``churn > 0`` a keyword ``churn``), reports the adapter as unsupported."""
        return None
