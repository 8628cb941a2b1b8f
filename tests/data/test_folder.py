"""The generic folder format: round trip through the writers and the reader, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tridense.data.folder import FolderDataset, write_folder_meta, write_folder_sample, write_split
from tridense.errors import DataError

H, W = 48, 64
CLASSES = ["floor", "wall", "table", "chair", "lamp"]
K_DEFAULT = np.array([[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]])
K_OTHER = np.array([[71.123456, 0.0, 30.25], [0.0, 70.5, 24.125], [0.0, 0.0, 1.0]])


def smooth(rng: np.random.Generator, channels: int) -> np.ndarray:
    """A smooth random field (H, W, channels): bilinear upsampling of a coarse random grid."""
    coarse = rng.normal(size=(4, 5, channels))
    v, u = np.linspace(0, 3, H), np.linspace(0, 4, W)
    v0, u0 = np.minimum(v.astype(int), 2), np.minimum(u.astype(int), 3)
    fv, fu = (v - v0)[:, None, None], (u - u0)[None, :, None]
    c = coarse
    return ((1 - fv) * (1 - fu) * c[v0][:, u0] + (1 - fv) * fu * c[v0][:, u0 + 1]
            + fv * (1 - fu) * c[v0 + 1][:, u0] + fv * fu * c[v0 + 1][:, u0 + 1])  # fmt: skip


def random_sample(seed: int, K: np.ndarray) -> dict:
    rng = np.random.default_rng(seed)
    depth = (np.exp(smooth(rng, 1)[..., 0]) * 3.0).astype(np.float32)  # ~0.3 .. 30 m
    depth[:5, :7] = 0.0
    normals = smooth(rng, 3) + np.array([0.0, 0.0, -2.0])
    normals = (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float32)
    normals[-6:, -4:] = 0.0
    semseg = rng.integers(0, len(CLASSES), size=(H, W))
    semseg[10:12] = 255
    return {
        "image": rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8),
        "depth": depth,
        "normals": normals,
        "semseg": semseg,
        "instances": rng.integers(0, 1000, size=(H, W)),
        "K": K.astype(np.float32),
    }


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "toy"
    write_folder_meta(root, dataset="toy", classes=CLASSES, K=K_DEFAULT, renderer="synthetic", seed=3)
    samples = {"a": random_sample(0, K_DEFAULT), "b": random_sample(1, K_OTHER)}
    for name, sample in samples.items():
        write_folder_sample(root, name, sample)
    write_split(root, "train", list(samples))
    return root, samples


def test_round_trip_within_the_documented_quantisation(folder: tuple[Path, dict]) -> None:
    root, samples = folder
    ds = FolderDataset(root, "train")
    assert ds.name == "toy" and ds.tasks == ("depth", "normals", "semseg") and ds.num_classes == 5
    assert ds.class_names == tuple(CLASSES) and ds.info == {"renderer": "synthetic", "seed": 3}
    assert not (root / "intrinsics" / "a.txt").exists() and (root / "intrinsics" / "b.txt").is_file()
    for i, (name, written) in enumerate(samples.items()):
        read = ds.load_raw(i)
        assert read["meta"]["name"] == name and read["meta"]["dataset"] == "toy"
        np.testing.assert_array_equal(read["image"], written["image"])
        np.testing.assert_array_equal(read["depth"] == 0, written["depth"] == 0)
        assert np.abs(read["depth"] - written["depth"]).max() <= 0.5e-3 + 1e-6  # 1 mm steps, rounded
        valid = np.linalg.norm(written["normals"], axis=-1) > 0
        np.testing.assert_array_equal(np.linalg.norm(read["normals"], axis=-1) > 0, valid)
        cos = np.clip((read["normals"][valid] * written["normals"][valid]).sum(-1), -1, 1)
        assert np.degrees(np.arccos(cos)).max() < 0.5
        np.testing.assert_array_equal(read["semseg"], written["semseg"])
        np.testing.assert_array_equal(read["instances"], written["instances"])
        np.testing.assert_allclose(read["K"], written["K"], rtol=1e-7)
    batch = ds[1]
    assert batch["depth"].shape == (1, H, W) and batch["normals"].shape == (3, H, W)
    assert batch["instances"].shape == (H, W)


def test_writers_never_overwrite_unless_asked(folder: tuple[Path, dict]) -> None:
    root, samples = folder
    with pytest.raises(FileExistsError, match=r"a\.png"):
        write_folder_sample(root, "a", samples["b"])
    with pytest.raises(FileExistsError, match=r"meta\.json"):
        write_folder_meta(root, dataset="other")
    with pytest.raises(FileExistsError, match=r"train\.txt"):
        write_split(root, "train", ["a"])
    write_folder_sample(root, "a", samples["b"], overwrite=True)  # b's K differs: an intrinsics file appears
    read = FolderDataset(root, "train").load_raw(0)
    np.testing.assert_array_equal(read["semseg"], samples["b"]["semseg"])
    np.testing.assert_allclose(read["K"], K_OTHER, rtol=1e-7)
    assert not list(root.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_tasks_are_the_folders_present(tmp_path: Path) -> None:
    write_folder_meta(tmp_path, dataset="depth-only")
    sample = random_sample(2, K_DEFAULT)
    write_folder_sample(tmp_path, "x", {k: sample[k] for k in ("image", "depth")})
    write_split(tmp_path, "val", ["x"])
    ds = FolderDataset(tmp_path, "val")
    read = ds.load_raw(0)
    assert ds.available_tasks == ("depth",) and set(read) == {"image", "depth", "meta"}  # no K anywhere


def test_writer_rejects_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"meta\.json: missing meta\.json; call write_folder_meta"):
        write_folder_sample(tmp_path, "x", random_sample(0, K_DEFAULT))
    write_folder_meta(tmp_path, dataset="toy", classes=CLASSES)
    far = random_sample(0, K_DEFAULT)
    far["depth"][0, 0] = 70.0
    with pytest.raises(DataError, match="does not fit 16 bits"):
        write_folder_sample(tmp_path, "far", far)
    bad = random_sample(0, K_DEFAULT)
    bad["semseg"][0, 0] = 7
    with pytest.raises(DataError, match=r"labels \[7\] outside 0\.\.4"):
        write_folder_sample(tmp_path, "bad", bad)
    with pytest.raises(DataError, match="sample name"):
        write_folder_sample(tmp_path, "../escape", random_sample(0, K_DEFAULT))
    assert not (tmp_path / "rgb").exists()  # nothing written by the failed calls


def test_missing_root_prints_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected layout") as err:
        FolderDataset(tmp_path / "nowhere")
    assert "splits/<split>.txt" in str(err.value)


def test_missing_files_are_named(folder: tuple[Path, dict]) -> None:
    root, _ = folder
    (root / "depth" / "b.png").unlink()
    with pytest.raises(DataError, match=r"depth/b\.png: missing depth file of sample 'b'"):
        FolderDataset(root, "train").load_raw(1)
    assert "depth" not in FolderDataset(root, "train", allow_missing=True).load_raw(1)
    with pytest.raises(DataError, match=r"splits/test\.txt: missing split list \(splits present: \['train'\]\)"):
        FolderDataset(root, "test")


def test_truncated_image_is_named(folder: tuple[Path, dict]) -> None:
    root, _ = folder
    rgb = root / "rgb" / "a.png"
    rgb.write_bytes(rgb.read_bytes()[:200])
    with pytest.raises(DataError, match=r"rgb/a\.png.*truncated"):
        FolderDataset(root, "train").load_raw(0)


def test_depth_of_wrong_size_is_named(folder: tuple[Path, dict]) -> None:
    root, _ = folder
    Image.fromarray(np.full((10, 20), 1000, dtype=np.uint16)).save(root / "depth" / "a.png")
    with pytest.raises(DataError, match=r"depth/a\.png.*size \(10, 20\)"):
        FolderDataset(root, "train").load_raw(0)


def test_labels_out_of_range_are_named(folder: tuple[Path, dict]) -> None:
    root, _ = folder
    Image.fromarray(np.full((H, W), 9, dtype=np.uint8)).save(root / "semseg" / "a.png")
    with pytest.raises(DataError, match=r"semseg/a\.png: labels \[9\] outside 0\.\.4"):
        FolderDataset(root, "train").load_raw(0)


def test_empty_split_list_and_bad_meta(folder: tuple[Path, dict]) -> None:
    root, _ = folder
    (root / "splits" / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match=r"empty\.txt: split list is empty"):
        FolderDataset(root, "empty")
    with pytest.raises(DataError, match="no sample names"):
        write_split(root, "none", [])
    (root / "meta.json").write_text('{"format": "tridense-folder", "version": 2}')
    with pytest.raises(DataError, match=r"meta\.json: 'version' 2 is not supported"):
        FolderDataset(root, "train")
