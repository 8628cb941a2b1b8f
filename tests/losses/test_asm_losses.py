"""ASM and GAN losses on hand-made values, and the direction of one analyzer / predictor update on a toy case."""

from __future__ import annotations

import math

import pytest
import torch

from tridense.errors import ConfigError
from tridense.losses.asm import (
    GANMatching,
    StructureMatching,
    adversarial_weight,
    analyzer_adversarial_loss,
    feature_distance,
    gan_discriminator_loss,
    gan_generator_loss,
    layer_distances,
    matching_loss,
    reconstruction_loss,
)
from tridense.models.asm import PatchDiscriminator, StructureAnalyzer


def unit_map(vectors: list[list[float]]) -> torch.Tensor:
    """(1, C, 1, N) feature map from N vectors."""
    return torch.tensor(vectors, dtype=torch.float64).T[None, :, None, :]


def test_distances_and_the_two_adversarial_forms() -> None:
    gt = unit_map([[1, 0], [1, 0]])
    other = unit_map([[0, 1], [math.sqrt(0.75), 0.5]])  # orthogonal: d = 2; 30 degrees: d = 2 - 2 cos = 0.2679
    d = feature_distance(gt, other)
    assert d.shape == (1, 1, 2) and d.flatten().tolist() == pytest.approx([2.0, 2 - math.sqrt(3)])
    distances = layer_distances({"conv1": gt, "conv2": gt}, {"conv1": other, "conv2": gt}, ["conv1", "conv2"])
    assert matching_loss(distances).item() == pytest.approx((2.0 + 2 - math.sqrt(3)) / 2)  # conv2 adds 0
    # margin: mean over pixels of max(0, 0.8 - d) per layer, summed: conv1 (0 + 0.532) / 2, conv2 0.8
    expected = (0.8 - (2 - math.sqrt(3))) / 2 + 0.8
    assert analyzer_adversarial_loss(distances).item() == pytest.approx(expected)
    assert analyzer_adversarial_loss(distances, "unbounded").item() == pytest.approx(-matching_loss(distances).item())
    assert analyzer_adversarial_loss(distances, margin=0.1).item() == pytest.approx(0.1)  # only conv2 below 0.1
    with pytest.raises(ConfigError, match="unknown adversarial form"):
        analyzer_adversarial_loss(distances, "hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lack layers"):
        layer_distances({"conv1": gt}, {"conv1": gt}, ["conv3"])


def test_adversarial_weight_decays_tenfold() -> None:
    assert adversarial_weight(0, 1000) == 1.0
    assert adversarial_weight(500, 1000) == pytest.approx(10**-0.5)
    assert adversarial_weight(1000, 1000) == pytest.approx(0.1)
    assert adversarial_weight(5000, 1000) == pytest.approx(0.1)  # held after the schedule ends
    with pytest.raises(ConfigError):
        adversarial_weight(0, 0)


def test_reconstruction_losses() -> None:
    valid = torch.tensor([[[True, False]]])
    onehot = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    assert reconstruction_loss("semseg", torch.zeros(1, 2, 1, 2), onehot, valid).item() == pytest.approx(math.log(2))
    depth = torch.tensor([[[[1.0, 9.0]]]])
    assert reconstruction_loss("depth", depth + 0.5, depth, valid).item() == pytest.approx(0.25)
    n = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 1, 2)
    assert reconstruction_loss("normals", 3 * n, n, valid).item() == pytest.approx(-1.0)
    assert reconstruction_loss("normals", 3 * n, n, valid, normals="l2").item() == pytest.approx(0.0)
    flipped = -n
    assert reconstruction_loss("normals", flipped, n, valid, normals="l2").item() == pytest.approx(4.0)
    empty = reconstruction_loss("depth", depth.requires_grad_(), depth, torch.zeros_like(valid))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ConfigError, match="no reconstruction loss"):
        reconstruction_loss("edges", depth, depth, valid)


def test_gan_losses() -> None:
    zero = torch.zeros(2, 1)
    assert gan_discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert gan_generator_loss(torch.full((2, 1), 20.0)).item() == pytest.approx(0.0, abs=1e-6)


