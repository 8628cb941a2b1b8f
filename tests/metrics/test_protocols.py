"""Named evaluation protocols on the real samples, each against a re-implementation of its source's formula.

Every reference below is written here from the named source's definition (file and function cited), in
NumPy, on the real frames of ``../shared/data`` with deterministic perturbations.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tridense.data.io import read_depth_png, read_label_png, read_npy
from tridense.data.kitti import KB_CROP, kb_crop_box
from tridense.errors import ConfigError
from tridense.metrics import (
    CROPS,
    TaskMetrics,
    delta_mtl,
    depth_metrics,
    frame_crop_mask,
    normal_metrics,
    segmentation_metrics,
)
from tridense.metrics.protocols import PROTOCOLS, Protocol, get_protocol, register_protocol


# --------------------------------------------------------------------------------------------- data
def _wave(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A deterministic smooth field in [-1, 1] (no random generator: the same on every machine)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    phase = sum((k + 1 + seed) * 0.013 * g for k, g in enumerate(grids))
    return np.sin(phase + seed)


def _nyu_depth(shared: Path) -> np.ndarray:
    files = sorted((shared / "nyu-mini" / "depth").glob("*.png"))
    return np.stack([read_depth_png(f, 1000.0) for f in files]).astype(np.float64)  # (6, 480, 640)


def _kitti_depth(shared: Path) -> np.ndarray:
    files = sorted((shared / "kitti-mini" / "depth").glob("*.png"))
    return np.stack([read_depth_png(f, 256.0) for f in files]).astype(np.float64)  # (2, 375, 1242)


def _perturbed_depth(g: np.ndarray, high: float) -> np.ndarray:
    """Prediction = ground truth x (1 +- 25 %), with holes filled, a few values beyond ``high`` and <= 0."""
    base = np.where(g > 0, g, np.median(g[g > 0]))
    p = base * (1.0 + 0.25 * _wave(g.shape, 1))
    p[:, ::97, ::89] = high * 1.5  # beyond the cap: clamped or not, depending on the protocol
    p[:, 5::131, 7::113] = 0.0  # non-positive: clamped to the minimum, or floored
    return p


def _update(metrics: TaskMetrics, outputs: dict, batch: dict) -> dict:
    metrics.update(outputs, batch)
    return metrics.compute()


def _depth_batch(g: np.ndarray, p: np.ndarray, metas: list | None = None) -> tuple[dict, dict]:
    batch = {"depth": torch.from_numpy(g)[:, None].float()}  # (B, 1, H, W) as the loaders give it
    if metas is not None:
        batch["meta"] = metas
    return {"depth": torch.from_numpy(p)[:, None].float()}, batch


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32).astype(np.float64)  # the float32 values the metrics receive


# --------------------------------------------------------------------------- references (in NumPy)
def _bts_compute_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """BTS ``bts_eval.py`` ``compute_errors`` (monodepth2 ``evaluate_depth.py`` ``compute_errors`` is the
    same without silog and log10) on the valid pixels of one image."""
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {
        "abs_rel": np.mean(np.abs(gt - pred) / gt),
        "sq_rel": np.mean((gt - pred) ** 2 / gt),
        "rmse": np.sqrt(np.mean((gt - pred) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
        "log10": np.mean(np.abs(np.log10(gt) - np.log10(pred))),
        "delta1": np.mean(thresh < 1.25),
        "delta2": np.mean(thresh < 1.25**2),
        "delta3": np.mean(thresh < 1.25**3),
        "silog": np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100,
    }


def _bts_eval(gt_all: np.ndarray, pred_all: np.ndarray, lo: float, hi: float, crop: str, median: bool = False):
    """BTS ``bts_eval.py`` ``test`` loop: clamp to [lo, hi], valid lo < gt < hi, the crop with ``int(f * H)``
    bounds (``eigen_crop``: rows 45:471, cols 41:601), per image, averaged. ``median``: monodepth2
    ``evaluate_depth.py`` ``evaluate`` scales by median(gt) / median(pred) on the valid pixels first."""
    rows = []
    for gt, pred in zip(gt_all, pred_all, strict=True):
        pred = pred.copy()
        h, w = gt.shape
        mask = np.zeros_like(gt, dtype=bool)
        if crop == "garg":
            mask[int(0.40810811 * h) : int(0.99189189 * h), int(0.03594771 * w) : int(0.96405229 * w)] = True
        else:
            mask[45:471, 41:601] = True
        valid = (gt > lo) & (gt < hi) & mask
        if median:  # monodepth2: masked first, scaled, then clamped
            p, g = pred[valid], gt[valid]
            p = p * (np.median(g) / np.median(p))
        else:
            p, g = pred[valid], gt[valid]
        p = np.clip(p, lo, hi)
        rows.append(_bts_compute_errors(g, p))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _devkit(gt_all: np.ndarray, pred_all: np.ndarray) -> dict[str, float]:
    """KITTI depth devkit ``cpp/evaluate_depth.cpp`` ``depthError``: every gt > 0 (``isValid``), no clamp,
    per image; the leaderboard prints silog, sq_rel and abs_rel x100 and irmse in 1/km; averaged."""
    rows = []
    for gt, pred in zip(gt_all, pred_all, strict=True):
        valid = gt > 0
        g, p = gt[valid], pred[valid]
        d_err = np.abs(g - p)
        log_diff = np.log(g) - np.log(p)
        n = g.size
        silog = np.sqrt(np.sum(log_diff**2) / n - np.sum(log_diff) ** 2 / n**2)
        rows.append(
            {
                "silog": 100 * silog,
                "sq_rel": 100 * np.sum(d_err**2 / (g * g)) / n,
                "abs_rel": 100 * np.sum(d_err / g) / n,
                "irmse": 1000 * np.sqrt(np.sum((1 / g - 1 / p) ** 2) / n),
            }
        )
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _mtinet_depth(gt_all: np.ndarray, pred_all: np.ndarray) -> dict[str, float]:
    """Multi-Task-Learning-PyTorch ``evaluation/eval_depth.py`` ``eval_depth``: valid label != 0, predictions
    <= 0 set to 1e-9, squared errors pooled over every valid pixel of the set."""
    total_rmse = total_log = n_valid = 0.0
    for label, pred in zip(gt_all.copy(), pred_all.copy(), strict=True):
        valid = label != 0
        n_valid += valid.sum()
        label[label == 0] = 1e-9
        pred[pred <= 0] = 1e-9
        total_log += np.sum(((np.log(label) - np.log(pred)) ** 2)[valid])
        total_rmse += np.sum(((label - pred) ** 2)[valid])
    return {"rmse": math.sqrt(total_rmse / n_valid), "rmse_log": math.sqrt(total_log / n_valid)}


def _mtinet_normals(gt_all: np.ndarray, pred_all: np.ndarray) -> dict[str, float]:
    """Multi-Task-Learning-PyTorch ``evaluation/eval_normals.py`` ``eval_normals``: valid where |label| != 0,
    both normalised (a zero vector stays zero), angles pooled over the set. Inputs (N, H, W, 3)."""
    deg = []
    for label, pred in zip(gt_all, pred_all, strict=True):
        valid = np.linalg.norm(label, axis=2) != 0
        pn = np.linalg.norm(pred, axis=2, keepdims=True)
        pred = np.where(pn > 0, pred / np.where(pn > 0, pn, 1), 0)
        label = label / np.where(valid, np.linalg.norm(label, axis=2), 1)[..., None]
        deg.append(np.rad2deg(np.arccos(np.clip(np.sum(pred * label, axis=2), -1, 1)))[valid])
    d = np.concatenate(deg)
    out = {"mean": np.mean(d), "median": np.median(d), "rmse": np.sqrt(np.mean(d**2))}
    out |= {f"within_{t:g}": 100 * np.mean(d < t) for t in (11.25, 22.5, 30)}
    return {k: float(v) for k, v in out.items()}


def _mtinet_semseg(gt_all: np.ndarray, pred_all: np.ndarray, n_classes: int) -> tuple[float, list[float]]:
    """Multi-Task-Learning-PyTorch ``evaluation/eval_semseg.py`` ``eval_semseg``: tp/fp/fn per class over
    labelled pixels, jac = tp / max(tp + fp + fn, 1e-8), mIoU = mean over all classes."""
    tp, fp, fn = np.zeros(n_classes), np.zeros(n_classes), np.zeros(n_classes)
    for gt, pred in zip(gt_all, pred_all, strict=True):
        valid = gt != 255
        for c in range(n_classes):
            g, p = gt == c, pred == c
            tp[c] += np.sum(g & p & valid)
            fp[c] += np.sum(~g & p & valid)
            fn[c] += np.sum(g & ~p & valid)
    jac = tp / np.maximum(tp + fp + fn, 1e-8)
    return float(np.mean(jac)), jac.tolist()


def _libmtl_nyu(depth, pred_depth, normals, pred_normals, labels, pred_labels, n_classes):
    """LibMTL ``examples/nyu/utils.py``: ``DepthMetric`` (abs and rel error per batch over sum(gt) != 0,
    averaged weighted by the valid-pixel count), ``NormalMetric`` (pred normalised, mask sum(gt) != 0,
    angles pooled), ``SegMetric`` (confusion matrix over 0 <= gt < C; IoU mean; pixel accuracy)."""
    abs_rec, rel_rec, counts = [], [], []
    for g, p in zip(depth, pred_depth, strict=True):  # one image per batch
        m = g != 0
        abs_rec.append(np.sum(np.abs(p[m] - g[m])) / m.sum())
        rel_rec.append(np.sum(np.abs(p[m] - g[m]) / g[m]) / m.sum())
        counts.append(m.sum())
    counts = np.asarray(counts, dtype=np.float64)
    depth_out = {
        "abs_err": float((np.asarray(abs_rec) * counts).sum() / counts.sum()),
        "abs_rel": float((np.asarray(rel_rec) * counts).sum() / counts.sum()),
    }
    errors = []
    for g, p in zip(normals, pred_normals, strict=True):
        with np.errstate(invalid="ignore"):  # zero vectors where the ground truth is invalid: masked below
            p = p / np.linalg.norm(p, axis=2, keepdims=True)
        m = np.sum(g, axis=2) != 0
        errors.append(np.degrees(np.arccos(np.clip(np.sum(p * g, axis=2)[m], -1, 1))))
    e = np.concatenate(errors)
    normal_out = {"mean": float(np.mean(e)), "median": float(np.median(e))}
    normal_out |= {f"within_{t:g}": 100 * float(np.mean(e < t)) for t in (11.25, 22.5, 30)}
    record = np.zeros((n_classes, n_classes), dtype=np.int64)
    for g, p in zip(labels, pred_labels, strict=True):
        k = (g >= 0) & (g < n_classes)
        record += np.bincount(n_classes * g[k] + p[k], minlength=n_classes**2).reshape(n_classes, n_classes)
    h = record.astype(np.float64)
    iu = np.diag(h) / (h.sum(1) + h.sum(0) - np.diag(h))
    seg_out = {"miou": float(np.mean(iu)), "pixel_acc": float(np.diag(h).sum() / h.sum())}
    return depth_out, normal_out, seg_out


def _gad_main(gt_all: np.ndarray, pred_all: np.ndarray, num_class: int) -> dict[str, float]:
    """JianboJiao/semseggap ``main.py``: ``get_iou`` per image (labels 0 = unlabelled, 1..C; the IoU of a
    class counts every pixel predicted as it; classes absent from the ground truth give 0; Aiou divides by
    the number of distinct ground-truth labels minus one) and ``accuracy`` (pooled pixel accuracy,
    per-image mean accuracy; the printed mIoU is the mean over classes of the class IoU averaged over the
    images where it is non-zero)."""
    class_sum, class_count = np.zeros(num_class + 1), np.zeros(num_class + 1)
    aiou = macc = 0.0
    correct = total = 0
    for gt, pred in zip(gt_all, pred_all, strict=True):
        count = np.zeros(num_class + 1)
        for j in range(1, num_class + 1):
            p_j, g_j = pred == j, gt == j
            if g_j.any():
                count[j] = np.sum(p_j & g_j) / np.sum(p_j | g_j)
        aiou += count.sum() / (len(np.unique(gt)) - 1)
        class_sum += count
        class_count[count != 0] += 1
        present = [c for c in np.unique(gt) if c != 0]
        lab = gt != 0
        correct += np.sum(pred[lab] == gt[lab])
        total += lab.sum()
        macc += np.mean([np.sum(pred[gt == c] == c) / np.sum(gt == c) for c in present])
    n = len(gt_all)
    with np.errstate(invalid="ignore"):
        class_iou = np.where(class_count > 0, class_sum / np.maximum(class_count, 1), 0.0)
    return {
        "pixel_acc": correct / total,
        "mean_acc": macc / n,
        "miou": float(np.sum(class_iou[1:]) / num_class),
        "image_miou": aiou / n,
    }


def _assert_close(got: dict, expected: dict, rel: float = 1e-6, **kwargs) -> None:
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=rel, **kwargs), key


# ------------------------------------------------------------------------------------------- crops
def test_crop_bounds_truncate_as_the_reference_code() -> None:
    assert CROPS["garg"].box(375, 1242) == (153, 371, 44, 1197)
    # int(0.99189189 * 370) = int(366.9999993) = 366: truncation, not rounding (the old floor + 1e-6 gave 367)
    assert CROPS["garg"].box(370, 1226) == (151, 366, 44, 1181)
    assert CROPS["eigen_nyu"].box(480, 640) == (45, 471, 41, 601)
    assert CROPS["eigen_nyu"].box(240, 320) == (22, 235, 20, 300)


def test_kitti_crop_region_in_pixels_full_and_kb_cropped(shared_data: Path) -> None:
    g = _kitti_depth(shared_data)
    h, w = g.shape[-2:]
    assert (h, w) == (375, 1242)
    full = frame_crop_mask("garg", h, w, [{}])[0]
    rows, cols = full.any(1).nonzero()[:, 0], full.any(0).nonzero()[:, 0]
    assert (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) == (153, 371, 44, 1197)
    top, left = kb_crop_box(h, w)
    assert (top, left) == (23, 13)
    meta = {"size": (h, w), "crop": (top, left, *KB_CROP)}
    cropped = frame_crop_mask("garg", *KB_CROP, [meta])[0]
    rows, cols = cropped.any(1).nonzero()[:, 0], cropped.any(0).nonzero()[:, 0]
    # the full frame's region shifted by the kb-crop offset: rows 130:348, cols 31:1184 of the 352x1216 frame
    assert (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) == (130, 348, 31, 1184)
    assert int(cropped.sum()) == int(full.sum()) == 218 * 1153
    # the Garg fractions applied to the cropped frame itself (the old behaviour) are another region
    assert CROPS["garg"].box(*KB_CROP) != (130, 348, 31, 1184)


def test_kitti_eigen_garg_on_kb_cropped_frames_equals_the_full_frame(shared_data: Path) -> None:
    g = _kitti_depth(shared_data)
    p = _perturbed_depth(g, 80.0)
    top, left = kb_crop_box(*g.shape[-2:])
    sl = (slice(None), slice(top, top + KB_CROP[0]), slice(left, left + KB_CROP[1]))
    metas = [{"size": g.shape[-2:], "crop": (top, left, *KB_CROP)} for _ in g]
    full = _update(TaskMetrics(("depth",), protocol="kitti-eigen-garg"), *_depth_batch(g, p))
    cropped = _update(TaskMetrics(("depth",), protocol="kitti-eigen-garg"), *_depth_batch(g[sl], p[sl], metas))
    reference = _bts_eval(_f32(g), _f32(p), 1e-3, 80.0, "garg")
    for task in ("depth", "kitti"):
        _assert_close(cropped[task], full[task], rel=1e-9)
    _assert_close(full["depth"], {k: v for k, v in reference.items() if k != "silog"})
    assert full["kitti"]["silog"] == pytest.approx(reference["silog"], rel=1e-6)
    wrong = _update(TaskMetrics(("depth",), crop="garg", max_depth=80.0), *_depth_batch(g[sl], p[sl]))
    assert wrong["depth"]["rmse"] != pytest.approx(full["depth"]["rmse"], rel=1e-3)


# ---------------------------------------------------------------------------------------- protocols
def test_eigen_nyu_equals_bts(shared_data: Path) -> None:
    g = _nyu_depth(shared_data)
    p = _perturbed_depth(g, 10.0)
    got = _update(TaskMetrics(("depth",), protocol="eigen-nyu"), *_depth_batch(g, p))
    reference = _bts_eval(_f32(g), _f32(p), 1e-3, 10.0, "eigen_nyu")
    _assert_close(got["depth"], {k: v for k, v in reference.items() if k != "silog"})
    assert set(got) == {"depth"}


def test_kitti_eigen_garg_median_equals_monodepth2(shared_data: Path) -> None:
    g = _kitti_depth(shared_data)
    p = 0.3 * _perturbed_depth(g, 80.0)  # a scale-ambiguous prediction
    got = _update(TaskMetrics(("depth",), protocol="kitti-eigen-garg-median"), *_depth_batch(g, p))
    reference = _bts_eval(_f32(g), _f32(p), 1e-3, 80.0, "garg", median=True)
    _assert_close(got["depth"], {k: v for k, v in reference.items() if k in ("abs_rel", "sq_rel", "rmse", "rmse_log")})
    _assert_close(got["depth"], {k: v for k, v in reference.items() if k.startswith("delta")}, rel=1e-9)


def test_kitti_benchmark_equals_the_devkit(shared_data: Path) -> None:
    g = _kitti_depth(shared_data)
    p = _perturbed_depth(g, 80.0)
    p = np.where(p > 0, p, 0.5)  # the devkit interpolates holes of the prediction; a dense positive one has none
    got = _update(TaskMetrics(("depth",), protocol="kitti-benchmark"), *_depth_batch(g, p))
    assert set(got) == {"kitti"}
    _assert_close(got["kitti"], _devkit(_f32(g), _f32(p)))
    # beyond 80 m counts and is not clamped: the old capped, clamped default differs
    capped = _update(TaskMetrics(("depth",), kitti=True, max_depth=80.0), *_depth_batch(g, p))
    assert capped["kitti"] == pytest.approx(got["kitti"])  # kitti=True now means the devkit too
    old = _devkit(_f32(np.where(g < 80, g, 0)), np.clip(_f32(p), 1e-3, 80))
    assert old["abs_rel"] != pytest.approx(got["kitti"]["abs_rel"], rel=1e-4)


def _nyu_mtan(shared: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    names = sorted(f.name.split("_")[0] for f in (shared / "nyu-mini" / "mtan").glob("*_depth.npy"))
    folder = shared / "nyu-mini" / "mtan"
    depth = np.stack([read_npy(folder / f"{n}_depth.npy") for n in names]).astype(np.float64)  # (N, 288, 384)
    normals = np.stack([read_npy(folder / f"{n}_normal.npy") for n in names]).astype(np.float64)  # (N, H, W, 3)
    labels = np.stack([read_npy(folder / f"{n}_label13.npy") for n in names]).astype(np.int64)  # -1 = ignore
    return depth, normals, labels


def _perturbed_normals(n: np.ndarray) -> np.ndarray:
    """Normals rotated by a smoothly varying angle about x, with a patch of zero predictions."""
    angle = 0.3 * _wave(n.shape[:3], 2)  # (N, H, W) radians
    c, s = np.cos(angle), np.sin(angle)
    out = np.stack([n[..., 0], c * n[..., 1] - s * n[..., 2], s * n[..., 1] + c * n[..., 2]], axis=-1)
    out[:, 10:30, 10:40] = 0.0  # zero predictions at valid pixels: 90-degree errors
    return out


def _perturbed_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Ground-truth ids with a deterministic 30 % of pixels moved to the next class; ignore -> class 0."""
    idx = np.arange(labels.size).reshape(labels.shape)
    moved = (idx * 2654435761 % 1000) < 300
    pred = np.where(moved, (labels + 1) % num_classes, labels)
    return np.where((labels < 0) | (labels >= num_classes), 0, pred)


