"""The ``asm-2d3ds`` protocol against a re-implementation of the ASM authors' 2D-3D-S benchmark.

The reference below is written here, in NumPy, from the rules of ``benchmark_stanford_scenes.py``
(twke18/Adversarial_Structure_Matching): it reads the raw encodings (16-bit depth PNG at 1/512 m, 65535 =
missing; 8-bit normal PNG, (128, 128, 128) = missing), pools every valid pixel of the set, clamps the depth
prediction to [51/512, 26560/512] m, and counts depth accuracies strictly and normal thresholds inclusively.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tridense.data.stanford import decode_normals
from tridense.metrics import TaskMetrics
from tridense.metrics.protocols import get_protocol

EXPONENTS = (0.125, 0.25, 0.5, 1.0, 2.0, 3.0)
THRESHOLDS = (2.8125, 5.625, 11.25, 22.5, 30.0)


def _reference_depth(raw: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    valid = raw != 65535
    g = raw[valid].astype(np.float64) / 512.0
    p = np.clip(pred[valid].astype(np.float64), 51.0 / 512.0, 26560.0 / 512.0)
    ratio = np.maximum(p / g, g / p)
    out = {
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
    }
    for k in EXPONENTS:
        out[f"delta{k:g}"] = float(np.mean(ratio < 1.25**k))
    return out


def _reference_normals(png: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    valid = ~np.all(png == 128, axis=-1)
    g = png[valid].astype(np.float64) / 127.5 - 1.0
    g /= np.linalg.norm(g, axis=-1, keepdims=True)
    p = pred[valid].astype(np.float64)
    p /= np.linalg.norm(p, axis=-1, keepdims=True)
    angle = np.degrees(np.arccos(np.clip((g * p).sum(-1), -1.0, 1.0)))
    out = {"mean": float(angle.mean()), "median": float(np.median(angle))}
    for t in THRESHOLDS:
        out[f"within_{t:g}"] = 100.0 * float(np.mean(angle <= t))
    return out


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw depth (B, H, W) uint16, depth prediction, normal PNGs (B, H, W, 3) uint8, normal predictions."""
    rng = np.random.default_rng(seed)
    b, h, w = 3, 24, 32
    raw = rng.integers(20, 6000, (b, h, w)).astype(np.uint16)
    raw[:, :4, :5] = 65535
    raw[0, 10, 10] = 30000  # 58.6 m: valid (no cap), its prediction clamped to 51.875 m
    pred = raw.astype(np.float64) / 512.0 * np.exp(0.3 * rng.standard_normal((b, h, w)))
    pred[1, 5:8, 5:8] = 0.01  # below the clamp floor
    pred[2, 12, 12] = 1.25 * raw[2, 12, 12] / 512.0  # on a threshold: strict
    # unit normals in the file frame, encoded as the dataset stores them
    n = rng.standard_normal((b, h, w, 3)) + np.array([0.0, 0.0, 3.0])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    png = np.clip(np.round(n * 127.5 + 127.5), 0, 255).astype(np.uint8)
    png[:, -3:, -4:] = 128
    decoded = png.astype(np.float64) / 127.5 - 1.0
    decoded /= np.linalg.norm(decoded, axis=-1, keepdims=True)
    noisy = decoded + 0.2 * rng.standard_normal((b, h, w, 3))
    # one prediction at exactly 30 degrees from its ground truth (inclusive), rotated about an orthogonal axis
    axis = np.cross(decoded[0, 8, 8], [1.0, 0.0, 0.0])
    axis /= np.linalg.norm(axis)
    v, c, s = decoded[0, 8, 8], np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    noisy[0, 8, 8] = v * c + np.cross(axis, v) * s
    return raw, pred, png, noisy


@pytest.mark.parametrize("batch_size", [1, 3])
def test_asm_2d3ds_equals_the_authors_benchmark(batch_size: int) -> None:
    raw, pred, png, noisy = _scene(0)
    metrics = TaskMetrics(("depth", "normals"), protocol="asm-2d3ds")
    depth_gt = np.where(raw == 65535, 0.0, raw / 512.0)  # the loader's decoding: g > 0 valid
    normals_gt = np.stack([decode_normals(x) for x in png])  # OpenCV frame: z negated
    noisy_cv = noisy * np.array([1.0, 1.0, -1.0])
    for i in range(0, raw.shape[0], batch_size):
        sl = slice(i, i + batch_size)
        outputs = {
            "depth": torch.from_numpy(pred[sl])[:, None].float(),
            "normals": torch.from_numpy(noisy_cv[sl]).permute(0, 3, 1, 2).float(),
        }
        batch = {
            "depth": torch.from_numpy(depth_gt[sl])[:, None].float(),
            "normals": torch.from_numpy(normals_gt[sl]).permute(0, 3, 1, 2).float(),
        }
        metrics.update(outputs, batch)
    got = metrics.compute()
    f32 = lambda x: x.astype(np.float32).astype(np.float64)  # noqa: E731  (the float32 values the metrics see)
    want_depth = _reference_depth(raw, f32(pred))
    assert set(got["depth"]) == set(want_depth)
    for key, value in want_depth.items():
        assert got["depth"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    want_normals = _reference_normals(png, f32(noisy))
    assert set(got["normals"]) == set(want_normals)
    for key, value in want_normals.items():
        tol = 0.01 if key == "median" else 1e-3
        assert got["normals"][key] == pytest.approx(value, abs=tol), key


def test_asm_2d3ds_counts_thresholds_as_the_authors() -> None:
    """An angle exactly at 30 degrees counts (inclusive); a depth ratio exactly 1.25 does not (strict)."""
    target = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 1, 2).clone()
    c, s = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    pred = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-1.0, -c]], dtype=torch.float64)
    pred[0, 1] = s
    metrics = TaskMetrics(("normals",), protocol="asm-2d3ds")
    metrics.update({"normals": pred.view(1, 3, 1, 2)}, {"normals": target.double()})
    assert metrics.compute()["normals"]["within_30"] == pytest.approx(100.0)
    depth = TaskMetrics(("depth",), protocol="asm-2d3ds")
    pred_depth = torch.tensor([[[[2.5, 2.0]]]], dtype=torch.float64)
    depth.update({"depth": pred_depth}, {"depth": torch.full((1, 1, 1, 2), 2.0)})
    assert depth.compute()["depth"]["delta1"] == pytest.approx(0.5)


def test_asm_2d3ds_is_registered_with_its_settings() -> None:
    proto = get_protocol("asm-2d3ds")
    assert proto.tasks() == ("depth", "normals")
    assert proto.depth is not None and proto.depth.reduction == "pixel" and proto.depth.max_depth is None
    assert proto.depth.clamp == (51 / 512, 26560 / 512)
    assert proto.normal_thresholds == THRESHOLDS and proto.normal_inclusive
