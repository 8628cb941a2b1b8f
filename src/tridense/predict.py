"""``tridense predict``: run a model on a user's images and write every output to files.

For an input ``NAME.jpg`` the outputs in ``--out`` are::

    NAME_depth.png        uint16 millimetres (0 = none)       NAME_depth.npy     float32 metres (H, W)
    NAME_normals.png      normals as colours (viz convention) NAME_normals.npy   float32 unit (H, W, 3), camera frame
    NAME_semseg.png       uint8 class ids                     NAME_semseg_color.png   palette colours
    NAME_panel.png        titled tiles: input | depth (colour bar in m) | normals (colour key) | segmentation
                          (class legend); stacked in a column for wide (e.g. KITTI) images
    NAME_points.ply       coloured point cloud from the depth and the given or assumed intrinsics

The model sees each image at a working size (the training size's pixel count at the image's aspect ratio,
sides multiples of 16) and the maps are written at ``output_size``: ``native`` (the prediction's own
resolution, default), ``input`` (the image's) or (H, W); the point cloud stays at the prediction's
resolution unless ``point_cloud_at_output_size``. A 4000x3000 photo thus gives 96x128 maps by default, not
375 MB of upsampled arrays. Unreadable inputs are reported and skipped; existing outputs are never replaced
without ``overwrite``; a ``predictions.json`` summary lists inputs, outputs, sizes, intrinsics, the class
names and failures.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from tridense.data.io import depth_to_png_mm, read_rgb, write_json, write_npy, write_png
from tridense.errors import ConfigError, DataError
from tridense.geometry import depth_to_pointcloud, points_to_ply
from tridense.inference import (
    intrinsics_for,
    predict_batch,
    prepare_image,
    resize_outputs,
    scale_intrinsics,
    working_size,
)
from tridense.viz import colorize_labels, normals_to_rgb, prediction_panel

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def expand_inputs(items: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (their images, sorted) and glob patterns -> image paths; plus items that matched nothing."""
    paths: list[Path] = []
    unmatched: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif p.exists():
            found = [p]
        else:
            found = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
        if found:
            paths.extend(found)
        else:
            unmatched.append(item)
    return list(dict.fromkeys(paths)), unmatched


def output_stems(paths: Sequence[Path]) -> list[str]:
    """Unique output names: the file stem, with the parent folder added where two inputs share a stem."""
    stems = [p.stem for p in paths]
    out = []
    for p, stem in zip(paths, stems, strict=True):
        out.append(f"{p.parent.name}_{stem}" if stems.count(stem) > 1 else stem)
    seen: dict[str, int] = {}
    unique = []
    for stem in out:
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        unique.append(stem if n == 0 else f"{stem}-{n}")
    return unique


def output_files(out: Path, stem: str, tasks: Iterable[str], point_cloud: bool = True) -> dict[str, Path]:
    files = {"panel": out / f"{stem}_panel.png"}
    if "depth" in tasks:
        files |= {"depth_png": out / f"{stem}_depth.png", "depth_npy": out / f"{stem}_depth.npy"}
        if point_cloud:
            files["points"] = out / f"{stem}_points.ply"
    if "normals" in tasks:
        files |= {"normals_png": out / f"{stem}_normals.png", "normals_npy": out / f"{stem}_normals.npy"}
    if "semseg" in tasks:
        files |= {"semseg_png": out / f"{stem}_semseg.png", "semseg_color": out / f"{stem}_semseg_color.png"}
    return files


