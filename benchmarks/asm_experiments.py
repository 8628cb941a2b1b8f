"""ASM's experiments on the synthetic scenes: IID vs cGAN vs ASM, every row with the same budget and seed.

Rows (configs of ``configs/asm/synthetic/``): segmentation with FCN (Table 1: IID, cGAN, ASM on the layer sets
conv1, conv2, conv1-2, conv3, conv1-3, ASM w/o rec., ASM w/o adv., IID+ASM) and with DeepLab (second base
architecture: IID, cGAN, ASM); depth (Table 3) and normals (Table 4): IID, cGAN, ASM, IID+ASM.

1. **Timing**: each row's training step is timed in-process (a few steps after a warm-up, batch 8); the
   ratio of ASM's step time to IID's is reported per task.
2. **Budget**: the number of steps, the same for every row, is the largest that fits the whole set (timing,
   training, validation, testing) in ``--minutes`` (90 by default) at the measured step times; ``--steps``
   fixes it instead.
3. **Training**: each row is ``tridense train`` with the same overrides (size, steps, data, seed).
4. **Testing**: the best checkpoint is evaluated on the test scenes: segmentation mIoU with the boundary
   F-measure and the background confusion; depth and normals under the ``asm-2d3ds`` protocol (Table 3 and 4
   metrics) with the instance-wise metrics (``tridense evaluate --analyses``).

Writes ``docs/results/asm.md`` (tables, budget, machine, step times; a hand-written "Reading" section below
the tables is kept when the file is rewritten) and ``docs/results/asm.json``. Rows whose run folder holds
``metrics/asm_eval.json`` are not trained again, so an interrupted run continues.

    python benchmarks/asm_experiments.py                       # the whole set in 90 minutes
    python benchmarks/asm_experiments.py --steps 2 --rows semseg_iid semseg_asm --out /tmp/asm --docs /tmp/asm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers, also when loaded by path
from _runs import REPO, read_run, train_row, write_report
from _runs import cell as _f

CONFIGS = REPO / "configs" / "asm" / "synthetic"

#: (config stem, table, row label)
ROWS: list[tuple[str, str, str]] = [
    ("semseg_iid", "seg", "FCN / IID"),
    ("semseg_cgan", "seg", "FCN / cGAN"),
    ("semseg_asm_conv1", "seg", "FCN / ASM (conv1)"),
    ("semseg_asm_conv2", "seg", "FCN / ASM (conv2)"),
    ("semseg_asm", "seg", "FCN / ASM (conv1-2)"),
    ("semseg_asm_conv3", "seg", "FCN / ASM (conv3)"),
    ("semseg_asm_conv1_3", "seg", "FCN / ASM (conv1-3)"),
    ("semseg_asm_no_rec", "seg", "FCN / ASM w/o rec."),
    ("semseg_asm_no_adv", "seg", "FCN / ASM w/o adv."),
    ("semseg_iid_asm", "seg", "FCN / IID+ASM"),
    ("semseg_deeplab_iid", "seg", "DeepLab / IID"),
    ("semseg_deeplab_cgan", "seg", "DeepLab / cGAN"),
    ("semseg_deeplab_asm", "seg", "DeepLab / ASM"),
    ("depth_iid", "depth", "IID"),
    ("depth_cgan", "depth", "cGAN"),
    ("depth_asm", "depth", "ASM"),
    ("depth_iid_asm", "depth", "IID+ASM"),
    ("normals_iid", "normals", "IID"),
    ("normals_cgan", "normals", "cGAN"),
    ("normals_asm", "normals", "ASM"),
    ("normals_iid_asm", "normals", "IID+ASM"),
]
#: Seconds of validation, testing and process start per row, beyond its training steps (measured on 2 cores).
ROW_OVERHEAD_S = 45.0


def budget_overrides(args: argparse.Namespace, steps: int) -> list[str]:
    return [
        f"seed={args.seed}",
        f"data.size=[{args.size[0]},{args.size[1]}]",
        f"trainer.max_steps={steps}",
        "trainer.max_time=null",  # every row gets its steps (no time-driven decay)
        "optim.anneal_by_time=false",
        f"optim.warmup_steps={min(100, max(steps // 10, 0))}",
        f"data.batch_size={args.batch_size}",
        f"trainer.val_every_n_steps={max(steps // 2, 1)}",
        f"data.split_args={{train: {{length: {args.train_length}, cache: true}}, val: {{length: {args.val_length}}}, "
        f"test: {{length: {args.test_length}}}}}",
        "data.num_workers=0",
        "trainer.progress_bar=false",
        "eval.panel_samples=0",
    ]


class _StepClock(L.Callback):
    """Wall time of each training batch (forward, both updates, logging)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.times.append(time.perf_counter() - self._start)