def test_mtl_nyud_equals_mti_net(shared_data: Path) -> None:
    depth, normals, _ = _nyu_mtan(shared_data)
    p = _perturbed_depth(depth, 10.0)
    labels = np.stack([read_label_png(f) for f in sorted((shared_data / "nyu-mini" / "label40").glob("*.png"))])
    labels = np.where(labels == 0, 255, labels - 1)  # the sample contract: 0..39, 255 = unlabelled
    pred_labels = _perturbed_labels(np.where(labels == 255, -1, labels), 40)
    pred_normals = _perturbed_normals(normals)
    metrics = TaskMetrics(num_classes=40, protocol="mtl-nyud")
    metrics.update(
        {
            "depth": torch.from_numpy(p)[:, None].float(),
            "normals": torch.from_numpy(pred_normals).permute(0, 3, 1, 2).float(),
        },
        {
            "depth": torch.from_numpy(depth)[:, None].float(),
            "normals": torch.from_numpy(normals).permute(0, 3, 1, 2).float(),
        },
    )
    metrics.update({"semseg": torch.from_numpy(pred_labels)}, {"semseg": torch.from_numpy(labels)})
    got = metrics.compute()
    _assert_close(got["depth"], _mtinet_depth(_f32(depth), _f32(p)))
    assert set(got["depth"]) == {"rmse", "rmse_log"}
    expected_normals = _mtinet_normals(_f32(normals), _f32(pred_normals))
    _assert_close(got["normals"], {k: v for k, v in expected_normals.items() if k != "median"})
    assert got["normals"]["median"] == pytest.approx(expected_normals["median"], abs=0.01)
    miou, jac = _mtinet_semseg(labels, pred_labels, 40)
    assert got["semseg"]["miou"] == pytest.approx(miou, rel=1e-12)
    assert got["semseg"]["iou"] == pytest.approx(jac, rel=1e-12)


