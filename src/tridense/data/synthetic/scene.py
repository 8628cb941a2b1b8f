"""Procedural indoor scenes: a room, a camera at a person's height and 3-15 furniture objects.

The classes are a subset of the NYU-40 names (:data:`CLASSES`, with their NYU-40 ids so pictures use the
standard palette). Each class has a material family (wood furniture, fabric sofas and beds, books on
shelves, glowing windows and lamps, ...) with random colours, so that a network must learn appearance and
shape, while lighting comes from one or two point lights at random places, so depth cannot be read off
brightness.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tridense.data.intrinsics import NYU_INTRINSICS
from tridense.data.synthetic.primitives import Box, Cylinder, Primitive, Quad, Room, Sphere
from tridense.data.synthetic.textures import Material

#: (name, NYU-40 id) of the synthetic classes; the class id of the contract is the position in this tuple.
CLASSES: tuple[tuple[str, int], ...] = (
    ("wall", 1),
    ("floor", 2),
    ("cabinet", 3),
    ("bed", 4),
    ("chair", 5),
    ("sofa", 6),
    ("table", 7),
    ("door", 8),
    ("window", 9),
    ("bookshelf", 10),
    ("picture", 11),
    ("ceiling", 22),
    ("box", 29),
    ("lamp", 35),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in CLASSES)
NYU40_IDS: tuple[int, ...] = tuple(nyu for _, nyu in CLASSES)
C = {name: i for i, name in enumerate(CLASS_NAMES)}

#: NYU-v2 Kinect intrinsics at 640x480 (fx, fy, cx, cy), scaled to the render size.
NYU_K_640 = tuple(NYU_INTRINSICS[k] for k in ("fx", "fy", "cx", "cy"))

# Relative frequency of floor objects and of wall-mounted items.
FLOOR_OBJECTS = {"cabinet": 3, "bed": 1.5, "chair": 4, "sofa": 2, "table": 3, "bookshelf": 2, "box": 2.5, "lamp": 1.5}
WALL_ITEMS = {"picture": 3, "window": 2, "door": 1.5}


@dataclass
class Camera:
    """Pinhole camera: ``R`` (3, 3) has the camera axes (x right, y down, z forward) as world columns."""

    position: np.ndarray
    R: np.ndarray
    K: np.ndarray
    size: tuple[int, int]


@dataclass
class Light:
    position: np.ndarray
    intensity: float
    color: np.ndarray


@dataclass
class Scene:
    room: Room
    camera: Camera
    primitives: list[Primitive]
    lights: list[Light]
    ambient: float
    #: instance id -> (class id, indices of its primitives); used for shadows and instance maps.
    objects: dict[int, tuple[int, list[int]]] = field(default_factory=dict)
    seed_words: tuple[int, ...] = ()


def intrinsics(size: tuple[int, int]) -> np.ndarray:
    """NYU-like intrinsics for an image of ``size`` = (H, W) (pixel-centre convention)."""
    h, w = size
    fx, fy, cx, cy = NYU_K_640
    sx, sy = w / 640.0, h / 480.0
    return np.array([[fx * sx, 0, (cx + 0.5) * sx - 0.5], [0, fy * sy, (cy + 0.5) * sy - 0.5], [0, 0, 1]])


def look_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation for a camera with heading ``yaw``, tilt ``pitch`` (up > 0), ``roll`` (radians)."""
    cp, sp = math.cos(pitch), math.sin(pitch)
    cyw, syw = math.cos(yaw), math.sin(yaw)
    forward = np.array([cyw * cp, syw * cp, sp])
    right = np.array([syw, -cyw, 0.0])
    down = np.cross(forward, right)
    cr, sr = math.cos(roll), math.sin(roll)
    right, down = cr * right + sr * down, -sr * right + cr * down
    return np.stack([right, down, forward], axis=1)  # columns: camera x, y, z in world


# --------------------------------------------------------------------------------------------------
# Materials
# --------------------------------------------------------------------------------------------------
def _jitter(rng: np.random.Generator, base: tuple[float, float, float], amount: float) -> np.ndarray:
    return np.clip(np.array(base) * (1 + amount * (rng.random(3) - 0.5) * 2), 0.02, 1.0)


