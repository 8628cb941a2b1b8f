"""Each PAP config IS the paper's row it names (the structure it builds), and the real-data recipes train on
real samples (two steps each, from a layout built out of ``../shared/data``)."""

from __future__ import annotations

import fnmatch
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from tridense.data.io import normals_to_png, write_png
from tridense.data.nyu.raw import raw_normal_path
from tridense.data.sample import collate
from tridense.models.pap import LOSS_WEIGHTINGS, PAPNet
from tridense.training.build import build_loss, build_model_and_tasks, freeze
from tridense.training.config import load_config
from tridense.training.data import make_dataset
from tridense.training.defaults import resolve_loss
from tridense.training.run import train

REPO = Path(__file__).resolve().parents[2]
PAP = REPO / "configs" / "pap"
ALL = ("depth", "normals", "semseg")
SMALL = [
    "data.size=[64,96]",
    "model.pretrained=false",
    "model.args.task_channels=16",
    "model.args.recon_channels=8",
    "model.args.lateral_channels=8",
]
TO_SYNTHETIC = ["data.dataset=synthetic", "data.root=null", "data.args=null", "data.split_args=null"]

# name: (tasks, propagation, affinity scale, cross-task mixing, reconstruction, pair-wise term, similarity)
ROWS: dict[str, tuple] = {
    "table1_depth": (("depth",), "pap", 8, True, True, True, "dot"),
    "table1_normals": (("normals",), "pap", 8, True, True, True, "dot"),
    "table1_semseg": (("semseg",), "pap", 8, True, True, True, "dot"),
    "table1_depth_normals": (("depth", "normals"), "pap", 8, True, True, True, "dot"),
    "table1_depth_semseg": (("depth", "semseg"), "pap", 8, True, True, True, "dot"),
    "table1_semseg_normals": (("normals", "semseg"), "pap", 8, True, True, True, "dot"),
    "table1_all": (ALL, "pap", 8, True, True, True, "dot"),
    "table2_initial": (ALL, "none", 16, False, False, False, None),
    "table2_no_cross_task": (ALL, "pap", 16, False, False, False, "dot"),
    "table2_cross_task": (ALL, "pap", 16, True, False, False, "dot"),
    "table2_recon": (ALL, "pap", 16, True, True, False, "dot"),
    "table2_pairwise": (ALL, "pap", 16, True, True, True, "dot"),
    "table2_cross_stitch": (ALL, "cross_stitch", 16, True, True, True, None),
    "table2_cspn": (ALL, "cspn", 16, True, True, True, None),
    "table2_scale4": (ALL, "pap", 4, True, True, True, "dot"),
    "table2_l1": (ALL, "pap", 16, True, True, True, "l1"),
    "eq4_diffused": (ALL, "pap", 8, True, True, True, "dot"),
    "eq4_initial": (ALL, "pap", 8, True, True, True, "dot"),
    "eq4_learned": (ALL, "pap", 8, True, True, True, "dot"),
}


def _build(path: Path, extra: list[str] | None = None):
    cfg = load_config(path, [*SMALL, *(extra or [])])
    if cfg.data.dataset != "synthetic":
        cfg = load_config(path, [*SMALL, *TO_SYNTHETIC, *(extra or [])])
    dataset = make_dataset(cfg.data, cfg.data.train_split, train=True, tasks=cfg.data.tasks)
    model, tasks = build_model_and_tasks(cfg, dataset)
    loss = build_loss(cfg.loss, tasks, model_name=cfg.model.name)
    return cfg, dataset, model, tasks, loss


def _mixing(model: PAPNet) -> bool:
    block = model.propagator
    if model.propagation == "cross_stitch":
        return True  # cross-stitch units always mix the tasks' features
    return getattr(block, "mixing_logits", None) is not None


