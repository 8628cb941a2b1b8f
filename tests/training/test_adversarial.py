"""The ``adversarial`` method: options, each update moving its own network in the intended direction, a
user's model, a real run (both optimisers in the checkpoint; evaluation and export read the predictor only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tridense.checkpoints import export, load_model, read_checkpoint
from tridense.data.sample import collate
from tridense.errors import ConfigError
from tridense.losses.asm import GANMatching, StructureMatching, layer_distances
from tridense.losses.multitask import MultiTaskLoss, build_task_losses
from tridense.training.config import EvalConfig, OptimConfig, load_config
from tridense.training.methods import method_class
from tridense.training.methods.adversarial import AdversarialModule, AdversarialOptions, TaskMapSet, structure_maps
from tridense.training.run import build_experiment, train

TINY = [
    "method.name=adversarial",
    "data.size=[32,48]",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.split_args={train: {length: 4}, val: {length: 2}, test: {length: 2}}",
    "trainer.progress_bar=false",
    "trainer.precision=32-true",
    "trainer.val_every_n_steps=null",
    "eval.panel_samples=1",
]
SMALL_ANALYZER = {"layers": 5, "widths": [8, 16, 16]}


class UserSegNet(nn.Module):
    """A user's model (not registered): image -> semseg logits, the model contract."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.tasks = ("semseg",)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 3, padding=1))

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        return {"semseg": self.body(image)}


class UserDepthNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tasks = ("depth",)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        return {"depth": F.softplus(self.body(image)) + 0.1}


def _module(model: nn.Module, tasks: tuple[str, ...], args: dict[str, Any], num_classes: int | None = 3):
    loss = MultiTaskLoss(build_task_losses(tasks))
    return AdversarialModule(
        model,
        loss,
        tasks=tasks,
        num_classes=num_classes,
        options=AdversarialOptions(**args),
        optim=OptimConfig(optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=0.0),
        evaluation=EvalConfig(),
        max_steps=10,
    )


