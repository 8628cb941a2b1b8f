"""KITTI depth loader on the real kitti-mini frames laid out as KITTI raw + the depth benchmark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tridense.data.kitti import KB_CROP, KITTIDepth, parse_list
from tridense.errors import DataError

DATE = "2011_09_28"
DRIVE = f"{DATE}_drive_0001_sync"
FRAMES = ("0000000005", "0000000050")


def image_rel(frame: str) -> str:
    return f"{DATE}/{DRIVE}/image_02/data/{frame}.png"


def gt_rel(frame: str) -> str:
    return f"{DRIVE}/proj_depth/groundtruth/image_02/{frame}.png"


@pytest.fixture
def kitti(shared_data: Path, tmp_path: Path) -> dict:
    """KITTI raw + annotated depth trees from kitti-mini; frame 5 in train/, frame 50 in val/."""
    src = shared_data / "kitti-mini"
    intr = json.loads((src / "intrinsics.json").read_text())
    raw, gt = tmp_path / "raw", tmp_path / "gt"
    for frame, subset in zip(FRAMES, ("train", "val"), strict=True):
        (raw / image_rel(frame)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "rgb" / f"{frame}.png", raw / image_rel(frame))
        (gt / subset / gt_rel(frame)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "depth" / f"{frame}.png", gt / subset / gt_rel(frame))
    P = [intr["fx"], 0, intr["cx"], 44.85728, 0, intr["fy"], intr["cy"], 0.2163791, 0, 0, 1, 0.002745884]
    (raw / DATE / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 14:00:15\ncorner_dist: 9.950000e-02\n"
        "P_rect_00: 7.070493e+02 0 6.040814e+02 0 0 7.070493e+02 1.805066e+02 0 0 0 1 0\n"
        "P_rect_02: " + " ".join(f"{v:.6e}" for v in P) + "\n"
    )
    listing = tmp_path / "eigen.txt"
    listing.write_text(
        f"{image_rel(FRAMES[0])} {gt_rel(FRAMES[0])} {intr['fx']}\n"
        f"{image_rel(FRAMES[1])} {gt_rel(FRAMES[1])}\n"
        f"{image_rel(FRAMES[1])} None {intr['fx']}\n"
    )
    return {"raw": raw, "gt": gt, "list": listing, "intr": intr, "src": src}


def test_list_parsing(kitti: dict) -> None:
    entries = parse_list(kitti["list"])
    assert [e.gt is None for e in entries] == [False, False, True]
    assert entries[0].focal == pytest.approx(707.0493) and entries[1].focal is None


def test_depth_and_intrinsics_match_the_source_files(kitti: dict) -> None:
    ds = KITTIDepth(kitti["raw"], kitti["list"], gt_path=kitti["gt"])
    assert len(ds) == 3 and ds.tasks == ("depth",)
    intr = kitti["intr"]
    for i, frame in enumerate(FRAMES):
        sample = ds.load_raw(i)
        png = np.asarray(Image.open(kitti["src"] / "depth" / f"{frame}.png")).astype(np.float32)
        np.testing.assert_array_equal(sample["depth"], png / 256.0)  # exact: v / 256
        np.testing.assert_array_equal(sample["depth"] == 0, png == 0)
        valid = sample["depth"] > 0
        assert 0.7 < 1 - valid.mean() < 0.9  # semi-dense lidar ground truth
        assert sample["depth"][valid].min() > 5.0 and sample["depth"].max() < 85.0
        np.testing.assert_allclose(
            sample["K"], [[intr["fx"], 0, intr["cx"]], [0, intr["fy"], intr["cy"]], [0, 0, 1]], rtol=1e-6
        )
        assert sample["image"].shape == (375, 1242, 3)
        assert sample["meta"]["name"] == f"{DRIVE}/image_02/{frame}"
    assert "depth" not in ds.load_raw(2)  # gt "None"
    assert "depth" not in KITTIDepth(kitti["raw"], kitti["list"]).load_raw(0)  # no gt_path


def test_kb_crop_keeps_geometry(kitti: dict) -> None:
    full = KITTIDepth(kitti["raw"], kitti["list"], gt_path=kitti["gt"]).load_raw(0)
    crop = KITTIDepth(kitti["raw"], kitti["list"], gt_path=kitti["gt"], kb_crop=True).load_raw(0)
    top, left = 375 - 352, (1242 - 1216) // 2  # 23, 13
    assert crop["image"].shape == (*KB_CROP, 3) and crop["depth"].shape == KB_CROP
    np.testing.assert_array_equal(crop["depth"], full["depth"][top:, left : left + 1216])
    np.testing.assert_array_equal(crop["image"], full["image"][top:, left : left + 1216])
    # A pixel of the crop back-projects to the same ray as its source pixel in the full image.
    u, v = 100.0, 200.0
    ray_crop = np.linalg.solve(crop["K"].astype(np.float64), [u, v, 1.0])
    ray_full = np.linalg.solve(full["K"].astype(np.float64), [u + left, v + top, 1.0])
    np.testing.assert_allclose(ray_crop, ray_full, atol=1e-6)
    assert crop["meta"]["crop"] == (top, left, *KB_CROP)


def test_missing_root_prints_the_layout(kitti: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected layout") as err:
        KITTIDepth(tmp_path / "nowhere", kitti["list"])
    assert "proj_depth/groundtruth" in str(err.value)


def test_missing_files_are_named(kitti: dict) -> None:
    (kitti["gt"] / "val" / gt_rel(FRAMES[1])).unlink()
    ds = KITTIDepth(kitti["raw"], kitti["list"], gt_path=kitti["gt"])
    with pytest.raises(DataError, match=r"missing ground-truth depth.*0000000050\.png"):
        ds.load_raw(1)
    (kitti["raw"] / DATE / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(DataError, match=r"calib_cam_to_cam\.txt: missing"):
        KITTIDepth(kitti["raw"], kitti["list"]).load_raw(0)


def test_truncated_image_is_named(kitti: dict) -> None:
    image = kitti["raw"] / image_rel(FRAMES[0])
    image.write_bytes(image.read_bytes()[:20000])
    with pytest.raises(DataError, match=r"0000000005\.png.*truncated"):
        KITTIDepth(kitti["raw"], kitti["list"]).load_raw(0)


def test_depth_of_wrong_size_is_named(kitti: dict) -> None:
    Image.fromarray(np.full((100, 200), 2560, dtype=np.uint16)).save(kitti["gt"] / "train" / gt_rel(FRAMES[0]))
    with pytest.raises(DataError, match=r"groundtruth/image_02/0000000005\.png.*size \(100, 200\)"):
        KITTIDepth(kitti["raw"], kitti["list"], gt_path=kitti["gt"]).load_raw(0)


def test_focal_that_disagrees_with_the_calibration(kitti: dict, tmp_path: Path) -> None:
    listing = tmp_path / "wrong.txt"
    listing.write_text(f"{image_rel(FRAMES[0])} {gt_rel(FRAMES[0])} 721.5377\n")
    with pytest.raises(DataError, match=r"line 1: focal 721\.5377 disagrees"):
        KITTIDepth(kitti["raw"], listing).load_raw(0)


def test_empty_split_list(kitti: dict, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"empty\.txt.*empty"):
        KITTIDepth(kitti["raw"], empty)
