"""``tridense evaluate --protocol NAME`` on a checkpoint and on saved predictions (``--predictions DIR``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tridense.cli import main
from tridense.data.io import read_depth_png
from tridense.data.kitti import KB_CROP, kb_crop_box
from tridense.metrics.protocols import PROTOCOLS
from tridense.training.config import load_config

REPO = Path(__file__).resolve().parents[1]

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
    with pytest.raises(SystemExit) as exited:  # argparse: one line naming the valid protocols, status 2
        main(["evaluate", *DATA, "--checkpoint", str(checkpoint), "--protocol", "nyu"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nyu'" in err and "'eigen-nyu'" in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", *DATA, "--checkpoint", str(checkpoint), "--protocol", "eigen-nyu", "--crop", "garg"]) == 2
    assert "--crop" in capsys.readouterr().err
    assert main(["evaluate", *DATA]) == 2  # neither --checkpoint nor --predictions
    assert main(["evaluate", *DATA, "--predictions", str(tmp_path)]) == 2  # no prediction files there
    assert "depth prediction" in capsys.readouterr().err


def _kitti_layout(shared: Path, root: Path) -> tuple[Path, Path, Path]:
    """kitti-mini laid out as KITTI raw + the depth benchmark, with an Eigen-style list file."""
    date, drive = "2011_09_26", "2011_09_26_drive_0001_sync"
    intr = json.loads((shared / "kitti-mini" / "intrinsics.json").read_text())
    raw, gt, lines = root / "raw", root / "gt", []
    for png in sorted((shared / "kitti-mini" / "rgb").glob("*.png")):
        image = raw / date / drive / "image_02" / "data" / png.name
        depth = gt / "val" / drive / "proj_depth" / "groundtruth" / "image_02" / png.name
        for target, source in ((image, png), (depth, shared / "kitti-mini" / "depth" / png.name)):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        lines.append(f"{image.relative_to(raw)} {depth.relative_to(gt / 'val')} {intr['fx']}")
    P = [intr["fx"], 0, intr["cx"], 0, 0, intr["fy"], intr["cy"], 0, 0, 0, 1, 0]
    (raw / date / "calib_cam_to_cam.txt").write_text("P_rect_02: " + " ".join(f"{v:.6e}" for v in P) + "\n")
    (root / "eigen.txt").write_text("\n".join(lines) + "\n")
    return raw, gt, root / "eigen.txt"


def test_table7_protocol_scores_kb_cropped_frames_in_the_full_frame_region(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Saved predictions of kb-cropped and of full KITTI frames score the same under the Table 7 config's protocol."""
    cfg = load_config(REPO / "configs" / "pap" / "table7_kitti_stage2_depth.yaml", [])
    assert cfg.eval.protocol == "kitti-eigen-garg" and cfg.data.args["kb_crop"] is True
    raw, gt, listing = _kitti_layout(shared_data, tmp_path)
    full, cropped = tmp_path / "full", tmp_path / "kb"
    full.mkdir(), cropped.mkdir()
    for png in sorted((shared_data / "kitti-mini" / "depth").glob("*.png")):
        g = read_depth_png(png, 256.0)  # (375, 1242)
        wave = np.sin(np.arange(g.size).reshape(g.shape) * 0.001)
        pred = (np.where(g > 0, g, 20.0) * (1 + 0.2 * wave)).astype(np.float32)  # a dense prediction
        top, left = kb_crop_box(*g.shape)
        stem = f"2011_09_26_drive_0001_sync_image_02_{png.stem}"
        np.save(full / f"{stem}_depth.npy", pred)
        np.save(cropped / f"{stem}_depth.npy", pred[top : top + KB_CROP[0], left : left + KB_CROP[1]])
    results = {}
    for name, folder, kb in (("full", full, "false"), ("kb", cropped, "true")):
        out = tmp_path / f"{name}.json"
        args = ["--dataset", "kitti", "--root", str(raw), "--split", "test", "--predictions", str(folder)]
        sets = ["--set", f"list_file={listing}", f"gt_path={gt}", f"kb_crop={kb}"]
        assert main(["evaluate", *args, *sets, "--protocol", cfg.eval.protocol, "--json", str(out)]) == 0
        results[name] = json.loads(out.read_text())["results"]
    for task in ("depth", "kitti"):
        assert results["kb"][task] == pytest.approx(results["full"][task], rel=1e-9)


def test_saved_labels_outside_the_classes_are_a_clear_error(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    saved = tmp_path / "pred"
    assert main(["evaluate", *DATA, "--checkpoint", str(checkpoint), "--save", str(saved)]) == 0
    label_file = sorted(saved.glob("*_semseg.png"))[0]
    Image.fromarray(np.full((32, 48), 200, dtype=np.uint8)).save(label_file)  # e.g. 255-style "unlabelled"
    capsys.readouterr()
    assert main(["evaluate", *DATA, "--predictions", str(saved), "--protocol", "mtl-nyud"]) == 2
    err = capsys.readouterr().err
    assert label_file.name in err and "outside 0..13" in err