def write_prediction(
    files: Mapping[str, Path],
    rgb: np.ndarray,
    outputs: Mapping[str, torch.Tensor],
    *,
    K: np.ndarray,
    palette: np.ndarray | None,
    overwrite: bool = False,
    class_names: Sequence[str] | None = None,
    cloud: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Write one image's predictions (a batch of one) to ``files``.

    ``rgb`` is resized to the outputs' size for the panel; ``K`` holds the intrinsics at that size. The point
    cloud is made from ``cloud`` = (depth (h, w) metres, its intrinsics) when given, else from the depth.
    """
    depth = normals = labels = None
    if "depth" in outputs:
        depth = outputs["depth"][0, 0].cpu().numpy().astype(np.float32)
        write_npy(files["depth_npy"], depth, overwrite=overwrite)
        write_png(files["depth_png"], depth_to_png_mm(depth), overwrite=overwrite)
        if "points" in files:
            cloud_depth, cloud_K = cloud if cloud is not None else (depth, K)
            colors = resize_rgb(rgb, cloud_depth.shape)
            points, point_colors = depth_to_pointcloud(cloud_depth, cloud_K, image=colors)
            points_to_ply(files["points"], points, point_colors, overwrite=overwrite)
    if "normals" in outputs:
        normals = outputs["normals"][0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
        write_npy(files["normals_npy"], normals, overwrite=overwrite)
        write_png(files["normals_png"], normals_to_rgb(normals), overwrite=overwrite)
    if "semseg" in outputs:
        labels = outputs["semseg"][0].argmax(0).cpu().numpy()
        write_png(
            files["semseg_png"], labels.astype(np.uint8 if labels.max() < 256 else np.uint16), overwrite=overwrite
        )
        write_png(files["semseg_color"], colorize_labels(labels, palette), overwrite=overwrite)
    size = next(iter(outputs.values())).shape[-2:] if outputs else rgb.shape[:2]
    panel = prediction_panel(
        resize_rgb(rgb, tuple(size)), depth=depth, normals=normals, labels=labels, palette=palette,
        class_names=class_names,
    )  # fmt: skip
    write_png(files["panel"], panel, overwrite=overwrite)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) resized to ``size`` (h, w) (area-averaged when shrinking)."""
    if tuple(rgb.shape[:2]) == tuple(size):
        return rgb
    return np.array(Image.fromarray(rgb).resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=2.0))


def parse_intrinsics(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
    except ValueError as err:
        raise DataError(f"--intrinsics must be fx,fy,cx,cy in pixels of the input image, got {text!r}") from err
    if fx <= 0 or fy <= 0:
        raise DataError(f"--intrinsics focal lengths must be positive, got {text!r}")
    return fx, fy, cx, cy


def _planned_files(
    out: Path, paths: Sequence[Path], tasks: Sequence[str], *, point_cloud: bool, overwrite: bool
) -> dict[str, dict[str, Path]]:
    """The output files of each input path (by ``str(path)``); a FileExistsError if any of them or
    ``predictions.json`` exists, unless ``overwrite``."""
    stems = output_stems(paths)
    planned = {str(p): output_files(out, s, tasks, point_cloud) for p, s in zip(paths, stems, strict=True)}
    existing = [str(f) for files in planned.values() for f in files.values() if f.exists()]
    if (out / "predictions.json").exists():
        existing.append(str(out / "predictions.json"))
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} output file(s) exist, e.g. {existing[:3]}; pass --overwrite to replace them"
        )
    return planned


def _predict_image(
    model: nn.Module,
    info: Mapping[str, Any],
    rgb: np.ndarray,
    files: Mapping[str, Path],
    *,
    intrinsics: tuple[float, float, float, float] | None,
    input_size: tuple[int, int] | None,
    output_size: str | tuple[int, int],
    flip: bool,
    overwrite: bool,
    point_cloud_at_output_size: bool,
    palette: np.ndarray | None,
) -> dict[str, Any]:
    """Predict one (H, W, 3) image into its ``files``; returns its record of predictions.json (arguments as
    :func:`predict_files`)."""
    h, w = rgb.shape[:2]
    if intrinsics is not None:
        fx, fy, cx, cy = intrinsics
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float32)
    else:
        K = intrinsics_for(info, (h, w))
    size = tuple(input_size) if input_size is not None else working_size(info, (h, w))
    native = predict_batch(model, prepare_image(rgb, size), flip=flip)
    native_hw = tuple(next(iter(native.values())).shape[-2:])
    out_hw = native_hw if output_size == "native" else (h, w) if output_size == "input" else output_size
    outputs = native if out_hw == native_hw else resize_outputs(native, out_hw)
    cloud = None
    if "depth" in native and not point_cloud_at_output_size and out_hw != native_hw:
        cloud = (native["depth"][0, 0].cpu().numpy(), scale_intrinsics(K, (h, w), native_hw))
    write_prediction(
        files, rgb, outputs, K=scale_intrinsics(K, (h, w), out_hw), palette=palette, overwrite=overwrite,
        class_names=info.get("class_names"), cloud=cloud,
    )  # fmt: skip
    return {
        "outputs": {k: str(v) for k, v in files.items()},
        "K": K.tolist(),
        "input_size": [h, w],
        "prediction_size": list(native_hw),
        "output_size": list(out_hw),
    }


