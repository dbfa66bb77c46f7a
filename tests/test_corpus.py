"""The corpus manifest: complete provenance for every shipped document, validated against disk."""

from __future__ import annotations

import json
import re

import pytest
from conftest import CORPUS_DIR

from rag.corpus import MANIFEST_NAME, CorpusError, dated_name, load_corpus, read_manifest

SHIPPED_DOCS = 11
REQUIRED_FIELDS = ("doc_id", "title", "short_title", "year", "kind", "source", "licence_note")


def _manifest(settings) -> dict:
    return json.loads((settings.corpus_dir / MANIFEST_NAME).read_text(encoding="utf-8"))


def _write(settings, data: dict) -> None:
    (settings.corpus_dir / MANIFEST_NAME).write_text(json.dumps(data, indent=2), encoding="utf-8")


# -- the shipped manifest --------------------------------------------------------------
def test_shipped_corpus_loads_with_all_documents():
    corpus = load_corpus(CORPUS_DIR)
    assert len(corpus.documents) == SHIPPED_DOCS
    files = sorted(p.name for p in CORPUS_DIR.iterdir() if p.suffix in (".md", ".txt"))
    assert sorted(d.file for d in corpus.documents) == files


@pytest.mark.parametrize("entry", read_manifest(CORPUS_DIR), ids=lambda e: e.get("doc_id", "?"))
def test_manifest_entry_has_complete_provenance(entry):
    for field in REQUIRED_FIELDS:
        assert field in entry, f"{entry.get('file')}: missing {field}"
        if field != "year":
            assert isinstance(entry[field], str) and entry[field].strip(), f"{entry['file']}: empty {field}"
    assert isinstance(entry["year"], int) and 1957 <= entry["year"] <= 2030
    # Ids are file stems and carry the document's year (outer-space-treaty-1967).
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", entry["doc_id"])
    assert entry["file"].rsplit(".", 1)[0] == entry["doc_id"]
    assert str(entry["year"]) in entry["doc_id"].split("-")
    assert entry["kind"] in {"treaty", "resolution", "guidelines", "statement"}
    assert len(entry["short_title"]) <= len(entry["title"])


def test_shipped_doc_ids_unique():
    ids = [e["doc_id"] for e in read_manifest(CORPUS_DIR)]
    assert len(ids) == len(set(ids)) == SHIPPED_DOCS


# -- violations: each raises CorpusError naming the file -------------------------------
def test_unlisted_file_is_detected(scratch_corpus):
    (scratch_corpus.corpus_dir / "stray-notes.md").write_text("# Notes\n\nSome text.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"stray-notes\.md.*not listed"):
        load_corpus(scratch_corpus.corpus_dir)


def test_unlisted_txt_file_is_detected(scratch_corpus):
    (scratch_corpus.corpus_dir / "extra.txt").write_text("Some text.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"extra\.txt"):
        load_corpus(scratch_corpus.corpus_dir)


def test_every_file_must_be_listed(scratch_corpus):
    data = _manifest(scratch_corpus)
    data["documents"] = [d for d in data["documents"] if d["doc_id"] != "moon-agreement-1979"]
    _write(scratch_corpus, data)
    with pytest.raises(CorpusError, match=r"moon-agreement-1979\.md"):
        load_corpus(scratch_corpus.corpus_dir)


def test_every_listed_file_must_exist(scratch_corpus):
    (scratch_corpus.corpus_dir / "rescue-agreement-1968.md").unlink()
    with pytest.raises(CorpusError, match=r"rescue-agreement-1968\.md.*missing"):
        load_corpus(scratch_corpus.corpus_dir)


def test_duplicate_doc_id_is_rejected(scratch_corpus):
    data = _manifest(scratch_corpus)
    dup = next(d for d in data["documents"] if d["doc_id"] == "liability-convention-1972")
    data["documents"].append(dict(dup))
    _write(scratch_corpus, data)
    with pytest.raises(CorpusError, match=r"liability-convention-1972\.md.*duplicate"):
        load_corpus(scratch_corpus.corpus_dir)


def test_doc_id_must_match_file_stem(scratch_corpus):
    data = _manifest(scratch_corpus)
    data["documents"][0]["doc_id"] = "something-else"
    name = data["documents"][0]["file"]
    _write(scratch_corpus, data)
    with pytest.raises(CorpusError, match=re.escape(name)):
        load_corpus(scratch_corpus.corpus_dir)


def test_incomplete_entry_names_the_file(scratch_corpus):
    data = _manifest(scratch_corpus)
    entry = next(d for d in data["documents"] if d["doc_id"] == "registration-convention-1975")
    del entry["licence_note"]
    _write(scratch_corpus, data)
    with pytest.raises(CorpusError, match=r"registration-convention-1975\.md.*incomplete"):
        load_corpus(scratch_corpus.corpus_dir)


def test_invalid_json_manifest_names_the_manifest(scratch_corpus):
    (scratch_corpus.corpus_dir / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"manifest\.json"):
        load_corpus(scratch_corpus.corpus_dir)


def test_missing_manifest_names_the_manifest(scratch_corpus):
    (scratch_corpus.corpus_dir / MANIFEST_NAME).unlink()
    with pytest.raises(CorpusError, match=r"manifest\.json.*not found"):
        load_corpus(scratch_corpus.corpus_dir)


def test_non_object_manifest_entry_is_a_corpus_error(scratch_corpus):
    data = _manifest(scratch_corpus)
    data["documents"].append("stray-entry.md")
    _write(scratch_corpus, data)
    with pytest.raises(CorpusError, match="manifest"):
        load_corpus(scratch_corpus.corpus_dir)


def test_corpus_errors_are_value_errors():
    # The CLI turns ValueError into "error: ..." with exit code 2 (bad input, not a crash).
    assert issubclass(CorpusError, ValueError)


def test_a_document_is_named_with_its_year_once():
    assert dated_name("Outer Space Treaty", 1967) == "Outer Space Treaty (1967)"
    assert dated_name("CSpO 2024 Florence joint statement", 2024) == "CSpO 2024 Florence joint statement"
    assert dated_name("Annual report 20245", 2024) == "Annual report 20245 (2024)"  # a year, not a digit run
