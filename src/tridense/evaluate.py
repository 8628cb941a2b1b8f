"""``tridense evaluate``: metrics of a trained model on a dataset split, with the papers' test-time options.

Protocol: each image is resized to the model's input size, the predictions (optionally averaged with those
of the mirrored image) are resized back to the ground truth's own resolution (``resize="pred"``, the
standard protocol) or the ground truth is resized to the prediction (``resize="gt"``, nearest for depth and
labels), then the metrics of :mod:`tridense.metrics` are computed over the whole split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from tridense.data.base import DenseDataset
from tridense.data.sample import TASKS, collate
from tridense.data.transforms import resize_sample
from tridense.errors import ConfigError
from tridense.inference import predict_batch, prepare_image
from tridense.metrics.multitask import TaskMetrics
from tridense.predict import output_files, write_prediction

RESIZE_POLICIES = ("pred", "gt")


def evaluate(
    model: nn.Module,
    dataset: DenseDataset,
    *,
    tasks: Sequence[str],
    input_size: tuple[int, int] | None,
    flip: bool = False,
    resize: str = "pred",
    crop: str | None = None,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    reduction: str = "image",
    kitti: bool = False,
    batch_size: int = 1,
    num_workers: int = 0,
    limit: int | None = None,
    save_dir: str | Path | None = None,
    palette: np.ndarray | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on every sample of ``dataset`` (built without transforms: native resolution).

    Returns {task: {metric: value}} plus ``_meta`` (samples, seconds, settings).
    """
    if resize not in RESIZE_POLICIES:
        raise ConfigError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
    tasks = [t for t in tasks if t in dataset.tasks]
    if not tasks:
        raise ConfigError(f"the model's tasks and the dataset's tasks {list(dataset.tasks)} do not overlap")
    metrics = TaskMetrics(
        tasks,
        num_classes=dataset.num_classes,
        min_depth=min_depth,
        max_depth=max_depth,
        crop=crop,
        reduction=reduction,
        kitti=kitti,
    )
    subset = dataset if limit is None else torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    loader = DataLoader(subset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    started, seen = time.time(), 0
    for batch in loader:
        image = batch["image"]  # (B, 3, H, W) in [0, 1], the ground truth's resolution
        h, w = image.shape[-2:]
        x = torch.cat([prepare_image(im, input_size) for im in image])
        if resize == "pred":
            outputs = predict_batch(model, x, out_size=(h, w), flip=flip)
            target = batch
        else:
            outputs = predict_batch(model, x, flip=flip)
            size = tuple(outputs[tasks[0]].shape[-2:])
            target = collate([resize_sample(_sample(batch, i), size) for i in range(image.shape[0])])
        metrics.update({k: v.cpu() for k, v in outputs.items()}, target)
        if save_dir is not None:
            _save(save_dir, batch, outputs, palette, overwrite)
        seen += image.shape[0]
        if progress is not None:
            progress(seen, len(subset))
    results = metrics.compute()
    results["_meta"] = {
        "samples": seen,
        "seconds": round(time.time() - started, 2),
        "flip": flip,
        "resize": resize,
        "crop": crop,
        "min_depth": min_depth,
        "max_depth": max_depth,
        "reduction": reduction,
        "input_size": list(input_size) if input_size else None,
    }
    return results


def _sample(batch: Mapping[str, Any], i: int) -> dict[str, Any]:
    """Sample ``i`` of a collated batch, without the tasks it lacks."""
    sample: dict[str, Any] = {"image": batch["image"][i], "meta": batch["meta"][i]}
    for key in (*TASKS, "instances"):
        if key in batch and bool(batch.get(f"has_{key}", torch.ones(len(batch["image"]), dtype=torch.bool))[i]):
            sample[key] = batch[key][i]
    if "K" in batch:
        sample["K"] = batch["K"][i]
    return sample


def _save(
    save_dir: str | Path,
    batch: Mapping[str, Any],
    outputs: Mapping[str, torch.Tensor],
    palette: np.ndarray | None,
    overwrite: bool,
) -> None:
    save_dir = Path(save_dir)
    for i, meta in enumerate(batch["meta"]):
        stem = str(meta.get("name", i)).replace("/", "_")
        rgb = (batch["image"][i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        files = output_files(save_dir, stem, outputs.keys(), point_cloud=False)
        K = batch["K"][i].numpy() if "K" in batch else np.eye(3, dtype=np.float32)
        write_prediction(
            files, rgb, {k: v[i : i + 1] for k, v in outputs.items()}, K=K, palette=palette, overwrite=overwrite
        )
