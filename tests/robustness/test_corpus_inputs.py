"""What ``spacesec add`` and a hand-edited corpus manifest may put into the corpus: metadata
is validated at the boundary (year range, kind and title length and characters, ids checked
whole), a document whose manifest entry is bad is left out with a message while the rest is
served, a corpus file must lie inside the corpus folder, and a common-word title never acts
as a document name."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import ROOT, FakeEmbedder, tree_hashes

from rag import cli
from rag.corpus import MANIFEST_NAME, load_corpus
from rag.engine import Engine
from rag.index_store import build_index
from rag.ingest import IngestError, add_documents

NOTE = "Remember to water the plants on Friday and to buy more coffee filters.\n"


@pytest.fixture
def note(tmp_path) -> Path:
    path = tmp_path / "note.txt"
    path.write_text(NOTE, encoding="utf-8")
    return path


def rebuild_with(settings):
    embedder = FakeEmbedder()
    return lambda staged=settings: build_index(staged, embedder)


def _add_cli(settings, path: Path, *options: str) -> tuple[int, str]:
    return cli.main(["--corpus-dir", str(settings.corpus_dir), "--index-dir", str(settings.index_dir),
                     "add", str(path), "--quiet", *options]), ""


def _edit_manifest(settings, doc_id: str, **changes) -> None:
    path = settings.corpus_dir / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    entry = next(e for e in data["documents"] if e["doc_id"] == doc_id)
    entry.update(changes)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _add_unchecked(settings, doc_id: str, text: str, **fields) -> None:
    """What an older ``add`` without checks could have written: a file and its entry."""
    (settings.corpus_dir / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    path = settings.corpus_dir / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    data["documents"].append({"doc_id": doc_id, "file": f"{doc_id}.txt", "title": "A note", "short_title": "Note",
                              "year": 2024, "kind": "document", "source": "local", "licence_note": "none"} | fields)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


# -- metadata checked at the boundary -----------------------------------------------------
BAD_METADATA = {
    "year over int64": ({"year": 9223372036854775808}, "year"),
    "year zero": ({"year": 0}, "year"),
    "year negative": ({"year": -44}, "year"),
    "year far future": ({"year": 30000}, "year"),
    "id with newline": ({"doc_id": "abc\n"}, "not a valid document id"),
    "id with trailing newline and dash": ({"doc_id": "abc-\n"}, "not a valid document id"),
    "title with newline": ({"title": "Space\nInjected: heading"}, "title"),
    "title with escape": ({"title": "Space \x1b[31m red"}, "title"),
    "title too long": ({"title": "T" * 501}, "title"),
    "short title too long": ({"short_title": "S" * 121}, "short title"),
    "kind with newline": ({"kind": "treaty\nfake"}, "kind"),
    "kind too long": ({"kind": "k" * 41}, "kind"),
    "kind with markup": ({"kind": "<b>treaty</b>"}, "kind"),
}


@pytest.mark.parametrize("name", list(BAD_METADATA))
def test_add_refuses_bad_metadata_and_changes_nothing(workspace, note, name):
    metadata, words = BAD_METADATA[name]
    before = {"corpus": tree_hashes(workspace.corpus_dir), "index": tree_hashes(workspace.index_dir)}
    with pytest.raises(IngestError) as info:
        add_documents([note], workspace, rebuild=rebuild_with(workspace), **metadata)
    assert "note.txt" in str(info.value) and words in str(info.value), str(info.value)
    assert {"corpus": tree_hashes(workspace.corpus_dir), "index": tree_hashes(workspace.index_dir)} == before


def test_cli_add_with_a_huge_year_exits_2_and_every_command_still_works(workspace, note, capsys, monkeypatch):
    monkeypatch.setattr("rag.embedding.Embedder", lambda name, batch_size=32: FakeEmbedder())
    code = cli.main(["--corpus-dir", str(workspace.corpus_dir), "--index-dir", str(workspace.index_dir),
                     "add", str(note), "--year", "9223372036854775808", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "year" in err and "Traceback" not in err, err
    engine = Engine.load(workspace, embedder=FakeEmbedder())
    assert engine.retrieve("nuclear weapons in orbit", k=2)


# -- a bad manifest entry leaves out its document, not the corpus ---------------------------
BAD_ENTRIES = {
    "year over int64": ({"year": 9223372036854775808}, "year"),
    "year as text": ({"year": "2024"}, "year"),
    "year as bool": ({"year": True}, "year"),
    "title not text": ({"title": 123}, "title"),
    "kind with control characters": ({"kind": "note\x00"}, "kind"),
}


@pytest.mark.parametrize("name", list(BAD_ENTRIES))
def test_a_document_with_bad_metadata_is_left_out_and_the_rest_is_served(workspace, caplog, name):
    fields, words = BAD_ENTRIES[name]
    _add_unchecked(workspace, "bad-note", NOTE, **fields)
    with caplog.at_level(logging.WARNING, logger="rag.corpus"):
        corpus = load_corpus(workspace.corpus_dir)
        engine = Engine.load(workspace, embedder=FakeEmbedder())
    assert "bad-note" not in {d.doc_id for d in corpus.documents}
    assert len(corpus.documents) == 11
    assert any("bad-note.txt" in r and words in r for r in corpus.rejected), corpus.rejected
    assert any("bad-note.txt" in m and "left out" in m for m in caplog.messages), caplog.messages
    assert engine.retrieve("nuclear weapons in orbit", k=3)
    assert engine.ask("What does the Outer Space Treaty say about nuclear weapons?").citations


def test_cli_retrieve_works_with_one_bad_document(workspace, capsys, monkeypatch):
    monkeypatch.setattr("rag.engine.Embedder", lambda name, batch_size=32: FakeEmbedder())
    _add_unchecked(workspace, "bad-note", NOTE, year=9223372036854775808)
    code = cli.main(["--corpus-dir", str(workspace.corpus_dir), "--index-dir", str(workspace.index_dir),
                     "retrieve", "nuclear weapons in orbit", "--k", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Outer Space Treaty" in out


def test_adding_over_a_left_out_document_id_is_still_refused(workspace, note):
    _add_unchecked(workspace, "note", NOTE.upper(), year=9223372036854775808)
    with pytest.raises(IngestError, match="already in the corpus"):
        add_documents([note], workspace, rebuild=rebuild_with(workspace))


# -- corpus files lie inside the corpus folder ----------------------------------------------
def test_manifest_entries_pointing_outside_the_corpus_are_left_out(workspace, tmp_path, capsys, monkeypatch):
    secret = tmp_path / "secret.md"
    secret.write_text("root:x:0:0:root:/root:/bin/bash zorblax\n", encoding="utf-8")
    (tmp_path / "outside.md").write_text("outside text zorblax\n", encoding="utf-8")
    (workspace.corpus_dir / "linked.md").symlink_to(secret)
    path = workspace.corpus_dir / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    common = {"title": "T", "short_title": "T", "year": 2024, "kind": "document", "source": "s", "licence_note": "l"}
    data["documents"] += [{"doc_id": "secret", "file": str(secret)} | common,
                          {"doc_id": "outside", "file": "../outside.md"} | common,
                          {"doc_id": "linked", "file": "linked.md"} | common]
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")

    corpus = load_corpus(workspace.corpus_dir)
    assert {"secret", "outside", "linked"}.isdisjoint(d.doc_id for d in corpus.documents)
    assert len(corpus.rejected) == 3 and all("inside" in r for r in corpus.rejected), corpus.rejected
    monkeypatch.setattr("rag.engine.Embedder", lambda name, batch_size=32: FakeEmbedder())
    code = cli.main(["--corpus-dir", str(workspace.corpus_dir), "--index-dir", str(workspace.index_dir),
                     "retrieve", "root zorblax", "--doc", "secret"])
    out, err = capsys.readouterr()
    assert code == 2 and "Unknown document 'secret'" in err, out + err
    engine = Engine.load(workspace, embedder=FakeEmbedder())
    assert not any("root:x:0:0" in c.text or "outside text" in c.text for c in engine.index.chunks)


# -- files that are not documents -------------------------------------------------------------
def _pdf_bomb(path: Path) -> Path:
    """A one-page PDF with text whose content stream inflates from ~100 KB to 100 MB."""
    from fpdf import FPDF
    from pypdf import PdfWriter
    from pypdf.generic import NameObject, StreamObject

    plain = FPDF()
    plain.add_page()
    plain.set_font("Helvetica", size=12)
    plain.cell(0, 8, "Zorblax")
    plain.output(str(path))
    writer = PdfWriter(clone_from=str(path))
    page = writer.pages[0]
    stream = StreamObject()
    stream.set_data(zlib.compress(page.get_contents().get_data() + b" " * 100_000_000, 9))
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(stream)
    writer.write(str(path))
    return path


def test_a_pdf_decompression_bomb_is_refused_as_such(workspace, tmp_path):
    path = _pdf_bomb(tmp_path / "bomb.pdf")
    assert path.stat().st_size < 1_000_000
    before = tree_hashes(workspace.corpus_dir)
    with pytest.raises(IngestError) as info:
        add_documents([path], workspace, rebuild=rebuild_with(workspace))
    assert "bomb.pdf" in str(info.value) and "decompress" in str(info.value), str(info.value)
    assert tree_hashes(workspace.corpus_dir) == before


@pytest.mark.parametrize("content", [
    "".join(chr(c) for c in range(1, 32) if chr(c) not in "\n\r\t") * 40,
    ("\x01\x02\x03\x04 \x05\x06\x07\x08\n" * 300),
    "\x1b[2J\x1b[31m" * 500 + "ok",
])
def test_a_file_of_control_characters_is_refused(workspace, tmp_path, content):
    path = tmp_path / "controls.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(IngestError, match=r"controls\.txt.*(control characters|no text)"):
        add_documents([path], workspace, rebuild=rebuild_with(workspace))


def test_text_with_a_few_form_feeds_and_tabs_is_accepted(workspace, tmp_path):
    path = tmp_path / "paged.txt"
    path.write_text("Zorblax page one.\tTabbed.\n\x0c\nZorblax page two of the accord.\n", encoding="utf-8")
    assert add_documents([path], workspace, rebuild=rebuild_with(workspace)) == ["paged"]


def test_a_title_found_in_the_file_is_tidied_not_refused(workspace, tmp_path):
    path = tmp_path / "long-title.html"
    path.write_text("<html><head><title>" + "Zorblax\n\tAccord " * 300 + "</title></head>"
                    "<body><p>The Zorblax Accord on lighthouse beacons.</p></body></html>", encoding="utf-8")
    assert add_documents([path], workspace, rebuild=rebuild_with(workspace)) == ["long-title"]
    doc = load_corpus(workspace.corpus_dir).get("long-title")
    assert doc.title.startswith("Zorblax Accord Zorblax") and len(doc.title) <= 200 and "\n" not in doc.title


_ADD_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
import rag.embedding, rag.index_store
rag.embedding.Embedder = lambda name, batch_size=32: FakeEmbedder()
from rag import cli
sys.exit(cli.main(["--corpus-dir", {corpus!r}, "--index-dir", {index!r}, "add", {path!r}, "--quiet"]))
"""


