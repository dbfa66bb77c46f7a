"""Adding documents to the corpus: validate everything first, then change corpus, manifest
and index together, rolling back if the rebuild fails."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from rag.corpus import Corpus, load_corpus, read_manifest, sha256_file, write_manifest
from rag.settings import Settings

log = logging.getLogger(__name__)

SUPPORTED = (".md", ".txt", ".pdf", ".html", ".htm")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


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
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise IngestError(f"{path.name}: the PDF is encrypted; remove the password and try again")
        if len(reader.pages) == 0:
            raise IngestError(f"{path.name}: the PDF has no pages")
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError) as exc:
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
    if not text.strip():
        raise IngestError(f"{path.name}: contains no text")
    if stored == ".md" and suffix != ".md":
        text = text.strip() + "\n"
    first = next((line.strip("# ").strip() for line in text.splitlines() if line.strip()), "")
    return text, title or first[:200] or path.stem, stored


def prepare(paths: list[Path], corpus: Corpus, settings: Settings, title: str | None = None,
            short_title: str | None = None, kind: str | None = None, year: int | None = None,
            doc_id: str | None = None) -> list[NewDocument]:
    """Validate every file before anything is written."""
    if doc_id is not None and len(paths) != 1:
        raise IngestError("--id can only be given with a single file")
    existing = {d.doc_id for d in corpus.documents}
    hashes = {sha256_file(corpus.path(d)): d.doc_id for d in corpus.documents}
    new: list[NewDocument] = []
    for path in paths:
        path = Path(path)
        text, found_title, stored = read_document(path, settings.max_add_bytes)
        ident = doc_id if doc_id is not None else _slug(path.stem)
        if not _ID.match(ident or "") or ".." in ident:
            raise IngestError(f"{path.name}: '{ident}' is not a valid document id "
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
            "year": int(year) if year is not None else dt.date.today().year,
            "kind": kind or "document",
            "source": f"added locally from {path.name}",
            "completeness": "as supplied by the user",
            "licence_note": "not stated (added locally)",
        }
        new.append(NewDocument(ident, ident + stored, text, entry))
    return new


def add_documents(paths: list[Path], settings: Settings, rebuild, **metadata) -> list[str]:
    """Add files to the corpus and rebuild; on any failure the corpus is left as it was."""
    corpus = load_corpus(settings.corpus_dir)
    new = prepare(paths, corpus, settings, **metadata)
    directory = settings.corpus_dir
    manifest_path = directory / "manifest.json"
    old_manifest = manifest_path.read_bytes()
    written: list[Path] = []
    try:
        for doc in new:
            target = directory / doc.file
            tmp = target.with_name(f".{doc.file}.tmp")
            tmp.write_text(doc.text, encoding="utf-8")
            tmp.replace(target)
            written.append(target)
        write_manifest(directory, read_manifest(directory) + [d.entry for d in new])
        rebuild()
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        tmp = manifest_path.with_suffix(".json.restore")
        tmp.write_bytes(old_manifest)
        tmp.replace(manifest_path)
        raise
    log.info("added %s", ", ".join(d.doc_id for d in new))
    return [d.doc_id for d in new]
