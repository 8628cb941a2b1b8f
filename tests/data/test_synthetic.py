"""The synthetic scenes: determinism, exact and mutually consistent ground truth."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tridense.data.synthetic import CLASS_NAMES, SyntheticScenes
from tridense.errors import DataError

SIZE = (96, 128)


def _digest(raw: dict) -> str:
    h = hashlib.sha256()
    for key in ("image", "depth", "normals", "semseg", "instances", "K"):
        h.update(np.ascontiguousarray(raw[key]).tobytes())
    return h.hexdigest()


def _fd_normals(raw: dict) -> tuple[np.ndarray, np.ndarray]:
    """Normals from central differences of back-projected points (an independent check of the renderer).

    Returns the normals of the interior pixels and where the 3x3 neighbourhood lies on one smooth surface
    (same instance and class, no crease in the exact normals, no depth edge), the only places where a
    finite difference is a fair reference.
    """
    depth, K = raw["depth"], raw["K"]
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    pts = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1)  # (H, W, 3)
    du = pts[1:-1, 2:] - pts[1:-1, :-2]
    dv = pts[2:, 1:-1] - pts[:-2, 1:-1]
    n = np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
    n[(n * pts[1:-1, 1:-1]).sum(-1) > 0] *= -1  # face the camera

    def neighbours(a: np.ndarray) -> list[np.ndarray]:
        return [a[1:-1, 2:], a[1:-1, :-2], a[2:, 1:-1], a[:-2, 1:-1]]

    centre = (slice(1, -1), slice(1, -1))
    smooth = z[centre] > 0
    for key in ("semseg", "instances"):
        for other in neighbours(raw[key]):
            smooth &= other == raw[key][centre]
    for other in neighbours(raw["normals"]):
        smooth &= (other * raw["normals"][centre]).sum(-1) > 0.999
    for other in neighbours(z):
        smooth &= np.abs(other - z[centre]) < 0.02 * z[centre]
    return n, smooth


def test_same_seed_split_index_gives_identical_samples():
    a = SyntheticScenes("train", size=SIZE, seed=3).load_raw(5)
    b = SyntheticScenes("train", size=SIZE, seed=3).load_raw(5)
    assert _digest(a) == _digest(b)


def test_splits_indices_and_seeds_differ():
    digests = {
        _digest(SyntheticScenes(split, size=SIZE, seed=seed).load_raw(index))
        for split in ("train", "val", "test")
        for seed in (0, 1)
        for index in (0, 1)
    }
    assert len(digests) == 12


def test_normals_are_exact_against_depth():
    ds = SyntheticScenes("val", size=(120, 160), sensor_invalid=False, noise=False)
    errors = []
    for index in range(4):
        raw = ds.load_raw(index)
        n_fd, smooth = _fd_normals(raw)
        n = raw["normals"][1:-1, 1:-1]
        cos = np.clip((n_fd * n).sum(-1), -1, 1)[smooth]
        errors.append(np.degrees(np.arccos(cos)))
    err = np.concatenate(errors)
    assert len(err) > 10000
    assert np.median(err) < 0.5
    assert np.mean(err < 2) > 0.99


def test_ground_truth_properties():
    ds = SyntheticScenes("train", size=SIZE, sensor_invalid=False)
    for index in range(6):
        raw = ds.load_raw(index)
        depth, normals, labels, inst = raw["depth"], raw["normals"], raw["semseg"], raw["instances"]
        assert raw["image"].dtype == np.uint8 and raw["image"].shape == (*SIZE, 3)
        assert (depth > 0).all() and depth.max() < 12.0  # a room is at most ~11 m across
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
        # Normals face the camera: n . ray < 0.
        K = raw["K"]
        v, u = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
        ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(SIZE)], axis=-1)
        assert ((normals * ray).sum(-1) < 1e-6).all()
        assert labels.min() >= 0 and labels.max() < len(CLASS_NAMES)
        # Instances: one class each; the room (instance 0) is wall, floor or ceiling.
        room = {CLASS_NAMES.index(c) for c in ("wall", "floor", "ceiling")}
        assert set(np.unique(labels[inst == 0])) <= room
        assert not np.isin(labels[inst > 0], list(room)).any()
        for i in np.unique(inst[inst > 0]):
            assert len(np.unique(labels[inst == i])) == 1
        # Floor pixels face up (camera y is down), the ceiling down.
        floor = labels == CLASS_NAMES.index("floor")
        if floor.sum() > 50:
            assert np.median(normals[floor][:, 1]) < -0.7


def test_sensor_invalid_regions_only_where_expected():
    clean = SyntheticScenes("train", size=SIZE, sensor_invalid=False, noise=False)
    noisy = SyntheticScenes("train", size=SIZE, sensor_invalid=True, noise=False)
    found_invalid = False
    for index in range(8):
        a, b = clean.load_raw(index), noisy.load_raw(index)
        np.testing.assert_array_equal(a["semseg"], b["semseg"])
        invalid = b["depth"] == 0
        found_invalid |= bool(invalid.any())
        np.testing.assert_array_equal(a["depth"][~invalid], b["depth"][~invalid])
        # Normals are invalid exactly on window glass, which has no depth either.
        no_normal = (b["normals"] == 0).all(-1)
        assert (invalid[no_normal]).all()
        assert set(np.unique(b["semseg"][no_normal])) <= {CLASS_NAMES.index("window")}
    assert found_invalid


def test_intrinsics_follow_size():
    small = SyntheticScenes("train", size=(120, 160)).K
    big = SyntheticScenes("train", size=(240, 320)).K
    assert small[0, 0] == pytest.approx(big[0, 0] / 2)
    assert (small[0, 2] + 0.5) == pytest.approx((big[0, 2] + 0.5) / 2)


def test_bad_arguments_are_named():
    with pytest.raises(DataError, match="unknown synthetic split"):
        SyntheticScenes("training")
    with pytest.raises(DataError, match="size"):
        SyntheticScenes("train", size=(4, 4))
    with pytest.raises(DataError, match="length"):
        SyntheticScenes("train", length=0)


def test_getitem_returns_the_tensor_contract():
    sample = SyntheticScenes("val", size=SIZE)[0]
    assert sample["image"].shape == (3, *SIZE) and sample["image"].dtype.is_floating_point
    assert sample["depth"].shape == (1, *SIZE)
    assert sample["normals"].shape == (3, *SIZE)
    assert sample["semseg"].shape == SIZE and str(sample["semseg"].dtype) == "torch.int64"
    assert sample["K"].shape == (3, 3)
    assert sample["meta"]["dataset"] == "synthetic"


def test_cache_keeps_samples_and_auto_caches_only_small_splits():
    small = SyntheticScenes("val", size=(24, 32), length=3)
    assert small.cache  # 3 x 24 x 32 pixels: far below the 1 GiB of cache=None
    assert not SyntheticScenes("train", size=(480, 640), length=20000).cache
    plain = SyntheticScenes("val", size=(24, 32), length=3, cache=False)
    first, again, reference = small.load(1), small.load(1), plain.load(1)
    assert 1 in small._cache and not plain._cache
    np.testing.assert_array_equal(first["image"], reference["image"])
    np.testing.assert_array_equal(first["depth"], reference["depth"])
    np.testing.assert_array_equal(first["semseg"], reference["semseg"])
    np.testing.assert_allclose(first["normals"], reference["normals"], atol=2e-3)  # stored as float16
    np.testing.assert_array_equal(first["normals"], again["normals"])
    again["depth"][:] = -1.0  # a caller that modifies its sample does not change the cache
    assert (small.load(1)["depth"] >= 0).all()
    import pickle

    assert pickle.loads(pickle.dumps(small))._cache == {}  # workers start with an empty cache
