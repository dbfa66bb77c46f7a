"""Rows of a large matrix read from its file: the same values as the array, read by runs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rag import stored_rows
from rag.stored_rows import StoredRows, open_rows


@pytest.fixture
def matrix(tmp_path):
    array = np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32)
    np.save(tmp_path / "m.npy", array)
    return array, StoredRows(tmp_path / "m.npy")


@pytest.mark.parametrize("key", [5, -1, np.int64(7), slice(3, 10), slice(None), slice(990, 2000),
                                 [3, 4, 5, 9, 2, 2], np.array([], dtype=np.int64), np.arange(40, 60)])
def test_rows_read_from_the_file_equal_the_array(matrix, key):
    array, rows = matrix
    assert np.array_equal(rows[key], array[key])


def test_masks_products_and_whole_reads_equal_the_array(matrix, monkeypatch):
    array, rows = matrix
    mask = array[:, 0] > 0
    assert np.array_equal(rows[mask], array[mask])
    monkeypatch.setattr(stored_rows, "_BLOCK_ROWS", 300)  # several blocks
    vector = np.linspace(-1, 1, 8, dtype=np.float32)
    assert np.allclose(rows @ vector, array @ vector)
    assert np.array_equal(np.asarray(rows), array)
    assert (len(rows), rows.shape, rows.dtype, rows.ndim) == (1000, (1000, 8), np.float32, 2)


def test_consecutive_rows_are_one_read(matrix, monkeypatch):
    _, rows = matrix
    reads = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, buffers, offset: reads.append(offset) or real(fd, buffers, offset))
    rows[np.r_[np.arange(10, 20), np.arange(500, 503), 7]]
    assert len(reads) == 3


def test_rows_out_of_range_are_refused(matrix):
    _, rows = matrix
    with pytest.raises(IndexError):
        rows[[1, 1000]]


def test_small_files_are_read_whole_and_large_ones_are_not_mapped(tmp_path, monkeypatch):
    np.save(tmp_path / "m.npy", np.ones((10, 4), dtype=np.float32))
    assert type(open_rows(tmp_path / "m.npy")) is np.ndarray
    monkeypatch.setattr(stored_rows, "READ_WHOLE_BYTES", 0)
    rows = open_rows(tmp_path / "m.npy")
    assert isinstance(rows, StoredRows)
    with open("/proc/self/maps") as maps:
        assert str(tmp_path / "m.npy") not in maps.read()
