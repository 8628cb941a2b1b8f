"""PAP's affinity learning, cross-task propagation and task-specific diffusion, exact and memory-lean.

Pattern-Affinitive Propagation (Zhang et al., CVPR 2019, sections 3 and 4.2-4.3). For T tasks with
embeddings x_k (a learned 1x1 convolution of each task's features) over the N = H*W positions:

* affinity of task k: ``M_k = row_softmax(S_k)`` with ``S_k[i, j] = s(x_k[i], x_k[j])``, where s is (names
  exact, :data:`SIMILARITIES`) the inner product ``"dot"`` (the paper's default), the negative squared
  Euclidean distance ``"neg_sq_l2"`` = ``-||x_i - x_j||^2``, the negative Euclidean distance ``"neg_l2"`` =
  ``-||x_i - x_j||`` (the paper's example e^{-||x_i - x_j||} after the softmax's exponential) or the negative
  L1 distance ``"l1"`` = ``-||x_i - x_j||_1``. ``"l2"`` is a deprecated alias of ``"neg_sq_l2"`` (what it
  always meant here), kept so that old configs and checkpoints mean what they meant; it warns;
* cross-task combination (eq. 1): ``M̂_i = sum_k a_ik M_k`` with ``a_i = softmax(w_i)`` over the source
  tasks k, one set of weights per target task i (``cross_task=False``: ``a`` is the identity);
* task-specific diffusion (eq. 2, 4): ``h^{t+1} = M̂_i pool(h^t)`` for t = 0..I-1, then
  ``h_out = beta h^I + (1 - beta) h^0``, for every signal of task i (initial prediction and features).
  The paper writes ``h_out = alpha h^T + (1 - alpha) h^0`` and "sets the trade-off parameter to 0.05" without
  saying which side it weights: ``beta=0.05`` reads it as the weight of the diffused signal (the default),
  ``beta=0.95`` as the weight of the initial one; ``learn_beta=True`` learns one beta per target task,
  ``sigmoid`` of a parameter, so it stays in [0, 1].

With ``subsample=s`` the keys (x) and values (h) are max-pooled s x s (ceil mode: non-local networks'
subsampling), so the matrices are N x M with M = ceil(H/s) * ceil(W/s); queries keep full resolution.

Modes (``mode``), all exact. Costs in multiply-adds per image for I iterations, C embedding channels and
Cv diffused channels of all tasks together; "a set" is the T matrices, T*N*M floats:

* ``"dense"``: build the rows of every ``M_k`` and ``M̂_i`` once (scores, softmax, combination, chunk by
  chunk), keep them, and make every step a matrix product with the cached rows: forward
  N*M*(T*C + I*Cv), training N*M*(3*T*C + 3*I*Cv). Memory: one set (inference, or no cross-task
  combination), two in training (``M_k`` for the softmax gradient and ``M̂_i``); the gradients are formed
  chunk by chunk by a custom autograd function, so nothing else of size N x M exists (:func:`dense_bytes`).
* ``"chunked"``: the same function without the cache: the rows are rebuilt in every sweep over the queries
  (I sweeps forward, I backward; the last backward sweep forms the matrix gradient of all steps at once,
  ``dM̂_i = sum_t g_i^{t+1} (V_i^t)^T``): forward I*N*M*(T*C + Cv), training N*M*((2I+2)*T*C + 3*I*Cv),
  i.e. the scores are recomputed 2I-1 more times than in dense. Memory O(T*rows*M) for a chunk of rows.
  The memory-lean path on CPU, and for ``"l1"`` and ``"neg_l2"``.
* ``"fused"``: ``softmax(q k^T) v`` is scaled-dot-product attention with scale 1 (``"neg_sq_l2"`` through the
  augmented vectors ``q = [x_i, 1]``, ``k = [2 x_j, -||x_j||^2]``: the row constant ``||x_i||^2`` cancels in
  the softmax), so every step is one :func:`torch.nn.functional.scaled_dot_product_attention` call with the
  T source tasks as heads. The kernels return ``M_k v`` only, and ``M̂_i h = sum_k a_ik (M_k h)``, so each
  source head carries the values of *all* targets: forward I*T*N*M*(C + Cv), memory O(T*N*(C + Cv)); the
  kernels' backward recomputes the scores again. The CPU flash kernel needs equal q/k/v widths, so q and k
  are zero-padded to Cv there (forward I*T*N*M*2*Cv): on CPU this path costs several times the dense
  multiply-adds and ``"auto"`` prefers ``"chunked"``. On CUDA widths are padded to multiples of 8 for the
  flash / memory-efficient kernels.
  ``-||x - y||`` and ``-||x - y||_1`` have no inner-product form, so ``"neg_l2"`` and ``"l1"`` cannot be fused
  (an explicit request is a :class:`ConfigError`).
* ``"auto"``: of the exact paths the similarity allows, those whose estimated memory (:func:`mode_bytes`)
  fits ``memory_budget_mb`` (default: :data:`BUDGET_FRACTION` of the device's free memory,
  :func:`default_budget_mb`), the fastest *as measured on this machine*: the first call of a shape class
  (device, similarity family, training or not, batch, tasks, iterations and the sizes rounded to powers of
  two) times each candidate once on random inputs of that shape and caches the winner for the process
  (:func:`choose_mode`, :func:`calibrated_mode`); grids above :data:`CALIBRATION_MAX_POSITIONS` (1/4 of
  480x640) are timed on a proxy grid of that size, so that calibrating costs a bounded time. When nothing
  fits, the leanest path (``"chunked"``). Under CPU autocast ``"fused"`` is not a candidate (it would run in
  half precision where the others keep float32).
  With deterministic algorithms on (``trainer.deterministic``) nothing is timed: the first that fits of dense,
  chunked, fused (CPU) or dense, fused, chunked (CUDA), so that a rerun takes the same path.

Dense and chunked compute in float32 (float64 stays float64) with autocast disabled, so the softmax is never
taken in half precision; fused lets SDPA run in the autocast dtype (its kernels keep the softmax in float32).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from tridense.errors import ConfigError

#: Exact names of the similarities s(x_i, x_j) (see the module docstring).
SIMILARITIES: tuple[str, ...] = ("dot", "neg_sq_l2", "neg_l2", "l1")
#: Deprecated names -> the similarity they mean (``"l2"`` always was the squared distance).
SIMILARITY_ALIASES: dict[str, str] = {"l2": "neg_sq_l2"}
#: Similarities with an inner-product form (an exact SDPA path).
INNER_PRODUCT: tuple[str, ...] = ("dot", "neg_sq_l2")
#: Similarities computed as ``-cdist(q, k, p)`` on the dense and chunked paths: the norm p of each.
CDIST_P: dict[str, float] = {"neg_l2": 2.0, "l1": 1.0}
#: ``auto``'s default memory budget: this fraction of the device's free memory.
BUDGET_FRACTION = 0.5
MODES: tuple[str, ...] = ("auto", "dense", "fused", "chunked")
#: Target size of one (B, T, rows, M) buffer of the dense and chunked paths, in MiB.
DEFAULT_CHUNK_MB = 16.0

Signal = Tensor | Sequence[Tensor]


# ------------------------------------------------------------------------------------------ helpers
def pooled_size(size: tuple[int, int], subsample: int) -> tuple[int, int]:
    """Grid of the keys after ``subsample`` x ``subsample`` max pooling (ceil mode)."""
    return math.ceil(size[0] / subsample), math.ceil(size[1] / subsample)


def pool_tokens(x: Tensor, size: tuple[int, int], subsample: int) -> Tensor:
    """Max-pool token maps on their grid: (..., H*W, C) -> (..., ceil(H/s)*ceil(W/s), C)."""
    if subsample == 1:
        return x
    *lead, _, c = x.shape
    grid = x.reshape(-1, size[0], size[1], c).permute(0, 3, 1, 2)  # (L, C, H, W), channels-last strides
    pooled = F.max_pool2d(grid, subsample, subsample, ceil_mode=True)  # (L, C, H', W')
    return pooled.flatten(2).transpose(1, 2).reshape(*lead, -1, c).contiguous()  # (..., M, C)


def canonical_similarity(similarity: str) -> str:
    """The exact name of ``similarity``: deprecated aliases (``"l2"``) map to theirs with a FutureWarning.

    Raises:
        ConfigError: for an unknown name.
    """
    if similarity in SIMILARITY_ALIASES:
        name = SIMILARITY_ALIASES[similarity]
        warnings.warn(
            f"similarity {similarity!r} is deprecated: it is the negative squared distance, now named {name!r} "
            f"(the unsquared -||x_i - x_j|| of the paper is 'neg_l2')",
            FutureWarning,
            stacklevel=3,
        )
        return name
    if similarity not in SIMILARITIES:
        raise ConfigError(
            f"unknown similarity {similarity!r}; valid: {', '.join(SIMILARITIES)} "
            f"(deprecated: {', '.join(SIMILARITY_ALIASES)})"
        )
    return similarity


def cdist_scores(q: Tensor, k: Tensor, p: float) -> Tensor:
    """``-||q_i - k_j||_p`` of every pair, exact (no matrix-product shortcut for p = 2, whose gradient at a
    zero distance would be unbounded): (..., n, C), (..., m, C) -> (..., n, m)."""
    return -torch.cdist(q, k, p=p, compute_mode="donot_use_mm_for_euclid_dist")


def pairwise_scores(q: Tensor, k: Tensor, similarity: str) -> Tensor:
    """Exact similarities s(q_i, k_j) of every pair: (..., n, C), (..., m, C) -> (..., n, m)."""
    similarity = canonical_similarity(similarity)
    if similarity == "dot":
        return q @ k.transpose(-1, -2)  # (..., n, m)
    if similarity == "neg_sq_l2":
        cross = q @ k.transpose(-1, -2)  # (..., n, m)
        return 2 * cross - q.square().sum(-1, keepdim=True) - k.square().sum(-1).unsqueeze(-2)
    return cdist_scores(q, k, CDIST_P[similarity])  # (..., n, m)


def attention_operands(q: Tensor, k: Tensor, similarity: str) -> tuple[Tensor, Tensor]:
    """Vectors whose inner product is the similarity up to a per-row constant (exact under the softmax).

    ``"dot"``: (q, k). ``"neg_sq_l2"``: ``[q, 1]`` and ``[2k, -||k||^2]``, since
    -||q - k||^2 = 2 q.k - ||k||^2 - ||q||^2.
    """
    similarity = canonical_similarity(similarity)
    if similarity == "dot":
        return q, k
    if similarity == "neg_sq_l2":
        q_aug = torch.cat([q, torch.ones_like(q[..., :1])], dim=-1)  # (..., n, C+1)
        k_aug = torch.cat([2 * k, -k.square().sum(-1, keepdim=True)], dim=-1)  # (..., m, C+1)
        return q_aug, k_aug
    raise ConfigError(
        f"similarity {similarity!r} has no inner-product form; only {', '.join(INNER_PRODUCT)} have one"
    )


def combine(weights: Tensor | None, matrices: Tensor) -> Tensor:
    """Cross-task combination (eq. 1): (T, T) weights [target, source] x (B, T, n, m) -> (B, T, n, m)."""
    if weights is None:
        return matrices
    return torch.einsum("ik,bknm->binm", weights.to(matrices.dtype), matrices)


def dense_bytes(batch: int, tasks: int, n: int, m: int, *, training: bool, cross_task: bool = True) -> int:
    """Bytes of the matrices that the dense path keeps (float32): one set, two in training with cross-task.

    A set is the T matrices, B*T*N*M floats. The chunk buffers (``DEFAULT_CHUNK_MB`` each) come on top.
    """
    sets = 2 if training and cross_task else 1
    return sets * batch * tasks * n * m * 4


def check_mode(mode: str, similarity: str) -> str:
    """Validate ``mode`` and ``similarity``; returns the similarity's exact name (aliases resolved).

    Raises:
        ConfigError: an unknown mode or similarity, or ``"fused"`` with a similarity that has no
            inner-product form (``"l1"``, ``"neg_l2"``).
    """
    if mode not in MODES:
        raise ConfigError(f"unknown propagation mode {mode!r}; valid: {', '.join(MODES)}")
    similarity = canonical_similarity(similarity)
    if mode == "fused" and similarity not in INNER_PRODUCT:
        raise ConfigError(
            f"mode 'fused' needs an inner-product similarity ({', '.join(INNER_PRODUCT)}), got {similarity!r}; "
            "use 'chunked' or 'dense'"
        )
    return similarity


def exact_modes(similarity: str) -> tuple[str, ...]:
    """The exact paths that compute ``similarity``: dense and chunked always, fused for inner products."""
    similarity = canonical_similarity(similarity)
    return ("dense", "chunked", "fused") if similarity in INNER_PRODUCT else ("dense", "chunked")


def free_memory_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA's ``mem_get_info``, else the host's MemAvailable (4 GiB if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def default_budget_mb(device: torch.device) -> float:
    """``auto``'s default memory budget: :data:`BUDGET_FRACTION` of the free memory of ``device``, in MiB."""
    return BUDGET_FRACTION * free_memory_bytes(device) / 2**20