@pytest.mark.parametrize("name", sorted(ROWS))
def test_config_builds_the_row_it_names(name: str):
    tasks, propagation, scale, mixing, recon, pairwise, similarity = ROWS[name]
    cfg, dataset, model, model_tasks, loss = _build(PAP / f"{name}.yaml")
    assert isinstance(model, PAPNet)
    assert model.tasks == tasks and tuple(model_tasks) == tasks
    assert model.propagation == propagation and model.affinity_scale == scale
    assert _mixing(model) == mixing
    assert model.reconstruction == recon
    if recon:  # log2(s) - 1 up-projection stages to half the input size
        assert len(model.shared_up) == int(math.log2(scale)) - 1
    else:
        assert not hasattr(model, "recon")
    if similarity is not None:
        assert model.pap.similarity == similarity
    resolved = resolve_loss(cfg.loss, cfg.model.name)
    assert ("pairwise" in resolved.extra) == pairwise
    assert resolved.aux_weights == {"initial": 1.0}  # the initial predictions are supervised in every row
    assert cfg.loss.weights == {t: LOSS_WEIGHTINGS["eq5"] for t in tasks}  # eq. 5's lambda_i = 1/3
    if pairwise:
        assert resolved.extra["pairwise"] == {"weight": 0.2, "pairs": 300}
    batch = collate([dataset[i] for i in range(2)])
    terms = loss(model(batch["image"]), batch)
    assert any(k.startswith("pairwise/") for k in terms) == pairwise
    assert {k for k in terms if k.startswith("initial/")} == {f"initial/{t}" for t in tasks}


def test_eq4_readings_are_the_two_sides_and_a_learned_beta_per_task():
    betas = {}
    for reading in ("diffused", "initial", "learned"):
        _, _, model, _, _ = _build(PAP / f"eq4_{reading}.yaml")
        betas[reading] = model.pap.beta
    assert betas["diffused"] == pytest.approx(0.05) and betas["initial"] == pytest.approx(0.95)
    learned = betas["learned"]
    assert isinstance(learned, torch.Tensor) and learned.shape == (3,) and learned.requires_grad
    assert ((learned >= 0) & (learned <= 1)).all()


def test_cspn_row_can_switch_cross_task_off():
    _, _, model, _, _ = _build(PAP / "table2_cspn.yaml", ["model.args.cross_task=false"])
    assert model.cspn.mixing_logits is None


def _trainable(model: torch.nn.Module) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def test_table7_is_three_stages_with_the_normal_branch_frozen_after_the_first():
    stages = sorted(PAP.glob("table7_kitti_stage*.yaml"))
    assert [p.stem for p in stages] == [
        "table7_kitti_stage1_nyu",
        "table7_kitti_stage2_depth",
        "table7_kitti_stage3_finetune",
    ]
    normal_branch = ["task_nets.normals.*", "recon.normals.*", "pap.projections.1.*"]
    depth_branch = ["task_nets.depth.*", "recon.depth.*", "pap.projections.0.*", "pap.mixing_logits"]
    epochs, lrs, checkpoints = [], [], []
    for i, path in enumerate(stages):
        cfg = load_config(path)
        epochs.append(cfg.trainer.max_epochs)
        lrs.append((cfg.optim.lr, cfg.optim.encoder_lr))
        checkpoints.append(cfg.init.checkpoint)
        assert cfg.model.name == "pap_resnet50" and cfg.model.args["tasks"] == ["depth", "normals"]
        assert cfg.trainer.max_steps == -1 and cfg.trainer.max_time is None
        _, _, model, tasks, _ = _build(path, ["data.tasks=null"] if i == 0 else None)
        assert model.tasks == ("depth", "normals")
        freeze(model, cfg.init.freeze)
        trainable = _trainable(model)
        if i == 0:
            assert cfg.data.dataset == "nyuv2_raw" and cfg.data.tasks == ["depth", "normals"]
            assert all(trainable.values())
            continue
        assert cfg.data.dataset == "kitti" and cfg.data.tasks == ["depth"] and tuple(tasks) == ("depth",)
        assert cfg.eval.protocol == "kitti-eigen-garg"
        assert checkpoints[i] == f"runs/pap-kitti-stage{i}/checkpoints/best.ckpt"  # each stage starts from the last
        for name, grad in trainable.items():
            if _matches(name, normal_branch):
                assert not grad, f"stage {i + 1}: {name} of the normal branch trains"
            elif _matches(name, depth_branch):
                assert grad, f"stage {i + 1}: {name} of the depth branch is frozen"
            elif name.startswith(("encoder.", "laterals.", "shared_up.")):
                assert grad == (i == 2), f"stage {i + 1}: {name} (shared) should {'' if i == 2 else 'not '}train"
    assert epochs == [30, 15, 20]
    assert lrs == [(1e-2, 1e-4), (1e-2, 1e-4), (1e-3, 1e-4)]
    assert checkpoints[0] is None


