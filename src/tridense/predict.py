"""``tridense predict``: run a model on a user's images and write every output to files.

For an input ``NAME.jpg`` the outputs in ``--out`` are::

    NAME_depth.png        uint16 millimetres (0 = none)       NAME_depth.npy     float32 metres (H, W)
    NAME_normals.png      normals as colours (viz convention) NAME_normals.npy   float32 unit (H, W, 3), camera frame
    NAME_semseg.png       uint8 class ids                     NAME_semseg_color.png   palette colours
    NAME_panel.png        input | depth | normals | segmentation
    NAME_points.ply       coloured point cloud from the depth and the given or assumed intrinsics

at the input's own resolution. Unreadable inputs are reported and skipped; existing outputs are never
replaced without ``overwrite``; a ``predictions.json`` summary lists inputs, outputs, intrinsics and failures.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tridense.data.io import depth_to_png_mm, read_rgb, write_json, write_npy, write_png
from tridense.errors import DataError
from tridense.geometry import depth_to_pointcloud, points_to_ply
from tridense.inference import intrinsics_for, model_input_size, predict_batch, prepare_image
from tridense.viz import colorize_depth, colorize_labels, normals_to_rgb, with_colorbar

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
) -> None:
    """Write one image's predictions (outputs at the image's size, batch of one) to ``files``."""
    cells = [rgb]
    if "depth" in outputs:
        depth = outputs["depth"][0, 0].cpu().numpy().astype(np.float32)
        write_npy(files["depth_npy"], depth, overwrite=overwrite)
        write_png(files["depth_png"], depth_to_png_mm(depth), overwrite=overwrite)
        lo, hi = float(np.percentile(depth, 2)), float(np.percentile(depth, 98))
        cells.append(with_colorbar(colorize_depth(depth, vmin=lo, vmax=hi), lo, hi, label="m"))
        if "points" in files:
            points, colors = depth_to_pointcloud(depth, K, image=rgb)
            points_to_ply(files["points"], points, colors, overwrite=overwrite)
    if "normals" in outputs:
        normals = outputs["normals"][0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
        write_npy(files["normals_npy"], normals, overwrite=overwrite)
        picture = normals_to_rgb(normals)
        write_png(files["normals_png"], picture, overwrite=overwrite)
        cells.append(picture)
    if "semseg" in outputs:
        labels = outputs["semseg"][0].argmax(0).cpu().numpy()
        write_png(
            files["semseg_png"], labels.astype(np.uint8 if labels.max() < 256 else np.uint16), overwrite=overwrite
        )
        colored = colorize_labels(labels, palette)
        write_png(files["semseg_color"], colored, overwrite=overwrite)
        cells.append(colored)
    h = rgb.shape[0]
    cells = [c if c.shape[0] == h else np.pad(c, ((0, h - c.shape[0]), (0, 0), (0, 0))) for c in cells]
    write_png(files["panel"], np.concatenate(cells, axis=1), overwrite=overwrite)


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


def predict_files(
    model: nn.Module,
    info: Mapping[str, Any],
    inputs: Sequence[str],
    out: str | Path,
    *,
    intrinsics: tuple[float, float, float, float] | None = None,
    input_size: tuple[int, int] | None = None,
    flip: bool = False,
    overwrite: bool = False,
    point_cloud: bool = True,
    palette: np.ndarray | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Predict every image of ``inputs`` into ``out``; returns the summary also written to predictions.json."""
    out = Path(out)
    paths, unmatched = expand_inputs(inputs)
    tasks = [t for t in ("depth", "normals", "semseg") if t in info.get("model_tasks", info.get("tasks", []))]
    stems = output_stems(paths)
    planned = {str(p): output_files(out, s, tasks, point_cloud) for p, s in zip(paths, stems, strict=True)}
    existing = [str(f) for files in planned.values() for f in files.values() if f.exists()]
    if (out / "predictions.json").exists():
        existing.append(str(out / "predictions.json"))
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} output file(s) exist, e.g. {existing[:3]}; pass --overwrite to replace them"
        )
    size = model_input_size(info, input_size)
    failures = {item: "matched no file" for item in unmatched}
    written: dict[str, Any] = {}
    for path in paths:
        try:
            rgb = read_rgb(path)
        except DataError as err:
            failures[str(path)] = str(err)
            log(f"skipped {path}: {err}")
            continue
        h, w = rgb.shape[:2]
        if intrinsics is not None:
            fx, fy, cx, cy = intrinsics
            K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float32)
        else:
            K = intrinsics_for(info, (h, w))
        outputs = predict_batch(model, prepare_image(rgb, size), out_size=(h, w), flip=flip)
        files = planned[str(path)]
        write_prediction(files, rgb, outputs, K=K, palette=palette, overwrite=overwrite)
        written[str(path)] = {"outputs": {k: str(v) for k, v in files.items()}, "K": K.tolist()}
        log(f"{path} -> {files['panel'].parent}/{files['panel'].name.removesuffix('_panel.png')}_*")
    summary = {
        "predicted": len(written),
        "failed": len(failures),
        "failures": failures,
        "intrinsics": "given" if intrinsics is not None else "assumed (training camera scaled to each image)",
        "input_size": list(size) if size else None,
        "flip": flip,
        "images": written,
    }
    if written or failures:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "predictions.json", summary, overwrite=overwrite)
    return summary
