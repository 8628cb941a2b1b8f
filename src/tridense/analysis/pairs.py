"""How often a pair of pixels similar (or dissimilar) in one task is so in another: PAP's Fig. 1 statistic.

PAP (Zhang et al., CVPR 2019, Introduction and Fig. 1) motivates cross-task affinity propagation by
counting pixel pairs whose relation "matches" across tasks. This module measures it on ground truth or
on predictions:

- pixels are sampled on a regular grid (rows and columns ``stride//2, stride//2 + stride, ...``);
- for a task pair (A, B) every unordered pair (i < j) of grid points valid for both tasks counts
  (depth > 0, normals non-zero, label != 255; validity always comes from the ground truth);
- per task a pair is *similar*, *dissimilar* or neither:

  ======== ========================================== =============================================
  task     similar                                    dissimilar
  ======== ========================================== =============================================
  depth    |d_i - d_j| / max(d_i, d_j) < t (0.2)       the same ratio >= t (every pair is one or the other)
  normals  angle(n_i, n_j) < s (26 degrees)            angle >= u (40 degrees); between them: neither
  semseg   equal labels                               different labels
  ======== ========================================== =============================================

  A value exactly at a threshold is *not* similar and *is* dissimilar (the paper: similar when the error
  is less than the threshold, otherwise dissimilar). "Exactly" allows a relative 1e-6 for rounding, so
  that 1.0 m against 0.8 m (0.2 in decimal, 0.19999999999999996 in binary and 0.1999999881 from float32
  depth maps) counts as at the threshold; distinct millimetre depths differ by far more near a threshold.
- over the data set the counts |A|, |B|, |A ∩ B| of similar (and of dissimilar) pairs are summed, and
  the pooled ratios reported: Jaccard |A ∩ B| / |A ∪ B| and the conditionals |A ∩ B| / |B|
  (``a_given_b``) and |A ∩ B| / |A| (``b_given_a``); the mean of the per-image ratios is reported too.
  A ratio with an empty denominator is ``None``.

:func:`run_pairs` is what ``tridense analyze pairs`` calls; :func:`format_pairs_table` prints its result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tridense.data.io import read_label_png, read_npy, require_dir
from tridense.data.sample import IGNORE_INDEX, TASKS
from tridense.errors import ConfigError, DataError

if TYPE_CHECKING:
    from tridense.data.base import DenseDataset

#: Relative slack under which a value counts as lying exactly at a threshold: above float32 rounding of the
#: inputs (~2e-7), below the gap between distinct millimetre-quantised depth ratios (> 1e-5 near 0.2).
EDGE_TOL = 1e-6
#: Entries of the (rows x points) relation block computed at once; bounds memory at small strides.
BLOCK_ENTRIES = 1 << 21

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PairThresholds:
    """When a pair of pixels is similar or dissimilar in each task.

    Args:
        depth: threshold on |d_i - d_j| / max(d_i, d_j): below is similar, at or above dissimilar.
        normal_similar_deg: normal angles below this are similar.
        normal_dissimilar_deg: normal angles at or above this are dissimilar (>= normal_similar_deg).
    """

    depth: float = 0.2
    normal_similar_deg: float = 26.0
    normal_dissimilar_deg: float = 40.0

    def __post_init__(self) -> None:
        if not 0.0 < self.depth < 1.0:
            raise ConfigError(f"depth_threshold must be in (0, 1) (a relative difference), got {self.depth}")
        if not 0.0 < self.normal_similar_deg <= self.normal_dissimilar_deg <= 180.0:
            raise ConfigError(
                "normal thresholds must satisfy 0 < similar <= dissimilar <= 180 degrees, got "
                f"normal_similar_deg={self.normal_similar_deg}, "
                f"normal_dissimilar_deg={self.normal_dissimilar_deg}"
            )


@dataclass
class PairCounts:
    """Counts of one task pair (A, B): similar and dissimilar pairs in A, in B and in both."""

    similar_a: int = 0
    similar_b: int = 0
    similar_both: int = 0
    dissimilar_a: int = 0
    dissimilar_b: int = 0
    dissimilar_both: int = 0
    pairs: int = 0  # pairs of grid points valid for both tasks

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def task_pairs(tasks: Sequence[str]) -> list[tuple[str, str]]:
    """The task pairs (A, B) among ``tasks`` in the order of :data:`TASKS` (depth-normals, ...)."""
    ordered = [t for t in TASKS if t in tasks]
    return list(combinations(ordered, 2))


def pair_key(a: str, b: str) -> str:
    return f"{a}-{b}"


def grid_indices(hw: tuple[int, int], stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the sampling grid: every ``stride`` pixels from ``stride // 2``."""
    if stride < 1:
        raise ConfigError(f"stride must be a positive number of pixels, got {stride}")
    return np.arange(stride // 2, hw[0], stride), np.arange(stride // 2, hw[1], stride)


def valid_mask(task: str, values: np.ndarray) -> np.ndarray:
    """Where the ground truth of ``task`` is valid: depth > 0, normals non-zero, label != 255."""
    if task == "depth":
        return np.isfinite(values) & (values > 0)
    if task == "normals":
        return np.isfinite(values).all(-1) & (values != 0).any(-1)
    if task == "semseg":
        return values != IGNORE_INDEX
    raise ConfigError(f"unknown task {task!r}; valid tasks are {list(TASKS)}")


def _below(x: np.ndarray, threshold: float) -> np.ndarray:
    return x < threshold * (1.0 - EDGE_TOL)


def pair_relations(
    task: str, left: np.ndarray, right: np.ndarray, thresholds: PairThresholds
) -> tuple[np.ndarray, np.ndarray]:
    """Similar and dissimilar relations between every ``left`` point and every ``right`` point.

    Args:
        task: "depth", "normals" or "semseg".
        left, right: values of ``task`` at L and R points: (L,) / (R,) for depth and labels, (L, 3) / (R, 3)
            for normals (any non-zero length; they are normalised here).
        thresholds: see :class:`PairThresholds`.

    Returns:
        similar, dissimilar: bool (L, R).
    """
    if task == "depth":
        a, b = left.astype(np.float64)[:, None], right.astype(np.float64)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(a - b) / np.maximum(a, b)  # (L, R)
        similar = _below(rel, thresholds.depth)
        return similar, ~similar & ~np.isnan(rel)
    if task == "normals":
        a, b = (_unit(v.astype(np.float64)) for v in (left, right))
        angle = np.degrees(np.arccos(np.clip(a @ b.T, -1.0, 1.0)))  # (L, 3) @ (3, R) -> (L, R)
        return _below(angle, thresholds.normal_similar_deg), ~_below(angle, thresholds.normal_dissimilar_deg)
    if task == "semseg":
        equal = left[:, None] == right[None, :]  # (L, R)
        return equal, ~equal
    raise ConfigError(f"unknown task {task!r}; valid tasks are {list(TASKS)}")


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def count_pairs(
    values: Mapping[str, np.ndarray],
    valid: Mapping[str, np.ndarray],
    thresholds: PairThresholds,
    *,
    block_entries: int = BLOCK_ENTRIES,
) -> dict[str, PairCounts]:
    """Count similar / dissimilar pairs (i < j) of N points for every pair of the given tasks.

    Args:
        values: per task, its values at the N points ((N,) or (N, 3)).
        valid: per task, bool (N,) validity (from the ground truth).
        thresholds: see :class:`PairThresholds`.
        block_entries: rows of the N x N relation are processed in blocks of about this many entries.

    Returns:
        {"A-B": PairCounts} for each task pair.
    """
    tasks = [t for t in TASKS if t in values]
    n = len(next(iter(values.values()))) if values else 0
    sums = {pair_key(a, b): np.zeros(7, np.int64) for a, b in task_pairs(tasks)}  # in PairCounts' field order
    rows = max(1, block_entries // max(n, 1))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        # Only columns j > i are pairs; columns before ``start`` belong to earlier blocks.
        upper = np.arange(start, n)[None, :] > np.arange(start, stop)[:, None]  # (b, n - start)
        relations = {t: pair_relations(t, values[t][start:stop], values[t][start:], thresholds) for t in tasks}
        for a, b in task_pairs(tasks):
            both_valid = valid[a] & valid[b]
            mask = upper & both_valid[start:stop, None] & both_valid[None, start:]  # (b, n - start)
            block = []
            for k in (0, 1):  # similar, dissimilar
                in_a, in_b = relations[a][k] & mask, relations[b][k] & mask
                block += [in_a.sum(), in_b.sum(), (in_a & in_b).sum()]
            sums[pair_key(a, b)] += np.array([*block, mask.sum()], np.int64)
    return {key: PairCounts(*(int(x) for x in total)) for key, total in sums.items()}


def image_pair_counts(
    values: Mapping[str, np.ndarray],
    valid: Mapping[str, np.ndarray],
    *,
    stride: int,
    thresholds: PairThresholds,
) -> dict[str, PairCounts]:
    """:func:`count_pairs` on the grid points of one image.

    Args:
        values: per task, the dense map: depth (H, W), normals (H, W, 3), semseg (H, W).
        valid: per task, bool (H, W) validity (from the ground truth).
        stride, thresholds: the grid step in pixels; see :class:`PairThresholds`.
    """
    hw = next(iter(values.values())).shape[:2]
    rows, cols = grid_indices(hw, stride)
    grid = np.ix_(rows, cols)
    points = {t: v[grid].reshape(len(rows) * len(cols), *v.shape[2:]) for t, v in values.items()}  # (N, ...)
    masks = {t: valid[t][grid].reshape(-1) for t in values}  # (N,)
    return count_pairs(points, masks, thresholds)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den > 0 else None


def ratios(both: int, a: int, b: int) -> dict[str, float | None]:
    """Jaccard |A∩B| / |A∪B| and the conditionals |A∩B| / |B| (a_given_b), |A∩B| / |A| (b_given_a)."""
    return {"jaccard": _ratio(both, a + b - both), "a_given_b": _ratio(both, b), "b_given_a": _ratio(both, a)}


def _mean(items: list[float | None]) -> float | None:
    kept = [x for x in items if x is not None]
    return float(np.mean(kept)) if kept else None


def summarize(per_image: Sequence[Mapping[str, PairCounts]]) -> dict[str, dict[str, Any]]:
    """The result's ``pairs`` section: pooled counts and ratios plus the mean of per-image ratios."""
    keys = [k for k in (pair_key(a, b) for a, b in combinations(TASKS, 2)) if any(k in c for c in per_image)]
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        images = [c[key] for c in per_image if key in c]
        total = sum(images, PairCounts())
        entry: dict[str, Any] = {}
        for kind in ("similar", "dissimilar"):
            a, b, both = (getattr(total, f"{kind}_{s}") for s in ("a", "b", "both"))
            singles = [ratios(*(getattr(c, f"{kind}_{s}") for s in ("both", "a", "b"))) for c in images]
            entry[kind] = {
                "count_a": a,
                "count_b": b,
                "count_both": both,
                **ratios(both, a, b),
                "per_image_mean": {r: _mean([s[r] for s in singles]) for r in ("jaccard", "a_given_b", "b_given_a")},
            }
        entry["pairs_considered"] = total.pairs
        entry["images"] = len(images)
        out[key] = entry
    return out


# --------------------------------------------------------------------------------------------------
# Predictions written by ``tridense predict`` / ``tridense evaluate --save``
# --------------------------------------------------------------------------------------------------
def prediction_stem(meta: Mapping[str, Any]) -> str:
    """The file stem under which predictions of a sample are saved: meta["name"] with "/" -> "_"."""
    return str(meta["name"]).replace("/", "_")


def read_prediction(folder: Path, stem: str, task: str, hw: tuple[int, int], valid: np.ndarray) -> np.ndarray:
    """Read one prediction (``<stem>_depth.npy``, ``<stem>_normals.npy`` or ``<stem>_semseg.png``) and check
    its size against the ground truth and its values where the ground truth is valid."""
    if task == "depth":
        path = folder / f"{stem}_depth.npy"
        pred = read_npy(path, shape_ndim=2, what="depth prediction")
    elif task == "normals":
        path = folder / f"{stem}_normals.npy"
        pred = read_npy(path, shape_ndim=3, what="normals prediction")
        if pred.shape[2] != 3:
            raise DataError(f"normals prediction must be (H, W, 3), got shape {pred.shape}", path)
    else:
        path = folder / f"{stem}_semseg.png"
        pred = read_label_png(path)
    if tuple(pred.shape[:2]) != tuple(hw):
        raise DataError(
            f"{task} prediction has size {tuple(pred.shape[:2])}, "
            f"expected the ground-truth size {tuple(hw)}; "
            "save predictions at the dataset's native resolution",
            path,
        )
    if task == "depth":
        bad = ~(np.isfinite(pred) & (pred > 0)) & valid
        if bad.any():
            raise DataError(f"depth prediction has {int(bad.sum())} values that are not finite and > 0", path)
    elif task == "normals":
        bad = ~(np.isfinite(pred).all(-1) & (pred != 0).any(-1)) & valid
        if bad.any():
            raise DataError(f"normals prediction has {int(bad.sum())} zero-length or non-finite vectors", path)
    return pred


# --------------------------------------------------------------------------------------------------
def _pair_tasks(ds: DenseDataset, dataset: str, root: str | Path | None) -> list[str]:
    """The tasks of :data:`TASKS` the dataset has ground truth for; a DataError unless at least two."""
    tasks = [t for t in TASKS if t in ds.tasks]
    if len(tasks) < 2:
        raise DataError(
            f"{dataset}: the pair statistic needs at least two tasks with ground truth, "
            f"this dataset has {tasks}"
            " (nyuv2_folder and similar loaders read normals only when a normals/ folder exists: "
            "see `tridense prepare normals`)",
            root,
        )
    return tasks


def _sample_counts(
    raw: Mapping[str, Any], tasks: Sequence[str], folder: Path | None, *, stride: int, thresholds: PairThresholds
) -> dict[str, PairCounts]:
    """:func:`image_pair_counts` of one raw sample: on its ground truth, or on its saved predictions in
    ``folder`` (validity from the ground truth); ``{}`` when it has none of the tasks."""
    present = [t for t in tasks if raw.get(t) is not None]  # a mixed dataset may lack a task here
    hw = raw["image"].shape[:2]
    valid = {t: valid_mask(t, raw[t]) for t in present}
    if folder is None:
        values = {t: raw[t] for t in present}
    else:
        stem = prediction_stem(raw["meta"])
        values = {t: read_prediction(folder, stem, t, hw, valid[t]) for t in present}
    return image_pair_counts(values, valid, stride=stride, thresholds=thresholds) if values else {}


def _rules(thresholds: PairThresholds) -> dict[str, str]:
    """The similarity rules in words, for the result's settings."""
    return {
        "depth": f"similar if |d_i-d_j|/max(d_i,d_j) < {thresholds.depth}, dissimilar if >= it",
        "normals": f"similar if angle < {thresholds.normal_similar_deg} deg, dissimilar if angle >= "
        f"{thresholds.normal_dissimilar_deg} deg, else neither",
        "semseg": "similar if equal labels, dissimilar if different",
        "ratios": "jaccard |A&B|/|A or B|, a_given_b |A&B|/|B|, b_given_a |A&B|/|A|, pooled over images",
    }


def run_pairs(
    dataset: str,
    root: str | Path | None,
    *,
    split: str = "test",
    predictions_dir: str | Path | None = None,
    stride: int = 16,
    depth_threshold: float = 0.2,
    normal_similar_deg: float = 26.0,
    normal_dissimilar_deg: float = 40.0,
    limit: int | None = None,
    dataset_args: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The statistic of PAP's Fig. 1 on a data set's ground truth or on saved predictions.

    The command line (``tridense analyze pairs``) maps its arguments one to one::

        --dataset NAME             dataset    a name of tridense.data.registry (tridense info)
        --root DIR                 root
        --split test               split      the split name of that dataset (nyuv2_mtan: val)
        --predictions DIR          predictions_dir   files of `tridense predict` / `evaluate --save`
        --stride 16                stride     grid step in pixels
        --depth-threshold 0.2      depth_threshold
        --normal-similar 26        normal_similar_deg
        --normal-dissimilar 40     normal_dissimilar_deg
        --limit N                  limit      first N samples only
        --set key=value ...        dataset_args (e.g. label_set=13)
        --json OUT                 the returned dict, written with tridense.data.io.write_json

    Args:
        dataset, root, split, dataset_args: passed to :func:`tridense.data.registry.build_dataset`.
        predictions_dir: take the task values from ``<stem>_depth.npy`` (metres), ``<stem>_normals.npy``
            ((H, W, 3) camera frame) and ``<stem>_semseg.png`` (class ids) with stem = meta["name"] with "/"
            replaced by "_"; validity still comes from the ground truth. Sizes must equal the ground truth's.
        stride, depth_threshold, normal_similar_deg, normal_dissimilar_deg: see the module docstring.
        limit: analyse only the first ``limit`` samples.
        progress: called with (done, total) after each image.

    Returns:
        {"settings": {...}, "images": n, "pairs": {"depth-normals": {"similar": {count_a, count_b,
        count_both, jaccard, a_given_b, b_given_a, per_image_mean}, "dissimilar": {...},
        "pairs_considered": int, "images": int}, "depth-semseg": ..., "normals-semseg": ...}}
    """
    from tridense.data.registry import build_dataset

    thresholds = PairThresholds(depth_threshold, normal_similar_deg, normal_dissimilar_deg)
    grid_indices((1, 1), stride)  # checks the stride before any file is read
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of samples, got {limit}")
    ds = build_dataset(dataset, root, split, **dict(dataset_args or {}))
    tasks = _pair_tasks(ds, dataset, root)
    folder = require_dir(predictions_dir, "predictions folder") if predictions_dir is not None else None
    total = len(ds) if limit is None else min(limit, len(ds))
    per_image = []
    for index in range(total):
        raw = ds.load_raw(index)
        per_image.append(_sample_counts(raw, tasks, folder, stride=stride, thresholds=thresholds))
        if progress is not None:
            progress(index + 1, total)
    settings = {
        "dataset": dataset,
        "root": None if root is None else str(root),
        "split": split,
        "dataset_args": dict(dataset_args or {}),
        "source": "predictions" if folder is not None else "ground truth",
        "predictions": None if folder is None else str(folder),
        "tasks": tasks,
        "stride": stride,
        "limit": limit,
        "depth_threshold": thresholds.depth,
        "normal_similar_deg": thresholds.normal_similar_deg,
        "normal_dissimilar_deg": thresholds.normal_dissimilar_deg,
        "rules": _rules(thresholds),
    }
    return {"settings": settings, "images": total, "pairs": summarize(per_image)}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100.0 * x:5.1f}"


def format_pairs_table(result: Mapping[str, Any]) -> str:
    """A plain-text table of :func:`run_pairs`'s result (ratios in percent, pooled over the images)."""
    s = result["settings"]
    lines = [
        f"{s['dataset']} {s['split']} ({s['source']}): {result['images']} images, stride {s['stride']}, "
        f"depth rel < {s['depth_threshold']}, normals < {s['normal_similar_deg']} / >= "
        f"{s['normal_dissimilar_deg']} deg",
        f"{'pair A-B':<16}{'kind':<12}{'|A|':>11}{'|B|':>11}{'|A&B|':>11}{'pairs':>12}"
        f"{'Jacc%':>8}{'A|B%':>8}{'B|A%':>8}",
    ]
    for key, entry in result["pairs"].items():
        for kind in ("similar", "dissimilar"):
            e = entry[kind]
            lines.append(
                f"{key:<16}{kind:<12}{e['count_a']:>11}{e['count_b']:>11}{e['count_both']:>11}"
                f"{entry['pairs_considered']:>12}{_pct(e['jaccard']):>8}{_pct(e['a_given_b']):>8}"
                f"{_pct(e['b_given_a']):>8}"
            )
    lines.append("A|B = |A&B|/|B| (share of B's pairs also in A), B|A = |A&B|/|A|; Jacc = |A&B|/|A or B|")
    return "\n".join(lines)
