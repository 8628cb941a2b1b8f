"""What the table benchmarks share: one row trained with ``tridense train``, its results read back, cells formatted.

Imported by ``benchmarks/pap_tables.py``, ``benchmarks/gad_tables.py`` and ``benchmarks/asm_experiments.py``
(scripts run from the repository root; each puts this folder on ``sys.path`` so that loading it by path works too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READING_MARK = "## Reading"


def commit_of(repo: Path = REPO) -> str:
    """The repository's short commit hash (``-dirty`` with uncommitted changes outside ``docs/``, where the
    results and the ledger are written), ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
        status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs"]  # not the pages
        dirty = subprocess.run(status, cwd=repo, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


class Ledger:
    """Finished runs kept as JSON lines in a file that is committed with the results page.

    A table of many rows and seeds takes hours of CPU; its run folders (checkpoints, logs) are not committed, so
    an experiment spread over several sessions or machines would otherwise start again each time. Each finished
    run appends one line ``{"key": ..., "commit": ..., "record": ...}``; a run whose ``key`` (row, reading,
    seed and the whole budget) is already in the file is not trained again, and its record is used as is. A run
    with another budget has another key, so a changed budget never reuses a result. Delete lines (or the file,
    or pass ``--no-ledger``) to train runs again.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path is None or not path.is_file():
            return
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = self._canonical(entry["key"])
                entry["record"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{path}:{number}: expected a JSON object with 'key' and 'record' ({error}); fix or delete the line"
                ) from error
            self.entries[key] = entry

    @staticmethod
    def _canonical(key: dict) -> str:
        return json.dumps(key, sort_keys=True)

    def get(self, key: dict) -> dict | None:
        """The record of the run ``key`` names, or ``None``."""
        entry = self.entries.get(self._canonical(key))
        return None if entry is None else entry["record"]

    def add(self, key: dict, record: dict) -> None:
        """Append the record of a finished run (nothing when ``key`` is already there or there is no file)."""
        canonical = self._canonical(key)
        if self.path is None or canonical in self.entries:
            return
        entry = {"key": key, "commit": commit_of(), "record": record}
        self.entries[canonical] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")

    def commits(self) -> list[str]:
        """The commits the ledger's runs were made at, in order of first appearance."""
        return list(dict.fromkeys(entry.get("commit", "unknown") for entry in self.entries.values()))


def budget_overrides(args: argparse.Namespace, seed: int, panel_samples: int) -> list[str]:
    """The overrides every row of a table shares: the budget (steps, batch 8, size, scenes, seed) and the
    evaluation (``panel_samples`` panels, validation every ``--val-every`` steps)."""
    return [
        f"seed={seed}",
        f"data.size=[{args.size[0]},{args.size[1]}]",
        f"trainer.max_steps={args.steps}",
        "trainer.max_time=null",  # every row gets its steps, however long they take (no time-driven decay)
        "data.batch_size=8",
        f"trainer.val_every_n_steps={min(args.val_every, args.steps)}",
        f"data.split_args={{train: {{length: {args.train_length}, cache: true}}, val: {{length: {args.val_length}}}, "
        f"test: {{length: {args.test_length}}}}}",
        "trainer.progress_bar=false",
        f"eval.panel_samples={panel_samples}",
    ]


def train_row(name: str, config: Path, run_dir: Path, overrides: list[str], tag: str | None = None) -> bool:
    """Train one row: ``tridense train --config config run_dir=... *overrides``, its output in ``run_dir.log``.

    Args:
        name: the row's name in the progress lines.
        config: the row's config file.
        run_dir: the run folder; an existing one (an interrupted run) is not trained again.
        overrides: the row's overrides, after ``run_dir``.
        tag: the name in the line that shows the command (default ``name``).

    Returns:
        Whether the training ran and exited 0.
    """
    if run_dir.exists():
        print(f"[{name}] incomplete run folder {run_dir}: remove it to train this row again", flush=True)
        return False
    cmd = [
        sys.executable, "-m", "tridense", "train", "--config", str(config), f"run_dir={run_dir}", *overrides,
    ]  # fmt: skip
    print(f"[{tag or name}] {' '.join(cmd[3:])}", flush=True)
    started = time.time()
    log = run_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    print(f"[{name}] exit {code} after {time.time() - started:.0f} s (log {log})", flush=True)
    return code == 0


def read_run(run_dir: Path, metrics: str = "test.json") -> tuple[dict, dict]:
    """The ``metrics/<metrics>`` file and the ``summary.json`` of a finished run folder."""
    result = json.loads((run_dir / "metrics" / metrics).read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    return result, summary


def cell(results: dict, task: str, key: str, scale: float = 1.0, digits: int = 3) -> str:
    """``results[task][key] * scale`` with ``digits`` decimals, ``-`` where the run has no such value."""
    value = results.get(task, {}).get(key)
    return "-" if value is None else f"{value * scale:.{digits}f}"


def values(runs: list[dict], task: str, key: str, scale: float = 1.0) -> list[float]:
    """``results[task][key] * scale`` of each run (of several seeds) that has it."""
    return [r["results"][task][key] * scale for r in runs if key in r["results"].get(task, {})]


def spread(xs: list[float]) -> float:
    """The sample standard deviation (0 for one value)."""
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def mean_cell(runs: list[dict], task: str, key: str, scale: float = 1.0, digits: int = 3) -> str:
    """The mean ± sample standard deviation of ``results[task][key] * scale`` over ``runs`` (the value alone
    for one run, ``-`` for none)."""
    xs = values(runs, task, key, scale)
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {spread(xs):.{digits}f}"


def seed_row(table_no: str, label: str, name: str, runs: list[dict], columns: list[tuple]) -> str:
    """One markdown row of a seed table: table, label, config ``name``, the number of seeds, the mean ± spread
    cell of each ``(task, key, scale, digits, higher)`` column and the mean minutes (``failed`` for no run)."""
    if not runs:
        return f"| {table_no} | {label} | `{name}` | 0 | failed |" + " |" * len(columns)
    cells = [mean_cell(runs, task, key, scale, digits) for task, key, scale, digits, _ in columns]
    minutes = statistics.mean(r["seconds"] for r in runs) / 60
    return f"| {table_no} | {label} | `{name}` | {len(runs)} | {' | '.join(cells)} | {minutes:.1f} |"


def verdict(worse: list[dict], better: list[dict], task: str, key: str, scale: float, higher: bool) -> str:
    """How one claim ("``better`` beats ``worse``") reads on one metric: the mean gain in the claim's direction
    against the sum of the two rows' spreads over seeds (``holds`` above it, ``contradicted`` below its
    negative, ``within spread`` between)."""
    a, b = values(worse, task, key, scale), values(better, task, key, scale)
    if not a or not b:
        return "-"
    gain = (statistics.mean(b) - statistics.mean(a)) * (1 if higher else -1)
    noise = spread(a) + spread(b)
    if len(a) < 2 or len(b) < 2:
        return f"{gain:+.3g} (one seed: no spread)"
    word = "holds" if gain > noise else ("contradicted" if gain < -noise else "within spread")
    return f"{gain:+.3g} vs spread {noise:.2g}: {word}"


def write_report(md: Path, text: str, keep_reading: bool = True, template: str = "") -> None:
    """Write ``text`` to ``md``, followed by the hand-written reading already there (from :data:`READING_MARK`,
    when ``keep_reading``) or else by ``template``."""
    old = md.read_text() if md.is_file() else ""
    reading = old[old.index(READING_MARK) :] if keep_reading and READING_MARK in old else template
    md.write_text(text + ("\n" + reading if reading else ""))
