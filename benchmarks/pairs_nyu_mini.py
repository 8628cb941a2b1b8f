"""PAP's Fig. 1 statistic (``tridense analyze pairs``) on the six real NYU test images of ``nyu-mini``.

Two versions of the same images, each with depth, normals and labels, are built in a temporary folder:

- ``mtan``: the widely used 288x384 release (raw sensor depth with holes, the classic plane-fit normal
  ground truth, 13 classes), written in its on-disk layout and read with ``nyuv2_mtan``;
- ``folder``: the 640x480 labeled-set PNGs (hole-filled depth, 40 classes) read with ``nyuv2_folder``,
  with normals computed from the depth by ``tridense.data.export.prepare_normals`` (tridense's own fit).

For each and each stride the pooled figures are printed as a table (and all results as JSON with --json).

    python benchmarks/pairs_nyu_mini.py                         # strides 16 and 8
    python benchmarks/pairs_nyu_mini.py --strides 16 --json pairs.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tridense.analysis.pairs import format_pairs_table, run_pairs
from tridense.data.export import prepare_normals
from tridense.data.nyu import NYUv2Folder

DEFAULT_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyu-mini"


def build_mtan(mini: Path, root: Path) -> Path:
    """Write nyu-mini's ``mtan/`` arrays as the MTAN release stores them: ROOT/val/<kind>/<i>.npy."""
    names = sorted(p.name.removesuffix("_depth.npy") for p in (mini / "mtan").glob("*_depth.npy"))
    for kind in ("image", "depth", "label", "normal"):
        (root / "val" / kind).mkdir(parents=True)
    for i, name in enumerate(names):
        rgb = Image.open(mini / "rgb" / f"{name}.png").convert("RGB")
        crop = rgb.crop((44, 53, 596, 467)).resize((384, 288), Image.BILINEAR)  # rows 53:467, cols 44:596
        np.save(root / "val" / "image" / f"{i}.npy", np.asarray(crop, np.float32) / 255.0)
        np.save(root / "val" / "depth" / f"{i}.npy", np.load(mini / "mtan" / f"{name}_depth.npy")[..., None])
        label = np.load(mini / "mtan" / f"{name}_label13.npy").astype(np.float32)
        np.save(root / "val" / "label" / f"{i}.npy", label)
        np.save(root / "val" / "normal" / f"{i}.npy", np.load(mini / "mtan" / f"{name}_normal.npy"))
    return root


def build_folder(mini: Path, root: Path) -> Path:
    """A copy of nyu-mini (without mtan/) plus normals/NAME.png fitted to the depth by prepare_normals."""
    shutil.copytree(mini, root, ignore=shutil.ignore_patterns("mtan"))
    prepare_normals(NYUv2Folder(root, split="test", tasks=["depth"]), root / "normals")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mini", type=Path, default=DEFAULT_MINI, help="the nyu-mini folder")
    parser.add_argument("--strides", type=int, nargs="+", default=[16, 8])
    parser.add_argument("--json", type=Path, help="write every result to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        runs = {
            "mtan": ("nyuv2_mtan", build_mtan(args.mini, Path(tmp) / "mtan"), "val", {}),
            "folder": (
                "nyuv2_folder",
                build_folder(args.mini, Path(tmp) / "folder"),
                "test",
                {"label_set": 40},
            ),
        }
        print(f"built the two layouts in {time.time() - started:.1f} s\n")
        for version, (dataset, root, split, dataset_args) in runs.items():
            for stride in args.strides:
                started = time.time()
                result = run_pairs(dataset, root, split=split, stride=stride, dataset_args=dataset_args)
                print(f"[{version}] {time.time() - started:.1f} s")
                print(format_pairs_table(result), end="\n\n")
                results[f"{version}/stride{stride}"] = result
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
