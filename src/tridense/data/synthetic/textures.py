"""Procedural textures evaluated on surface coordinates in metres.

Everything here is integer hashing and IEEE arithmetic (no transcendental functions), so a texture is
bit-for-bit the same on every machine. A material is a small dataclass; :func:`shade_albedo` evaluates its
albedo (and emission) on the surface coordinates ``(s, t)`` of the pixels that see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_MASK32 = np.int64(0xFFFFFFFF)


def hash2(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic hash of integer lattice coordinates to floats in [0, 1]."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ np.int64(salt * 83492791 & 0x7FFFFFFF)
    h = h & _MASK32
    h = (h ^ (h >> 13)) * 1274126177 & _MASK32
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float64) / 65535.0


def _smooth(x: np.ndarray) -> np.ndarray:
    return x * x * (3.0 - 2.0 * x)


_TABLE_BITS = 8
_TABLE: np.ndarray | None = None


def _lattice() -> np.ndarray:
    """A 256x256 table of hashed lattice values (computed once), indexed with wrap-around."""
    global _TABLE
    if _TABLE is None:
        j, i = np.mgrid[0 : 1 << _TABLE_BITS, 0 : 1 << _TABLE_BITS]
        _TABLE = hash2(i, j, 0).ravel()
    return _TABLE


def value_noise(s: np.ndarray, t: np.ndarray, salt: int) -> np.ndarray:
    """Smooth value noise in [0, 1] with unit lattice spacing (period 256 lattice cells)."""
    table = _lattice()
    mask = (1 << _TABLE_BITS) - 1
    i, j = np.floor(s), np.floor(t)
    fs, ft = _smooth(s - i), _smooth(t - j)
    # The salt shifts the lattice so that different materials see different noise.
    i = i.astype(np.int64) + (salt * 7919)
    j = j.astype(np.int64) + (salt * 104729 >> 3)
    i0, i1 = i & mask, (i + 1) & mask
    j0, j1 = (j & mask) << _TABLE_BITS, ((j + 1) & mask) << _TABLE_BITS
    a, b = table[j0 | i0], table[j0 | i1]
    c, d = table[j1 | i0], table[j1 | i1]
    ab = a + (b - a) * fs
    return ab + ((c + (d - c) * fs) - ab) * ft


def fbm(s: np.ndarray, t: np.ndarray, salt: int, octaves: int = 2) -> np.ndarray:
    """Two or three octaves of value noise, in [0, 1]."""
    total, amplitude, norm = np.zeros_like(s), 1.0, 0.0
    for k in range(octaves):
        total += amplitude * value_noise(s * (2.0**k), t * (2.0**k), salt + 17 * k)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def _tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave with period 1, in [0, 1]."""
    f = x - np.floor(x)
    return 1.0 - 2.0 * np.abs(f - 0.5)


@dataclass
class Material:
    """A procedural surface.

    Attributes:
        kind: one of ``paint, wood, tiles, fabric, books, picture, window, cardboard, metal, emissive``.
        colors: (k, 3) RGB albedo colours in [0, 1] the pattern mixes.
        scale: the pattern's size in metres (grain spacing, tile size, weave period).
        salt: seed of the pattern's noise.
        rotate: swap the two surface axes (e.g. vertical wood grain).
    """

    kind: str
    colors: np.ndarray
    scale: float = 0.1
    salt: int = 0
    rotate: bool = False
    extras: dict = field(default_factory=dict)

    @property
    def emissive(self) -> bool:
        return self.kind in ("window", "emissive")


