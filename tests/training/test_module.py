"""The training module's schedule (steps and clock), optimiser construction and precision choice."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from tridense.losses.multitask import MultiTaskLoss, build_task_losses
from tridense.training import run as run_module
from tridense.training.config import EvalConfig, OptimConfig, load_config
from tridense.training.module import DenseModule, lr_factor


def test_lr_factor_warmup_then_poly():
    cfg = OptimConfig(warmup_steps=10, schedule="poly", poly_power=1.0)
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, cfg) == pytest.approx(0.5)  # half of the 100 decay steps
    assert lr_factor(110, 110, cfg) == pytest.approx(0.0)


def test_the_clock_drives_the_decay_when_it_is_ahead_of_the_steps():
    cfg = OptimConfig(warmup_steps=0, schedule="poly", poly_power=1.0)
    assert lr_factor(10, 100, cfg, clock=0.75) == pytest.approx(0.25)  # time ahead: time decides
    assert lr_factor(90, 100, cfg, clock=0.5) == pytest.approx(0.1)  # steps ahead: steps decide
    assert lr_factor(10, 100, cfg, clock=1.0) == pytest.approx(0.0)  # the time limit ends the decay
    cosine = OptimConfig(warmup_steps=0, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 100, cosine, clock=1.0) == pytest.approx(0.1)
    warm = OptimConfig(warmup_steps=10)
    assert lr_factor(4, 100, warm, clock=0.9) == pytest.approx(0.5)  # warm-up still counts steps


def _module(optim: OptimConfig, trainer: L.Trainer) -> DenseModule:
    model = nn.Sequential(nn.Conv2d(3, 4, 1))
    module = DenseModule(
        model,
        MultiTaskLoss(build_task_losses(["depth"])),
        tasks=["depth"],
        num_classes=None,
        optim=optim,
        evaluation=EvalConfig(),
    )
    module.trainer = trainer
    return module


def _timer(trainer: L.Trainer) -> L.Callback:
    from lightning.pytorch.callbacks import Timer

    return next(c for c in trainer.callbacks if isinstance(c, Timer))


def _module_at_three_quarters_of_its_time(monkeypatch) -> DenseModule:
    """A module on a trainer with a 10-minute limit whose clock says 450 s spent, 150 s left."""
    trainer = L.Trainer(max_time="00:00:10:00", max_steps=1000, logger=False, enable_checkpointing=False)
    module = _module(OptimConfig(warmup_steps=0, poly_power=1.0, lr=1.0), trainer)
    monkeypatch.setattr(L.Trainer, "estimated_stepping_batches", property(lambda self: 1000))
    timer = _timer(trainer)
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 450.0)
    monkeypatch.setattr(timer, "time_remaining", lambda stage="train": 150.0)
    return module


def test_scheduler_reads_the_trainers_clock(monkeypatch):
    module = _module_at_three_quarters_of_its_time(monkeypatch)
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert scheduler.get_last_lr()[0] == pytest.approx(0.25)  # 3/4 of the time spent at step 0

    module.optim_cfg = OptimConfig(warmup_steps=0, poly_power=1.0, lr=1.0, anneal_by_time=False)
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert scheduler.get_last_lr()[0] == pytest.approx(1.0)


def test_deterministic_mode_counts_steps_only(monkeypatch):
    module = _module_at_three_quarters_of_its_time(monkeypatch)
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.warns(UserWarning, match="anneal_by_time is ignored"):
            scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    finally:
        torch.use_deterministic_algorithms(False)
    assert scheduler.get_last_lr()[0] == pytest.approx(1.0)


def test_adam_optimisers_are_fused_except_under_fp16(monkeypatch):
    trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False)
    module = _module(OptimConfig(optimizer="adamw"), trainer)
    monkeypatch.setattr(L.Trainer, "estimated_stepping_batches", property(lambda self: 10))
    assert module.configure_optimizers()["optimizer"].defaults["fused"] is True
    monkeypatch.setattr(type(trainer), "precision", property(lambda self: "16-mixed"))
    assert not module.configure_optimizers()["optimizer"].defaults["fused"]


def test_gradient_clipping_clips_the_global_norm_before_each_optimiser_step():
    """The module clips in on_before_optimizer_step (automatic and manual optimisation alike), with the fused
    optimiser that Lightning's own clipping refuses under mixed precision."""
    trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False)
    module = _module(OptimConfig(grad_clip=1.0), trainer)
    opt = torch.optim.AdamW(module.model.parameters(), fused=True)
    for p in module.model.parameters():
        p.grad = torch.full_like(p, 10.0)
    module.on_before_optimizer_step(opt)
    total = torch.sqrt(sum(p.grad.square().sum() for p in module.model.parameters()))
    assert total == pytest.approx(1.0, rel=1e-5)
    assert "gradient_clip_val" not in run_module._trainer_kwargs(load_config(None, []), module)


def test_auto_precision_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(run_module, "cpu_has_amx", lambda: True)
    assert run_module.resolve_precision("auto", "auto") == "bf16-mixed"
    assert run_module.resolve_precision("auto", "cpu") == "bf16-mixed"
    assert run_module.resolve_precision("32-true", "auto") == "32-true"
    monkeypatch.setattr(run_module, "cpu_has_amx", lambda: False)
    assert run_module.resolve_precision("auto", "auto") == "32-true"
