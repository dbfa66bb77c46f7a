"""The corpus catalogue: the manifest of documents, validated against the files on disk."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.json"
TEXT_SUFFIXES = (".md", ".txt")


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
        return f"{self.short_title} ({self.year})"


@dataclass(frozen=True)
class Corpus:
    """The validated manifest plus the directory its files live in."""

    directory: Path
    documents: tuple[DocumentInfo, ...]

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


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(directory: Path) -> list[dict]:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise CorpusError(f"{path}: corpus manifest not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return list(data["documents"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: not a valid manifest ({exc})") from exc


def write_manifest(directory: Path, entries: list[dict]) -> None:
    """Write the manifest atomically (a crash leaves the old one in place)."""
    path = directory / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    payload = {"version": 1, "documents": sorted(entries, key=lambda e: e["doc_id"])}
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_corpus(directory: Path) -> Corpus:
    """Read and validate the manifest: every file listed, every listed file present, ids unique."""
    directory = Path(directory)
    entries = read_manifest(directory)
    fields = set(DocumentInfo.__dataclass_fields__)
    docs: list[DocumentInfo] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise CorpusError(f"{directory / MANIFEST_NAME}: entry {entry!r} is not a document record")
        name = entry.get("file", "?")
        try:
            doc = DocumentInfo(**{k: v for k, v in entry.items() if k in fields})
        except TypeError as exc:
            raise CorpusError(f"{name}: manifest entry is incomplete ({exc})") from exc
        if doc.doc_id in seen:
            raise CorpusError(f"{name}: duplicate doc_id '{doc.doc_id}' in the manifest")
        if Path(doc.file).stem != doc.doc_id:
            raise CorpusError(f"{name}: doc_id '{doc.doc_id}' must be the file stem")
        if not (directory / doc.file).is_file():
            raise CorpusError(f"{name}: listed in the manifest but missing from {directory}")
        seen.add(doc.doc_id)
        docs.append(doc)
    listed = {d.file for d in docs}
    for path in sorted(directory.iterdir()):
        if path.suffix in TEXT_SUFFIXES and path.name not in listed:
            raise CorpusError(f"{path.name}: present in {directory} but not listed in the manifest")
    return Corpus(directory=directory, documents=tuple(sorted(docs, key=lambda d: d.doc_id)))