REAL = sorted(p for p in PAP.glob("*.yaml") if p.stem.startswith(("real_", "table7_")))
RECIPES = {  # name: (epochs, lr, encoder lr, tasks)
    "real_nyu795_train": (200, 1e-2, 1e-4, ALL),
    "real_nyu795_finetune": (100, 1e-3, 1e-5, ALL),
    "real_nyu12k_train": (30, 1e-2, 1e-4, ("depth", "normals")),
    "real_nyu12k_finetune": (10, 1e-3, 1e-5, ("depth", "normals")),
    "real_sunrgbd_train": (30, 1e-2, 1e-4, ("depth", "semseg")),
    "real_sunrgbd_finetune": (30, 1e-3, 1e-4, ("depth", "semseg")),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_real_data_configs_follow_the_papers_recipe(name: str):
    epochs, lr, encoder_lr, tasks = RECIPES[name]
    cfg = load_config(PAP / f"{name}.yaml")
    assert cfg.model.name == "pap_resnet50"
    assert cfg.model.pretrained is (name.endswith("_train"))  # fine-tuning starts from init.checkpoint
    assert (cfg.init.checkpoint is None) == name.endswith("_train")
    assert (cfg.trainer.max_epochs, cfg.optim.lr, cfg.optim.encoder_lr) == (epochs, lr, encoder_lr)
    assert cfg.optim.optimizer == "sgd" and cfg.trainer.max_steps == -1 and cfg.trainer.max_time is None
    assert tuple(cfg.data.tasks) == tasks
    assert cfg.loss.weights == {t: LOSS_WEIGHTINGS["eq5"] for t in tasks}


# ------------------------------------------------------------------------------------------ real samples
def _normals(src: Path, name: str, size: tuple[int, int]) -> np.ndarray:
    """The MTAN release's normals of ``name`` (288x384), nearest-upsampled to ``size``: (H, W, 3)."""
    normal = torch.from_numpy(np.load(src / "mtan" / f"{name}_normal.npy")).permute(2, 0, 1)[None]  # (1, 3, h, w)
    return torch.nn.functional.interpolate(normal, size=tuple(size), mode="nearest")[0].permute(1, 2, 0).numpy()


def _nyu_multitask(src: Path, root: Path) -> list[str]:
    """NYUD_MT layout from nyu-mini (normals: the MTAN release's, upsampled to the image size)."""
    names = [line.split(",")[0] for line in (src / "index.csv").read_text().splitlines()[1:]]
    for sub in ("images", "depth", "segmentation", "normals", "gt_sets"):
        (root / sub).mkdir(parents=True)
    for name in names:
        shutil.copy(src / "rgb" / f"{name}.png", root / "images" / f"{name}.png")
        depth = np.asarray(Image.open(src / "depth" / f"{name}.png"), dtype=np.float32) / 1000.0
        np.save(root / "depth" / f"{name}.npy", depth)
        shutil.copy(src / "label40" / f"{name}.png", root / "segmentation" / f"{name}.png")
        np.save(root / "normals" / f"{name}.npy", _normals(src, name, depth.shape))
    (root / "gt_sets" / "train.txt").write_text("\n".join(names[:4]) + "\n")
    (root / "gt_sets" / "val.txt").write_text("\n".join(names[4:]) + "\n")
    return names


def _nyu_raw(src: Path, root: Path) -> dict[str, Path]:
    """Raw "sync" layout and lists from nyu-mini; normals (the MTAN release's, upsampled) where the
    ``prepare normals`` step writes them (:func:`raw_normal_path`, tridense PNG encoding)."""
    names = [line.split(",")[0] for line in (src / "index.csv").read_text().splitlines()[1:]]
    sync, normals = root / "sync", root / "normals"
    lines = []
    for i, name in enumerate(names):
        rel = f"scene_{i % 2}/rgb_{i:05d}.png"
        (sync / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "rgb" / f"{name}.png", sync / rel)
        shutil.copy(src / "depth" / f"{name}.png", sync / f"scene_{i % 2}/sync_depth_{i:05d}.png")
        write_png(normals / raw_normal_path(rel), normals_to_png(_normals(src, name, (480, 640))))
        lines.append(f"/{rel} /scene_{i % 2}/sync_depth_{i:05d}.png 518.8579")
    train, test = root / "train.txt", root / "test.txt"
    train.write_text("\n".join(lines[:4]) + "\n")
    test.write_text("\n".join(lines[4:]) + "\n")
    return {"sync": sync, "train": train, "test": test, "normals": normals}


def _sunrgbd(src: Path, root: Path) -> Path:
    """Both SUN RGB-D frames with a seg.mat each (the frames carry no labels) and a split list."""
    frames = sorted(p.name for p in src.iterdir() if p.is_dir())
    for frame in frames:
        shutil.copytree(src / frame, root / frame)
        h, w = np.asarray(Image.open(next((root / frame / "image").iterdir()))).shape[:2]
        seglabel = np.zeros((h, w), dtype=np.uint16)
        seglabel[: h // 2], seglabel[h // 2 :] = 1, 2
        names = np.array(["wall", "floor"], dtype=object)
        scipy.io.savemat(root / frame / "seg.mat", {"seglabel": seglabel, "names": names})
    listing = root / "list.txt"
    listing.write_text("\n".join(f"{f}/" for f in frames) + "\n")
    return listing


def _kitti(src: Path, root: Path) -> dict[str, Path]:
    """KITTI raw + annotated trees from kitti-mini, and an Eigen-style list."""
    date, frames = "2011_09_28", sorted(p.stem for p in (src / "rgb").glob("*.png"))
    drive = f"{date}_drive_0001_sync"
    intr = json.loads((src / "intrinsics.json").read_text())
    raw, gt = root / "raw", root / "gt"
    lines = []
    for frame in frames:
        image = f"{date}/{drive}/image_02/data/{frame}.png"
        depth = f"{drive}/proj_depth/groundtruth/image_02/{frame}.png"
        (raw / image).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "rgb" / f"{frame}.png", raw / image)
        (gt / "train" / depth).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "depth" / f"{frame}.png", gt / "train" / depth)
        lines.append(f"{image} {depth} {intr['fx']}")
    p = [intr["fx"], 0, intr["cx"], 0, 0, intr["fy"], intr["cy"], 0, 0, 0, 1, 0]
    (raw / date / "calib_cam_to_cam.txt").write_text("P_rect_02: " + " ".join(f"{v:.6e}" for v in p) + "\n")
    listing = root / "eigen.txt"
    listing.write_text("\n".join(lines) + "\n")
    return {"raw": raw, "gt": gt, "list": listing}


