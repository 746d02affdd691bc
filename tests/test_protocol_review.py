"""Bugs found by the protocols review (synthbench/protocols and what they use),
each test failing on the code before its fix."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch

from synthbench.benchmark.datasets import Split
from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.plugins import PROTOCOLS


def _step_preset():
    """The smoke preset with the paper presets' step schedule (x0.1 every 2 of 4 epochs)."""
    return dataclasses.replace(PRESETS["smoke"], lr_schedule="step", epochs=4, lr_step_epochs=2, batch_size=10,
                               optimizer="sgd", lr=0.01)


def _learning_rates(monkeypatch, **kwargs) -> list[float]:
    """Every learning rate a tiny training run steps through."""
    from synthbench.benchmark import trainer

    seen: list[float] = []
    step = torch.optim.lr_scheduler.LambdaLR.step

    def recording(self, *a, **k):
        step(self, *a, **k)
        seen.append(round(self.get_last_lr()[0], 9))

    monkeypatch.setattr(torch.optim.lr_scheduler.LambdaLR, "step", recording)
    gen = torch.Generator().manual_seed(0)
    n = kwargs.pop("n")
    x = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=gen)
    trainer.train_classifier(x, torch.arange(n) % 10, 10, _step_preset(), 0, torch.device("cpu"), False, **kwargs)
    return seen


def test_trainer_step_schedule_decays_at_the_given_period(monkeypatch):
    real = list(_learning_rates(monkeypatch, n=100))  # 4 epochs x 10 steps, x0.1 at steps 20 and 40
    assert sorted(set(real), reverse=True) == [0.01, 0.001, 0.0001]
    # x5 the images at the real run's 40 steps: lr_step_epochs epochs of them are 100 steps, beyond the budget
    monkeypatch.undo()
    bigger = _learning_rates(monkeypatch, n=500, max_steps=40, lr_step=20)
    assert bigger == real


def test_scaleup_steps_budget_decays_at_the_real_runs_steps():
    """scaleup budget=steps on a step-schedule preset (paper, paper-r50): every
    multiple's classifier got the real run's step count but kept its own
    lr_step_epochs epochs as the decay period, 10x the steps at x10, so past x1
    the rate never decayed (paper: lr 0.01 throughout, where the real run decays
    at epochs 30, 60, 90)."""
    cls = PROTOCOLS.get("scaleup")
    proto = cls(**resolve_options(cls.options, {"multiples": "1,5", "budget": "steps"}, "scaleup"))
    preset = dataclasses.replace(PRESETS["paper"], batch_size=10)
    train = Split(torch.zeros(100, 1, 8, 8, dtype=torch.uint8), torch.arange(100) % 10)
    asked = []
    ev = SimpleNamespace(top1=0.5, n=10, per_class=[0.5] * 10, metric=lambda: {"value": 0.5})

    def synthetic(n, **_):
        return Split(torch.zeros(n, 1, 8, 8, dtype=torch.uint8), torch.arange(n) % 10)

    ctx = SimpleNamespace(dataset=SimpleNamespace(train=train), preset=preset, seed=0,
                          generator=SimpleNamespace(name="g", pool_limit=lambda labels: None),
                          synthetic=synthetic, reference_classifier=lambda: None, evaluate=lambda model: ev,
                          train=lambda split, desc, **kw: asked.append((len(split), kw)))
    proto.run(ctx)
    steps_per_epoch = 10
    want = {"max_steps": preset.epochs * steps_per_epoch, "lr_step": preset.lr_step_epochs * steps_per_epoch}
    assert asked == [(100, want), (500, want)]
