"""Δ_MTL by hand, and TaskMetrics routing only the samples that have a task's ground truth."""

from __future__ import annotations

import math

import pytest
import torch

from tridense.errors import ConfigError
from tridense.metrics import (
    TaskMetrics,
    delta_mtl,
    depth_metrics,
    flatten_results,
    is_lower_better,
    kitti_metrics,
    normal_metrics,
    segmentation_metrics,
)


def test_delta_mtl_hand_computed() -> None:
    results = {"depth": {"rmse": 0.9, "delta1": 0.88}, "semseg": {"miou": 0.45, "iou": [0.4, 0.5]}}
    references = {"depth": {"rmse": 1.0, "delta1": 0.8}, "semseg": {"miou": 0.5}}
    # rmse: -(0.9 - 1) / 1 = +10 %, delta1: (0.88 - 0.8) / 0.8 = +10 %, miou: (0.45 - 0.5) / 0.5 = -10 %
    assert delta_mtl(results, references) == pytest.approx(10 / 3)
    assert delta_mtl(references, references) == 0.0
    # a user table overrides the default direction, per metric or per task/metric
    assert delta_mtl(results, references, lower_is_better={"depth/rmse": False}) == pytest.approx(-10 / 3)


def test_delta_mtl_errors() -> None:
    with pytest.raises(ValueError, match="depth/rmse"):
        delta_mtl({"depth": {"rmse": 1.0}}, {"depth": {"abs_rel": 1.0}})
    with pytest.raises(ValueError, match="no direction known for metric 'fps'"):
        delta_mtl({"speed": {"fps": 2.0}}, {"speed": {"fps": 1.0}})
    speed, base = {"speed": {"fps": 2.0}}, {"speed": {"fps": 1.0}}
    assert delta_mtl(speed, base, lower_is_better={"fps": False}) == 100.0
    with pytest.raises(ValueError, match="no baseline"):
        delta_mtl({"depth": {"rmse": 1.0}}, {"depth": {"rmse": 0.0}})


def test_lower_is_better_table() -> None:
    lower = ["abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "irmse", "mean", "median"]
    higher = ["delta1", "delta3", "within_11.25", "within_2.8125", "miou", "pixel_acc", "mean_acc"]
    assert all(is_lower_better(k) for k in lower)
    assert not any(is_lower_better(k) for k in higher)


def _batch(gen: torch.Generator, b: int = 5, c: int = 4) -> tuple[dict, dict]:
    depth = torch.rand(b, 1, 6, 8, generator=gen) * 5 + 0.5
    normals = torch.nn.functional.normalize(torch.randn(b, 3, 6, 8, generator=gen), dim=1)
    batch = {
        "depth": depth,
        "normals": normals,
        "semseg": torch.randint(0, c, (b, 6, 8), generator=gen),
        "has_depth": torch.tensor([True, False, True, True, False]),
        "has_normals": torch.tensor([False, False, False, False, False]),
        "has_semseg": torch.tensor([True, True, False, False, True]),
    }
    outputs = {
        "depth": depth * torch.exp(0.2 * torch.randn(depth.shape, generator=gen)),
        "normals": normals + 0.3 * torch.randn(normals.shape, generator=gen),
        "semseg": torch.randn(b, c, 6, 8, generator=gen),
    }
    return outputs, batch


def test_task_metrics_route_only_flagged_samples() -> None:
    gen = torch.Generator().manual_seed(4)
    out1, batch1 = _batch(gen)
    out2, batch2 = _batch(gen)
    batch2["has_normals"] = torch.tensor([True, False, True, False, False])
    metrics = TaskMetrics(num_classes=4, kitti=True)
    metrics.update(out1, batch1)
    metrics.update(out2, batch2)
    results = metrics.compute()
    assert set(results) == {"depth", "kitti", "normals", "semseg"}

    def both(key: str, source: dict, flags: str) -> tuple[torch.Tensor, torch.Tensor]:
        keep1, keep2 = batch1[flags], batch2[flags]
        return torch.cat([source[0][key][keep1], source[1][key][keep2]])

    for task, fn in (("depth", depth_metrics), ("normals", normal_metrics), ("kitti", kitti_metrics)):
        key = "depth" if task == "kitti" else task
        kwargs = {"max_depth": 10.0} if task == "kitti" else {}
        flag = f"has_{key}"
        expected = fn(both(key, (out1, out2), flag), both(key, (batch1, batch2), flag), **kwargs)
        assert results[task] == pytest.approx(expected, rel=1e-12), task
    expected = segmentation_metrics(
        both("semseg", (out1, out2), "has_semseg"), both("semseg", (batch1, batch2), "has_semseg"), 4
    )
    assert results["semseg"]["miou"] == pytest.approx(expected["miou"])
    # including the unflagged samples would change the values
    everything = depth_metrics(torch.cat([out1["depth"], out2["depth"]]), torch.cat([batch1["depth"], batch2["depth"]]))
    assert everything["abs_rel"] != pytest.approx(results["depth"]["abs_rel"])

    flat = metrics.compute_flat()
    assert flat["depth/abs_rel"] == results["depth"]["abs_rel"]
    assert flat["normals/within_30"] == results["normals"]["within_30"]
    assert not any(k.startswith("semseg/iou") for k in flat)
    assert flatten_results(results, sep=".")["kitti.silog"] == results["kitti"]["silog"]

    metrics.reset()
    metrics.update(out1, batch1)
    assert math.isnan(metrics.compute()["normals"]["mean"])  # no sample with normals after the reset


def test_task_metrics_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        TaskMetrics(("semseg",))
    with pytest.raises(ConfigError, match="'edges'"):
        TaskMetrics(("depth", "edges"))
    metrics = TaskMetrics(("depth", "normals"))
    gen = torch.Generator().manual_seed(5)
    outputs, batch = _batch(gen)
    batch["has_normals"][0] = True
    del outputs["normals"]
    with pytest.raises(ValueError, match="model outputs have no 'normals'"):
        metrics.update(outputs, batch)