def predict_files(
    model: nn.Module,
    info: Mapping[str, Any],
    inputs: Sequence[str],
    out: str | Path,
    *,
    intrinsics: tuple[float, float, float, float] | None = None,
    input_size: tuple[int, int] | None = None,
    output_size: str | tuple[int, int] = "native",
    flip: bool = False,
    overwrite: bool = False,
    point_cloud: bool = True,
    point_cloud_at_output_size: bool = False,
    palette: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Predict every image of ``inputs`` into ``out``; returns the summary also written to predictions.json.

    Args:
        input_size: model input (H, W); default :func:`~tridense.inference.working_size` of each image.
        output_size: size of the written maps: ``"native"`` (the prediction's own), ``"input"`` (the
            image's) or (H, W).
        point_cloud_at_output_size: the point cloud at the output size (default: the prediction's size).
        progress: called with (done, total) after each image; ``log`` gets skipped inputs.
    """
    if "hha" in getattr(model, "batch_inputs", ()):
        raise ConfigError(
            "this model reads the HHA encoding of the ground-truth depth besides the image (GAD with "
            "model.args.hha: true, Table 4's +HHA row); a plain image has no depth: score it on a dataset with "
            "depth with `tridense evaluate` (which computes the HHA), or use an RGB-only GAD model"
        )
    if output_size not in ("native", "input") and not isinstance(output_size, tuple):
        raise DataError(f"output size must be 'native', 'input' or (H, W), got {output_size!r}")
    out = Path(out)
    paths, unmatched = expand_inputs(inputs)
    tasks = [t for t in ("depth", "normals", "semseg") if t in info.get("model_tasks", info.get("tasks", []))]
    planned = _planned_files(out, paths, tasks, point_cloud=point_cloud, overwrite=overwrite)
    class_names = info.get("class_names")
    failures = {item: "matched no file" for item in unmatched}
    written: dict[str, Any] = {}
    for done, path in enumerate(paths, start=1):
        try:
            rgb = read_rgb(path)
        except DataError as err:
            failures[str(path)] = str(err)
            log(f"skipped {path}: {err}")
            continue
        written[str(path)] = _predict_image(
            model,
            info,
            rgb,
            planned[str(path)],
            intrinsics=intrinsics,
            input_size=input_size,
            output_size=output_size,
            flip=flip,
            overwrite=overwrite,
            point_cloud_at_output_size=point_cloud_at_output_size,
            palette=palette,
        )
        if progress is not None:
            progress(done, len(paths))
    summary = {
        "predicted": len(written),
        "failed": len(failures),
        "failures": failures,
        "intrinsics": "given" if intrinsics is not None else "assumed (training camera scaled to each image)",
        "input_size": list(input_size) if input_size else "working size: the training size's area at each aspect",
        "output_size": output_size if isinstance(output_size, str) else list(output_size),
        "flip": flip,
        "classes": list(class_names) if class_names else None,
        "images": written,
    }
    if written or failures:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "predictions.json", summary, overwrite=overwrite)
    return summary
