"""PAP Fig. 1 pair statistic: hand counts, threshold edges, invariances, predictions, real NYU samples."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tridense.analysis.pairs import (
    PairCounts,
    PairThresholds,
    count_pairs,
    format_pairs_table,
    grid_indices,
    image_pair_counts,
    pair_relations,
    run_pairs,
    summarize,
    valid_mask,
)
from tridense.data.io import write_npy, write_png
from tridense.data.nyu import NYUv2Preprocessed
from tridense.errors import ConfigError, DataError

NAMES = ("0001", "0002", "0009", "0014", "0015", "0016")  # the six nyu-mini test images
ALL_PAIRS = {"depth-normals", "depth-semseg", "normals-semseg"}
T = PairThresholds()


def tilted(theta_deg: float) -> np.ndarray:
    """A unit normal facing the camera, tilted by ``theta_deg`` towards +x."""
    t = math.radians(theta_deg)
    return np.array([math.sin(t), 0.0, -math.cos(t)])


# ------------------------------------------------------------------------------------------------
# Fixtures: the real samples in the MTAN 288x384 layout (all three tasks, classic normals)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mtan_root(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ROOT/val/{image,depth,label,normal}/<i>.npy`` from nyu-mini, as the MTAN release stores them."""
    mini = shared_data / "nyu-mini"
    root = tmp_path_factory.mktemp("nyuv2_mtan")
    for kind in ("image", "depth", "label", "normal"):
        (root / "val" / kind).mkdir(parents=True)
    for i, name in enumerate(NAMES):
        rgb = Image.open(mini / "rgb" / f"{name}.png").convert("RGB")
        crop = rgb.crop((44, 53, 596, 467)).resize((384, 288), Image.BILINEAR)  # rows 53:467, cols 44:596
        np.save(root / "val" / "image" / f"{i}.npy", np.asarray(crop, np.float32) / 255.0)
        depth = np.load(mini / "mtan" / f"{name}_depth.npy")
        np.save(root / "val" / "depth" / f"{i}.npy", depth[..., None])  # (288, 384, 1)
        label = np.load(mini / "mtan" / f"{name}_label13.npy")
        np.save(root / "val" / "label" / f"{i}.npy", label.astype(np.float32))
        np.save(root / "val" / "normal" / f"{i}.npy", np.load(mini / "mtan" / f"{name}_normal.npy"))
    return root


@pytest.fixture(scope="module")
def mtan_result(mtan_root: Path) -> dict:
    return run_pairs("nyuv2_mtan", mtan_root, split="val", stride=16)


