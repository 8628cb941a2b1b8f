"""The model registry: uniform signature, options validation, loss defaults, no import of its clients."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

import tridense.models.registry as registry
from tridense.errors import ConfigError
from tridense.models import create_model, list_models, model_options, model_spec, register_model
from tridense.models.pap import PAPNet

UNIFORM = ["encoder", "pretrained", "tasks", "num_classes", "args"]


def test_registry_imports_none_of_its_clients():
    tree = ast.parse(Path(registry.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("tridense.models")], imported


@pytest.mark.parametrize("name", list_models())
def test_every_variant_has_the_uniform_signature(name: str):
    spec = model_spec(name)
    params = inspect.signature(spec.fn).parameters
    assert list(params) == UNIFORM
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(params.values())[:4])
    assert params["tasks"].default is None and params["num_classes"].default is None
    assert params["pretrained"].default is False
    assert spec.description


def test_pap_variants_declare_their_stage_and_loss_and_baselines_none():
    for name in ("pap", "pap_resnet18", "pap_resnet50", "pap_vgg16_bn", "cross_stitch", "cspn"):
        spec = model_spec(name)
        assert spec.aux_stages == ("initial",)
        assert spec.loss_defaults() == {
            "aux_weights": {"initial": 1.0},
            "extra": {"pairwise": {"weight": 0.2, "pairs": 300}},
        }
    for name in ("mtl_baseline", "single_depth", "single_normals", "single_semseg"):
        assert model_spec(name).aux_stages == () and model_spec(name).loss_defaults() == {}
    copy = model_spec("pap").loss_defaults()
    copy["extra"]["pairwise"]["weight"] = 9.0  # a caller's copy never changes the registry
    assert model_spec("pap").default_loss["extra"]["pairwise"]["weight"] == 0.2


def test_options_models_forbid_extra_keys():
    for name in list_models():
        options = model_options(name)
        assert options is not None and options.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("pap", {"similarity": "cosine"}, "'dot', 'neg_sq_l2', 'neg_l2', 'l1' or 'l2'"),
        ("pap", {"similarity": "neg_l2", "mode": "fused"}, "fused.*inner-product"),
        ("pap", {"similarity": "l1", "mode": "fused"}, "fused.*inner-product"),
        ("pap", {"propagation": "none", "cross_task": False}, "cross_task.*no effect"),
        ("cross_stitch", {"cross_task": False}, "unknown key"),
        ("pap", {"recon_input": "initial"}, "recon_input"),
        ("pap", {"propagation": "cross_stich"}, "'pap', 'cross_stitch', 'cspn' or 'none'"),
        ("pap", {"mode": "fast"}, "'auto', 'dense', 'fused' or 'chunked'"),
        ("pap", {"affinity_scale": 2}, "affinity_scale"),
        ("pap", {"propagation": "cross_stitch", "similarity": "l2"}, "similarity.*no effect"),
        ("pap", {"propagation": "cross_stitch", "iterations": 3}, "iterations.*no effect"),
        ("pap", {"propagation": "cspn", "beta": 0.1}, "beta.*no effect"),
        ("pap", {"simlarity": "dot"}, "unknown key.*valid keys.*similarity"),
        ("cross_stitch", {"iterations": 3}, "model.args.iterations: unknown key"),
        ("cspn", {"similarity": "dot"}, "unknown key"),
        ("mtl_baseline", {"propagation": "pap"}, "unknown key"),
        ("pap", {"learn_beta": True, "beta": 0.0}, "learn_beta"),
    ],
)
def test_bad_model_args_are_config_errors(name: str, args: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        create_model(name, num_classes=3, **args)


def test_valid_args_reach_the_model():
    model = create_model("pap", num_classes=3, propagation="cspn", iterations=2, affinity_scale=16)
    assert isinstance(model, PAPNet) and model.propagation == "cspn" and model.affinity_scale == 16
    assert all(m.iterations == 2 for m in model.cspn.values())
    with pytest.warns(FutureWarning, match="neg_sq_l2"):  # the deprecated name still means the squared distance
        model = create_model("pap", num_classes=3, similarity="l2", tasks=["depth", "normals"])
    assert model.tasks == ("depth", "normals") and model.pap.similarity == "neg_sq_l2"
    model = create_model("pap", num_classes=3, similarity="neg_l2", learn_beta=True, beta=0.95)
    assert model.pap.similarity == "neg_l2" and model.pap.beta.shape == (3,)
    model = create_model("cspn", num_classes=3, cross_task=False)
    assert model.cspn.mixing_logits is None
    assert create_model("cspn", num_classes=3).cspn.mixing_logits.shape == (3, 3)


def test_tasks_none_means_the_variants_default():
    assert create_model("mtl_baseline", num_classes=3).tasks == ("depth", "normals", "semseg")
    assert create_model("single_normals").tasks == ("normals",)
    # A single-task network trains its task out of a larger request, and refuses a request without it.
    assert create_model("single_depth", tasks=("depth", "semseg"), num_classes=3).tasks == ("depth",)
    with pytest.raises(ConfigError, match="predicts depth only"):
        create_model("single_depth", tasks=("normals",))
    with pytest.raises(ConfigError, match="non-empty subset"):
        create_model("pap", tasks=("depth", "height"))


def test_fixed_encoder_variants_refuse_another_encoder():
    with pytest.raises(ConfigError, match=r"model\.name=pap with model\.encoder=resnet34"):
        create_model("pap_resnet18", encoder="resnet34", num_classes=3)
    assert create_model("pap_resnet18", encoder="resnet18", num_classes=3).encoder.name == "resnet18"


def test_register_model_bare_and_with_options():
    class TinyOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        width: int = 4

    def tiny_net(*, encoder="none", pretrained=False, tasks=None, num_classes=None, **args) -> nn.Module:
        """A one-layer test model."""
        net = nn.Conv2d(3, args.get("width", 4), 1)
        net.tasks = ("depth",)
        return net

    def tiny_bare(*, encoder="none", pretrained=False, tasks=None, num_classes=None, **args) -> nn.Module:
        """Another."""
        return nn.Identity()

    try:
        register_model(options=TinyOptions, aux_stages=("coarse",), default_loss={"aux_weights": {"coarse": 0.5}})(
            tiny_net
        )
        register_model(tiny_bare)
        assert create_model("tiny_net", width=7).out_channels == 7
        assert model_spec("tiny_net").aux_stages == ("coarse",)
        assert model_options("tiny_bare") is None
        with pytest.raises(ConfigError, match="width"):
            create_model("tiny_net", width="wide")
        with pytest.raises(ConfigError, match=r"takes no model\.args"):
            create_model("tiny_bare", width=3)
        with pytest.raises(ValueError, match="registered twice"):
            register_model(tiny_bare)
        with pytest.raises(ValueError, match="not in aux_stages"):
            register_model(default_loss={"aux_weights": {"initial": 1.0}})(tiny_bare)
    finally:
        registry._SPECS.pop("tiny_net", None)
        registry._SPECS.pop("tiny_bare", None)


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ConfigError, match=r"registered models: \[.*'pap'"):
        model_spec("papp")


def test_state_dict_names_of_the_propagation_blocks_are_kept():
    """Checkpoints of earlier versions load: the blocks keep the attribute names pap, cross_stitch, cspn."""
    torch.manual_seed(0)
    keys = {name: set(create_model(name, num_classes=3).state_dict()) for name in ("pap", "cross_stitch", "cspn")}
    assert {"pap.mixing_logits", "pap.projections.0.weight", "pap.projections.2.bias"} <= keys["pap"]
    assert "cross_stitch.alpha" in keys["cross_stitch"]
    assert {"cspn.depth.affinity.weight", "cspn.semseg.affinity.bias"} <= keys["cspn"]
    none = set(create_model("pap", num_classes=3, propagation="none").state_dict())
    assert none == {k for k in keys["pap"] if not k.startswith("pap.")}


def test_recon_input_features_only_reads_the_diffused_features():
    torch.manual_seed(0)
    both = create_model("pap", num_classes=3, task_channels=16, recon_channels=8, lateral_channels=8)
    only = create_model(
        "pap", num_classes=3, task_channels=16, recon_channels=8, lateral_channels=8, recon_input="features"
    )
    for task in both.tasks:  # the reconstruction's input layer: 2C [+ C_t] channels
        assert only.recon[task].inp[0].in_channels == 16
        assert both.recon[task].inp[0].in_channels == 16 + both.out_channels[task]
    out = only(torch.randn(1, 3, 64, 96))
    assert out["depth"].shape == (1, 1, 64, 96) and torch.isfinite(out["normals"]).all()
