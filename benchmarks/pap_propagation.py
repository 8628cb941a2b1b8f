"""Speed and peak memory of PAP's propagation layer (:mod:`tridense.layers.affinity`) per mode.

Prints one JSON object per line: ``n`` (positions), ``size``, ``channels`` (affinity embedding), ``values``
(diffused channels of all tasks), ``mode`` (asked) and ``resolved`` (what ``auto`` chose), ``pass``
(``forward``: inference under ``no_grad``; ``train``: forward + backward), ``seconds`` (median of the timed
repeats), ``seconds_min``, ``peak_mb``, ``device``, ``similarity``, ``iterations``, ``batch``, ``tasks``,
``subsample``, ``threads``, ``autocast`` (with ``--autocast bf16`` also ``rel_error``: the largest
deviation of the diffused signal from float32, relative to its largest value), ``load`` (1-minute load
average when the case started: the timings are only comparable on an otherwise idle machine). A case that
cannot run has an ``error`` key instead.

Defaults follow the paper at 480x640 input: affinity learned at 1/16, 1/8 and 1/4 scale (30x40, 60x80,
120x160), 3 tasks with 2C = 128 input and C = 64 embedding channels, diffusing per task the initial
prediction (1 + 3 + 40 channels: depth, normals, NYU-40 segmentation) and 64 task-feature channels, T = 4,
and all N x N pairs (``--subsample 1``; the paper's ``--subsample 2`` divides the pair work by 4).

Peak memory. CPU: every case runs in fresh Python processes. ``peak_mb`` is the growth of the peak
resident set (``ru_maxrss``) over the resident set just before one pass, in a process started with
``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc returns every freed buffer to the OS and the resident set
follows the live tensors (autograd's saved tensors and the gradients included; the module, its inputs
and the libraries are in the baseline). The timing runs in a second process with the default allocator
(warm-up pass, then ``--repeats`` timed passes); its own peak is ``rss_peak_mb``, which includes glibc's
retained free memory. CUDA: ``torch.cuda.max_memory_allocated`` over the memory allocated before the
pass. Cases whose dense matrices would not fit in the available memory (with a margin) are reported as
errors without running them.

    python benchmarks/pap_propagation.py                                   # CPU, the paper's three scales
    python benchmarks/pap_propagation.py --sizes 60x80 --modes dense chunked --passes train
    python benchmarks/pap_propagation.py --device cuda --batch 4
    python benchmarks/pap_propagation.py --half-res-step            # one training pass at n = 76,800 (240x320)
    python benchmarks/pap_propagation.py --table results.jsonl      # the results page's tables of saved output

``auto`` (the default budget: half the free memory) picks its path by a measured comparison
(:func:`~tridense.layers.affinity.calibrated_mode`) during its first, untimed pass; after each size and pass a
``summary`` line compares its time with the fastest explicit mode that fits the same budget
(``auto_over_fastest``, ``within_10pct``; ``same_path``: auto chose that mode, so a difference is timing noise:
run on an idle machine). ``--half-res-step`` is the capability no dense implementation has:
a training pass of the layer with affinity at 1/2 of 480x640 (n = 76,800, all pairs: one dense matrix alone
would be 23.6 GB) within the free memory. It runs in one process (a pass takes minutes on a CPU): ``auto``'s
calibration timed apart (``calibration_seconds``, on the proxy grid ``calibration_size``), then the pass
(``seconds``), ``rss_peak_mb`` (an upper bound: glibc's retained memory included) and ``process_peak_mb``.
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

from tridense.layers.affinity import (
    MODES,
    SIMILARITIES,
    SIMILARITY_ALIASES,
    PatternAffinitivePropagation,
    calibrated_mode,
    canonical_similarity,
    choose_mode,
    default_budget_mb,
    dense_bytes,
    mode_bytes,
    pooled_size,
)


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def available_mb() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 1024


def build(args: argparse.Namespace, size: tuple[int, int], mode: str, device: torch.device):
    """The layer and its inputs: per task features (B, 2C, H, W) and signals [prediction, features]."""
    preds = [int(c) for c in args.pred_channels.split(",")]
    layer = PatternAffinitivePropagation(
        [args.in_channels] * len(preds),
        args.channels,
        similarity=args.similarity,
        iterations=args.iterations,
        subsample=args.subsample,
        mode=mode,
        memory_budget_mb=args.budget_mb,
    ).to(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    features = [
        (0.1 * torch.randn(args.batch, args.in_channels, *size, generator=gen)).to(device).requires_grad_()
        for _ in preds
    ]
    signals = [
        [
            torch.randn(args.batch, p, *size, generator=gen).to(device).requires_grad_(),
            torch.randn(args.batch, args.feature_channels, *size, generator=gen).to(device).requires_grad_(),
        ]
        for p in preds
    ]
    return layer, features, signals


def autocast(args: argparse.Namespace):
    """The autocast context of ``--autocast`` (bf16: what training under ``bf16-mixed`` runs the layer in)."""
    enabled = args.autocast == "bf16"
    return torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=enabled)


def output_error(args: argparse.Namespace, layer, features, signals) -> float:
    """Largest deviation of the diffused signal h^T under ``--autocast`` from float32, relative to its largest
    value (the layer's output blends h^T with the input h^0, which would hide the error: beta is set to 1)."""
    beta, layer._beta = layer._beta, 1.0
    try:
        with torch.no_grad():
            ref = [o for group in layer(features, signals) for o in group]
            with autocast(args):
                out = [o for group in layer(features, signals) for o in group]
    finally:
        layer._beta = beta
    return max(float((o.float() - r).abs().max() / r.abs().max()) for o, r in zip(out, ref, strict=True))


def run_pass(layer, features, signals, train: bool) -> None:
    if train:
        out = layer(features, signals)
        loss = sum(o.square().mean() for group in out for o in group)
        loss.backward()
        for t in [*features, *(s for g in signals for s in g), *layer.parameters()]:
            t.grad = None
    else:
        with torch.no_grad():
            layer(features, signals)


def measure(args: argparse.Namespace) -> dict:
    """One case in this (fresh) process: ``--measure peak`` runs one pass, ``--measure time`` the repeats."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = parse_size(args.sizes[0])
    mode, train = args.modes[0], args.passes[0] == "train"
    layer, features, signals = build(args, size, mode, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = current_rss_mb()
    with autocast(args):
        run_pass(layer, features, signals, train)  # first pass: the peak (and warm kernels and allocator)
    sync()
    peak = (
        (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else peak_rss_mb() - base
    )
    resolved = resolve(args, size, mode, train, device)  # after the first pass: auto's measured choice is cached
    if args.measure == "peak":
        return {"peak_mb": round(peak, 1), "resolved": resolved}
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with autocast(args):
            run_pass(layer, features, signals, train)
        sync()
        times.append(time.perf_counter() - start)
    record = {
        "seconds": round(statistics.median(times), 3),
        "seconds_min": round(min(times), 3),
        "rss_peak_mb": round(peak, 1),
    }
    if args.autocast != "none":
        record["rel_error"] = float(f"{output_error(args, layer, features, signals):.3g}")
    return record


def measure_step(args: argparse.Namespace) -> dict:
    """``--half-res-step``: in this one process, auto's calibration (timed apart), then one training pass.

    One pass at n = 76,800 takes minutes on a CPU, so the pass is timed and its memory read in the same run,
    under the default allocator: ``rss_peak_mb`` (growth of the peak resident set over the process before the
    calibration) then includes glibc's retained free memory, an upper bound of the live tensors;
    ``process_peak_mb`` is the whole process's peak resident set (libraries included), the figure to compare
    with the machine's memory.
    """
    from tridense.layers import affinity

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = parse_size(args.sizes[0])
    layer, features, signals = build(args, size, "auto", device)
    base = current_rss_mb()
    start = time.perf_counter()
    resolved = resolve(args, size, "auto", True, device)  # calibration, cached for the layer's call
    calibration = time.perf_counter() - start
    cached = len(affinity._CALIBRATION)
    start = time.perf_counter()
    with autocast(args):
        run_pass(layer, features, signals, train=True)
    seconds = time.perf_counter() - start
    return {
        "resolved": resolved,
        "calibration_seconds": round(calibration, 1),
        "calibration_size": "x".join(map(str, affinity.calibration_size(size))),
        "seconds": round(seconds, 1),
        "rss_peak_mb": round(peak_rss_mb() - base, 1),
        "process_peak_mb": round(peak_rss_mb(), 1),
        "calibrated_again_in_pass": len(affinity._CALIBRATION) != cached,  # must be False: the timing is the pass
    }


def shape_of(args: argparse.Namespace, size: tuple[int, int], train: bool) -> dict:
    """The keyword arguments of ``choose_mode`` / ``mode_bytes`` for one case."""
    preds = [int(c) for c in args.pred_channels.split(",")]
    ph, pw = pooled_size(size, args.subsample)
    return {
        "batch": args.batch, "tasks": len(preds), "n": size[0] * size[1], "m": ph * pw, "channels": args.channels,
        "value_channels": sum(preds) + len(preds) * args.feature_channels, "iterations": args.iterations,
        "training": train,
    }  # fmt: skip


def resolve(args: argparse.Namespace, size: tuple[int, int], mode: str, train: bool, device: torch.device) -> str:
    """What ``mode`` runs as: explicit modes unchanged; ``auto`` its (cached) measured choice."""
    preds = [int(c) for c in args.pred_channels.split(",")]
    similarity = canonical_similarity(args.similarity)

    def measure(candidates):
        return calibrated_mode(
            candidates, similarity=similarity, batch=args.batch, tasks=len(preds), size=size,
            subsample=args.subsample, channels=args.channels, splits=[p + args.feature_channels for p in preds],
            iterations=args.iterations, training=train, cross_task=True, device=device,
        )  # fmt: skip

    return choose_mode(
        mode, similarity=similarity, device=device, memory_budget_mb=args.budget_mb, measure=measure,
        **shape_of(args, size, train),
    )  # fmt: skip


def fits(args: argparse.Namespace, size: tuple[int, int], mode: str, train: bool) -> bool:
    """Whether an explicit ``mode`` fits auto's budget (the paths auto may choose from)."""
    budget = args.budget_mb if args.budget_mb is not None else default_budget_mb(torch.device(args.device))
    return mode_bytes(mode, **shape_of(args, size, train)) <= budget * 2**20


def summary(args: argparse.Namespace, size: tuple[int, int], pass_: str, records: list[dict]) -> dict | None:
    """Auto's time against the fastest explicit mode that fits the budget, for one size and pass."""
    train = pass_ == "train"
    auto = [r for r in records if r["mode"] == "auto" and "seconds" in r]
    explicit = [
        r for r in records if r["mode"] != "auto" and "seconds" in r and fits(args, size, r["mode"], train)
    ]
    if not auto or not explicit:
        return None
    best = min(explicit, key=lambda r: r["seconds"])
    ratio = auto[0]["seconds"] / best["seconds"]
    return {
        "summary": f"{size[0]}x{size[1]} {pass_}", "auto": auto[0].get("resolved"), "auto_seconds": auto[0]["seconds"],
        "fastest_fitting": best["mode"], "fastest_seconds": best["seconds"], "auto_over_fastest": round(ratio, 3),
        "within_10pct": ratio <= 1.10,
        "same_path": auto[0].get("resolved") == best["mode"],  # then any difference is timing noise
    }  # fmt: skip


def case_record(args: argparse.Namespace, size: tuple[int, int], mode: str, pass_: str) -> dict:
    preds = [int(c) for c in args.pred_channels.split(",")]
    return {
        "n": size[0] * size[1],
        "size": f"{size[0]}x{size[1]}",
        "channels": args.channels,
        "values": sum(preds) + len(preds) * args.feature_channels,
        "mode": mode,
        "pass": pass_,
        "device": args.device,
        "similarity": args.similarity,
        "iterations": args.iterations,
        "batch": args.batch,
        "tasks": len(preds),
        "subsample": args.subsample,
        "threads": args.threads,
        "autocast": args.autocast,
    }


def dense_guard(args: argparse.Namespace, size: tuple[int, int], mode: str, pass_: str) -> str | None:
    """An error message when the dense matrices of this case would not fit in the free memory."""
    preds = len(args.pred_channels.split(","))
    ph, pw = pooled_size(size, args.subsample)
    n, m = size[0] * size[1], ph * pw
    train = pass_ == "train"
    device = torch.device(args.device)
    shape = shape_of(args, size, train)
    resolved = choose_mode(mode, similarity=args.similarity, device=device, memory_budget_mb=args.budget_mb, **shape)
    if resolved != "dense":
        return None
    need = dense_bytes(args.batch, preds, n, m, training=train) / 2**20
    free = torch.cuda.mem_get_info()[0] / 2**20 if device.type == "cuda" else available_mb()
    if need * 1.15 > free * args.memory_fraction:
        return f"dense matrices need ~{need:.0f} MiB, only {free:.0f} MiB available (x{args.memory_fraction})"
    return None


def markdown(records: list[dict]) -> str:
    """The results page's tables from the printed JSON lines (``--table``): the cases, auto against the
    fastest path that fits, and the one-process training steps."""
    cases = [r for r in records if "mode" in r and "calibration_seconds" not in r]
    summaries = [r for r in records if "summary" in r]
    steps = [r for r in records if "calibration_seconds" in r]
    dense = {(r["n"], r["pass"], r.get("autocast")): r for r in cases if r["mode"] == "dense" and "seconds" in r}

    def share(r: dict, key: str) -> str:
        ref = dense.get((r["n"], r["pass"], r.get("autocast")))
        return f"{100 * r[key] / ref[key]:.0f} %" if ref and r.get(key) and ref.get(key) else "-"

    lines = []
    if cases:
        lines += [
            "| n | pass | autocast | mode (resolved) | seconds | peak MB | vs dense: time | vs dense: memory | load |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in cases:
            if "error" in r:
                lines.append(f"| {r['n']} | {r['pass']} | {r['autocast']} | {r['mode']} | {r['error']} | | | | |")
                continue
            lines.append(
                f"| {r['n']} | {r['pass']} | {r['autocast']} | {r['mode']} ({r.get('resolved', r['mode'])}) | "
                f"{r['seconds']:.3f} | {r['peak_mb']:.0f} | {share(r, 'seconds')} | {share(r, 'peak_mb')} | "
                f"{r['load']} |"
            )
    if summaries:
        lines += [
            "",
            "| grid, pass | auto chose | auto s | fastest fitting | its s | auto / fastest | within 10 % | same path |",
            "|---|---|---|---|---|---|---|---|",
            *[
                f"| {r['summary']} | {r['auto']} | {r['auto_seconds']:.3f} | {r['fastest_fitting']} | "
                f"{r['fastest_seconds']:.3f} | {r['auto_over_fastest']:.3f} | {'yes' if r['within_10pct'] else 'no'} | "
                f"{'yes' if r['same_path'] else 'no'} |"
                for r in summaries
            ],
        ]
    if steps:
        lines += [
            "",
            "| n | pass | auto chose | calibration (proxy grid) | pass seconds | RSS growth MB (upper bound) | "
            "process peak MB | load |",
            "|---|---|---|---|---|---|---|---|",
            *[
                f"| {r['n']} | {r['pass']} | {r.get('resolved', '-')} | "
                + (
                    f"{r['error']} | | | | |"
                    if "error" in r
                    else f"{r['calibration_seconds']} s ({r['calibration_size']}) | {r['seconds']} | "
                    f"{r['rss_peak_mb']:.0f} | {r['process_peak_mb']:.0f} | {r['load']} |"
                )
                for r in steps
            ],
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["30x40", "60x80", "120x160"], help="H x W grids")
    parser.add_argument("--modes", nargs="+", default=["dense", "fused", "chunked", "auto"], choices=MODES)
    parser.add_argument("--passes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--channels", type=int, default=64, help="affinity embedding channels C")
    parser.add_argument(
        "--in-channels", type=int, default=128, help="task feature channels (2C in the paper)"
    )
    parser.add_argument("--pred-channels", default="1,3,40", help="initial prediction channels per task")
    parser.add_argument("--feature-channels", type=int, default=64, help="diffused task-feature channels")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--similarity", default="dot", choices=[*SIMILARITIES, *SIMILARITY_ALIASES])
    parser.add_argument("--subsample", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--budget-mb", type=float, default=None, help="memory budget of mode auto (default: half the free memory)"
    )
    parser.add_argument(
        "--half-res-step",
        action="store_true",
        help="one training pass with affinity at 1/2 of 480x640 (240x320, n = 76,800, all pairs), mode auto",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--autocast",
        default="none",
        choices=["none", "bf16"],
        help="run the passes under bf16 autocast (dense and chunked stay float32 inside; fused runs SDPA in bf16)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--memory-fraction", type=float, default=0.8, help="share of free memory a case may use"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds per case (default 1800; 7200 with --half-res-step: 28 min on 2 cores)"
    )
    parser.add_argument(
        "--table", type=argparse.FileType("r"), help="print the markdown tables of saved output (JSON lines) and exit"
    )
    parser.add_argument("--one-case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", default="time", choices=["peak", "time", "step"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        print(markdown([json.loads(line) for line in args.table if line.startswith("{")]))
        return
    if args.timeout is None:
        args.timeout = 7200.0 if args.half_res_step else 1800.0
    if args.half_res_step:
        args.sizes, args.modes, args.passes, args.subsample, args.repeats = ["240x320"], ["auto"], ["train"], 1, 1
    if args.one_case:
        print(json.dumps(measure_step(args) if args.measure == "step" else measure(args)), flush=True)
        return
    for text in args.sizes:
        size = parse_size(text)
        for pass_ in args.passes:
            records = []
            for mode in args.modes:
                record = case_record(args, size, mode, pass_)
                record["load"] = round(os.getloadavg()[0], 2)  # other work on the machine skews the timing
                error = dense_guard(args, size, mode, pass_)
                if error is None:
                    record.update(run_case(args, text, mode, pass_))
                else:
                    record["error"] = error
                records.append(record)
                print(json.dumps(record), flush=True)
            line = summary(args, size, pass_, records)
            if line is not None:
                print(json.dumps(line), flush=True)


def run_case(args: argparse.Namespace, size: str, mode: str, pass_: str) -> dict:
    """Run one case in fresh interpreters: the peak with glibc's mmap threshold at 64 KiB, then the timing."""
    argv = [sys.executable, __file__, "--one-case", "--sizes", size, "--modes", mode, "--passes", pass_]
    for key in (
        "channels",
        "in_channels",
        "pred_channels",
        "feature_channels",
        "iterations",
        "similarity",
        "subsample",
        "batch",
        "repeats",
        "budget_mb",
        "device",
        "threads",
        "autocast",
    ):
        if getattr(args, key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    result: dict = {}
    for what in ("step",) if args.half_res_step else ("peak", "time"):
        env = dict(os.environ)
        if what == "peak" and args.device == "cpu":
            env["MALLOC_MMAP_THRESHOLD_"] = (
                "65536"  # freed buffers go back to the OS: RSS follows live tensors
            )
        try:
            done = subprocess.run(
                [*argv, "--measure", what],
                capture_output=True,
                text=True,
                env=env,
                timeout=args.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {**result, "error": f"{what} run timed out after {args.timeout:.0f} s"}
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or [""])[-1]
            return {**result, "error": f"{what} run: exit status {done.returncode} {tail}".strip()}
        result.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return result


if __name__ == "__main__":
    main()
