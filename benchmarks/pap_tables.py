"""PAP's Tables 1 and 2 on the synthetic scenes, every row with the same budget and seed.

Each row is one config of ``configs/pap/`` trained with ``tridense train`` and the same overrides (input
size, steps, data, seed); the best checkpoint's metrics on the synthetic test split are collected into
``docs/results/pap.md`` (the table, the budget, the machine) and ``docs/results/pap.json``. Rows whose run
folder already holds ``metrics/test.json`` are not trained again, so an interrupted run continues.

    python benchmarks/pap_tables.py                       # the whole set at the default budget
    python benchmarks/pap_tables.py --steps 200 --rows table2_initial table2_cross_task
    python benchmarks/pap_tables.py --report-only         # rebuild the report from the run folders

The paper's columns are depth rmse (m), segmentation mIoU (%) and the normal rmse of the angle (degrees);
δ1 and the mean angle are added. The reading of the figures is written by hand below the table, in
``docs/results/pap.md`` under "Reading", which this script keeps when it rewrites the file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "pap"

#: (config stem, table, row label as in the paper)
ROWS: list[tuple[str, str, str]] = [
    ("table1_depth", "1", "Depth only"),
    ("table1_semseg", "1", "Segmentation only"),
    ("table1_normals", "1", "Normal only"),
    ("table1_depth_semseg", "1", "Depth & Seg jointly"),
    ("table1_depth_normals", "1", "Depth & Normal jointly"),
    ("table1_semseg_normals", "1", "Segmentation & Normal jointly"),
    ("table1_all", "1", "Three tasks jointly (= aff-matrix on 1/8)"),
    ("table2_initial", "2", "initial prediction"),
    ("table2_no_cross_task", "2", "+ PAP w/o cross-task prop."),
    ("table2_cross_task", "2", "+ PAP cross-task prop."),
    ("table2_recon", "2", "+ PAP cross-task prop. + recon-net"),
    ("table2_pairwise", "2", "+ ... + pair-loss (= aff-matrix on 1/16, inner product)"),
    ("table2_cross_stitch", "2", "+ cross-stitch"),
    ("table2_cspn", "2", "+ CSPN"),
    ("table2_scale4", "2", "aff-matrix on 1/4"),
    ("table2_l1", "2", "L1 distance"),
]
READING_MARK = "## Reading"


def budget_overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"seed={args.seed}",
        f"data.size=[{args.size[0]},{args.size[1]}]",
        f"trainer.max_steps={args.steps}",
        "trainer.max_time=null",  # every row gets its steps, however long they take (no time-driven decay)
        "data.batch_size=8",
        f"trainer.val_every_n_steps={args.val_every}",
        f"data.split_args={{train: {{length: {args.train_length}, cache: true}}, val: {{length: {args.val_length}}}, "
        f"test: {{length: {args.test_length}}}}}",
        "trainer.progress_bar=false",
        "eval.panel_samples=2",
    ]


def run_row(stem: str, args: argparse.Namespace) -> dict | None:
    run_dir = args.out / stem
    result_file = run_dir / "metrics" / "test.json"
    if not result_file.is_file():
        if run_dir.exists():
            print(f"[{stem}] incomplete run folder {run_dir}: remove it to train this row again", flush=True)
            return None
        cmd = [
            sys.executable, "-m", "tridense", "train", "--config", str(CONFIGS / f"{stem}.yaml"),
            f"run_dir={run_dir}", *budget_overrides(args),
        ]  # fmt: skip
        print(f"[{stem}] {' '.join(cmd[3:])}", flush=True)
        started = time.time()
        log = run_dir.with_suffix(".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as handle:
            code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        print(f"[{stem}] exit {code} after {time.time() - started:.0f} s (log {log})", flush=True)
        if code != 0:
            return None
    result = json.loads(result_file.read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"results": result["results"], "seconds": summary["seconds"], "steps": summary["steps"]}


def cell(results: dict, task: str, key: str, scale: float = 1.0, digits: int = 3) -> str:
    if task not in results:
        return "-"
    return f"{results[task][key] * scale:.{digits}f}"


def report(rows: dict[str, dict | None], args: argparse.Namespace) -> str:
    lines = [
        "# PAP Tables 1 and 2 on the synthetic scenes",
        "",
        "Produced by `python benchmarks/pap_tables.py "
        f"--steps {args.steps} --size {args.size[0]}x{args.size[1]} --train-length {args.train_length}` "
        f"on {args.machine}.",
        "",
        f"Budget, the same for every row: {args.steps} steps of batch 8 at {args.size[0]}x{args.size[1]} from "
        f"random initialisation (AdamW, the default recipe of `configs/default.yaml`), {args.train_length} "
        f"training scenes, seed {args.seed}; the best checkpoint on {args.val_length} validation scenes "
        f"(validated every {args.val_every} steps) is tested on {args.test_length} test scenes. "
        "Depth rmse in metres, mIoU in percent (14 classes), normal angle rmse and mean in degrees.",
        "",
        "| table | row | config | depth rmse ↓ | δ1 ↑ | mIoU ↑ | normal rmse ↓ | normal mean ↓ | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stem, table, label in ROWS:
        if stem not in rows:
            continue
        row = rows[stem]
        if row is None:
            lines.append(f"| {table} | {label} | `{stem}` | failed | | | | | |")
            continue
        r = row["results"]
        lines.append(
            f"| {table} | {label} | `{stem}` | {cell(r, 'depth', 'rmse')} | {cell(r, 'depth', 'delta1')} | "
            f"{cell(r, 'semseg', 'miou', 100, 1)} | {cell(r, 'normals', 'rmse', 1, 1)} | "
            f"{cell(r, 'normals', 'mean', 1, 1)} | {row['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--size", type=lambda s: [int(v) for v in s.split("x")], default=[96, 128])
    parser.add_argument("--train-length", type=int, default=2400)
    parser.add_argument("--val-length", type=int, default=64)
    parser.add_argument("--test-length", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", nargs="*", help="config stems to run (default: all rows)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "pap_tables")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--machine", default=f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()

    stems = args.rows or [stem for stem, _, _ in ROWS]
    unknown = sorted(set(stems) - {stem for stem, _, _ in ROWS})
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {[stem for stem, _, _ in ROWS]}")
    rows: dict[str, dict | None] = {}
    for stem in stems:
        if args.report_only:
            done = args.out / stem / "metrics" / "test.json"
            rows[stem] = run_row(stem, args) if done.is_file() else None
        else:
            rows[stem] = run_row(stem, args)
    text = report(rows, args)
    print(text)
    args.docs.mkdir(parents=True, exist_ok=True)
    md = args.docs / "pap.md"
    reading = ""
    if md.is_file() and READING_MARK in md.read_text():
        reading = md.read_text()[md.read_text().index(READING_MARK) :]
    md.write_text(text + ("\n" + reading if reading else ""))
    (args.docs / "pap.json").write_text(json.dumps({"budget": vars(args) | {"out": str(args.out),
                                                    "docs": str(args.docs)}, "rows": rows}, indent=2))  # fmt: skip
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
