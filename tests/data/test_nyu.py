"""NYU Depth V2 loaders on fixtures written in each release's true on-disk encoding from the real samples."""

from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import DataLoader, Subset

from tridense.data.io import normals_to_png, write_png
from tridense.data.nyu import (
    NYU13_CLASSES,
    NYU40_CLASSES,
    NYUv2Folder,
    NYUv2Labeled,
    NYUv2MultiTask,
    NYUv2Preprocessed,
    NYUv2Raw,
    mtan_K,
    nyu_K,
    parse_file_list,
    raw_normal_path,
    read_class_mapping,
)
from tridense.data.sample import collate
from tridense.errors import ConfigError, DataError

NAMES = ("0001", "0002", "0009", "0014", "0015", "0016")  # 1-based labeled indices 1, 2, 9, 14, 15, 16
FX, FY, CX, CY = 518.8579, 519.4696, 325.5824, 253.7362
FLOOR40, WALL40 = 2, 1  # 1-based ids in the 40-class PNGs
FLOOR13, WALL13 = 4, 11  # 0-based ids in the MTAN labels


# ------------------------------------------------------------------------------------------------
# The real samples, read once
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mini(shared_data: Path) -> Path:
    return shared_data / "nyu-mini"


@pytest.fixture(scope="module")
def real(mini: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per name: rgb uint8, depth_mm uint16, label40 / label13 uint8, and the MTAN arrays."""
    out = {}
    for name in NAMES:
        out[name] = {
            "rgb": np.asarray(Image.open(mini / "rgb" / f"{name}.png").convert("RGB")),
            "depth_mm": np.asarray(Image.open(mini / "depth" / f"{name}.png")).astype(np.uint16),
            "label40": np.asarray(Image.open(mini / "label40" / f"{name}.png")),
            "label13": np.asarray(Image.open(mini / "label13" / f"{name}.png")),
            "mtan_normal": np.load(mini / "mtan" / f"{name}_normal.npy"),
            "mtan_depth": np.load(mini / "mtan" / f"{name}_depth.npy"),
            "mtan_label13": np.load(mini / "mtan" / f"{name}_label13.npy"),
        }
    return out


def shifted(labels: np.ndarray) -> np.ndarray:
    """The contract's labels: 0 -> 255, k -> k-1."""
    labels = labels.astype(np.int64)
    return np.where(labels == 0, 255, labels - 1)


def mtan_to_camera(n: np.ndarray) -> np.ndarray:
    """Hand-written MTAN frame (x right, y away, z up) -> camera frame (x right, y down, z forward)."""
    return np.stack([n[..., 0], -n[..., 2], n[..., 1]], axis=-1)


def rays(K: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    v, u = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)  # (H, W, 3)


def plane_fit_normals(depth: np.ndarray, K: np.ndarray, radius: int = 3) -> np.ndarray:
    """Normals of planes fitted to the back-projected depth in (2r+1)^2 windows, facing the camera."""
    points = rays(K, depth.shape) * depth[..., None]  # (H, W, 3)
    valid = depth > 0
    size = 2 * radius + 1
    frac = ndimage.uniform_filter(valid.astype(np.float64), size)

    def mean(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a * valid, size) / np.maximum(frac, 1e-9)

    mu = [mean(points[..., i]) for i in range(3)]
    cov = np.empty((*depth.shape, 3, 3))
    for i in range(3):
        for j in range(3):
            cov[..., i, j] = mean(points[..., i] * points[..., j]) - mu[i] * mu[j]
    normals = np.linalg.eigh(cov)[1][..., 0]  # (H, W, 3) eigenvector of the smallest eigenvalue
    normals *= -np.sign((normals * points).sum(-1, keepdims=True))
    normals[~(valid & (frac > 0.99))] = 0
    return normals


# ------------------------------------------------------------------------------------------------
# 1. nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5 with a 512-byte userblock)
# ------------------------------------------------------------------------------------------------
def matlab_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Jan  2 10:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b" " * 8 + b"\x00\x02" + b"IM"
    return header.ljust(512, b"\x00")


def write_labeled_mat(path: Path, frames: dict[int, dict[str, np.ndarray]], n: int = 1449) -> None:
    """Write frames {1-based index: image (H,W,3), depths (H,W), rawDepths (H,W), labels (H,W)} as MATLAB
    v7.3 would: HDF5 with MATLAB's axes reversed, chunked per image (unwritten images cost no space)."""
    h, w = 480, 640
    with h5py.File(path, "w", userblock_size=512) as f:
        specs = {
            "images": ((n, 3, w, h), np.uint8),
            "depths": ((n, w, h), np.float32),
            "rawDepths": ((n, w, h), np.float32),
            "labels": ((n, w, h), np.uint16),
        }
        for key, (shape, dtype) in specs.items():
            ds = f.create_dataset(key, shape=shape, dtype=dtype, chunks=(1, *shape[1:]))
            matlab_class = {np.uint8: "uint8", np.float32: "single", np.uint16: "uint16"}[dtype]
            ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
        for number, frame in frames.items():
            f["images"][number - 1] = frame["image"].transpose(2, 1, 0)  # (H, W, 3) -> (3, W, H)
            for key in ("depths", "rawDepths", "labels"):
                f[key][number - 1] = frame[key].T
    with open(path, "r+b") as handle:
        handle.write(matlab_header())


def raw_labels_for(label40: np.ndarray, label13: np.ndarray, mini: Path) -> np.ndarray:
    """Raw 894-class ids that the real official mappings send back to ``label40`` and ``label13``."""
    map40 = scipy.io.loadmat(mini / "meta" / "classMapping40.mat")["mapClass"].ravel()
    map13 = scipy.io.loadmat(mini / "meta" / "class13Mapping.mat")["classMapping13"]["labels13"][0, 0].ravel()
    raw = np.zeros(label40.shape, np.uint16)
    for c40 in np.unique(label40[label40 > 0]):
        c13 = np.unique(label13[label40 == c40])
        candidates = [r for r in range(1, 895) if map40[r - 1] == c40 and map13[c40 - 1] == c13[0]]
        assert len(c13) == 1, (c40, c13)
        assert candidates, (c40, c13)
        raw[label40 == c40] = max(candidates)  # the largest id, so values above 255 are exercised
    return raw


@pytest.fixture(scope="module")
def labeled_root(tmp_path_factory: pytest.TempPathFactory, mini: Path, real: dict) -> Path:
    root = tmp_path_factory.mktemp("nyu_labeled")
    for name in ("splits.mat", "classMapping40.mat", "class13Mapping.mat"):
        shutil.copy(mini / "meta" / name, root / name)
    frames = {}
    for name in NAMES:
        r = real[name]
        depth = r["depth_mm"].astype(np.float32) / 1000.0
        frames[int(name)] = {
            "image": r["rgb"],
            "depths": depth,
            "rawDepths": np.where(r["label40"] == 0, 0, depth),  # holes where nothing is labeled
            "labels": raw_labels_for(r["label40"], r["label13"], mini),
        }
    write_labeled_mat(root / "nyu_depth_v2_labeled.mat", frames)
    normals_dir = root / "normals"
    for name in NAMES[:2]:
        normals = np.zeros((480, 640, 3), np.float32)
        normals[..., 0], normals[..., 2] = 0.6, -0.8
        normals[:10] = 0  # an invalid band
        write_png(normals_dir / f"{name}.png", normals_to_png(normals))
    return root


def test_labeled_file_is_matlab_v73(labeled_root: Path) -> None:
    data = (labeled_root / "nyu_depth_v2_labeled.mat").read_bytes()
    assert data.startswith(b"MATLAB 7.3 MAT-file")
    assert data[126:128] == b"IM"
    assert data[512:520] == b"\x89HDF\r\n\x1a\n"  # the HDF5 superblock follows the userblock


def test_labeled_split_sizes(labeled_root: Path) -> None:
    sizes = {s: len(NYUv2Labeled(labeled_root, split=s, tasks=["depth"])) for s in ("train", "test", "all")}
    assert sizes == {"train": 795, "test": 654, "all": 1449}


@pytest.mark.parametrize("label_set", [40, 13])
def test_labeled_returns_the_samples_exactly(labeled_root: Path, real: dict, label_set: int) -> None:
    ds = NYUv2Labeled(labeled_root, split="test", label_set=label_set)
    assert ds.tasks == ("depth", "semseg")
    assert ds.num_classes == label_set
    assert ds.class_names == (NYU40_CLASSES if label_set == 40 else NYU13_CLASSES)
    for position, name in enumerate(NAMES):  # nyu_test_position of index.csv
        sample = ds.load_raw(position)
        r = real[name]
        np.testing.assert_array_equal(sample["image"], r["rgb"])
        np.testing.assert_array_equal(sample["depth"], r["depth_mm"].astype(np.float32) / 1000.0)
        np.testing.assert_array_equal(sample["semseg"], shifted(r[f"label{label_set}"]))
        assert sample["meta"]["name"] == name
        assert sample["meta"]["index"] == int(name)
    np.testing.assert_allclose(sample["K"], [[FX, 0, CX], [0, FY, CY], [0, 0, 1]], rtol=1e-6)


def test_labeled_raw_depth_and_normals(labeled_root: Path, real: dict) -> None:
    ds = NYUv2Labeled(labeled_root, split="test", depth_key="rawDepths", normals_dir=labeled_root / "normals")
    assert ds.tasks == ("depth", "semseg", "normals")
    sample = ds.load_raw(0)
    assert (sample["depth"][real["0001"]["label40"] == 0] == 0).all()
    assert (sample["depth"] > 0).mean() > 0.5
    n = sample["normals"]
    assert (n[:10] == 0).all()
    np.testing.assert_allclose(n[10:], np.broadcast_to([0.6, 0.0, -0.8], n[10:].shape), atol=6e-3)
    with pytest.raises(DataError, match=r"normals[/\\]0009\.png"):  # no normals were prepared for image 9
        ds.load_raw(2)


def test_labeled_dataloader_workers_and_pickling(labeled_root: Path, real: dict) -> None:
    ds = NYUv2Labeled(labeled_root, split="test")
    ds[0]  # opens the HDF5 file in this process; forked workers must open their own
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._h5 is None
    assert torch.equal(clone[1]["semseg"], ds[1]["semseg"])
    loader = DataLoader(Subset(ds, range(6)), batch_size=3, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 2
    batch = batches[1]
    assert batch["image"].shape == (3, 3, 480, 640)
    assert batch["depth"].shape == (3, 1, 480, 640)
    assert batch["K"].shape == (3, 3, 3)
    assert batch["has_semseg"].all()
    assert not batch["has_normals"].any()
    assert [m["name"] for m in batch["meta"]] == list(NAMES[3:])
    expected = torch.tensor(real["0014"]["rgb"]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(batch["image"][0], expected)


def test_labeled_errors(tmp_path: Path, labeled_root: Path, mini: Path, real: dict) -> None:
    with pytest.raises(DataError, match=r"(?s)root is not a folder.*expected layout"):
        NYUv2Labeled(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"nyu_depth_v2_labeled\.mat"):
        NYUv2Labeled(tmp_path)
    with pytest.raises(ConfigError, match="label_set"):
        NYUv2Labeled(labeled_root, label_set=20)
    with pytest.raises(ConfigError, match="split"):
        NYUv2Labeled(labeled_root, split="val")
    v5 = tmp_path / "v5.mat"
    scipy.io.savemat(v5, {"images": np.zeros((2, 2), np.uint8)})
    with pytest.raises(DataError, match=r"v7\.3"):
        NYUv2Labeled(mat_path=v5)
    with pytest.raises(DataError, match=r"splits\.mat"):
        NYUv2Labeled(mat_path=labeled_root / "nyu_depth_v2_labeled.mat", splits_path=tmp_path / "splits.mat")

    # A raw label beyond the 894 classes.
    r = real["0001"]
    labels = raw_labels_for(r["label40"], r["label13"], mini)
    labels[0, 0] = 900
    depth = r["depth_mm"].astype(np.float32) / 1000
    bad = tmp_path / "bad" / "nyu_depth_v2_labeled.mat"
    bad.parent.mkdir()
    write_labeled_mat(bad, {1: {"image": r["rgb"], "depths": depth, "rawDepths": depth, "labels": labels}})
    ds = NYUv2Labeled(mat_path=bad, split="all", mapping40_path=mini / "meta" / "classMapping40.mat")
    with pytest.raises(DataError, match=r"bad.nyu_depth_v2_labeled\.mat:labels\[0\].*900"):
        ds.load_raw(0)
    ds.close()
    # NaN and negative depth name the file and the image.
    for value, message in ((np.nan, "NaN"), (-1.0, "negative")):
        with h5py.File(bad, "r+") as f:
            f["depths"][0, 5, 5] = value
        with pytest.raises(DataError, match=rf"depths\[0\].*{message}"):
            NYUv2Labeled(mat_path=bad, split="all", tasks=["depth"]).load_raw(0)
    # Fewer images than the split refers to.
    small = tmp_path / "small.mat"
    write_labeled_mat(small, {}, n=10)
    with pytest.raises(DataError, match="refers to image"):
        NYUv2Labeled(mat_path=small, split="test", splits_path=mini / "meta" / "splits.mat")


def test_class_mapping_is_the_official_one(mini: Path) -> None:
    lut40 = read_class_mapping(40, mini / "meta" / "classMapping40.mat")
    lut13 = read_class_mapping(13, mini / "meta" / "classMapping40.mat", mini / "meta" / "class13Mapping.mat")
    assert lut40.shape == lut13.shape == (895,)
    assert lut40[0] == lut13[0] == 0
    assert set(np.unique(lut40[1:])) == set(range(1, 41))
    assert set(np.unique(lut13[1:])) == set(range(1, 14))
    # mapClass(1..3) of the official file are 40, 40, 3 (otherprop, otherprop, cabinet); cabinet is furniture.
    assert lut40[1:4].tolist() == [40, 40, 3]
    assert NYU13_CLASSES[lut13[3] - 1] == "furniture"
    assert NYU40_CLASSES[23] == "refridgerator"


# ------------------------------------------------------------------------------------------------
# 2. The NYUD_MT multi-task layout (425x560 standard crop)
# ------------------------------------------------------------------------------------------------
TOP, LEFT, CROP_H, CROP_W = 44, 40, 425, 560


def standard_crop(a: np.ndarray) -> np.ndarray:
    return a[TOP : TOP + CROP_H, LEFT : LEFT + CROP_W]


def mtan_normals_in_standard_crop(mtan_normal: np.ndarray) -> np.ndarray:
    """Camera-frame MTAN normals, nearest-upsampled into their region (rows 53:467, cols 44:596)."""
    cam = mtan_to_camera(mtan_normal)
    rows = ((np.arange(414) + 0.5) * 288 / 414).astype(int)
    cols = ((np.arange(552) + 0.5) * 384 / 552).astype(int)
    out = np.zeros((CROP_H, CROP_W, 3), np.float32)
    out[53 - TOP : 467 - TOP, 44 - LEFT : 596 - LEFT] = cam[rows][:, cols]
    return out


@pytest.fixture(scope="module")
def multitask_root(tmp_path_factory: pytest.TempPathFactory, real: dict) -> Path:
    root = tmp_path_factory.mktemp("NYUD_MT")
    for sub in ("images", "depth", "segmentation", "normals", "gt_sets"):
        (root / sub).mkdir()
    for i, name in enumerate(NAMES):
        r = real[name]
        image = Image.fromarray(standard_crop(r["rgb"]))
        if i == 1:
            image.save(root / "images" / f"{name}.png")
        else:
            image.save(root / "images" / f"{name}.jpg", quality=95)
        np.save(root / "depth" / f"{name}.npy", standard_crop(r["depth_mm"]).astype(np.float32) / 1000)
        Image.fromarray(standard_crop(r["label40"])).save(root / "segmentation" / f"{name}.png")
        cam = mtan_normals_in_standard_crop(r["mtan_normal"])
        stored = cam * np.array([1, 1, -1], np.float32)  # the assumed frame: x right, y down, z to the viewer
        if i % 2 == 0:
            np.save(root / "normals" / f"{name}.npy", stored)
        else:
            encoded = np.clip(np.round((stored + 1) * 127.5), 0, 255).astype(np.uint8)
            encoded[~cam.any(-1)] = 0  # black border, decodes to (-1, -1, -1): not a unit vector
            Image.fromarray(encoded).save(root / "normals" / f"{name}.png")
    (root / "gt_sets" / "train.txt").write_text("\n".join(NAMES[:4]) + "\n")
    (root / "gt_sets" / "val.txt").write_text("\n".join(NAMES[4:]) + "\n")
    return root


def test_multitask_samples(multitask_root: Path, real: dict) -> None:
    train = NYUv2MultiTask(multitask_root, split="train")
    val = NYUv2MultiTask(multitask_root, split="val")
    assert (len(train), len(val)) == (4, 2)
    assert train.num_classes == 40
    for ds, names in ((train, NAMES[:4]), (val, NAMES[4:])):
        for i, name in enumerate(names):
            s, r = ds.load_raw(i), real[name]
            diff = np.abs(s["image"].astype(int) - standard_crop(r["rgb"]).astype(int))
            assert (diff == 0).all() if name == "0002" else diff.mean() < 3  # PNG exact, JPEG close
            np.testing.assert_array_equal(s["depth"], standard_crop(r["depth_mm"]).astype(np.float32) / 1000)
            np.testing.assert_array_equal(s["semseg"], shifted(standard_crop(r["label40"])))
            expected = mtan_normals_in_standard_crop(r["mtan_normal"])
            valid = expected.any(-1)
            np.testing.assert_array_equal(s["normals"].any(-1), valid)
            cosine = (s["normals"][valid] * expected[valid]).sum(-1)
            assert cosine.min() > np.cos(np.radians(1.0))  # npy exact, 8-bit PNG within a degree
            floor, wall = s["semseg"] == FLOOR40 - 1, s["semseg"] == WALL40 - 1
            if (floor & valid).sum() > 500:
                assert s["normals"][floor & valid][:, 1].mean() < -0.8  # the floor points up (-y)
            assert s["normals"][wall & valid][:, 2].mean() < 0  # walls face the camera
    # The standard crop moves the principal point by (40, 44) and keeps the focal lengths.
    np.testing.assert_allclose(s["K"], [[FX, 0, CX - 40], [0, FY, CY - 44], [0, 0, 1]], rtol=1e-6)


def test_multitask_normals_frame_is_an_argument(multitask_root: Path) -> None:
    assumed = NYUv2MultiTask(multitask_root, split="train", tasks=["normals"]).load_raw(0)["normals"]
    as_stored = NYUv2MultiTask(multitask_root, split="train", tasks=["normals"], normals_frame="camera")
    stored = as_stored.load_raw(0)
    np.testing.assert_allclose(stored["normals"], assumed * np.array([1, 1, -1], np.float32), atol=1e-6)
    assert set(stored) == {"image", "normals", "K", "meta"}
    with pytest.raises(ConfigError, match="normals_frame"):
        NYUv2MultiTask(multitask_root, normals_frame="sideways")


def test_multitask_errors(tmp_path: Path, multitask_root: Path) -> None:
    root = tmp_path / "mt"
    shutil.copytree(multitask_root, root)
    with pytest.raises(DataError, match=r"(?s)root is not a folder.*expected layout"):
        NYUv2MultiTask(tmp_path / "absent")
    (root / "gt_sets" / "val.txt").write_text("\n")
    with pytest.raises(DataError, match=r"val\.txt.*empty"):
        NYUv2MultiTask(root, split="val")
    ds = NYUv2MultiTask(root, split="train")
    # Truncated JPEG, missing depth, NaN / negative depth, labels out of range, normals not in [-1, 1].
    jpg = root / "images" / "0001.jpg"
    jpg.write_bytes(jpg.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"0001\.jpg.*truncated"):
        ds.load_raw(0)
    (root / "depth" / "0009.npy").unlink()
    with pytest.raises(DataError, match=r"missing depth.*|depth[/\\]0009\.npy"):
        ds.load_raw(2)
    depth = np.load(root / "depth" / "0014.npy")
    for value, message in ((np.nan, "NaN"), (-0.5, "negative")):
        bad = depth.copy()
        bad[3, 3] = value
        np.save(root / "depth" / "0014.npy", bad)
        with pytest.raises(DataError, match=rf"0014\.npy.*{message}"):
            ds.load_raw(3)
    np.save(root / "depth" / "0014.npy", depth[:100])
    with pytest.raises(DataError, match=r"0014\.npy.*size \(100, 560\), expected \(425, 560\)"):
        ds.load_raw(3)
    labels = np.asarray(Image.open(root / "segmentation" / "0002.png")).copy()
    labels[0, 0] = 41
    Image.fromarray(labels).save(root / "segmentation" / "0002.png")
    with pytest.raises(DataError, match=r"0002\.png.*labels \[41\] outside 0\.\.40"):
        ds.load_raw(1)
    np.save(root / "normals" / "0009.npy", np.full((425, 560, 3), 127.0, np.float32))  # stored as 0..255
    with pytest.raises(DataError, match=r"0009\.npy.*\[-1, 1\]"):
        NYUv2MultiTask(root, split="train", tasks=["normals"]).load_raw(2)


# ------------------------------------------------------------------------------------------------
# 3. The MTAN 288x384 .npy release
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mtan_root(tmp_path_factory: pytest.TempPathFactory, real: dict) -> Path:
    root = tmp_path_factory.mktemp("nyuv2_mtan")
    for kind in ("image", "depth", "label", "normal"):
        (root / "val" / kind).mkdir(parents=True)
    for i, name in enumerate(NAMES):
        r = real[name]
        crop = Image.fromarray(r["rgb"][53:467, 44:596]).resize((384, 288), Image.BILINEAR)
        np.save(root / "val" / "image" / f"{i}.npy", np.asarray(crop, np.float32) / 255.0)
        np.save(root / "val" / "depth" / f"{i}.npy", r["mtan_depth"][..., None])  # (288, 384, 1)
        np.save(root / "val" / "label" / f"{i}.npy", r["mtan_label13"].astype(np.float32))
        np.save(root / "val" / "normal" / f"{i}.npy", r["mtan_normal"])
    return root


def test_mtan_intrinsics_are_the_cropped_resized_nyu_camera() -> None:
    s = 384 / 552  # = 288 / 414
    K = mtan_K()
    np.testing.assert_allclose(K[0], [FX * s, 0, (CX - 44 + 0.5) * s - 0.5], rtol=1e-6)
    np.testing.assert_allclose(K[1], [0, FY * s, (CY - 53 + 0.5) * s - 0.5], rtol=1e-6)
    np.testing.assert_allclose(K[:2, 2], [195.7312, 139.4904], atol=1e-3)
    np.testing.assert_allclose(nyu_K((240, 320))[0], [FX / 2, 0, (CX + 0.5) / 2 - 0.5], rtol=1e-6)


def test_mtan_samples_and_normal_frame(mtan_root: Path, real: dict) -> None:
    ds = NYUv2Preprocessed(mtan_root, split="val")
    assert len(ds) == 6
    assert ds.num_classes == 13
    assert ds.tasks == ("depth", "normals", "semseg")
    agree = []
    for i, name in enumerate(NAMES):
        s, r = ds.load_raw(i), real[name]
        stored = np.load(mtan_root / "val" / "image" / f"{i}.npy")
        np.testing.assert_array_equal(s["image"], np.round(stored * 255).astype(np.uint8))
        np.testing.assert_array_equal(s["depth"], r["mtan_depth"])
        label13 = r["mtan_label13"].astype(np.int64)
        np.testing.assert_array_equal(s["semseg"], np.where(label13 < 0, 255, label13))
        n = s["normals"]
        norm = np.linalg.norm(n, axis=-1)
        valid = norm > 0
        assert np.allclose(norm[valid], 1, atol=1e-5)
        np.testing.assert_array_equal(valid, r["mtan_depth"] > 0)  # invalid normals exactly where depth is
        np.testing.assert_allclose(n, mtan_to_camera(r["mtan_normal"]), atol=1e-5)
        floor = valid & (s["semseg"] == FLOOR13)
        if floor.sum() > 500:
            assert n[floor][:, 1].mean() < -0.8  # up is -y
        assert n[valid & (s["semseg"] == WALL13)][:, 2].mean() < 0  # walls face the camera
        # Every visible surface faces the camera: n . ray < 0 for nearly all pixels.
        assert ((n * rays(s["K"], n.shape[:2])).sum(-1)[valid] < 0).mean() > 0.97
        if i < 2:  # planes fitted to the back-projected depth with this K agree with the converted normals
            fitted = plane_fit_normals(s["depth"].astype(np.float64), s["K"].astype(np.float64))
            both = valid & fitted.any(-1)
            angle = np.degrees(np.arccos(np.clip((fitted[both] * n[both]).sum(-1), -1, 1)))
            agree.append(np.median(angle))
    assert max(agree) < 15, agree
    np.testing.assert_allclose(s["K"], mtan_K(), rtol=1e-6)


def test_mtan_errors(tmp_path: Path, mtan_root: Path) -> None:
    with pytest.raises(DataError, match=r"(?s)root is not a folder.*expected layout"):
        NYUv2Preprocessed(tmp_path / "absent")
    with pytest.raises(DataError, match=r"(?s)train.*expected layout"):
        NYUv2Preprocessed(mtan_root, split="train")
    (tmp_path / "empty" / "train" / "image").mkdir(parents=True)
    with pytest.raises(DataError, match="'train' has no samples"):
        NYUv2Preprocessed(tmp_path / "empty", split="train")
    root = tmp_path / "mtan"
    shutil.copytree(mtan_root, root)
    ds = NYUv2Preprocessed(root, split="val")
    np.save(root / "val" / "label" / "1.npy", np.full((288, 384), 13.0, np.float32))
    with pytest.raises(DataError, match=r"label[/\\]1\.npy.*outside"):
        ds.load_raw(1)
    np.save(root / "val" / "image" / "2.npy", np.full((288, 384, 3), 200.0, np.float32))
    with pytest.raises(DataError, match=r"image[/\\]2\.npy.*\[0, 1\]"):
        ds.load_raw(2)
    (root / "val" / "normal" / "3.npy").unlink()
    with pytest.raises(DataError, match=r"missing normals.*|normal[/\\]3\.npy"):
        ds.load_raw(3)


# ------------------------------------------------------------------------------------------------
# 4. Raw "sync" frames with a BTS-style list
# ------------------------------------------------------------------------------------------------
RAW_FRAMES = (("kitchen_0028a", 45, "0001"), ("kitchen_0028a", 46, "0002"), ("bedroom_0004", 0, "0009"))


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory: pytest.TempPathFactory, real: dict) -> Path:
    base = tmp_path_factory.mktemp("nyu_raw")
    lines = ["# rgb depth focal"]
    for i, (scene, frame, name) in enumerate(RAW_FRAMES):
        folder = base / "sync" / scene
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(real[name]["rgb"]).save(folder / f"rgb_{frame:05d}.jpg", quality=95)
        depth = real[name]["depth_mm"].copy()
        depth[:20] = 0  # sensor holes
        write_png(folder / f"sync_depth_{frame:05d}.png", depth)
        rgb, dep = f"{scene}/rgb_{frame:05d}.jpg", f"{scene}/sync_depth_{frame:05d}.png"
        lines.append([f"/{rgb} /{dep} 518.8579", f"{rgb} {dep}", f"{rgb} {dep} 400.0"][i])
        normals = np.zeros((480, 640, 3), np.float32)
        normals[..., 1] = -1.0  # all pointing up
        write_png(base / "normals" / raw_normal_path(rgb), normals_to_png(normals))
    (base / "train_files.txt").write_text("\n".join(lines) + "\n")
    return base


def test_raw_list_parsing(raw_root: Path, tmp_path: Path) -> None:
    entries = parse_file_list(raw_root / "train_files.txt")
    assert entries[0] == ("kitchen_0028a/rgb_00045.jpg", "kitchen_0028a/sync_depth_00045.png", 518.8579)
    assert entries[1][2] is None
    assert entries[2][2] == 400.0
    assert raw_normal_path("scene/rgb_00012.jpg") == str(Path("scene/sync_normal_00012.png"))
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg b.png 518.8\nonly_one_column.jpg\n")
    with pytest.raises(DataError, match=r"bad\.txt.*line 2"):
        parse_file_list(bad)
    bad.write_text("a.jpg b.png f=518\n")
    with pytest.raises(DataError, match="not a number"):
        parse_file_list(bad)


def test_raw_samples(raw_root: Path, real: dict) -> None:
    ds = NYUv2Raw(raw_root / "sync", list_file=raw_root / "train_files.txt", normals_dir=raw_root / "normals")
    assert len(ds) == 3
    assert ds.tasks == ("depth", "normals")
    for i, (_, frame, name) in enumerate(RAW_FRAMES):
        s = ds.load_raw(i)
        assert np.abs(s["image"].astype(int) - real[name]["rgb"].astype(int)).mean() < 3
        expected = real[name]["depth_mm"].astype(np.float32) / 1000
        expected[:20] = 0
        np.testing.assert_array_equal(s["depth"], expected)
        np.testing.assert_allclose(s["normals"], np.broadcast_to([0, -1, 0], (480, 640, 3)), atol=6e-3)
        assert s["meta"]["name"].endswith(f"rgb_{frame:05d}")
    np.testing.assert_allclose(ds.load_raw(0)["K"], [[FX, 0, CX], [0, FY, CY], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_allclose(ds.load_raw(1)["K"], ds.load_raw(0)["K"])  # no focal column: NYU K
    K = ds.load_raw(2)["K"]  # focal 400: both focal lengths scaled by 400 / fx
    np.testing.assert_allclose([K[0, 0], K[1, 1], K[0, 2]], [400.0, 400.0 * FY / FX, CX], rtol=1e-6)
    without = NYUv2Raw(raw_root / "sync", list_file=raw_root / "train_files.txt")
    assert without.tasks == ("depth",)
    assert "normals" not in without.load_raw(0)


def test_raw_errors(raw_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "raw"
    shutil.copytree(raw_root, root)
    with pytest.raises(DataError, match=r"(?s)root is not a folder.*expected layout"):
        NYUv2Raw(tmp_path / "absent", list_file=root / "train_files.txt")
    with pytest.raises(DataError, match=r"missing file list.*|nolist\.txt"):
        NYUv2Raw(root / "sync", list_file=root / "nolist.txt")
    (root / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(DataError, match=r"empty\.txt.*empty"):
        NYUv2Raw(root / "sync", list_file=root / "empty.txt")
    ds = NYUv2Raw(root / "sync", list_file=root / "train_files.txt", normals_dir=root / "normals")
    (root / "sync" / "kitchen_0028a" / "sync_depth_00045.png").unlink()
    with pytest.raises(DataError, match=r"sync_depth_00045\.png"):
        ds.load_raw(0)
    jpg = root / "sync" / "bedroom_0004" / "rgb_00000.jpg"
    jpg.write_bytes(jpg.read_bytes()[:1500])
    with pytest.raises(DataError, match=r"rgb_00000\.jpg.*truncated"):
        ds.load_raw(2)
    write_png(
        root / "normals" / "kitchen_0028a" / "sync_normal_00046.png", np.zeros((240, 320, 3), np.uint8), overwrite=True
    )
    with pytest.raises(DataError, match=r"sync_normal_00046\.png.*size \(240, 320\)"):
        ds.load_raw(1)


# ------------------------------------------------------------------------------------------------
# 5. The plain folder layout: the real nyu-mini, read directly
# ------------------------------------------------------------------------------------------------
def test_folder_reads_nyu_mini(mini: Path, real: dict) -> None:
    ds = NYUv2Folder(mini, split="test")
    assert len(ds) == 6
    assert len(NYUv2Folder(mini)) == 6  # split "all": every row of index.csv
    assert ds.tasks == ("depth", "semseg")
    for i, name in enumerate(NAMES):
        s = ds.load_raw(i)
        np.testing.assert_array_equal(s["image"], real[name]["rgb"])
        np.testing.assert_array_equal(s["depth"], real[name]["depth_mm"].astype(np.float32) / 1000)
        np.testing.assert_array_equal(s["semseg"], shifted(real[name]["label40"]))
    s13 = NYUv2Folder(mini, split="test", label_set=13).load_raw(5)
    np.testing.assert_array_equal(s13["semseg"], shifted(real["0016"]["label13"]))
    np.testing.assert_allclose(s13["K"], [[FX, 0, CX], [0, FY, CY], [0, 0, 1]], rtol=1e-6)
    batch = collate([ds[0], ds[1]])
    assert batch["semseg"].shape == (2, 480, 640)
    assert batch["semseg"].max() == 255
    with pytest.raises(DataError, match=r"index\.csv.*'train' has no samples"):  # nyu-mini is all test images
        NYUv2Folder(mini, split="train")


def folder_copy(mini: Path, dest: Path) -> Path:
    shutil.copytree(mini, dest, ignore=shutil.ignore_patterns("mtan"))
    return dest


def test_folder_normals_and_errors(mini: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"(?s)absent.*expected layout"):
        NYUv2Folder(tmp_path / "absent")
    root = folder_copy(mini, tmp_path / "mini")
    normals = np.zeros((480, 640, 3), np.float32)
    normals[..., 2] = -1
    for name in NAMES:
        write_png(root / "normals" / f"{name}.png", normals_to_png(normals))
    ds = NYUv2Folder(root)
    assert ds.tasks == ("depth", "semseg", "normals")
    np.testing.assert_allclose(ds.load_raw(0)["normals"][..., 2], -1.0, atol=1e-4)

    depth = root / "depth" / "0001.png"
    depth.write_bytes(depth.read_bytes()[:3000])  # truncated PNG
    with pytest.raises(DataError, match=r"0001\.png.*truncated"):
        ds.load_raw(0)
    write_png(root / "depth" / "0002.png", np.full((240, 320), 1500, np.uint16), overwrite=True)
    with pytest.raises(DataError, match=r"depth[/\\]0002\.png.*size \(240, 320\)"):
        ds.load_raw(1)
    write_png(root / "label40" / "0009.png", np.full((480, 640), 57, np.uint8), overwrite=True)
    with pytest.raises(DataError, match=r"label40[/\\]0009\.png.*\[57\]"):
        ds.load_raw(2)
    (root / "rgb" / "0014.png").unlink()
    with pytest.raises(DataError, match=r"missing image.*|rgb[/\\]0014\.png"):
        ds.load_raw(3)
    rows = list(csv.reader((root / "index.csv").read_text().splitlines()))
    (root / "index.csv").write_text("\n".join(",".join(r[:1]) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"index\.csv.*nyu_labeled_index_1based"):
        NYUv2Folder(root)
