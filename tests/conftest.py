"""Shared fixtures: the real RGB-D samples in ../shared/data and small helpers.

The real samples are read from ``../shared/data`` (beside the repository) or from
``$TRIDENSE_SHARED_DATA``. Without them the tests that need them are skipped, unless
``TRIDENSE_REQUIRE_SHARED=1`` (set by ``.ci/run``), in which case they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("TRIDENSE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with nyu-mini/, kitti-mini/ and sunrgbd-mini/."""
    root = _shared_data()
    if not (root / "nyu-mini").is_dir():
        message = f"real samples not found at {root} (set TRIDENSE_SHARED_DATA)"
        if os.environ.get("TRIDENSE_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    # One intra-op thread: tests use small tensors, and on a 2-core machine shared with DataLoader workers
    # two threads mostly wait for each other.
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_deterministic_algorithms():
    """A run with ``trainer.deterministic=true`` turns deterministic algorithms on for the whole process
    (Lightning never turns them off): restore the flag so later tests see the default."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