def test_mtan_nyuv2_equals_libmtl(shared_data: Path) -> None:
    depth, normals, labels = _nyu_mtan(shared_data)
    p = np.abs(_perturbed_depth(depth, 10.0)) + 0.01  # LibMTL has no floor; keep the prediction positive
    pred_normals = _perturbed_normals(normals)
    pred_normals[:, 10:30, 10:40] = 1.0  # LibMTL divides by the norm: a zero prediction would be NaN there
    pred_labels = _perturbed_labels(labels, 13)
    metrics = TaskMetrics(num_classes=13, protocol="mtan-nyuv2")
    metrics.update(
        {
            "depth": torch.from_numpy(p)[:, None].float(),
            "normals": torch.from_numpy(pred_normals).permute(0, 3, 1, 2).float(),
            "semseg": torch.from_numpy(pred_labels),
        },
        {
            "depth": torch.from_numpy(depth)[:, None].float(),
            "normals": torch.from_numpy(normals).permute(0, 3, 1, 2).float(),
            "semseg": torch.from_numpy(np.where(labels < 0, 255, labels)),
        },
    )
    got = metrics.compute()
    ref_depth, ref_normals, ref_seg = _libmtl_nyu(
        _f32(depth), _f32(p), _f32(normals), _f32(pred_normals), labels, pred_labels, 13
    )
    _assert_close(got["depth"], ref_depth)
    assert list(got["depth"]) == ["abs_err", "abs_rel"]
    _assert_close(got["normals"], {k: v for k, v in ref_normals.items() if k != "median"})
    assert got["normals"]["median"] == pytest.approx(ref_normals["median"], abs=0.01)
    # LibMTL's plain mean would be NaN if a class were absent; all 13 occur in these six images
    assert got["semseg"]["miou"] == pytest.approx(ref_seg["miou"], rel=1e-12)
    assert got["semseg"]["pixel_acc"] == pytest.approx(ref_seg["pixel_acc"], rel=1e-12)


