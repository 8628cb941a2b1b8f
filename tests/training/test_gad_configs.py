"""Every GAD config (Tables 4-5 on the synthetic scenes, NYUD-v2 / SUN RGB-D recipes) builds and trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_runs import UNTIMED_RUN

from tridense.cli import main
from tridense.data.hha import AddHHA
from tridense.data.partial import PartialTasks
from tridense.data.sample import collate
from tridense.models.gad import GADNet
from tridense.training.build import build_loss, build_model
from tridense.training.config import load_config
from tridense.training.data import make_dataset
from tridense.training.run import train

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "gad").glob("*.yaml"))
SMALL = [
    "data.size=[64,96]",
    "model.pretrained=false",
    "model.args.decoder_channels=[16,16,8,8]",
    "model.args.spf_channels=8",
]
TO_SYNTHETIC = ["data.dataset=synthetic", "data.root=null", "data.args=null", "data.split_args=null"]
TINY_RUN = UNTIMED_RUN


def test_every_table_row_has_a_config():
    names = {p.stem for p in CONFIGS}
    table4 = {"sem_only", "focal", "hha", "depem", "featprop", "vanconv", "gap", "spf"}
    assert {f"table4_{n}" for n in table4} <= names
    assert {f"table5_depth{p:03d}" for p in (0, 20, 40, 60, 80, 100)} <= names
    assert {"nyuv2_40", "sunrgbd_37"} <= names


def model_inputs(model: GADNet, batch: dict) -> dict:
    """The batch keys the model reads besides the image (what the training seam will pass)."""
    return {k: batch[k] for k in model.batch_inputs if k in batch}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_and_trains_one_step(path: Path):
    cfg = load_config(path, SMALL)
    if cfg.data.dataset != "synthetic":  # the real-data recipes: built on synthetic scenes here
        cfg = load_config(path, [*SMALL, *TO_SYNTHETIC])
    dataset = make_dataset(cfg.data, cfg.data.train_split, train=True, tasks=cfg.data.tasks)
    partial = cfg.data.split_args.get("train", {}).get("partial")
    assert isinstance(dataset, PartialTasks) == (partial is not None)
    model = build_model(cfg.model, tasks=cfg.data.tasks, num_classes=dataset.num_classes)
    assert isinstance(model, GADNet) and model.tasks == tuple(sorted(cfg.data.tasks))
    loss = build_loss(cfg.loss, model.tasks, model_name=cfg.model.name)
    samples = [dataset[i] for i in range(4)]
    if model.encoder_hha is not None:
        samples = [AddHHA()(s) for s in samples]
    batch = collate(samples)
    if partial is not None:
        assert batch["has_depth"].tolist() == [dataset.keeps("depth", i) for i in range(4)]
    out = model(batch["image"], **model_inputs(model, batch))
    terms = loss(out, batch)
    assert torch.isfinite(terms["total"])
    assert any(name.startswith("side/") for name in terms) == model.use_spf
    assert not any(name.startswith(("pairwise/", "initial/")) for name in terms)
    terms["total"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_partial_depth_row_trains_end_to_end(tmp_path):
    """`tridense train --config configs/gad/table5_depth040.yaml` as it runs today (tiny budget)."""
    overrides = [
        *TINY_RUN,
        "data.size=[32,48]",
        "data.batch_size=4",
        "data.split_args={train: {length: 8, partial: {depth: 0.4}}, val: {length: 4}, test: {length: 4}}",
        "model.args.decoder_channels=[8,8,8,8]",
        "model.args.spf_channels=8",
        "trainer.max_steps=2",
        f"run_dir={tmp_path / 'run'}",
    ]
    run = train(load_config(REPO / "configs" / "gad" / "table5_depth040.yaml", overrides))
    results = json.loads((run / "metrics" / "test.json").read_text())["results"]
    assert {"depth", "semseg"} <= set(results)  # the segmentation and the auxiliary depth
    image = tmp_path / "room.png"
    Image.fromarray(np.full((32, 48, 3), 128, dtype=np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--out", str(tmp_path / "p"),
                 "--no-point-cloud", str(image)]) == 0  # fmt: skip
    assert (tmp_path / "p" / "room_semseg.png").is_file() and (tmp_path / "p" / "room_depth.npy").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nyuv2_40", "sunrgbd_37"])
def test_real_data_config_two_steps(name: str, shared_data: Path, tmp_path: Path):
    """The real-data recipe (ResNet-50, Adam, step decay, GAP, SPF) for two steps on ../shared/data."""
    common = [*TINY_RUN, "trainer.max_steps=2", "model.pretrained=false", "data.size=[96,128]"]
    common.append("data.augment.scale=null")
    if name == "nyuv2_40":  # nyu-mini: six labeled test images in the plain folder layout
        data = [
            "data.dataset=nyuv2_folder",
            f"data.root={shared_data / 'nyu-mini'}",
            "data.train_split=all",
            "data.val_split=all",
            "data.test_split=all",
            "data.batch_size=3",
        ]
    else:  # sunrgbd-mini: two frames without labels, listed in a split file of our own
        root = shared_data / "sunrgbd-mini"
        listing = tmp_path / "frames.txt"
        listing.write_text("\n".join(p.name for p in sorted(root.iterdir()) if p.is_dir()) + "\n")
        data = [
            f"data.root={root}",
            f"data.args={{depth: bfx, max_depth: 8.0, split_file: {listing}}}",
            "data.batch_size=1",
        ]
    cfg = load_config(REPO / "configs" / "gad" / f"{name}.yaml", [*common, *data, f"run_dir={tmp_path / 'run'}"])
    run = train(cfg)
    summary = (run / "summary.json").read_text()
    assert '"steps": 2' in summary


def test_spf_ablation_config_is_focal_plus_spf_without_depth():
    """configs/gad/ablation_focal_spf.yaml (not a paper row): 'sem + L_s' with the SPF blocks, no depth branch."""
    cfg = load_config(REPO / "configs" / "gad" / "ablation_focal_spf.yaml", SMALL)
    model = build_model(cfg.model, tasks=cfg.data.tasks, num_classes=5)
    assert model.tasks == ("semseg",) and not model.depth_embedding and model.use_spf
    assert model.fusion is None and not model.feature_propagation
    focal = load_config(REPO / "configs" / "gad" / "table4_focal.yaml", SMALL)
    assert cfg.loss == focal.loss and cfg.data.tasks == focal.data.tasks