def _random_color(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.9) -> np.ndarray:
    return lo + (hi - lo) * rng.random(3)


def wood(rng: np.random.Generator, vertical: bool = False) -> Material:
    tone = rng.choice([(0.55, 0.36, 0.2), (0.7, 0.52, 0.32), (0.35, 0.22, 0.12), (0.8, 0.66, 0.45)])
    base = _jitter(rng, tuple(tone), 0.15)
    return Material(
        "wood",
        np.stack([base, base * 0.6]),
        scale=float(rng.uniform(0.03, 0.08)),
        salt=int(rng.integers(1 << 30)),
        rotate=vertical,
    )


def paint(rng: np.random.Generator, light: bool = True) -> Material:
    color = _random_color(rng, 0.55, 0.95) if light else _random_color(rng, 0.1, 0.8)
    return Material("paint", color[None], salt=int(rng.integers(1 << 30)))


def fabric(rng: np.random.Generator, light: bool = False) -> Material:
    color = _random_color(rng, 0.5, 0.95) if light else _random_color(rng, 0.1, 0.75)
    return Material("fabric", color[None], scale=float(rng.uniform(0.004, 0.012)), salt=int(rng.integers(1 << 30)))


def tiles(rng: np.random.Generator) -> Material:
    color = _random_color(rng, 0.45, 0.9)
    return Material(
        "tiles", np.stack([color, color * 0.55]), scale=float(rng.uniform(0.25, 0.6)), salt=int(rng.integers(1 << 30))
    )


def metal(rng: np.random.Generator) -> Material:
    g = rng.uniform(0.3, 0.75)
    return Material("metal", np.array([[g, g, g * 1.02]]).clip(0, 1), salt=int(rng.integers(1 << 30)))


# --------------------------------------------------------------------------------------------------
# Object builders: each returns primitives in the object's local frame (x along width, y along depth,
# z up, origin at the centre of the footprint on the floor), facing -y (the front).
# --------------------------------------------------------------------------------------------------
@dataclass
class Part:
    kind: str  # box | cylinder | sphere | quad_front
    center: tuple[float, float, float]
    half: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 0.0
    material: Material | None = None
    occluder: bool = True


def _legs(w: float, d: float, h: float, inset: float, thickness: float, mat: Material, round_legs: bool) -> list[Part]:
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (w / 2 - inset), sy * (d / 2 - inset)
            if round_legs:
                parts.append(Part("cylinder", (x, y, 0.0), half=(0, 0, h), radius=thickness / 2, material=mat))
            else:
                parts.append(Part("box", (x, y, h / 2), half=(thickness / 2, thickness / 2, h / 2), material=mat))
    return parts


