"""Every experiment config under configs/ loads, builds its model and loss, and trains one step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tridense.data.sample import collate
from tridense.models.pap import PAPNet
from tridense.training.build import build_loss, build_model_and_tasks
from tridense.training.config import load_config
from tridense.training.data import make_dataset
from tridense.training.defaults import resolve_loss

REPO = Path(__file__).resolve().parents[2]
# configs/asm/ (other architectures, the adversarial method) and configs/gad/ have their own tests:
# tests/training/test_asm_configs.py, tests/training/test_gad_configs.py.
CONFIGS = sorted(
    p for p in (REPO / "configs").rglob("*.yaml") if not {"asm", "gad"} & set(p.relative_to(REPO / "configs").parts)
)
SMALL = [
    "data.size=[64,96]",
    "model.pretrained=false",
    "model.args.task_channels=32",
    "model.args.recon_channels=16",
    "model.args.lateral_channels=16",
]


def test_every_table_row_has_a_config():
    names = {p.stem for p in CONFIGS}
    table1 = {"depth", "semseg", "normals", "depth_semseg", "depth_normals", "semseg_normals", "all"}
    table2 = {"initial", "no_cross_task", "cross_task", "recon", "pairwise", "cross_stitch", "cspn", "scale4", "l1"}
    assert {f"table1_{n}" for n in table1} <= names
    assert {f"table2_{n}" for n in table2} <= names
    assert {"table7_kitti_stage1_nyu", "table7_kitti_stage2_depth", "table7_kitti_stage3_finetune"} <= names
    assert {"eq4_diffused", "eq4_initial", "eq4_learned"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_builds_and_trains_one_step(path: Path):
    cfg = load_config(path, SMALL)
    if cfg.data.dataset != "synthetic":  # real-data stages: build on synthetic scenes, the data is not here
        to_synthetic = ["data.dataset=synthetic", "data.root=null", "data.args=null", "data.split_args=null"]
        cfg = load_config(path, [*SMALL, *to_synthetic])
        cfg.init.checkpoint = None
    dataset = make_dataset(cfg.data, cfg.data.train_split, train=True, tasks=cfg.data.tasks)
    model, tasks = build_model_and_tasks(cfg, dataset)
    loss = build_loss(cfg.loss, tasks, model_name=cfg.model.name)
    batch = collate([dataset[i] for i in range(2)])
    out = model(batch["image"])
    terms = loss(out, batch)
    assert torch.isfinite(terms["total"])
    terms["total"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    if "pairwise" in resolve_loss(cfg.loss, cfg.model.name).extra:
        assert any(name.startswith("pairwise/") for name in terms)
    if isinstance(model, PAPNet) and model.propagation == "pap" and model.pap.cross_task:
        weights = model.pap.mixing_weights()
        torch.testing.assert_close(weights.sum(1), torch.ones(len(model.tasks)))


#: What the committed configs trained before the loss defaults moved to the models (the default config wrote
#: PAP's terms out; ``extra: null`` cleared them): every config keeps PAP's initial stage, and these four
#: ablation rows have no pair-wise term.
NO_PAIRWISE = {"table2_cross_task", "table2_initial", "table2_no_cross_task", "table2_recon"}


TABLES = [p for p in CONFIGS if p.stem.startswith(("table1_", "table2_"))]


@pytest.mark.parametrize("path", TABLES, ids=[p.stem for p in TABLES])
def test_config_trains_the_losses_it_trained_before(path: Path):
    cfg = load_config(path)
    loss = resolve_loss(cfg.loss, cfg.model.name)
    assert loss.aux_weights == {"initial": 1.0}
    pairwise = {} if path.stem in NO_PAIRWISE else {"pairwise": {"weight": 0.2, "pairs": 300}}
    assert loss.extra == pairwise
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.encoder_lr, cfg.optim.groups) == ("adamw", 2e-3, None, {})
