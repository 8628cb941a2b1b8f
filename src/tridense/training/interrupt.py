"""Interrupting and resuming a run: a checkpoint on Ctrl-C / SIGTERM, logs that continue, a stated time limit.

- :class:`InterruptCheckpoint` saves ``checkpoints/last.ckpt`` at the current step when the run is stopped
  by Ctrl-C (SIGINT) or SIGTERM, and :func:`interrupted_as_error` turns Lightning's exit into
  :class:`TrainingInterrupted`, a message saying where the checkpoint is and how to resume;
- :class:`ContinuingCSVLogger` appends to ``logs/csv/metrics.csv`` on resume (Lightning's CSV logger
  deletes it), dropping the rows logged after the checkpoint the run resumes from, which are logged again;
- :class:`RunAnnouncer` prints the run folder, the TensorBoard command and the time limit at the start,
  and says when the time limit, not ``max_steps``, ended training. ``trainer.max_time`` is a TOTAL over
  all invocations of a run (Lightning's Timer is restored from the checkpoint, and the learning-rate decay
  on the clock counts the same time); a resumed run that should train longer needs a larger ``max_time``.
"""

from __future__ import annotations

import csv
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from tridense.errors import ConfigError, TridenseError

MAX_TIME_FORMS = '"DD:HH:MM:SS" (e.g. 00:00:10:00), a number of seconds (e.g. 600), or null (no limit)'


class TrainingInterrupted(TridenseError):
    """A run stopped by a signal; ``exit_status`` is 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_status = 128 + signum


def parse_max_time(value: Any) -> str | None:
    """``trainer.max_time`` as Lightning's "DD:HH:MM:SS"; seconds (int or float) are converted.

    Raises ConfigError naming the accepted forms for anything else (e.g. "3min").
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"trainer.max_time: expected {MAX_TIME_FORMS}, got {value!r}")
    if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip())):
        seconds = round(float(value))
        if seconds <= 0:
            raise ConfigError(f"trainer.max_time must be positive, got {value!r}")
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"
    if isinstance(value, str) and re.fullmatch(r"\d+:\d+:\d+:\d+", value.strip()):
        return value.strip()
    raise ConfigError(f"trainer.max_time: expected {MAX_TIME_FORMS}, got {value!r}")


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