def test_one_analyzer_step_increases_and_one_predictor_step_decreases_the_distance() -> None:
    torch.manual_seed(0)
    analyzer = StructureAnalyzer([2], layers=5, widths=(8, 8, 8))
    gt = torch.zeros(2, 2, 16, 16)
    gt[:, 0, :, :8], gt[:, 1, :, 8:] = 1.0, 1.0  # left / right halves, one-hot
    logits = torch.zeros(2, 2, 16, 16, requires_grad=True)  # the "predictor": free logits
    layers = ["conv1", "conv2"]

    def distance() -> float:
        with torch.no_grad():
            a = analyzer([gt], layers=layers, reconstruct=False).features
            b = analyzer([logits.softmax(1)], layers=layers, reconstruct=False).features
            return matching_loss(layer_distances(a, b, layers)).item()

    before = distance()
    analyzer_opt = torch.optim.SGD(analyzer.parameters(), lr=0.01)
    neg = analyzer([logits.detach().softmax(1)], layers=layers, reconstruct=False).features
    pos = analyzer([gt], layers=layers, reconstruct=False).features
    analyzer_adversarial_loss(layer_distances(pos, neg, layers), "unbounded").backward()
    assert logits.grad is None  # the analyzer step does not touch the predictor
    analyzer_opt.step()
    after_analyzer = distance()
    assert after_analyzer > before
    frozen = [p.detach().clone() for p in analyzer.parameters()]
    analyzer.zero_grad(set_to_none=True)
    pos = analyzer([gt], layers=layers, reconstruct=False).features
    pred = analyzer([logits.softmax(1)], layers=layers, reconstruct=False).features
    matching_loss(layer_distances(pos, pred, layers)).backward()
    with torch.no_grad():
        logits -= 50.0 * logits.grad
    assert distance() < after_analyzer
    assert all(torch.equal(p, q) for p, q in zip(analyzer.parameters(), frozen, strict=True))  # not stepped


def joint_maps() -> tuple[list[torch.Tensor], torch.Tensor]:
    depth = torch.log(torch.rand(2, 1, 32, 32) * 4 + 0.5)
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 32, 32), dim=1)
    valid = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    valid[:, :, :4] = False
    return [depth, normals], valid


def test_structure_matching_objectives() -> None:
    analyzer = StructureAnalyzer([1, 3], layers=5, widths=(8, 8, 8))
    asm = StructureMatching(analyzer, ["depth", "normals"], layers="conv1-2", adversarial_weight=0.012, decay_steps=100)
    gt, valid = joint_maps()
    pred = [(m + 0.1 * torch.randn_like(m)).requires_grad_() for m in gt]
    out = asm.analyzer_loss(gt, [p.detach() for p in pred], valid, step=100)
    assert set(out) == {"total", "adversarial", "adversarial_weight", "reconstruction/depth", "reconstruction/normals"}
    assert out["adversarial_weight"].item() == pytest.approx(0.0012)
    expected = 0.0012 * out["adversarial"] + out["reconstruction/depth"] + out["reconstruction/normals"]
    assert out["total"].item() == pytest.approx(expected.item())
    out["total"].backward()
    assert all(p.grad is None for p in pred)  # the analyzer's objective never reaches the predictor
    analyzer.zero_grad(set_to_none=True)
    match = asm.predictor_loss(gt, pred, valid)
    assert set(match) == {"total", "match/conv1", "match/conv2"}
    match["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pred)
    assert all(p.grad is None and p.requires_grad for p in analyzer.parameters())  # frozen, then restored


def test_ablations_skip_their_branches() -> None:
    analyzer = StructureAnalyzer([1, 3], layers=5, widths=(8, 8, 8))
    calls = []
    analyzer.regularizer.head.register_forward_hook(lambda *_: calls.append("rec"))
    gt, valid = joint_maps()
    no_rec = StructureMatching(analyzer, ["depth", "normals"], reconstruction_weight=0.0)
    out = no_rec.analyzer_loss(gt, gt, valid, step=0)
    assert set(out) == {"total", "adversarial", "adversarial_weight"} and not calls
    assert out["adversarial"].item() == pytest.approx(2 * 0.8)  # identical maps: d = 0 on both layers
    no_adv = StructureMatching(analyzer, ["depth", "normals"], adversarial_weight=0.0)
    out = no_adv.analyzer_loss(gt, gt, valid, step=0)
    assert "adversarial" not in out and calls == ["rec"]
    with pytest.raises(ConfigError, match="takes 2 task maps"):
        StructureMatching(analyzer, ["depth"])
    with pytest.raises(ConfigError, match=r"conv1\.\.conv5"):
        StructureMatching(analyzer, ["depth", "normals"], layers="conv1-7")


@pytest.mark.parametrize("conditional", [False, True])
def test_gan_baselines_objectives(conditional: bool) -> None:
    gt, valid = joint_maps()
    pred = [(m + 0.3 * torch.randn_like(m)).requires_grad_() for m in gt]
    image = torch.randn(2, 3, 32, 32)
    disc = PatchDiscriminator(4 + 3 * conditional, width=8, num_layers=2, global_pool=not conditional)
    gan = GANMatching(disc, conditional=conditional)
    d_loss = gan.discriminator_loss(gt, pred, valid, image)["total"]
    d_loss.backward()
    assert all(p.grad is None for p in pred) and all(p.grad is not None for p in disc.parameters())
    disc.zero_grad(set_to_none=True)
    gan.predictor_loss(pred, valid, image)["total"].backward()
    assert all(p.grad is not None for p in pred) and all(p.grad is None for p in disc.parameters())
    if conditional:
        with pytest.raises(ValueError, match="needs the image"):
            gan.predictor_loss(pred, valid)
