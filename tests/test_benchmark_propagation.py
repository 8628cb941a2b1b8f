"""benchmarks/pap_propagation.py at a tiny grid: every case and the auto-versus-fastest summary are printed, and
the one-process training step (what ``--half-res-step`` runs at n = 76,800) times its pass apart from auto's
calibration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pap_propagation.py"
SMALL = ["--channels", "4", "--in-channels", "6", "--pred-channels", "1,3,5", "--feature-channels", "4"]


def _lines(*argv: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *SMALL, "--threads", "1", *argv], capture_output=True, text=True, check=True
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_cases_the_auto_summary_and_their_tables(tmp_path):
    lines = _lines("--sizes", "6x8", "--modes", "dense", "chunked", "auto", "--passes", "train", "--repeats", "1")
    cases, summaries = lines[:3], lines[3:]
    assert [c["mode"] for c in cases] == ["dense", "chunked", "auto"]
    assert all(c["seconds"] > 0 and c["peak_mb"] >= 0 and "error" not in c for c in cases)
    assert cases[2]["resolved"] in {"dense", "chunked", "fused"}
    (line,) = summaries
    assert line["summary"] == "6x8 train" and line["fastest_fitting"] in {"dense", "chunked"}
    assert line["within_10pct"] == (line["auto_over_fastest"] <= 1.10)
    saved = tmp_path / "out.jsonl"
    saved.write_text("".join(json.dumps(r) + "\n" for r in lines))
    done = subprocess.run([sys.executable, str(SCRIPT), "--table", str(saved)], capture_output=True, text=True)
    rows = [row for row in done.stdout.splitlines() if row.startswith("| 48 |") or row.startswith("| 6x8 train |")]
    assert len(rows) == 4 and "| dense (dense) |" in rows[0] and "| 100 % | 100 % |" in rows[0]
    assert rows[3].split(" | ")[5] == f"{line['auto_over_fastest']:.3f}"


def test_the_one_process_step_times_the_pass_apart_from_the_calibration():
    (step,) = _lines("--one-case", "--measure", "step", "--sizes", "6x8", "--modes", "auto", "--passes", "train")
    assert step["calibration_size"] == "6x8" and step["resolved"] in {"dense", "chunked", "fused"}
    assert step["seconds"] >= 0 and step["calibration_seconds"] >= 0
    assert step["calibrated_again_in_pass"] is False  # the pass reuses the calibration: its time is the pass
    assert step["process_peak_mb"] >= step["rss_peak_mb"] >= 0
