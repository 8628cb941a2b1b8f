"""The dense tasks in one table: output channels, activation, invalid value, flip rule, loss, score metric.

``TASK_SPECS[task]`` is what any module needs to know about a task; code loops over :data:`TASKS` (the
ordered names of the sample contract, :data:`tridense.data.sample.TASKS`) and looks the rest up here
instead of writing the task names or ``if task == "depth"`` chains out again.

:func:`task_maps` gives the prediction and the ground truth of any task as (B, C, H, W) float maps in one
comparable space (depth in metres or log-metres with its mask, unit normals, class probabilities against
one-hot labels), for losses and analyses that compare structure across tasks (PAP's pair-wise loss, ASM).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from tridense.data.sample import IGNORE_INDEX, INVALID_VALUE, TASKS
from tridense.errors import ConfigError
from tridense.ops import unit_vectors

#: Lower bound of predicted depth in metres (the softplus offset) unless a model sets its own.
MIN_DEPTH = 1e-3


def _depth_activation(raw: Tensor, *, min_depth: float = MIN_DEPTH) -> Tensor:
    return F.softplus(raw) + min_depth


def _normals_activation(raw: Tensor, *, min_depth: float = MIN_DEPTH) -> Tensor:
    return unit_vectors(raw)


def _logits(raw: Tensor, *, min_depth: float = MIN_DEPTH) -> Tensor:
    return raw


def _flip_plain(x: Tensor) -> Tensor:
    return x.flip(-1)


def _flip_normals(x: Tensor) -> Tensor:
    """Mirror a (..., 3, H, W) normal map left-right: the map flipped and n_x negated."""
    out = x.flip(-1).clone()
    out[..., 0, :, :] = -out[..., 0, :, :]
    return out


@dataclass(frozen=True)
class TaskSpec:
    """Everything task-specific that is not a model or a loss formula.

    Attributes:
        name: the task key in samples, batches and model outputs.
        fixed_channels: output channels of a prediction; None when it is the number of classes.
        activation: raw head output -> the model contract (``activation(raw, min_depth=...)``).
        invalid: the ground-truth value that marks "no ground truth" (0 depth, zero normal, 255 label).
        flip: mirrors a ground-truth map left-right (maps of any leading shape, width last).
        default_loss: the name of the task's default loss (``loss.<task>`` of a config).
        score: (metric key, scale) whose mean over the tasks is ``val/score`` (all higher-is-better).
        start_bias: bias of a fresh head's last convolution (raw units), or None for the default
            initialisation; depth starts at 2.5 m (softplus^-1), so training does not begin far off scale.
    """

    name: str
    fixed_channels: int | None
    activation: Callable[..., Tensor]
    invalid: float | int
    flip: Callable[[Tensor], Tensor]
    default_loss: str
    score: tuple[str, float]
    start_bias: float | None = None

    def channels(self, num_classes: int | None = None) -> int:
        """Output channels of the task's prediction (segmentation: ``num_classes``, which must be > 0)."""
        if self.fixed_channels is not None:
            return self.fixed_channels
        if not num_classes or num_classes < 1:
            raise ConfigError(f"a model that predicts {self.name} needs num_classes > 0, got {num_classes!r}")
        return int(num_classes)


TASK_SPECS: dict[str, TaskSpec] = {
    "depth": TaskSpec(
        "depth",
        1,
        _depth_activation,
        INVALID_VALUE["depth"],
        _flip_plain,
        "berhu",
        ("delta1", 1.0),
        start_bias=math.log(math.expm1(2.5)),
    ),
    "normals": TaskSpec(
        "normals", 3, _normals_activation, INVALID_VALUE["normals"], _flip_normals, "l1", ("within_22.5", 0.01)
    ),
    "semseg": TaskSpec("semseg", None, _logits, IGNORE_INDEX, _flip_plain, "ce", ("miou", 1.0)),
}


def task_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``task``; ConfigError listing the tasks if it is not one."""
    if task not in TASK_SPECS:
        raise ConfigError(f"unknown task {task!r}; valid: {list(TASKS)}")
    return TASK_SPECS[task]


def check_tasks(tasks: Any) -> tuple[str, ...]:
    """``tasks`` as a tuple: a non-empty subset of :data:`TASKS` without repeats, else ConfigError."""
    names = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    unknown = [t for t in names if t not in TASK_SPECS]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"tasks must be a non-empty subset of {list(TASKS)} without repeats, got {list(names)}")
    return names


def activate(task: str, raw: Tensor, *, min_depth: float = MIN_DEPTH) -> Tensor:
    """Map a raw head output to the model contract (depth > 0 in metres, unit normals, logits), in float32.

    Outputs are float32 even under bf16 / fp16 autocast (the losses and metrics need the precision).
    """
    return task_spec(task).activation(raw.float(), min_depth=min_depth)


# ------------------------------------------------------------------------------------------ comparable space
Space = Literal["metric", "log"]


def task_maps(
    task: str,
    outputs_or_pred: Mapping[str, Any] | Tensor,
    batch: Mapping[str, Any],
    *,
    space: Space = "metric",
    binarize: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Prediction and ground truth of ``task`` as (B, C, H, W) float maps in one space, and where they count.

    The prediction is resized bilinearly to the ground truth's size first.

    * depth: metres (``space="log"``: natural log of metres; invalid pixels of the ground truth are 0);
    * normals: unit vectors (the prediction renormalised);
    * semseg: softmax class probabilities against the one-hot labels (``binarize=True``: the one-hot of
      the prediction's arg-max); ignored labels give a zero one-hot vector.

    Args:
        task: ``depth``, ``normals`` or ``semseg``.
        outputs_or_pred: model outputs (the task's entry is used) or the task's prediction itself.
        batch: a collated batch with the task's ground truth (and optionally ``has_<task>``).
        space: ``"metric"`` or ``"log"`` (depth only).
        binarize: one-hot arg-max prediction for semseg.

    Returns:
        ``(pred, target, valid)``: (B, C, H, W), (B, C, H, W) and (B, H, W) bool, where ``valid`` is the
        ground truth's validity (and the sample's ``has_<task>`` flag).
    """
    # Imported here: the losses package imports this module (its pair-wise loss uses this helper).
    from tridense.losses.functional import match_size
    from tridense.losses.multitask import depth_mask, normals_mask, semseg_target

    task_spec(task)
    if space not in ("metric", "log"):
        raise ConfigError(f"space must be 'metric' or 'log', got {space!r}")
    pred = outputs_or_pred[task] if isinstance(outputs_or_pred, Mapping) else outputs_or_pred
    if task == "semseg":
        labels = semseg_target(batch)
        logits = match_size(pred, labels)
        classes = logits.shape[1]
        valid = labels != IGNORE_INDEX
        if binarize:
            prob = F.one_hot(logits.argmax(dim=1), classes).permute(0, 3, 1, 2).to(logits.dtype)  # (B, C, H, W)
        else:
            prob = logits.softmax(dim=1)
        target = F.one_hot(torch.where(valid, labels, 0), classes).permute(0, 3, 1, 2).to(prob.dtype)
        return prob, target * valid[:, None], valid
    target = batch[task]
    pred = match_size(pred, target)
    if task == "normals":
        return unit_vectors(pred), target, normals_mask(batch)[:, 0]
    valid = depth_mask(batch)[:, 0]
    if space == "log":
        pred = pred.clamp_min(MIN_DEPTH).log()
        target = torch.where(valid[:, None], target.clamp_min(MIN_DEPTH).log(), torch.zeros_like(target))
    return pred, target, valid
