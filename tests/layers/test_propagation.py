"""Propagation blocks: cross-stitch and CSPN maths (identity, hand-derived mixing, stability) and the protocol."""

from __future__ import annotations

import pytest
import torch

from tridense.errors import ConfigError
from tridense.layers.cross_stitch import CrossStitch
from tridense.layers.cspn import SpatialPropagation, combine_kernels, propagate
from tridense.layers.propagation import PROPAGATIONS, CSPNPropagation, Propagation, build_propagation

TASKS = ("depth", "normals", "semseg")


def _features(c: int = 4, size: tuple[int, int] = (6, 7), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, *size, generator=g) for _ in TASKS]


# ------------------------------------------------------------------------------------------ cross-stitch
def test_cross_stitch_with_unit_self_weight_is_the_identity():
    x = _features()
    out = CrossStitch(3, 4, self_weight=1.0)(x)
    for a, b in zip(out, x, strict=True):
        torch.testing.assert_close(a, b)


def test_cross_stitch_mixes_as_derived_by_hand():
    block = CrossStitch(2, 1, self_weight=0.9)
    a, b = torch.full((1, 1, 2, 2), 1.0), torch.full((1, 1, 2, 2), 3.0)
    out_a, out_b = block([a, b])
    torch.testing.assert_close(out_a, torch.full_like(a, 0.9 * 1 + 0.1 * 3))
    torch.testing.assert_close(out_b, torch.full_like(b, 0.1 * 1 + 0.9 * 3))
    with torch.no_grad():  # per-channel weights: channel c of target t reads channel c of every source
        block.alpha.copy_(torch.tensor([[[0.0], [1.0]], [[1.0], [0.0]]]))
    out_a, out_b = block([a, b])
    torch.testing.assert_close(out_a, b)
    torch.testing.assert_close(out_b, a)


def test_cross_stitch_rows_sum_to_one_at_initialisation():
    block = CrossStitch(3, 5)
    torch.testing.assert_close(block.alpha.sum(dim=1), torch.ones(3, 5))
    same = torch.ones(1, 5, 3, 3)
    for out in block([same, same, same]):  # equal inputs stay unchanged
        torch.testing.assert_close(out, same)


# ------------------------------------------------------------------------------------------ CSPN
def _zero_affinity(block: SpatialPropagation) -> SpatialPropagation:
    with torch.no_grad():
        block.affinity.weight.zero_()
        block.affinity.bias.zero_()
    return block


def test_cspn_with_zero_affinity_is_the_identity():
    torch.manual_seed(0)
    block = _zero_affinity(SpatialPropagation(4, iterations=5))
    guidance, h0 = torch.randn(2, 4, 8, 9), torch.randn(2, 3, 8, 9)
    kernel = block.kernel(guidance)
    torch.testing.assert_close(kernel[:, 4], torch.ones(2, 8, 9))
    torch.testing.assert_close(block(guidance, h0), h0)


def test_cspn_zero_iterations_is_the_identity():
    torch.manual_seed(0)
    block = SpatialPropagation(4, iterations=3)
    h0 = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(block(torch.randn(1, 4, 5, 5), h0, iterations=0), h0)


def test_cspn_kernel_is_normalised():
    """sum_j |k_ij| = 1 over the 8 neighbours and k_ii = 1 - sum_j k_ij: every kernel sums to one."""
    torch.manual_seed(0)
    kernel = SpatialPropagation(4).kernel(torch.randn(2, 4, 6, 6))  # (B, 9, H, W)
    neighbours = torch.cat([kernel[:, :4], kernel[:, 5:]], dim=1)
    torch.testing.assert_close(neighbours.abs().sum(dim=1), torch.ones(2, 6, 6))
    torch.testing.assert_close(kernel.sum(dim=1), torch.ones(2, 6, 6))


