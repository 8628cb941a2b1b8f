"""ASM's analyses of the structure analyzer (Hwang et al., 2019, Figs. 3 and 4) for a trained ``adversarial``
checkpoint.

* **Layer-wise error maps** (Fig. 4): per analyzer layer l, the per-pixel structural distance
  d_l = Σ_c (f_a - f_b)^2 between the L2-normalised features of two task maps, upsampled to the image.
* **Reconstructions** (Fig. 3): the structure regularizer's output R(A(y)) for the prediction (and the
  ground truth), brought back to the task's space (class arg-max, exp of log-depth, unit normals).

With ground truth (a dataset sample) the error maps compare ground truth and prediction (what the predictor
is trained to remove) and both maps are reconstructed. With an image alone there is no ground truth: the
figure shows the prediction, its reconstruction, and the error maps between the prediction and its
reconstruction (where the analyzer's learned structure disagrees with the prediction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tridense.checkpoints import load_model, read_checkpoint
from tridense.data.sample import IGNORE_INDEX
from tridense.errors import ConfigError
from tridense.losses.asm import StructureMatching, layer_distances
from tridense.ops import unit_vectors
from tridense.viz import colorize_depth, colorize_labels, image_to_rgb, make_palette, normals_to_rgb, save_png

__all__ = ["load_structure_matching", "save_structure_figure", "structure_analysis", "structure_figure"]


def load_structure_matching(path: str | Path) -> tuple[nn.Module, StructureMatching, dict[str, Any]]:
    """The predictor, the trained analyzer (in its :class:`StructureMatching`) and the description of an
    ``adversarial`` checkpoint with ``adversary: asm``."""
    from tridense.training.methods.adversarial import AdversarialOptions, build_critic

    checkpoint = read_checkpoint(path)
    info = checkpoint.get("tridense") or {}
    method = (info.get("config") or {}).get("method") or {}
    options = AdversarialOptions(**(method.get("args") or {})) if method.get("name") == "adversarial" else None
    if options is None or options.adversary != "asm":
        raise ConfigError(
            f"{path}: not a checkpoint of the adversarial method with adversary 'asm' (method: {method or None}); "
            "the structure analysis needs the trained analyzer"
        )
    matching = build_critic(options, info["tasks"], info.get("num_classes"), None)
    assert isinstance(matching, StructureMatching)
    state = {k[len("critic.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("critic.")}
    matching.load_state_dict(state)
    matching.eval()
    model, info = load_model(path)
    return model, matching, info


def _pseudo_batch(tasks: tuple[str, ...], outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The prediction in ground-truth form (labels, metres, unit normals): the analyzer's reference without GT."""
    batch: dict[str, torch.Tensor] = {}
    for task in tasks:
        batch[task] = outputs[task].argmax(1) if task == "semseg" else outputs[task].detach()
    return batch


def _back_to_task(task: str, rec: torch.Tensor) -> torch.Tensor:
    """A reconstruction in the analyzer's space -> the task's space: class ids, metres, unit normals."""
    if task == "semseg":
        return rec.argmax(1)  # (B, H, W)
    if task == "depth":
        return rec.exp()[:, 0]  # log-depth -> metres, (B, H, W)
    return unit_vectors(rec, dim=1)


