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


def first_unsound(folder: Path, files: dict[str, str]) -> str | None:
    """The first of ``files`` (relative name -> sha256) that is missing or differs from its
    checksum, or None when all are sound. Files unchanged since their last verification are
    not read."""
    recorded = _read(folder / VERIFIED_FILE)
    now = time.time_ns()
    verified: dict[str, list] = {}
    for name, digest in files.items():
        relative = Path(str(name))
        path = folder / relative
        if relative.is_absolute() or ".." in relative.parts or not path.is_file():
            return name
        stat = path.stat()
        key = [digest, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        if recorded.get(name) != key and sha256_file(path) != digest:
            return name
        if now - max(stat.st_mtime_ns, stat.st_ctime_ns) > RACY_NS:
            verified[name] = key
    if verified != recorded:
        _write(folder / VERIFIED_FILE, verified)
    return None


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