def test_gad_per_image_equals_the_authors_main(shared_data: Path) -> None:
    raw = np.stack([read_label_png(f) for f in sorted((shared_data / "nyu-mini" / "label40").glob("*.png"))])
    labels = np.where(raw == 0, 255, raw - 1)  # (6, 480, 640): 0..39, 255 = unlabelled
    pred = _perturbed_labels(np.where(labels == 255, -1, labels), 40)
    got = _update(
        TaskMetrics(("semseg",), num_classes=40, protocol="gad-per-image"),
        {"semseg": torch.from_numpy(pred)},
        {"semseg": torch.from_numpy(labels)},
    )
    reference = _gad_main(raw, pred + 1, 40)  # back to the authors' ids: 0 = unlabelled, 1..40
    _assert_close(got["semseg"], reference, rel=1e-9)
    pooled = segmentation_metrics(torch.from_numpy(pred), torch.from_numpy(labels), 40)
    assert got["semseg"]["miou"] != pytest.approx(pooled["miou"], rel=1e-3)  # a different protocol indeed


# ------------------------------------------------------------------------------------------- details
def test_zero_predicted_normals_count_as_90_degrees_on_real_normals(shared_data: Path) -> None:
    _, normals, _ = _nyu_mtan(shared_data)
    g = torch.from_numpy(normals[:2]).permute(0, 3, 1, 2).float()  # (2, 3, H, W)
    p = g.clone()
    p[:, :, :50] = 0.0  # zero predictions over the first 50 rows
    valid = (g.norm(dim=1) > 0)[:, :50]
    m = normal_metrics(p, g)
    n_valid = int((g.norm(dim=1) > 0).sum())
    assert m["mean"] == pytest.approx(90.0 * int(valid.sum()) / n_valid, rel=1e-4)
    expected = _mtinet_normals(_f32(normals[:2]), _f32(p.permute(0, 2, 3, 1).numpy()))
    assert m["mean"] == pytest.approx(expected["mean"], rel=1e-6)
    assert m["within_11.25"] == pytest.approx(expected["within_11.25"], rel=1e-9)


