"""The ``tridense`` command as a user runs it: train -> evaluate -> predict -> export -> analyze, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tridense.cli import main

TINY = [
    "data.size=[32,48]",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.split_args={train: {length: 8}, val: {length: 4}, test: {length: 4}}",
    "trainer.progress_bar=false",
    "trainer.precision=32-true",
    "trainer.val_every_n_steps=null",  # validate at every epoch end
    "trainer.max_steps=4",
    "eval.panel_samples=1",
    "model.args={task_channels: 32, recon_channels: 16, lateral_channels: 16}",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PAP run of a few steps (the default model), trained through the command line."""
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", f"run_dir={run}", *TINY]) == 0
    return run


def test_train_writes_the_run_folder(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    config = (run_dir / "config.yaml").read_text()
    assert "name: pap" in config  # PAP is the default model
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    result = json.loads((run_dir / "metrics" / "test.json").read_text())
    assert set(result["results"]) == {"depth", "normals", "semseg"}


def test_evaluate_prints_and_writes_json(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval.json"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(run_dir / "checkpoints" / "best.ckpt"),
            "--dataset",
            "synthetic",
            "--split",
            "test",
            "--set",
            "length=3",
            "size=[32,48]",
            "--flip",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| depth | delta1 |" in printed and "| semseg | miou |" in printed
    payload = json.loads(out.read_text())
    assert payload["settings"]["flip"] is True
    assert 0.0 <= payload["results"]["depth"]["delta1"] <= 1.0
    # The JSON exists now: a second run without --overwrite refuses to replace it.
    before = out.read_bytes()
    assert main(["evaluate", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"), "--dataset", "synthetic",
                 "--set", "length=1", "size=[32,48]", "--json", str(out)]) == 2  # fmt: skip
    assert out.read_bytes() == before


def test_predict_on_a_real_nyu_image_then_export(
    run_dir: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = shared_data / "nyu-mini" / "rgb" / sorted(p.name for p in (shared_data / "nyu-mini" / "rgb").iterdir())[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "pred"
    code = main(["predict", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"), str(image), str(broken),
                 "--out", str(out), "--output-size", "input"])  # fmt: skip
    assert code == 1  # one input failed: reported, skipped, non-zero exit
    err = capsys.readouterr().err
    assert "broken.png" in err
    stem = image.stem
    depth_png = np.asarray(Image.open(out / f"{stem}_depth.png"))
    depth = np.load(out / f"{stem}_depth.npy")
    assert depth_png.dtype == np.uint16 and depth.shape == (480, 640) == depth_png.shape
    assert (depth > 0).all()
    np.testing.assert_allclose(depth_png / 1000.0, depth, atol=1e-3)
    normals = np.load(out / f"{stem}_normals.npy")
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
    labels = np.asarray(Image.open(out / f"{stem}_semseg.png"))
    assert labels.shape == (480, 640) and labels.max() < 14
    header = (out / f"{stem}_points.ply").read_bytes()[:200].decode("ascii", "replace")
    assert header.startswith("ply") and "element vertex" in header
    assert (out / f"{stem}_panel.png").is_file()

    # Existing outputs are kept without --overwrite: refused before anything is written.
    stamp = (out / f"{stem}_depth.npy").stat().st_mtime_ns
    assert main(["predict", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"), str(image),
                 "--out", str(out)]) == 2  # fmt: skip
    assert "--overwrite" in capsys.readouterr().err
    assert (out / f"{stem}_depth.npy").stat().st_mtime_ns == stamp

    # The exported package predicts the same depth as the checkpoint.
    package = tmp_path / "package"
    assert main(["export", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"), "--out", str(package)]) == 0
    assert (package / "model.safetensors").is_file() and (package / "config.yaml").is_file()
    out2 = tmp_path / "pred2"
    args = ["predict", "--checkpoint", str(package), str(image), "--out", str(out2), "--output-size", "input"]
    assert main(args) == 0
    np.testing.assert_allclose(np.load(out2 / f"{stem}_depth.npy"), depth, rtol=1e-4, atol=1e-5)


def test_analyze_affinity_on_a_real_image(run_dir: Path, shared_data: Path, tmp_path: Path, capsys) -> None:
    image = next(iter(sorted((shared_data / "nyu-mini" / "rgb").iterdir())))
    out = tmp_path / "affinity.png"
    code = main(["analyze", "affinity", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"),
                 "--image", str(image), "--point", "320,240", "--out", str(out)])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["tasks"]) == {"depth", "normals", "semseg"}
    for target, weights in summary["mixing_weights"].items():
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-3), target
    figure = np.asarray(Image.open(out))
    assert figure.shape == (3 * 480, 3 * 640, 3)  # one row per task: input | single-task | cross-task
    # A point outside the image is a clear error, not a crash.
    assert main(["analyze", "affinity", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"),
                 "--image", str(image), "--point", "900,10", "--out", str(tmp_path / "x.png")]) == 2  # fmt: skip
    assert "outside" in capsys.readouterr().err


def test_user_errors_are_one_message_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "model.nmae=pap"]) == 2
    assert "nmae" in capsys.readouterr().err
    assert main(["train", "model.name=no_such_model", f"run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "no_such_model" in err and "pap" in err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.ckpt"), "--dataset", "synthetic"]) == 2
    assert "missing.ckpt" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.ckpt"), "--dataset", "nyuv2_folder",
                 "--root", str(tmp_path / "nowhere")]) == 2  # fmt: skip