def mode_bytes(
    mode: str,
    *,
    batch: int,
    tasks: int,
    n: int,
    m: int,
    channels: int,
    value_channels: int,
    iterations: int,
    training: bool,
    cross_task: bool = True,
) -> int:
    """Estimated peak bytes of one path's own buffers (float32), for ``auto``'s memory budget.

    Dense: the matrices (:func:`dense_bytes`) and a chunk buffer set; chunked: a chunk buffer set; fused:
    the per-head operands and outputs, O(T*N*(C + Cv)) (the SDPA kernels keep no N x M matrix). Training
    adds the I step inputs h^t kept for the backward pass (B*N*Cv each) on every path.
    """
    chunk = 4 * int(DEFAULT_CHUNK_MB * 2**20)  # scores, probabilities, combination and their gradient
    history = (iterations if training else 1) * batch * n * value_channels * 4
    if mode == "dense":
        return dense_bytes(batch, tasks, n, m, training=training, cross_task=cross_task) + chunk + history
    if mode == "chunked":
        return chunk + history
    if mode == "fused":
        width = channels + 1 + value_channels
        return (3 if training else 2) * batch * tasks * (n + m) * width * 4 + history
    raise ConfigError(f"mode_bytes: no estimate for mode {mode!r}; valid: dense, chunked, fused")


