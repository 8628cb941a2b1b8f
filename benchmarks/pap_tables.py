"""PAP's Tables 1 and 2 (and Fig. 4) on the synthetic scenes: every row with the same budget, seeds repeated.

Each row is one config of ``configs/pap/`` trained with ``tridense train`` and the same overrides (input
size, steps, data, seed); the best checkpoint's metrics on the synthetic test split are collected into
``docs/results/pap.md`` (mean ± spread over the seeds, the budget, the machine, a per-claim comparison
against the spread) and ``docs/results/pap.json``. Rows whose run folder already holds
``metrics/test.json`` are not trained again, so an interrupted run continues; every finished run (and Fig. 4
sweep) is also appended to the ledger ``docs/results/pap_runs.jsonl`` (:class:`_runs.Ledger`), committed with
the page, so that the set can be run over several sessions or machines: a run whose row, reading, seed and
budget are in the ledger is not trained again.

Seeds: the rows that carry the paper's claims (:data:`CLAIM_ROWS`: initial, per-task, cross-task,
+ reconstruction, + pair-wise, cross-stitch, CSPN) get ``--seeds`` seeds, the rest one.
Eq. 4 readings (``--alpha-reading``, several allowed): every row with PAP's propagation runs once per reading
(``diffused``: beta = 0.05 on the diffused signal, the default; ``initial``: beta = 0.95; ``learned``: one
beta per task, learned from 0.5); rows without it (initial, cross-stitch, CSPN) run once and serve every
reading. ``--fig4`` also runs the Fig. 4 sweep (``benchmarks/pap_iterations.py``, diffusion steps changed
at test time) on the first seed's model of ``--fig4-row`` (``table1_all`` by default) under each reading.
``--loss-weighting``: ``eq5`` (the configs' λ_i = 1/3) or ``unit`` (λ_i = 1, the built-in default).

    python benchmarks/pap_tables.py --seeds 3 --alpha-reading diffused initial learned --fig4   # the issue's set
    python benchmarks/pap_tables.py --steps 2 --seeds 1 --rows table2_initial table2_cross_task  # a smoke test
    python benchmarks/pap_tables.py --seeds 3 --alpha-reading diffused initial --rows table2_initial \
        table2_no_cross_task table2_cross_task --fig4 --fig4-row table2_cross_task --page pap_eq4  # eq. 4 study
    python benchmarks/pap_tables.py --report-only ...      # rebuild the report from the run folders
    ... --fresh-reading                                     # replace the hand-written reading by the template

The paper's columns are depth rmse (m), segmentation mIoU (%) and the normal rmse of the angle (degrees);
δ1 and the mean angle are added. The hand-written reading below the generated part of
``docs/results/pap.md`` (from "## Reading") is kept when the script rewrites the file; ``--page`` names another
page (a partial set, e.g. the eq. 4 study ``docs/results/pap_eq4.md``, beside the full tables).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers, also when loaded by path
from _runs import REPO, Ledger, read_run, seed_row, train_row, verdict, write_report
from _runs import budget_overrides as shared_budget

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
#: Rows that carry the paper's claims: they get ``--seeds`` seeds.
CLAIM_ROWS = (
    "table2_initial", "table2_no_cross_task", "table2_cross_task", "table2_recon", "table2_pairwise",
    "table2_cross_stitch", "table2_cspn",
)  # fmt: skip
#: Rows whose block is not PAP's propagation: eq. 4's beta does not exist there (one run serves every reading).
NO_BETA = ("table2_initial", "table2_cross_stitch", "table2_cspn")
#: Overrides of each reading of eq. 4 (beta is always the weight of the diffused signal).
READINGS: dict[str, list[str]] = {
    "diffused": ["model.args.beta=0.05"],
    "initial": ["model.args.beta=0.95"],
    "learned": ["model.args.beta=0.5", "model.args.learn_beta=true"],
}
WEIGHTINGS: dict[str, list[str]] = {"eq5": [], "unit": ["loss.weights={}"]}
#: The paper's claims, each read against the spread: (label, worse row, better row).
CLAIMS: list[tuple[str, str, str]] = [
    ("per-task propagation helps", "table2_initial", "table2_no_cross_task"),
    ("cross-task beats per-task propagation", "table2_no_cross_task", "table2_cross_task"),
    ("the reconstruction network helps", "table2_cross_task", "table2_recon"),
    ("the pair-wise loss helps", "table2_recon", "table2_pairwise"),
    ("PAP beats cross-stitch", "table2_cross_stitch", "table2_pairwise"),
    ("PAP beats CSPN", "table2_cspn", "table2_pairwise"),
]
#: (task, metric key, scale, digits, higher is better) of the table's columns.
COLUMNS = [
    ("depth", "rmse", 1.0, 3, False),
    ("depth", "delta1", 1.0, 3, True),
    ("semseg", "miou", 100.0, 1, True),
    ("normals", "rmse", 1.0, 1, False),
    ("normals", "mean", 1.0, 1, False),
]


def budget_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    return [*shared_budget(args, seed, panel_samples=2), *WEIGHTINGS[args.loss_weighting]]


def seeds_of(stem: str, args: argparse.Namespace) -> list[int]:
    return [args.seed + k for k in range(args.seeds if stem in CLAIM_ROWS else 1)]


def run_dir_of(stem: str, reading: str, seed: int, args: argparse.Namespace) -> Path:
    group = "shared" if stem in NO_BETA else reading
    return args.out / args.loss_weighting / group / stem / f"seed{seed}"


def budget_key(args: argparse.Namespace) -> dict:
    """What makes two runs of one row and seed the same experiment (the ledger's key besides row and seed)."""
    return {
        "steps": args.steps, "size": list(args.size), "train_length": args.train_length,
        "val_length": args.val_length, "test_length": args.test_length, "val_every": args.val_every,
        "loss_weighting": args.loss_weighting,
    }  # fmt: skip


def run_key(stem: str, reading: str, seed: int, args: argparse.Namespace) -> dict:
    group = "shared" if stem in NO_BETA else reading
    return {"kind": "run", "row": stem, "reading": group, "seed": seed, **budget_key(args)}


def fig4_key(reading: str, args: argparse.Namespace) -> dict:
    return {**run_key(args.fig4_row, reading, args.seed, args), "kind": "fig4"}


def run_one(stem: str, reading: str, seed: int, args: argparse.Namespace) -> dict | None:
    """One row, reading and seed: from its run folder, else from the ledger, else trained now."""
    run_dir = run_dir_of(stem, reading, seed, args)
    result_file = run_dir / "metrics" / "test.json"
    key = run_key(stem, reading, seed, args)
    if not result_file.is_file():
        recorded = args.ledger.get(key)
        if recorded is not None:
            print(f"[{stem} {reading} seed {seed}] from the ledger {args.ledger.path}", flush=True)
            return recorded
        if args.report_only:
            return None
        extra = [] if stem in NO_BETA else READINGS[reading]
        overrides = [*budget_overrides(args, seed), *extra]
        if not train_row(stem, CONFIGS / f"{stem}.yaml", run_dir, overrides, tag=f"{stem} {reading} seed {seed}"):
            return None
    result, summary = read_run(run_dir)
    record = {"results": result["results"], "seconds": summary["seconds"], "steps": summary["steps"], "seed": seed}
    args.ledger.add(key, record)
    return record


def run_row(stem: str, reading: str, args: argparse.Namespace) -> list[dict]:
    """Every seed of ``stem`` under ``reading`` (the runs that finished)."""
    return [r for seed in seeds_of(stem, args) if (r := run_one(stem, reading, seed, args)) is not None]


def fig4(reading: str, args: argparse.Namespace) -> list[dict]:
    """The Fig. 4 sweep (diffusion steps at test time) of the first seed's ``--fig4-row`` model of ``reading``."""
    key = fig4_key(reading, args)
    ckpt = run_dir_of(args.fig4_row, reading, args.seed, args) / "checkpoints" / "best.ckpt"
    out = ckpt.parents[1] / "fig4.jsonl"
    if not out.is_file():
        recorded = args.ledger.get(key)
        if recorded is not None:
            return recorded["sweep"]
    if not ckpt.is_file():
        if not args.report_only:
            print(f"[fig4 {reading}] no checkpoint {ckpt} (run failed, or taken from the ledger): no sweep", flush=True)
        return []
    if not out.is_file() and not args.report_only:
        cmd = [
            sys.executable, str(REPO / "benchmarks" / "pap_iterations.py"), "--checkpoint", str(ckpt),
            "--limit", str(args.test_length), "--repeats", "3",
        ]  # fmt: skip
        print(f"[fig4 {reading}] {' '.join(cmd[1:])}", flush=True)
        text = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).stdout
        out.write_text(text)
    if not out.is_file():
        return []
    sweep = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    if sweep:
        args.ledger.add(key, {"sweep": sweep})
    return sweep


