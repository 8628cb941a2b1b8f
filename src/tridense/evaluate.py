"""``tridense evaluate``: metrics of a trained model on a dataset split, with the papers' test-time options.

Protocol: each image is resized to the model's input size, the predictions (optionally averaged with those
of the mirrored image) are resized back to the ground truth's own resolution (``resize="pred"``, the
standard protocol) or the ground truth is resized to the prediction (``resize="gt"``, nearest for depth and
labels), then the metrics of :mod:`tridense.metrics` are computed over the whole split. A named evaluation
``protocol`` (:mod:`tridense.metrics.protocols`) fixes the metric conventions; the result records it.
With ``predictions=DIR`` no model runs: the predictions another system saved (``NAME_depth.npy`` or
``NAME_depth.png`` in mm, ``NAME_normals.npy``, ``NAME_semseg.png``, as ``tridense predict`` writes them)
are scored against the dataset's ground truth.
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
from tridense.data.hha import AddHHA
from tridense.data.io import read_depth_png, read_label_png, read_npy
from tridense.data.sample import TASKS, collate
from tridense.data.transforms import resize_sample
from tridense.errors import ConfigError, DataError
from tridense.inference import predict_batch, prepare_image
from tridense.metrics.analyses import AnalysisMetrics
from tridense.metrics.multitask import TaskMetrics
from tridense.predict import output_files, write_prediction

RESIZE_POLICIES = ("pred", "gt")


def _predict(
    model: nn.Module,
    batch: Mapping[str, Any],
    first_task: str,
    *,
    input_size: tuple[int, int] | None,
    flip: bool,
    resize: str,
) -> tuple[dict[str, torch.Tensor], Mapping[str, Any]]:
    """The model's outputs for ``batch`` and the ground truth to score them against: the batch itself with
    ``resize="pred"`` (outputs at its resolution), else the batch resized to the outputs (of ``first_task``)."""
    image = batch["image"]  # (B, 3, H, W) in [0, 1], the ground truth's resolution
    x = torch.cat([prepare_image(im, input_size) for im in image])
    inputs = _model_inputs(model, batch, x)  # e.g. GAD's HHA stream
    if resize == "pred":
        return predict_batch(model, x, out_size=tuple(image.shape[-2:]), flip=flip, inputs=inputs), batch
    outputs = predict_batch(model, x, flip=flip, inputs=inputs)
    size = tuple(outputs[first_task].shape[-2:])
    return outputs, collate([resize_sample(_sample(batch, i), size) for i in range(image.shape[0])])


def _evaluated_tasks(
    tasks: Sequence[str],
    dataset: DenseDataset,
    *,
    model: nn.Module | None,
    predictions: str | Path | None,
    resize: str,
) -> list[str]:
    """The ``tasks`` the dataset has ground truth for, after checking :func:`evaluate`'s arguments."""
    if resize not in RESIZE_POLICIES:
        raise ConfigError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
    if (model is None) == (predictions is None):
        raise ConfigError("evaluate needs either a model or a predictions folder, not both")
    tasks = [t for t in tasks if t in dataset.tasks]
    if not tasks:
        raise ConfigError(f"the model's tasks and the dataset's tasks {list(dataset.tasks)} do not overlap")
    return tasks


def evaluate(
    model: nn.Module | None,
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
    protocol: str | None = None,
    predictions: str | Path | None = None,
    analyses: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate ``model`` (or the saved ``predictions``) on every sample of ``dataset`` (native resolution).

    ``analyses`` adds the ASM paper's evaluations (:mod:`tridense.metrics.analyses`: ``boundary``,
    ``instance``, ``background``) under their own keys.

    Returns {task: {metric: value}} plus ``_meta`` (samples, seconds, settings, ``protocol`` and its
    settings).
    """
    tasks = _evaluated_tasks(tasks, dataset, model=model, predictions=predictions, resize=resize)
    metrics = TaskMetrics(
        tasks,
        num_classes=dataset.num_classes,
        min_depth=min_depth,
        max_depth=max_depth,
        crop=crop,
        reduction=reduction,
        kitti=kitti,
        protocol=protocol,
    )
    scorers: list[TaskMetrics | AnalysisMetrics] = [metrics]
    if analyses:
        scorers.append(AnalysisMetrics(analyses, tasks, dataset.num_classes, min_depth=min_depth, max_depth=max_depth))
    subset = dataset if limit is None else torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    loader = DataLoader(subset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    started, seen = time.time(), 0
    for batch in loader:
        if predictions is not None:
            scored = sorted(set(metrics.sources.values()))
            outputs, target = _saved_predictions(predictions, batch, scored, dataset.num_classes), batch
        else:
            outputs, target = _predict(model, batch, tasks[0], input_size=input_size, flip=flip, resize=resize)
        for scorer in scorers:
            scorer.update({k: v.cpu() for k, v in outputs.items()}, target)
        if save_dir is not None and predictions is None:
            _save(save_dir, batch, outputs, palette, overwrite)
        seen += batch["image"].shape[0]
        if progress is not None:
            progress(seen, len(subset))
    results = metrics.compute()
    names = getattr(dataset, "class_names", None)
    if "semseg" in results and "iou" in results["semseg"] and names:
        results["semseg"]["classes"] = list(names)  # aligned with the per-class "iou"
    for extra in scorers[1:]:
        results.update(extra.compute())
    settings: dict[str, Any] = {"flip": flip, "resize": resize}
    if protocol is None:  # else the protocol's settings are the ones that applied
        settings.update(crop=crop, min_depth=min_depth, max_depth=max_depth, reduction=reduction)
    settings["input_size"] = list(input_size) if input_size else None
    results["_meta"] = {
        "protocol": metrics.protocol.name,
        "protocol_settings": metrics.protocol.to_dict(),
        "predictions": None if predictions is None else str(predictions),
        "samples": seen,
        "seconds": round(time.time() - started, 2),
        **settings,
    }
    return results


def _model_inputs(model: nn.Module, batch: Mapping[str, Any], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The extra inputs ``model`` reads (``batch_inputs``) for the network input ``x`` (B, 3, h, w): ``hha``
    computed from each sample's ground-truth depth resized to the input grid (the training pipeline's order;
    gravity from the dataset's camera tilt where it has one, else estimated)."""
    if "hha" not in getattr(model, "batch_inputs", ()):
        return {}
    size = tuple(x.shape[-2:])
    add = AddHHA(gravity="auto")
    return {"hha": torch.stack([add(resize_sample(_sample(batch, i), size))["hha"] for i in range(x.shape[0])])}


