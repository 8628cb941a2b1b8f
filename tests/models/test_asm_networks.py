"""ASM networks: the structure analyzer / regularizer (shapes, normalisation, masks, layer sets), discriminators."""

from __future__ import annotations

import math

import pytest
import torch

from tridense.errors import ConfigError
from tridense.models.asm import PatchDiscriminator, StructureAnalyzer, analyzer_widths, parse_layers


@pytest.mark.parametrize(("layers", "channels"), [(5, [2]), (7, [21]), (9, [1, 3])])
def test_analyzer_shapes(layers: int, channels: list[int]) -> None:
    analyzer = StructureAnalyzer(channels, layers=layers)
    maps = [torch.randn(2, c, 40, 52) for c in channels]
    out = analyzer(maps)
    levels = (layers + 1) // 2
    assert list(out.features) == [f"conv{i}" for i in range(1, layers + 1)]
    widths = analyzer_widths(layers)
    stem = widths[0] // 2 * len(channels)  # one first convolution per task map, concatenated
    for k in range(1, levels + 1):  # encoder level k: stride 2^k
        assert out.features[f"conv{k}"].shape == (
            2,
            stem if k == 1 else widths[k - 1],
            math.ceil(40 / 2**k),
            math.ceil(52 / 2**k),
        )
    for j in range(1, levels):  # decoder: back up one level per convolution, the skip's width
        level = levels - j
        expected = stem if level == 1 else widths[level - 1]
        assert out.features[f"conv{levels + j}"].shape[1:] == (
            expected,
            math.ceil(40 / 2 ** (level + 1)),
            math.ceil(52 / 2 ** (level + 1)),
        )
    assert out.reconstruction.shape == (2, sum(channels), 40, 52)


def test_features_are_unit_length_and_zero_where_invalid() -> None:
    analyzer = StructureAnalyzer([3], layers=5)
    maps = [torch.nn.functional.normalize(torch.randn(1, 3, 32, 32), dim=1)]
    valid = torch.ones(1, 1, 32, 32, dtype=torch.bool)
    valid[..., :, 16:] = False  # right half invalid
    out = analyzer(maps, valid)
    for name, f in out.features.items():
        norms = f.square().sum(1).sqrt()  # (1, h, w)
        v = out.valid[name][:, 0]
        assert torch.allclose(norms[v], torch.ones_like(norms[v]), atol=1e-5), name
        assert (norms[~v] == 0).all() and (~v).any(), name
    # level 1 (16 x 16): columns 0..7 see only valid input; column 8's 3x3 window reaches input column 16
    assert out.valid["conv1"][0, 0, 0, :8].all() and not out.valid["conv1"][0, 0, 0, 8:].any()


def test_only_what_is_asked_is_computed() -> None:
    analyzer = StructureAnalyzer([2], layers=7)
    calls = []
    analyzer.regularizer.convs[0].register_forward_hook(lambda *_: calls.append(1))
    out = analyzer([torch.rand(1, 2, 16, 16)], layers=parse_layers("conv1-2"), reconstruct=False)
    assert list(out.features) == ["conv1", "conv2"] and out.reconstruction is None and not calls
    out = analyzer([torch.rand(1, 2, 16, 16)], layers=["conv5"], reconstruct=False)
    assert list(out.features) == ["conv5"] and calls


def test_analyzer_gradients_reach_every_parameter() -> None:
    analyzer = StructureAnalyzer([1, 3], layers=9)
    out = analyzer([torch.randn(1, 1, 64, 64), torch.randn(1, 3, 64, 64)])
    loss = sum(f.sum() for f in out.features.values()) + out.reconstruction.square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in analyzer.parameters())


def test_layer_sets() -> None:
    assert parse_layers("conv1-2") == ("conv1", "conv2")
    assert parse_layers("conv1-3") == ("conv1", "conv2", "conv3")
    assert parse_layers("conv3") == ("conv3",)
    assert parse_layers("conv2, conv1") == ("conv1", "conv2")
    assert parse_layers(["conv1", "conv4-conv5"]) == ("conv1", "conv4", "conv5")
    with pytest.raises(ConfigError, match="'layer1'"):
        parse_layers("layer1")
    with pytest.raises(ConfigError, match=r"names conv6, the analyzer has conv1\.\.conv5"):
        parse_layers("conv1-6", num_layers=5)
    with pytest.raises(ConfigError, match="low to high"):
        parse_layers("conv3-1")
    with pytest.raises(ConfigError, match="odd number"):
        StructureAnalyzer([1], layers=6)
    with pytest.raises(ConfigError, match="needs 3 positive encoder widths"):
        StructureAnalyzer([1], layers=5, widths=[8, 16])


def test_discriminators() -> None:
    image, maps = torch.randn(2, 3, 64, 64), torch.randn(2, 4, 64, 64)
    conditional = PatchDiscriminator(7)
    patches = conditional(torch.cat([image, maps], dim=1))
    assert patches.shape == (2, 1, 6, 6)  # 70x70 PatchGAN: 64 -> 32 -> 16 -> 8 -> 7 -> 6
    unconditional = PatchDiscriminator(4, width=16, global_pool=True)
    assert unconditional(maps).shape == (2, 1)
    with pytest.raises(ConfigError, match="positive"):
        PatchDiscriminator(0)