#: Winners of the measured comparisons of :func:`calibrated_mode`, by shape class.
_CALIBRATION: dict[tuple, str] = {}
#: Largest grid (positions) :func:`calibrated_mode` times at its own size: the paper's finest affinity scale,
#: 1/4 of 480x640. Beyond it every path's cost is a fixed amount per query-key pair, so their ranking no longer
#: changes with n, while a timed training pass at n = 76,800 takes minutes on a CPU: larger grids are timed on
#: a proxy grid of the same aspect with about this many positions (the candidates that fit are still decided at
#: the real size).
CALIBRATION_MAX_POSITIONS = 19_200
#: A timed run at least this long (seconds) is its own warm-up: :func:`_time_mode` does not repeat it.
SINGLE_RUN_SECONDS = 1.0


def _bucket(x: int) -> int:
    """``x`` rounded up to a power of two (shape classes of the calibration cache)."""
    return 1 << max(0, int(x) - 1).bit_length()


def calibration_size(size: tuple[int, int], max_positions: int = CALIBRATION_MAX_POSITIONS) -> tuple[int, int]:
    """The grid :func:`calibrated_mode` times: ``size`` itself, or above ``max_positions`` positions a grid of
    the same aspect with about ``max_positions``."""
    h, w = size
    if h * w <= max_positions:
        return size
    scale = math.sqrt(max_positions / (h * w))
    h = min(h, max(1, round(h * scale)))
    return h, min(w, max(1, round(max_positions / h)))  # a thin grid keeps its short side


def clear_calibration() -> None:
    """Forget the measured winners (the next ``auto`` call of every shape class measures again)."""
    _CALIBRATION.clear()