def test_both_miou_policies_on_a_subset_missing_classes(shared_data: Path) -> None:
    raw = read_label_png(shared_data / "nyu-mini" / "label40" / "0001.png")
    labels = np.where(raw == 0, 255, raw - 1)[None]  # one image: most of the 40 classes are absent
    pred = _perturbed_labels(np.where(labels == 255, -1, labels), 40)
    present = np.union1d(np.unique(labels[labels != 255]), np.unique(pred[labels != 255]))
    assert 0 < len(present) < 40
    skip = segmentation_metrics(torch.from_numpy(pred), torch.from_numpy(labels), 40, absent="skip")
    zero = segmentation_metrics(torch.from_numpy(pred), torch.from_numpy(labels), 40, absent="zero")
    miou, jac = _mtinet_semseg(labels, pred, 40)
    assert zero["miou"] == pytest.approx(miou, rel=1e-12)
    assert zero["iou"] == pytest.approx(jac, rel=1e-12)
    assert skip["miou"] == pytest.approx(np.mean([jac[c] for c in present]), rel=1e-12)
    assert skip["miou"] == pytest.approx(zero["miou"] * 40 / len(present), rel=1e-12)
    assert sum(math.isnan(v) for v in skip["iou"]) == 40 - len(present)


def test_validity_bounds_and_clamp_are_separate() -> None:
    g = torch.tensor([[0.0, 1e-3, 5.0, 10.0, 12.0]], dtype=torch.float64)
    p = torch.tensor([[3.0, 2e-3, 5.0, 20.0, 12.0]], dtype=torch.float64)

    strict = depth_metrics(p, g, keys=("abs_err",))  # only 5.0 is strictly inside (1e-3, 10)
    assert strict["abs_err"] == 0.0
    inclusive = depth_metrics(p, g, bounds="inclusive", keys=("abs_err",))  # 1e-3, 5, 10 (clamped 20 -> 10)
    assert inclusive["abs_err"] == pytest.approx((1e-3 + 0 + 0) / 3)
    unclamped = depth_metrics(p, g, bounds="inclusive", clamp=False, keys=("abs_err",))
    assert unclamped["abs_err"] == pytest.approx((1e-3 + 0 + 10) / 3)
    uncapped = depth_metrics(p, g, min_depth=0.0, max_depth=None, clamp=False, keys=("abs_err",))
    assert uncapped["abs_err"] == pytest.approx((1e-3 + 0 + 10 + 0) / 4)
    ranged = depth_metrics(p, g, min_depth=0.0, max_depth=None, clamp=(1.0, 15.0), keys=("abs_err",))
    assert ranged["abs_err"] == pytest.approx((1 - 1e-3 + 0 + 5 + 0) / 4)
    scaled = depth_metrics(2 * g[:, 2:], g[:, 2:], max_depth=None, scaling="median", keys=("abs_rel",))
    assert scaled["abs_rel"] == pytest.approx(0.0, abs=1e-12)  # median scaling removes a global scale