def table(rows: dict[str, list[dict]], reading: str) -> list[str]:
    lines = [
        "| table | row | config | seeds | depth rmse ↓ | δ1 ↑ | mIoU ↑ | normal rmse ↓ | normal mean ↓ | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stem, table_no, label in ROWS:
        if stem not in rows:
            continue
        lines.append(seed_row(table_no, label, stem, rows[stem], COLUMNS))
    return lines


def claims(rows: dict[str, list[dict]]) -> list[str]:
    lines = [
        "| claim | " + " | ".join(f"{t} {k} {'↑' if h else '↓'}" for t, k, _, _, h in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for label, worse, better in CLAIMS:
        if worse not in rows or better not in rows:
            continue
        cells = [verdict(rows[worse], rows[better], t, k, sc, h) for t, k, sc, _, h in COLUMNS]
        lines.append(f"| {label} (`{worse}` -> `{better}`) | " + " | ".join(cells) + " |")
    return lines


def report(by_reading: dict[str, dict[str, list[dict]]], sweeps: dict[str, list[dict]], args) -> str:
    lines = [
        "# PAP Tables 1 and 2 on the synthetic scenes",
        "",
        f"Produced by `python benchmarks/pap_tables.py {' '.join(args.argv)}` on {args.machine}"
        + (f"; the ledger's runs (`{args.ledger.path.name}`) were made at commit {', '.join(args.ledger.commits())}."
           if args.ledger.path is not None and args.ledger.commits() else "."),
        "",
        f"Budget, the same for every row: {args.steps} steps of batch 8 at {args.size[0]}x{args.size[1]} from "
        f"random initialisation (AdamW, the default recipe of `configs/default.yaml`), {args.train_length} "
        f"training scenes, task weights `{args.loss_weighting}` (eq5: λ_i = 1/3; unit: 1), pair-wise ξ = 0.2 on "
        f"the mean over 300 pairs; seeds {args.seed}..{args.seed + args.seeds - 1} for the claim rows "
        f"({', '.join(CLAIM_ROWS)}), seed {args.seed} for the rest; the best checkpoint on {args.val_length} "
        f"validation scenes (validated every {min(args.val_every, args.steps)} steps) is tested on {args.test_length} "
        "test scenes. "
        "Depth rmse in metres, mIoU in percent (14 classes), normal angle rmse and mean in degrees; "
        "several seeds: mean ± sample standard deviation.",
        "",
    ]
    for reading, rows in by_reading.items():
        lines += [
            f"## Eq. 4 reading `{reading}` ({' '.join(READINGS[reading])}; rows without PAP's block are shared)",
            "",
            *table(rows, reading),
            "",
            "Each claim against the spread (gain in the paper's direction, mean over seeds, against the sum of the"
            " two rows' standard deviations; 'holds' / 'contradicted' only beyond it):",
            "",
            *claims(rows),
            "",
        ]
        sweep = sweeps.get(reading)
        if sweep:
            keys = [k for k in ("rmse", "miou", "normal_rmse") if k in sweep[0]]
            lines += [
                f"Fig. 4 sweep (`{args.fig4_row}`, seed {args.seed}, trained with T = {sweep[0].get('trained_T')}; "
                "steps changed at test time):",
                "",
                "| T | seconds / image | " + " | ".join(keys) + " |",
                "|---|---|" + "---|" * len(keys),
                *[f"| {r['T']} | {r['seconds']} | " + " | ".join(str(r[k]) for k in keys) + " |" for r in sweep],
                "",
            ]
    return "\n".join(lines)


READING_TEMPLATE = """## Reading

(Written by hand after the runs; this section is kept when the script rewrites the file.) For each reading of
eq. 4, read each claim of the paper against the claim table above, not against one run:
- per-task propagation over the initial prediction; cross-task over per-task; reconstruction; pair-wise loss;
  PAP against cross-stitch and CSPN: which hold beyond the spread, under which reading;
- Fig. 4: do more diffusion steps help (monotone in T beyond the spread of the seeds), under which reading;
- which reading reproduces the paper's trends: the default of `beta` (docs/models.md) follows it.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--size", type=lambda s: [int(v) for v in s.split("x")], default=[96, 128])
    parser.add_argument("--train-length", type=int, default=1000)
    parser.add_argument("--val-length", type=int, default=64)
    parser.add_argument("--test-length", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the claim rows (the rest get one)")
    parser.add_argument("--alpha-reading", nargs="+", choices=list(READINGS), default=["diffused"])
    parser.add_argument("--loss-weighting", choices=list(WEIGHTINGS), default="eq5")
    parser.add_argument("--fig4", action="store_true", help="also run the Fig. 4 sweep per reading")
    parser.add_argument(
        "--fig4-row", default="table1_all", help="the row whose first-seed model the sweep varies (PAP's block)"
    )
    parser.add_argument("--rows", nargs="*", help="config stems to run (default: all rows)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "pap_tables")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--machine", default=f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--page", default="pap", help="the results page: <docs>/<page>.md and <page>.json")
    parser.add_argument(
        "--fresh-reading", action="store_true", help="start the hand-written reading from the template again"
    )
    parser.add_argument(
        "--ledger", type=Path, help="finished runs, reused across sessions (default: <docs>/<page>_runs.jsonl)"
    )
    parser.add_argument("--no-ledger", action="store_true", help="neither read nor write the ledger")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    if args.seeds < 1 or args.steps < 1:
        parser.error("--seeds and --steps must be >= 1")
    if args.fig4_row in NO_BETA or args.fig4_row not in {stem for stem, _, _ in ROWS}:
        parser.error(f"--fig4-row must be a row with PAP's propagation, got {args.fig4_row!r}")

    stems = args.rows or [stem for stem, _, _ in ROWS]
    unknown = sorted(set(stems) - {stem for stem, _, _ in ROWS})
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {[stem for stem, _, _ in ROWS]}")
    args.ledger = Ledger(None if args.no_ledger else (args.ledger or args.docs / f"{args.page}_runs.jsonl"))
    sweeps = {}
    if args.fig4:  # the swept model first, so that a session that trains it also sweeps it (checkpoints are not kept)
        for reading in args.alpha_reading:
            if args.ledger.get(fig4_key(reading, args)) is None:
                run_one(args.fig4_row, reading, args.seed, args)
            sweeps[reading] = fig4(reading, args)
    by_reading = {reading: {stem: run_row(stem, reading, args) for stem in stems} for reading in args.alpha_reading}
    text = report(by_reading, sweeps, args)
    print(text)
    args.docs.mkdir(parents=True, exist_ok=True)
    md = args.docs / f"{args.page}.md"
    write_report(md, text, keep_reading=not args.fresh_reading, template=READING_TEMPLATE)
    budget = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "ledger"}
    budget["ledger"] = None if args.ledger.path is None else str(args.ledger.path)
    budget["commits"] = args.ledger.commits()
    payload = {"budget": budget, "readings": by_reading, "fig4": sweeps}
    (args.docs / f"{args.page}.json").write_text(json.dumps(payload, indent=2))
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
