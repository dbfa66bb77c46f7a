"""The corpus catalogue: the manifest of documents, validated against the files on disk."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from rag.corpus_writes import MANIFEST_NAME, TEXT_SUFFIXES, recover_if_idle
from rag.verified_files import sha256_file

log = logging.getLogger(__name__)

#: What manifest fields may hold. Checked when a document is added and whenever the corpus
#: loads, whole-string (``fullmatch``: "abc\n" is not an id), so a bad value from a hand edit
#: or an older version leaves out its document instead of breaking every command.
YEARS = range(1900, 2101)
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
_FILE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,99}\.(?:md|txt)")
_KIND_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,39}")
_TEXT_LIMITS = {"title": 500, "short_title": 120, "source": 1000, "licence_note": 1000,
                "completeness": 1000, "numbered_as": 40}


class CorpusError(ValueError):
    """The corpus or its manifest is inconsistent; the message names the file."""


@dataclass(frozen=True)
class DocumentInfo:
    """One corpus document and its provenance, as listed in the manifest."""

    doc_id: str
    file: str
    title: str
    short_title: str
    year: int
    kind: str
    source: str
    licence_note: str
    completeness: str = ""
    #: How the document's bare numbered paragraphs are called ("Paragraph", "Principle").
    numbered_as: str = "Paragraph"

    @property
    def citation_name(self) -> str:
        return dated_name(self.short_title, self.year)


def dated_name(short_title: str, year: int) -> str:
    """A document's name in citations: its short title and year, the year once ("Outer Space
    Treaty (1967)", but "CSpO 2024 Florence joint statement")."""
    return short_title if re.search(rf"\b{year}\b", short_title) else f"{short_title} ({year})"


@dataclass(frozen=True)
class Corpus:
    """The validated manifest plus the directory its files live in."""

    directory: Path
    documents: tuple[DocumentInfo, ...]
    #: Why each document left out of ``documents`` was left out ("FILE: reason ...").
    rejected: tuple[str, ...] = ()

    def path(self, doc: DocumentInfo) -> Path:
        return self.directory / doc.file

    def text(self, doc: DocumentInfo) -> str:
        return self.path(doc).read_text(encoding="utf-8")

    def get(self, doc_id: str) -> DocumentInfo:
        for doc in self.documents:
            if doc.doc_id == doc_id:
                return doc
        raise KeyError(doc_id)

    def checksums(self) -> dict[str, str]:
        """sha256 of every document's bytes, by doc_id."""
        return {d.doc_id: sha256_file(self.path(d)) for d in self.documents}


def read_manifest(directory: Path) -> list[dict]:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise CorpusError(f"{path}: corpus manifest not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return list(data["documents"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: not a valid manifest ({exc})") from exc


def manifest_bytes(entries: list[dict]) -> bytes:
    """The manifest file's content for ``entries``."""
    payload = {"version": 1, "documents": sorted(entries, key=lambda e: e["doc_id"])}
    return (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_manifest(directory: Path, entries: list[dict]) -> None:
    """Write the manifest atomically (a crash leaves the old one in place)."""
    path = directory / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(manifest_bytes(entries))
    tmp.replace(path)


def metadata_problem(doc: DocumentInfo) -> str | None:
    """What is wrong with a document's manifest fields, as a phrase, or None."""
    if not isinstance(doc.doc_id, str) or not ID_PATTERN.fullmatch(doc.doc_id):
        return (f"{doc.doc_id!r} is not a valid document id "
                "(lower-case letters, digits and hyphens only, at most 100)")
    if not isinstance(doc.file, str) or not _FILE_PATTERN.fullmatch(doc.file):
        return f"{doc.file!r} is not the name of a .md or .txt file inside the corpus folder"
    if isinstance(doc.year, bool) or not isinstance(doc.year, int) or doc.year not in YEARS:
        return f"year {doc.year!r} is not a year from {YEARS.start} to {YEARS.stop - 1}"
    if not isinstance(doc.kind, str) or not _KIND_PATTERN.fullmatch(doc.kind):
        return (f"kind {doc.kind!r} must be 1 to 40 letters, digits, spaces or hyphens "
                "(such as 'treaty')")
    for name, limit in _TEXT_LIMITS.items():
        value = getattr(doc, name)
        label = name.replace("_", " ")
        if not isinstance(value, str) or (name in ("title", "short_title") and not value.strip()):
            return f"the {label} must be non-empty text"
        if len(value) > limit:
            return f"the {label} is {len(value):,} characters long (at most {limit:,})"
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            return f"the {label} contains control characters (line breaks, escapes)"
    return None


def _outside(directory: Path, doc: DocumentInfo) -> str | None:
    """A file name that resolves (through a symbolic link) outside the corpus folder."""
    if (directory / doc.file).resolve().parent != directory.resolve():
        return f"{doc.file!r} leads outside the corpus folder; corpus files must lie inside it"
    return None


def load_corpus(directory: Path) -> Corpus:
    """Read and validate the manifest: every file listed, every listed file present, ids unique.

    A document whose fields are bad (see ``metadata_problem``) or whose file lies outside the
    folder is left out with a warning, and the rest is served. An interrupted add is cleaned
    up first (see ``rag.corpus_writes``).
    """
    directory = Path(directory)
    pending = recover_if_idle(directory)
    entries = read_manifest(directory)
    fields = set(DocumentInfo.__dataclass_fields__)
    docs: list[DocumentInfo] = []
    rejected: list[str] = []
    listed: set[str] = set()
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise CorpusError(f"{directory / MANIFEST_NAME}: entry {entry!r} is not a document record")
        name = entry.get("file", "?")
        try:
            doc = DocumentInfo(**{k: v for k, v in entry.items() if k in fields})
        except TypeError as exc:
            raise CorpusError(f"{name}: manifest entry is incomplete ({exc})") from exc
        if isinstance(doc.doc_id, str) and doc.doc_id in seen:
            raise CorpusError(f"{name}: duplicate doc_id '{doc.doc_id}' in the manifest")
        seen.add(str(doc.doc_id))
        problem = metadata_problem(doc) or _outside(directory, doc)
        if problem:
            rejected.append(f"{name}: {problem}; the document is left out until its manifest entry is fixed")
            log.warning("%s", rejected[-1])
            listed.add(str(name))
            continue
        if Path(doc.file).stem != doc.doc_id:
            raise CorpusError(f"{name}: doc_id '{doc.doc_id}' must be the file stem")
        if not (directory / doc.file).is_file():
            raise CorpusError(f"{name}: listed in the manifest but missing from {directory}")
        listed.add(doc.file)
        docs.append(doc)
    for path in sorted(directory.iterdir()):
        if path.suffix in TEXT_SUFFIXES and path.name not in listed | pending:
            raise CorpusError(f"{path.name}: present in {directory} but not listed in the manifest")
    return Corpus(directory=directory, documents=tuple(sorted(docs, key=lambda d: d.doc_id)),
                  rejected=tuple(rejected))
