"""Two CPU processes (gloo) each see part of the data; compute() equals the one-shot value on all of it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tridense.metrics import (
    DepthMetrics,
    TaskMetrics,
    depth_metrics,
    kitti_metrics,
    normal_metrics,
    segmentation_metrics,
)

WORLD_SIZE = 2
NUM_CLASSES = 5
SPLIT = 4  # rank 0 gets images [0, 4), rank 1 gets [4, 11): unequal shares


def _data() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """11 images of every task, the same in every process (seeded generator)."""
    gen = torch.Generator().manual_seed(7)
    n, h, w = 11, 10, 12
    depth = torch.rand(n, 1, h, w, generator=gen) * 12.0
    depth[torch.rand(depth.shape, generator=gen) < 0.3] = 0.0
    normals = torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=gen), dim=1)
    normals[torch.rand(n, 1, h, w, generator=gen).expand_as(normals) < 0.2] = 0.0
    semseg = torch.randint(0, NUM_CLASSES, (n, h, w), generator=gen)
    semseg[torch.rand(semseg.shape, generator=gen) < 0.1] = 255
    targets = {"depth": depth, "normals": normals, "semseg": semseg}
    outputs = {
        "depth": depth * torch.exp(0.3 * torch.randn(depth.shape, generator=gen)) + 0.1,
        "normals": normals + 0.4 * torch.randn(normals.shape, generator=gen),
        "semseg": torch.randn(n, NUM_CLASSES, h, w, generator=gen),
    }
    return outputs, targets


def _worker(rank: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)
    try:
        outputs, targets = _data()
        low, high = (0, SPLIT) if rank == 0 else (SPLIT, len(targets["depth"]))
        metrics = TaskMetrics(num_classes=NUM_CLASSES, kitti=True, crop="eigen_nyu")
        pixel = DepthMetrics(reduction="pixel")
        for start in range(low, high, 3):  # batches of up to 3 images within the share
            part = slice(start, min(start + 3, high))
            batch = {k: v[part] for k, v in targets.items()}
            metrics.update({k: v[part] for k, v in outputs.items()}, batch)
            pixel.update(outputs["depth"][part], targets["depth"][part])
        results = metrics.compute()
        results["depth_pixel"] = pixel.compute()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available() or "fork" not in mp.get_all_start_methods(),
    reason="needs torch.distributed with gloo and the fork start method",
)
def test_two_processes_equal_one_shot(tmp_path: Path) -> None:
    # fork, not spawn: a spawned child re-imports torch and torchmetrics (5-10 s each on 2 busy cores)
    context = mp.start_processes(
        _worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD_SIZE, join=False, start_method="fork"
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail("the two metric processes did not finish within 120 s")
    outputs, targets = _data()
    expected = {
        "depth": depth_metrics(outputs["depth"], targets["depth"], crop="eigen_nyu"),
        "kitti": kitti_metrics(outputs["depth"], targets["depth"]),  # the devkit: no cap, crop or clamp
        "normals": normal_metrics(outputs["normals"], targets["normals"]),
        "semseg": segmentation_metrics(outputs["semseg"], targets["semseg"], NUM_CLASSES),
        "depth_pixel": depth_metrics(outputs["depth"], targets["depth"], reduction="pixel"),
    }
    one_rank = depth_metrics(outputs["depth"][:SPLIT], targets["depth"][:SPLIT], crop="eigen_nyu")
    assert one_rank["abs_rel"] != pytest.approx(expected["depth"]["abs_rel"])  # the ranks' shares differ
    for rank in range(WORLD_SIZE):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert set(results) == set(expected)
        for task, values in expected.items():
            got = results[task]
            for key, value in values.items():
                assert got[key] == pytest.approx(value, rel=1e-12, nan_ok=True), (rank, task, key)
