"""Compare :func:`tridense.geometry.depth_to_normals` with the classic NYU normal ground truth.

The reference is the widely used 288x384 NYUv2 release (``nyu-mini/mtan/NAME_{depth,normal}.npy``):
raw sensor depth and the classic plane-fit normals, both cropped to rows 53:467, cols 44:596 of the
640x480 frame and resized. Its normal frame is x right, y away from the camera, z up, so the camera-frame
normal (x right, y down, z forward) is (x, -z, y). We recompute normals from the same depth with the NYU
intrinsics cropped and scaled the same way and report, per image and pooled over all pixels valid in
both, the mean / median angle and the percentage within 11.25 / 22.5 / 30 degrees.

    python benchmarks/normals_vs_classic.py                       # defaults of depth_to_normals
    python benchmarks/normals_vs_classic.py --fit algebraic       # Silberman's homogeneous plane fit
    python benchmarks/normals_vs_classic.py --window 13 --dilation 1 --depth-sigma 0.03
    python benchmarks/normals_vs_classic.py --sweep               # grid over window / gating / fit
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np
import torch

from tridense.data.intrinsics import NYU_INTRINSICS
from tridense.data.io import read_npy, require_dir
from tridense.geometry import crop_intrinsics, depth_to_normals, scale_intrinsics

_P = NYU_INTRINSICS
NYU_K = np.array([[_P["fx"], 0.0, _P["cx"]], [0.0, _P["fy"], _P["cy"]], [0.0, 0.0, 1.0]])
CROP_TOP, CROP_BOTTOM, CROP_LEFT, CROP_RIGHT = 53, 467, 44, 596
THRESHOLDS = (11.25, 22.5, 30.0)


def mtan_intrinsics(h: int, w: int) -> np.ndarray:
    """NYU intrinsics after the release's crop and resize to (h, w)."""
    K = crop_intrinsics(NYU_K, CROP_TOP, CROP_LEFT)
    return scale_intrinsics(K, w / (CROP_RIGHT - CROP_LEFT), h / (CROP_BOTTOM - CROP_TOP))


def load(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, depth (H, W), camera-frame normals (H, W, 3)) for every image of the folder."""
    samples = []
    for depth_file in sorted(folder.glob("*_depth.npy")):
        name = depth_file.name.removesuffix("_depth.npy")
        depth = read_npy(depth_file, shape_ndim=2, what="depth")
        ref = read_npy(folder / f"{name}_normal.npy", shape_ndim=3, what="normals")
        camera = np.stack([ref[..., 0], -ref[..., 2], ref[..., 1]], axis=-1)  # (x, y_away, z_up) -> (x, y, z)
        samples.append((name, depth.astype(np.float32), camera.astype(np.float32)))
    if not samples:
        raise SystemExit(f"no *_depth.npy in {folder}")
    return samples


def angles(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Angles in degrees at pixels where both normals are valid."""
    both = (np.abs(pred).sum(-1) > 0) & (np.abs(ref).sum(-1) > 0)
    p, r = pred[both], ref[both]
    cos = (p * r).sum(-1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(r, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def summary(a: np.ndarray) -> str:
    within = " ".join(f"{100 * (a < t).mean():5.1f}" for t in THRESHOLDS)
    return f"mean {a.mean():6.2f}  median {np.median(a):6.2f}  within 11.25/22.5/30 {within}"


def evaluate(samples: list, params: dict, verbose: bool) -> np.ndarray:
    pooled, coverage, seconds = [], [], 0.0
    for name, depth, ref in samples:
        K = mtan_intrinsics(*depth.shape)
        start = time.perf_counter()
        normals, valid = depth_to_normals(torch.from_numpy(depth), torch.from_numpy(K).float(), **params)
        seconds += time.perf_counter() - start
        pred = normals[0].permute(1, 2, 0).numpy()
        a = angles(pred, ref)
        pooled.append(a)
        ref_valid = np.abs(ref).sum(-1) > 0
        coverage.append(valid[0, 0].numpy()[ref_valid].mean())
        if verbose:
            print(f"  {name}: {summary(a)}  ({100 * coverage[-1]:.1f}% of reference pixels fitted)")
    all_angles = np.concatenate(pooled)
    print(
        f"overall {params}\n  {summary(all_angles)}  coverage {100 * np.mean(coverage):.1f}%  "
        f"{1000 * seconds / len(samples):.0f} ms/image"
    )
    return all_angles


def main() -> None:
    beside_repo = Path(__file__).resolve().parents[2] / "shared" / "data"
    default = Path(os.environ.get("TRIDENSE_SHARED_DATA", beside_repo))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default, help="folder holding nyu-mini/")
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--dilation", type=int, default=None)
    parser.add_argument("--depth-sigma", type=float, default=None)
    parser.add_argument("--weighting", choices=("gate", "gaussian"), default=None)
    parser.add_argument("--fit", choices=("tls", "algebraic"), default=None)
    parser.add_argument("--min-support", type=float, default=None)
    parser.add_argument("--sweep", action="store_true", help="evaluate a small grid of settings")
    args = parser.parse_args()
    torch.set_num_threads(1)
    samples = load(require_dir(args.data / "nyu-mini" / "mtan", "NYU mini release folder"))
    if args.sweep:
        fits = ("tls", "algebraic")
        grid = itertools.product((5, 7, 9, 13), (1, 2), (0.03, 0.05), ("gate", "gaussian"), fits)
        for window, dilation, sigma, weighting, fit in grid:
            params = dict(window=window, dilation=dilation, depth_sigma=sigma, weighting=weighting, fit=fit)
            evaluate(samples, params, False)
        return
    given = {
        "window": args.window,
        "dilation": args.dilation,
        "depth_sigma": args.depth_sigma,
        "weighting": args.weighting,
        "fit": args.fit,
        "min_support": args.min_support,
    }
    evaluate(samples, {k: v for k, v in given.items() if v is not None}, True)


if __name__ == "__main__":
    main()
