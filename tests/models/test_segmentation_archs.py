"""FCN, DeepLab, PSPNet and U-Net on timm encoders: the model contract, any input size, gradients, weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from tridense.errors import ConfigError
from tridense.models.registry import create_model, list_models
from tridense.models.segmentation import ARCHITECTURES, SegmentationNet


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_semseg_logits_at_any_input_size(arch: str) -> None:
    assert arch in list_models()
    model = create_model(arch, encoder="resnet18", pretrained=False, tasks=None, num_classes=5, decoder_channels=32)
    assert model.tasks == ("semseg",)
    image = torch.randn(2, 3, 50, 70)  # not a multiple of any stride
    out = model(image)
    assert set(out) == {"semseg", "aux"} and out["semseg"].shape == (2, 5, 50, 70)
    assert torch.isfinite(out["semseg"]).all()
    out["semseg"].logsumexp(1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]


def test_any_tasks_follow_the_model_contract() -> None:
    model = create_model("unet", encoder="resnet18", tasks=("depth", "normals", "semseg"), num_classes=3)
    out = model(torch.randn(2, 3, 64, 64))
    assert out["depth"].shape == (2, 1, 64, 64) and (out["depth"] > 0).all()
    assert torch.allclose(out["normals"].square().sum(1), torch.ones(2, 64, 64), atol=1e-5)
    assert out["semseg"].shape == (2, 3, 64, 64)
    assert 1.5 < float(out["depth"].detach().median()) < 4.0  # the depth channel starts near 2.5 m


def test_deeplab_output_stride_and_options() -> None:
    model = create_model("deeplab", encoder="resnet18", num_classes=2, output_stride=16)
    assert model.net.encoder.output_stride == 16
    with pytest.raises(ConfigError, match="output_stride"):
        create_model("fcn", encoder="resnet18", num_classes=2, output_stride=4)
    with pytest.raises(ConfigError, match=r"model\.args\.widths: unknown key"):
        create_model("pspnet", encoder="resnet18", num_classes=2, widths=[1])
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("unet", encoder="resnet18")


def test_pretrained_weights_from_a_local_file(tmp_path: Path) -> None:
    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = SegmentationNet("fcn", encoder="resnet18", pretrained=str(path), num_classes=2)
    torch.testing.assert_close(model.net.encoder.model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
