"""Drawing: boxes, class names, scores, track IDs with stable colours, fading
trails, per-class counts, counting lines and zones with their counts, and a
small FPS/latency HUD. One ``Overlay`` per source
(it keeps trails), touched by one thread only."""

from __future__ import annotations

import colorsys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from core.types import Detections, SceneCounts
from pipeline.analytics.geometry import ShapeSpec

LINE_COLOR = (0, 255, 255)  # BGR yellow: stands out from the track colours' boxes
ZONE_COLOR = (255, 128, 0)  # BGR blue
ZONE_FILL = 0.15  # zone interior tint: the scene stays visible through it


@dataclass(frozen=True)
class OverlayConfig:
    """``trail_length``: centres kept per track (0 = no trails). ``counts``: per-class
    counts in the HUD. ``hud``: FPS/latency line. ``labels``: class name + score.
    ``line_width`` / ``font_scale``: box line width in pixels and label size
    (None: scaled with the frame)."""

    trail_length: int = 30
    counts: bool = True
    hud: bool = True
    labels: bool = True
    line_width: int | None = None
    font_scale: float | None = None

    def __post_init__(self) -> None:
        if self.trail_length < 0:
            raise ValueError(f"trail_length must be >= 0, got {self.trail_length}")
        if self.line_width is not None and self.line_width < 1:
            raise ValueError(f"line_width must be >= 1, got {self.line_width}")
        if self.font_scale is not None and self.font_scale <= 0:
            raise ValueError(f"font_scale must be > 0, got {self.font_scale}")