def _time_mode(
    mode: str,
    *,
    similarity: str,
    batch: int,
    tasks: int,
    size: tuple[int, int],
    subsample: int,
    channels: int,
    splits: Sequence[int],
    iterations: int,
    training: bool,
    cross_task: bool,
    device: torch.device,
) -> float:
    """Seconds of one diffusion (forward, and backward when training) with ``mode`` on random inputs.

    A private generator draws the inputs, so the global random stream (the training's seeds) is untouched.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    n = size[0] * size[1]
    x = torch.randn(batch, tasks, n, channels, device=device, generator=gen)  # (B, T, N, C)
    v = torch.randn(batch, n, sum(splits), device=device, generator=gen)  # (B, N, Cv)
    w = torch.full((tasks, tasks), 1.0 / tasks, device=device) if cross_task else None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    best = math.inf
    for _ in range(2):  # the first run warms the kernels up; the faster of two counts (a long one counts alone)
        xs, vs = x.clone().requires_grad_(training), v.clone().requires_grad_(training)
        sync(device)
        start = time.perf_counter()
        with torch.set_grad_enabled(training):
            h = diffuse(
                xs, vs, splits, w, size=size, iterations=iterations, similarity=similarity,
                subsample=subsample, mode=mode,
            )  # fmt: skip
            if training:
                with torch.autocast(device.type, enabled=False):  # as in training: backward outside autocast
                    h.float().sum().backward()
        sync(device)
        best = min(best, time.perf_counter() - start)
        if best >= SINGLE_RUN_SECONDS:
            break
    return best


def calibrated_mode(
    candidates: Sequence[str],
    *,
    similarity: str,
    batch: int,
    tasks: int,
    size: tuple[int, int],
    subsample: int,
    channels: int,
    splits: Sequence[int],
    iterations: int,
    training: bool,
    cross_task: bool,
    device: torch.device,
    timer: Callable[..., float] | None = None,
) -> str:
    """The fastest of ``candidates`` for this shape class, measured once per process and cached.

    Each candidate is timed on random inputs of the shape, a grid above :data:`CALIBRATION_MAX_POSITIONS`
    on the proxy grid of :func:`calibration_size`.

    Args:
        candidates: exact modes that fit the budget (at least one).
        timer: ``(mode, **shape) -> seconds`` (default: a timed run on random inputs, :func:`_time_mode`).
    """
    if len(candidates) == 1:
        return candidates[0]
    family = "inner" if similarity in INNER_PRODUCT else similarity
    key = (
        str(device), family, training, cross_task, tuple(candidates), batch, tasks, iterations, subsample,
        _bucket(size[0] * size[1]), _bucket(channels), _bucket(sum(splits)),
    )  # fmt: skip
    if key not in _CALIBRATION:
        timer = timer or _time_mode
        shape = {
            "similarity": similarity, "batch": batch, "tasks": tasks, "size": calibration_size(size),
            "subsample": subsample,
            "channels": channels, "splits": tuple(splits), "iterations": iterations, "training": training,
            "cross_task": cross_task, "device": device,
        }  # fmt: skip
        times = {mode: timer(mode, **shape) for mode in candidates}  # under the caller's autocast state
        _CALIBRATION[key] = min(times, key=times.__getitem__)
    return _CALIBRATION[key]


def choose_mode(
    mode: str,
    *,
    similarity: str,
    batch: int,
    tasks: int,
    n: int,
    m: int,
    device: torch.device,
    training: bool,
    cross_task: bool = True,
    memory_budget_mb: float | None = None,
    channels: int = 64,
    value_channels: int = 64,
    iterations: int = 4,
    measure: Callable[[Sequence[str]], str] | None = None,
    allow_fused: bool = True,
) -> str:
    """Resolve ``"auto"``: the fastest exact path whose :func:`mode_bytes` fits the budget.

    Explicit modes are validated and returned unchanged (``"fused"`` without an inner-product form is an
    error). For ``"auto"`` the exact paths of the similarity that fit ``memory_budget_mb`` (None:
    :func:`default_budget_mb`) are the candidates; one is returned as is, several go to ``measure``
    (``candidates -> mode``; :func:`diffuse` passes :func:`calibrated_mode`; None: the static order dense,
    fused, chunked). Nothing fits: ``"chunked"``, the leanest. ``allow_fused=False`` leaves ``"fused"`` out of
    ``auto``'s candidates (:func:`diffuse` does so under CPU autocast, where SDPA would run in half precision
    while dense and chunked keep float32: the choice then never changes the numerics of a CPU run).
    """
    similarity = check_mode(mode, similarity)
    if mode != "auto":
        return mode
    budget = (default_budget_mb(device) if memory_budget_mb is None else memory_budget_mb) * 2**20
    shape = {
        "batch": batch, "tasks": tasks, "n": n, "m": m, "channels": channels, "value_channels": value_channels,
        "iterations": iterations, "training": training, "cross_task": cross_task,
    }  # fmt: skip
    order = ("dense", "fused", "chunked") if device.type == "cuda" else ("dense", "chunked", "fused")
    allowed = [md for md in exact_modes(similarity) if allow_fused or md != "fused"]
    fits = [md for md in order if md in allowed and mode_bytes(md, **shape) <= budget]
    if not fits:
        return "chunked"
    if len(fits) == 1 or measure is None:
        return fits[0]
    return measure(fits)


def _pad_last(x: Tensor, width: int) -> Tensor:
    """Zero-pad the last dimension to ``width`` (no copy when it already has it)."""
    return x if x.shape[-1] == width else F.pad(x, (0, width - x.shape[-1]))


# ------------------------------------------------------------------------------------------ fused (SDPA)
def _sdpa_widths(qk_width: int, v_width: int, device: torch.device) -> tuple[int, int]:
    """Padded q/k and v widths that the fused kernels of ``device`` accept."""
    if device.type == "cuda":
        return -(-qk_width // 8) * 8, -(-v_width // 8) * 8
    width = max(qk_width, v_width)  # the CPU flash kernel needs equal widths
    return width, width


def _diffuse_fused(
    q: Tensor,
    k: Tensor,
    values: Tensor,
    splits: Sequence[int],
    weights: Tensor | None,
    iterations: int,
    size: tuple[int, int],
    subsample: int,
) -> Tensor:
    """One SDPA call per step with the T source tasks as heads (q, k already in inner-product form)."""
    b, t, _, _ = q.shape
    width = sum(splits) if weights is not None else max(splits)
    qk_pad, v_pad = _sdpa_widths(q.shape[-1], width, q.device)
    q, k = _pad_last(q, qk_pad), _pad_last(k, qk_pad)  # (B, T, N, D), (B, T, M, D)
    h = values
    for _ in range(iterations):
        v = pool_tokens(h, size, subsample)  # (B, M, Cv)
        if weights is None:  # head i carries target i's own values
            heads = torch.stack([_pad_last(vi, v_pad) for vi in v.split(splits, -1)], dim=1)  # (B, T, M, Dv)
        else:  # every source head carries the values of all targets
            heads = _pad_last(v, v_pad).unsqueeze(1).expand(b, t, -1, v_pad)  # (B, T, M, Dv)
        y = F.scaled_dot_product_attention(q, k, heads.to(q.dtype), scale=1.0)  # (B, T, N, Dv)
        if weights is None:
            parts = [y[:, i, :, :c] for i, c in enumerate(splits)]
        else:
            per_target = y[..., : sum(splits)].split(splits, -1)  # T x (B, T_src, N, Cv_i)
            parts = [
                torch.einsum("k,bknc->bnc", weights[i].to(y.dtype), yi) for i, yi in enumerate(per_target)
            ]
        h = torch.cat(parts, dim=-1).to(values.dtype)  # (B, N, Cv)
    return h


# ------------------------------------------------------------------------------------------ dense / chunked
def _chunks(n: int, rows: int) -> list[slice]:
    return [slice(s, min(s + rows, n)) for s in range(0, n, rows)]


def _per_target(x: Tensor, splits: Sequence[int]) -> list[Tensor]:
    """Split channels by target into contiguous blocks (the matrix products read them many times)."""
    return [part.contiguous() for part in x.split(list(splits), -1)]


class _Rows:
    """Rows of every ``M_k`` (softmax) and ``M̂_i`` for chunks of queries: rebuilt on demand, or cached.

    Args:
        q, k: (B, T, N, D) queries and (B, T, M, D) keys (inner-product operands, or raw for a cdist score).
        weights: (T, T) cross-task weights, or None.
        p: scores are ``-||q - k||_p`` (:func:`cdist_scores`) instead of ``q.k``; None: inner product.
        rows: queries per chunk.
        cache: build all rows once and keep them (the dense mode).
        keep_probs: also keep ``M_k`` (needed for gradients when ``weights`` is given).
    """

    def __init__(
        self,
        q: Tensor,
        k: Tensor,
        weights: Tensor | None,
        p: float | None,
        rows: int,
        cache: bool,
        keep_probs: bool,
    ) -> None:
        self.q, self.k, self.weights, self.p = q, k, weights, p
        self.chunks = _chunks(q.shape[2], rows)
        self.probs: Tensor | None = None
        self.mixed: Tensor | None = None
        if cache:
            b, t, n, _ = q.shape
            self.mixed = q.new_empty(b, t, n, k.shape[2])  # (B, T, N, M)
            separate = keep_probs and weights is not None
            self.probs = q.new_empty(self.mixed.shape) if separate else None
            for r in self.chunks:
                probs, mixed = self.build(r)
                self.mixed[:, :, r] = mixed
                if separate:
                    self.probs[:, :, r] = probs
            if weights is None:
                self.probs = self.mixed

    def build(self, r: slice) -> tuple[Tensor, Tensor]:
        """Scores, softmax and combination of the query rows ``r``: 2 x (B, T, c, M)."""
        q_rows = self.q[:, :, r]  # (B, T, c, D)
        scores = q_rows @ self.k.transpose(-1, -2) if self.p is None else cdist_scores(q_rows, self.k, self.p)
        probs = torch.softmax(scores, dim=-1)  # (B, T, c, M)
        del scores
        return probs, combine(self.weights, probs)

    def __call__(self, r: slice) -> tuple[Tensor | None, Tensor]:
        """``(M_k rows, M̂_i rows)`` of the chunk ``r`` (``M_k`` is None when cached without it)."""
        if self.mixed is None:
            return self.build(r)
        return (None if self.probs is None else self.probs[:, :, r]), self.mixed[:, :, r]


def _step(rows: _Rows, v: list[Tensor]) -> list[Tensor]:
    """One diffusion step ``h_i = M̂_i v_i`` for every target i: T x (B, M, Cv_i) -> T x (B, N, Cv_i)."""
    b, _, n, _ = rows.q.shape
    out = [vi.new_empty(b, n, vi.shape[-1]) for vi in v]
    for r in rows.chunks:
        _, mixed = rows(r)  # (B, T, c, M)
        for i, vi in enumerate(v):
            if b == 1:
                torch.matmul(mixed[:, i], vi, out=out[i][:, r])  # (1, c, Cv_i), in place
            else:
                out[i][:, r] = mixed[:, i] @ vi  # (B, c, Cv_i)
    return out


def _iterate(
    rows: _Rows, values: Tensor, splits: Sequence[int], iterations: int, size: tuple[int, int], subsample: int
) -> tuple[Tensor, list[Tensor]]:
    """``h <- M̂ pool(h)`` I times; returns h^I and the inputs h^0..h^{I-1} of the steps."""
    history, h = [], values
    for _ in range(iterations):
        history.append(h)
        v = _per_target(pool_tokens(h, size, subsample), splits)  # T x (B, M, Cv_i)
        h = torch.cat(_step(rows, v), dim=-1)  # (B, N, Cv)
    return h, history


def _pool_backward(grad: Tensor, h: Tensor, size: tuple[int, int], subsample: int) -> Tensor:
    """Gradient of :func:`pool_tokens` w.r.t. its input, by recomputing it (routes to the arg-max)."""
    if subsample == 1:
        return grad
    with torch.enable_grad():
        leaf = h.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(pool_tokens(leaf, size, subsample), leaf, grad)
    return g


def _backward(
    rows: _Rows,
    history: list[Tensor],
    grad: Tensor,
    splits: Sequence[int],
    size: tuple[int, int],
    subsample: int,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Gradients w.r.t. q, k, weights and h^0; one sweep over the rows per step.

    The sweep for step t gives ``dV^t = M̂^T g^{t+1}``; the last sweep (t = 0) also forms the matrix gradient
    of all steps at once, ``dM̂_i = sum_t g_i^{t+1} (V_i^t)^T`` (one product with I*Cv_i inner channels), and
    pushes it, chunk by chunk, through the combination, the softmax and the similarity.
    """
    q, k, weights = rows.q, rows.k, rows.weights
    b, t, _, _ = q.shape
    iters = len(history)
    dq, dk = torch.zeros_like(q), torch.zeros_like(k)
    dw = None if weights is None else torch.zeros_like(weights)
    later: list[Tensor] = []  # g^{t+1}, from t = I-1 down to the current step
    g = grad
    for step in reversed(range(iters)):
        later.append(g)
        last = step == 0
        gs = _per_target(g, splits)  # T x (B, N, Cv_i)
        dv = [g.new_zeros(b, k.shape[2], gi.shape[-1]) for gi in gs]
        if last:  # g^{t+1} beside V^t along channels for every step t: (B, N, I*Cv_i), (B, M, I*Cv_i)
            g_cat = [torch.cat([_per_target(gt, splits)[i] for gt in later], -1) for i in range(t)]
            pooled = [pool_tokens(history[iters - 1 - j], size, subsample) for j in range(iters)]
            v_cat = [torch.cat([_per_target(p, splits)[i] for p in pooled], -1) for i in range(t)]
        for r in rows.chunks:
            probs, mixed = rows(r)  # (B, T, c, M)
            for i in range(t):
                dv[i].baddbmm_(mixed[:, i].transpose(1, 2), gs[i][:, r])  # (B, M, Cv_i)
            if not last:
                continue
            del mixed
            d_mixed = torch.stack(
                [g_cat[i][:, r] @ v_cat[i].transpose(1, 2) for i in range(t)], 1
            )  # (B, T, c, M)
            if weights is None:
                d_probs = d_mixed
            else:
                flat_d, flat_p = d_mixed.reshape(b, t, -1), probs.reshape(b, t, -1)  # (B, T, c*M)
                dw += (flat_d @ flat_p.transpose(1, 2)).sum(0)  # (T, T) [target, source]
                d_probs = torch.einsum("ik,bicm->bkcm", weights, d_mixed)  # (B, T, c, M)
            del d_mixed
            d_scores = torch._softmax_backward_data(d_probs, probs, -1, probs.dtype)  # (B, T, c, M)
            del d_probs, probs
            if rows.p is not None:
                with torch.enable_grad():
                    q_leaf, k_leaf = q[:, :, r].detach().requires_grad_(True), k.detach().requires_grad_(True)
                    gq, gk = torch.autograd.grad(cdist_scores(q_leaf, k_leaf, rows.p), (q_leaf, k_leaf), d_scores)
                dq[:, :, r] = gq
                dk += gk
            else:
                dq[:, :, r] = d_scores @ k  # (B, T, c, D)
                dk += d_scores.transpose(-1, -2) @ q[:, :, r]  # (B, T, M, D)
        g = _pool_backward(torch.cat(dv, -1), history[step], size, subsample)  # g^t, (B, N, Cv)
    return dq, dk, dw, g