# --------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM
# --------------------------------------------------------------------------------------------------
class InterruptCheckpoint(L.Callback):
    """Ctrl-C or SIGTERM during ``fit``: save the current step to ``path`` (``checkpoints/last.ckpt``), stop.

    The first Ctrl-C is noted and acted on when the training step in progress ends (a step cut in half
    would leave batch-norm statistics updated by a batch the resumed run trains again); a second Ctrl-C
    stops at once, saving nothing. Lightning handles SIGTERM at a step boundary itself. The checkpoint
    carries the sampler's position (see :class:`tridense.training.data.StepResumableLoader`), so the
    resumed run continues exactly where this one stopped.
    """

    def __init__(self, path: Path, log: Any = print) -> None:
        self.path = Path(path)
        self.say = log
        self.signum: int | None = None
        self.saved: Path | None = None
        self.step = 0
        self.requested = False
        self._previous: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.requested:  # the second Ctrl-C: stop now
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        self.say("Ctrl-C: saving a checkpoint when this step ends (Ctrl-C again to stop at once, unsaved)")

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _stop_if_requested(self, trainer: L.Trainer) -> None:
        if self.requested and self.saved is None:
            self.signum, self.step = signal.SIGINT, trainer.global_step
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved = self.path
            raise KeyboardInterrupt

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.requested and hasattr(pl_module, "finish_batch"):
            pl_module.finish_batch()  # the module's counts of this step (its own hook runs after this one)
        self._stop_if_requested(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._stop_if_requested(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, KeyboardInterrupt):
            self.signum = signal.SIGINT  # saved already at a step end, or the second Ctrl-C: nothing saved
        elif isinstance(exception, SIGTERMException) and trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.signum, self.step = signal.SIGTERM, trainer.global_step
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved = self.path


@contextmanager
def interrupted_as_error(callback: InterruptCheckpoint, run_dir: Path) -> Iterator[None]:
    """Turn Lightning's exit after Ctrl-C / SIGTERM (SystemExit) into :class:`TrainingInterrupted`."""
    try:
        yield
    except (SystemExit, KeyboardInterrupt) as err:
        if callback.signum is None:
            raise
        name = "Ctrl-C (SIGINT)" if callback.signum == signal.SIGINT else "SIGTERM"
        if callback.saved is not None:
            where = f"saved step {callback.step} to {callback.saved}"
        else:
            where = "stopped at once, nothing saved (the last checkpoint, if any, is kept)"
        raise TrainingInterrupted(
            f"interrupted by {name}: {where}; resume with: tridense train --resume {run_dir}", callback.signum
        ) from err


# --------------------------------------------------------------------------------------------------
# Logs that continue
# --------------------------------------------------------------------------------------------------
class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, keeping an existing ``metrics.csv`` (rows up to ``keep_until``) instead of
    deleting it."""

    def __init__(self, log_dir: str, keep_until: int | None) -> None:
        self.keep_until = keep_until
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            rows = [r for r in reader if self.keep_until is None or _step_of(r) <= self.keep_until]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = fields


def _step_of(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or 0)
    except ValueError:
        return 0.0


class ContinuingCSVLogger(CSVLogger):
    """A CSV logger that continues ``metrics.csv`` when a run is resumed from step ``resume_step``."""

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _ContinuingWriter(log_dir=self.log_dir, keep_until=self.resume_step)
        return self._experiment


# --------------------------------------------------------------------------------------------------
# What the user sees at the start and the end
# --------------------------------------------------------------------------------------------------
class RunAnnouncer(L.Callback):
    """Print the run folder, the TensorBoard command and the time limit when training starts, and say
    when the time limit ended training before ``max_steps``."""

    def __init__(self, run_dir: Path, max_time: str | None, max_steps: int, log: Any = print) -> None:
        self.run_dir, self.max_time, self.max_steps, self.say = Path(run_dir), max_time, max_steps, log

    def _timer(self, trainer: L.Trainer) -> Timer | None:
        return next((c for c in trainer.callbacks if isinstance(c, Timer)), None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.say(f"run folder: {self.run_dir}")
        self.say(f"TensorBoard: tensorboard --logdir {self.run_dir / 'logs' / 'tensorboard'}")
        timer = self._timer(trainer)
        if timer is not None and self.max_time:
            spent = timer.time_elapsed("train")
            remaining = timer.time_remaining("train") or 0.0
            text = f"time limit: trainer.max_time={self.max_time}, in total over all invocations of this run"
            if trainer.global_step > 0:
                text += f" ({format_seconds(spent)} spent, {format_seconds(max(remaining, 0.0))} left)"
            self.say(text)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        timer = self._timer(trainer)
        remaining = timer.time_remaining("train") if timer is not None and self.max_time else None
        time_up = remaining is not None and remaining <= 0
        if not time_up or 0 < self.max_steps <= trainer.global_step:
            self.say(f"training ended at step {trainer.global_step}; testing the best checkpoint")
            return
        of = f" of {self.max_steps}" if self.max_steps > 0 else ""
        self.say(
            f"stopped by the time limit trainer.max_time={self.max_time} (a total over all invocations of the "
            f"run) at step {trainer.global_step}{of}; to train on, resume with a larger limit: "
            f"tridense train --resume {self.run_dir} trainer.max_time=DD:HH:MM:SS"
        )


def finished_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a finished run was tested with (``metrics/test.json`` exists), else None."""
    if not (run_dir / "metrics" / "test.json").is_file():
        return None
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    return None
