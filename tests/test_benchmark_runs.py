"""The seed statistics the table runners share (benchmarks/_runs.py): mean ± spread cells and claim verdicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _runs import mean_cell, verdict


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
