"""Samples per second of the synthetic scene generator on one core.

    python benchmarks/synthetic_speed.py [--size 240x320] [--count 100] [--split train]

Prints one JSON line per setting: the generator alone (``load_raw``: scene + ray casting + ground truth)
and with the tensor conversion and the training transforms (``getitem``). Torch and BLAS are held to one
thread, so the figure is per core (the issue's target: >= 25 samples/s at 240x320).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch

from tridense.data.synthetic import SyntheticScenes
from tridense.data.transforms import train_transforms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="240x320")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--split", default="train")
    parser.add_argument("--shadows", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    h, w = (int(v) for v in args.size.split("x"))
    shadow_settings = {"on": [True], "off": [False], "both": [True, False]}[args.shadows]
    for shadows in shadow_settings:
        ds = SyntheticScenes(args.split, size=(h, w), length=args.count, shadows=shadows, cache=False)
        ds.load_raw(0)  # warm-up (numpy lattice tables, imports)
        start = time.perf_counter()
        for i in range(args.count):
            ds.load_raw(i)
        raw = time.perf_counter() - start
        ds.transform = train_transforms(None)
        start = time.perf_counter()
        for i in range(args.count):
            ds[i]
        full = time.perf_counter() - start
        print(json.dumps({
            "size": f"{h}x{w}", "shadows": shadows, "samples": args.count,
            "load_raw_per_s": round(args.count / raw, 1), "getitem_per_s": round(args.count / full, 1),
            "ms_per_sample": round(1000 * raw / args.count, 1), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        }))


if __name__ == "__main__":
    main()
