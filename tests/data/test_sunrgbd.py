"""SUN RGB-D loader on the real frames of sunrgbd-mini and on a copy with a seg.mat and allsplit.mat."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from tridense.data.sunrgbd import (
    SEG37_CLASSES,
    SUNRGBD,
    decode_sunrgbd_depth,
    encode_sunrgbd_depth,
    frame_from_split_path,
)
from tridense.errors import DataError

FRAMES = ("img_0063", "2014-12-18_11-31-54_260595134347")
# Where the two frames sit in the official tree (kv1 B3DO and kv2 frames).
TREE = {"img_0063": "kv1/b3dodata/img_0063", FRAMES[1]: f"kv2/kinect2data/{FRAMES[1]}"}
NAMES = ["wall", "Floor", "chairs", "night stand", "lamp shade", "Refrigerator"]
# seglabel index k -> expected class id: 0 unlabeled, wall 0, floor 1, chair 4, night_stand 31, (none), fridge 23
EXPECTED = [255, 0, 1, 4, 31, 255, 23]


@pytest.fixture
def mini(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The real frames in place, and a txt list of both."""
    listing = tmp_path / "list.txt"
    listing.write_text("# the two frames\n" + "\n".join(f"{f}/" for f in FRAMES) + "\n")
    return shared_data / "sunrgbd-mini", listing


@pytest.fixture
def tree(shared_data: Path, tmp_path: Path) -> Path:
    """A SUNRGBD root holding copies of the two frames, a seg.mat for the first, and the toolbox's split."""
    root = tmp_path / "SUNRGBD"
    for frame, rel in TREE.items():
        shutil.copytree(shared_data / "sunrgbd-mini" / frame, root / rel)
    h, w = 427, 561
    seglabel = np.zeros((h, w), dtype=np.uint16)
    for k in range(1, 7):
        seglabel[:, (k * w) // 7 : ((k + 1) * w) // 7] = k
    names = np.array(NAMES, dtype=object)
    scipy.io.savemat(root / TREE["img_0063"] / "seg.mat", {"seglabel": seglabel, "names": names})
    split = tmp_path / "SUNRGBDtoolbox" / "traintestSUNRGBD"
    split.mkdir(parents=True)
    prefix = "/n/fs/sun3d/data/SUNRGBD/"
    scipy.io.savemat(
        split / "allsplit.mat",
        {
            "alltrain": np.array([prefix + TREE["img_0063"] + "/"], dtype=object),
            "alltest": np.array([prefix + TREE[FRAMES[1]]], dtype=object),
        },
    )
    return root


def test_depth_decoding_by_hand() -> None:
    # 5120 = 640 << 3 -> 0.64 m; 8000 = 1000 << 3 -> 1 m; 1 -> 1 << 13 = 8192 mm; 0 stays invalid.
    raw = np.array([[5120, 8000, 1, 0]], dtype=np.uint16)
    np.testing.assert_allclose(decode_sunrgbd_depth(raw), [[0.64, 1.0, 8.192, 0.0]], rtol=1e-6)
    mm = np.arange(65536, dtype=np.float64)
    np.testing.assert_array_equal(decode_sunrgbd_depth(encode_sunrgbd_depth(mm / 1000)), (mm / 1000).astype(np.float32))


def test_split_paths_are_stripped_to_the_frame_folder() -> None:
    assert frame_from_split_path("/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001/") == "kv1/NYUdata/NYU0001"
    assert frame_from_split_path("kv2/kinect2data/000002/") == "kv2/kinect2data/000002"


def test_real_frames(mini: tuple[Path, Path]) -> None:
    root, listing = mini
    filled = SUNRGBD(root, split_file=listing)
    raw = SUNRGBD(root, split_file=listing, depth="raw")
    assert len(filled) == 2 and filled.tasks == ("depth", "semseg")
    fx = {FRAMES[0]: (520.532, 520.7444, 277.9258, 215.115), FRAMES[1]: (529.5, 529.5, 365.0, 265.0)}
    for i, frame in enumerate(FRAMES):
        sample, holes = filled.load_raw(i), raw.load_raw(i)
        depth = sample["depth"]
        assert sample["image"].shape[:2] == depth.shape
        assert "semseg" not in sample  # no seg.mat: the task is absent, not an error
        assert depth.min() >= 0.6 and depth.max() <= 4.0  # hole-filled: no zeros, indoor range
        valid = holes["depth"] > 0
        assert 0.05 < 1 - valid.mean() < 0.5  # raw depth has holes
        assert np.median(np.abs(holes["depth"][valid] - depth[valid])) < 0.01  # same scene, same units
        np.testing.assert_allclose(sample["K"][[0, 1, 0, 1], [0, 1, 2, 2]], fx[frame], rtol=1e-6)
        assert sample["meta"]["name"] == frame and sample["meta"]["scene"] == "office"
        R = sample["meta"]["R_world_from_cam"].astype(np.float64)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)
        up = R.T @ [0.0, 0.0, 1.0]  # world up in the camera frame: roughly -y (image up) for a level camera
        assert up[1] < -0.9
    tensors = filled[0]
    assert tensors["image"].shape == (3, 427, 561) and tensors["depth"].shape == (1, 427, 561)