# ------------------------------------------------------------------------------------------------
# Hand-counted cases
# ------------------------------------------------------------------------------------------------
def four_point_maps() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A 3x8 image whose stride-2 grid is row 1, columns 1, 3, 5, 7 (points P0..P3); every other pixel
    holds junk that must not matter.

    P:        0     1     2     3
    depth     2.0   2.2   3.0   0 (invalid)
    normals   0°    20°   50°   80° tilt (pairwise angle = difference of tilts)
    label     1     2     1     2
    """
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (3, 8)).astype(np.float32)
    normals = rng.normal(size=(3, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 13, (3, 8))
    cols = [1, 3, 5, 7]
    depth[1, cols] = [2.0, 2.2, 3.0, 0.0]
    normals[1, cols] = np.stack([tilted(a) for a in (0, 20, 50, 80)])
    labels[1, cols] = [1, 2, 1, 2]
    values = {"depth": depth, "normals": normals, "semseg": labels}
    return values, {t: valid_mask(t, v) for t, v in values.items()}


def test_hand_counted_four_points() -> None:
    values, valid = four_point_maps()
    counts = image_pair_counts(values, valid, stride=2, thresholds=T)
    # depth pairs (P3 invalid): 01 rel 0.09 similar, 02 rel 0.33 and 12 rel 0.27 dissimilar.
    # normals: 01 20° similar; 02 50°, 03 80°, 13 60° dissimilar; 12 and 23 30° neither.
    # labels: 02 and 13 equal; 01, 03, 12, 23 different.
    assert counts["depth-normals"] == PairCounts(1, 1, 1, 2, 1, 1, pairs=3)
    assert counts["depth-semseg"] == PairCounts(1, 1, 0, 2, 2, 1, pairs=3)
    assert counts["normals-semseg"] == PairCounts(1, 2, 0, 3, 4, 1, pairs=6)

    pairs = summarize([counts])
    dn, ds, ns = pairs["depth-normals"], pairs["depth-semseg"], pairs["normals-semseg"]
    assert dn["dissimilar"]["jaccard"] == pytest.approx(1 / 2)  # |{02}| / |{02, 12}|
    assert dn["dissimilar"]["a_given_b"] == pytest.approx(1.0)  # every normals-dissimilar pair is depth-dissimilar
    assert dn["dissimilar"]["b_given_a"] == pytest.approx(1 / 2)
    assert ds["similar"]["jaccard"] == 0.0
    assert ds["dissimilar"]["jaccard"] == pytest.approx(1 / 3)
    assert ns["dissimilar"]["jaccard"] == pytest.approx(1 / 6)  # {03} of {01, 02, 03, 12, 13, 23}
    assert ns["dissimilar"]["a_given_b"] == pytest.approx(1 / 4)
    assert ns["dissimilar"]["b_given_a"] == pytest.approx(1 / 3)
    assert ns["pairs_considered"] == 6

    # An ignored label removes P1's pairs from the pairs with segmentation only.
    values["semseg"][1, 3] = 255
    valid["semseg"] = valid_mask("semseg", values["semseg"])
    counts = image_pair_counts(values, valid, stride=2, thresholds=T)
    assert counts["normals-semseg"].pairs == 3
    assert counts["depth-semseg"].pairs == 1
    assert counts["depth-normals"].pairs == 3


def test_empty_denominators_are_none_and_pooling_sums_counts() -> None:
    a = {"depth-semseg": PairCounts(0, 2, 0, 4, 1, 1, pairs=4)}
    b = {"depth-semseg": PairCounts(3, 1, 1, 1, 0, 0, pairs=4)}
    only_a = summarize([a])["depth-semseg"]
    assert only_a["similar"]["b_given_a"] is None  # |A| = 0
    assert only_a["similar"]["jaccard"] == 0.0
    both = summarize([a, b])["depth-semseg"]
    assert (both["similar"]["count_a"], both["similar"]["count_b"], both["similar"]["count_both"]) == (
        3,
        3,
        1,
    )
    assert both["similar"]["jaccard"] == pytest.approx(1 / 5)
    assert both["similar"]["b_given_a"] == pytest.approx(1 / 3)  # pooled, not the mean of None and 1/3
    assert both["similar"]["per_image_mean"]["b_given_a"] == pytest.approx(1 / 3)  # None skipped
    assert both["similar"]["per_image_mean"]["a_given_b"] == pytest.approx((0 / 2 + 1 / 1) / 2)
    assert both["pairs_considered"] == 8
    assert both["images"] == 2


def test_grid_is_every_stride_pixels_from_half_a_stride() -> None:
    rows, cols = grid_indices((480, 640), 16)
    assert rows[:3].tolist() == [8, 24, 40]
    assert (len(rows), len(cols), int(rows[-1]), int(cols[-1])) == (30, 40, 472, 632)
    rows, cols = grid_indices((5, 4), 1)
    assert (rows.tolist(), cols.tolist()) == ([0, 1, 2, 3, 4], [0, 1, 2, 3])


# ------------------------------------------------------------------------------------------------
# Threshold edges
# ------------------------------------------------------------------------------------------------
def test_depth_at_threshold_is_dissimilar() -> None:
    ref = np.array([1.0])
    others = np.array([0.8, 0.80001, 0.79999, 1.25, 1.2499, 1.0])  # rel: 0.2, <0.2, >0.2, 0.2, <0.2, 0
    similar, dissimilar = pair_relations("depth", ref, others, T)
    assert similar[0].tolist() == [False, True, False, False, True, True]
    assert dissimilar[0].tolist() == [True, False, True, True, False, False]  # depth: one or the other
    # The relation is symmetric and a float32 input (as read from files) gives the same answer.
    sim_t, dis_t = pair_relations("depth", others.astype(np.float32), ref.astype(np.float32), T)
    np.testing.assert_array_equal(sim_t[:, 0], similar[0])
    np.testing.assert_array_equal(dis_t[:, 0], dissimilar[0])


def test_normal_angle_edges() -> None:
    angles = [0.0, 25.9, 26.0, 26.1, 39.9, 40.0, 90.0, 180.0]
    similar, dissimilar = pair_relations("normals", tilted(0)[None], np.stack([tilted(a) for a in angles]), T)
    assert similar[0].tolist() == [True, True, False, False, False, False, False, False]
    assert dissimilar[0].tolist() == [False, False, False, False, False, True, True, True]
    one = PairThresholds(normal_similar_deg=30.0, normal_dissimilar_deg=30.0)  # one threshold: a partition
    similar, dissimilar = pair_relations("normals", tilted(0)[None], np.stack([tilted(a) for a in angles]), one)
    np.testing.assert_array_equal(similar, ~dissimilar)


def test_labels_relation_and_settings_validation() -> None:
    similar, dissimilar = pair_relations("semseg", np.array([3, 0]), np.array([3, 4, 0]), T)
    assert similar.tolist() == [[True, False, False], [False, False, True]]
    np.testing.assert_array_equal(dissimilar, ~similar)
    with pytest.raises(ConfigError, match="depth_threshold"):
        PairThresholds(depth=1.5)
    with pytest.raises(ConfigError, match="similar <= dissimilar"):
        PairThresholds(normal_similar_deg=45.0, normal_dissimilar_deg=40.0)
    with pytest.raises(ConfigError, match="stride"):
        grid_indices((10, 10), 0)
    with pytest.raises(ConfigError, match="unknown task"):
        pair_relations("albedo", np.ones(2), np.ones(2), T)


# ------------------------------------------------------------------------------------------------
# Against a reference written pair by pair; blocks and invariances
# ------------------------------------------------------------------------------------------------
def reference_counts(values: dict, valid: dict, t: PairThresholds) -> dict[str, PairCounts]:
    """Pair-by-pair counts in plain Python (an independent implementation of the rules)."""

    def relation(task: str, x, y) -> tuple[bool, bool]:
        if task == "depth":
            rel = abs(x - y) / max(x, y)
            return rel < t.depth, rel >= t.depth
        if task == "normals":
            cos = float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))
            angle = math.degrees(math.acos(min(1.0, max(-1.0, cos))))
            return angle < t.normal_similar_deg, angle >= t.normal_dissimilar_deg
        return x == y, x != y

    out = {}
    for a, b in (("depth", "normals"), ("depth", "semseg"), ("normals", "semseg")):
        c = PairCounts()
        n = len(valid[a])
        for i, j in itertools.combinations(range(n), 2):
            if not (valid[a][i] and valid[a][j] and valid[b][i] and valid[b][j]):
                continue
            ra, rb = relation(a, values[a][i], values[a][j]), relation(b, values[b][i], values[b][j])
            c += PairCounts(ra[0], rb[0], ra[0] and rb[0], ra[1], rb[1], ra[1] and rb[1], 1)
        out[f"{a}-{b}"] = c
    return out


def test_counts_match_pairwise_reference_for_any_block_size() -> None:
    rng = np.random.default_rng(1)
    n = 60
    values = {
        "depth": np.where(rng.random(n) < 0.1, 0.0, rng.uniform(1.0, 3.0, n)),
        "normals": rng.normal(size=(n, 3)) * rng.uniform(0.5, 2.0, (n, 1)),  # any length
        "semseg": np.where(rng.random(n) < 0.1, 255, rng.integers(0, 3, n)),
    }
    values["normals"][rng.random(n) < 0.1] = 0.0
    valid = {t: valid_mask(t, v) for t, v in values.items()}
    expected = reference_counts(values, valid, T)
    assert expected["depth-normals"].similar_both > 0  # the random case exercises every count
    for block in (1, 7, 60 * 13, 1 << 21):
        assert count_pairs(values, valid, T, block_entries=block) == expected


def test_global_depth_scale_and_normal_length_change_nothing(mtan_root: Path) -> None:
    raw = NYUv2Preprocessed(mtan_root, split="val").load_raw(2)
    values = {t: raw[t] for t in ("depth", "normals", "semseg")}
    valid = {t: valid_mask(t, v) for t, v in values.items()}
    base = image_pair_counts(values, valid, stride=8, thresholds=T)
    scaled = {**values, "depth": values["depth"] * np.float32(3.7), "normals": values["normals"] * 2.5}
    assert image_pair_counts(scaled, valid, stride=8, thresholds=T) == base
    # ... while a change of threshold does change the depth counts.
    looser = image_pair_counts(values, valid, stride=8, thresholds=PairThresholds(depth=0.3))
    assert looser["depth-semseg"].similar_a > base["depth-semseg"].similar_a


# ------------------------------------------------------------------------------------------------
# Real NYU samples through the registry
# ------------------------------------------------------------------------------------------------
def test_real_nyu_three_tasks_sanity(mtan_root: Path, mtan_result: dict) -> None:
    r = mtan_result
    assert r["images"] == 6
    assert set(r["pairs"]) == ALL_PAIRS
    assert r["settings"]["source"] == "ground truth"
    assert r["settings"]["tasks"] == ["depth", "normals", "semseg"]
    for key, entry in r["pairs"].items():
        assert entry["images"] == 6
        pairs = entry["pairs_considered"]
        assert pairs > 10_000
        for kind in ("similar", "dissimilar"):
            e = entry[kind]
            a, b, both = e["count_a"], e["count_b"], e["count_both"]
            assert 0 < both <= min(a, b) and max(a, b) <= pairs, (key, kind)
            assert e["jaccard"] == pytest.approx(both / (a + b - both))
            assert e["a_given_b"] == pytest.approx(both / b)
            assert e["b_given_a"] == pytest.approx(both / a)
            for value in (e["jaccard"], e["a_given_b"], e["b_given_a"], *e["per_image_mean"].values()):
                assert 0.0 <= value <= 1.0
        a_is_partition = not key.startswith("normals")  # depth and labels split every pair in two
        if a_is_partition:
            assert entry["similar"]["count_a"] + entry["dissimilar"]["count_a"] == pairs
        else:
            assert entry["similar"]["count_a"] + entry["dissimilar"]["count_a"] < pairs  # 26-40°: neither
    # Depth is valid exactly where normals are in this release, so depth-normals counts every pair of grid
    # points with depth: C(k, 2) per image.
    ds = NYUv2Preprocessed(mtan_root, split="val", tasks=["depth"])
    rows, cols = grid_indices((288, 384), 16)
    k = [int((ds.load_raw(i)["depth"][np.ix_(rows, cols)] > 0).sum()) for i in range(len(ds))]
    assert r["pairs"]["depth-normals"]["pairs_considered"] == sum(n * (n - 1) // 2 for n in k)
    json.dumps(r)  # JSON-able as it is
    table = format_pairs_table(r)
    assert all(key in table for key in ALL_PAIRS)
    assert "6 images, stride 16" in table


def test_run_options_limit_stride_and_dataset_args(mtan_root: Path, mtan_result: dict) -> None:
    r = run_pairs("nyuv2_mtan", mtan_root, split="val", stride=32, limit=2, dataset_args={"tasks": ["depth", "semseg"]})
    assert r["images"] == 2
    assert set(r["pairs"]) == {"depth-semseg"}
    assert r["pairs"]["depth-semseg"]["pairs_considered"] < mtan_result["pairs"]["depth-semseg"]["pairs_considered"]
    assert r["settings"]["stride"] == 32 and r["settings"]["limit"] == 2
    with pytest.raises(ConfigError, match="limit"):
        run_pairs("nyuv2_mtan", mtan_root, split="val", limit=0)


def test_single_task_dataset_is_refused(shared_data: Path) -> None:
    with pytest.raises(DataError, match=r"at least two tasks.*\['depth'\]"):
        run_pairs("nyuv2_folder", shared_data / "nyu-mini", split="test", dataset_args={"tasks": ["depth"]})


def test_folder_without_normals_gives_depth_semseg_only(shared_data: Path) -> None:
    r = run_pairs("nyuv2_folder", shared_data / "nyu-mini", split="test", stride=32, limit=1)
    assert set(r["pairs"]) == {"depth-semseg"}
    e = r["pairs"]["depth-semseg"]
    assert e["similar"]["count_a"] + e["dissimilar"]["count_a"] == e["pairs_considered"] > 0


# ------------------------------------------------------------------------------------------------
# Predictions saved by `tridense predict` / `evaluate --save`
# ------------------------------------------------------------------------------------------------
def write_predictions(out: Path, mtan_root: Path, count: int) -> None:
    """Predictions equal to the ground truth, in the files and encodings `tridense predict` writes."""
    ds = NYUv2Preprocessed(mtan_root, split="val")
    for i in range(count):
        raw = ds.load_raw(i)
        stem = raw["meta"]["name"].replace("/", "_")  # "val/0" -> "val_0"
        depth = np.where(raw["depth"] > 0, raw["depth"], 1.0).astype(np.float32)  # a model predicts everywhere
        write_npy(out / f"{stem}_depth.npy", depth)
        write_npy(out / f"{stem}_normals.npy", raw["normals"].astype(np.float32))
        write_png(out / f"{stem}_semseg.png", np.where(raw["semseg"] == 255, 0, raw["semseg"]).astype(np.uint8))


def test_predictions_equal_to_ground_truth_give_the_same_figures(mtan_root: Path, tmp_path: Path) -> None:
    write_predictions(tmp_path, mtan_root, 2)
    gt = run_pairs("nyuv2_mtan", mtan_root, split="val", limit=2)
    pred = run_pairs("nyuv2_mtan", mtan_root, split="val", limit=2, predictions_dir=tmp_path)
    assert pred["settings"]["source"] == "predictions"
    assert pred["pairs"] == gt["pairs"]
    # A constant depth prediction makes every pair depth-similar, on the ground truth's valid pixels.
    for stem in ("val_0", "val_1"):
        depth = np.load(tmp_path / f"{stem}_depth.npy")
        np.save(tmp_path / f"{stem}_depth.npy", np.full_like(depth, 2.5))
    flat = run_pairs("nyuv2_mtan", mtan_root, split="val", limit=2, predictions_dir=tmp_path)
    for key in ("depth-normals", "depth-semseg"):
        e = flat["pairs"][key]
        assert e["similar"]["count_a"] == e["pairs_considered"] == gt["pairs"][key]["pairs_considered"]
        assert e["dissimilar"]["count_a"] == 0
        assert e["similar"]["a_given_b"] == 1.0
    assert flat["pairs"]["normals-semseg"] == gt["pairs"]["normals-semseg"]


def test_prediction_errors_name_the_file(mtan_root: Path, tmp_path: Path) -> None:
    write_predictions(tmp_path, mtan_root, 1)

    def run() -> dict:
        return run_pairs("nyuv2_mtan", mtan_root, split="val", limit=1, predictions_dir=tmp_path)

    labels = np.asarray(Image.open(tmp_path / "val_0_semseg.png"))
    write_png(tmp_path / "val_0_semseg.png", labels[:-8], overwrite=True)
    with pytest.raises(DataError, match=r"val_0_semseg\.png.*size \(280, 384\).*ground-truth size \(288, 384\)"):
        run()
    write_png(tmp_path / "val_0_semseg.png", labels, overwrite=True)
    depth = np.load(tmp_path / "val_0_depth.npy")
    np.save(tmp_path / "val_0_depth.npy", np.zeros_like(depth))
    with pytest.raises(DataError, match=r"val_0_depth\.npy.*not finite and > 0"):
        run()
    (tmp_path / "val_0_depth.npy").unlink()
    with pytest.raises(DataError, match=r"val_0_depth\.npy"):
        run()
    shutil.rmtree(tmp_path)
    with pytest.raises(DataError, match="predictions folder"):
        run()
