"""GADNet: Table 4's switches, outputs, partial depth supervision, HHA stream, dilation, option errors."""

from __future__ import annotations

import pytest
import torch

from tridense.errors import ConfigError
from tridense.layers.gap import ConvFusionPropagation, GAPPropagation
from tridense.losses import MultiTaskLoss, build_task_losses
from tridense.losses.gad import SideOutputLoss
from tridense.models import create_model
from tridense.models.gad import SIDE_OUTPUTS, GADNet

SIZE = (64, 96)
SMALL = {"encoder": "resnet18", "num_classes": 5, "decoder_channels": (16, 16, 8, 8), "spf_channels": 8}
ROWS = {  # Table 4 (fusion, depth embedding, feature propagation, spf)
    "sem_only": {"tasks": ["semseg"], "feature_propagation": False, "fusion": "none", "spf": False},
    "depem": {"feature_propagation": False, "fusion": "none", "spf": False},
    "featprop": {"fusion": "none", "spf": False},
    "vanconv": {"fusion": "conv", "spf": False},
    "gap": {"fusion": "gap", "spf": False},
    "full": {},
}


def _batch(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(b, 3, *SIZE, generator=g),
        "depth": torch.rand(b, 1, *SIZE, generator=g) * 4 + 0.5,
        "semseg": torch.randint(0, 5, (b, *SIZE), generator=g),
        "has_depth": torch.ones(b, dtype=torch.bool),
        "has_semseg": torch.ones(b, dtype=torch.bool),
    }


@pytest.mark.parametrize("row", ROWS)
def test_table4_rows_build_run_and_train(row: str):
    torch.manual_seed(0)
    model = create_model("gad", **SMALL, **ROWS[row])
    batch = _batch()
    out = model(batch["image"])
    assert out["semseg"].shape == (2, 5, *SIZE) and torch.isfinite(out["semseg"]).all()
    assert ("depth" in out) == (row != "sem_only") == ("depth" in model.tasks)
    if "depth" in out:
        assert out["depth"].shape == (2, 1, *SIZE) and (out["depth"] > 0).all()
    sides = out["aux"].get("side")
    assert (sides is not None) == (row == "full")
    if sides:
        assert tuple(sides) == SIDE_OUTPUTS and all(s.shape == (2, 5, 32, 48) for s in sides.values())
    fusion = {"vanconv": ConvFusionPropagation, "gap": GAPPropagation, "full": GAPPropagation}
    assert type(model.fusion) is fusion[row] if row in fusion else model.fusion is None
    loss = MultiTaskLoss(build_task_losses(model.tasks, semseg="focal"), extra=[SideOutputLoss(model.tasks)])
    terms = loss(out, batch)
    assert {f"side/{s}" for s in SIDE_OUTPUTS} <= set(terms) if row == "full" else not any("side" in t for t in terms)
    terms["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]


def test_feature_propagation_and_gap_carry_depth_features_into_segmentation():
    """With propagation the segmentation depends on the depth decoder; without it, it does not."""
    torch.manual_seed(0)
    for prop, expect in ((True, True), (False, False)):
        model = create_model("gad", **SMALL, feature_propagation=prop, fusion="none", spf=False).eval()
        image = torch.randn(1, 3, *SIZE)
        model(image)["semseg"].sum().backward()
        grad = model.depth_decoder.blocks[0].conv[0].weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == expect


def test_partial_supervision_stops_depth_branch_gradients_from_samples_without_depth():
    torch.manual_seed(0)
    model = create_model("gad", **SMALL, gap_mode="dense")
    nn_init = model.fusion.out[1].weight
    torch.nn.init.ones_(nn_init)  # open the GAP branch so the guide matters
    image = torch.randn(2, 3, *SIZE)
    depth_params = list(model.depth_decoder.parameters())

    def depth_grads(has_depth, sample):
        model.zero_grad()
        out = model(image, has_depth=torch.tensor(has_depth))
        out["semseg"][sample].sum().backward()  # segmentation of one sample only
        return torch.cat([p.grad.flatten() for p in depth_params])

    model.eval()  # batch norm per sample: the two samples do not interact
    assert depth_grads([True, True], 1).abs().sum() > 0
    assert depth_grads([True, False], 1).abs().sum() == 0  # no depth for sample 1: forward only
    assert depth_grads([True, False], 0).abs().sum() > 0
    # The outputs themselves do not change.
    with torch.no_grad():
        a = model(image, has_depth=torch.tensor([True, False]))
        b = model(image)
    torch.testing.assert_close(a["semseg"], b["semseg"])


def test_hha_stream_and_dilated_encoder():
    torch.manual_seed(0)
    model = create_model("gad", **SMALL, hha=True, output_stride=8)
    image, hha = torch.randn(2, 3, *SIZE), torch.randn(2, 3, *SIZE)
    out = model(image, hha=hha)
    assert out["semseg"].shape == (2, 5, *SIZE)
    assert model.encoder.reductions[-1] == 8
    other = model(image, hha=torch.zeros_like(hha))
    assert not torch.allclose(out["semseg"], other["semseg"])
    with pytest.raises(ValueError, match="hha=True"):
        model(image)
    plain = create_model("gad", **SMALL)
    with pytest.raises(ValueError, match="no HHA stream"):
        plain(image, hha=hha)
    assert plain.decoder_sizes((64, 96), 32) == [(4, 6), (8, 12), (16, 24), (32, 48)]
    assert plain.decoder_sizes((64, 96), 8) == [(16, 24), (32, 48), (32, 48), (32, 48)]


def test_gap_modes_agree_inside_the_model():
    torch.manual_seed(0)
    model = create_model("gad", **SMALL, gap_mode="dense").eval()
    torch.nn.init.ones_(model.fusion.out[1].weight)
    image = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        dense = model(image)["semseg"]
        for mode in ("chunked", "fused"):
            model.fusion.mode = mode
            torch.testing.assert_close(model(image)["semseg"], dense, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"tasks": ["semseg", "normals"]}, "tasks must be"),
        ({"tasks": ["depth"]}, "tasks must be"),
        ({"tasks": ["semseg"]}, "feature_propagation and fusion"),
        ({"tasks": ["semseg"], "depth_embedding": True}, "contradicts"),
        ({"fusion": "attention"}, "fusion='attention': Input should be 'gap', 'conv' or 'none'"),
        ({"fusion": "conv", "gap_mode": "fused"}, "no effect"),
        ({"decoder_channels": (8, 8)}, "decoder_channels"),
        ({"output_stride": 4}, "output_stride"),
        ({"num_classes": None}, "num_classes"),
    ],
)
def test_bad_options_name_the_problem(args: dict, match: str):
    with pytest.raises(ConfigError, match=match):
        create_model("gad", **{**SMALL, **args})


