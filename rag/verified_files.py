"""Checking a build's files against their checksums without reading them all at every load.

A full check reads every byte (8.9 GiB at a million passages). After a file has been hashed
and found sound, its size, modification and change times and inode are recorded beside the
build (``.verified.json``); while they stay the same the file is not hashed again. Anything
that rewrites a file changes its times, except a write within the file system's timestamp
granularity of the check itself: files modified that recently are not recorded, and are
hashed again next time (git's "racy" files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

VERIFIED_FILE = ".verified.json"
#: Files modified less than this before a check are hashed again at the next one.
RACY_NS = 2_000_000_000


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_files(folder: Path, names: list[str]) -> dict[str, str]:
    """The checksum of each of ``names`` (relative to ``folder``), recorded as verified: a
    build's files are not read again by the first load."""
    files, records = {}, {}
    for name in names:
        files[name], record = _verify(folder / name)
        if record:
            records[name] = record
    _write(folder / VERIFIED_FILE, records)
    return files


def first_unsound(folder: Path, files: dict[str, str]) -> str | None:
    """The first of ``files`` (relative name -> sha256) that is missing or differs from its
    checksum, or None when all are sound. Files unchanged since their last verification are
    not read."""
    recorded = _read(folder / VERIFIED_FILE)
    records = {}
    for name, digest in files.items():
        relative = Path(str(name))
        path = folder / relative
        if relative.is_absolute() or ".." in relative.parts or not path.is_file():
            return name
        record = recorded.get(name)
        if record != _stat(path, digest):
            found, record = _verify(path)
            if found != digest:
                return name
        if record:
            records[name] = record
    if records != recorded:
        _write(folder / VERIFIED_FILE, records)
    return None


def _stat(path: Path, digest: str) -> list:
    stat = path.stat()
    return [digest, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _verify(path: Path) -> tuple[str, list | None]:
    """(sha256 of ``path``, its record, or None when it was modified too shortly before
    being read for a same-size rewrite in the same clock tick to be told apart)."""
    started = time.time_ns()
    before = path.stat()
    digest = sha256_file(path)
    record = _stat(path, digest)
    settled = started - max(before.st_mtime_ns, before.st_ctime_ns) > RACY_NS and record[1:] == \
        [before.st_size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino]
    return digest, record if settled else None


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, verified: dict) -> None:
    """Atomically (a reader sees the old record or the new one); a read-only index is
    simply checked in full next time."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(verified, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not record verified files in %s (%s)", path.parent, exc)
        tmp.unlink(missing_ok=True)