def step_time(stem: str, args: argparse.Namespace, warmup: int = 2, timed: int = 3) -> float:
    """Median seconds of one training step of row ``stem`` (after ``warmup`` steps), in this process."""
    from tridense.training.config import load_config
    from tridense.training.run import _trainer_kwargs, build_experiment

    overrides = [*budget_overrides(args, warmup + timed), "data.split_args={train: {length: 64}}"]
    cfg = load_config(CONFIGS / f"{stem}.yaml", overrides)
    L.seed_everything(args.seed, verbose=False)
    experiment = build_experiment(cfg)
    clock = _StepClock()
    kwargs = _trainer_kwargs(cfg, experiment.module) | {
        "limit_val_batches": 0,
        "val_check_interval": None,
        "check_val_every_n_epoch": 1,
        "max_epochs": 1,
    }
    trainer = L.Trainer(callbacks=[clock], logger=False, enable_checkpointing=False, **kwargs)
    trainer.fit(experiment.module, datamodule=experiment.datamodule)
    times = sorted(clock.times[warmup:]) or sorted(clock.times)
    return times[len(times) // 2]


def run_row(stem: str, args: argparse.Namespace, steps: int) -> dict | None:
    run_dir = args.out / stem
    eval_file = run_dir / "metrics" / "asm_eval.json"
    if not eval_file.is_file():
        trained = (run_dir / "metrics" / "test.json").is_file()
        if not trained and not train_row(stem, CONFIGS / f"{stem}.yaml", run_dir, budget_overrides(args, steps)):
            return None
        evaluate_row(stem, run_dir, args)
    result, summary = read_run(run_dir, "asm_eval.json")
    return {"results": result, "seconds": summary["seconds"], "steps": summary["steps"]}


def evaluate_row(stem: str, run_dir: Path, args: argparse.Namespace) -> None:
    """The best checkpoint on the test scenes, with the paper's metrics and analyses."""
    from tridense.checkpoints import load_model
    from tridense.data.io import write_json
    from tridense.data.registry import build_dataset
    from tridense.evaluate import evaluate
    from tridense.inference import model_input_size

    best = json.loads((run_dir / "summary.json").read_text())["best_checkpoint"]
    model, info = load_model(best)
    dataset = build_dataset("synthetic", None, "test", length=args.test_length, size=tuple(args.size))
    tasks = list(info["tasks"])
    size = model_input_size(info)
    if "semseg" in tasks:
        results = evaluate(model, dataset, tasks=tasks, input_size=size, analyses=["boundary", "background"])
    else:
        results = evaluate(
            model, dataset, tasks=tasks, input_size=size, protocol="asm-2d3ds", analyses=["instance"]
        )
    write_json(run_dir / "metrics" / "asm_eval.json", results, overwrite=True)


def _seg_cells(r: dict) -> list[str]:
    return [
        _f(r, "semseg", "miou", 100, 1),
        _f(r, "semseg", "pixel_acc", 100, 1),
        _f(r, "semseg_boundary", "precision"),
        _f(r, "semseg_boundary", "recall"),
        _f(r, "semseg_boundary", "fmeasure"),
        _f(r, "semseg_background", "mean_background_confusion", 100, 1),
    ]


def _depth_cells(r: dict) -> list[str]:
    cells = [_f(r, "depth", k) for k in ("abs_rel", "sq_rel", "rmse", "rmse_log")]
    cells += [_f(r, "depth", k) for k in ("delta0.125", "delta0.25", "delta0.5", "delta1", "delta2")]
    return [*cells, _f(r, "depth_instance", "abs_rel"), _f(r, "depth_instance", "rmse")]


def _normal_cells(r: dict) -> list[str]:
    cells = [_f(r, "normals", "mean", 1, 2), _f(r, "normals", "median", 1, 2)]
    cells += [_f(r, "normals", f"within_{t}", 1, 1) for t in ("2.8125", "5.625", "11.25", "22.5", "30")]
    return [*cells, _f(r, "normals_instance", "mean", 1, 2), _f(r, "normals_instance", "within_11.25", 1, 1)]


def _section(
    rows: dict[str, dict | None],
    table: str,
    title: str,
    columns: list[str],
    cells: Callable[[dict], list[str]],
    note: str | None = None,
) -> list[str]:
    """The markdown section of one ``table``: its title, ``note``, header (the metric ``columns``) and a line
    per row that ran: label, config, the ``cells`` of its results and its minutes (``failed`` and empty
    cells for a failed run)."""
    lines = ["", f"## {title}", "", *([note, ""] if note else [])]
    lines += ["| " + " | ".join(["row", "config", *columns, "minutes"]) + " |", "|---" * (len(columns) + 3) + "|"]
    for stem, kind, label in ROWS:
        if kind != table or stem not in rows:
            continue
        row = rows[stem]
        if row is None:
            lines.append(f"| {label} | `{stem}` | failed |" + " |" * len(columns))
            continue
        lines.append(f"| {label} | `{stem}` | " + " | ".join(cells(row["results"])) + f" | {row['seconds'] / 60:.1f} |")
    return lines


def report(rows: dict[str, dict | None], args: argparse.Namespace, steps: int, timing: dict[str, float]) -> str:
    command = "python benchmarks/asm_experiments.py" + ("" if args.steps is None else f" --steps {args.steps}")
    lines = [
        "# ASM on the synthetic scenes: IID vs cGAN vs ASM",
        "",
        f"Produced by `{command} --minutes {args.minutes:g}` on {args.machine}.",
        "",
        f"Budget, the same for every row: {steps} steps of batch {args.batch_size} at {args.size[0]}x{args.size[1]} "
        f"from random initialisation (AdamW, the default recipe of `configs/default.yaml`; the critic at the "
        f"predictor's learning rate), {args.train_length} training scenes, seed {args.seed}; the best checkpoint on "
        f"{args.val_length} validation scenes (validated every {max(steps // 2, 1)} steps) is tested on "
        f"{args.test_length} test scenes. The step count is the largest that fits the whole set in "
        f"{args.minutes:g} minutes at the step times measured below.",
    ]
    lines += _section(
        rows,
        "seg",
        "Segmentation (Table 1 and the base architectures)",
        ["mIoU ↑", "pixel acc ↑", "boundary P ↑", "boundary R ↑", "boundary F ↑", "bg confusion ↓"],
        _seg_cells,
        note="mIoU and pixel accuracy in percent; boundary precision / recall / F-measure (BSDS-style, tolerance "
        "0.0075 of the diagonal); mean background confusion (share of a class's pixels predicted as background, "
        "percent).",
    )
    lines += _section(
        rows,
        "depth",
        "Depth (Table 3 metrics, `asm-2d3ds` protocol: pixel-pooled, strict accuracies)",
        [
            *("abs rel ↓", "sq rel ↓", "rmse ↓", "rmse log ↓"),
            *("δ<1.25^⅛ ↑", "δ<1.25^¼ ↑", "δ<1.25^½ ↑", "δ<1.25 ↑", "δ<1.25² ↑"),
            *("inst. abs rel ↓", "inst. rmse ↓"),
        ],
        _depth_cells,
    )
    lines += _section(
        rows,
        "normals",
        "Normals (Table 4 metrics, `asm-2d3ds` protocol: pooled, thresholds inclusive)",
        [
            *("mean ↓", "median ↓"),
            *("≤2.8125° ↑", "≤5.625° ↑", "≤11.25° ↑", "≤22.5° ↑", "≤30° ↑"),
            *("inst. mean ↓", "inst. ≤11.25° ↑"),
        ],
        _normal_cells,
    )
    lines += ["", "## Training-step time", "", "| row | seconds per step |", "|---|---|"]
    lines += [f"| `{stem}` | {seconds:.3f} |" for stem, seconds in timing.items()]
    ratios = []
    for iid, asm in [("semseg_iid", "semseg_asm"), ("depth_iid", "depth_asm"), ("normals_iid", "normals_asm")]:
        if iid in timing and asm in timing:
            ratios.append(f"{asm.split('_')[0]}: {timing[asm] / timing[iid]:.2f}x")
    if ratios:
        lines += ["", "ASM's training step relative to IID's (same predictor, batch and size): " + ", ".join(ratios)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=90.0, help="wall-clock budget of the whole set")
    parser.add_argument("--steps", type=int, help="steps per row (default: computed from --minutes)")
    parser.add_argument("--size", type=lambda s: [int(v) for v in s.split("x")], default=[96, 128])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-length", type=int, default=2000)
    parser.add_argument("--val-length", type=int, default=32)
    parser.add_argument("--test-length", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", nargs="*", help="config stems to run (default: all rows)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "asm_experiments")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--machine", default=f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU")
    args = parser.parse_args()

    stems = args.rows or [stem for stem, _, _ in ROWS]
    unknown = sorted(set(stems) - {stem for stem, _, _ in ROWS})
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {[stem for stem, _, _ in ROWS]}")
    started = time.time()
    timing = {stem: step_time(stem, args) for stem in stems}
    print(json.dumps({"step_seconds": timing}), flush=True)
    if args.steps is not None:
        steps = args.steps
    else:
        left = args.minutes * 60 - (time.time() - started) - ROW_OVERHEAD_S * len(stems)
        steps = int(0.9 * left / sum(timing.values()))
        if steps < 10:
            parser.error(f"{args.minutes} minutes leave {steps} steps per row; give more minutes or fewer rows")
    print(f"{steps} steps per row", flush=True)
    rows = {stem: run_row(stem, args, steps) for stem in stems}
    text = report(rows, args, steps, timing)
    print(text)
    print(f"whole set: {(time.time() - started) / 60:.1f} minutes")
    args.docs.mkdir(parents=True, exist_ok=True)
    md = args.docs / "asm.md"
    write_report(md, text)
    payload = {"budget": vars(args) | {"out": str(args.out), "docs": str(args.docs), "steps": steps}}
    payload |= {"step_seconds": timing, "rows": rows, "minutes": (time.time() - started) / 60}
    (args.docs / "asm.json").write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {md}")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
