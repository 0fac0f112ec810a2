"""Per-track state as parallel NumPy columns, so analytics update all tracks of
a frame with array operations instead of one Python object per track."""

from __future__ import annotations

import numpy as np


class TrackTable:
    """Rows keyed by track id (kept sorted, looked up with ``searchsorted``).

    ``columns`` maps a column name to ``(dtype, fill)``: the value a new row
    starts with. Columns are plain arrays in :attr:`col`; callers index them with
    the row numbers :meth:`find` and :meth:`add` return. Row numbers change when
    rows are added or dropped, so they are valid until the next such call.
    """

    def __init__(self, columns: dict[str, tuple[type | np.dtype, object]]) -> None:
        self._spec = {
            name: (np.dtype(dt), fill) for name, (dt, fill) in columns.items()
        }
        self.reset()

    def reset(self) -> None:
        self.ids = np.zeros(0, dtype=np.int32)
        self.col: dict[str, np.ndarray] = {
            name: np.zeros(0, dtype=dt) for name, (dt, _) in self._spec.items()
        }

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, track_ids: np.ndarray) -> np.ndarray:
        """Row of each id, -1 where the id has no row."""
        if not len(self.ids):
            return np.full(len(track_ids), -1, dtype=np.intp)
        pos = np.searchsorted(self.ids, track_ids)
        clipped = np.minimum(pos, len(self.ids) - 1)
        return np.where(self.ids[clipped] == track_ids, clipped, -1)

    def add(self, track_ids: np.ndarray) -> np.ndarray:
        """Rows of ``track_ids`` (unique), creating rows for new ids."""
        rows = self.find(track_ids)
        new = np.unique(track_ids[rows < 0])
        if new.size:
            at = np.searchsorted(self.ids, new)
            self.ids = np.insert(self.ids, at, new)
            for name, (_, fill) in self._spec.items():
                self.col[name] = np.insert(self.col[name], at, fill)
            rows = np.searchsorted(self.ids, track_ids)
        return rows

    def drop(self, rows: np.ndarray) -> None:
        """Remove rows, given as a boolean mask over all rows or row numbers."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if not rows.any():
                return
            keep = ~rows
        else:
            if not rows.size:
                return
            keep = np.ones(len(self.ids), dtype=bool)
            keep[rows] = False
        self.ids = self.ids[keep]
        for name in self.col:
            self.col[name] = self.col[name][keep]


def first_per_track(track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique ids and the index of each one's first row: a tracker should give
    one box per id, and when it does not, the first box speaks for the track."""
    ids, first = np.unique(track_ids, return_index=True)
    return ids.astype(np.int32), first
