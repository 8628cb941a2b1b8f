"""``tridense evaluate --protocol NAME`` on a checkpoint and on saved predictions (``--predictions DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tridense.cli import main
from tridense.metrics.protocols import PROTOCOLS

TINY = [
    "data.size=[32,48]",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.split_args={train: {length: 4}, val: {length: 2}, test: {length: 2}}",
    "trainer.progress_bar=false",
    "trainer.precision=32-true",
    "trainer.val_every_n_steps=null",
    "trainer.max_steps=1",
    "eval.panel_samples=0",
    "model.args={task_channels: 16, recon_channels: 8, lateral_channels: 8}",
]
DATA = ["--dataset", "synthetic", "--split", "test", "--set", "length=3", "size=[32,48]"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PAP checkpoint of one step, trained under ``eval.protocol=mtl-nyud`` (the config key works)."""
    run = tmp_path_factory.mktemp("evaluate") / "run"
    assert main(["train", f"run_dir={run}", "eval.protocol=mtl-nyud", *TINY]) == 0
    return run / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize("protocol", ["mtl-nyud", "mtan-nyuv2", "eigen-nyu"])
def test_checkpoint_and_its_saved_predictions_give_the_same_numbers(
    checkpoint: Path, tmp_path: Path, protocol: str, capsys: pytest.CaptureFixture
) -> None:
    saved, first, second = tmp_path / "pred", tmp_path / "a.json", tmp_path / "b.json"
    args = ["evaluate", *DATA, "--protocol", protocol]
    assert main([*args, "--checkpoint", str(checkpoint), "--save", str(saved), "--json", str(first)]) == 0
    assert f"protocol: {protocol}" in capsys.readouterr().out
    assert main([*args, "--predictions", str(saved), "--json", str(second)]) == 0
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["protocol"] == b["protocol"] == a["settings"]["protocol"] == protocol
    assert a["settings"]["protocol_settings"] == json.loads(json.dumps(PROTOCOLS[protocol].to_dict()))
    assert set(a["results"]) == set(b["results"]) == set(PROTOCOLS[protocol].tasks()) & {"depth", "normals", "semseg"}
    for task, values in a["results"].items():
        for key, value in values.items():
            if not isinstance(value, list):  # depth saved as float32 .npy, normals .npy, labels .png
                assert b["results"][task][key] == pytest.approx(value, rel=1e-5, abs=0.02), (task, key)


def test_training_records_its_protocol(checkpoint: Path) -> None:
    payload = json.loads((checkpoint.parents[1] / "metrics" / "test.json").read_text())
    assert payload["protocol"] == "mtl-nyud"
    assert set(payload["results"]["depth"]) == {"rmse", "rmse_log"}  # the protocol's metric set
    assert set(payload["results"]["semseg"]) == {"miou", "iou"}


def test_protocol_errors_are_clear(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", *DATA, "--checkpoint", str(checkpoint), "--protocol", "nyu"]) == 2
    assert "unknown evaluation protocol 'nyu'" in capsys.readouterr().err
    assert main(["evaluate", *DATA, "--checkpoint", str(checkpoint), "--protocol", "eigen-nyu", "--crop", "garg"]) == 2
    assert "--crop" in capsys.readouterr().err
    assert main(["evaluate", *DATA]) == 2  # neither --checkpoint nor --predictions
    assert main(["evaluate", *DATA, "--predictions", str(tmp_path)]) == 2  # no prediction files there
    assert "depth prediction" in capsys.readouterr().err