def test_cspn_keeps_constant_maps_away_from_the_border():
    """Weights summing to one leave a constant map unchanged wherever the zero padding has not reached."""
    torch.manual_seed(0)
    block = SpatialPropagation(4)
    iterations = 3
    h0 = torch.full((2, 1, 16, 16), 2.5)
    out = block(torch.randn(2, 4, 16, 16), h0, iterations=iterations)
    inner = slice(iterations, -iterations)
    torch.testing.assert_close(out[..., inner, inner], h0[..., inner, inner])


def test_cspn_with_positive_affinities_is_a_stable_average():
    """Positive neighbour weights (k_ii = 0) make each step a convex average: no value leaves the input's
    range however many steps run, and the map smooths out."""
    torch.manual_seed(0)
    block = _zero_affinity(SpatialPropagation(4))
    with torch.no_grad():
        block.affinity.bias.fill_(1.0)
    h0 = torch.rand(1, 2, 12, 12) + 0.5  # positive; the zero padding pulls borders towards 0
    previous = h0
    for steps in (1, 10, 100):
        out = block(torch.randn(1, 4, 12, 12), h0, iterations=steps)
        assert torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= h0.max() + 1e-6
        assert out[..., 4:8, 4:8].std() < previous[..., 4:8, 4:8].std()
        previous = out


def test_cspn_bound_for_any_guidance():
    """|H^{t+1}| <= |k_ii| |H^0| + |H^t| (neighbour weights sum to at most one in absolute value)."""
    torch.manual_seed(0)
    block = SpatialPropagation(4)
    guidance, h0 = torch.randn(1, 4, 10, 10) * 5, torch.randn(1, 3, 10, 10)
    centre = block.kernel(guidance)[:, 4].abs().max()
    for steps in (1, 5, 25):
        out = block(guidance, h0, iterations=steps)
        assert out.abs().max() <= (1 + steps * centre) * h0.abs().max() + 1e-4


# ------------------------------------------------------------------------------------------ cross-task CSPN
def _signals(c: int = 8, size: tuple[int, int] = (6, 7)) -> tuple[dict, dict]:
    features = dict(zip(TASKS, _features(c, size), strict=True))
    g = torch.Generator().manual_seed(5)
    initial = {t: torch.randn(2, k, *size, generator=g) for t, k in zip(TASKS, (1, 3, 5), strict=True)}
    return features, initial


def test_cross_task_cspn_with_identity_weights_is_per_task_cspn():
    torch.manual_seed(0)
    mixed = CSPNPropagation(TASKS, 8, iterations=3)
    single = CSPNPropagation(TASKS, 8, iterations=3, cross_task=False)
    single.load_state_dict(mixed.state_dict(), strict=False)  # same per-task convolutions
    assert single.mixing_logits is None
    with torch.no_grad():
        mixed.mixing_logits.copy_(1e4 * torch.eye(3))  # softmax rows -> the identity
    features, initial = _signals()
    for a, b in zip(mixed.propagate(features, initial), single.propagate(features, initial), strict=True):
        for t in TASKS:
            torch.testing.assert_close(a[t], b[t])
    for t in TASKS:  # and per-task CSPN is each task's own SpatialPropagation
        want = mixed[t](features[t], torch.cat([initial[t], features[t]], 1))
        torch.testing.assert_close(single.propagate(features, initial)[1][t], want[:, : initial[t].shape[1]])


def test_per_task_cspn_checkpoints_load_into_the_cross_task_block_unchanged():
    torch.manual_seed(0)
    old = CSPNPropagation(TASKS, 8, iterations=2, cross_task=False)
    new = CSPNPropagation(TASKS, 8, iterations=2)
    new.load_state_dict(old.state_dict())  # strict: the missing logits are supplied
    torch.testing.assert_close(new.mixing_weights(), torch.eye(3))
    features, initial = _signals()
    for a, b in zip(new.propagate(features, initial), old.propagate(features, initial), strict=True):
        for t in TASKS:
            torch.testing.assert_close(a[t], b[t])