def test_labels_and_toolbox_split(tree: Path) -> None:
    train = SUNRGBD(tree, "train")  # split found at ../SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat
    assert train.frames == [TREE["img_0063"]]
    sample = train.load_raw(0)
    assert sample["meta"]["sensor"] == "kv1"
    labels = sample["semseg"]
    w = labels.shape[1]
    for k, expected in enumerate(EXPECTED):
        column = labels[:, (k * w) // 7 + 1]
        assert (column == expected).all(), (k, NAMES[k - 1] if k else "unlabeled")
    assert SEG37_CLASSES[31] == "night_stand" and SEG37_CLASSES[23] == "fridge"
    # A user mapping takes precedence: "lamp shade" -> lamp (34).
    mapped = SUNRGBD(tree, "train", class_map={"lamp shade": 34}).load_raw(0)["semseg"]
    assert (mapped[:, (5 * w) // 7 + 1] == 34).all()
    test = SUNRGBD(tree, "test", tasks=["semseg"])
    sample = test.load_raw(0)
    assert sample["meta"]["sensor"] == "kv2" and "semseg" not in sample and "depth" not in sample


def test_missing_root_prints_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected layout") as err:
        SUNRGBD(tmp_path / "nowhere", split_file=tmp_path / "list.txt")
    assert "depth_bfx" in str(err.value) and "nowhere" in str(err.value)


def test_missing_files_are_named(tree: Path, tmp_path: Path) -> None:
    (tree / TREE["img_0063"] / "intrinsics.txt").unlink()
    with pytest.raises(DataError, match=r"intrinsics\.txt"):
        SUNRGBD(tree, "train").load_raw(0)
    shutil.rmtree(tree / TREE[FRAMES[1]])
    with pytest.raises(DataError, match="kinect2data"):
        SUNRGBD(tree, "test")
    with pytest.raises(DataError, match="allval"):
        SUNRGBD(tree, "val")


def test_truncated_image_is_named(tree: Path) -> None:
    image = next((tree / TREE["img_0063"] / "image").glob("*.jpg"))
    image.write_bytes(image.read_bytes()[:3000])
    with pytest.raises(DataError, match=r"img_0063\.jpg.*truncated"):
        SUNRGBD(tree, "train").load_raw(0)


def test_depth_of_wrong_size_is_named(tree: Path) -> None:
    depth = next((tree / TREE["img_0063"] / "depth_bfx").glob("*.png"))
    Image.fromarray(np.full((100, 200), 8000, dtype=np.uint16)).save(depth)
    with pytest.raises(DataError, match=r"img_0063_abs\.png.*size \(100, 200\)"):
        SUNRGBD(tree, "train").load_raw(0)


def test_labels_out_of_range(tree: Path) -> None:
    seg = tree / TREE["img_0063"] / "seg.mat"
    seglabel = np.full((427, 561), 9, dtype=np.uint16)  # only 6 names
    scipy.io.savemat(seg, {"seglabel": seglabel, "names": np.array(NAMES, dtype=object)})
    with pytest.raises(DataError, match=r"seg\.mat.*\[9\] outside 0\.\.6"):
        SUNRGBD(tree, "train").load_raw(0)


def test_empty_split_list(mini: tuple[Path, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(DataError, match=r"empty\.txt.*empty"):
        SUNRGBD(mini[0], split_file=empty)
