"""Training end to end: the run folder, kill-and-resume determinism, divergence, DDP on two CPU processes."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import pytest
import torch
from training_runs import TINY_RUN, ddp_args, run_cli, start_cli, wait_for_file

from tridense.checkpoints import read_checkpoint
from tridense.errors import ConfigError
from tridense.training.config import load_config
from tridense.training.run import train

TINY = [*TINY_RUN, "eval.panel_samples=2"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_folder_contents(tmp_path):
    run = train(load_config(None, [*TINY, f"run_dir={tmp_path / 'run'}", "trainer.max_steps=8"]))
    for rel in (
        "config.yaml",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "metrics/test.json",
        "metrics/test.md",
        "summary.json",
        "logs/csv/metrics.csv",
    ):
        assert (run / rel).is_file(), rel
    assert list((run / "panels").glob("step_*.png"))
    result = json.loads((run / "metrics" / "test.json").read_text())
    assert result["checkpoint"].endswith("best.ckpt")
    assert set(result["results"]) == {"depth", "normals", "semseg"}
    assert 0 <= result["results"]["depth"]["delta1"] <= 1
    # The checkpoint is self-describing and loads with weights_only=True.
    checkpoint = read_checkpoint(run / "checkpoints" / "best.ckpt")
    assert checkpoint["tridense"]["tasks"] == ["depth", "normals", "semseg"]
    # A second run into the same folder is refused: nothing the user had is overwritten.
    with pytest.raises(ConfigError, match="exists"):
        train(load_config(None, [*TINY, f"run_dir={run}", "trainer.max_steps=8"]))


def test_bf16_mixed_precision_trains_with_the_fused_optimiser_and_clipping(tmp_path):
    """bf16 autocast (the CPU default where AMX exists) with the fused AdamW and gradient clipping."""
    run = train(
        load_config(
            None, [*TINY, f"run_dir={tmp_path / 'run'}", "trainer.max_steps=2", "trainer.precision=bf16-mixed"]
        )
    )
    checkpoint = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert all(v.dtype == torch.float32 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    result = json.loads((run / "metrics" / "test.json").read_text())
    assert 0 <= result["results"]["depth"]["delta1"] <= 1


@pytest.mark.slow
def test_killed_and_resumed_run_matches_the_uninterrupted_one(tmp_path):
    """SIGKILL mid-training, resume from the last epoch-end checkpoint: same final weights and metrics."""
    common = [
        *TINY,
        "model.name=pap",
        "loss.extra={pairwise: {pairs: 50}}",
        "trainer.max_steps=16",
        "trainer.deterministic=true",
    ]
    straight = train(load_config(None, [*common, f"run_dir={tmp_path / 'straight'}"]))

    killed = tmp_path / "killed"
    proc = start_cli(["train", *common, f"run_dir={killed}"])
    wait_for_file(proc, killed / "checkpoints" / "last.ckpt")
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics" / "test.json").exists()
    resumed = run_cli(["train", "--resume", str(killed)], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = read_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = read_checkpoint(killed / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 16
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    ra = json.loads((straight / "metrics" / "test.json").read_text())["results"]
    rb = json.loads((killed / "metrics" / "test.json").read_text())["results"]
    assert ra == rb


def test_resume_without_a_run_folder_is_a_clear_error(tmp_path):
    # (a run folder without a checkpoint starts again: tests/training/test_interrupt.py)
    with pytest.raises(ConfigError, match=r"no config\.yaml"):
        train(resume=tmp_path / "nothing")


def test_non_finite_loss_stops_with_the_term_named(tmp_path, monkeypatch):
    from tridense.losses import multitask
    from tridense.training.module import TrainingDivergedError

    original = multitask.DepthLoss.forward
    calls = {"n": 0}

    def exploding(self, pred, batch):
        calls["n"] += 1
        value = original(self, pred, batch)
        return value * float("nan") if calls["n"] > 5 else value

    monkeypatch.setattr(multitask.DepthLoss, "forward", exploding)
    run_dir = tmp_path / "run"
    # The baseline computes one depth loss per step (PAP adds one for its initial prediction).
    cfg = load_config(
        None,
        [*TINY, f"run_dir={run_dir}", "model.name=mtl_baseline", "trainer.max_steps=12", "eval.panel_samples=0"],
    )
    with pytest.raises(TrainingDivergedError, match=r"depth = nan") as info:
        train(cfg)
    assert "step 5" in str(info.value)
    # The checkpoint of the first epoch (4 steps) was written and is intact.
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 4


def test_freeze_and_init_from_checkpoint(tmp_path):
    """The staged protocol of PAP's Table 7: train depth+normals, then initialise from it, freeze the normal
    branch, and train depth alone (the frozen normal affinities still take part)."""
    first = train(load_config(None, [*TINY, f"run_dir={tmp_path / 'a'}", "trainer.max_steps=4"]))
    source = read_checkpoint(first / "checkpoints" / "last.ckpt")["state_dict"]
    second = train(
        load_config(
            None,
            [
                *TINY,
                f"run_dir={tmp_path / 'b'}",
                "trainer.max_steps=4",
                "data.tasks=[depth]",
                "model.args={tasks: [depth, normals]}",
                f"init.checkpoint={first / 'checkpoints' / 'last.ckpt'}",
                "init.freeze=['task_nets.normals.*', 'recon.normals.*', 'pap.projections.1.*']",
            ],
        )
    )
    after = read_checkpoint(second / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in after.items():
        if ".normals." in key:  # frozen branch: weights and batch-norm statistics unchanged
            torch.testing.assert_close(value, source[key], rtol=0, atol=0, msg=key)
    for key in (k for k in after if k.startswith("model.pap.projections.1.")):
        torch.testing.assert_close(after[key], source[key], rtol=0, atol=0, msg=key)
    changed = [k for k in after if k.startswith("model.task_nets.depth") and not torch.equal(after[k], source[k])]
    assert changed
    info = json.loads((second / "metrics" / "test.json").read_text())
    assert set(info["results"]) == {"depth"}


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    run_dir = tmp_path / "ddp"
    result = run_cli(["train", *TINY, *ddp_args(run_dir)], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    results = json.loads((run_dir / "metrics" / "test.json").read_text())["results"]
    assert set(results) == {"depth", "normals", "semseg"}


def test_a_run_shorter_than_the_validation_interval_tests_its_final_weights(tmp_path, capsys):
    """max_steps below trainer.val_every_n_steps: no validation ran, the final weights are saved and tested."""
    from tridense.training.config import load_config
    from tridense.training.run import train

    run = tmp_path / "short"
    overrides = [*TINY_RUN, "trainer.max_steps=2", "trainer.val_every_n_steps=400", "eval.panel_samples=0"]
    overrides.append(f"run_dir={run}")
    train(load_config(None, overrides))
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "metrics" / "test.json").is_file()
    assert "no validation ran before training ended at step 2" in capsys.readouterr().out
