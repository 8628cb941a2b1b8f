"""Every config under configs/asm/ builds its experiment and trains: one step for the synthetic scenes, two for
the real-data recipes on fixtures in the datasets' true encodings (pretrained off, tiny sizes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tridense.data.sample import collate
from tridense.training.config import load_config
from tridense.training.methods.adversarial import AdversarialModule
from tridense.training.run import build_experiment

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "data"))  # the datasets' fixture writers

import test_horse  # noqa: E402
import test_stanford  # noqa: E402
import test_voc  # noqa: E402

SYNTHETIC = sorted((REPO / "configs" / "asm" / "synthetic").glob("*.yaml"))
REAL = sorted((REPO / "configs" / "asm").glob("*.yaml"))
TINY = [
    "data.size=[32,48]",
    "data.batch_size=2",
    "data.num_workers=0",
    "model.pretrained=false",
    "model.encoder=resnet18",
    "trainer.precision=32-true",
]


def _tiny_critic(cfg_args: dict[str, Any]) -> list[str]:
    """Overrides shrinking the analyzer (same number of layers) and the discriminator."""
    layers = cfg_args.get("asm", {}).get("analyzer", {}).get("layers", 9)
    widths = [4] * ((layers + 1) // 2)
    return [f"method.args.asm.analyzer.widths={widths}", "method.args.gan.width=4"]


def _steps(module: AdversarialModule, batch: dict[str, Any], steps: int) -> None:
    """``steps`` training steps of the module's own training_step with plain optimisers (no Trainer)."""
    optimizers = [torch.optim.SGD(module.model.parameters(), lr=1e-3)]
    if module.critic is not None:
        optimizers.append(torch.optim.SGD(module.critic.parameters(), lr=1e-3))
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda _: 1.0) for o in optimizers]
    logged: dict[str, float] = {}
    module._optimizers = lambda: (optimizers, schedulers)  # type: ignore[method-assign]
    module.manual_backward = lambda loss: loss.backward()  # type: ignore[method-assign]
    module._check_finite = lambda terms: None  # type: ignore[method-assign]
    module.log = lambda name, value, **_: logged.__setitem__(name, float(value))  # type: ignore[method-assign]
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    for step in range(steps):
        module.training_step(batch, step)
        module.step += 1
    assert all(torch.isfinite(torch.tensor(v)) for v in logged.values()), logged
    moved = {n.split(".")[0] for n, p in module.named_parameters() if not torch.equal(before[n], p)}
    assert "model" in moved
    assert ("critic" in moved) == (module.critic is not None)


def _run(cfg_path: Path, overrides: list[str], steps: int) -> AdversarialModule:
    cfg = load_config(cfg_path, overrides)
    cfg = load_config(cfg_path, [*overrides, *_tiny_critic(cfg.method.args)])
    experiment = build_experiment(cfg)
    module = experiment.module
    assert isinstance(module, AdversarialModule)
    data = experiment.datamodule.dataset(cfg.data.train_split, train=True)
    batch = collate([data[i] for i in range(2)])
    _steps(module, batch, steps)
    return module


def test_every_paper_row_has_a_config() -> None:
    names = {p.stem for p in SYNTHETIC}
    variants = ["iid", "gan", "cgan", "asm", "iid_asm", "asm_no_rec", "asm_no_adv"]
    for task in ["semseg", "depth", "normals", "depth_normals"]:
        assert {f"{task}_{v}" for v in variants} <= names
    assert {f"semseg_asm_{layers}" for layers in ["conv1", "conv2", "conv3", "conv1_3"]} <= names
    assert {"semseg_deeplab_iid", "semseg_deeplab_cgan", "semseg_deeplab_asm"} <= names
    real = {p.stem for p in REAL}
    assert {"stanford_normals_unet_asm", "stanford_depth_unet_asm", "horse_unet_asm", "horse_unet_iid"} <= real
    voc = [("fcn", "asm"), ("deeplab", "asm"), ("pspnet", "asm"), ("pspnet", "cgan")]
    assert {f"voc_{a}_{v}" for a, v in voc} <= real


def test_the_2d3ds_recipe_is_the_authors() -> None:
    cfg = load_config(REPO / "configs" / "asm" / "stanford_normals_unet_asm.yaml")
    args = cfg.method.args
    assert (cfg.model.name, cfg.model.pretrained, cfg.data.batch_size, cfg.data.size) == ("unet", False, 8, [512, 512])
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.schedule) == ("sgd", 0.01, "poly")
    assert cfg.trainer.max_steps == 120000
    assert args["asm"]["adversarial_weight"] == 0.012 and args["asm"]["reconstruction_weight"] == 1.0
    assert args["supervised_weight"] == 1.0 and args["asm"]["analyzer"]["layers"] == 9
    assert cfg.eval.protocol == "asm-2d3ds"


@pytest.mark.parametrize("path", SYNTHETIC, ids=[p.stem for p in SYNTHETIC])
def test_synthetic_config_trains_one_step(path: Path) -> None:
    tiny = [*TINY, "data.split_args={train: {length: 2}, val: {length: 2}, test: {length: 2}}"]
    module = _run(path, tiny, steps=1)
    cfg = load_config(path)
    assert module.tasks == tuple(cfg.data.tasks)


@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_real_data_config_trains_two_steps_on_fixtures(path: Path, tmp_path: Path, request) -> None:
    name = path.stem
    if name.startswith("voc"):
        test_voc.write_devkit(tmp_path)
        root = tmp_path / "VOCdevkit"
    elif name.startswith("horse"):
        test_horse.write_repackaged(tmp_path, 4)
        root = tmp_path / "weizmann_horse_db"
        (root / "train.txt").write_text("horse1\nhorse2\n")
        (root / "val.txt").write_text("horse3\nhorse4\n")
    else:
        shared = request.getfixturevalue("shared_data")
        root = tmp_path / "2D-3D-S"
        for area, frame in test_stanford.FRAMES.items():
            test_stanford.write_frame(root, area, shared / "nyu-mini", frame)
        (root / "semantic_labels.json").write_text(json.dumps(test_stanford.LABELS))
        # every fixture area in one fold's training split
    extra = [f"data.root={root}"]
    if name.startswith("stanford"):
        extra.append("data.args={areas: [area_1, area_5a]}")
    _run(path, [*TINY, *extra], steps=2)


def test_the_experiment_script_rows_are_configs() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import asm_experiments

    assert {stem for stem, _, _ in asm_experiments.ROWS} <= {p.stem for p in SYNTHETIC}