def _seg_batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 4:12, 3:9] = 1
    labels[:, 2:6, 10:15] = 2
    labels[0, 0, :4] = 255
    return {"image": torch.randn(2, 3, 16, 16, generator=g), "semseg": labels}


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _moved(before: dict[str, torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(before[n], p) for n, p in module.named_parameters())


def _critic_step(
    module: AdversarialModule, maps: TaskMapSet, image: torch.Tensor, critic_opt: torch.optim.Optimizer
) -> None:
    """One update of the critic by its own objective: no gradient reaches the predictor, only the critic moves."""
    model_before, critic_before = _snapshot(module.model), _snapshot(module.critic)
    critic_opt.zero_grad()
    module.critic_loss(maps, image)["total"].backward()
    assert all(p.grad is None for p in module.model.parameters())
    critic_opt.step()
    assert _moved(critic_before, module.critic) and not _moved(model_before, module.model)


def _predictor_step(
    module: AdversarialModule,
    outputs: dict[str, torch.Tensor],
    batch: dict[str, Any],
    maps: TaskMapSet,
    predictor_opt: torch.optim.Optimizer,
    critic_opt: torch.optim.Optimizer,
) -> None:
    """One update of the predictor by its own objective: no gradient reaches the critic, only the predictor
    moves."""
    model_before, critic_before = _snapshot(module.model), _snapshot(module.critic)
    predictor_opt.zero_grad()
    critic_opt.zero_grad(set_to_none=True)
    module.predictor_loss(outputs, batch, maps)["total"].backward()
    assert all(p.grad is None for p in module.critic.parameters())
    predictor_opt.step()
    assert _moved(model_before, module.model) and not _moved(critic_before, module.critic)


def test_options_are_checked_when_the_config_loads_or_the_method_is_built() -> None:
    assert method_class("adversarial") is AdversarialModule
    with pytest.raises(ConfigError, match=r"\['adversery'\] at method\.args; valid keys: \['adversary'"):
        load_config(None, [*TINY, "method.args={adversery: asm}"])
    with pytest.raises(ConfigError, match=r"method\.args\.adversary: 'wgan' is not valid"):
        load_config(None, [*TINY, "method.args={adversary: wgan}"])
    with pytest.raises(ConfigError, match=r"method\.args\.asm\.form"):
        load_config(None, [*TINY, "method.args={asm: {form: hinge}}"])
    with pytest.raises(ConfigError, match=r"critic_optim\.lr: 0\.1 is larger than the predictor's optim\.lr 0\.05"):
        _module(UserSegNet(), ("semseg",), {"critic_optim": {"lr": 0.1}})
    with pytest.raises(ConfigError, match="trains nothing"):
        _module(UserSegNet(), ("semseg",), {"adversary": "none"})
    with pytest.raises(ConfigError, match=r"method\.args\.asm: analyzer layer set 'conv7' names conv7"):
        _module(UserSegNet(), ("semseg",), {"asm": {"layers": "conv7", "analyzer": SMALL_ANALYZER}})
    module = _module(UserSegNet(), ("semseg",), {"critic_optim": {"lr": 0.01, "grad_clip": 0}})
    assert module.critic_optim_cfg.lr == 0.01 and module.critic_optim_cfg.grad_clip is None
    assert module.critic_optim_cfg.optimizer == "sgd"  # the predictor's where not given


@pytest.mark.parametrize("form", ["margin", "unbounded"])
def test_asm_updates_move_their_own_network_in_the_intended_direction(form: str) -> None:
    """The analyzer's update (on the binarised prediction) moves the analyzer only and raises the structural
    distance between ground truth and negative; the predictor's moves the predictor only and lowers its
    matching loss. Both through the module's own objectives, on a user's model."""
    torch.manual_seed(0)
    args = {"adversary": "asm", "asm": {"layers": "conv1-2", "form": form, "analyzer": SMALL_ANALYZER}}
    args["asm"]["adversarial_weight"] = 1.0
    module = _module(UserSegNet(), ("semseg",), args)
    assert isinstance(module.critic, StructureMatching)
    analyzer = module.critic.analyzer
    batch = _seg_batch()
    critic_opt = torch.optim.SGD(module.critic.parameters(), lr=0.05)
    predictor_opt = torch.optim.SGD(module.model.parameters(), lr=0.5)

    outputs = module.model(batch["image"])
    maps = structure_maps(module.tasks, outputs, batch)
    assert set(maps.negative[0].unique().tolist()) <= {0.0, 1.0}  # arg-max one-hot

    def distance() -> float:
        with torch.no_grad():
            gt = analyzer(maps.target, maps.valid, layers=module.critic.layers, reconstruct=False)
            neg = analyzer(maps.negative, maps.valid, layers=module.critic.layers, reconstruct=False)
            distances = layer_distances(gt.features, neg.features, module.critic.layers)
            return float(sum(d.mean() for d in distances.values()))

    d_before = distance()
    _critic_step(module, maps, batch["image"], critic_opt)
    assert distance() > d_before

    def matching() -> float:
        with torch.no_grad():
            m = structure_maps(module.tasks, module.model(batch["image"]), batch)
            return float(module.predictor_loss({}, batch, m)["total"])

    m_before = matching()
    _predictor_step(module, outputs, batch, maps, predictor_opt, critic_opt)
    assert matching() < m_before


@pytest.mark.parametrize("adversary", ["gan", "cgan"])
def test_gan_updates_move_their_own_network_in_the_intended_direction(adversary: str) -> None:
    """The discriminator's update lowers its BCE; the predictor's (GAN term only) lowers its own GAN loss."""
    torch.manual_seed(0)
    module = _module(UserDepthNet(), ("depth",), {"adversary": adversary, "gan": {"width": 8, "num_layers": 2}}, None)
    assert isinstance(module.critic, GANMatching) and module.critic.conditional == (adversary == "cgan")
    module.options.gan.weight = 1.0
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(2, 3, 32, 32, generator=g), "depth": 1.0 + torch.rand(2, 1, 32, 32, generator=g)}
    module.critic.eval()  # batch norm on fixed statistics: the losses before and after are comparable
    critic_opt = torch.optim.SGD(module.critic.parameters(), lr=0.01)
    predictor_opt = torch.optim.SGD(module.model.parameters(), lr=0.01)

    def losses() -> tuple[float, float]:
        with torch.no_grad():
            maps = structure_maps(module.tasks, module.model(batch["image"]), batch)
            return float(module.critic_loss(maps, batch["image"])["total"]), float(
                module.predictor_loss({}, batch, maps)["total"]
            )

    outputs = module.model(batch["image"])
    maps = structure_maps(module.tasks, outputs, batch)
    d_before, _ = losses()
    _critic_step(module, maps, batch["image"], critic_opt)
    d_after, g_before = losses()
    assert d_after < d_before
    _predictor_step(module, outputs, batch, maps, predictor_opt, critic_opt)
    assert losses()[1] < g_before


def test_joint_depth_normals_analyzer_sees_both_maps() -> None:
    module = _module(UserDepthNet(), ("depth",), {"asm": {"analyzer": SMALL_ANALYZER}}, None)
    assert module.critic.analyzer.in_channels == (1,)
    both = AdversarialModule(
        UserDepthNet(),
        MultiTaskLoss(build_task_losses(("depth", "normals"))),
        tasks=("depth", "normals"),
        num_classes=None,
        options=AdversarialOptions(asm={"analyzer": SMALL_ANALYZER}),
        optim=OptimConfig(),
        evaluation=EvalConfig(),
    )
    assert both.critic.analyzer.in_channels == (1, 3)
    outputs = {"depth": torch.rand(2, 1, 16, 16) + 0.5, "normals": F.normalize(torch.randn(2, 3, 16, 16), dim=1)}
    batch = {"depth": torch.rand(2, 1, 16, 16) + 0.5, "normals": F.normalize(torch.randn(2, 3, 16, 16), dim=1)}
    batch["depth"][0, 0, :3] = 0.0
    batch["normals"][1, :, -2:] = 0.0
    maps = structure_maps(both.tasks, outputs, batch)
    assert not maps.valid[0, 0, :3].any() and not maps.valid[1, 0, -2:].any()  # the intersection
    torch.testing.assert_close(maps.target[0][1], batch["depth"][1].log())  # log-depth
    terms = both.critic_loss(maps, batch["depth"])
    assert {"reconstruction/depth", "reconstruction/normals", "adversarial"} <= set(terms)


