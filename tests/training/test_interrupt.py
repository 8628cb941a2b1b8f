"""Interrupting a run: Ctrl-C saves the current step, resume continues it exactly, logs keep their history."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.utilities.types import _Stateful
from training_runs import TINY_RUN, run_cli, start_cli, wait_for_file

from tridense.checkpoints import read_checkpoint
from tridense.errors import ConfigError
from tridense.training.config import load_config
from tridense.training.data import EpochSampler, StepResumableLoader
from tridense.training.interrupt import ContinuingCSVLogger, parse_max_time
from tridense.training.run import train

TINY = [*TINY_RUN, "eval.panel_samples=0"]


def test_max_time_forms() -> None:
    assert parse_max_time("00:01:02:03") == "00:01:02:03"
    assert parse_max_time(600) == "00:00:10:00"
    assert parse_max_time("90") == "00:00:01:30"
    assert parse_max_time(None) is None
    for bad in ("3min", "1:2", True, 0):
        with pytest.raises(ConfigError, match=r"DD:HH:MM:SS|positive"):
            parse_max_time(bad)


def test_csv_log_continues_from_the_resumed_step(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs" / "csv"
    log_dir.mkdir(parents=True)
    with (log_dir / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "loss", "step"])
        writer.writeheader()
        writer.writerows({"epoch": 0, "loss": 1.0 / s, "step": s} for s in range(1, 11))
    logger = ContinuingCSVLogger(tmp_path / "logs", name="csv", version="", resume_step=6)
    logger.log_metrics({"loss": 0.5}, step=7)
    logger.save()
    with (log_dir / "metrics.csv").open(newline="") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == [1, 2, 3, 4, 5, 6, 7]  # history kept; the steps after the checkpoint are logged again


def test_training_loader_is_stateful_and_skips_what_the_step_has_trained() -> None:
    trainer = SimpleNamespace(global_step=6)
    sampler = EpochSampler(16, shuffle=True, seed=3, drop_last=True)
    sampler.epoch_fn = lambda: trainer.global_step // 4
    sampler.skip_fn = lambda: (trainer.global_step % 4) * 4
    loader = StepResumableLoader(list(range(16)), batch_size=4, sampler=sampler)
    assert isinstance(loader, _Stateful)  # Lightning then knows it resumes exactly (no "not resumable")
    resumed = list(sampler)
    trainer.global_step = 4
    whole_epoch = list(sampler)
    assert resumed == whole_epoch[8:]  # step 6 of epoch 1: the first two batches are skipped
    assert loader.state_dict() == {"epoch": 1, "samples_done_in_epoch": 0}


def test_resume_before_the_first_checkpoint_starts_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    train(load_config(None, [*TINY, f"run_dir={run}", "trainer.max_steps=1"]))
    for name in ("checkpoints", "metrics"):  # as if killed (SIGKILL) before the first checkpoint
        for path in (run / name).iterdir():
            path.unlink()
    train(resume=run)
    assert "starting it from step 0" in capsys.readouterr().out
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 1


@pytest.mark.slow
def test_ctrl_c_saves_the_step_and_resume_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    common = [*TINY, "trainer.max_steps=24", "trainer.deterministic=true", "trainer.log_every_n_steps=1"]
    straight = train(load_config(None, [*common, f"run_dir={tmp_path / 'straight'}"]))

    run = tmp_path / "interrupted"
    proc = start_cli(["train", *common, f"run_dir={run}"], capture=True)
    first = run / "checkpoints" / "last.ckpt"
    wait_for_file(proc, first)
    time.sleep(1.0)  # into the next epoch
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert f"resume with: tridense train --resume {run}" in err and "Traceback" not in err
    saved = read_checkpoint(first)["global_step"]
    assert 0 < saved < 24
    assert not (run / "metrics" / "test.json").exists()
    rows_before = _csv_rows(run / "logs" / "csv" / "metrics.csv")
    resumed = run_cli(["-v", "train", "--resume", str(run)], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr
    a = read_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 24
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    rows_after = _csv_rows(run / "logs" / "csv" / "metrics.csv")
    kept = [row for row in rows_before if int(row["step"]) <= saved]
    assert kept and rows_after[: len(kept)] == kept  # the history before the interruption is still there
    steps = [int(row["step"]) for row in rows_after]
    assert steps == sorted(steps) and steps[-1] >= 23  # one history, in order, up to the end


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv without their empty cells (the column order changes when keys are added)."""
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_sigterm_saves_the_step_and_exits_143(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = start_cli(["train", *TINY, "trainer.max_steps=400", f"run_dir={run}"], capture=True)
    first = run / "checkpoints" / "last.ckpt"
    wait_for_file(proc, first)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM: saved step" in err and f"--resume {run}" in err
    assert read_checkpoint(first)["global_step"] >= 4
