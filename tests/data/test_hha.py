"""HHA on a synthetic room with known camera pose and floor plane (z = 0 in the world)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tridense.data.hha import AddHHA, estimate_up, hha, normalise_hha, up_from_rotation
from tridense.data.sample import collate, to_tensor_sample
from tridense.data.synthetic.render import render
from tridense.data.synthetic.scene import C, generate_scene
from tridense.errors import ConfigError


@pytest.fixture(scope="module")
def room():
    """A rendered room whose floor, walls and ceiling are in view, with its scene (camera pose)."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        scene = generate_scene(rng, (60, 80), min_objects=1, max_objects=3)
        raw = render(scene, np.random.default_rng(seed), shadows=False, sensor_invalid=False, noise=False)
        labels = raw["semseg"]
        if (labels == C["floor"]).mean() > 0.1 and (labels == C["wall"]).mean() > 0.1:
            return scene, raw
    pytest.fail("no synthetic room with floor and walls in view")


def test_height_above_floor_with_the_known_gravity(room):
    scene, raw = room
    up = up_from_rotation(scene.camera.R)  # camera axes as world columns: the camera-to-world rotation
    channels = hha(raw["depth"], raw["K"], up=up, normals=torch.from_numpy(raw["normals"]).permute(2, 0, 1))
    depth = torch.from_numpy(raw["depth"]).double()
    valid = depth > 0
    # True height of each pixel's point: world z = camera height + up . p (p in the camera frame).
    rows, cols = torch.meshgrid(torch.arange(60.0), torch.arange(80.0), indexing="ij")
    pixels = torch.stack([cols, rows, torch.ones(60, 80)]).reshape(3, -1).double()  # (3, HW) homogeneous (u, v, 1)
    rays = torch.linalg.inv(torch.from_numpy(raw["K"]).double()) @ pixels  # (3, HW)
    points = depth[None] * rays.reshape(3, 60, 80)  # (3, H, W) camera-frame points
    true_height = scene.camera.position[2] + torch.einsum("c,chw->hw", up, points)
    torch.testing.assert_close(channels[1][valid].double(), true_height[valid], atol=2e-3, rtol=0)
    floor = torch.from_numpy(raw["semseg"] == C["floor"])
    assert channels[1][floor].abs().max() < 2e-3
    torch.testing.assert_close(channels[0][valid].double(), 1.0 / depth[valid], rtol=1e-5, atol=0)


def test_angle_with_gravity_floor_walls_ceiling(room):
    scene, raw = room
    normals = torch.from_numpy(raw["normals"]).permute(2, 0, 1)
    channels = hha(raw["depth"], raw["K"], up=up_from_rotation(scene.camera.R), normals=normals)
    labels = torch.from_numpy(raw["semseg"])
    angle = channels[2]
    assert angle[labels == C["floor"]].max() < 0.1
    assert (angle[labels == C["wall"]] - 90).abs().max() < 0.1
    if (labels == C["ceiling"]).any():
        assert angle[labels == C["ceiling"]].min() > 179.9


def test_gravity_estimated_from_normals(room):
    """Gupta et al.'s iterations recover "up" from the rendered normals and from normals fitted to depth."""
    scene, raw = room
    truth = up_from_rotation(scene.camera.R)
    normals = torch.from_numpy(raw["normals"]).permute(2, 0, 1)
    estimate = estimate_up(normals)
    assert math.degrees(math.acos(min(1.0, float(estimate @ truth)))) < 0.5
    channels = hha(raw["depth"], raw["K"])  # normals fitted to depth, gravity estimated
    floor = torch.from_numpy(raw["semseg"] == C["floor"])
    assert channels[2][floor].median() < 3.0
    assert channels[1][floor].abs().median() < 0.05


def test_add_hha_transform_and_collate(room):
    scene, raw = room
    sample = to_tensor_sample(raw)
    sample["meta"]["R_world_from_cam"] = scene.camera.R.astype(np.float32)
    out = AddHHA("meta")(sample)
    assert out["hha"].shape == (3, 60, 80)
    valid = sample["depth"][0] > 0
    assert out["hha"][2][valid].min() >= -1.0 and out["hha"][2][valid].max() <= 1.0
    no_depth = {k: v for k, v in sample.items() if k != "depth"}
    assert AddHHA()(no_depth)["hha"].abs().sum() == 0
    batch = collate([out, AddHHA()(sample)])
    assert batch["hha"].shape == (2, 3, 60, 80)
    with pytest.raises(ConfigError, match="R_world_from_cam"):
        AddHHA("meta")({**sample, "meta": {}})
    torch.testing.assert_close(normalise_hha(torch.zeros(3, 2, 2)), torch.zeros(3, 2, 2))
