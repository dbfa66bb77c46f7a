"""Changing the corpus so that an interruption at any instant leaves it whole.

An add works in a staging folder inside the corpus folder (``.add-<random>/``) that holds the
corpus as it will be: hard links to the current files, the new files and the new manifest.
The index is built from that folder first. Then the change is committed: a journal in the
staging folder names the new files and their checksums, they are moved into the corpus
folder, and the staged manifest replaces the live one in one ``rename``, the commit point.
Killed before that rename, the add never happened; after it, the add is complete.

Every change holds one lock, ``flock`` on the corpus folder itself (so taking it writes
nothing). A staging folder found without a live add behind it is cleaned up at the next
start: if its manifest was not committed, the new files it had moved in are removed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.verified_files import sha256_file

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
TEXT_SUFFIXES = (".md", ".txt")
STAGING_PREFIX = ".add-"
JOURNAL_NAME = "commit.json"


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def corpus_lock(directory: Path) -> Iterator[None]:
    """Hold the corpus's one write lock; a second writer waits for the first to finish."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another change to %s is in progress; waiting for it to finish", directory)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def stage(directory: Path, manifest: bytes, new_files: dict[str, str]) -> Path:
    """A staging folder holding the corpus as it will be after the change: links to the current
    files (symbolic links stay links, so they are judged as in the corpus), the new files
    (name -> text) and the new manifest."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=directory))
    try:
        for path in directory.iterdir():
            if path.suffix in TEXT_SUFFIXES and (path.is_file() or path.is_symlink()):
                try:
                    os.link(path, staging / path.name, follow_symlinks=False)
                except OSError:  # a file system without hard links
                    shutil.copy2(path, staging / path.name, follow_symlinks=False)
        for name, text in new_files.items():
            _write_synced(staging / name, text.encode("utf-8"))
        _write_synced(staging / MANIFEST_NAME, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def commit(directory: Path, staging: Path, new_files: list[str]) -> None:
    """Move the staged change into the corpus; the manifest's rename is the commit point."""
    journal = {"manifest": sha256_file(staging / MANIFEST_NAME),
               "files": {name: sha256_file(staging / name) for name in new_files}}
    _write_synced(staging / JOURNAL_NAME, json.dumps(journal).encode("utf-8"))
    for name in new_files:
        os.replace(staging / name, directory / name)
    os.replace(staging / MANIFEST_NAME, directory / MANIFEST_NAME)
    _sync_folder(directory)
    shutil.rmtree(staging, ignore_errors=True)


def _journal(staging: Path) -> dict | None:
    try:
        journal = json.loads((staging / JOURNAL_NAME).read_text(encoding="utf-8"))
        files = journal["files"]
        if isinstance(journal["manifest"], str) and isinstance(files, dict):
            return journal
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def discard(directory: Path, staging: Path) -> None:
    """Undo a change that did not reach its commit point (or only tidy up one that did)."""
    journal = _journal(staging)
    manifest = directory / MANIFEST_NAME
    committed = journal is not None and manifest.is_file() and sha256_file(manifest) == journal["manifest"]
    if journal is not None and not committed:
        for name, digest in journal["files"].items():
            path = directory / str(name)
            # Only a plain file name this change wrote, byte for byte: never anything else.
            if (path.name == name and path.suffix in TEXT_SUFFIXES and path.is_file()
                    and not path.is_symlink() and sha256_file(path) == digest):
                path.unlink()
    shutil.rmtree(staging)
    log.info("%s an interrupted change to %s", "tidied up after" if committed else "rolled back", directory)


def _leftovers(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(STAGING_PREFIX + "*") if p.is_dir() and not p.is_symlink())


def recover(directory: Path) -> None:
    """Clean up every staging folder in ``directory``; the caller holds the lock."""
    for staging in _leftovers(directory):
        discard(directory, staging)


def recover_if_idle(directory: Path) -> set[str]:
    """Clean up after interrupted changes when no change is running. Returns the names of new
    files that a staging folder still holds claim to (a running change is moving them in):
    a reader treats them as not there yet."""
    if not _leftovers(directory):
        return set()
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        fd = None
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            recover(directory)
        except BlockingIOError:
            pass  # a change is running: its staging folder is not a leftover
        except OSError as exc:
            log.warning("could not clean up an interrupted change to %s (%s)", directory, exc)
        finally:
            os.close(fd)
    return {str(name) for staging in _leftovers(directory)
            for name in (_journal(staging) or {"files": {}})["files"]}
