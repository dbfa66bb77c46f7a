"""Adding documents to the corpus: validate everything first, build the index for the corpus
as it will be, then commit files and manifest in one rename (see ``rag.corpus_writes``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.corpus import (
    ID_PATTERN,
    Corpus,
    DocumentInfo,
    load_corpus,
    manifest_bytes,
    metadata_problem,
    read_manifest,
    sha256_file,
)
from rag.corpus_writes import commit, corpus_lock, discard, recover, stage
from rag.settings import Settings

log = logging.getLogger(__name__)

SUPPORTED = (".md", ".txt", ".pdf", ".html", ".htm")
#: Line breaks, tabs and page breaks are text; other control characters beyond this share
#: mean the file is not a text document.
_TEXT_CONTROLS = frozenset("\n\r\t\f\v")
_MAX_CONTROL_SHARE = 0.01


class IngestError(ValueError):
    """A file cannot be added; the message names it and says why."""


@dataclass(frozen=True)
class NewDocument:
    doc_id: str
    file: str
    text: str
    entry: dict


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / 2**20:.1f} MiB)"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:100]


def _decode_text(path: Path, data: bytes) -> str:
    if b"\x00" in data:
        raise IngestError(f"{path.name}: looks like a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path.name}: is not UTF-8 text (byte {exc.start}); "
                          "save it as UTF-8 and try again") from None


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise IngestError(f"{path.name}: the PDF is encrypted; remove the password and try again")
        if len(reader.pages) == 0:
            raise IngestError(f"{path.name}: the PDF has no pages")
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except IngestError:
        raise
    except LimitReachedError:
        raise IngestError(f"{path.name}: the PDF would decompress to more than pypdf's safety limit "
                          "(a decompression bomb, or a huge scan); it was not read") from None
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError,
            RecursionError) as exc:
        raise IngestError(f"{path.name}: unreadable or corrupt PDF ({exc.__class__.__name__})") from None


def _html_text(path: Path, data: bytes) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode_text(path, data), "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    blocks = [b.get_text(" ", strip=True) for b in soup.find_all(["h1", "h2", "h3", "h4", "p", "li"])]
    text = "\n\n".join(b for b in blocks if b) or soup.get_text("\n", strip=True)
    return text, title


def read_document(path: Path, max_bytes: int) -> tuple[str, str, str]:
    """(text, suggested title, stored suffix) of a file to add, or IngestError."""
    if path.is_symlink():
        raise IngestError(f"{path}: is a symbolic link; pass the file it points to")
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise IngestError(f"{path.name}: unsupported type '{suffix}'; use one of {', '.join(SUPPORTED)}")
    size = path.stat().st_size
    if size > max_bytes:
        raise IngestError(f"{path.name}: {_size(size)} is over the {_size(max_bytes)} limit")
    data = path.read_bytes()
    title = ""
    if suffix == ".pdf":
        text, stored = _pdf_text(path), ".md"
    elif suffix in (".html", ".htm"):
        (text, title), stored = _html_text(path, data), ".md"
    else:
        text, stored = _decode_text(path, data), suffix
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in _TEXT_CONTROLS)
    if controls > _MAX_CONTROL_SHARE * len(text):
        raise IngestError(f"{path.name}: {controls:,} of its {len(text):,} characters are control "
                          "characters; it is not a text document")
    if not re.search(r"[^\W_]", text):
        raise IngestError(f"{path.name}: contains no text")
    if stored == ".md" and suffix != ".md":
        text = text.strip() + "\n"
    first = next((line.strip("# ").strip() for line in text.splitlines() if line.strip()), "")
    suggested = " ".join((title or first).split())[:200]  # tabs or line breaks in a title are spaces
    suggested = "".join(ch for ch in suggested if unicodedata.category(ch) != "Cc")
    return text, suggested or path.stem, stored


def prepare(paths: list[Path], corpus: Corpus, settings: Settings, title: str | None = None,
            short_title: str | None = None, kind: str | None = None, year: int | None = None,
            doc_id: str | None = None) -> list[NewDocument]:
    """Validate every file and its metadata before anything is written."""
    if doc_id is not None and len(paths) != 1:
        raise IngestError("--id can only be given with a single file")
    # Every id the manifest holds, including documents left out for bad metadata.
    existing = {str(e.get("doc_id")) for e in read_manifest(corpus.directory) if isinstance(e, dict)}
    hashes = {sha256_file(corpus.path(d)): d.doc_id for d in corpus.documents}
    new: list[NewDocument] = []
    for path in paths:
        path = Path(path)
        text, found_title, stored = read_document(path, settings.max_add_bytes)
        ident = doc_id if doc_id is not None else _slug(path.stem)
        if not isinstance(ident, str) or not ID_PATTERN.fullmatch(ident):
            raise IngestError(f"{path.name}: {ident!r} is not a valid document id "
                              "(lower-case letters, digits and hyphens only)")
        if ident in existing or any(n.doc_id == ident for n in new):
            raise IngestError(f"{path.name}: a document with id '{ident}' is already in the corpus")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in hashes:
            raise IngestError(f"{path.name}: same content as '{hashes[digest]}' already in the corpus")
        full_title = title or found_title
        entry = {
            "doc_id": ident, "file": ident + stored, "title": full_title,
            "short_title": short_title or (full_title if len(full_title) <= 60 else full_title[:57] + "..."),
            "year": year if year is not None else dt.date.today().year,
            "kind": kind or "document",
            "source": f"added locally from {path.name}",
            "completeness": "as supplied by the user",
            "licence_note": "not stated (added locally)",
        }
        problem = metadata_problem(DocumentInfo(**entry))
        if problem:
            raise IngestError(f"{path.name}: {problem}")
        new.append(NewDocument(ident, ident + stored, text, entry))
    return new


def add_documents(paths: list[Path], settings: Settings, rebuild: Callable[[Settings], object],
                  **metadata) -> list[str]:
    """Add files to the corpus and rebuild the index; on any failure or interruption the corpus
    is left as it was.

    ``rebuild`` receives settings whose ``corpus_dir`` is the staged corpus (the current
    documents plus the new ones) and builds the index for it, before anything is committed.
    """
    directory = settings.corpus_dir
    with corpus_lock(directory):
        recover(directory)
        corpus = load_corpus(directory)
        new = prepare(paths, corpus, settings, **metadata)
        entries = read_manifest(directory) + [d.entry for d in new]
        try:
            staging = stage(directory, manifest_bytes(entries), {d.file: d.text for d in new})
        except PermissionError as exc:
            raise IngestError(f"cannot write to the corpus folder {directory} ({exc.strerror}); "
                              "make it writable and try again") from None
        try:
            rebuild(settings.model_copy(update={"corpus_dir": staging}))
            commit(directory, staging, [d.file for d in new])
        except BaseException:
            discard(directory, staging)
            raise
    log.info("added %s", ", ".join(d.doc_id for d in new))
    return [d.doc_id for d in new]
