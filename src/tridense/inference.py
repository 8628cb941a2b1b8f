"""Running a trained model on images: input preparation, test-time flip averaging, output resizing.

Shared by ``tridense evaluate``, ``tridense predict`` and the analyses. Images are resized to the model's
input size (the training ``data.size``), predictions are resized back to the size asked for (bilinear;
normals renormalised; segmentation logits before the arg-max).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tridense.data.intrinsics import nyu_focal
from tridense.data.sample import IMAGENET_MEAN, IMAGENET_STD
from tridense.layers.blocks import upsample_to
from tridense.ops import unit_vectors
from tridense.tasks import TASK_SPECS, TASKS

TASK_KEYS = TASKS


def model_inputs(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch entries ``model`` reads besides the image: the keys of its ``batch_inputs`` present in ``batch``.

    A model that needs more than the image (GAD: ``hha``, ``has_depth``) names them in ``batch_inputs``; every
    caller runs ``model(image, **model_inputs(model, batch))``.
    """
    return {k: batch[k] for k in getattr(model, "batch_inputs", ()) if k in batch}


def prepare_image(image: np.ndarray | torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 (H, W, 3) or float (3, H, W) in [0, 1] -> normalised (1, 3, h, w) at ``size``."""
    if isinstance(image, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    else:
        x = image.float()
    x = x[None]
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _flip_back(outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo a horizontal flip of the input on the task outputs (mirror; n_x changes sign)."""
    return {task: TASK_SPECS[task].flip(outputs[task]) for task in TASK_KEYS if task in outputs}


@torch.no_grad()
def predict_batch(
    model: nn.Module,
    image: torch.Tensor,
    *,
    out_size: tuple[int, int] | None = None,
    flip: bool = False,
    inputs: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Task outputs for a normalised image batch, optionally averaged with the flipped input's, resized to
    ``out_size`` (default: the input size). Depth is averaged in metres, normals as vectors then
    renormalised, segmentation as probabilities (returned as log-probabilities when flipping).

    ``inputs``: the model's extra inputs (:func:`model_inputs`), image-shaped ones (B, C, H, W) at the image's
    size (flipped with it).
    """
    device = next(model.parameters()).device
    image = image.to(device)
    extra = {k: v.to(device) for k, v in (inputs or {}).items()}
    outputs = {k: v.float() for k, v in model(image, **extra).items() if k in TASK_KEYS}
    if flip:
        flipped = {k: v.flip(-1) if v.dim() == 4 else v for k, v in extra.items()}
        mirrored = _flip_back(
            {k: v.float() for k, v in model(image.flip(-1), **flipped).items() if k in TASK_KEYS}
        )
        for task in outputs:
            if task == "semseg":
                outputs[task] = torch.log((outputs[task].softmax(1) + mirrored[task].softmax(1)) / 2 + 1e-12)
            else:
                outputs[task] = (outputs[task] + mirrored[task]) / 2
    return resize_outputs(outputs, out_size or tuple(image.shape[-2:]))


def resize_outputs(outputs: Mapping[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Task outputs (B, C, h, w) resized to ``size`` (bilinear; normals renormalised, depth kept positive)."""
    resized = {}
    for task, x in outputs.items():
        x = upsample_to(x, tuple(size))
        if task == "normals":
            x = unit_vectors(x)
        if task == "depth":
            x = x.clamp_min(1e-6)
        resized[task] = x
    return resized


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image of ``from_size`` (H, W) for the same view resampled to ``to_size``."""
    K = np.array(K, dtype=np.float64)
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    K[0, 0], K[1, 1] = K[0, 0] * sx, K[1, 1] * sy
    K[0, 2], K[1, 2] = (K[0, 2] + 0.5) * sx - 0.5, (K[1, 2] + 0.5) * sy - 0.5
    return K.astype(np.float32)


def model_input_size(info: Mapping[str, Any], override: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The input size a model was trained at (``data.size``), unless overridden."""
    if override is not None:
        return tuple(override)
    size = info.get("input_size")
    return tuple(size) if size else None


def intrinsics_for(info: Mapping[str, Any], size: tuple[int, int]) -> np.ndarray:
    """The training camera's intrinsics scaled to an image of ``size`` (an assumption for user images)."""
    K_train = info.get("K")
    train_size = info.get("input_size")
    h, w = size
    if K_train is None or train_size is None:
        f = nyu_focal(w)  # NYU's field of view
        return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], dtype=np.float32)
    K = np.array(K_train, dtype=np.float64)
    sx, sy = w / train_size[1], h / train_size[0]
    K[0, 0], K[1, 1] = K[0, 0] * sx, K[1, 1] * sy
    K[0, 2], K[1, 2] = (K[0, 2] + 0.5) * sx - 0.5, (K[1, 2] + 0.5) * sy - 0.5
    return K.astype(np.float32)


def working_size(info: Mapping[str, Any], image_size: tuple[int, int], multiple: int = 16) -> tuple[int, int] | None:
    """The model input size for an image: the training size's pixel count at the image's aspect ratio,
    each side a multiple of ``multiple``; an image within 10 % of the training aspect gets the training size
    (a 4:3 photo at a 96x128-trained model: 96x128, whatever its resolution; a 375x1242 KITTI frame:
    64x208)."""
    train = model_input_size(info)
    if train is None:
        return None
    h, w = image_size
    if abs((h / w) / (train[0] / train[1]) - 1) < 0.1:  # (nearly) the training aspect: the training size
        return tuple(train)
    area = train[0] * train[1]
    height = (area * h / w) ** 0.5  # keeps h / w and the area
    rows = max(multiple, round(height / multiple) * multiple)
    cols = max(multiple, round(height * w / h / multiple) * multiple)
    return rows, cols


def synthetic_only_note(info: Mapping[str, Any], *, images_are_real: bool) -> str | None:
    """A note, once per command, when a model trained only on synthetic scenes meets real images."""
    config = info.get("config") or {}
    initialised = (config.get("init") or {}).get("checkpoint")
    if not images_are_real or info.get("dataset") != "synthetic" or initialised:
        return None
    return (
        "note: this model was trained only on synthetic rooms (data.dataset=synthetic); on real photos its "
        "depth, normals and segmentation are not meaningful. For real images train on a real dataset from a "
        "pretrained encoder (model.pretrained=..., data.dataset=nyuv2_labeled data.root=DIR, the configs under "
        "configs/pap/, configs/gad/, configs/asm/; docs/reproduce.md)."
    )
