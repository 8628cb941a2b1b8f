"""Shared by the training tests: a tiny synthetic run's settings and ``tridense train`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: the settings every test run shares: no loader workers, no progress bar, float32, validation at every epoch end
TEST_RUN: list[str] = [
    "data.num_workers=0",
    "trainer.progress_bar=false",
    "trainer.precision=32-true",
    "trainer.val_every_n_steps=null",
]
#: :data:`TEST_RUN` with no time limit (a run gets its steps however slow the machine) and no panels
UNTIMED_RUN: list[str] = [*TEST_RUN, "trainer.max_time=null", "eval.panel_samples=0"]
#: a synthetic run small enough for a test (each file adds its model, method and ``eval.panel_samples``);
#: validation at every epoch end is every 4 batches
TINY_RUN: list[str] = [
    "data.size=[32,48]",
    "data.batch_size=4",
    "data.split_args={train: {length: 16}, val: {length: 4}, test: {length: 4}}",
    *TEST_RUN,
]


def _env() -> dict[str, str]:
    """A subprocess's environment: this one, with unbuffered output and one thread per process."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def command(script: Path | None = None) -> list[str]:
    """``python -m tridense``, or ``python SCRIPT`` (a test's own entry point, e.g. toy_gan.py)."""
    return [sys.executable, str(script)] if script is not None else [sys.executable, "-m", "tridense"]


def run_cli(args: list[str], *, script: Path | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run the command line to its end, capturing its text output."""
    return subprocess.run([*command(script), *args], capture_output=True, text=True, env=_env(), **kwargs)


def start_cli(args: list[str], *, script: Path | None = None, capture: bool = False) -> subprocess.Popen:
    """Start the command line in the background (its output piped as text if ``capture``, else dropped)."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen([*command(script), *args], stdout=out, stderr=out, text=True, env=_env())


def wait_for_file(proc: subprocess.Popen, path: Path, timeout: float = 300) -> None:
    """Wait until ``path`` exists (a run's first checkpoint), the process ends, or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)


def ddp_args(run_dir: Path, strategy: str = "ddp") -> list[str]:
    """Settings of a four-step run on two CPU processes."""
    return [
        f"run_dir={run_dir}",
        "trainer.max_steps=4",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"trainer.strategy={strategy}",
    ]