class _Diffusion(torch.autograd.Function):
    """h^I of the diffusion over row chunks of M̂ (cached or rebuilt); its backward never holds dM̂."""

    @staticmethod
    def forward(
        ctx,
        q: Tensor,
        k: Tensor,
        weights: Tensor | None,
        values: Tensor,
        splits: tuple[int, ...],
        iterations: int,
        size: tuple[int, int],
        subsample: int,
        p: float | None,
        rows: int,
        cache: bool,
    ) -> Tensor:
        source = _Rows(q, k, weights, p, rows, cache, keep_probs=True)
        h, history = _iterate(source, values, splits, iterations, size, subsample)
        ctx.save_for_backward(q, k, weights, values)  # for autograd's check against in-place changes
        ctx.source, ctx.history, ctx.config = source, history, (splits, size, subsample)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        _ = ctx.saved_tensors  # raises if an input was modified in place after the forward pass
        with torch.autocast(grad.device.type, enabled=False):  # float32 like the forward, also when backward
            grads = _backward(ctx.source, ctx.history, grad.to(ctx.history[0].dtype).contiguous(), *ctx.config)
        del ctx.source, ctx.history
        return (*grads, *([None] * 7))


# ------------------------------------------------------------------------------------------ functional API
def diffuse(
    embeddings: Tensor,
    values: Tensor,
    splits: Sequence[int],
    weights: Tensor | None,
    *,
    size: tuple[int, int],
    iterations: int,
    similarity: str = "dot",
    subsample: int = 1,
    mode: str = "auto",
    memory_budget_mb: float | None = None,
    chunk_rows: int | None = None,
    key_embeddings: Tensor | None = None,
) -> Tensor:
    """I diffusion steps ``h_i <- M̂_i pool(h_i)`` for every target task i (eq. 1-2, without eq. 4's blend).

    Args:
        embeddings: (B, T, N, C) the affinity embeddings x_k of the T tasks, N = H*W positions (row-major).
        values: (B, N, Cv) the signals of all target tasks side by side; task i owns ``splits[i]`` channels.
        splits: channels of each target task, in task order (sum = Cv).
        weights: (T, T) cross-task weights [target, source], rows summing to one; None: no combination.
        size: the grid (H, W) of the N positions.
        iterations: diffusion steps I >= 0 (0 returns ``values``).
        similarity: one of :data:`SIMILARITIES` (``"l2"``: deprecated alias of ``"neg_sq_l2"``).
        subsample: max-pool keys and values ``subsample`` x ``subsample`` (1: none).
        mode: ``"auto"``, ``"dense"``, ``"fused"`` or ``"chunked"`` (see the module docstring).
        memory_budget_mb: the memory ``"auto"`` may spend (:func:`mode_bytes`); None: :func:`default_budget_mb`.
        chunk_rows: query rows per chunk (default: about ``DEFAULT_CHUNK_MB`` per (B, T, rows, M) buffer).
        key_embeddings: (B, T, N, C) separate key embeddings, so that ``S[i, j] = s(q_i, k_j)`` with
            q = ``embeddings`` and k = ``key_embeddings`` (GAD's ``theta(G) . phi(G)``); default: the queries
            themselves (PAP's symmetric ``s(x_i, x_j)``).

    Returns:
        (B, N, Cv) h^I in the dtype of ``values``.
    """
    if embeddings.dim() != 4:
        raise ValueError(f"embeddings must be (B, T, N, C), got shape {tuple(embeddings.shape)}")
    b, t, n, _ = embeddings.shape
    if n != size[0] * size[1]:
        raise ValueError(f"embeddings have N={n} positions but size {size} has {size[0] * size[1]}")
    if values.dim() != 3 or values.shape[:2] != (b, n) or values.shape[2] != sum(splits) or len(splits) != t:
        raise ValueError(
            f"values must be (B={b}, N={n}, sum(splits)={sum(splits)}) with {t} splits, "
            f"got shape {tuple(values.shape)} and splits {tuple(splits)}"
        )
    if weights is not None and weights.shape != (t, t):
        raise ValueError(f"weights must be (T, T) = ({t}, {t}), got {tuple(weights.shape)}")
    if key_embeddings is not None and key_embeddings.shape != embeddings.shape:
        raise ValueError(
            f"key_embeddings must have the queries' shape {tuple(embeddings.shape)}, got {tuple(key_embeddings.shape)}"
        )
    if not isinstance(iterations, int) or iterations < 0:
        raise ConfigError(f"iterations must be an integer >= 0, got {iterations!r}")
    if not isinstance(subsample, int) or subsample < 1:
        raise ConfigError(f"subsample must be an integer >= 1, got {subsample!r}")
    embeddings, values = embeddings.contiguous(), values.contiguous()  # fused kernels need unit last strides
    key_source = embeddings if key_embeddings is None else key_embeddings.contiguous()
    keys = pool_tokens(key_source, size, subsample)  # (B, T, M, C)
    m = keys.shape[2]
    needs_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (embeddings, values, weights, key_embeddings)
    )
    similarity = canonical_similarity(similarity)
    splits = tuple(int(c) for c in splits)
    if iterations == 0:
        check_mode(mode, similarity)
        return values

    def measure(candidates: Sequence[str]) -> str:
        return calibrated_mode(
            candidates, similarity=similarity, batch=b, tasks=t, size=size, subsample=subsample,
            channels=embeddings.shape[-1], splits=splits, iterations=iterations, training=needs_grad,
            cross_task=weights is not None, device=embeddings.device,
        )  # fmt: skip

    mode = choose_mode(
        mode,
        similarity=similarity,
        batch=b,
        tasks=t,
        n=n,
        m=m,
        device=embeddings.device,
        training=needs_grad,
        cross_task=weights is not None,
        memory_budget_mb=memory_budget_mb,
        channels=embeddings.shape[-1],
        value_channels=sum(splits),
        iterations=iterations,
        measure=None if torch.are_deterministic_algorithms_enabled() else measure,  # reproducible: no timing
        allow_fused=not (embeddings.device.type == "cpu" and torch.is_autocast_enabled("cpu")),
    )
    if mode == "fused":
        q_op, k_op = attention_operands(embeddings, keys, similarity)
        return _diffuse_fused(q_op, k_op, values, splits, weights, iterations, size, subsample)
    dtype = torch.promote_types(values.dtype, torch.float32)
    with torch.autocast(embeddings.device.type, enabled=False):
        q, k, v = embeddings.to(dtype), keys.to(dtype), values.to(dtype)
        w = None if weights is None else weights.to(dtype)
        p = CDIST_P.get(similarity)
        if p is None:
            q, k = attention_operands(q, k, similarity)
        rows = chunk_rows or max(1, int(DEFAULT_CHUNK_MB * 2**20 // (b * t * m * q.element_size())))
        rows, cache = min(rows, n), mode == "dense"
        if needs_grad:
            h = _Diffusion.apply(q, k, w, v, splits, iterations, size, subsample, p, rows, cache)
        else:
            source = _Rows(q, k, w, p, rows, cache, keep_probs=False)
            h, _ = _iterate(source, v, splits, iterations, size, subsample)
        return h.to(values.dtype)


def affinity_matrices(
    embeddings: Tensor,
    weights: Tensor | None,
    size: tuple[int, int],
    similarity: str = "dot",
    subsample: int = 1,
) -> tuple[Tensor, Tensor]:
    """Explicit matrices for visualisation: single-task ``M_k`` and combined ``M̂_i``, (B, T, N, M) each."""
    keys = pool_tokens(embeddings, size, subsample)  # (B, T, M, C)
    single = torch.softmax(pairwise_scores(embeddings, keys, similarity).float(), dim=-1)  # (B, T, N, M)
    return single, combine(None if weights is None else weights.float(), single)


# ------------------------------------------------------------------------------------------ module
class PatternAffinitivePropagation(nn.Module):
    """PAP's affinity learning, cross-task propagation and task-specific diffusion for T tasks.

    Each task's features (B, C_in_k, H, W) are shrunk by a 1x1 convolution to the affinity embedding
    (B, affinity_channels, H, W); the combined matrices of the tasks then diffuse every signal of each task.

    Args:
        in_channels: channels of each task's affinity-learning input (one int for all tasks, or one per task).
        affinity_channels: embedding channels C (default: half the smallest ``in_channels``, as 2C -> C).
        num_tasks: T, used when ``in_channels`` is one int.
        similarity: ``"dot"`` (the paper's default), ``"neg_sq_l2"``, ``"neg_l2"`` or ``"l1"``
            (:data:`SIMILARITIES`; ``"l2"`` is a deprecated alias of ``"neg_sq_l2"``).
        cross_task: combine the tasks' matrices (eq. 1); False: the ablation "PAP w/o cross-task propagation".
        iterations: diffusion steps I (overridable per call).
        beta: the trade-off of eq. 4, ``h_out = beta h^I + (1 - beta) h^0``: the weight of the *diffused*
            signal. The paper's 0.05 read as the weight of the diffused signal is ``beta=0.05`` (default); read
            as the weight of the initial signal it is ``beta=0.95``.
        learn_beta: learn one beta per target task, ``sigmoid(logit)`` in [0, 1], starting at ``beta``
            (then 0 < beta < 1 is required).
        self_logit: initial logit of a task's own matrix (others 0), so that a_ii dominates at the start.
        subsample: key/value max-pooling factor (the paper's 2: a quarter of the pairs; 1: all pairs).
        mode: ``"auto"``, ``"dense"``, ``"fused"`` or ``"chunked"``; see the module docstring.
        memory_budget_mb: memory ``"auto"`` may spend (:func:`mode_bytes`); None: a fraction of the free memory.
        chunk_rows: query rows per chunk of the chunked path (default: ~``DEFAULT_CHUNK_MB`` per buffer).
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        affinity_channels: int | None = None,
        *,
        num_tasks: int = 3,
        similarity: str = "dot",
        cross_task: bool = True,
        iterations: int = 4,
        beta: float = 0.05,
        learn_beta: bool = False,
        self_logit: float = 1.0,
        subsample: int = 2,
        mode: str = "auto",
        memory_budget_mb: float | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        super().__init__()
        channels = (
            [in_channels] * num_tasks if isinstance(in_channels, int) else [int(c) for c in in_channels]
        )
        if not channels or min(channels) < 1:
            raise ConfigError(f"in_channels must be positive (one per task), got {in_channels!r}")
        similarity = check_mode(mode, similarity)
        if not isinstance(iterations, int) or iterations < 0:
            raise ConfigError(f"iterations must be an integer >= 0, got {iterations!r}")
        if not isinstance(subsample, int) or subsample < 1:
            raise ConfigError(f"subsample must be an integer >= 1, got {subsample!r}")
        if not 0.0 <= beta <= 1.0 or (learn_beta and not 0.0 < beta < 1.0):
            raise ConfigError(f"beta must lie in [0, 1] (in (0, 1) when learned), got {beta!r}")
        self.in_channels = tuple(channels)
        self.affinity_channels = affinity_channels or max(1, min(channels) // 2)
        self.num_tasks = len(channels)
        self.similarity, self.cross_task, self.iterations = similarity, cross_task, iterations
        self.subsample, self.mode, self.memory_budget_mb, self.chunk_rows = (
            subsample,
            mode,
            memory_budget_mb,
            chunk_rows,
        )
        self.projections = nn.ModuleList(nn.Conv2d(c, self.affinity_channels, 1) for c in channels)
        if cross_task:
            self.mixing_logits = nn.Parameter(self_logit * torch.eye(self.num_tasks))
        else:
            self.register_parameter("mixing_logits", None)
        if learn_beta:
            self.beta_logit = nn.Parameter(torch.full((self.num_tasks,), math.log(beta / (1.0 - beta))))  # (T,)
        else:
            self.register_parameter("beta_logit", None)
        self._beta = float(beta)

    @property
    def beta(self) -> Tensor | float:
        """The trade-off of eq. 4: a float, or (T,) one per target task when learned."""
        return self._beta if self.beta_logit is None else torch.sigmoid(self.beta_logit)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        # Checkpoints from before per-task learned betas hold one scalar logit: give every task that value.
        key = prefix + "beta_logit"
        if self.beta_logit is not None and key in state_dict and state_dict[key].dim() == 0:
            state_dict[key] = state_dict[key].expand(self.num_tasks).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def mixing_weights(self) -> Tensor | None:
        """Cross-task weights a [target, source], (T, T) with rows summing to one; None without cross-task."""
        return None if self.mixing_logits is None else torch.softmax(self.mixing_logits, dim=1)

    def embed(self, features: Sequence[Tensor]) -> Tensor:
        """Affinity embeddings of the T tasks: T x (B, C_in_k, H, W) -> (B, T, C, H, W)."""
        if len(features) != self.num_tasks:
            raise ValueError(f"expected features of {self.num_tasks} tasks, got {len(features)}")
        for i, (f, c) in enumerate(zip(features, self.in_channels, strict=True)):
            if (
                f.dim() != 4
                or f.shape[1] != c
                or f.shape[0] != features[0].shape[0]
                or f.shape[2:] != features[0].shape[2:]
            ):
                raise ValueError(
                    f"features[{i}] must be (B, {c}, H, W) like features[0] {tuple(features[0].shape)}, "
                    f"got {tuple(f.shape)}"
                )
        return torch.stack([proj(f) for proj, f in zip(self.projections, features, strict=True)], dim=1)

    def forward(
        self,
        features: Sequence[Tensor],
        signals: Sequence[Signal],
        iterations: int | None = None,
        return_affinity: bool = False,
    ) -> list[Signal] | tuple[list[Signal], tuple[Tensor, Tensor]]:
        """Diffuse every signal of each task with that task's combined affinity matrix.

        Args:
            features: T tensors (B, C_in_k, H, W), each task's affinity-learning input.
            signals: per task, one tensor (B, C_v, H, W) or a sequence of them (e.g. the initial prediction
                and the last task features), all on the features' grid.
            iterations: diffusion steps for this call (default: the constructor's).
            return_affinity: also return the explicit matrices ``(M_k, M̂_i)``, (B, T, N, M) each, which
                costs O(T*N*M) memory (visualisation only).

        Returns:
            The diffused signals with the structure of ``signals`` (and the matrices when asked).
        """
        x = self.embed(features)  # (B, T, C, H, W)
        b, t, _, height, width = x.shape
        size = (height, width)
        if len(signals) != t:
            raise ValueError(f"expected signals of {t} tasks, got {len(signals)}")
        groups = [[s] if isinstance(s, Tensor) else list(s) for s in signals]
        for i, group in enumerate(groups):
            for j, s in enumerate(group):
                if s.dim() != 4 or s.shape[0] != b or s.shape[2:] != x.shape[3:]:
                    raise ValueError(
                        f"signals[{i}][{j}] must be (B={b}, C, H={height}, W={width}) like the features, "
                        f"got {tuple(s.shape)}"
                    )
        flat = [s for group in groups for s in group]
        h0 = torch.cat(flat, dim=1).flatten(2).transpose(1, 2)  # (B, N, Cv)
        splits = [sum(s.shape[1] for s in group) for group in groups]
        embeddings = x.flatten(3).transpose(2, 3)  # (B, T, N, C)
        weights = self.mixing_weights()
        steps = self.iterations if iterations is None else iterations
        h = diffuse(
            embeddings,
            h0,
            splits,
            weights,
            size=size,
            iterations=steps,
            similarity=self.similarity,
            subsample=self.subsample,
            mode=self.mode,
            memory_budget_mb=self.memory_budget_mb,
            chunk_rows=self.chunk_rows,
        )
        if steps > 0:
            beta = self.beta
            if isinstance(beta, Tensor):  # one per target task -> one per channel of h
                beta = beta.repeat_interleave(torch.tensor(splits, device=beta.device)).to(h.dtype)  # (Cv,)
            h = beta * h + (1 - beta) * h0  # eq. 4
        maps = h.transpose(1, 2).reshape(b, -1, height, width).split([s.shape[1] for s in flat], dim=1)
        out: list[Signal] = []
        pos = 0
        for signal, group in zip(signals, groups, strict=True):
            parts = [m.to(s.dtype) for m, s in zip(maps[pos : pos + len(group)], group, strict=True)]
            out.append(parts[0] if isinstance(signal, Tensor) else parts)
            pos += len(group)
        if return_affinity:
            return out, affinity_matrices(embeddings, weights, size, self.similarity, self.subsample)
        return out

    def affinity_map(
        self, features: Sequence[Tensor], task: int, position: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """Affinity maps of one pixel (one matrix row each), computed without any N x N matrix.

        Args:
            features: T tensors (B, C_in_k, H, W), as for :meth:`forward`.
            task: the target task i whose combined map is returned.
            position: (row, column) of the pixel on the H x W grid.

        Returns:
            ``single`` (B, T, H', W'): the row of every task's own ``M_k``; ``combined`` (B, H', W'): the row
            of ``M̂_task`` (H' x W' is the key grid, pooled when ``subsample`` > 1).
        """
        x = self.embed(features)  # (B, T, C, H, W)
        height, width = x.shape[3:]
        row, col = position
        if not (0 <= task < self.num_tasks and 0 <= row < height and 0 <= col < width):
            raise ValueError(
                f"task {task} / position {position} outside {self.num_tasks} tasks / grid {(height, width)}"
            )
        embeddings = x.flatten(3).transpose(2, 3)  # (B, T, N, C)
        keys = pool_tokens(embeddings, (height, width), self.subsample)  # (B, T, M, C)
        query = embeddings[:, :, row * width + col].unsqueeze(2)  # (B, T, 1, C)
        single = torch.softmax(pairwise_scores(query, keys, self.similarity).float(), dim=-1)[
            :, :, 0
        ]  # (B, T, M)
        weights = self.mixing_weights()
        combined = single[:, task] if weights is None else weights[task].float() @ single  # (B, M)
        grid = pooled_size((height, width), self.subsample)
        return single.reshape(*single.shape[:2], *grid), combined.reshape(-1, *grid)

    def extra_repr(self) -> str:
        return (
            f"tasks={self.num_tasks}, affinity_channels={self.affinity_channels}, "
            f"similarity={self.similarity!r}, "
            f"cross_task={self.cross_task}, iterations={self.iterations}, "
            f"beta={'learned' if self.beta_logit is not None else format(self._beta, '.3g')}, "
            f"subsample={self.subsample}, mode={self.mode!r}"
        )
