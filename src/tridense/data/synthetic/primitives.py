"""Geometric primitives of the synthetic scenes and their exact ray intersections.

World frame: z up, the floor at z = 0, the room the box [0, Lx] x [0, Ly] x [0, H]. Rays are given per
component as arrays (origins may be scalars) so that every operation is a flat NumPy expression.
Intersections return the ray parameter ``t`` (``inf`` on a miss); with camera rays of unit z in the camera
frame, ``t`` is the z-depth. Normals and surface coordinates are computed afterwards, only for the pixels
a primitive wins. Only IEEE arithmetic and ``sqrt`` are used, so results are identical on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tridense.data.synthetic.textures import Material

Array = np.ndarray
EPS = 1e-6


@dataclass
class Primitive:
    """Base: class id, instance id, material, whether it casts shadows."""

    class_id: int
    instance_id: int
    material: Material
    occluder: bool = True

    def intersect(self, o: tuple, d: tuple) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def surface(self, p: tuple) -> tuple[tuple[Array, Array, Array], Array, Array]:  # pragma: no cover
        """Outward normal (nx, ny, nz) and surface coordinates (s, t) in metres at hit points ``p``."""
        raise NotImplementedError

    def bounds(self) -> tuple[Array, Array]:  # pragma: no cover - abstract
        """World axis-aligned bounding box (lo (3,), hi (3,))."""
        raise NotImplementedError


@dataclass
class Box(Primitive):
    """A box with half extents ``half`` in its local frame, rotated by ``yaw`` about the vertical axis."""

    center: Array = None  # (3,)
    half: Array = None  # (3,)
    cos_yaw: float = 1.0
    sin_yaw: float = 0.0

    def _to_local(self, x: Array, y: Array, z: Array, translate: bool) -> tuple[Array, Array, Array]:
        if translate:
            x, y, z = x - self.center[0], y - self.center[1], z - self.center[2]
        c, s = self.cos_yaw, self.sin_yaw
        return c * x + s * y, -s * x + c * y, z

    def intersect(self, o: tuple, d: tuple) -> Array:
        ox, oy, oz = self._to_local(*o, translate=True)
        dx, dy, dz = self._to_local(*d, translate=False)
        tmin, tmax = None, None
        with np.errstate(divide="ignore", invalid="ignore"):
            for oc, dc, e in ((ox, dx, self.half[0]), (oy, dy, self.half[1]), (oz, dz, self.half[2])):
                inv = 1.0 / dc
                t1, t2 = (-e - oc) * inv, (e - oc) * inv
                lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
                tmin = lo if tmin is None else np.maximum(tmin, lo)
                tmax = hi if tmax is None else np.minimum(tmax, hi)
            hit = (tmax >= tmin) & (tmin > EPS)
        return np.where(hit, tmin, np.inf)

    def surface(self, p: tuple) -> tuple[tuple[Array, Array, Array], Array, Array]:
        x, y, z = self._to_local(*p, translate=True)
        h = self.half
        # The face hit is the one whose normalised coordinate is largest in magnitude.
        ax, ay, az = np.abs(x) / h[0], np.abs(y) / h[1], np.abs(z) / h[2]
        fx = (ax >= ay) & (ax >= az)
        fy = ~fx & (ay >= az)
        fz = ~fx & ~fy
        nlx = np.where(fx, np.sign(x), 0.0)
        nly = np.where(fy, np.sign(y), 0.0)
        nlz = np.where(fz, np.sign(z), 0.0)
        c, s = self.cos_yaw, self.sin_yaw
        normal = (c * nlx - s * nly, s * nlx + c * nly, nlz)
        # Surface coordinates: the two axes in the face's plane (vertical faces: horizontal, height).
        u = np.where(fx, y, x)
        v = np.where(fz, y, z)
        return normal, u, v

    def bounds(self) -> tuple[Array, Array]:
        c, s = abs(self.cos_yaw), abs(self.sin_yaw)
        ex = c * self.half[0] + s * self.half[1]
        ey = s * self.half[0] + c * self.half[1]
        e = np.array([ex, ey, self.half[2]])
        return self.center - e, self.center + e


@dataclass
class Cylinder(Primitive):
    """A capped vertical cylinder: axis through (cx, cy), from z0 to z0 + height."""

    cx: float = 0.0
    cy: float = 0.0
    z0: float = 0.0
    radius: float = 0.1
    height: float = 1.0

    def intersect(self, o: tuple, d: tuple) -> Array:
        ox, oy, oz = o[0] - self.cx, o[1] - self.cy, o[2] - self.z0
        dx, dy, dz = d
        r, h = self.radius, self.height
        a = dx * dx + dy * dy
        b = ox * dx + oy * dy
        c = ox * ox + oy * oy - r * r
        disc = b * b - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.sqrt(np.maximum(disc, 0.0))
            t_side = (-b - root) / a
            z_side = oz + t_side * dz
            side_ok = (disc >= 0) & (a > 1e-12) & (t_side > EPS) & (z_side >= 0) & (z_side <= h)
            t = np.where(side_ok, t_side, np.inf)
            for zc in (0.0, h):
                t_cap = (zc - oz) / dz
                px, py = ox + t_cap * dx, oy + t_cap * dy
                cap_ok = (t_cap > EPS) & (px * px + py * py <= r * r)
                t = np.where(cap_ok & (t_cap < t), t_cap, t)
        return t

    def surface(self, p: tuple) -> tuple[tuple[Array, Array, Array], Array, Array]:
        x, y, z = p[0] - self.cx, p[1] - self.cy, p[2] - self.z0
        rho = np.sqrt(x * x + y * y)
        # A point is on a cap if it is closer (relative to size) to a cap plane than to the side.
        d_side = np.abs(rho - self.radius)
        d_cap = np.minimum(np.abs(z), np.abs(z - self.height))
        on_cap = d_cap < d_side
        top = z > self.height / 2
        inv = 1.0 / np.maximum(rho, 1e-9)
        nx = np.where(on_cap, 0.0, x * inv)
        ny = np.where(on_cap, 0.0, y * inv)
        nz = np.where(on_cap, np.where(top, 1.0, -1.0), 0.0)
        # Side coordinates: an arc-length proxy (x + y) along the surface and the height.
        u = np.where(on_cap, x, (x - y) * 0.7071)
        v = np.where(on_cap, y, z)
        return (nx, ny, nz), u, v

    def bounds(self) -> tuple[Array, Array]:
        r = self.radius
        return np.array([self.cx - r, self.cy - r, self.z0]), np.array(
            [self.cx + r, self.cy + r, self.z0 + self.height]
        )


@dataclass
class Sphere(Primitive):
    center: Array = None  # (3,)
    radius: float = 0.1

    def intersect(self, o: tuple, d: tuple) -> Array:
        ox, oy, oz = o[0] - self.center[0], o[1] - self.center[1], o[2] - self.center[2]
        dx, dy, dz = d
        a = dx * dx + dy * dy + dz * dz
        b = ox * dx + oy * dy + oz * dz
        c = ox * ox + oy * oy + oz * oz - self.radius * self.radius
        disc = b * b - a * c
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > EPS), t, np.inf)

    def surface(self, p: tuple) -> tuple[tuple[Array, Array, Array], Array, Array]:
        x, y, z = p[0] - self.center[0], p[1] - self.center[1], p[2] - self.center[2]
        inv = 1.0 / self.radius
        return (x * inv, y * inv, z * inv), x + y, z

    def bounds(self) -> tuple[Array, Array]:
        return self.center - self.radius, self.center + self.radius


@dataclass
class Quad(Primitive):
    """A thin, two-sided rectangle: ``center`` + a * ``axis_u`` + b * ``axis_v``, |a| <= hu, |b| <= hv.

    Its normal is ``axis_u x axis_v``; the renderer turns it towards the camera.
    """

    center: Array = None
    axis_u: Array = None
    axis_v: Array = None
    hu: float = 0.5
    hv: float = 0.5

    @property
    def normal(self) -> Array:
        return np.cross(self.axis_u, self.axis_v)

    def intersect(self, o: tuple, d: tuple) -> Array:
        n = self.normal
        c = self.center
        denom = d[0] * n[0] + d[1] * n[1] + d[2] * n[2]
        num = (c[0] - o[0]) * n[0] + (c[1] - o[1]) * n[1] + (c[2] - o[2]) * n[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = num / denom
        px, py, pz = o[0] + t * d[0] - c[0], o[1] + t * d[1] - c[1], o[2] + t * d[2] - c[2]
        a = px * self.axis_u[0] + py * self.axis_u[1] + pz * self.axis_u[2]
        b = px * self.axis_v[0] + py * self.axis_v[1] + pz * self.axis_v[2]
        hit = (np.abs(denom) > 1e-12) & (t > EPS) & (np.abs(a) <= self.hu) & (np.abs(b) <= self.hv)
        return np.where(hit, t, np.inf)

    def surface(self, p: tuple) -> tuple[tuple[Array, Array, Array], Array, Array]:
        px, py, pz = p[0] - self.center[0], p[1] - self.center[1], p[2] - self.center[2]
        a = px * self.axis_u[0] + py * self.axis_u[1] + pz * self.axis_u[2]
        b = px * self.axis_v[0] + py * self.axis_v[1] + pz * self.axis_v[2]
        n = self.normal
        ones = np.ones_like(a)
        return (n[0] * ones, n[1] * ones, n[2] * ones), a, b

    def bounds(self) -> tuple[Array, Array]:
        e = np.abs(self.axis_u) * self.hu + np.abs(self.axis_v) * self.hv
        return self.center - e, self.center + e


@dataclass
class Room:
    """The inside of the box [0, Lx] x [0, Ly] x [0, H]; faces: floor, ceiling, four walls."""

    size: Array  # (3,) Lx, Ly, H
    floor: Material
    ceiling: Material
    walls: Material
    class_ids: tuple[int, int, int]  # (wall, floor, ceiling)

    def intersect_exit(self, o: Array, d: tuple) -> tuple[Array, Array]:
        """Exit parameter ``t`` and the face index (0/1: x = 0 / Lx, 2/3: y = 0 / Ly, 4: floor, 5: ceiling)."""
        best_t = np.full(np.shape(d[0]), np.inf)
        face = np.zeros(np.shape(d[0]), dtype=np.int8)
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis in range(3):
                dc = d[axis]
                bound = np.where(dc > 0, self.size[axis], 0.0)
                t = (bound - o[axis]) / dc
                t = np.where(t > EPS, t, np.inf)
                better = t < best_t
                best_t = np.where(better, t, best_t)
                face = np.where(better, (2 * axis + (dc > 0)).astype(np.int8), face)
        # faces: axis 0 -> 0 (x=0), 1 (x=Lx); axis 1 -> 2, 3; axis 2 -> 4 (floor), 5 (ceiling)
        return best_t, face
