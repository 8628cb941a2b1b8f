"""PASCAL VOC 2012 loader on a tiny VOCdevkit written in the true encodings (palette PNGs, 255 boundaries)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tridense.data.registry import build_dataset
from tridense.data.voc import CLASSES, VOC2012, voc_colormap
from tridense.errors import DataError

H, W = 20, 28
IDS = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
AUG_ONLY = "2008_000002"  # an SBD image with no SegmentationClass file


def object_class(image_id: str) -> int:
    return 1 + sum(map(ord, image_id)) % 20


def labels_of(image_id: str) -> np.ndarray:
    """Known labels: background, one object of class (hash of the id) with a 255 void band around it."""
    cls = object_class(image_id)
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[4:16, 6:20] = 255  # void band
    labels[5:15, 7:19] = cls
    return labels


def save_palette(path: Path, indices: np.ndarray) -> None:
    """Write indices as a palette (mode P) PNG with the devkit's colour map, as the devkit ships them."""
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    img.putpalette(voc_colormap().ravel().tolist())
    img.save(path)


def write_devkit(base: Path) -> Path:
    voc = base / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject", "SegmentationClassAug"):
        (voc / folder).mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    every = IDS["train"] + IDS["val"] + [AUG_ONLY]
    for image_id in every:
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        labels = labels_of(image_id)
        aug = np.where(labels == 255, object_class(image_id), labels)  # SBD: grey indices, no void band
        Image.fromarray(aug, mode="L").save(voc / "SegmentationClassAug" / f"{image_id}.png")
        if image_id == AUG_ONLY:
            continue
        save_palette(voc / "SegmentationClass" / f"{image_id}.png", labels)
        objects = np.where(labels == 255, 255, (labels > 0).astype(np.uint8))
        save_palette(voc / "SegmentationObject" / f"{image_id}.png", objects)
    for split, ids in IDS.items():
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in IDS["train"] + [AUG_ONLY]]
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(lines) + "\n")
    return voc


@pytest.fixture
def devkit(tmp_path: Path) -> Path:
    return write_devkit(tmp_path)


def test_palette_indices_are_the_labels(devkit: Path) -> None:
    stored = Image.open(devkit / "SegmentationClass" / f"{IDS['train'][0]}.png")
    assert stored.mode == "P"  # the true encoding: palette PNG
    ds = VOC2012(devkit.parent.parent, "train")  # the folder holding VOCdevkit is accepted
    assert len(ds) == 2 and ds.num_classes == 21 and CLASSES[0] == "background"
    for i, image_id in enumerate(IDS["train"]):
        sample = ds.load_raw(i)
        np.testing.assert_array_equal(sample["semseg"], labels_of(image_id))  # 255 void kept as ignore
        inst = sample["instances"]
        assert inst.max() == 1 and (inst[labels_of(image_id) == 255] == 0).all()
    tensors = ds[0]
    assert tensors["semseg"].dtype.is_floating_point is False and int(tensors["semseg"].max()) == 255


def test_val_and_registry(devkit: Path) -> None:
    ds = build_dataset("voc2012", devkit, "val")
    assert len(ds) == 1
    np.testing.assert_array_equal(ds.load_raw(0)["semseg"], labels_of(IDS["val"][0]))


def test_sbd_augmented_train_list(devkit: Path) -> None:
    ds = VOC2012(devkit, "train_aug")
    assert len(ds) == 3 and ds.label_path(2).parent.name == "SegmentationClassAug"
    sample = ds.load_raw(2)
    assert "instances" not in sample  # an SBD-only image has no SegmentationObject file
    assert set(np.unique(sample["semseg"]).tolist()) == {0, object_class(AUG_ONLY)}
    ids_only = devkit / "aug_ids.txt"
    ids_only.write_text(f"{IDS['train'][0]}\n{AUG_ONLY}\n")
    ds = VOC2012(devkit, "train_aug", split_file=ids_only)  # a list of ids reads SegmentationClassAug (auto)
    assert ds.label_path(1) == devkit / "SegmentationClassAug" / f"{AUG_ONLY}.png"
    assert VOC2012(devkit, "train", labels="aug").label_dir == "SegmentationClassAug"


def test_errors_name_the_problem(devkit: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no list for split 'trainval'"):
        VOC2012(devkit, "trainval")
    with pytest.raises(DataError, match="no JPEGImages folder"):
        VOC2012(tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets")
    rgb = devkit / "SegmentationClass" / f"{IDS['val'][0]}.png"
    Image.fromarray(voc_colormap()[labels_of(IDS["val"][0])]).save(rgb)  # colours instead of indices
    with pytest.raises(DataError, match="single-channel label image"):
        VOC2012(devkit, "val").load_raw(0)
    with pytest.raises(DataError, match="labels must be"):
        VOC2012(devkit, "val", labels="xml")  # type: ignore[arg-type]


def test_colormap_matches_the_devkit() -> None:
    cmap = voc_colormap()
    assert cmap[0].tolist() == [0, 0, 0] and cmap[1].tolist() == [128, 0, 0] and cmap[15].tolist() == [192, 128, 128]
    assert cmap[255].tolist() == [224, 224, 192]  # the void colour