def class_iou_table(semseg: Mapping[str, Any]) -> str:
    """Markdown table of the per-class IoU (percent) of segmentation results with ``iou`` and ``classes``."""
    lines = ["| id | class | IoU (%) |", "|---|---|---|"]
    names = semseg.get("classes") or [str(i) for i in range(len(semseg["iou"]))]
    for i, (name, iou) in enumerate(zip(names, semseg["iou"], strict=True)):
        lines.append(f"| {i} | {name} | {100 * iou:.1f} |")
    return "\n".join(lines) + "\n"


def prediction_stem(meta: Mapping[str, Any], index: int) -> str:
    """File stem of a sample's saved predictions (its ``meta['name']`` with ``/`` replaced by ``_``)."""
    return str(meta.get("name", index)).replace("/", "_")


def _saved_predictions(
    folder: str | Path, batch: Mapping[str, Any], tasks: Sequence[str], num_classes: int | None
) -> dict[str, torch.Tensor]:
    """The saved predictions of a batch's samples, at the ground truth's size.

    A prediction of another size is resized as MTI-Net's ``eval_depth`` does (bilinear; normals then
    renormalised; labels nearest). A sample without the task's ground truth needs no file (zeros stand in;
    the metrics skip it).
    """
    folder = Path(folder)
    h, w = batch["image"].shape[-2:]
    maps: dict[str, list[torch.Tensor]] = {t: [] for t in tasks}
    for i, meta in enumerate(batch["meta"]):
        stem = prediction_stem(meta, i)
        for task in tasks:
            has = batch.get(f"has_{task}")
            if has is not None and not bool(has[i]):
                empty = torch.zeros(1, 3 if task == "normals" else 1, h, w)  # (1, C, h, w)
                maps[task].append(empty[:, 0].long() if task == "semseg" else empty)
                continue
            if task == "depth":
                npy, png = folder / f"{stem}_depth.npy", folder / f"{stem}_depth.png"
                if png.is_file() and not npy.is_file():
                    array = read_depth_png(png, 1000.0)  # uint16 millimetres
                else:
                    array = read_npy(npy, shape_ndim=2, what="depth prediction")
                x = torch.from_numpy(np.asarray(array, dtype=np.float32))[None, None]  # (1, 1, h, w)
            elif task == "normals":
                array = read_npy(folder / f"{stem}_normals.npy", shape_ndim=3, what="normal prediction")
                if array.shape[-1] != 3:
                    raise DataError(f"normal prediction must be (H, W, 3), got {array.shape}", folder / stem)
                x = torch.from_numpy(np.asarray(array, dtype=np.float32)).permute(2, 0, 1)[None]  # (1, 3, h, w)
            else:
                labels = read_label_png(folder / f"{stem}_semseg.png")
                if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
                    raise DataError(
                        f"predicted class ids {labels.min()}..{labels.max()} outside 0..{num_classes - 1} (the "
                        f"dataset's classes; shift 1-based ids and map 'unlabelled' to a class)",
                        folder / f"{stem}_semseg.png",
                    )
                x = torch.from_numpy(labels.astype(np.int64))[None, None].float()  # (1, 1, h, w)
            if tuple(x.shape[-2:]) != (h, w):
                if task == "semseg":
                    x = torch.nn.functional.interpolate(x, size=(h, w), mode="nearest")
                else:
                    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
                if task == "normals":
                    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            maps[task].append(x[:, 0].long() if task == "semseg" else x)
    return {task: torch.cat(values) for task, values in maps.items()}


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
        stem = prediction_stem(meta, i)
        rgb = (batch["image"][i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        files = output_files(save_dir, stem, outputs.keys(), point_cloud=False)
        K = batch["K"][i].numpy() if "K" in batch else np.eye(3, dtype=np.float32)
        write_prediction(
            files, rgb, {k: v[i : i + 1] for k, v in outputs.items()}, K=K, palette=palette, overwrite=overwrite
        )