@pytest.fixture(scope="module")
def real_layouts(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Overrides pointing each real-data dataset at a layout built from the shared samples."""
    shared = shared_data
    root = tmp_path_factory.mktemp("real")
    _nyu_multitask(shared / "nyu-mini", root / "NYUD_MT")
    raw = _nyu_raw(shared / "nyu-mini", root / "nyu")
    sun = _sunrgbd(shared / "sunrgbd-mini", root / "SUNRGBD")
    kitti = _kitti(shared / "kitti-mini", root / "kitti")
    splits = lambda train, test: (  # noqa: E731
        f"data.split_args={{train: {{list_file: {train}}}, val: {{list_file: {test}}}, test: {{list_file: {test}}}}}"
    )
    return {
        "nyuv2_multitask": [f"data.root={root / 'NYUD_MT'}"],
        "nyuv2_raw": [
            f"data.root={raw['sync']}",
            f"data.args={{normals_dir: {raw['normals']}}}",
            splits(raw["train"], raw["test"]),
        ],
        "sunrgbd": [
            f"data.root={root / 'SUNRGBD'}",
            f"data.split_args={{train: {{split_file: {sun}}}, test: {{split_file: {sun}}}}}",
        ],
        "kitti": [
            f"data.root={kitti['raw']}",
            f"data.args={{gt_path: {kitti['gt']}, kb_crop: true}}",
            splits(kitti["list"], kitti["list"]),
        ],
    }


TWO_STEPS = [
    *SMALL,
    "data.batch_size=2",
    "data.num_workers=0",
    "trainer.max_steps=2",
    "trainer.max_epochs=null",
    "trainer.val_every_n_steps=2",
    "trainer.limit_val_batches=1",
    "trainer.progress_bar=false",
    "trainer.precision=32-true",
    "eval.panel_samples=0",
    "init.checkpoint=null",
]


@pytest.mark.slow
@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_real_data_config_trains_two_steps_on_real_samples(path: Path, real_layouts, tmp_path: Path):
    dataset = load_config(path).data.dataset
    size = ["data.size=[64,192]"] if dataset == "kitti" else []  # KITTI's wide frames
    cfg = load_config(path, [*TWO_STEPS, *real_layouts[dataset], *size, f"run_dir={tmp_path / 'run'}"])
    run = train(cfg)
    result = json.loads((run / "metrics" / "test.json").read_text())
    assert set(cfg.data.tasks) <= set(result["results"])  # (KITTI adds its benchmark metrics)
    for task in cfg.data.tasks:
        values = [v for v in result["results"][task].values() if isinstance(v, float)]
        assert values and all(np.isfinite(v) for v in values), task
