"""Speed and peak memory of GAD's GAP block (:class:`tridense.layers.gap.GeometryAwarePropagation`) per mode.

The block at the decoder's full resolution: GADNet's decoders end at stride 2, so a 240x320 input (the
paper's) gives 120x160 = 19,200 positions and every pair of them is an affinity (``--subsample 1``, as the
paper). Defaults: decoder width 64 (semantic features and depth embedding), theta / phi / g width 32, batch 1.

Prints one JSON object per line: ``size``, ``n``, ``mode`` (asked) and ``resolved`` (what ``auto`` chose),
``pass`` (``forward`` under ``no_grad``, or ``train``: forward + backward), ``seconds`` (median of the timed
repeats after a warm-up), ``peak_mb``, ``device``, ``threads``, ``load`` (1-minute load average at the start:
timings are comparable only on an idle machine). Every case runs in a fresh process. CPU peak memory is the
growth of the peak resident set over the resident set before the pass, in a process started with
``MALLOC_MMAP_THRESHOLD_=65536`` (freed buffers go back to the OS); CUDA: ``torch.cuda.max_memory_allocated``
over what was allocated before the pass. ``fused`` on CPU runs PyTorch's CPU attention kernel.

    python benchmarks/gad_gap.py                                   # CPU, 60x80 and 120x160
    python benchmarks/gad_gap.py --device cuda --modes dense fused --sizes 120x160 240x320
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from tridense.layers.affinity import choose_mode
from tridense.layers.gap import GeometryAwarePropagation


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    size = parse_size(args.size)
    block = GeometryAwarePropagation(args.channels, args.channels, args.inter, mode=args.mode, zero_init=False)
    block = block.to(device)
    p = torch.randn(args.batch, args.channels, *size, device=device, requires_grad=args.pass_ == "train")
    g = torch.randn(args.batch, args.channels, *size, device=device, requires_grad=args.pass_ == "train")
    n = size[0] * size[1]
    resolved = choose_mode(
        args.mode, similarity="dot", batch=args.batch, tasks=1, n=n, m=n, device=device,
        training=args.pass_ == "train", cross_task=False,
    )  # fmt: skip

    def run() -> None:
        if args.pass_ == "train":
            block(p, g).square().mean().backward()
        else:
            with torch.no_grad():
                block(p, g)
        if device.type == "cuda":
            torch.cuda.synchronize()

    record = {"size": args.size, "n": n, "mode": args.mode, "resolved": resolved, "pass": args.pass_}
    if args.memory:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            run()
            record["peak_mb"] = round((torch.cuda.max_memory_allocated() - before) / 2**20, 1)
        else:
            before = rss_mb()
            run()
            record["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before, 1)
        return record
    run()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    record.update(seconds=round(statistics.median(times), 4), device=str(device), threads=torch.get_num_threads())
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["60x80", "120x160"])
    parser.add_argument("--modes", nargs="+", default=["dense", "chunked", "fused"])
    parser.add_argument("--passes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--inter", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    # internal: one case in this process
    parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--pass", dest="pass_", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args)))
        return
    common = ["--device", args.device, "--batch", str(args.batch), "--channels", str(args.channels)]
    common += ["--inter", str(args.inter), "--repeats", str(args.repeats)]
    for size in args.sizes:
        for mode in args.modes:
            for pass_ in args.passes:
                case = [sys.executable, __file__, "--case", "--size", size, "--mode", mode, "--pass", pass_, *common]
                load = os.getloadavg()[0]
                timing = subprocess.run(case, capture_output=True, text=True)
                memory = subprocess.run(
                    [*case, "--memory"],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
                )
                if timing.returncode or memory.returncode:
                    err = (timing.stderr or memory.stderr).strip().splitlines()[-1:]
                    print(json.dumps({"size": size, "mode": mode, "pass": pass_, "error": err}))
                    continue
                record = json.loads(timing.stdout)
                record["peak_mb"] = json.loads(memory.stdout)["peak_mb"]
                record["load"] = round(load, 2)
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