def shade_albedo(material: Material, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Albedo (or emitted radiance for emissive materials) (N, 3) at surface coordinates (N,) s, t."""
    if material.rotate:
        s, t = t, s
    c = material.colors
    kind, k, salt = material.kind, material.scale, material.salt
    if kind == "paint":
        w = 0.92 + 0.08 * value_noise(s / 0.5, t / 0.5, salt)
        return c[0][None] * w[:, None]
    if kind == "wood":
        warp = 0.6 * value_noise(s * 1.5, t * 8.0, salt)
        rings = _tri(t / k + warp) ** 2
        fine = 0.9 + 0.1 * value_noise(s * 40.0, t * 4.0, salt + 5)
        return (c[0][None] + (c[1] - c[0])[None] * rings[:, None]) * fine[:, None]
    if kind == "tiles":
        i, j = np.floor(s / k), np.floor(t / k)
        fs, ft = s / k - i, t / k - j
        grout = (fs < 0.05) | (ft < 0.05)
        tone = 0.85 + 0.3 * hash2(i.astype(np.int64), j.astype(np.int64), salt)
        rgb = c[0][None] * tone[:, None] * (0.95 + 0.05 * value_noise(s * 30, t * 30, salt + 3))[:, None]
        return np.where(grout[:, None], c[1][None], rgb)
    if kind == "fabric":
        weave = _tri(s / k) * _tri(t / k)
        grain = value_noise(s * 60.0, t * 60.0, salt)
        w = 0.78 + 0.12 * weave + 0.1 * grain
        return c[0][None] * w[:, None]
    if kind == "books":
        # Shelves every `shelf` metres (dark boards), books as vertical stripes of palette colours.
        shelf = material.extras.get("shelf", 0.35)
        row = np.floor(t / shelf)
        in_board = (t / shelf - row) < 0.08
        width = 0.025 + 0.03 * hash2(row.astype(np.int64), np.zeros_like(row, dtype=np.int64), salt)
        book = np.floor(s / width).astype(np.int64)
        pick = hash2(book, row.astype(np.int64), salt + 1)
        idx = np.minimum((pick * len(c)).astype(np.int64), len(c) - 1)
        top = (t / shelf - row) > 0.72 + 0.2 * hash2(book, row.astype(np.int64), salt + 2)
        rgb = c[idx] * (0.85 + 0.15 * value_noise(s * 50, t * 5, salt))[:, None]
        rgb = np.where(top[:, None], 0.15, rgb)  # empty space above shorter books
        return np.where(in_board[:, None], material.extras.get("board", np.array([0.35, 0.22, 0.12]))[None], rgb)
    if kind == "picture":
        half = material.extras["half"]  # (2,) half-size of the picture in metres
        border = (np.abs(s) > half[0] - 0.04) | (np.abs(t) > half[1] - 0.04)
        m1 = fbm(s * 3.0, t * 3.0, salt, octaves=3)
        m2 = fbm(s * 5.0 + 7.0, t * 5.0, salt + 9, octaves=2)
        rgb = c[0][None] * m1[:, None] + c[1][None] * (1 - m1)[:, None]
        rgb = rgb * (1 - 0.5 * m2)[:, None] + c[2][None] * (0.5 * m2)[:, None]
        return np.where(border[:, None], c[3][None], rgb)
    if kind == "window":
        half = material.extras["half"]
        frame = (np.abs(s) > half[0] - 0.06) | (np.abs(t) > half[1] - 0.06) | (np.abs(s) < 0.03)
        sky = c[0][None] + (c[1] - c[0])[None] * ((t + half[1]) / (2 * half[1]))[:, None]
        clouds = fbm(s * 2.0, t * 4.0, salt, octaves=2)
        sky = sky + 0.25 * np.clip(clouds - 0.5, 0, 1)[:, None]
        return np.where(frame[:, None], c[2][None], sky)
    if kind == "cardboard":
        tape = np.abs(s) < 0.03
        w = 0.85 + 0.15 * fbm(s * 20.0, t * 20.0, salt)
        return np.where(tape[:, None], c[1][None], c[0][None] * w[:, None])
    if kind == "metal":
        w = 0.9 + 0.1 * value_noise(s * 80.0, t * 2.0, salt)
        return c[0][None] * w[:, None]
    if kind == "emissive":
        w = 0.95 + 0.05 * value_noise(s * 10.0, t * 10.0, salt)
        return c[0][None] * w[:, None]
    raise ValueError(f"unknown material kind {kind!r}")
