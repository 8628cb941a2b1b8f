"""Partial supervision (GAD Table 5): a deterministic fraction of samples keeps its depth."""

from __future__ import annotations

import pytest
import torch

from tridense.data.partial import PartialTasks, kept_indices
from tridense.data.registry import build_dataset
from tridense.data.sample import collate
from tridense.errors import ConfigError


def test_kept_indices_exact_nested_deterministic():
    for fraction in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        kept = kept_indices(50, fraction, seed=3)
        assert len(kept) == round(50 * fraction) and len(set(kept.tolist())) == len(kept)
    assert set(kept_indices(50, 0.2, 3).tolist()) <= set(kept_indices(50, 0.4, 3).tolist())
    assert (kept_indices(50, 0.4, 3) == kept_indices(50, 0.4, 3)).all()
    assert (kept_indices(50, 0.4, 3) != kept_indices(50, 0.4, 4)).any()
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        kept_indices(10, 1.5)


def test_partial_dataset_masks_depth_and_collate_flags_it():
    data = build_dataset(
        "synthetic", None, "train", length=10, size=(24, 32), tasks=["depth", "semseg"], partial={"depth": 0.4}
    )
    assert isinstance(data, PartialTasks) and len(data) == 10 and data.tasks == ("depth", "semseg")
    assert data.num_classes == 14 and data.K.shape == (3, 3)  # wrapped attributes
    kept = set(kept_indices(10, 0.4).tolist())
    samples = [data[i] for i in range(10)]
    assert [("depth" in s) for s in samples] == [i in kept for i in range(10)]
    assert all("semseg" in s for s in samples)
    batch = collate(samples)
    assert batch["has_depth"].tolist() == [i in kept for i in range(10)]
    assert (batch["depth"][~batch["has_depth"]] == 0).all()
    assert "depth" not in data.load(next(i for i in range(10) if i not in kept))
    assert "partial: depth on 4/10" in data.describe()
    with pytest.raises(ConfigError, match="does not provide"):
        build_dataset("synthetic", None, "train", length=4, tasks=["semseg"], partial={"depth": 0.5})
    with pytest.raises(ConfigError, match="unknown task"):
        PartialTasks(data.dataset, {"albedo": 0.5})


def test_partial_survives_pickling():
    import pickle

    data = build_dataset("synthetic", None, "train", length=4, size=(16, 16), partial={"depth": 0.5})
    copy = pickle.loads(pickle.dumps(data))
    assert copy.kept == data.kept and torch.equal(copy[0]["image"], data[0]["image"])