@pytest.mark.parametrize(
    ("adversary", "critic"), [("asm", "critic.analyzer"), pytest.param("cgan", "critic.discriminator")]
)
def test_training_run_keeps_both_optimisers_and_evaluation_reads_the_predictor(
    tmp_path: Path, adversary: str, critic: str
) -> None:
    """Two steps through Lightning: the module counts 2 (Lightning 4 optimiser steps); the checkpoint holds
    the predictor (model.*), the critic (critic.analyzer.* or critic.discriminator.*), two optimiser and
    schedule states; a rebuilt module restores them; load_model and export read model.* only."""
    run = tmp_path / "run"
    args = (
        f"{{adversary: {adversary}, asm: {{analyzer: {{layers: 5, widths: [8, 16, 16]}}}}, gan: {{width: 8}}, "
        "critic_optim: {lr: 0.001}}"
    )
    cfg = load_config(
        None,
        [
            *TINY,
            "model.name=fcn",
            "model.args.decoder_channels=8",
            "data.tasks=[semseg]",
            f"method.args={args}",
            "trainer.max_steps=2",
            f"run_dir={run}",
        ],
    )
    train(cfg)
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["counters"] == {"step": 2, "batches": 2}
    assert len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 2
    assert ckpt["optimizer_states"][1]["param_groups"][0]["lr"] <= 0.001
    prefixes = {k.split(".")[0] + "." + k.split(".")[1] for k in ckpt["state_dict"]}
    assert critic in prefixes and any(p.startswith("model.") for p in prefixes)
    model, _ = load_model(run / "checkpoints" / "last.ckpt")
    assert not any(k.startswith(("critic", "analyzer")) for k in model.state_dict())
    package = export(run / "checkpoints" / "last.ckpt", tmp_path / "package")
    reloaded, _ = load_model(package)
    image = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(image)["semseg"], model(image)["semseg"])
    # a resumed experiment restores the analyzer too
    experiment = build_experiment(cfg, initialise=False)
    experiment.module.load_state_dict(ckpt["state_dict"])
    first = next(k for k in ckpt["state_dict"] if k.startswith(critic))
    torch.testing.assert_close(experiment.module.state_dict()[first], ckpt["state_dict"][first])


def test_iid_baseline_has_one_optimiser_and_trains(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            *TINY,
            "model.name=unet",
            "data.tasks=[depth]",
            "method.args={adversary: none, supervised_weight: 1.0}",
            "trainer.max_steps=1",
            f"run_dir={tmp_path / 'run'}",
        ],
    )
    train(cfg)
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert len(ckpt["optimizer_states"]) == 1 and ckpt["counters"]["step"] == 1
    assert not any(k.startswith("critic") for k in ckpt["state_dict"])


def test_batch_collation_with_instances_reaches_the_critic() -> None:
    """Synthetic samples (with instances and K) collate and feed the critic unchanged."""
    from tridense.data.synthetic.dataset import SyntheticScenes

    data = SyntheticScenes("train", length=2, size=(32, 48), tasks=["semseg"])
    batch = collate([data[0], data[1]])
    module = _module(UserSegNet(data.num_classes), ("semseg",), {"asm": {"analyzer": SMALL_ANALYZER}}, data.num_classes)
    maps = structure_maps(module.tasks, module.model(batch["image"]), batch)
    assert torch.isfinite(module.critic_loss(maps, batch["image"])["total"])


def test_resume_continues_the_minimax(tmp_path: Path) -> None:
    """A resumed run restores both networks, optimisers and the counters, and trains both further."""
    run = tmp_path / "run"
    args = "method.args={adversary: asm, asm: {analyzer: {layers: 5, widths: [8, 8, 8]}}}"
    train(load_config(None, [*TINY, "model.name=unet", "data.tasks=[normals]", args, "trainer.max_steps=2",
                             f"run_dir={run}"]))  # fmt: skip
    before = read_checkpoint(run / "checkpoints" / "last.ckpt")
    train(overrides=["trainer.max_steps=3"], resume=run)
    after = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert after["counters"]["step"] == 3 and len(after["optimizer_states"]) == 2
    for prefix in ("model.", "critic.analyzer."):
        key = next(k for k in before["state_dict"] if k.startswith(prefix) and k.endswith("weight"))
        assert not torch.equal(before["state_dict"][key], after["state_dict"][key]), key