def test_variants_and_default_tasks():
    model = create_model("gad", **SMALL, depth_embedding=False, feature_propagation=False, fusion="none")
    assert model.tasks == ("semseg",) and isinstance(model, GADNet)
    assert create_model("gad", **SMALL).tasks == ("depth", "semseg")
    with pytest.raises(ConfigError, match="ResNet-50"):
        create_model("gad_resnet50", **SMALL)


def test_options_model_accepts_every_config_and_rejects_what_gadnet_rejects():
    from pathlib import Path

    import pydantic
    import yaml

    from tridense.models.gad import GAD_DEFAULT_LOSS, GADOptions
    from tridense.training.config import load_config

    for path in sorted((Path(__file__).resolve().parents[2] / "configs" / "gad").glob("*.yaml")):
        GADOptions(**load_config(path).model.args)
    for bad in (
        {"depth_embedding": False},  # feature propagation and GAP on by default
        {"fusion": "conv", "gap_mode": "fused"},
        {"fusion": "attention"},
        {"output_stride": 4},
        {"decoder_channels": [8, 8]},
        {"task_channels": 64},  # a PAP key
    ):
        with pytest.raises(pydantic.ValidationError):
            GADOptions(**bad)
    assert GADOptions(depth_embedding=False, feature_propagation=False, fusion="none").spf
    assert yaml.safe_load(yaml.safe_dump(GAD_DEFAULT_LOSS)) == GAD_DEFAULT_LOSS
    assert GAD_DEFAULT_LOSS["extra"]["side"]["kind"] == "focal"
