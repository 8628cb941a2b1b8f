"""Weizmann horse loader on tiny fixtures written in both release layouts (JPEG masks, PNG masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tridense.data.horse import WeizmannHorse, decode_mask, natural_key
from tridense.data.registry import build_dataset
from tridense.errors import DataError

H, W = 24, 32


def horse_mask(k: int) -> np.ndarray:
    """A known figure: a filled rectangle whose width depends on k."""
    mask = np.zeros((H, W), dtype=bool)
    mask[6:18, 4 : 10 + k] = True
    return mask


def image(k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def write_original(root: Path, count: int) -> None:
    """The original release: rgb/horseN.jpg and figure_ground/horseN.jpg (JPEG grey, white = horse)."""
    (root / "rgb").mkdir(parents=True)
    (root / "figure_ground").mkdir()
    for k in range(1, count + 1):
        Image.fromarray(image(k)).save(root / "rgb" / f"horse{k:03d}.jpg", quality=90)
        grey = np.where(horse_mask(k), 255, 0).astype(np.uint8)
        Image.fromarray(grey, mode="L").save(root / "figure_ground" / f"horse{k:03d}.jpg", quality=75)


def write_repackaged(root: Path, count: int, fg: int = 1) -> None:
    """The re-packaged release: weizmann_horse_db/horse/horseN.png and mask/horseN.png ({0, fg})."""
    db = root / "weizmann_horse_db"
    (db / "horse").mkdir(parents=True)
    (db / "mask").mkdir()
    for k in range(1, count + 1):
        Image.fromarray(image(k)).save(db / "horse" / f"horse{k}.png")
        Image.fromarray(np.where(horse_mask(k), fg, 0).astype(np.uint8), mode="L").save(db / "mask" / f"horse{k}.png")


def test_original_layout_jpeg_masks(tmp_path: Path) -> None:
    write_original(tmp_path / "horse", 5)
    ds = WeizmannHorse(tmp_path, "train", num_train=3)  # the folder above the release is accepted too
    assert len(ds) == 3 and ds.num_classes == 2
    for i in range(3):
        sample = ds.load_raw(i)
        # JPEG ringing never crosses the 128 threshold for a black/white mask of this size
        np.testing.assert_array_equal(sample["semseg"], horse_mask(i + 1).astype(np.int64))
        assert "K" not in sample and sample["meta"]["name"] == f"horse{i + 1:03d}"
    val = WeizmannHorse(tmp_path / "horse", "val", num_train=3)
    assert [p.stem for p, _ in val.items] == ["horse004", "horse005"]
    assert len(WeizmannHorse(tmp_path, "all")) == 5
    tensors = ds[0]
    assert tensors["semseg"].shape == (H, W) and tensors["image"].shape == (3, H, W)


@pytest.mark.parametrize("fg", [1, 255])
def test_repackaged_layout_png_masks_in_natural_order(tmp_path: Path, fg: int) -> None:
    write_repackaged(tmp_path, 12, fg=fg)
    ds = WeizmannHorse(tmp_path, "train", num_train=10)
    assert [p.stem for p, _ in ds.items][8:] == ["horse9", "horse10"]  # natural order, not horse1, horse10, ...
    sample = ds.load_raw(9)
    np.testing.assert_array_equal(sample["semseg"], horse_mask(10).astype(np.int64))


def test_split_file_and_registry(tmp_path: Path) -> None:
    write_repackaged(tmp_path, 4)
    (tmp_path / "mine.txt").write_text("horse3\nhorse1.png\n")
    ds = build_dataset("weizmann_horse", tmp_path, "mine")
    assert [p.stem for p, _ in ds.items] == ["horse3", "horse1"]


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no image/mask folder pair"):
        WeizmannHorse(tmp_path)
    write_repackaged(tmp_path, 3)
    db = tmp_path / "weizmann_horse_db"
    Image.fromarray(np.full((H, W), 7, dtype=np.uint8), mode="L").save(db / "mask" / "horse2.png")
    with pytest.raises(DataError, match=r"horse2.png.*\{0, 1\} or \{0, 255\}"):
        WeizmannHorse(tmp_path, "all").load_raw(1)
    (db / "mask" / "horse3.png").unlink()
    with pytest.raises(DataError, match=r"1 images have no mask.*horse3"):
        WeizmannHorse(tmp_path)
    write_repackaged(tmp_path / "other", 2)
    with pytest.raises(DataError, match="unknown split 'test'"):
        WeizmannHorse(tmp_path / "other", "test")


def test_mask_decoding_rules() -> None:
    assert decode_mask(np.array([[0, 127, 128, 255]]), lossy=True).tolist() == [[0, 0, 1, 1]]
    assert decode_mask(np.array([[0, 1]]), lossy=False).tolist() == [[0, 1]]
    assert sorted(["horse10", "horse2", "horse1"], key=natural_key) == ["horse1", "horse2", "horse10"]
