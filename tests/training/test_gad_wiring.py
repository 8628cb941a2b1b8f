"""GAD through the library's seams: extra batch inputs in training / evaluate / predict, HHA in the
transforms, the fusion through the propagation protocol, per-group gradient clipping."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from training_runs import UNTIMED_RUN

from tridense.cli import main
from tridense.data.hha import AddHHA
from tridense.data.sample import collate
from tridense.errors import ConfigError
from tridense.inference import model_inputs
from tridense.layers.gap import ConvFusion, GAPPropagation, GeometryAwarePropagation
from tridense.layers.propagation import PROPAGATIONS, build_propagation
from tridense.models import create_model
from tridense.predict import predict_files
from tridense.training.config import OptimConfig, load_config
from tridense.training.data import build_transform, make_dataset
from tridense.training.optim import build_optimizer, clip_grad_norm
from tridense.training.run import build_experiment, train

REPO = Path(__file__).resolve().parents[2]
GAD = REPO / "configs" / "gad"
TINY = [
    *UNTIMED_RUN,
    "data.size=[32,48]",
    "data.batch_size=4",
    "data.split_args={train: {length: 8}, val: {length: 2}, test: {length: 2}}",
    "model.args.decoder_channels=[8,8,8,8]",
    "model.args.spf_channels=8",
]


def test_model_inputs_reads_only_what_the_model_names():
    batch = {"image": torch.zeros(1), "hha": torch.ones(1), "has_depth": torch.ones(1), "depth": torch.ones(1)}
    plain = torch.nn.Conv2d(3, 3, 1)
    assert model_inputs(plain, batch) == {}
    rgb_only = create_model("gad", encoder="resnet18", num_classes=3, decoder_channels=(8, 8, 8, 8), spf_channels=8)
    assert set(model_inputs(rgb_only, batch)) == {"has_depth"}  # no HHA stream: hha is not passed
    with_hha = create_model("gad", encoder="resnet18", num_classes=3, decoder_channels=(8, 8, 8, 8), hha=True)
    assert set(model_inputs(with_hha, batch)) == {"hha", "has_depth"}


def test_training_module_gives_no_depth_gradient_to_samples_without_depth(monkeypatch: pytest.MonkeyPatch):
    """Through DenseModule.training_step: a batch without depth leaves the depth branch without gradient
    (neither the masked depth loss nor the segmentation through feature propagation and GAP)."""
    cfg = load_config(GAD / "table5_depth040.yaml", TINY)
    experiment = build_experiment(cfg)
    module, dataset = experiment.module, experiment.datamodule.dataset("train", train=True)
    module.trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)  # outside a fit loop
    batch = collate([dataset[i] for i in range(2)])
    model = module.model
    torch.nn.init.ones_(model.fusion.out[1].weight)  # open GAP, so its guide gets gradient when allowed
    branch = [*model.depth_decoder.parameters(), *model.depth_head.parameters()]

    def branch_grad(has_depth: list[bool]) -> float:
        module.zero_grad()
        module.training_step({**batch, "has_depth": torch.tensor(has_depth)}, 0).backward()
        return float(sum(p.grad.abs().sum() for p in branch if p.grad is not None))

    assert branch_grad([True, True]) > 0
    assert branch_grad([False, False]) == 0
    assert branch_grad([True, False]) > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.sem_decoder.parameters())


def test_hha_transform_follows_the_model(tmp_path: Path):
    cfg = load_config(GAD / "table4_hha.yaml", TINY).data
    train = build_transform(cfg, True, hha=True).transforms[-1]
    assert isinstance(train, AddHHA) and train.gravity == "estimate"  # flips: the tilt would be wrong
    assert build_transform(cfg, False, hha=True).transforms[-1].gravity == "auto"  # the tilt where there is one
    no_flip = load_config(GAD / "table4_hha.yaml", [*TINY, "data.augment.flip=false"]).data
    assert build_transform(no_flip, True, hha=True).transforms[-1].gravity == "auto"
    assert not any(isinstance(t, AddHHA) for t in build_transform(cfg, True).transforms)
    # The +HHA row learns segmentation only: the depth is loaded as the HHA's source, then dropped.
    full = load_config(GAD / "table4_hha.yaml", TINY)
    sample = make_dataset(full.data, "train", train=True, tasks=full.data.tasks, hha=True)[0]
    assert "depth" not in sample and sample["hha"].shape == (3, 32, 48) and sample["hha"].abs().sum() > 0
    assert sample["hha"][1].max() > 0.5  # heights above the floor of a room, in metres


def test_gad_tables_rows_exist_and_keep_the_partial_split():
    spec = importlib.util.spec_from_file_location("gad_tables", REPO / "benchmarks" / "gad_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    assert all(config.is_file() for _, config, *_ in tables.ROWS)
    args = argparse.Namespace(seed=0, size=[96, 128], steps=10, val_every=250, train_length=100, val_length=8,
                              test_length=8)  # fmt: skip
    overrides = tables.row_overrides(GAD / "table5_depth040.yaml", [], args, seed=2)
    split = next(o for o in overrides if o.startswith("data.split_args="))
    assert "partial: {depth: 0.4}" in split and "trainer.max_steps=10" in overrides and "seed=2" in overrides
    full = tables.row_overrides(GAD / "table4_spf.yaml", [], args, seed=0)
    assert "partial" not in next(o for o in full if "split" in o)
    rows = {row for row, *_ in tables.ROWS}
    assert all({worse, better} <= rows for _, worse, better in tables.CLAIMS)
    assert tables.run_dir_of("pap", 1, argparse.Namespace(out=Path("/o"))) == Path("/o/seed1/pap")


@pytest.mark.slow
def test_hha_row_trains_evaluates_and_predict_refuses(tmp_path: Path, capsys: pytest.CaptureFixture):
    """`tridense train --config configs/gad/table4_hha.yaml`; evaluate computes HHA from the dataset's depth;
    predict on a plain image (no depth) is a ConfigError."""
    run = train(load_config(GAD / "table4_hha.yaml", [*TINY, "trainer.max_steps=2", f"run_dir={tmp_path / 'run'}"]))
    ckpt = run / "checkpoints" / "best.ckpt"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--dataset", "synthetic", "--set", "length=2",
                 "size=[32,48]", "--flip"]) == 0  # fmt: skip
    assert "| semseg | miou |" in capsys.readouterr().out
    image = tmp_path / "room.png"
    Image.fromarray(np.full((32, 48, 3), 128, dtype=np.uint8)).save(image)
    from tridense.checkpoints import load_model

    model, info = load_model(ckpt)
    with pytest.raises(ConfigError, match="HHA"):
        predict_files(model, info, [str(image)], tmp_path / "p")
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(tmp_path / "p"), str(image)]) == 2


def test_gad_checkpoint_evaluate_reports_class_table_and_depth_and_predict_writes_both(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    run = train(load_config(GAD / "table5_depth040.yaml", [*TINY, "trainer.max_steps=2", f"run_dir={tmp_path / 'r'}"]))
    ckpt = str(run / "checkpoints" / "best.ckpt")
    out = tmp_path / "eval.json"
    args = ["evaluate", "--checkpoint", ckpt, "--dataset", "synthetic", "--set", "length=2", "size=[48,64]"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| id | class | IoU (%) |" in printed and "| depth | delta1 |" in printed
    payload = json.loads(out.read_text())
    semseg = payload["results"]["semseg"]
    assert len(semseg["classes"]) == len(semseg["iou"]) > 1 and "floor" in semseg["classes"]
    assert payload["settings"]["resize"] == "pred"  # predictions upsampled to the ground truth's size
    assert {"pixel_acc", "mean_acc", "miou"} <= set(semseg) and "rmse" in payload["results"]["depth"]
    assert main([*args, "--protocol", "gad-per-image"]) == 0
    assert "protocol: gad-per-image" in capsys.readouterr().out
    image = tmp_path / "room.png"
    Image.fromarray(np.full((32, 48, 3), 128, dtype=np.uint8)).save(image)
    assert main(["predict", "--checkpoint", ckpt, "--out", str(tmp_path / "p"), "--no-point-cloud", str(image)]) == 0
    assert (tmp_path / "p" / "room_semseg.png").is_file() and (tmp_path / "p" / "room_depth.npy").is_file()


def test_fusion_blocks_are_propagation_kinds_with_stable_parameter_names():
    assert {"gap", "conv"} <= set(PROPAGATIONS)
    torch.manual_seed(0)
    block = build_propagation("gap", tasks=("depth", "semseg"), channels=6, inter_channels=4, zero_init=False)
    assert isinstance(block, GAPPropagation)
    plain = GeometryAwarePropagation(6, 6, 4, zero_init=False)
    plain.load_state_dict(block.state_dict())  # same names: GAD checkpoints from before still load
    p, g = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7)
    initial = {"semseg": torch.randn(2, 3, 5, 7)}
    feats, init = block.propagate({"depth": g, "semseg": p}, initial)
    torch.testing.assert_close(feats["semseg"], plain(p, g))
    assert feats["depth"] is g and init["semseg"] is initial["semseg"]
    conv = build_propagation("conv", tasks=("depth", "semseg"), channels=6, zero_init=False)
    ConvFusion(6, 6, zero_init=False).load_state_dict(conv.state_dict())
    model = create_model("gad", encoder="resnet18", num_classes=3, decoder_channels=(8, 8, 8, 8), spf_channels=8)
    assert "fusion.theta.0.weight" in model.state_dict() and "fusion.out.1.weight" in model.state_dict()
    with pytest.raises(ConfigError, match="guide"):
        build_propagation("gap", tasks=("normals", "semseg"), channels=6)
    block.set_iterations(0)
    assert block.propagate({"depth": g, "semseg": p}, initial)[0]["semseg"] is p


def test_group_grad_clip_clips_only_its_group():
    model = torch.nn.ModuleDict({name: torch.nn.Linear(2, 2, bias=False) for name in ("encoder", "sem")})
    cfg = OptimConfig(optimizer="sgd", grad_clip=None, groups={"semantic": {"pattern": "sem.*", "grad_clip": 1.0}})
    optimizer = build_optimizer(model.named_parameters(), cfg)
    model["encoder"].weight.grad = torch.full((2, 2), 3.0)  # norm 6, not clipped (optim.grad_clip null)
    model["sem"].weight.grad = torch.full((2, 2), 2.0)  # norm 4, clipped to 1
    assert clip_grad_norm(optimizer, cfg.grad_clip) is None
    torch.testing.assert_close(model["sem"].weight.grad.norm(), torch.tensor(1.0))
    torch.testing.assert_close(model["encoder"].weight.grad, torch.full((2, 2), 3.0))
    assert clip_grad_norm(optimizer, 3.0) is not None  # the global clip acts on the rest only
    torch.testing.assert_close(model["encoder"].weight.grad.norm(), torch.tensor(3.0))


def test_real_data_configs_clip_the_semantic_branch_and_spf_only():
    for name in ("nyuv2_40", "sunrgbd_37"):
        cfg = load_config(GAD / f"{name}.yaml", ["model.pretrained=false", "model.args.decoder_channels=[8,8,8,8]"])
        model = create_model("gad", encoder="resnet18", num_classes=5, decoder_channels=(8, 8, 8, 8), hha=True)
        groups = {g["name"]: g for g in build_optimizer(model.named_parameters(), cfg.optim).param_groups}
        assert cfg.optim.grad_clip is None and groups["semantic"]["grad_clip"] == 5.0
        assert groups["encoder"]["lr"] == 1e-5 and groups["rest"]["lr"] == 1e-2
        names = {id(p): n for n, p in model.named_parameters()}
        encoder_names = {names[id(p)].split(".")[0] for p in groups["encoder"]["params"]}
        assert encoder_names == {"encoder", "encoder_hha"}
        clipped = {names[id(p)].split(".")[0] for p in groups["semantic"]["params"]}
        assert clipped == {"sem_decoder", "fusion", "distilled_head", "spf"}
        train_size = {"nyuv2_40": 795, "sunrgbd_37": 5285}[name]  # /10 every 40 epochs (full batches)
        assert cfg.optim.step_every == train_size // cfg.data.batch_size * 40
