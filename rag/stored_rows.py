"""Rows of a large ``.npy`` matrix read from the file when asked for, never mapped.

A memory map would serve the same reads, but every page a question touches (and the pages the
kernel reads ahead around it) then counts in the serving process's resident memory, growing
with every question until the whole file is resident: 2.3 GiB after 200 questions at a million
passages. Read with ``pread``, the pages stay in the operating system's file cache, shared and
reclaimable, and the process holds only the rows in use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Files up to this size are read whole: small corpora then compute on a plain array.
READ_WHOLE_BYTES = 64 * 2**20
#: Rows multiplied at a time when every row is asked for (bounded memory).
_BLOCK_ROWS = 65_536


def open_rows(path: Path) -> np.ndarray | StoredRows:
    """The matrix in ``path``: in memory when small, else a ``StoredRows`` over the file."""
    if path.stat().st_size <= READ_WHOLE_BYTES:
        return np.load(path, allow_pickle=False)
    return StoredRows(path)


class StoredRows:
    """A read-only 2-D float matrix in a ``.npy`` file, indexed like an array: ``rows[i]``,
    ``rows[array_of_rows]``, ``rows[mask]``, ``rows[a:b]`` and ``rows @ vector`` read only what
    they need (consecutive rows in one read)."""

    def __init__(self, path: Path) -> None:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # reads the header only
        if header.ndim != 2 or not header.flags.c_contiguous:
            raise ValueError(f"{path}: not a row-major matrix")
        self.shape, self.dtype, self._offset = header.shape, header.dtype, header.offset
        del header
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)
        self._path = path

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._rows(np.array([key]))[0]
        if isinstance(key, slice):
            return self._rows(np.arange(*key.indices(len(self))))
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return self._rows(key.astype(np.int64, copy=False))

    def __matmul__(self, other) -> np.ndarray:
        other = np.asarray(other)
        blocks = [self[start:start + _BLOCK_ROWS] @ other for start in range(0, len(self), _BLOCK_ROWS)]
        if not blocks:
            return np.zeros((0, *other.shape[1:]), dtype=np.result_type(self.dtype, other.dtype))
        return np.concatenate(blocks)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range for {len(self)} rows")
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        target = out.reshape(-1).view(np.uint8)
        # Runs of consecutive rows (a passage's sentences are stored together): one read each.
        breaks = (np.flatnonzero(np.diff(rows) != 1) + 1).tolist()
        width = self._row_bytes
        for start, end in zip([0, *breaks], [*breaks, len(rows)], strict=True):
            if start == end:
                continue
            read = os.preadv(self._fd, [target[start * width:end * width]], self._offset + int(rows[start]) * width)
            if read != (end - start) * width:
                raise OSError(f"{self._path}: short read ({read} of {(end - start) * width} bytes)")
        return out
