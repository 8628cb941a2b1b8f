"""PAP propagation layer: every path equals an explicit N x N reference, forward and backward; invariances."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tridense.errors import ConfigError
from tridense.layers.affinity import (
    PatternAffinitivePropagation,
    calibrated_mode,
    calibration_size,
    choose_mode,
    clear_calibration,
    dense_bytes,
    diffuse,
    mode_bytes,
)

IN_CHANNELS = (6, 5, 4)
SIZE = (5, 7)  # odd sides: pooled keys come from partial windows (ceil mode)


# ------------------------------------------------------------------------------------------ reference
def _explicit_matrix(x: torch.Tensor, y: torch.Tensor, similarity: str) -> torch.Tensor:
    """Row-normalised exp-similarity matrix (N, M) from (N, C) queries and (M, C) keys, pair by pair."""
    diff = x[:, None, :] - y[None, :, :]  # (N, M, C)
    if similarity == "dot":
        s = (x[:, None, :] * y[None, :, :]).sum(-1)
    elif similarity == "neg_sq_l2":
        s = -diff.square().sum(-1)
    elif similarity == "neg_l2":
        s = -torch.linalg.vector_norm(diff, dim=-1)  # its gradient at a zero distance is 0, like cdist's
    else:
        s = -diff.abs().sum(-1)
    e = torch.exp(s - s.max(dim=1, keepdim=True).values)  # shifted only against overflow
    return e / e.sum(dim=1, keepdim=True)


def _pool(x: torch.Tensor, s: int) -> torch.Tensor:
    return x if s == 1 else F.max_pool2d(x, s, s, ceil_mode=True)


def reference(layer: PatternAffinitivePropagation, features, signals, iterations: int):
    """PAP eq. 1, 2, 4 with explicit matrices per image and explicit loops over iterations."""
    x = [proj(f) for proj, f in zip(layer.projections, features, strict=True)]  # T x (B, C, H, W)
    b, c = x[0].shape[:2]
    t, s = len(x), layer.subsample
    a = layer.mixing_weights()
    a = torch.eye(t, dtype=x[0].dtype) if a is None else a
    beta = layer.beta
    out = [[[] for _ in (sig if isinstance(sig, list) else [sig])] for sig in signals]
    for n in range(b):
        mats = []
        for k in range(t):
            queries = x[k][n].reshape(c, -1).T  # (N, C)
            keys = _pool(x[k][n : n + 1], s)[0].reshape(c, -1).T  # (M, C)
            mats.append(_explicit_matrix(queries, keys, layer.similarity))
        for i in range(t):
            combined = sum(a[i, k] * mats[k] for k in range(t))  # (N, M)
            group = signals[i] if isinstance(signals[i], list) else [signals[i]]
            for j, sig in enumerate(group):
                h0 = sig[n]  # (Cv, H, W)
                h = h0
                for _ in range(iterations):
                    pooled = _pool(h[None], s)[0]
                    h = (combined @ pooled.reshape(h.shape[0], -1).T).T.reshape(h0.shape)
                b_i = beta[i] if isinstance(beta, torch.Tensor) else beta
                res = b_i * h + (1 - b_i) * h0 if iterations > 0 else h0
                out[i][j].append(res)
    return [
        [torch.stack(o) for o in group] if isinstance(sig, list) else torch.stack(group[0])
        for group, sig in zip(out, signals, strict=True)
    ]


def _inputs(batch: int = 2, dtype: torch.dtype = torch.float64, scale: float = 0.4):
    gen = torch.Generator().manual_seed(1)
    features = [
        (scale * torch.randn(batch, c, *SIZE, generator=gen, dtype=dtype)).requires_grad_()
        for c in IN_CHANNELS
    ]
    signals = [
        [
            torch.randn(batch, 1, *SIZE, generator=gen, dtype=dtype),
            torch.randn(batch, 3, *SIZE, generator=gen, dtype=dtype),
        ],
        [
            torch.randn(batch, 3, *SIZE, generator=gen, dtype=dtype),
            torch.randn(batch, 2, *SIZE, generator=gen, dtype=dtype),
        ],
        torch.randn(batch, 5, *SIZE, generator=gen, dtype=dtype),
    ]
    for s in [s for group in signals for s in (group if isinstance(group, list) else [group])]:
        s.requires_grad_()
    return features, signals


def _flat(signals) -> list[torch.Tensor]:
    return [s for group in signals for s in (group if isinstance(group, list) else [group])]


def _layer(**kwargs) -> PatternAffinitivePropagation:
    torch.manual_seed(3)
    layer = PatternAffinitivePropagation(IN_CHANNELS, 4, chunk_rows=8, **kwargs).double()
    if layer.mixing_logits is not None:  # away from the symmetric init, so that every weight matters
        with torch.no_grad():
            layer.mixing_logits.add_(0.5 * torch.randn(3, 3))
    return layer


# ------------------------------------------------------------------------------------------ equivalence
MODES = ["dense", "fused", "chunked", "auto", "auto-lean"]
SCHEDULES = [  # (iterations, beta, learn_beta)
    (0, 0.05, False),
    (1, 0.05, False),
    (3, 0.05, False),
    (3, 0.0, False),
    (3, 1.0, False),
    (3, 0.3, True),
]


SIMS = ("dot", "neg_sq_l2", "neg_l2", "l1")
PATHS = [(m, s) for m in MODES for s in SIMS if not (m == "fused" and s in ("l1", "neg_l2"))]  # no SDPA form


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"T{s[0]}-b{s[1]}{'-learn' if s[2] else ''}")
@pytest.mark.parametrize("cross_task", [True, False], ids=["cross", "single"])
@pytest.mark.parametrize("subsample", [1, 2])
@pytest.mark.parametrize(("mode", "similarity"), PATHS, ids=[f"{m}-{s}" for m, s in PATHS])
def test_every_path_equals_explicit_reference(mode, similarity, subsample, cross_task, schedule):
    """Outputs and gradients (features, signals, conv weights, mixing logits, beta) equal the reference."""
    iterations, beta, learn_beta = schedule
    budget = 0.0 if mode == "auto-lean" else 256.0
    layer = _layer(
        similarity=similarity,
        subsample=subsample,
        cross_task=cross_task,
        iterations=iterations,
        beta=beta,
        learn_beta=learn_beta,
        mode=mode.replace("-lean", ""),
        memory_budget_mb=budget,
    )
    features, signals = _inputs()
    got = layer(features, signals)
    params = [p for p in layer.parameters()]
    leaves = [*features, *_flat(signals), *params]
    gen = torch.Generator().manual_seed(7)
    probes = [torch.randn(s.shape, generator=gen, dtype=s.dtype) for s in _flat(signals)]

    def loss(outputs) -> torch.Tensor:
        return sum((o * p).sum() for o, p in zip(_flat(outputs), probes, strict=True))

    grads = torch.autograd.grad(loss(got), leaves, allow_unused=True)
    want = reference(layer, features, signals, iterations)
    want_grads = torch.autograd.grad(loss(want), leaves, allow_unused=True)
    for g, w in zip(_flat(got), _flat(want), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-10)
    for g, w, leaf in zip(grads, want_grads, leaves, strict=True):
        if w is None:  # e.g. T=0: nothing flows to the embeddings
            assert g is None or torch.count_nonzero(g) == 0
            continue
        assert g is not None, f"no gradient for a leaf of shape {tuple(leaf.shape)}"
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)


def test_paths_agree_in_float32_at_a_larger_size():
    """Float32 on CPU, 24 x 32 grid: every path is within float32 rounding (2e-3 relative) of float64."""
    gen = torch.Generator().manual_seed(0)
    b, t, size, c = 1, 3, (24, 32), 16
    n = size[0] * size[1]
    emb = (0.3 * torch.randn(b, t, n, c, generator=gen)).requires_grad_()
    values = torch.randn(b, n, 12, generator=gen).requires_grad_()
    logits = torch.randn(t, t, generator=gen).requires_grad_()

    def run(mode: str, dtype: torch.dtype) -> list[torch.Tensor]:
        e, v, w = emb.to(dtype), values.to(dtype), logits.to(dtype).softmax(1)
        h = diffuse(e, v, [4, 3, 5], w, size=size, iterations=3, subsample=2, mode=mode)
        return [h, *torch.autograd.grad(h.square().sum(), (emb, values, logits))]

    exact = run("dense", torch.float64)
    for mode in ("dense", "fused", "chunked"):
        for got, want in zip(run(mode, torch.float32), exact, strict=True):
            assert got.dtype == torch.float32
            error = (got.double() - want).norm() / want.norm()
            assert error < 2e-3, f"{mode}: relative error {error:.2e}"


# ------------------------------------------------------------------------------------------ hand-derived
def test_two_positions_by_hand():
    """x = (1, 0): S = [[1, 0], [0, 0]], M = [[e/(e+1), 1/(e+1)], [1/2, 1/2]]; (1, 0) -> (e/(e+1), 1/2)."""
    emb = torch.tensor([[1.0], [0.0]]).reshape(1, 1, 2, 1).double()
    values = torch.tensor([1.0, 0.0]).reshape(1, 2, 1).double()
    e = math.e
    for mode in ("dense", "fused", "chunked"):
        h1 = diffuse(emb, values, [1], None, size=(1, 2), iterations=1, mode=mode)
        torch.testing.assert_close(h1.flatten(), torch.tensor([e / (e + 1), 0.5]).double())
        h2 = diffuse(emb, values, [1], None, size=(1, 2), iterations=2, mode=mode)
        m = torch.tensor([[e / (e + 1), 1 / (e + 1)], [0.5, 0.5]]).double()
        torch.testing.assert_close(h2.flatten(), m @ m @ torch.tensor([1.0, 0.0]).double())


def test_cross_task_weights_are_a_softmax_per_target_with_dominant_self():
    layer = PatternAffinitivePropagation(IN_CHANNELS, 4, self_logit=1.0)
    a = layer.mixing_weights()
    torch.testing.assert_close(a.sum(1), torch.ones(3))
    torch.testing.assert_close(torch.diag(a), torch.full((3,), math.e / (math.e + 2)))
    assert (a.diagonal()[:, None] > a.masked_fill(torch.eye(3, dtype=torch.bool), 0.0)).all()
    with torch.no_grad():
        layer.mixing_logits.copy_(torch.randn(3, 3) * 5)
    torch.testing.assert_close(layer.mixing_weights().sum(1), torch.ones(3))
    assert PatternAffinitivePropagation(IN_CHANNELS, 4, cross_task=False).mixing_weights() is None


# ------------------------------------------------------------------------------------------ invariances
@pytest.mark.parametrize(("mode", "similarity"), [p for p in PATHS if p[0] in ("dense", "fused", "chunked")])
def test_identity_affinity_leaves_signal_unchanged(mode, similarity):
    """One-hot embeddings scaled by 30: every M_k is the identity (up to e^-900), so is M̂, so h^T = h^0."""
    n, size = 12, (3, 4)
    emb = 30.0 * torch.eye(n).expand(1, 3, n, n)  # (B, T, N, C=N), orthogonal
    values = torch.randn(1, n, 6)
    weights = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    h = diffuse(emb, values, [2, 2, 2], weights, size=size, iterations=3, similarity=similarity, mode=mode)
    torch.testing.assert_close(h, values)


@pytest.mark.parametrize("mode", ["dense", "fused", "chunked"])
@pytest.mark.parametrize("subsample", [1, 2])
def test_constant_signal_stays_constant(mode, subsample):
    """Rows of M̂ sum to one (and max-pooling keeps constants), so a constant signal is a fixed point."""
    layer = PatternAffinitivePropagation(
        IN_CHANNELS, 4, mode=mode, subsample=subsample, iterations=3, beta=0.7
    )
    features, _ = _inputs(dtype=torch.float32)
    signals = [
        torch.full((2, 2, *SIZE), 2.5),
        torch.full((2, 3, *SIZE), -1.0),
        torch.full((2, 1, *SIZE), 0.25),
    ]
    with torch.no_grad():
        out = layer(features, signals)
    for o, s in zip(out, signals, strict=True):
        torch.testing.assert_close(o, s)


def test_beta_zero_and_zero_iterations_return_the_input():
    features, signals = _inputs(dtype=torch.float32)
    layer = PatternAffinitivePropagation(IN_CHANNELS, 4, beta=0.0, iterations=3)
    for got, want in zip(_flat(layer(features, signals)), _flat(signals), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    layer = PatternAffinitivePropagation(IN_CHANNELS, 4, beta=0.5, iterations=3)
    for got, want in zip(_flat(layer(features, signals, iterations=0)), _flat(signals), strict=True):
        assert torch.equal(got, want)


def test_iterations_overridable_per_call():
    layer = _layer(iterations=1, mode="chunked")
    features, signals = _inputs()
    with torch.no_grad():
        got = layer(features, signals, iterations=4)
        want = reference(layer, features, signals, 4)
        other = layer(features, signals)
    for g, w in zip(_flat(got), _flat(want), strict=True):
        torch.testing.assert_close(g, w)
    assert not torch.allclose(_flat(got)[0], _flat(other)[0])


# ------------------------------------------------------------------------------------------ affinity maps
@pytest.mark.parametrize("similarity", SIMS)
@pytest.mark.parametrize("subsample", [1, 2])
def test_affinity_map_and_returned_matrices_equal_reference_rows(similarity, subsample):
    layer = _layer(similarity=similarity, subsample=subsample)
    features, signals = _inputs()
    task, (row, col) = 1, (3, 5)
    with torch.no_grad():
        single, combined = layer.affinity_map(features, task, (row, col))
        out, (m_single, m_combined) = layer(features, signals, return_affinity=True)
        plain = layer(features, signals)
        x = [proj(f) for proj, f in zip(layer.projections, features, strict=True)]
    grid = (math.ceil(SIZE[0] / subsample), math.ceil(SIZE[1] / subsample))
    assert single.shape == (2, 3, *grid) and combined.shape == (2, *grid)
    a = layer.mixing_weights()
    pos = row * SIZE[1] + col
    for n in range(2):
        rows = []
        for k in range(3):
            queries = x[k][n].reshape(4, -1).T
            keys = _pool(x[k][n : n + 1], subsample)[0].reshape(4, -1).T
            full = _explicit_matrix(queries, keys, similarity)  # (N, M)
            torch.testing.assert_close(m_single[n, k].double(), full, rtol=1e-5, atol=1e-6)
            rows.append(full[pos])
        want = sum(a[task, k] * rows[k] for k in range(3))
        torch.testing.assert_close(combined[n].flatten().double(), want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m_combined[n, task, pos].double(), want, rtol=1e-5, atol=1e-6)
        for k in range(3):
            torch.testing.assert_close(single[n, k].flatten().double(), rows[k], rtol=1e-5, atol=1e-6)
    for got, want in zip(_flat(out), _flat(plain), strict=True):
        assert torch.equal(got, want)


# ------------------------------------------------------------------------------------ modes, dtypes, errors
def test_auto_mode_rule():
    common = {"similarity": "dot", "batch": 1, "tasks": 3, "channels": 32, "value_channels": 100, "iterations": 4}
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    one_set = 3 * 4800 * 4800 * 4  # T matrices of float32: 264 MiB
    assert dense_bytes(1, 3, 4800, 4800, training=False) == one_set
    assert dense_bytes(1, 3, 4800, 4800, training=True) == 2 * one_set
    assert dense_bytes(1, 3, 4800, 4800, training=True, cross_task=False) == one_set
    assert dense_bytes(2, 3, 4800, 1200, training=True) == one_set
    shape = {k: v for k, v in common.items() if k != "similarity"}
    dense = mode_bytes("dense", n=4800, m=4800, training=False, **shape)
    assert dense > one_set > mode_bytes("chunked", n=4800, m=4800, training=False, **shape)
    big = {"n": 4800, "m": 4800, "memory_budget_mb": dense / 2**20}
    # Without a measurement: the first that fits of dense, chunked, fused (CPU) / dense, fused, chunked (CUDA).
    assert choose_mode("auto", device=cpu, training=False, **big, **common) == "dense"
    assert choose_mode("auto", device=cpu, training=True, **big, **common) == "chunked"
    assert choose_mode("auto", device=cuda, training=True, **big, **common) == "fused"
    assert choose_mode("auto", device=cpu, training=True, **{**big, "memory_budget_mb": 0}, **common) == "chunked"
    for sim in ("l1", "neg_l2"):  # no SDPA form: never fused
        assert choose_mode("auto", device=cuda, training=True, **big, **{**common, "similarity": sim}) == "chunked"
    assert choose_mode("fused", device=cpu, training=True, **big, **common) == "fused"
    # With a measurement: it sees exactly the exact paths that fit, and its choice is returned.
    seen = []

    def measure(candidates):
        seen.append(tuple(candidates))
        return candidates[-1]

    small = {"n": 48, "m": 48, "memory_budget_mb": 1e9, "measure": measure, "training": True}
    assert choose_mode("auto", device=cuda, **small, **common) == "chunked"
    assert choose_mode("auto", device=cpu, **small, **{**common, "similarity": "neg_l2"}) == "chunked"
    assert seen == [("dense", "fused", "chunked"), ("dense", "chunked")]


def test_calibration_picks_the_fastest_once_per_shape_class():
    clear_calibration()
    calls = []
    speed = {"dense": 3.0, "chunked": 1.0, "fused": 2.0}

    def timer(mode, **shape):
        calls.append(mode)
        return speed[mode]

    shape = {
        "similarity": "dot", "batch": 1, "tasks": 3, "size": (30, 40), "subsample": 2, "channels": 16,
        "splits": (4, 4, 4), "iterations": 4, "training": True, "cross_task": True, "device": torch.device("cpu"),
    }  # fmt: skip
    modes = ["dense", "chunked", "fused"]
    assert calibrated_mode(modes, timer=timer, **shape) == "chunked"
    assert calibrated_mode(modes, timer=timer, **{**shape, "size": (31, 40)}) == "chunked"
    assert sorted(calls) == ["chunked", "dense", "fused"]  # same power-of-two class: measured once
    speed["chunked"] = 9.0
    assert calibrated_mode(modes, timer=timer, **{**shape, "training": False}) == "fused"
    assert calibrated_mode(["dense"], timer=timer, **{**shape, "batch": 5}) == "dense"  # nothing to compare
    assert len(calls) == 6
    clear_calibration()


def test_calibration_times_grids_beyond_the_papers_finest_scale_on_a_bounded_proxy():
    clear_calibration()
    assert calibration_size((120, 160)) == (120, 160)  # 19,200 positions: the paper's 1/4 of 480x640
    assert calibration_size((240, 320)) == (120, 160)  # 1/2 of 480x640: the same aspect, 19,200 positions
    assert calibration_size((1, 40_000), max_positions=100) == (1, 100)
    timed = []

    def timer(mode, **shape):
        timed.append(shape["size"])
        return {"chunked": 1.0, "fused": 2.0}[mode]

    shape = {
        "similarity": "dot", "batch": 1, "tasks": 3, "size": (240, 320), "subsample": 1, "channels": 64,
        "splits": (65, 67, 104), "iterations": 4, "training": True, "cross_task": True,
        "device": torch.device("cpu"),
    }  # fmt: skip
    assert calibrated_mode(["chunked", "fused"], timer=timer, **shape) == "chunked"
    assert timed == [(120, 160), (120, 160)]
    clear_calibration()


def test_a_long_calibration_run_is_not_repeated(monkeypatch):
    import tridense.layers.affinity as affinity

    runs = []
    monkeypatch.setattr(affinity, "diffuse", lambda *a, **k: runs.append(1) or torch.zeros(1, 20, 6))
    shape = {
        "similarity": "dot", "batch": 1, "tasks": 3, "size": (4, 5), "subsample": 1, "channels": 8,
        "splits": (2, 2, 2), "iterations": 2, "training": False, "cross_task": False,
        "device": torch.device("cpu"),
    }  # fmt: skip
    affinity._time_mode("dense", **shape)
    assert len(runs) == 2  # a short run: warm-up, then the faster of two
    monkeypatch.setattr(affinity, "SINGLE_RUN_SECONDS", 0.0)
    affinity._time_mode("dense", **shape)
    assert len(runs) == 3  # a run at least SINGLE_RUN_SECONDS long counts alone


def test_calibration_times_real_paths_and_leaves_the_global_random_stream_alone():
    clear_calibration()
    emb, values = torch.randn(1, 3, 20, 8), torch.randn(1, 20, 6)
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    out = diffuse(emb.requires_grad_(), values, [2, 2, 2], None, size=(4, 5), iterations=2, memory_budget_mb=1e6)
    torch.testing.assert_close(torch.rand(3), want)
    ref = diffuse(emb, values, [2, 2, 2], None, size=(4, 5), iterations=2, mode="dense")
    torch.testing.assert_close(out, ref)
    clear_calibration()


def test_deprecated_l2_means_the_squared_distance():
    with pytest.warns(FutureWarning, match="neg_sq_l2"):
        layer = PatternAffinitivePropagation(8, similarity="l2")
    assert layer.similarity == "neg_sq_l2"
    gen = torch.Generator().manual_seed(0)
    emb, values = torch.randn(1, 3, 20, 8, generator=gen), torch.randn(1, 20, 6, generator=gen)
    common = {"size": (4, 5), "iterations": 2, "mode": "dense"}
    with pytest.warns(FutureWarning):
        old = diffuse(emb, values, [2, 2, 2], None, similarity="l2", **common)
    new = diffuse(emb, values, [2, 2, 2], None, similarity="neg_sq_l2", **common)
    unsquared = diffuse(emb, values, [2, 2, 2], None, similarity="neg_l2", **common)
    torch.testing.assert_close(old, new)
    assert not torch.allclose(new, unsquared)


def test_learned_beta_is_per_task_and_loads_old_scalar_checkpoints():
    layer = PatternAffinitivePropagation(IN_CHANNELS, 4, beta=0.3, learn_beta=True)
    assert layer.beta.shape == (3,)
    torch.testing.assert_close(layer.beta, torch.full((3,), 0.3))
    state = layer.state_dict()
    state["beta_logit"] = torch.tensor(0.0)  # the shape written before betas were per task
    layer.load_state_dict(state)
    torch.testing.assert_close(layer.beta, torch.full((3,), 0.5))


def test_dense_and_chunked_keep_float32_under_cpu_autocast():
    gen = torch.Generator().manual_seed(0)
    emb, values = torch.randn(1, 3, 20, 8, generator=gen), torch.randn(1, 20, 6, generator=gen)
    weights = torch.full((3, 3), 1 / 3)
    want = diffuse(emb, values, [2, 2, 2], weights, size=(4, 5), iterations=2, mode="dense")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for mode in ("dense", "chunked"):
            got = diffuse(emb, values, [2, 2, 2], weights, size=(4, 5), iterations=2, mode=mode)
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, want)


def test_bad_configuration_and_inputs_are_named():
    with pytest.raises(ConfigError, match=r"'fast'.*auto, dense, fused, chunked"):
        PatternAffinitivePropagation(8, mode="fast")
    with pytest.raises(ConfigError, match=r"'cosine'.*dot, neg_sq_l2, neg_l2, l1"):
        PatternAffinitivePropagation(8, similarity="cosine")
    for sim in ("l1", "neg_l2"):
        with pytest.raises(ConfigError, match=rf"'fused'.*'{sim}'"):
            PatternAffinitivePropagation(8, similarity=sim, mode="fused")
    with pytest.raises(ConfigError, match="beta"):
        PatternAffinitivePropagation(8, beta=0.0, learn_beta=True)
    with pytest.raises(ConfigError, match="subsample"):
        PatternAffinitivePropagation(8, subsample=0)
    layer = PatternAffinitivePropagation(IN_CHANNELS, 4)
    features, signals = _inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"features\[1\] must be \(B, 5, H, W\)"):
        layer([features[0], features[0], features[2]], signals)
    bad = [signals[0], [signals[1][0], torch.zeros(2, 2, 4, 7)], signals[2]]
    with pytest.raises(ValueError, match=r"signals\[1\]\[1\] must be \(B=2, C, H=5, W=7\)"):
        layer(features, bad)
    with pytest.raises(ValueError, match="signals of 3 tasks"):
        layer(features, signals[:2])
    with pytest.raises(ValueError, match="outside"):
        layer.affinity_map(features, 0, (5, 0))
    with pytest.raises(ConfigError, match="iterations"):
        layer(features, signals, iterations=-1)


def test_auto_never_fuses_under_cpu_autocast():
    common = {"similarity": "dot", "batch": 1, "tasks": 3, "n": 48, "m": 48, "device": torch.device("cpu")}
    seen = []

    def measure(candidates):
        seen.append(tuple(candidates))
        return candidates[0]

    choose_mode("auto", training=True, memory_budget_mb=1e9, measure=measure, allow_fused=False, **common)
    assert seen == [("dense", "chunked")]
    clear_calibration()
    gen = torch.Generator().manual_seed(0)
    emb, values = torch.randn(1, 3, 20, 8, generator=gen), torch.randn(1, 20, 6, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = diffuse(emb, values, [2, 2, 2], None, size=(4, 5), iterations=2, memory_budget_mb=1e6)
    assert out.dtype == torch.float32  # dense or chunked: float32 inside, whatever the measurement chose
    torch.testing.assert_close(out, diffuse(emb, values, [2, 2, 2], None, size=(4, 5), iterations=2, mode="dense"))
    clear_calibration()


def test_calibration_under_cpu_autocast_times_training_passes():
    clear_calibration()
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(1, 3, 20, 8, generator=gen).requires_grad_()
    values = torch.randn(1, 20, 6, generator=gen).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights = torch.full((3, 3), 1 / 3)
        out = diffuse(emb, values, [2, 2, 2], weights, size=(4, 5), iterations=2, memory_budget_mb=1e6)
    out.sum().backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    clear_calibration()


@pytest.mark.parametrize("mode", ["dense", "chunked"])
def test_a_backward_taken_under_cpu_autocast_keeps_float32(mode):
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(1, 3, 20, 8, generator=gen)
    values = torch.randn(1, 20, 6, generator=gen)
    weights = torch.full((3, 3), 1 / 3)
    grads = []
    for autocast in (False, True):
        e, v = emb.clone().requires_grad_(), values.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):  # backward inside autocast too
            diffuse(e, v, [2, 2, 2], weights, size=(4, 5), iterations=2, mode=mode).square().sum().backward()
        grads.append((e.grad, v.grad))
    for plain, under_autocast in zip(*grads, strict=True):
        assert under_autocast.dtype == torch.float32
        torch.testing.assert_close(under_autocast, plain)


def test_auto_does_not_time_under_deterministic_algorithms(monkeypatch):
    import tridense.layers.affinity as affinity

    clear_calibration()
    calls = []
    monkeypatch.setattr(affinity, "_time_mode", lambda mode, **shape: calls.append(mode) or 1.0)
    emb, values = torch.randn(1, 3, 20, 8), torch.randn(1, 20, 6)
    torch.use_deterministic_algorithms(True)
    try:
        diffuse(emb, values, [2, 2, 2], None, size=(4, 5), iterations=2, memory_budget_mb=1e6)
    finally:
        torch.use_deterministic_algorithms(False)
    assert calls == []
    diffuse(emb, values, [2, 2, 2], None, size=(4, 5), iterations=2, memory_budget_mb=1e6)
    assert sorted(calls) == ["chunked", "dense", "fused"]
    clear_calibration()