@torch.no_grad()
def structure_analysis(
    model: nn.Module,
    matching: StructureMatching,
    tasks: tuple[str, ...],
    image: torch.Tensor,
    targets: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Error maps and reconstructions for one normalised image (1, 3, H, W).

    Args:
        model: the predictor.
        matching: the trained analyzer in its objective (its ``layers`` and task order).
        tasks: the analyzer's tasks, in its input order.
        image: the network input.
        targets: ground truth per task in the sample contract (batch of 1), or None.

    Returns:
        ``prediction`` / ``target`` / ``reconstruction_prediction`` / ``reconstruction_target``: {task: map}
        (class ids, metres or normals, batch of 1; the target entries only with ``targets``);
        ``errors``: {layer: (H, W) distance map at the image size} for every analyzer layer;
        ``mean_errors``: {layer: mean distance}; ``reference``: ``ground truth`` or ``reconstruction``.
    """
    from tridense.training.methods.adversarial import structure_maps

    outputs = model(image)
    missing = [t for t in tasks if t not in outputs]
    if missing:
        raise ConfigError(f"the model predicts {sorted(outputs)}, the analyzer needs {list(tasks)}")
    size = image.shape[-2:]
    outputs = {t: F.interpolate(outputs[t].float(), size=size, mode="bilinear", align_corners=False) for t in tasks}
    if "normals" in outputs:
        outputs["normals"] = unit_vectors(outputs["normals"], dim=1)
    analyzer = matching.analyzer
    layers = analyzer.layer_names
    batch = dict(targets) if targets is not None else _pseudo_batch(tasks, outputs)
    maps = structure_maps(tasks, outputs, batch)
    channels = [m.shape[1] for m in maps.pred]
    pred_out = analyzer(maps.pred, maps.valid, layers=layers, reconstruct=True)
    rec_pred = torch.split(pred_out.reconstruction, channels, dim=1)
    result: dict[str, Any] = {
        "prediction": {t: (outputs[t].argmax(1) if t == "semseg" else outputs[t]) for t in tasks},
        "reconstruction_prediction": {t: _back_to_task(t, r) for t, r in zip(tasks, rec_pred, strict=True)},
    }
    if targets is not None:
        ref = analyzer(maps.target, maps.valid, layers=layers, reconstruct=True)
        rec_gt = torch.split(ref.reconstruction, channels, dim=1)
        result["target"] = {t: targets[t] for t in tasks}
        result["reconstruction_target"] = {t: _back_to_task(t, r) for t, r in zip(tasks, rec_gt, strict=True)}
        result["reference"] = "ground truth"
    else:
        rec_maps = [F.softmax(r, dim=1) if t == "semseg" else r for t, r in zip(tasks, rec_pred, strict=True)]
        rec_maps = [unit_vectors(r, dim=1) if t == "normals" else r for t, r in zip(tasks, rec_maps, strict=True)]
        ref = analyzer(rec_maps, maps.valid, layers=layers, reconstruct=False)
        result["reference"] = "reconstruction"
    distances = layer_distances(ref.features, pred_out.features, layers)
    result["errors"] = {
        n: F.interpolate(d[:, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        for n, d in distances.items()
    }  # (H, W) per layer
    result["mean_errors"] = {n: float(d.mean()) for n, d in distances.items()}
    return result


def _task_rgb(
    task: str, value: torch.Tensor, palette: np.ndarray, depth_range: tuple[float, float] | None
) -> np.ndarray:
    x = value[0].cpu()
    if task == "semseg":
        return colorize_labels(x.numpy(), palette, IGNORE_INDEX)
    if task == "depth":
        d = x[0] if x.ndim == 3 else x
        lo, hi = depth_range if depth_range else (None, None)
        return colorize_depth(d.numpy(), vmin=lo, vmax=hi)
    return normals_to_rgb(x.numpy())


def structure_figure(result: dict[str, Any], image: torch.Tensor, num_classes: int | None = None) -> np.ndarray:
    """The analysis as one uint8 picture: a row per task (input, prediction, its reconstruction[, ground truth,
    its reconstruction]) and a row of the layer-wise error maps (shared colour scale, titled with their means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(result["prediction"])
    palette = make_palette(max(num_classes or 0, 2))
    columns = [("prediction", "prediction"), ("reconstruction_prediction", "R(A(prediction))")]
    if "target" in result:
        columns += [("target", "ground truth"), ("reconstruction_target", "R(A(ground truth))")]
    layers = list(result["errors"])
    ncols = max(1 + len(columns), len(layers))
    fig, axes = plt.subplots(len(tasks) + 1, ncols, figsize=(2.6 * ncols, 2.5 * (len(tasks) + 1)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    rgb = image_to_rgb(image[0].cpu(), True)
    for row, task in enumerate(tasks):
        depth_range = None
        if task == "depth":
            ref = result.get("target", result["prediction"])["depth"]
            valid = ref[ref > 0]
            depth_range = (float(valid.min()), float(valid.max())) if valid.numel() else None
        axes[row, 0].imshow(rgb)
        axes[row, 0].set_title(f"input ({task})", fontsize=8)
        for col, (key, title) in enumerate(columns, start=1):
            axes[row, col].imshow(_task_rgb(task, result[key][task], palette, depth_range))
            axes[row, col].set_title(title, fontsize=8)
    vmax = max(float(e.max()) for e in result["errors"].values()) or 1.0
    reference = result["reference"]
    for col, name in enumerate(layers):
        ax = axes[len(tasks), col]
        ax.imshow(result["errors"][name].cpu().numpy(), cmap="inferno", vmin=0.0, vmax=vmax)
        ax.set_title(f"{name}: d = {result['mean_errors'][name]:.3f}", fontsize=8)
    fig.suptitle(f"ASM structure analyzer: layer-wise distance, prediction vs {reference}", fontsize=9)
    fig.tight_layout(h_pad=1.2)
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return picture


def save_structure_figure(
    checkpoint: str | Path,
    out: str | Path,
    *,
    image_path: str | Path | None = None,
    sample: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the figure of :func:`structure_figure` for an image file or a dataset sample (with ground truth).

    Returns a summary: the reference (ground truth or reconstruction) and the mean distance per layer.
    """
    from tridense.data.io import read_rgb
    from tridense.inference import model_input_size, prepare_image

    model, matching, info = load_structure_matching(checkpoint)
    tasks = tuple(info["tasks"])
    targets = None
    if sample is not None:
        image = sample["image"][None]
        targets = {t: sample[t][None] for t in tasks if t in sample}
        if len(targets) != len(tasks):
            raise ConfigError(f"the sample has ground truth for {sorted(targets)}, the analyzer needs {list(tasks)}")
    elif image_path is not None:
        image = prepare_image(read_rgb(image_path), model_input_size(info))
    else:
        raise ConfigError("the structure analysis needs an image or a dataset sample")
    result = structure_analysis(model, matching, tasks, image, targets)
    save_png(out, structure_figure(result, image, info.get("num_classes")), overwrite=overwrite)
    return {"reference": result["reference"], "layers": list(matching.layers), "mean_errors": result["mean_errors"]}