def color_for(key: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for an ID (golden-ratio hue steps)."""
    hue = (key * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


class Overlay:
    """Draws detections on a copy of the frame (the frame itself stays untouched)."""

    def __init__(
        self, class_names: list[str], config: OverlayConfig | None = None,
        lines: Sequence[ShapeSpec] = (), zones: Sequence[ShapeSpec] = (),
    ) -> None:
        self.class_names = list(class_names)
        self.config = config or OverlayConfig()
        self.lines, self.zones = list(lines), list(zones)
        self.trails: dict[int, deque[tuple[int, int]]] = {}
        self._last_seen: dict[int, int] = {}
        self._frames = 0
        self._times: deque[float] = deque(maxlen=30)

    def reset(self) -> None:
        self.trails.clear()
        self._last_seen.clear()
        self._frames = 0
        self._times.clear()

    def name(self, class_id: int) -> str:
        if 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return str(class_id)

    def draw(
        self, image: np.ndarray, dets: Detections, latency_ms: float | None = None,
        drop_rate: float | None = None, scene: SceneCounts | None = None,
    ) -> np.ndarray:
        """A copy of ``image`` with ``dets`` drawn; ``scene`` adds the lines'
        in/out counts and the zones' occupancy to their shapes."""
        out = image.copy()
        h, w = out.shape[:2]
        scale = max(0.4, min(w, h) / 720)  # readable from 320p to 4K
        thickness = self.config.line_width or max(1, round(2 * scale))
        font_scale = self.config.font_scale or 0.5 * scale
        self._frames += 1
        self._times.append(time.perf_counter())
        self._update_trails(dets)
        if self.lines or self.zones:
            self._draw_shapes(out, scene, font_scale, thickness)
        if self.config.trail_length:
            self._draw_trails(out, thickness)
        boxes = np.round(dets.xyxy).astype(np.int32)
        for (x1, y1, x2, y2), score, cid, tid in zip(
            boxes, dets.scores, dets.class_ids, dets.track_ids, strict=True
        ):
            color = color_for(int(tid) if tid >= 0 else int(cid) + 1000)
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
            if not self.config.labels:
                continue
            label = f"{self.name(int(cid))} {score:.2f}"
            if tid >= 0:
                label = f"#{tid} {label}"
            self._label(out, label, (x1, y1), color, font_scale, thickness)
        if self.config.hud:
            self._hud(out, dets, latency_ms, drop_rate, font_scale, thickness)
        return out

    def _draw_shapes(self, out: np.ndarray, scene: SceneCounts | None,
                     font_scale: float, thickness: int) -> None:
        size = (out.shape[1], out.shape[0])
        if self.zones:
            tint = out.copy()
            polygons = [np.round(z.points.to_pixels(size)).astype(np.int32)
                        for z in self.zones]
            cv2.fillPoly(tint, polygons, ZONE_COLOR, cv2.LINE_AA)
            cv2.addWeighted(tint, ZONE_FILL, out, 1 - ZONE_FILL, 0, dst=out)
            for zone, polygon in zip(self.zones, polygons, strict=True):
                cv2.polylines(out, [polygon], True, ZONE_COLOR, thickness,
                              cv2.LINE_AA)
                text = zone.name if scene is None else (
                    f"{zone.name}: {scene.occupancy(zone.name)}")
                x, y = polygon.min(axis=0)
                self._label(out, text, (int(x), int(y)), ZONE_COLOR, font_scale,
                            thickness)
        for line in self.lines:
            a, b = np.round(line.points.to_pixels(size)).astype(np.int32)
            cv2.line(out, tuple(a.tolist()), tuple(b.tolist()), LINE_COLOR,
                     thickness + 1, cv2.LINE_AA)
            text = line.name if scene is None else (
                f"{line.name} in {scene.crossings(line.name, 'in')} "
                f"out {scene.crossings(line.name, 'out')}")
            mid = (a + b) // 2
            self._label(out, text, (int(mid[0]), int(mid[1])), LINE_COLOR,
                        font_scale, thickness)

    def _update_trails(self, dets: Detections) -> None:
        if not self.config.trail_length:
            return
        centres = ((dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2).astype(np.int32)
        for tid, (cx, cy) in zip(dets.track_ids, centres, strict=True):
            if tid < 0:
                continue
            trail = self.trails.setdefault(
                int(tid), deque(maxlen=self.config.trail_length)
            )
            trail.append((int(cx), int(cy)))
            self._last_seen[int(tid)] = self._frames
        stale = [
            t
            for t, seen in self._last_seen.items()
            if self._frames - seen > self.config.trail_length
        ]
        for tid in stale:  # bounded memory on long runs
            self.trails.pop(tid, None)
            self._last_seen.pop(tid, None)

    def _draw_trails(self, out: np.ndarray, thickness: int) -> None:
        for tid, trail in self.trails.items():
            if len(trail) < 2:
                continue
            color = np.array(color_for(tid), dtype=np.float32)
            points = list(trail)
            for i in range(1, len(points)):
                fade = i / len(points)  # older segments darker and thinner
                cv2.line(
                    out,
                    points[i - 1],
                    points[i],
                    (color * fade).tolist(),
                    max(1, round(thickness * fade)),
                    cv2.LINE_AA,
                )

    @staticmethod
    def _label(
        out: np.ndarray,
        text: str,
        origin: tuple[int, int],
        color: tuple[int, int, int],
        font_scale: float,
        thickness: int,
    ) -> None:
        (tw, th), base = cv2.getTextSize(
            text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness - 1)
        )
        x, y = origin
        y = max(y, th + base + 2)
        cv2.rectangle(out, (x, y - th - base - 2), (x + tw + 2, y), color, -1)
        cv2.putText(
            out,
            text,
            (x + 1, y - base),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            max(1, thickness - 1),
            cv2.LINE_AA,
        )

    def _hud(
        self,
        out: np.ndarray,
        dets: Detections,
        latency_ms: float | None,
        drop_rate: float | None,
        font_scale: float,
        thickness: int,
    ) -> None:
        parts = []
        if len(self._times) > 1:
            span = self._times[-1] - self._times[0]
            if span > 0:
                parts.append(f"{(len(self._times) - 1) / span:.1f} FPS")
        if latency_ms is not None:
            parts.append(f"{latency_ms:.0f} ms")
        if drop_rate is not None:
            parts.append(f"drop {100 * drop_rate:.0f}%")
        if self.config.counts and len(dets):
            ids, counts = np.unique(dets.class_ids, return_counts=True)
            parts += [
                f"{self.name(int(i))}: {c}" for i, c in zip(ids, counts, strict=True)
            ]
        if parts:
            self._label(
                out, "  ".join(parts), (4, 4), (255, 255, 255), font_scale, thickness
            )