def _cabinet(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A cabinet with a door handle per ~45 cm of width."""
    w, d, h = rng.uniform(0.5, 1.6), rng.uniform(0.4, 0.6), rng.uniform(0.5, 2.0)
    body = wood(rng, vertical=True) if rng.random() < 0.6 else paint(rng, light=rng.random() < 0.5)
    parts = [Part("box", (0, 0, h / 2), half=(w / 2, d / 2, h / 2), material=body)]
    handle = metal(rng)
    n_doors = max(1, round(w / 0.45))
    for k in range(n_doors):
        x = -w / 2 + (k + 0.5) * w / n_doors + (0.12 * w / n_doors) * (1 if k % 2 else -1)
        parts.append(Part("box", (x, -d / 2 - 0.012, h * 0.55), half=(0.008, 0.012, 0.06), material=handle))
    return parts, (w, d)


def _bed(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A bed: mattress, headboard and a pillow."""
    w, d, h = rng.uniform(0.9, 1.8), rng.uniform(1.9, 2.15), rng.uniform(0.4, 0.6)
    sheet, frame = fabric(rng, light=True), wood(rng)
    head = rng.uniform(0.9, 1.25)
    pillow = fabric(rng, light=True)
    parts = [
        Part("box", (0, 0, h / 2), half=(w / 2, d / 2, h / 2), material=sheet),
        Part("box", (0, d / 2 - 0.03, head / 2), half=(w / 2 + 0.02, 0.03, head / 2), material=frame),
        Part("box", (0, d / 2 - 0.3, h + 0.07), half=(w * 0.4, 0.2, 0.07), material=pillow),
    ]
    return parts, (w + 0.04, d)


def _chair(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A chair: legs, seat and back."""
    w = rng.uniform(0.4, 0.55)
    seat_h, back_h = rng.uniform(0.42, 0.5), rng.uniform(0.35, 0.55)
    mat = wood(rng) if rng.random() < 0.6 else paint(rng, light=False)
    legs = _legs(w, w, seat_h - 0.04, 0.03, 0.04, mat, round_legs=rng.random() < 0.4)
    parts = [
        *legs,
        Part("box", (0, 0, seat_h - 0.02), half=(w / 2, w / 2, 0.025), material=mat),
        Part("box", (0, w / 2 - 0.025, seat_h + back_h / 2), half=(w / 2, 0.025, back_h / 2), material=mat),
    ]
    return parts, (w, w)


def _sofa(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A sofa: seat, back and two arms."""
    w, d = rng.uniform(1.4, 2.4), rng.uniform(0.8, 0.95)
    seat_h, back_h, arm_h = rng.uniform(0.38, 0.45), rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.65)
    mat = fabric(rng)
    parts = [
        Part("box", (0, 0.05, seat_h / 2), half=(w / 2 - 0.18, d / 2 - 0.05, seat_h / 2), material=mat),
        Part("box", (0, d / 2 - 0.1, back_h / 2), half=(w / 2, 0.1, back_h / 2), material=mat),
        Part("box", (-w / 2 + 0.09, 0, arm_h / 2), half=(0.09, d / 2, arm_h / 2), material=mat),
        Part("box", (w / 2 - 0.09, 0, arm_h / 2), half=(0.09, d / 2, arm_h / 2), material=mat),
    ]
    return parts, (w, d)


def _table(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A table: top and four legs."""
    w, d = rng.uniform(0.7, 1.8), rng.uniform(0.55, 1.0)
    h, top = rng.uniform(0.7, 0.78), rng.uniform(0.03, 0.06)
    mat = wood(rng)
    legs_mat = mat if rng.random() < 0.7 else metal(rng)
    parts = [
        Part("box", (0, 0, h - top / 2), half=(w / 2, d / 2, top / 2), material=mat),
        *_legs(w, d, h - top, 0.06, 0.05, legs_mat, round_legs=rng.random() < 0.5),
    ]
    return parts, (w, d)


def _bookshelf(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A bookshelf: its body and a front of books."""
    w, d, h = rng.uniform(0.6, 1.3), rng.uniform(0.28, 0.4), rng.uniform(1.2, 2.1)
    body = wood(rng, vertical=True)
    palette = np.stack([_random_color(rng, 0.1, 0.9) for _ in range(6)])
    books = Material(
        "books",
        palette,
        salt=int(rng.integers(1 << 30)),
        extras={"shelf": float(rng.uniform(0.3, 0.4)), "board": body.colors[0]},
    )
    parts = [
        Part("box", (0, 0.01, h / 2), half=(w / 2, d / 2 - 0.01, h / 2), material=body),
        Part("quad_front", (0, -d / 2 + 0.005, h / 2), half=(w / 2 - 0.03, 0.0, h / 2 - 0.03), material=books),
    ]
    return parts, (w, d)


def _box(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A cardboard box, sometimes with a smaller one on top."""
    w, d, h = rng.uniform(0.25, 0.6), rng.uniform(0.25, 0.55), rng.uniform(0.2, 0.5)
    tone = _jitter(rng, (0.62, 0.45, 0.27), 0.12)
    mat = Material("cardboard", np.stack([tone, np.array([0.75, 0.7, 0.6])]), salt=int(rng.integers(1 << 30)))
    parts = [Part("box", (0, 0, h / 2), half=(w / 2, d / 2, h / 2), material=mat)]
    if rng.random() < 0.35:  # a second box stacked on top
        w2, d2, h2 = w * rng.uniform(0.6, 0.9), d * rng.uniform(0.6, 0.9), rng.uniform(0.15, 0.35)
        parts.append(Part("box", (0, 0, h + h2 / 2), half=(w2 / 2, d2 / 2, h2 / 2), material=mat))
    return parts, (w, d)


def _lamp(rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """A floor lamp: base, pole and a cylindrical or round shade."""
    pole_h = rng.uniform(1.3, 1.65)
    shade_r = rng.uniform(0.16, 0.26)
    glow = Material("emissive", _jitter(rng, (1.0, 0.93, 0.75), 0.08)[None], salt=int(rng.integers(1 << 30)))
    pole = metal(rng)
    parts = [
        Part("cylinder", (0, 0, 0.0), half=(0, 0, 0.03), radius=0.16, material=pole),
        Part("cylinder", (0, 0, 0.03), half=(0, 0, pole_h), radius=0.015, material=pole),
    ]
    if rng.random() < 0.5:
        parts.append(
            Part(
                "cylinder",
                (0, 0, pole_h - 0.05),
                half=(0, 0, rng.uniform(0.22, 0.32)),
                radius=shade_r,
                material=glow,
            )
        )
    else:
        parts.append(Part("sphere", (0, 0, pole_h + shade_r * 0.6), radius=shade_r, material=glow))
    return parts, (0.36, 0.36)


_OBJECT_BUILDERS: dict[str, Callable[[np.random.Generator], tuple[list[Part], tuple[float, float]]]] = {
    "cabinet": _cabinet,
    "bed": _bed,
    "chair": _chair,
    "sofa": _sofa,
    "table": _table,
    "bookshelf": _bookshelf,
    "box": _box,
    "lamp": _lamp,
}


def build_object(name: str, rng: np.random.Generator) -> tuple[list[Part], tuple[float, float]]:
    """Parts of one floor object and its footprint (width, depth) in metres."""
    builder = _OBJECT_BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown floor object {name!r}")
    return builder(rng)


def _place_parts(parts: list[Part], x: float, y: float, yaw: float, class_id: int, instance_id: int) -> list[Primitive]:
    """Local parts -> world primitives for an object at (x, y) with heading ``yaw`` (front towards -y local)."""
    c, s = math.cos(yaw), math.sin(yaw)

    def world(px: float, py: float) -> tuple[float, float]:
        return x + c * px - s * py, y + s * px + c * py

    out: list[Primitive] = []
    for part in parts:
        wx, wy = world(part.center[0], part.center[1])
        common = {
            "class_id": class_id,
            "instance_id": instance_id,
            "material": part.material,
            "occluder": part.occluder,
        }
        if part.kind == "box":
            out.append(
                Box(center=np.array([wx, wy, part.center[2]]), half=np.array(part.half), cos_yaw=c, sin_yaw=s, **common)
            )
        elif part.kind == "cylinder":
            out.append(Cylinder(cx=wx, cy=wy, z0=part.center[2], radius=part.radius, height=part.half[2], **common))
        elif part.kind == "sphere":
            out.append(Sphere(center=np.array([wx, wy, part.center[2]]), radius=part.radius, **common))
        elif part.kind == "quad_front":
            axis_u = np.array([c, s, 0.0])
            axis_v = np.array([0.0, 0.0, 1.0])
            out.append(
                Quad(
                    center=np.array([wx, wy, part.center[2]]),
                    axis_u=axis_u,
                    axis_v=axis_v,
                    hu=part.half[0],
                    hv=part.half[2],
                    **{**common, "occluder": False},
                )
            )
        else:
            raise ValueError(part.kind)
    return out


# --------------------------------------------------------------------------------------------------
# Wall items: quads slightly in front of a wall.
# --------------------------------------------------------------------------------------------------
def _wall_frame(wall: int, size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Origin, along-wall axis, inward normal and length of wall ``wall`` (0: x=0, 1: x=Lx, 2: y=0, 3: y=Ly)."""
    lx, ly = size[0], size[1]
    if wall == 0:
        return np.array([0.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]), ly
    if wall == 1:
        return np.array([lx, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([-1.0, 0.0, 0.0]), ly
    if wall == 2:
        return np.array([0.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), lx
    return np.array([0.0, ly, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0]), lx


def build_wall_item(
    name: str,
    rng: np.random.Generator,
    wall: int,
    size: np.ndarray,
    instance_id: int,
    occupied: list[tuple[int, float, float]],
) -> list[Primitive] | None:
    origin, along, inward, length = _wall_frame(wall, size)
    if name == "door":
        w, h, bottom = rng.uniform(0.8, 0.95), rng.uniform(1.98, 2.1), 0.0
    elif name == "window":
        w, h, bottom = rng.uniform(0.7, 1.8), rng.uniform(0.9, 1.4), rng.uniform(0.75, 1.0)
    else:
        w, h = rng.uniform(0.35, 1.2), rng.uniform(0.3, 0.9)
        bottom = rng.uniform(1.25, 1.75) - h / 2
    h = min(h, size[2] - bottom - 0.1)
    if length < w + 0.3 or h < 0.2:
        return None
    pos = rng.uniform(0.15 + w / 2, length - 0.15 - w / 2)
    if any(other == wall and abs(pos - p) < (w + ow) / 2 + 0.1 for other, p, ow in occupied):
        return None
    occupied.append((wall, pos, w))
    offset = 0.01 if name != "door" else 0.006
    center = origin + along * pos + inward * offset + np.array([0.0, 0.0, bottom + h / 2])
    up = np.array([0.0, 0.0, 1.0])
    half = np.array([w / 2, h / 2])
    cid = C[name]
    fittings: list[Primitive] = []
    if name == "door":
        mat = wood(rng, vertical=True) if rng.random() < 0.6 else paint(rng, light=rng.random() < 0.5)
        knob_side = 1 if rng.random() < 0.5 else -1
        knob = origin + along * (pos + knob_side * (w / 2 - 0.08)) + inward * 0.06 + np.array([0, 0, 1.0])
        fittings.append(Sphere(center=knob, radius=0.03, class_id=cid, instance_id=instance_id, material=metal(rng)))
    elif name == "window":
        sky_top = _jitter(rng, (0.55, 0.72, 0.98), 0.15)
        sky_bottom = _jitter(rng, (0.92, 0.95, 1.0), 0.05)
        frame = _random_color(rng, 0.6, 0.95) if rng.random() < 0.7 else wood(rng).colors[0]
        mat = Material(
            "window",
            np.stack([sky_bottom, sky_top, frame]),
            salt=int(rng.integers(1 << 30)),
            extras={"half": half, "glass": True},
        )
    else:
        colors = np.stack([_random_color(rng, 0.05, 0.95) for _ in range(3)] + [_random_color(rng, 0.05, 0.5)])
        mat = Material("picture", colors, salt=int(rng.integers(1 << 30)), extras={"half": half})
    panel = Quad(
        center=center,
        axis_u=along,
        axis_v=up,
        hu=w / 2,
        hv=h / 2,
        class_id=cid,
        instance_id=instance_id,
        material=mat,
        occluder=False,
    )
    return [panel, *fittings]


# --------------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------------
def _footprint(x: float, y: float, yaw: float, w: float, d: float) -> tuple[float, float, float, float]:
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    ex, ey = (c * w + s * d) / 2, (s * w + c * d) / 2
    return x - ex, y - ey, x + ex, y + ey


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float], margin: float) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _free_distance(xy: np.ndarray, yaw: float, room_size: np.ndarray) -> float:
    """Distance from ``xy`` to the nearest wall along the heading ``yaw``."""
    dx, dy = math.cos(yaw), math.sin(yaw)
    tx = (room_size[0] - xy[0]) / dx if dx > 1e-9 else (-xy[0] / dx if dx < -1e-9 else math.inf)
    ty = (room_size[1] - xy[1]) / dy if dy > 1e-9 else (-xy[1] / dy if dy < -1e-9 else math.inf)
    return min(tx, ty)


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


@dataclass
class _Contents:
    """The primitives of a scene being built, grouped by object instance (ids from 1)."""

    primitives: list[Primitive] = field(default_factory=list)
    objects: dict[int, tuple[int, list[int]]] = field(default_factory=dict)
    instance: int = 0

    def add(self, class_id: int, prims: list[Primitive]) -> None:
        """Record ``prims`` as the object of the current instance id."""
        self.objects[self.instance] = (class_id, list(range(len(self.primitives), len(self.primitives) + len(prims))))
        self.primitives.extend(prims)


def _random_room(rng: np.random.Generator) -> Room:
    """Room size (x, y, height) and the materials of floor, walls and ceiling."""
    room_size = np.array([rng.uniform(3.0, 7.0), rng.uniform(3.0, 8.0), rng.uniform(2.4, 3.2)])
    floor_kind = rng.random()
    floor = wood(rng) if floor_kind < 0.45 else tiles(rng) if floor_kind < 0.75 else fabric(rng)
    walls = paint(rng, light=True)
    ceiling = Material("paint", _jitter(rng, (0.93, 0.93, 0.9), 0.05)[None], salt=int(rng.integers(1 << 30)))
    return Room(room_size, floor=floor, ceiling=ceiling, walls=walls, class_ids=(C["wall"], C["floor"], C["ceiling"]))


def _random_camera(rng: np.random.Generator, room_size: np.ndarray, size: tuple[int, int]) -> tuple[Camera, float]:
    """A camera inside the room, 0.5 m from the walls, at a person's height, looking slightly down; its yaw.

    The heading is mostly towards the room centre, and never at a wall closer than ~2 m (or the best of a
    few tries in a small room), so the view is a room rather than a wall filling the frame.
    """
    cam_xy = np.array([rng.uniform(0.5, room_size[0] - 0.5), rng.uniform(0.5, room_size[1] - 0.5)])
    cam_pos = np.array([cam_xy[0], cam_xy[1], rng.uniform(1.2, 1.7)])
    centre = room_size[:2] / 2
    to_centre = math.atan2(centre[1] - cam_xy[1], centre[0] - cam_xy[0])
    best_yaw, best_free = 0.0, -1.0
    for _ in range(12):
        yaw = to_centre + rng.uniform(-0.9, 0.9) if rng.random() < 0.7 else rng.uniform(-math.pi, math.pi)
        free = _free_distance(cam_xy, yaw, room_size)
        if free > best_free:
            best_yaw, best_free = yaw, free
        if free >= 2.2:
            break
    pitch = math.radians(rng.uniform(-22.0, 5.0))
    roll = math.radians(rng.uniform(-4.0, 4.0))
    return Camera(cam_pos, look_rotation(best_yaw, pitch, roll), intrinsics(size), size), best_yaw


def _add_wall_items(rng: np.random.Generator, count: int, room_size: np.ndarray, contents: _Contents) -> None:
    """Up to ``count`` pictures, windows and doors on random walls (an item that does not fit is skipped)."""
    occupied: list[tuple[int, float, float]] = []
    for _ in range(count):
        name = _pick(rng, WALL_ITEMS)
        wall = int(rng.integers(4))
        prims = build_wall_item(name, rng, wall, room_size, contents.instance + 1, occupied)
        if prims is None:
            continue
        contents.instance += 1
        contents.add(C[name], prims)


def _snap_to_wall(x: float, y: float, depth: float, room_size: np.ndarray) -> tuple[float, float, float]:
    """Move (x, y) to the nearest wall with the object's back (local +y) against it; returns x, y, yaw."""
    wall = int(np.argmin([x, room_size[0] - x, y, room_size[1] - y]))
    yaw = (math.pi / 2, -math.pi / 2, math.pi, 0.0)[wall]
    if wall == 0:
        x = depth / 2 + 0.02
    elif wall == 1:
        x = room_size[0] - depth / 2 - 0.02
    elif wall == 2:
        y = depth / 2 + 0.02
    else:
        y = room_size[1] - depth / 2 - 0.02
    return x, y, yaw


def _floor_pose(
    rng: np.random.Generator, name: str, depth: float, room_size: np.ndarray, camera: Camera, yaw: float
) -> tuple[float, float, float]:
    """A candidate (x, y, yaw) of a floor object: mostly in the camera's view wedge, large furniture often
    against a wall."""
    against_wall = name in ("cabinet", "bookshelf", "bed", "sofa") and rng.random() < 0.75
    cam_x, cam_y = camera.position[0], camera.position[1]
    if rng.random() < 0.7:  # somewhere in the view wedge
        hfov = math.atan2(camera.size[1] / 2, camera.K[0, 0])
        ang = yaw + rng.uniform(-hfov, hfov)
        dist = rng.uniform(1.0, 6.0)
        x, y = cam_x + dist * math.cos(ang), cam_y + dist * math.sin(ang)
    else:
        x, y = rng.uniform(0, room_size[0]), rng.uniform(0, room_size[1])
    if against_wall:
        return _snap_to_wall(x, y, depth, room_size)
    obj_yaw = rng.uniform(-math.pi, math.pi) if rng.random() < 0.4 else rng.integers(4) * math.pi / 2
    return x, y, obj_yaw


def _add_floor_objects(
    rng: np.random.Generator, count: int, room_size: np.ndarray, camera: Camera, yaw: float, contents: _Contents
) -> None:
    """``count`` furniture objects, each at the first of 25 candidate poses inside the room that overlaps
    neither another object nor the camera's own footprint (skipped if none does)."""
    cam_x, cam_y = camera.position[0], camera.position[1]
    footprints: list[tuple[float, float, float, float]] = [(cam_x - 0.45, cam_y - 0.45, cam_x + 0.45, cam_y + 0.45)]
    for _ in range(count):
        name = _pick(rng, FLOOR_OBJECTS)
        parts, (w, d) = build_object(name, rng)
        for _attempt in range(25):
            x, y, obj_yaw = _floor_pose(rng, name, d, room_size, camera, yaw)
            fp = _footprint(x, y, obj_yaw, w, d)
            if fp[0] < 0.01 or fp[1] < 0.01 or fp[2] > room_size[0] - 0.01 or fp[3] > room_size[1] - 0.01:
                continue
            if any(_overlaps(fp, other, 0.05) for other in footprints):
                continue
            footprints.append(fp)
            contents.instance += 1
            contents.add(C[name], _place_parts(parts, x, y, obj_yaw, C[name], contents.instance))
            break


def _random_lights(rng: np.random.Generator, room_size: np.ndarray) -> list[Light]:
    """One or two warm ceiling lights."""
    lights = []
    for _ in range(int(rng.integers(1, 3))):
        pos = np.array(
            [
                rng.uniform(0.3, room_size[0] - 0.3),
                rng.uniform(0.3, room_size[1] - 0.3),
                room_size[2] - rng.uniform(0.1, 0.5),
            ]
        )
        lights.append(Light(pos, float(rng.uniform(0.7, 1.3)), _jitter(rng, (1.0, 0.96, 0.88), 0.06)))
    return lights


def generate_scene(
    rng: np.random.Generator, size: tuple[int, int], *, min_objects: int = 3, max_objects: int = 15
) -> Scene:
    """Draw a random room, camera, objects and lights from ``rng``."""
    room = _random_room(rng)
    camera, yaw = _random_camera(rng, room.size, size)
    contents = _Contents()
    n_objects = int(rng.integers(min_objects, max_objects + 1))
    n_wall = round(n_objects * rng.uniform(0.15, 0.4))
    _add_wall_items(rng, n_wall, room.size, contents)
    _add_floor_objects(rng, n_objects - n_wall, room.size, camera, yaw, contents)
    lights = _random_lights(rng, room.size)
    ambient = float(rng.uniform(0.18, 0.35))
    return Scene(room, camera, contents.primitives, lights, ambient, contents.objects)
