"""Rows of a decoded image array on disk, read on demand: how a folder too large for memory
reaches the model. The array is a .npy file of the folder cache (uint8); a `Rows` is a
selection of its rows (a split, a class subset, a subsample) that reads float32 in [0, 1] only
for the rows asked for, so memory stays bounded whatever the folder's size.

The file is read with pread, not mapped: a memory map's touched pages count in the process's
resident memory (RSS) until the kernel drops them, which is how the first version of this
reached 4 GB on a 3 GB cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class RowFile:
    """A 2-d+ uint8 .npy file read row by row (`file[ids]`) with positional reads."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        with open(self.path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if major == 1
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(fh)
            self.offset = fh.tell()
        if fortran or dtype != np.uint8:
            raise ValueError(f"{path}: expected a C-ordered uint8 array")
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(self.shape[1:]))
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids) -> np.ndarray:
        if isinstance(ids, (int, np.integer)):
            return self[[ids]][0]
        ids = np.asarray(ids, dtype=np.int64)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        out = np.empty((len(ids), *self.shape[1:]), np.uint8)
        flat = out.reshape(len(ids), -1)
        for k, i in enumerate(ids):
            flat[k] = np.frombuffer(os.pread(self._fd, self.row_bytes,
                                             self.offset + int(i) * self.row_bytes), np.uint8)
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


class Rows:
    def __init__(self, base: np.ndarray | RowFile, idx: np.ndarray | None = None):
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
            return self.read(self.idx[np.asarray([key])])[0]
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