def test_adding_to_a_read_only_corpus_names_the_real_cause(workspace, note):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv can write a read-only folder")
    prefix = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
               "-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else [])
    corpus = workspace.corpus_dir
    before = tree_hashes(corpus)
    os.chmod(corpus, 0o555)
    try:
        script = _ADD_SCRIPT.format(tests=str(ROOT / "tests"), corpus=str(corpus),
                                    index=str(workspace.index_dir), path=str(note))
        result = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True, text=True,
                                timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.chmod(corpus, 0o755)
    assert result.returncode != 0, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert str(corpus) in errors[0] and "writable" in errors[0], errors[0]
    assert ".restore" not in result.stderr and "Traceback" not in result.stderr
    assert tree_hashes(corpus) == before


# -- titles that are common words ---------------------------------------------------------------
UNRELATED_QUESTIONS = [
    "What does the Outer Space Treaty say about nuclear weapons in orbit?",
    "Who is liable for damage caused by a space object on the surface of the Earth?",
    "What must a launching State register about its space objects?",
    "Can a state claim sovereignty over outer space?",
    "What do the space debris mitigation guidelines say about collisions in space?",
    "How should space weather data be shared?",
    "What did the United States commit to about destructive anti-satellite missile tests in space?",
]


@pytest.mark.parametrize("title", ["space", "Space", "outer", "2024"])
def test_a_common_word_title_does_not_become_a_document_cue(workspace, tmp_path, title):
    before = Engine.load(workspace, embedder=FakeEmbedder())
    expected = [before.catalogue.cues(q) for q in UNRELATED_QUESTIONS]
    path = tmp_path / "plants.txt"
    path.write_text(NOTE, encoding="utf-8")
    add_documents([path], workspace, rebuild=rebuild_with(workspace), title=title)
    after = Engine.load(workspace, embedder=FakeEmbedder())
    assert [after.catalogue.cues(q) for q in UNRELATED_QUESTIONS] == expected
    for question in UNRELATED_QUESTIONS:
        assert "plants" not in {d.metadata["doc_id"] for d in after.retrieve(question, k=5)}, question
        assert after.catalogue.without_names(question) == before.catalogue.without_names(question)


def test_distinctive_names_and_acronyms_still_name_their_documents(workspace, tmp_path):
    path = tmp_path / "zorblax.txt"
    path.write_text("The Zorblax Accord on lighthouse beacons.\n", encoding="utf-8")
    add_documents([path], workspace, rebuild=rebuild_with(workspace), title="Zorblax Accord")
    engine = Engine.load(workspace, embedder=FakeEmbedder())
    assert engine.catalogue.cues("What does the Zorblax Accord say?").doc_ids == ("zorblax",)
    assert engine.catalogue.cues("What does the OST say about the Moon?").doc_ids == ("outer-space-treaty-1967",)
    assert engine.catalogue.cues("What do the LTS guidelines say?").doc_ids == (
        "copuos-long-term-sustainability-guidelines-2019",)
