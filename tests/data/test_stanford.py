"""Stanford 2D-3D-S loader on a fixture written in the dataset's true encodings from NYU samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tridense.data.stanford import CLASSES_13, FOLDS, Stanford2D3DS, expand_areas
from tridense.errors import DataError

K = [[518.8579, 0.0, 325.5824], [0.0, 519.4696, 253.7362], [0.0, 0.0, 1.0]]
# Made-up labels: NYU 13-class id -> 2D-3D-S class of the label it points to ("stairs" is none of the 13).
NYU_TO_CLASS = {1: "clutter", 2: "bookcase", 3: "ceiling", 4: "chair", 5: "floor", 6: "table", 7: "clutter",
                8: "board", 9: "sofa", 10: "table", 11: "stairs", 12: "wall", 13: "window"}  # fmt: skip
LABELS = ["<UNK>_0_<UNK>_0_0"] + [f"clutter_{i}_office_1_1" for i in range(1, 300)]
LABELS += [f"{NYU_TO_CLASS[c]}_{c}_office_1_1" for c in range(1, 14)]  # NYU class c -> index 299 + c (G = 1)
MISSING_SEMANTIC = (13, 13, 13)  # #0D0D0D, beyond the label list
FRAMES = {"area_1": "0001", "area_5a": "0002", "area_5b": "0009"}


def stem(area: str) -> str:
    return f"camera_0a70cd8d4f2b48239aaa5db59719158a_office_1_frame_{list(FRAMES).index(area)}"


def normal_field(h: int, w: int) -> np.ndarray:
    """Known unit normals in the OpenCV frame: a smooth field facing the camera, a floor band at the bottom."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    n = np.stack([0.5 * np.sin(u / 80.0), 0.4 * np.cos(v / 60.0), -np.ones_like(u)], axis=-1)
    n[h - 60 :] = [0.0, -1.0, 0.0]  # floor: normal points up = -y
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def write_frame(root: Path, area: str, nyu: Path, name: str) -> dict:
    data = root / area / "data"
    for folder in ("rgb", "depth", "normal", "semantic", "pose"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    s = stem(area)
    shutil.copy(nyu / "rgb" / f"{name}.png", data / "rgb" / f"{s}_domain_rgb.png")
    mm = np.asarray(Image.open(nyu / "depth" / f"{name}.png")).astype(np.float64)
    h, w = mm.shape
    units = np.round(mm / 1000.0 * 512.0).astype(np.uint16)
    units[:40, :50] = 65535  # missing
    Image.fromarray(units).save(data / "depth" / f"{s}_domain_depth.png")
    n = normal_field(h, w)
    stored = n * [1.0, 1.0, -1.0]  # file frame: x right, y down, z towards the camera
    encoded = np.clip(np.round(stored * 127.5 + 127.5), 0, 255).astype(np.uint8)
    encoded[:40, :50] = 128  # missing mesh
    Image.fromarray(encoded).save(data / "normal" / f"{s}_domain_normals.png")
    nyu13 = np.asarray(Image.open(nyu / "label13" / f"{name}.png")).astype(np.int64)
    index = np.where(nyu13 > 0, 299 + nyu13, 0)
    semantic = np.stack([index >> 16, (index >> 8) & 255, index & 255], axis=-1).astype(np.uint8)
    semantic[-20:, -30:] = MISSING_SEMANTIC
    Image.fromarray(semantic).save(data / "semantic" / f"{s}_domain_semantic.png")
    pose = {"camera_k_matrix": K, "camera_uuid": "0a70cd8d4f2b48239aaa5db59719158a", "room": "office_1_1",
            "frame_num": 0, "field_of_view_rads": 1.1}  # fmt: skip
    (data / "pose" / f"{s}_domain_pose.json").write_text(json.dumps(pose))
    expected = np.array([255] + [CLASSES_13.index(c) if c in CLASSES_13 else 255 for c in NYU_TO_CLASS.values()])
    labels = expected[nyu13]
    labels[-20:, -30:] = 255
    instances = index.copy()  # every label entry is one instance; <UNK> (0) and #0D0D0D (missing) -> 0
    instances[-20:, -30:] = 0
    depth = units.astype(np.float32) / 512.0
    depth[:40, :50] = 0.0
    return {"stem": s, "depth": depth, "normals": n, "semseg": labels, "instances": instances}


@pytest.fixture(scope="module")
def written(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("stanford") / "2D-3D-S"
    truth = {area: write_frame(root, area, shared_data / "nyu-mini", name) for area, name in FRAMES.items()}
    (root / "semantic_labels.json").write_text(json.dumps(LABELS))
    return root, truth


@pytest.fixture
def s2d3ds(written: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict]:
    """A private copy of the written dataset, which a test may break."""
    root = shutil.copytree(written[0], tmp_path / "2D-3D-S")
    return root, written[1]


def test_areas_and_folds() -> None:
    assert expand_areas(["5", "area_1", 6]) == ["area_5a", "area_5b", "area_1", "area_6"]
    for fold in FOLDS.values():  # every area is used once per fold, train and test are disjoint
        assert sorted(fold["train"] + fold["test"]) == ["1", "2", "3", "4", "5", "6"]
    with pytest.raises(DataError, match="unknown area '7'"):
        expand_areas(["7"])


def test_decoding_matches_the_known_fields(s2d3ds: tuple[Path, dict]) -> None:
    root, truth = s2d3ds
    ds = Stanford2D3DS(root, "test", fold=1)  # area 5 = area_5a + area_5b
    assert len(ds) == 2 and [a for a, _ in ds.files] == ["area_5a", "area_5b"]
    for i, area in enumerate(("area_5a", "area_5b")):
        sample, known = ds.load_raw(i), truth[area]
        np.testing.assert_array_equal(sample["depth"], known["depth"])  # v / 512, 65535 -> 0
        n, valid = sample["normals"], np.linalg.norm(sample["normals"], axis=-1) > 0
        assert not valid[:40, :50].any() and valid.mean() > 0.99
        cos = np.clip((n[valid] * known["normals"][valid]).sum(-1), -1, 1)
        assert np.degrees(np.arccos(cos)).max() < 0.5  # the 8-bit quantisation only
        assert (n[:-60][valid[:-60]][:, 2] < 0).all()  # surfaces facing the camera: n_z < 0
        np.testing.assert_allclose(n[-1, 100], [0.0, -1.0, 0.0], atol=0.5 / 127.5)  # floor points up; 0 -> 128
        np.testing.assert_array_equal(sample["semseg"], known["semseg"])
        np.testing.assert_array_equal(sample["instances"], known["instances"])
        np.testing.assert_allclose(sample["K"], K, rtol=1e-6)
        assert sample["meta"]["room"] == "office_1" and sample["meta"]["area"] == area
        assert sample["meta"]["frame"] == i + 1
    tensors = ds[0]
    assert tensors["normals"].shape == (3, 480, 640) and tensors["semseg"].shape == (480, 640)


def test_explicit_areas_and_tasks(s2d3ds: tuple[Path, dict]) -> None:
    root, _ = s2d3ds
    ds = Stanford2D3DS(root, areas=["1"], tasks=["depth"])
    sample = ds.load_raw(0)
    assert len(ds) == 1 and "depth" in sample and "normals" not in sample and "semseg" not in sample


def test_missing_root_prints_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected layout") as err:
        Stanford2D3DS(tmp_path / "nowhere")
    assert "_domain_normals.png" in str(err.value)


def test_missing_area_and_files_are_named(s2d3ds: tuple[Path, dict]) -> None:
    root, truth = s2d3ds
    with pytest.raises(DataError, match=r"area_3/data/rgb: missing area_3 rgb folder"):
        Stanford2D3DS(root, "test", fold=3)  # areas 1, 3, 6
    (root / "area_1" / "data" / "normal" / f"{truth['area_1']['stem']}_domain_normals.png").unlink()
    with pytest.raises(DataError, match=r"_domain_normals\.png: missing normal file"):
        Stanford2D3DS(root, areas=["1"]).load_raw(0)


def test_truncated_image_is_named(s2d3ds: tuple[Path, dict]) -> None:
    root, truth = s2d3ds
    rgb = root / "area_1" / "data" / "rgb" / f"{truth['area_1']['stem']}_domain_rgb.png"
    rgb.write_bytes(rgb.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"_domain_rgb\.png.*truncated"):
        Stanford2D3DS(root, areas=["1"]).load_raw(0)


def test_depth_of_wrong_size_is_named(s2d3ds: tuple[Path, dict]) -> None:
    root, truth = s2d3ds
    depth = root / "area_1" / "data" / "depth" / f"{truth['area_1']['stem']}_domain_depth.png"
    Image.fromarray(np.full((100, 200), 1024, dtype=np.uint16)).save(depth)
    with pytest.raises(DataError, match=r"_domain_depth\.png.*size \(100, 200\)"):
        Stanford2D3DS(root, areas=["1"]).load_raw(0)


def test_labels_out_of_range_are_ignored_and_bad_label_files_named(s2d3ds: tuple[Path, dict]) -> None:
    root, truth = s2d3ds
    semantic = root / "area_1" / "data" / "semantic" / f"{truth['area_1']['stem']}_domain_semantic.png"
    Image.fromarray(np.full((480, 640, 3), 255, dtype=np.uint8)).save(semantic)  # index 16777215
    assert (Stanford2D3DS(root, areas=["1"]).load_raw(0)["semseg"] == 255).all()
    (root / "semantic_labels.json").write_text(json.dumps(["<UNK>_0_<UNK>_0_0", 7]))
    with pytest.raises(DataError, match=r"semantic_labels\.json: entry 1 is 7"):
        Stanford2D3DS(root, areas=["1"])


def test_area_without_images(s2d3ds: tuple[Path, dict]) -> None:
    root, _ = s2d3ds
    (root / "area_6" / "data" / "rgb").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no \*_domain_rgb\.png images in areas \['area_6'\]"):
        Stanford2D3DS(root, areas=["6"])
