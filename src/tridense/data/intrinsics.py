"""Camera constants shared by the datasets, the synthetic renderer and inference (no heavy imports)."""

from __future__ import annotations

#: Size (H, W) of every NYU Depth V2 frame.
NYU_SIZE: tuple[int, int] = (480, 640)
#: Colour camera intrinsics of the NYU toolbox, in pixels, for the 640x480 frame.
NYU_INTRINSICS: dict[str, float] = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}


def nyu_focal(width: int) -> float:
    """NYU's horizontal focal length for an image ``width`` pixels wide (same field of view)."""
    return NYU_INTRINSICS["fx"] * width / NYU_SIZE[1]
