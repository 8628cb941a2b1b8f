"""``tridense evaluate --analyses boundary instance background``: ASM's extra evaluations from the command line,
on saved predictions of synthetic scenes (their own ground truth, and a perturbed copy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tridense.cli import main
from tridense.data.sample import collate
from tridense.data.synthetic.dataset import SyntheticScenes
from tridense.errors import ConfigError
from tridense.evaluate import prediction_stem
from tridense.metrics.analyses import AnalysisMetrics
from tridense.metrics.boundary import boundary_metrics

DATA = ["--dataset", "synthetic", "--split", "val", "--set", "length=3", "size=[48,64]"]


def _save(folder: Path, perturb: bool) -> list[dict]:
    folder.mkdir()
    samples = [SyntheticScenes("val", length=3, size=(48, 64))[i] for i in range(3)]
    for i, s in enumerate(samples):
        stem = prediction_stem(s["meta"], i)
        depth = s["depth"][0].numpy() * (1.1 if perturb else 1.0)
        np.save(folder / f"{stem}_depth.npy", np.where(depth > 0, depth, 1.0).astype(np.float32))
        normals = s["normals"].permute(1, 2, 0).numpy()
        np.save(folder / f"{stem}_normals.npy", np.where(np.abs(normals).sum(-1, keepdims=True) > 0, normals, 1.0))
        labels = s["semseg"].numpy().copy()
        labels[labels == 255] = 0
        if perturb:
            labels = np.roll(labels, 3, axis=1)
        Image.fromarray(labels.astype(np.uint8)).save(folder / f"{stem}_semseg.png")
    return samples


def test_analyses_from_the_command_line(tmp_path: Path) -> None:
    samples = _save(tmp_path / "exact", perturb=False)
    out = tmp_path / "exact.json"
    args = ["evaluate", *DATA, "--predictions", str(tmp_path / "exact"), "--json", str(out)]
    assert main([*args, "--analyses", "boundary", "instance", "background"]) == 0
    results = json.loads(out.read_text())
    results = results.get("results", results)
    assert {"semseg_boundary", "depth_instance", "normals_instance", "semseg_background"} <= set(results)
    assert results["depth_instance"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert results["normals_instance"]["mean"] == pytest.approx(0.0, abs=0.05)
    # the boundary numbers equal the functional metric on the same maps
    batch = collate(samples)
    pred = torch.where(batch["semseg"] == 255, 0, batch["semseg"])
    want = boundary_metrics(pred, batch["semseg"], SyntheticScenes.num_classes)
    assert results["semseg_boundary"]["fmeasure"] == pytest.approx(want["fmeasure"])

    _save(tmp_path / "shifted", perturb=True)
    out2 = tmp_path / "shifted.json"
    args = ["evaluate", *DATA, "--predictions", str(tmp_path / "shifted"), "--json", str(out2)]
    assert main([*args, "--analyses", "boundary", "instance"]) == 0
    shifted = json.loads(out2.read_text())
    shifted = shifted.get("results", shifted)
    assert shifted["semseg_boundary"]["fmeasure"] < results["semseg_boundary"]["fmeasure"]
    assert shifted["depth_instance"]["abs_rel"] == pytest.approx(0.1, rel=1e-3)
    assert "semseg_background" not in shifted


def test_analyses_check_their_names_and_tasks() -> None:
    with pytest.raises(ConfigError, match="unknown analyses"):
        AnalysisMetrics(["edges"], ["semseg"], 3)
    with pytest.raises(ConfigError, match="applies to the tasks"):
        AnalysisMetrics(["boundary"], ["depth"], 3)
