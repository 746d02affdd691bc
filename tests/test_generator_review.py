"""Regression tests from a review of the generator adapters against their papers
(Karras et al. 2022, arXiv 2206.00364; Nichol & Dhariwal 2021, arXiv 2102.09672;
Yuan et al. 2024, arXiv 2310.10402): each test failed on the code before its fix."""

from __future__ import annotations

import pytest
import torch

from synthbench.benchmark.options import resolve_options
from synthbench.errors import UserError
from synthbench.plugins import GENERATORS


def test_ddpm_sampler_steps_beyond_the_training_chain_is_refused_when_parsed():
    """The respaced chain has at most T = 1000 steps: 1001 passed validation and
    the fit, then every cell failed in diffusers' set_timesteps (ValueError)."""
    cls = GENERATORS.get("ddpm")
    assert resolve_options(cls.options, {"sampler_steps": "1000"}, "ddpm")["sampler_steps"] == 1000
    with pytest.raises(UserError, match="sampler_steps.*1..1000"):
        resolve_options(cls.options, {"sampler_steps": "1001"}, "ddpm")
    with pytest.raises(UserError, match="sampler_steps"):
        resolve_options(cls.options, {"sampler_steps": "0"}, "ddpm")
