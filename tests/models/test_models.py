"""Every registered model: the contract (keys, shapes, ranges), no NaN, a gradient for every parameter."""

from __future__ import annotations

import pytest
import torch

from tridense.errors import ConfigError
from tridense.losses import MultiTaskLoss, build_task_losses
from tridense.losses.registry import EXTRA_LOSSES
from tridense.models import create_model, list_models, model_spec
from tridense.models.encoder import Encoder

NUM_CLASSES = 5
SIZE = (64, 96)


def _batch(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    normals = torch.randn(b, 3, *SIZE, generator=g)
    return {
        "image": torch.randn(b, 3, *SIZE, generator=g),
        "depth": torch.rand(b, 1, *SIZE, generator=g) * 4 + 0.5,
        "normals": normals / normals.norm(dim=1, keepdim=True),
        "semseg": torch.randint(0, NUM_CLASSES, (b, *SIZE), generator=g),
    }


@pytest.mark.parametrize("name", list_models())
def test_model_contract_and_gradients(name: str):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES)
    batch = _batch()
    out = model(batch["image"])
    assert isinstance(out.get("aux"), dict)
    tasks = model.tasks
    assert set(tasks) <= {"depth", "normals", "semseg"} and tasks
    for task in tasks:
        assert torch.isfinite(out[task]).all(), task
    if "depth" in tasks:
        assert out["depth"].shape == (2, 1, *SIZE)
        assert (out["depth"] > 0).all()
    if "normals" in tasks:
        assert out["normals"].shape == (2, 3, *SIZE)
        torch.testing.assert_close(out["normals"].norm(dim=1), torch.ones(2, *SIZE))
    if "semseg" in tasks:
        assert out["semseg"].shape == (2, NUM_CLASSES, *SIZE)

    spec = model_spec(name)
    assert set(spec.aux_stages) <= set(out["aux"])  # the stages the registry declares are returned
    defaults = spec.loss_defaults()
    extra = [EXTRA_LOSSES[n](tasks, **(opts or {})) for n, opts in defaults.get("extra", {}).items()]
    loss = MultiTaskLoss(build_task_losses(tasks), aux_weights=defaults.get("aux_weights", {}), extra=extra)
    loss(out, batch)["total"].backward()
    # Connected to the loss (timm zero-initialises the last BN of residual blocks, so some gradients are
    # exactly zero at initialisation; what matters is that none is missing).
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:10]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_encoder_channels_and_strides():
    enc = Encoder("resnet18")
    feats = enc(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == enc.channels
    assert [64 // f.shape[-1] for f in feats] == enc.reductions


def test_unknown_names_are_listed():
    with pytest.raises(ConfigError, match="registered models"):
        create_model("no_such_model")
    with pytest.raises(ConfigError, match="unknown timm encoder"):
        Encoder("resnet_nonexistent")


def test_pretrained_from_a_local_file(tmp_path):
    """A local classification checkpoint initialises the encoder (safetensors and torch files)."""
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False)
    state = source.state_dict()
    save_file(state, tmp_path / "r18.safetensors")
    torch.save(state, tmp_path / "r18.pth")
    for file in ("r18.safetensors", "r18.pth"):
        enc = Encoder("resnet18", pretrained=tmp_path / file)
        torch.testing.assert_close(enc.body.conv1.weight, state["conv1.weight"])
    with pytest.raises(ConfigError, match="not found"):
        Encoder("resnet18", pretrained=tmp_path / "missing.safetensors")


def test_pretrained_true_offline_fails_fast(monkeypatch):
    import tridense.models.encoder as encoder_module

    monkeypatch.setattr(encoder_module, "_hub_reachable", lambda *a, **k: False)
    with pytest.raises(ConfigError, match="local weights file"):
        Encoder("resnet18", pretrained=True)


def test_encoder_passes_timm_arguments_dilated_backbone():
    """output_stride=8 dilates the last two stages: strides 2, 4, 8, 8, 8 and maps of that size."""
    enc = Encoder("resnet18", output_stride=8, drop_path_rate=0.1)
    assert enc.reductions == [2, 4, 8, 8, 8]
    feats = enc(torch.randn(1, 3, 64, 64))
    assert [64 // f.shape[-1] for f in feats] == enc.reductions
    with pytest.raises(ConfigError, match="encoder_args"):
        Encoder("resnet18", features_only=False)
    with pytest.raises(ConfigError, match="resnet18"):
        Encoder("resnet18", no_such_timm_argument=1)


def test_dilated_encoder_through_model_args():
    model = create_model("pap", num_classes=NUM_CLASSES, encoder_args={"output_stride": 8})
    assert model.encoder.reductions[-1] == 8
    out = model(torch.randn(1, 3, *SIZE))
    assert out["depth"].shape == (1, 1, *SIZE)


def test_pretrained_file_through_create_model(tmp_path):
    """model.pretrained given as a local file (written here) initialises the encoder of a registered model."""
    import timm

    torch.manual_seed(1)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(state, tmp_path / "weights.pt")
    model = create_model("mtl_baseline", num_classes=NUM_CLASSES, pretrained=str(tmp_path / "weights.pt"))
    torch.testing.assert_close(model.encoder.body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