def test_delta_mtl_conventions_hand_computed() -> None:
    results = {"depth": {"rmse": 0.9, "abs_rel": 0.2}, "semseg": {"miou": 0.44}}
    references = {"depth": {"rmse": 1.0, "abs_rel": 0.25}, "semseg": {"miou": 0.40}}
    # r = +10 % (rmse lower), +20 % (abs_rel lower), +10 % (miou higher)
    assert delta_mtl(results, references, convention="flat") == pytest.approx((10 + 20 + 10) / 3)
    assert delta_mtl(results, references, convention="per_task") == pytest.approx(((10 + 20) / 2 + 10) / 2)
    assert delta_mtl(results, references) == pytest.approx(40 / 3)  # the default is named: flat
    with pytest.raises(ValueError, match="convention"):
        delta_mtl(results, references, convention="mean")


def test_protocol_table_and_errors() -> None:
    for name in ("eigen-nyu", "mtl-nyud", "mtan-nyuv2", "kitti-eigen-garg", "kitti-benchmark", "gad-per-image"):
        protocol = get_protocol(name)
        assert protocol.source and protocol.papers and protocol.tasks()
    with pytest.raises(ConfigError, match="eigen-nyu"):
        get_protocol("eigen_nyu")
    with pytest.raises(ConfigError, match="fixes"):
        TaskMetrics(("depth",), crop="garg", protocol="eigen-nyu")
    with pytest.raises(ConfigError, match="scores"):
        TaskMetrics(("normals",), protocol="kitti-benchmark")
    with pytest.raises(ValueError, match="already registered"):
        register_protocol(PROTOCOLS["eigen-nyu"])
    custom = Protocol(name="custom-test", description="x", source="y", normal_thresholds=None, segmentation=None)
    metrics = TaskMetrics(("depth", "normals"), protocol=custom)
    assert list(metrics.metrics) == ["depth"] and metrics.protocol is custom
