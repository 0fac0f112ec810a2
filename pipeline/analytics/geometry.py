"""Points of lines and zones, anchors of boxes, and the vectorised geometry tests.

Points are written once for many cameras, often before anyone knows a camera's
resolution, so they may be fractions of the frame; pixels are accepted too. The
rule (shared by the flags, the config file and the API): when every value lies
in [0, 1] the points are fractions of the frame, otherwise pixels. A value
strictly between 0 and 1 next to a value above 1 is a mix, almost always a typo,
and is rejected naming the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

ANCHORS = ("center", "bottom")
"""``bottom``: bottom centre of the box, where a person stands (the default, so
a line on the floor counts feet, not heads); ``center``: the box centre."""

FrameSize = tuple[int, int]
"""(width, height) in pixels, the order x and y come in."""

_NAME = re.compile(r"^[\w.-]+$")


@dataclass(frozen=True, eq=False)
class Points:
    """Points of a line or polygon as given: fractions of the frame or pixels.

    ``xy``: (K, 2) float64, x then y. ``fractional``: whether they are fractions
    of the frame (resolved per frame size by :meth:`to_pixels`) or pixels.
    Build with :func:`parse_points` so the fraction/pixel rule is applied.
    """

    xy: np.ndarray
    fractional: bool

    def __post_init__(self) -> None:
        # A private read-only copy: a caller's array changing later must not
        # move a line that is counting.
        xy = np.array(self.xy, dtype=np.float64).reshape(-1, 2)
        xy.setflags(write=False)
        object.__setattr__(self, "xy", xy)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Points):
            return NotImplemented
        return self.fractional == other.fractional and np.array_equal(self.xy, other.xy)

    __hash__ = None  # type: ignore[assignment]

    def to_pixels(self, frame_size: FrameSize) -> np.ndarray:
        """(K, 2) float64 pixel coordinates for a frame of ``(width, height)``."""
        width, height = check_frame_size(frame_size)
        if not self.fractional:
            return self.xy.copy()
        return self.xy * np.array([width, height], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.xy)


def check_frame_size(frame_size: Sequence[int]) -> FrameSize:
    """``(width, height)`` as two positive ints, or a ValueError naming it."""
    try:
        width, height = (int(v) for v in frame_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"frame_size must be (width, height), got {frame_size!r}"
        ) from None
    if width <= 0 or height <= 0:
        raise ValueError(
            f"frame_size must be positive (width, height), got {frame_size!r}"
        )
    return width, height


def parse_points(
    points: Sequence[Sequence[float]] | Sequence[float] | np.ndarray,
    *,
    min_points: int = 2,
    max_points: int | None = None,
    what: str = "points",
) -> Points:
    """Points from ``[[x, y], ...]`` or a flat ``[x, y, x, y, ...]``.

    All values in [0, 1]: fractions of the frame. Otherwise pixels, and then a
    value strictly between 0 and 1 is an error (a fraction among pixels); 0 and
    1 themselves are fine as pixels. Negative, infinite and NaN values are
    errors. ``what`` names the thing in error messages (``line 'door'``).
    """
    try:
        xy = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: points must be numbers, got {points!r}") from None
    if xy.ndim == 1:
        if len(xy) % 2:
            raise ValueError(
                f"{what}: {len(xy)} values is an odd count; give x,y pairs"
            )
        xy = xy.reshape(-1, 2)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"{what}: points must be x,y pairs, got shape {xy.shape}")
    if len(xy) < min_points:
        raise ValueError(f"{what}: needs at least {min_points} points, got {len(xy)}")
    if max_points is not None and len(xy) > max_points:
        raise ValueError(f"{what}: takes {max_points} points, got {len(xy)}")
    bad = xy[~np.isfinite(xy) | (xy < 0)]
    if bad.size:
        raise ValueError(f"{what}: point value {_fmt(bad[0])} must be a number >= 0")
    if float(xy.max()) <= 1.0:
        return Points(xy, fractional=True)
    fraction = xy[(xy > 0) & (xy < 1)]
    if fraction.size:
        pixel = xy[xy > 1][0]
        raise ValueError(
            f"{what}: {_fmt(fraction[0])} is a fraction of the frame but "
            f"{_fmt(pixel)} is a pixel; give all values in [0, 1] or all in pixels"
        )
    return Points(xy, fractional=False)


def _fmt(value: float) -> str:
    return f"{value:g}"


def check_name(name: str, what: str) -> str:
    """Names show up in events, metric labels and clip file names, so they are
    kept to letters, digits, ``_``, ``.`` and ``-``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} must be letters, digits, '_', '.' or '-'"
        )
    return name