def test_info_lists_models_and_dataset_layouts(capsys: pytest.CaptureFixture) -> None:
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    for name in ("pap_resnet18", "mtl_baseline", "cross_stitch", "cspn", "nyuv2_labeled", "kitti", "eigen_nyu"):
        assert name in printed
    assert main(["info", "--dataset", "nyuv2_labeled"]) == 0
    assert "nyu_depth_v2_labeled.mat" in capsys.readouterr().out


def test_predict_works_at_a_working_size_with_legends_and_one_note(
    run_dir: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Real photos: one note about the synthetic-only model, maps at the prediction's size by default, class
    names in predictions.json, a progress count, and a KITTI frame's panel stacked instead of a long strip."""
    nyu = sorted((shared_data / "nyu-mini" / "rgb").iterdir())[:2]
    kitti = sorted((shared_data / "kitti-mini" / "rgb").iterdir())[0]
    out = tmp_path / "pred"
    code = main(["predict", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"), *map(str, nyu), str(kitti),
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("trained only on synthetic rooms") == 1
    assert "predict" in err and "3/3" in err  # progress bar with the count
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["classes"][:2] == ["wall", "floor"]
    # A 480x640 photo from a 32x48-trained model: the maps stay at the prediction's resolution.
    first = summary["images"][str(nyu[0])]
    assert first["input_size"] == [480, 640] and first["output_size"] == first["prediction_size"]
    assert np.load(out / f"{nyu[0].stem}_depth.npy").shape == tuple(first["prediction_size"])
    h, w = first["prediction_size"]
    assert h * w <= 2 * 32 * 48
    # The KITTI frame (about 1:3.3) keeps its aspect, and its panel stacks the tiles in a column.
    wide = summary["images"][str(kitti)]
    ph, pw = wide["prediction_size"]
    assert pw / ph > 2.5
    panel = np.asarray(Image.open(out / f"{kitti.stem}_panel.png"))
    tile_width = pw * -(-192 // ph)  # enlarged to 192 rows at least
    assert panel.shape[0] > 4 * 192 and panel.shape[1] < 1.5 * tile_width  # 4 tiles in a column
    square = np.asarray(Image.open(out / f"{nyu[0].stem}_panel.png"))
    assert square.shape[1] > 4 * square.shape[0] / 1.5  # side by side, with the colour bar, key and legend
    assert square.shape[0] >= 192  # a small prediction is enlarged to be seen
    # --output-size WxH writes at that size; the point cloud stays at the prediction's resolution.
    out2 = tmp_path / "pred2"
    assert main(["predict", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"), str(nyu[0]),
                 "--out", str(out2), "--output-size", "160x120"]) == 0  # fmt: skip
    assert np.load(out2 / f"{nyu[0].stem}_depth.npy").shape == (120, 160)
    header = (out2 / f"{nyu[0].stem}_points.ply").read_bytes().split(b"end_header")[0].decode()
    assert f"element vertex {h * w}" in header


def test_evaluate_counts_what_it_evaluates_and_checks_outputs_first(
    run_dir: Path, tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = str(run_dir / "checkpoints" / "best.ckpt")
    args = ["evaluate", "--checkpoint", checkpoint, "--dataset", "synthetic", "--set", "length=5", "size=[32,48]"]
    assert main([*args, "--limit", "2"]) == 0
    captured = capsys.readouterr()
    assert "on 2 of 5 samples" in captured.out
    assert "evaluate" in captured.err and "2/2" in captured.err  # the progress bar
    assert "synthetic rooms" not in captured.err  # synthetic model on synthetic data: no note
    real = ["evaluate", "--checkpoint", checkpoint, "--dataset", "nyuv2_folder", "--root",
            str(shared_data / "nyu-mini"), "--limit", "1"]  # fmt: skip
    assert main(real) == 0
    assert capsys.readouterr().err.count("trained only on synthetic rooms") == 1  # real images: said once
    existing = tmp_path / "saved"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert main([*args, "--save", str(existing)]) == 2  # refused before loading anything
    assert "--overwrite" in capsys.readouterr().err


def test_resuming_a_finished_run_says_so_and_offers_retest(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    test_json = run_dir / "metrics" / "test.json"
    before = test_json.read_text()
    summary = (run_dir / "summary.json").read_text()
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "finished" in err and "--retest" in err
    assert test_json.read_text() == before
    log = (run_dir / "logs" / "csv" / "metrics.csv").read_text().splitlines()
    assert main(["train", "--resume", str(run_dir), "--retest"]) == 0
    assert (run_dir / "logs" / "csv" / "metrics.csv").read_text().splitlines()[: len(log)][1:] == log[1:]
    again, first = json.loads(test_json.read_text())["results"], json.loads(before)["results"]
    assert again["depth"]["abs_rel"] == pytest.approx(first["depth"]["abs_rel"], rel=1e-5)  # the same checkpoint
    assert (run_dir / "summary.json").read_text() == summary  # the training summary is kept
