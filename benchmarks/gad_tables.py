"""GAD's Tables 4 and 5 on the synthetic scenes, with PAP and the multi-task baseline at the same budget.

Each row is one config trained with ``tridense train`` and the same overrides (input size, steps, data,
seed): the rows of Table 4 (``configs/gad/table4_*``), the partial-depth columns of Table 5
(``configs/gad/table5_depth0{20,40,60,80}``; 0 % is Table 4's "+ L_s" row and 100 % its last row, the same
configs), and, for the question "which method for segmentation from RGB", PAP and the multi-task baseline
trained on depth + segmentation (``configs/pap/table1_depth_semseg.yaml``, the baseline by overriding its
model). The best checkpoint's test metrics (the training's own evaluation, protocol ``custom``: pooled
confusion matrix over the test scenes, segmentation at the network's input size, which is the scenes' size
here) are collected into ``docs/results/gad.md`` and ``docs/results/gad.json``. Rows whose run folder already
holds ``metrics/test.json`` are not trained again, so an interrupted run continues. ``--seeds N`` trains each
chosen row with seeds ``--seed`` .. ``--seed + N - 1`` (run folders ``<out>/seed<k>/<row>``); the table shows the
seeds that ran, mean ± sample standard deviation, and a claim table reads each claim against that spread.

    python benchmarks/gad_tables.py                            # the whole set at the default budget
    python benchmarks/gad_tables.py --steps 2 --rows table4_spf pap --out /tmp/gad_tiny --docs /tmp/gad_docs
    python benchmarks/gad_tables.py --report-only              # rebuild the report from the run folders
    python benchmarks/gad_tables.py --seeds 3 --rows table4_focal table4_spf   # more seeds for some rows

The default budget (``--steps 1000``, 1000 training scenes, 96x128, batch 8) is sized so that the 15 rows take
at most 90 minutes on 2 free CPU cores: PAP's joint depth + segmentation row took 3.1 minutes for 500 steps
with its evaluation on that machine (``docs/results/pap.md``, float32); measured side by side on the shared
CPU, the full GAD row takes as long as PAP's, the segmentation-only rows about half, the others in between,
about 11.4 PAP-row equivalents in all: 11.4 x 3.1 min x 1000 / 500 = ~70 minutes (bf16 autocast on CPUs with
AMX makes it faster; a CPU shared with other jobs makes it slower). The reading of the figures is written by
hand below the table in ``docs/results/gad.md`` under "Reading", which this script keeps when it rewrites it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers, also when loaded by path
from _runs import REPO, read_run, seed_row, train_row, verdict, write_report
from _runs import budget_overrides as shared_budget

GAD = REPO / "configs" / "gad"
PAP_JOINT = REPO / "configs" / "pap" / "table1_depth_semseg.yaml"

#: (row id, config, extra overrides, table, label as in the paper)
ROWS: list[tuple[str, Path, list[str], str, str]] = [
    ("table4_sem_only", GAD / "table4_sem_only.yaml", [], "4", "sem-only (cross-entropy)"),
    ("table4_focal", GAD / "table4_focal.yaml", [], "4; 5: 0 %", "sem + L_s (focal)"),
    ("table4_hha", GAD / "table4_hha.yaml", [], "4", "sem + L_s + HHA"),
    ("table4_depem", GAD / "table4_depem.yaml", [], "4", "+ DepEm"),
    ("table4_featprop", GAD / "table4_featprop.yaml", [], "4", "+ FeatProp"),
    ("table4_vanconv", GAD / "table4_vanconv.yaml", [], "4", "+ VanConv"),
    ("table4_gap", GAD / "table4_gap.yaml", [], "4", "+ GAP"),
    ("table4_spf", GAD / "table4_spf.yaml", [], "4; 5: 100 %", "+ SPF (full GAD)"),
    ("ablation_focal_spf", GAD / "ablation_focal_spf.yaml", [], "ours", "sem + L_s + SPF, no depth (not in the paper)"),
    ("table5_depth020", GAD / "table5_depth020.yaml", [], "5", "depth on 20 % of the training scenes"),
    ("table5_depth040", GAD / "table5_depth040.yaml", [], "5", "depth on 40 %"),
    ("table5_depth060", GAD / "table5_depth060.yaml", [], "5", "depth on 60 %"),
    ("table5_depth080", GAD / "table5_depth080.yaml", [], "5", "depth on 80 %"),
    ("pap", PAP_JOINT, [], "compare", "PAP, depth + segmentation (PAP's Table 1 row)"),
    (
        "mtl_baseline",
        PAP_JOINT,
        ["model.name=mtl_baseline", "model.args=null", "loss.extra=null"],
        "compare",
        "multi-task baseline, depth + segmentation",
    ),
]


#: (task, metric key, scale, digits, higher is better) of the table's columns.
COLUMNS = [
    ("semseg", "pixel_acc", 100.0, 1, True),
    ("semseg", "mean_acc", 100.0, 1, True),
    ("semseg", "miou", 100.0, 1, True),
    ("depth", "rmse", 1.0, 3, False),
    ("depth", "delta1", 1.0, 3, True),
]
#: The paper's claims (and two questions of ours), each read against the spread: (label, worse row, better row).
CLAIMS: list[tuple[str, str, str]] = [
    ("the focal loss helps", "table4_sem_only", "table4_focal"),
    ("HHA (depth given as input) helps", "table4_focal", "table4_hha"),
    ("the depth embedding helps", "table4_focal", "table4_depem"),
    ("feature propagation helps", "table4_depem", "table4_featprop"),
    ("GAP helps", "table4_featprop", "table4_gap"),
    ("GAP beats the vanilla-conv fusion", "table4_vanconv", "table4_gap"),
    ("SPF helps", "table4_gap", "table4_spf"),
    ("the full model beats segmentation alone", "table4_focal", "table4_spf"),
    ("ours: the depth guidance helps once SPF is there", "ablation_focal_spf", "table4_spf"),
    ("ours: GAD beats the multi-task baseline", "mtl_baseline", "table4_spf"),
    ("ours: GAD beats PAP", "pap", "table4_spf"),
]


def budget_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    """The overrides every row shares: the budget (steps, batch, size, scenes, seed) and the evaluation."""
    return shared_budget(args, seed, panel_samples=0)


def _partial(config: Path) -> str | None:
    """Table 5's rows keep their ``partial`` split argument: the budget's ``data.split_args`` would clear it."""
    import yaml

    train = (yaml.safe_load(config.read_text()).get("data") or {}).get("split_args", {}).get("train", {})
    return None if "partial" not in train else f"{{depth: {train['partial']['depth']}}}"


def row_overrides(config: Path, extra: list[str], args: argparse.Namespace, seed: int) -> list[str]:
    overrides = [*budget_overrides(args, seed), *extra]
    partial = _partial(config)
    if partial is not None:
        i = next(k for k, o in enumerate(overrides) if o.startswith("data.split_args="))
        overrides[i] = (
            f"data.split_args={{train: {{length: {args.train_length}, cache: true, partial: {partial}, "
            f"partial_seed: 0}}, val: {{length: {args.val_length}}}, test: {{length: {args.test_length}}}}}"
        )
    return overrides


def run_dir_of(row: str, seed: int, args: argparse.Namespace) -> Path:
    return args.out / f"seed{seed}" / row


def run_one(row: str, config: Path, extra: list[str], seed: int, args: argparse.Namespace) -> dict | None:
    """One seed of one row: trained unless its folder holds ``metrics/test.json``; its results, or None."""
    run_dir = run_dir_of(row, seed, args)
    if not (run_dir / "metrics" / "test.json").is_file():
        if args.report_only:
            return None
        if not train_row(row, config, run_dir, row_overrides(config, extra, args, seed), tag=f"{row} seed {seed}"):
            return None
    result, summary = read_run(run_dir)
    return {
        "results": result["results"],
        "protocol": result.get("protocol"),
        "seconds": summary["seconds"],
        "steps": summary["steps"],
        "seed": seed,
    }


def run_row(row: str, config: Path, extra: list[str], args: argparse.Namespace) -> list[dict]:
    """Every seed of ``row`` (the runs that finished)."""
    seeds = range(args.seed, args.seed + args.seeds)
    return [r for seed in seeds if (r := run_one(row, config, extra, seed, args)) is not None]


def table(rows: dict[str, list[dict]]) -> list[str]:
    lines = [
        "| table | row | config | seeds | pixel acc ↑ | mean acc ↑ | mIoU ↑ | depth rmse ↓ | δ1 ↑ | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, config, _, table_no, label in ROWS:
        if row not in rows:
            continue
        lines.append(seed_row(table_no, label, config.relative_to(REPO).as_posix(), rows[row], COLUMNS))
    return lines


def claims(rows: dict[str, list[dict]]) -> list[str]:
    """Each claim on segmentation, the mean gain against the spread of the seeds (rows run in this report)."""
    lines = ["| claim | mIoU ↑ | mean acc ↑ |", "|---|---|---|"]
    for label, worse, better in CLAIMS:
        if worse in rows and better in rows:
            cells = [verdict(rows[worse], rows[better], "semseg", key, 100, True) for key in ("miou", "mean_acc")]
            lines.append(f"| {label} (`{worse}` -> `{better}`) | {' | '.join(cells)} |")
    return lines


def report(rows: dict[str, list[dict]], args: argparse.Namespace) -> str:
    runs = [r for row in rows.values() for r in row]
    protocols = sorted({r["protocol"] for r in runs if r.get("protocol")})
    minutes = sum(r["seconds"] for r in runs) / 60
    seeds = f"seed {args.seed}" if args.seeds == 1 else f"seeds {args.seed}-{args.seed + args.seeds - 1}"
    lines = [
        "# GAD Tables 4 and 5 on the synthetic scenes, with PAP and the multi-task baseline",
        "",
        "Produced by `python benchmarks/gad_tables.py "
        f"--steps {args.steps} --val-every {args.val_every} --size {args.size[0]}x{args.size[1]} "
        f"--train-length {args.train_length} --seeds {args.seeds}` on {args.machine}; "
        f"{minutes:.0f} minutes of training and testing in all.",
        "",
        f"Budget, the same for every row: {args.steps} steps of batch 8 at {args.size[0]}x{args.size[1]} from "
        f"random initialisation (ResNet-18; AdamW, the default recipe of `configs/default.yaml`), "
        f"{args.train_length} training scenes, {seeds} (a row shows the seeds that ran: mean ± sample standard "
        f"deviation where more than one); the best checkpoint on {args.val_length} "
        f"validation scenes (validated every {min(args.val_every, args.steps)} steps) is tested on "
        f"{args.test_length} test scenes. "
        f"Evaluation protocol: {', '.join(protocols) or 'custom'} (the training's test evaluation: confusion "
        "matrix pooled over the test scenes, 14 classes; not the authors' per-image `gad-per-image`). "
        "Pixel accuracy, mean accuracy and mIoU in percent; the auxiliary depth (rmse in metres, δ1) where the "
        "row has the depth branch.",
        "",
        *table(rows),
        "",
        "Claims against the spread (mean gain in points; `holds` when it exceeds the sum of the two rows' "
        "standard deviations over seeds, `contradicted` when it is below its negative; one-seed rows have no "
        "spread and are not judged):",
        "",
        *claims(rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--size", type=lambda s: [int(v) for v in s.split("x")], default=[96, 128])
    parser.add_argument("--train-length", type=int, default=1000)
    parser.add_argument("--val-length", type=int, default=64)
    parser.add_argument("--test-length", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per row (seed, seed + 1, ...)")
    parser.add_argument("--rows", nargs="*", help="row ids to run (default: all rows)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gad_tables")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--machine", default=f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.seeds < 1 or args.steps < 1:
        parser.error("--seeds and --steps must be >= 1")

    known = [row for row, *_ in ROWS]
    chosen = args.rows or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {known}")
    rows = {row: run_row(row, config, extra, args) for row, config, extra, *_ in ROWS if row in chosen}
    text = report(rows, args)
    print(text)
    args.docs.mkdir(parents=True, exist_ok=True)
    md = args.docs / "gad.md"
    write_report(md, text)
    budget = vars(args) | {"out": str(args.out), "docs": str(args.docs)}
    (args.docs / "gad.json").write_text(json.dumps({"budget": budget, "rows": rows}, indent=2))
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