def anchor_points(xyxy: np.ndarray, anchor: str = "bottom") -> np.ndarray:
    """(N, 2) float64 anchor points of (N, 4) xyxy pixel boxes."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    x = (xyxy[:, 0] + xyxy[:, 2]) * 0.5
    if anchor == "bottom":
        y = xyxy[:, 3]
    elif anchor == "center":
        y = (xyxy[:, 1] + xyxy[:, 3]) * 0.5
    else:
        raise ValueError(f"anchor {anchor!r} is not one of {', '.join(ANCHORS)}")
    return np.stack([x, y], axis=1)


def check_anchor(anchor: str) -> str:
    if anchor not in ANCHORS:
        raise ValueError(f"anchor {anchor!r} is not one of {', '.join(ANCHORS)}")
    return anchor


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: which of (N, 2) points lie inside the (K, 2) polygon.

    Even-odd ray casting over all points and edges at once (an N×K array), which
    for the few-vertex polygons of camera zones beats a per-point loop by far.
    Points exactly on an edge may fall either way; inertia absorbs that.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(points):
        return np.zeros(0, dtype=bool)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    px, py = points[:, :1], points[:, 1:]
    straddles = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    crossings = straddles & (px < x_cross)
    return np.logical_xor.reduce(crossings, axis=1)


def polygon_area(polygon: np.ndarray) -> float:
    """Unsigned area (shoelace formula) of a (K, 2) polygon."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def self_intersects(polygon: np.ndarray) -> bool:
    """Whether two non-adjacent edges of a (K, 2) polygon cross properly.

    A bow-tie zone has an inside nobody meant; it is cheaper to reject it once
    at construction than to explain odd counts later.
    """
    k = len(polygon)
    a, b = polygon, np.roll(polygon, -1, axis=0)
    for i in range(k):
        for j in range(i + 2, k):
            if i == 0 and j == k - 1:
                continue  # adjacent through the closing edge
            if _segments_cross(a[i], b[i], a[j], b[j]):
                return True
    return False


def _cross(o: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    return float((p[0] - o[0]) * (q[1] - o[1]) - (p[1] - o[1]) * (q[0] - o[0]))


def _segments_cross(p1, p2, q1, q2) -> bool:
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def resolve_classes(
    classes: Collection[int | str] | None,
    class_names: Sequence[str] | None,
    what: str,
) -> np.ndarray | None:
    """Class filter as sorted int32 ids (``None``: every class).

    Names are looked up in ``class_names`` so a config can say ``[person]``.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, int)):
        classes = [classes]
    ids = []
    for c in classes:
        if isinstance(c, str):
            if class_names is None or c not in class_names:
                known = ", ".join(class_names) if class_names else "none given"
                raise ValueError(f"{what}: unknown class {c!r} (class names: {known})")
            ids.append(list(class_names).index(c))
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0:
            ids.append(int(c))
        else:
            raise ValueError(f"{what}: class {c!r} must be a name or an id >= 0")
    if not ids:
        raise ValueError(f"{what}: classes is empty; use None for every class")
    return np.unique(np.asarray(ids, dtype=np.int32))


def class_mask(class_ids: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    if classes is None:
        return np.ones(len(class_ids), dtype=bool)
    return np.isin(class_ids, classes)


def check_timestamp(timestamp: float, last: float | None, what: str) -> float:
    """A finite timestamp that does not go back: dwell times come from these."""
    t = float(timestamp)
    if not math.isfinite(t):
        raise ValueError(f"{what}: timestamp must be finite, got {timestamp!r}")
    if last is not None and t < last:
        raise ValueError(
            f"{what}: timestamp {t:g} is before the previous one ({last:g}); "
            "call reset() when a source restarts its clock"
        )
    return t


@dataclass(frozen=True)
class ShapeSpec:
    """A line or zone as given (the CLI shorthand, a config file entry): its
    name, its points and the options it sets itself, which override the
    analytics config's (None: the config's; lines ignore inertia and loiter_s).
    """

    name: str
    points: Points
    anchor: str | None = None
    classes: tuple[int | str, ...] | None = None
    inertia: int | None = None
    loiter_s: float | None = None


def _parse_spec(
    spec: str,
    *,
    flag: str,
    form: str,
    min_points: int,
    max_points: int | None,
    default_name: str,
) -> ShapeSpec:
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{flag}: empty value; expected {form}")
    coords, sep, name = spec.strip().partition(":")
    if sep:
        name = name.strip()
        if not name:
            raise ValueError(f"{flag} {spec!r}: empty name after ':'; expected {form}")
        check_name(name, f"{flag} {spec!r}:")
    else:
        name = default_name
    values = []
    for part in coords.split(","):
        text = part.strip()
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(
                f"{flag} {spec!r}: {text!r} is not a number; expected {form}"
            ) from None
    if max_points is not None and len(values) != 2 * max_points:
        raise ValueError(
            f"{flag} {spec!r}: expected {form} ({2 * max_points} numbers), "
            f"got {len(values)}"
        )
    if len(values) % 2 or len(values) < 2 * min_points:
        raise ValueError(
            f"{flag} {spec!r}: expected {form} (an even count, at least "
            f"{2 * min_points} numbers), got {len(values)}"
        )
    points = parse_points(
        values, min_points=min_points, max_points=max_points, what=f"{flag} {spec!r}"
    )
    return ShapeSpec(name, points)


def parse_line_spec(spec: str, default_name: str = "line") -> ShapeSpec:
    """``X1,Y1,X2,Y2[:NAME]`` (the ``--line`` flag) into a name and two points.

    Errors are one line naming the flag, the value and what was expected.
    """
    return _parse_spec(
        spec,
        flag="--line",
        form="X1,Y1,X2,Y2[:NAME]",
        min_points=2,
        max_points=2,
        default_name=default_name,
    )


def parse_zone_spec(spec: str, default_name: str = "zone") -> ShapeSpec:
    """``X,Y,X,Y,X,Y[,...][:NAME]`` (the ``--zone`` flag): a polygon of >= 3
    points and its name. Errors are one line naming the flag and the value."""
    return _parse_spec(
        spec,
        flag="--zone",
        form="X,Y,X,Y,X,Y[,...][:NAME]",
        min_points=3,
        max_points=None,
        default_name=default_name,
    )