def test_cross_task_cspn_combines_kernels_convexly_as_derived_by_hand():
    torch.manual_seed(0)
    block = CSPNPropagation(TASKS, 8)
    with torch.no_grad():
        block.mixing_logits.add_(torch.randn(3, 3))
    features, _ = _signals()
    a = block.mixing_weights()
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(1), torch.ones(3))
    own = [block[t].kernel(features[t]) for t in TASKS]  # each (B, 9, H, W)
    combined = block.kernels(features)  # (B, T, 9, H, W)
    for i in range(3):
        torch.testing.assert_close(combined[:, i], sum(a[i, k] * own[k] for k in range(3)))
    neighbours = torch.cat([combined[:, :, :4], combined[:, :, 5:]], dim=2)
    assert (neighbours.abs().sum(2) <= 1 + 1e-6).all()  # stable: sum_j |k_ij| <= 1
    torch.testing.assert_close(combined.sum(2), torch.ones(2, 3, 6, 7))  # centre = 1 - sum_j k_ij


def test_combine_kernels_stays_stable_for_any_convex_weights_and_steps():
    g = torch.Generator().manual_seed(1)
    guidance = [torch.randn(1, 4, 10, 10, generator=g) * 5 for _ in TASKS]
    kernels = torch.stack([SpatialPropagation(4).kernel(x) for x in guidance], 1)  # (1, T, 9, H, W)
    weights = torch.softmax(torch.randn(3, 3, generator=g) * 3, dim=1)
    combined = combine_kernels(weights, kernels)  # (1, T, 9, H, W)
    h0 = torch.randn(1, 2, 10, 10, generator=g)
    for i in range(3):
        centre = combined[:, i, 4].abs().max()
        for steps in (1, 5, 25):
            out = propagate(combined[:, i], h0, steps)
            assert torch.isfinite(out).all()
            assert out.abs().max() <= (1 + steps * centre) * h0.abs().max() + 1e-4


def test_cross_task_cspn_mixing_weights_get_gradients():
    torch.manual_seed(0)
    block = CSPNPropagation(TASKS, 8, iterations=2)
    features, initial = _signals()
    out_f, out_i = block.propagate(features, initial)
    sum(v.square().sum() for v in [*out_f.values(), *out_i.values()]).backward()
    assert block.mixing_logits.grad is not None and block.mixing_logits.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------ protocol
@pytest.mark.parametrize("kind", list(PROPAGATIONS))
def test_every_block_follows_the_protocol(kind: str):
    torch.manual_seed(0)
    block = build_propagation(kind, tasks=TASKS, channels=8)
    assert isinstance(block, Propagation)
    features = dict(zip(TASKS, _features(8, (6, 6)), strict=True))
    initial = {t: torch.randn(2, c, 6, 6) for t, c in zip(TASKS, (1, 3, 5), strict=True)}
    out_f, out_i = block.propagate(features, initial)
    assert set(out_f) == set(out_i) == set(TASKS)
    for t in TASKS:
        assert out_f[t].shape == features[t].shape and out_i[t].shape == initial[t].shape
    block.set_iterations(0)
    out_f, out_i = block.propagate(features, initial)
    if kind != "cross_stitch":  # zero steps leave both signals unchanged (cross-stitch does not iterate)
        for t in TASKS:
            torch.testing.assert_close(out_f[t], features[t])
            torch.testing.assert_close(out_i[t], initial[t])


def test_build_propagation_refuses_unknown_kinds_and_options():
    with pytest.raises(ConfigError, match="valid: \\['pap', 'cross_stitch', 'cspn', 'none'"):
        build_propagation("gap_typo", tasks=TASKS, channels=8)
    with pytest.raises(ConfigError, match="cross_stitch"):
        build_propagation("cross_stitch", tasks=TASKS, channels=8, iterations=3)
