"""The method seam with two optimisers (tests/training/toy_gan.py: a toy generator and critic under manual
optimisation): the module's own step and batch counts, both schedules, clipping of both optimisers, panel
names, checkpoints, crash- and kill-and-resume to identical weights, and a DDP run."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from toy_gan import ToyGAN
from training_runs import TINY_RUN, ddp_args, run_cli, start_cli, wait_for_file

from tridense.checkpoints import read_checkpoint
from tridense.errors import ConfigError
from tridense.training.config import load_config
from tridense.training.methods import METHODS, method_class
from tridense.training.module import DenseModule
from tridense.training.optim import lr_factor
from tridense.training.run import build_experiment, build_trainer, train

TOY = Path(__file__).with_name("toy_gan.py")
TINY = [
    "model.name=toy_generator",
    "method.name=toy_gan",
    "data.tasks=[depth]",
    *TINY_RUN,
    "eval.panel_samples=1",
]


def _run_toy_cli(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    return run_cli(args, script=TOY, **kwargs)


def test_methods_are_registered_and_dense_is_the_default():
    assert method_class("dense") is DenseModule
    assert METHODS["toy_gan"] is ToyGAN
    assert load_config(None, []).method.name == "dense"
    with pytest.raises(ConfigError, match=r"method\.name: 'gan' is not valid; valid values: \[.*'dense'"):
        load_config(None, ["method.name=gan"])
    with pytest.raises(ConfigError, match=r"\['critic_lrr'\] at method\.args; valid keys: \['adversarial_weight'"):
        load_config(None, [*TINY, "method.args={critic_lrr: 1.0}"])
    with pytest.raises(ConfigError, match="method 'dense' takes no options"):
        load_config(None, ["method.args={critic_lr: 1.0}"])


@pytest.mark.parametrize("precision", ["32-true", pytest.param("bf16-mixed", marks=pytest.mark.slow)])
def test_two_optimisers_count_steps_schedule_clip_and_stop(tmp_path, precision):
    """6 steps of 2 optimisers: Lightning's global_step says 12; the module, the schedules, the stop, the
    sampler's epoch, the panels and the checkpoint all count 6. Both (fused) optimisers are clipped, also
    under bf16 autocast."""
    cfg = load_config(
        None,
        [
            *TINY,
            f"trainer.precision={precision}",
            "trainer.max_steps=6",
            "optim.warmup_steps=2",
            "optim.min_lr_ratio=0.1",
            "optim.grad_clip=0.01",
            "method.args={critic_lr: 0.01}",
            f"run_dir={tmp_path / 'run'}",
        ],
    )
    experiment = build_experiment(cfg)
    trainer, *_ = build_trainer(cfg, experiment, tmp_path / "run")
    module = experiment.module
    assert trainer.max_steps == -1  # the module stops itself
    trainer.fit(module, datamodule=experiment.datamodule)

    assert (module.step, module.batches, trainer.global_step) == (6, 6, 12)
    # Both schedules decayed over 6 steps (not 12) to their floor.
    gen_opt, critic_opt = (o.optimizer for o in module.optimizers())
    assert [s.last_epoch for s in module.lr_schedulers()] == [6, 6]
    assert gen_opt.defaults["fused"] and critic_opt.defaults["fused"]
    assert lr_factor(6, 6, cfg.optim) == pytest.approx(0.1)
    assert [g["lr"] for g in gen_opt.param_groups] == [pytest.approx(cfg.optim.lr * 0.1)]  # one group: "rest"
    assert critic_opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.1)
    # Both optimisers were clipped before each of their steps.
    assert sorted(i for i, _ in module.clipped) == [0] * 6 + [1] * 6
    assert max(norm for _, norm in module.clipped) <= 0.01 * (1 + 1e-4)
    # The second epoch's order was drawn for epoch 1 (batches // 4), as a resumed run will draw it.
    assert trainer.train_dataloader.sampler.epoch == 1
    panels = sorted(p.name for p in (tmp_path / "run" / "panels").glob("step_*.png"))
    assert panels == ["step_0000004.png", "step_0000006.png"]
    checkpoint = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert checkpoint["counters"] == {"step": 6, "batches": 6}
    assert checkpoint["global_step"] == 12
    assert any(k.startswith("critic.") for k in checkpoint["state_dict"])


def _assert_same_weights(a: Path, b: Path) -> None:
    ca, cb = read_checkpoint(a / "checkpoints" / "last.ckpt"), read_checkpoint(b / "checkpoints" / "last.ckpt")
    assert ca["counters"] == cb["counters"]
    for key, value in ca["state_dict"].items():
        torch.testing.assert_close(cb["state_dict"][key], value, rtol=0, atol=0, msg=key)
    for sa, sb in zip(ca["lr_schedulers"], cb["lr_schedulers"], strict=True):
        assert sa["last_epoch"] == sb["last_epoch"]
    ra = json.loads((a / "metrics" / "test.json").read_text())["results"]
    rb = json.loads((b / "metrics" / "test.json").read_text())["results"]
    assert ra == rb


@pytest.mark.slow
def test_crashed_and_resumed_run_matches_the_uninterrupted_one(tmp_path):
    """A crash in epoch 2; resuming from the epoch-1 checkpoint gives the uninterrupted run's weights."""
    common = [*TINY, "trainer.max_steps=8", "trainer.deterministic=true"]
    straight = train(load_config(None, [*common, f"run_dir={tmp_path / 'straight'}"]))
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash at step 6"):
        train(load_config(None, [*common, f"run_dir={crashed}", "method.args={crash_at: 6}"]))
    assert read_checkpoint(crashed / "checkpoints" / "last.ckpt")["counters"] == {"step": 4, "batches": 4}
    train(overrides=["method.args={}"], resume=crashed)
    _assert_same_weights(straight, crashed)
    assert read_checkpoint(crashed / "checkpoints" / "last.ckpt")["counters"] == {"step": 8, "batches": 8}


@pytest.mark.slow
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path):
    """SIGKILL after the first checkpoint, resume from the command line: the uninterrupted run's weights."""
    common = [*TINY, "trainer.max_steps=12", "trainer.deterministic=true", "method.args={delay: 0.2}"]
    straight = train(load_config(None, [*common, f"run_dir={tmp_path / 'straight'}"]))
    killed = tmp_path / "killed"
    proc = start_cli(["train", *common, f"run_dir={killed}"], script=TOY)
    wait_for_file(proc, killed / "checkpoints" / "last.ckpt")
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = _run_toy_cli(["train", "--resume", str(killed)], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_weights(straight, killed)


@pytest.mark.slow
def test_two_optimisers_under_two_process_ddp_on_cpu(tmp_path):
    run_dir = tmp_path / "ddp"
    # the critic's backward leaves the generator without gradients: DDP must look for unused ones
    result = _run_toy_cli(["train", *TINY, *ddp_args(run_dir, "ddp_find_unused_parameters_true")], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["world_size"], summary["steps"], summary["batches"]) == (2, 4, 4)
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["counters"] == {"step": 4, "batches": 4}
    assert checkpoint["global_step"] == 8
    assert set(json.loads((run_dir / "metrics" / "test.json").read_text())["results"]) == {"depth"}
