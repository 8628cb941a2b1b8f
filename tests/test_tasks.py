"""The task table and the comparable-space helper."""

from __future__ import annotations

import pytest
import torch

from tridense.data.sample import IGNORE_INDEX, TASKS
from tridense.data.transforms import hflip_sample
from tridense.errors import ConfigError
from tridense.tasks import TASK_SPECS, activate, check_tasks, task_maps, task_spec


def test_table_covers_the_contract_tasks_in_order():
    assert tuple(TASK_SPECS) == TASKS
    assert [TASK_SPECS[t].channels(7) for t in TASKS] == [1, 3, 7]
    assert [TASK_SPECS[t].invalid for t in TASKS] == [0.0, 0.0, IGNORE_INDEX]
    assert {t: s.score for t, s in TASK_SPECS.items()} == {
        "depth": ("delta1", 1.0),
        "normals": ("within_22.5", 0.01),
        "semseg": ("miou", 1.0),
    }
    assert [TASK_SPECS[t].default_loss for t in TASKS] == ["berhu", "l1", "ce"]
    with pytest.raises(ConfigError, match="num_classes"):
        task_spec("semseg").channels(None)
    with pytest.raises(ConfigError, match="valid: \\['depth', 'normals', 'semseg'\\]"):
        task_spec("height")
    with pytest.raises(ConfigError, match="without repeats"):
        check_tasks(["depth", "depth"])


def test_activations_follow_the_model_contract():
    raw = torch.randn(2, 3, 4, 4) * 5
    assert (activate("depth", raw[:, :1], min_depth=0.01) > 0.01 - 1e-7).all()
    torch.testing.assert_close(activate("normals", raw).norm(dim=1), torch.ones(2, 4, 4))
    torch.testing.assert_close(activate("semseg", raw), raw)
    assert activate("semseg", raw.bfloat16()).dtype == torch.float32


def test_flip_rules_match_the_sample_transform():
    g = torch.Generator().manual_seed(0)
    sample = {
        "image": torch.rand(3, 4, 5, generator=g),
        "depth": torch.rand(1, 4, 5, generator=g),
        "normals": torch.randn(3, 4, 5, generator=g),
        "semseg": torch.randint(0, 4, (4, 5), generator=g),
    }
    flipped = hflip_sample(sample)
    for task in TASKS:
        torch.testing.assert_close(TASK_SPECS[task].flip(sample[task]), flipped[task])
    twice = TASK_SPECS["normals"].flip(TASK_SPECS["normals"].flip(sample["normals"]))
    torch.testing.assert_close(twice, sample["normals"])


def _batch() -> dict:
    depth = torch.tensor([[[[1.0, 2.0], [0.0, 4.0]]]])  # (1, 1, 2, 2), one invalid pixel
    normals = torch.tensor([[0.0, 0.0, -1.0]]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    normals[..., 0, 0] = 0.0
    semseg = torch.tensor([[[0, 2], [IGNORE_INDEX, 1]]])
    return {"depth": depth, "normals": normals, "semseg": semseg}


def test_task_maps_depth_metric_and_log():
    batch = _batch()
    pred = torch.full((1, 1, 1, 1), 2.0)  # resized to the ground truth's size
    p, g, valid = task_maps("depth", {"depth": pred}, batch)
    assert p.shape == g.shape == (1, 1, 2, 2)
    assert valid.tolist() == [[[True, True], [False, True]]]
    p, g, _ = task_maps("depth", pred, batch, space="log")
    torch.testing.assert_close(p, torch.full((1, 1, 2, 2), 2.0).log())
    torch.testing.assert_close(g, torch.tensor([[[[0.0, 2.0], [0.0, 4.0]]]]).clamp_min(1).log())


def test_task_maps_normals_are_unit_and_invalid_zero_excluded():
    batch = _batch()
    p, g, valid = task_maps("normals", torch.randn(1, 3, 2, 2) * 3, batch)
    torch.testing.assert_close(p.norm(dim=1), torch.ones(1, 2, 2))
    assert valid.tolist() == [[[False, True], [True, True]]]
    torch.testing.assert_close(g, batch["normals"])


def test_task_maps_semseg_probabilities_against_one_hot():
    batch = _batch()
    logits = torch.randn(1, 3, 2, 2)
    p, g, valid = task_maps("semseg", logits, batch)
    torch.testing.assert_close(p, logits.softmax(dim=1))
    assert valid.tolist() == [[[True, True], [False, True]]]
    assert g[0, :, 0, 1].tolist() == [0.0, 0.0, 1.0] and g[0, :, 1, 0].tolist() == [0.0, 0.0, 0.0]
    p, _, _ = task_maps("semseg", logits, batch, binarize=True)
    assert p.sum(dim=1).eq(1).all() and (p.argmax(dim=1) == logits.argmax(dim=1)).all()


def test_task_maps_honours_the_has_flag():
    batch = {**_batch(), "has_depth": torch.tensor([False])}
    _, _, valid = task_maps("depth", torch.ones(1, 1, 2, 2), batch)
    assert not valid.any()
