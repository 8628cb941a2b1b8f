"""The seed statistics the table runners share (benchmarks/_runs.py): mean ± spread cells and claim verdicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _runs import Ledger, mean_cell, verdict


def _runs(*mious: float) -> list[dict]:
    return [{"results": {"semseg": {"miou": m}}} for m in mious]


def test_mean_cell_shows_mean_and_sample_spread():
    assert mean_cell(_runs(0.30, 0.32, 0.34), "semseg", "miou", 100, 1) == "32.0 ± 2.0"
    assert mean_cell(_runs(0.3), "semseg", "miou", 100, 1) == "30.0"
    assert mean_cell(_runs(0.3), "depth", "rmse") == "-"


@pytest.mark.parametrize(
    ("worse", "better", "word"),
    [
        ((0.30, 0.31, 0.32), (0.40, 0.41, 0.42), "holds"),  # gain 10 points, spreads 1 + 1
        ((0.30, 0.31, 0.32), (0.31, 0.32, 0.33), "within spread"),  # gain 1 < 2
        ((0.40, 0.41, 0.42), (0.30, 0.31, 0.32), "contradicted"),
    ],
)
def test_verdict_reads_the_gain_against_both_spreads(worse, better, word):
    text = verdict(_runs(*worse), _runs(*better), "semseg", "miou", 100, True)
    assert text.endswith(word) and "spread 2" in text


def test_verdict_follows_the_metric_direction_and_refuses_one_seed():
    lower_is_better = verdict(_runs(0.5, 0.52), _runs(0.3, 0.31), "semseg", "miou", 1, False)
    assert lower_is_better.endswith("holds")
    assert "one seed" in verdict(_runs(0.3), _runs(0.4, 0.41), "semseg", "miou", 100, True)


def test_the_ledger_returns_a_finished_run_and_keeps_it_across_instances(tmp_path):
    path = tmp_path / "runs.jsonl"
    key = {"kind": "run", "row": "table2_initial", "reading": "shared", "seed": 1, "steps": 500}
    ledger = Ledger(path)
    assert ledger.get(key) is None
    ledger.add(key, {"results": {"semseg": {"miou": 0.3}}, "seed": 1})
    ledger.add(key, {"results": {"semseg": {"miou": 0.9}}, "seed": 1})  # already there: not replaced
    again = Ledger(path)
    assert again.get(dict(reversed(key.items())))["results"]["semseg"]["miou"] == 0.3  # key order is irrelevant
    assert len(path.read_text().splitlines()) == 1
    assert again.commits() and all(isinstance(c, str) for c in again.commits())


def test_the_ledger_never_reuses_a_run_of_another_budget_or_seed(tmp_path):
    ledger = Ledger(tmp_path / "runs.jsonl")
    ledger.add({"row": "a", "seed": 0, "steps": 500}, {"x": 1})
    assert ledger.get({"row": "a", "seed": 0, "steps": 250}) is None
    assert ledger.get({"row": "a", "seed": 1, "steps": 500}) is None
    assert ledger.get({"row": "a", "seed": 0, "steps": 500}) == {"x": 1}


def test_a_ledger_without_a_file_writes_nothing(tmp_path):
    ledger = Ledger(None)
    ledger.add({"row": "a"}, {"x": 1})
    assert ledger.get({"row": "a"}) is None and list(tmp_path.iterdir()) == []


def test_a_broken_ledger_line_is_named(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"key": {"row": "a"}, "record": {}}\n{"key": {"row": "b"}}\n')
    with pytest.raises(ValueError, match=r"runs\.jsonl:2: expected a JSON object with 'key' and 'record'"):
        Ledger(path)


def test_pap_tables_builds_its_page_from_the_ledger_when_the_run_folders_are_gone(tmp_path, monkeypatch, capsys):
    import pap_tables

    args = ["--rows", "table2_initial", "--seeds", "2", "--out", str(tmp_path / "runs"), "--docs", str(tmp_path)]
    namespace = type("Args", (), {})()
    namespace.__dict__.update(
        steps=500, size=[96, 128], train_length=1000, val_length=64, test_length=200, val_every=250,
        loss_weighting="eq5",
    )  # fmt: skip
    ledger = Ledger(tmp_path / "pap_runs.jsonl")
    for seed, miou in [(0, 0.30), (1, 0.34)]:
        record = {"results": {"semseg": {"miou": miou}}, "seconds": 60.0, "steps": 500, "seed": seed}
        ledger.add(pap_tables.run_key("table2_initial", "diffused", seed, namespace), record)
    monkeypatch.setattr(sys, "argv", ["pap_tables.py", *args, "--report-only"])
    pap_tables.main()
    page = (tmp_path / "pap.md").read_text()
    assert "| 2 | initial prediction | `table2_initial` | 2 | - | - | 32.0 ± 2.8 | - | - | 1.0 |" in page
    assert "ledger's runs (`pap_runs.jsonl`)" in page
    assert "from the ledger" in capsys.readouterr().out
