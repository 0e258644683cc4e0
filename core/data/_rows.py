"""Rows of a decoded image array on disk, read on demand: how a folder too large for memory
reaches the model. The array is the folder cache's uint8 memmap; a `Rows` is a selection of
its rows (a split, a class subset, a subsample) that reads float32 in [0, 1] only for the
rows asked for, so memory stays bounded whatever the folder's size."""

from __future__ import annotations

import numpy as np


class Rows:
    def __init__(self, base: np.ndarray, idx: np.ndarray | None = None):
        self.base = base
        self.idx = np.arange(len(base)) if idx is None else np.asarray(idx, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.idx), *self.base.shape[1:])

    dtype = np.dtype("float32")

    def take(self, idx) -> Rows:
        return Rows(self.base, self.idx[idx])

    def read(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows of the base array, in the order asked, read in storage order."""
        order = np.argsort(ids, kind="stable")
        out = np.empty((len(ids), *self.base.shape[1:]), np.float32)
        out[order] = self.base[ids[order]] / np.float32(255)
        return out

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.read(self.idx[[key]])[0]
        return self.read(self.idx[key])

    def float_bytes(self) -> int:
        return int(len(self) * np.prod(self.base.shape[1:]) * 4)

    def materialize(self, chunk: int = 1024) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        for i in range(0, len(self), chunk):
            out[i:i + chunk] = self[i:i + chunk]
        return out


def take(x, idx):
    """Rows of an in-memory array or of a `Rows` selection alike."""
    return x.take(idx) if isinstance(x, Rows) else x[idx]
