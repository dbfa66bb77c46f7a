"""Adding documents: supported formats become retrievable; every bad file is refused untouched."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest
from conftest import FakeEmbedder, copy_corpus, copy_index, make_settings, tree_hashes
from fpdf import FPDF
from pypdf import PdfWriter

from rag import cli
from rag.corpus import load_corpus
from rag.engine import Engine
from rag.index_store import build_index, check_index, expected_identity
from rag.ingest import IngestError, add_documents

UNIQUE = "Zorblaxian lighthouse accord: quasar beacons shall remain lit for every passing probe."
QUERY = "zorblaxian quasar beacons lighthouse"


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A corpus copy with a fake-embedder index, copied afresh for every test."""
    base = tmp_path_factory.mktemp("ingest-template")
    settings = make_settings(copy_corpus(base / "corpus"), base / "index")
    build_index(settings, FakeEmbedder())
    return settings


@pytest.fixture
def workspace(template, tmp_path):
    corpus = tmp_path / "corpus"
    index = tmp_path / "index"
    shutil.copytree(template.corpus_dir, corpus)
    copy_index(template.index_dir, index)
    (tmp_path / "incoming").mkdir()
    return make_settings(corpus, index)


@pytest.fixture
def incoming(workspace) -> Path:
    return workspace.corpus_dir.parent / "incoming"


def snapshot(settings) -> dict:
    return {"corpus": tree_hashes(settings.corpus_dir), "index": tree_hashes(settings.index_dir)}


def make_pdf(path: Path, text: str = UNIQUE) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "Zorblaxian Lighthouse Accord", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def fake_rebuild(settings):
    embedder = FakeEmbedder()
    return lambda staged: build_index(staged, embedder)


# -- accepted formats ---------------------------------------------------------------------
def _write_md(p: Path) -> Path:
    p.write_text(f"# Zorblaxian Lighthouse Accord\n\n## Article 1\n\n{UNIQUE}\n", encoding="utf-8")
    return p


def _write_txt(p: Path) -> Path:
    p.write_text(f"Zorblaxian Lighthouse Accord\n\n{UNIQUE}\n", encoding="utf-8")
    return p


def _write_html(p: Path) -> Path:
    p.write_text("<html><head><title>Zorblaxian Lighthouse Accord</title><script>var x = 'secret';</script>"
                 f"</head><body><h1>Zorblaxian Lighthouse Accord</h1><p>{UNIQUE}</p></body></html>",
                 encoding="utf-8")
    return p


FORMATS = {
    "zorblax-accord.md": (_write_md, ".md"),
    "zorblax-accord.txt": (_write_txt, ".txt"),
    "zorblax-accord.html": (_write_html, ".md"),
    "zorblax-accord.pdf": (make_pdf, ".md"),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_add_document_makes_it_retrievable(workspace, incoming, name):
    writer, stored_suffix = FORMATS[name]
    path = writer(incoming / name)
    added = add_documents([path], workspace, rebuild=fake_rebuild(workspace), year=2031, kind="statement")
    assert added == ["zorblax-accord"]

    corpus = load_corpus(workspace.corpus_dir)  # the manifest still validates
    doc = corpus.get("zorblax-accord")
    assert doc.file == "zorblax-accord" + stored_suffix
    assert (doc.year, doc.kind) == (2031, "statement")
    assert doc.title == "Zorblaxian Lighthouse Accord"
    stored = corpus.text(doc)
    assert "quasar beacons shall remain lit" in stored
    assert "secret" not in stored  # scripts are dropped from HTML
    assert check_index(workspace.index_dir, expected_identity(corpus, workspace)) is None  # rebuilt

    engine = Engine.load(workspace, rebuild=False, embedder=FakeEmbedder())
    top = engine.retrieve(QUERY, k=3)[0]
    assert top.metadata["doc_id"] == "zorblax-accord"
    assert "quasar beacons" in top.page_content
    assert engine.retrieve(QUERY, k=1, doc_ids=["zorblax-accord"])[0].metadata["year"] == 2031


def test_add_with_explicit_metadata_and_id(workspace, incoming):
    path = _write_md(incoming / "Some File Name.md")
    added = add_documents([path], workspace, rebuild=fake_rebuild(workspace), title="The Accord",
                          short_title="Accord", doc_id="accord-2031", year=2031)
    assert added == ["accord-2031"]
    doc = load_corpus(workspace.corpus_dir).get("accord-2031")
    assert (doc.title, doc.short_title, doc.file) == ("The Accord", "Accord", "accord-2031.md")


@pytest.mark.slow
def test_cli_add_with_real_embedder(tmp_path, real_engine, real_embedder, monkeypatch, capsys):
    corpus = copy_corpus(tmp_path / "corpus")
    index = copy_index(real_engine.settings.index_dir, tmp_path / "index")
    path = _write_md(tmp_path / "zorblax-accord.md")
    # The command builds its own Embedder; hand it the already-loaded real one.
    monkeypatch.setattr("rag.embedding.Embedder", lambda name, batch_size=32: real_embedder)
    code = cli.main(["--corpus-dir", str(corpus), "--index-dir", str(index), "add", str(path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "zorblax-accord" in out and "index rebuilt" in out
    settings = make_settings(corpus, index)
    engine = Engine.load(settings, rebuild=False, embedder=real_embedder)
    assert engine.retrieve("lighthouse accord quasar beacons", k=3)[0].metadata["doc_id"] == "zorblax-accord"


def test_failed_rebuild_rolls_back(workspace, incoming):
    path = _write_md(incoming / "zorblax-accord.md")
    before = snapshot(workspace)

    def broken(staged):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        add_documents([path], workspace, rebuild=broken)
    assert snapshot(workspace) == before


def test_interrupted_rebuild_rolls_back(workspace, incoming):
    path = _write_md(incoming / "zorblax-accord.md")
    before = snapshot(workspace)

    def interrupted(staged):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        add_documents([path], workspace, rebuild=interrupted)
    assert snapshot(workspace) == before


# -- rejections -----------------------------------------------------------------------------
def _encrypted_pdf(p: Path) -> Path:
    plain = make_pdf(p.with_name("plain-for-encryption.pdf"))
    writer = PdfWriter(clone_from=str(plain))
    writer.encrypt("secret")
    writer.write(str(p))
    plain.unlink()
    return p


def _zero_page_pdf(p: Path) -> Path:
    PdfWriter().write(str(p))
    return p


def _blank_page_pdf(p: Path) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.output(str(p))
    return p


def _corrupt_pdf(p: Path) -> Path:
    p.write_bytes(random.Random(1234).randbytes(4096))
    return p


def _binary_txt(p: Path) -> Path:
    p.write_bytes(bytes(range(256)) * 8)
    return p


def _latin1_txt(p: Path) -> Path:
    p.write_bytes("Convention sur la responsabilit\u00e9 internationale, d\u00e9bris spatiaux.\n".encode("latin-1"))
    return p


def _empty(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _whitespace(p: Path) -> Path:
    p.write_text("  \n\n\t \n", encoding="utf-8")
    return p


def _big(p: Path) -> Path:
    p.write_text("Zorblaxian words. " * 200, encoding="utf-8")  # 3,600 bytes > the 1,000 limit
    return p


def _existing_name(p: Path) -> Path:
    p.write_text("# Not the treaty\n\nDifferent content entirely.\n", encoding="utf-8")
    return p


def _duplicate_content(p: Path) -> Path:
    from conftest import CORPUS_DIR

    p.write_bytes((CORPUS_DIR / "rescue-agreement-1968.md").read_bytes())
    return p


def _docx(p: Path) -> Path:
    p.write_bytes(b"PK\x03\x04 pretend word document")
    return p


# name -> (file name, writer, extra add_documents kwargs, words the message must contain)
REJECTIONS = {
    "empty": ("empty-file.md", _empty, {}, "no text"),
    "whitespace-only": ("blank-file.txt", _whitespace, {}, "no text"),
    "binary-as-txt": ("renamed-binary.txt", _binary_txt, {}, "binary"),
    "non-utf8": ("latin1-notes.txt", _latin1_txt, {}, "UTF-8"),
    "encrypted-pdf": ("locked.pdf", _encrypted_pdf, {}, "encrypted"),
    "corrupt-pdf": ("garbage.pdf", _corrupt_pdf, {}, "corrupt"),
    "zero-page-pdf": ("no-pages.pdf", _zero_page_pdf, {}, "no pages"),
    "blank-pdf": ("blank-scan.pdf", _blank_page_pdf, {}, "no text"),
    "too-big": ("huge-file.md", _big, {}, "limit"),
    "duplicate-id": ("outer-space-treaty-1967.md", _existing_name, {}, "already in the corpus"),
    "duplicate-id-option": ("fresh-name.md", _existing_name, {"doc_id": "moon-agreement-1979"},
                            "already in the corpus"),
    "duplicate-content": ("rescue-copy.md", _duplicate_content, {}, "same content"),
    "evil-id": ("innocent.md", _existing_name, {"doc_id": "../evil"}, "not a valid document id"),
    "unsupported-suffix": ("report.docx", _docx, {}, "unsupported"),
}


def _make_rejected(kind: str, incoming: Path) -> tuple[Path, dict, str]:
    name, writer, kwargs, words = REJECTIONS[kind]
    return writer(incoming / name), kwargs, words


@pytest.mark.parametrize("kind", list(REJECTIONS))
def test_add_rejects_bad_file_and_changes_nothing(workspace, incoming, kind):
    settings = workspace.model_copy(update={"max_add_bytes": 1000}) if kind == "too-big" else workspace
    path, kwargs, words = _make_rejected(kind, incoming)
    before = snapshot(settings)
    calls = []
    with pytest.raises(IngestError) as info:
        add_documents([path], settings, rebuild=lambda staged: calls.append(1), **kwargs)
    message = str(info.value)
    assert path.name in message
    assert words.lower() in message.lower()
    assert calls == []
    assert snapshot(settings) == before


def test_add_rejects_symlink_pointing_outside(workspace, incoming, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = _write_md(outside / "secret.md")
    link = incoming / "looks-harmless.md"
    link.symlink_to(target)
    before = snapshot(workspace)
    with pytest.raises(IngestError, match=r"looks-harmless\.md.*symbolic link"):
        add_documents([link], workspace, rebuild=fake_rebuild(workspace))
    assert snapshot(workspace) == before


def test_size_limit_is_checked_before_reading_and_stated_exactly(workspace, incoming):
    # A sparse file just over the default limit: st_size is large, no disk space is used.
    path = incoming / "just-too-big.md"
    with path.open("wb") as handle:
        handle.truncate(workspace.max_add_bytes + 1)
    before = snapshot(workspace)
    with pytest.raises(IngestError, match=r"just-too-big\.md.*limit") as info:
        add_documents([path], workspace, rebuild=fake_rebuild(workspace))
    assert snapshot(workspace) == before
    size, limit = (int(x.replace(",", "")) for x in re.findall(r"([\d,]+) bytes", str(info.value)))
    assert (size, limit) == (workspace.max_add_bytes + 1, workspace.max_add_bytes), str(info.value)


def test_one_bad_file_rejects_the_whole_batch(workspace, incoming):
    good = _write_md(incoming / "zorblax-accord.md")
    bad = _empty(incoming / "empty-file.md")
    before = snapshot(workspace)
    with pytest.raises(IngestError, match=r"empty-file\.md"):
        add_documents([good, bad], workspace, rebuild=fake_rebuild(workspace))
    assert snapshot(workspace) == before


def test_missing_file_is_rejected(workspace, incoming):
    before = snapshot(workspace)
    with pytest.raises(IngestError, match=r"not-there\.md"):
        add_documents([incoming / "not-there.md"], workspace, rebuild=fake_rebuild(workspace))
    assert snapshot(workspace) == before


@pytest.mark.parametrize("kind", list(REJECTIONS) + ["symlink"])
def test_cli_add_rejection_exits_2_and_changes_nothing(workspace, incoming, tmp_path, kind, monkeypatch, capsys):
    if kind == "too-big":
        monkeypatch.setenv("SPACESEC_MAX_ADD_BYTES", "1000")
    if kind == "symlink":
        (tmp_path / "outside").mkdir()
        path = incoming / "looks-harmless.md"
        path.symlink_to(_write_md(tmp_path / "outside" / "secret.md"))
        kwargs = {}
    else:
        path, kwargs, _ = _make_rejected(kind, incoming)
    argv = ["--corpus-dir", str(workspace.corpus_dir), "--index-dir", str(workspace.index_dir),
            "add", str(path), "--quiet"]
    if "doc_id" in kwargs:
        argv += ["--id", kwargs["doc_id"]]
    before = snapshot(workspace)
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and path.name in error_lines[0], err
    assert "Traceback" not in err
    assert snapshot(workspace) == before


def test_cli_add_success_with_fake_embedder(workspace, incoming, monkeypatch, capsys):
    monkeypatch.setattr("rag.embedding.Embedder", lambda name, batch_size=32: FakeEmbedder())
    path = _write_txt(incoming / "zorblax-accord.txt")
    code = cli.main(["--corpus-dir", str(workspace.corpus_dir), "--index-dir", str(workspace.index_dir),
                     "add", str(path), "--year", "2031", "--kind", "statement", "--quiet"])
    assert code == 0
    assert "Added 1 document(s): zorblax-accord" in capsys.readouterr().out
    manifest = json.loads((workspace.corpus_dir / "manifest.json").read_text(encoding="utf-8"))
    entry = next(e for e in manifest["documents"] if e["doc_id"] == "zorblax-accord")
    assert entry["year"] == 2031 and entry["file"] == "zorblax-accord.txt"
    assert Engine.load(workspace, rebuild=False, embedder=FakeEmbedder()).retrieve(QUERY, k=1)[0].metadata[
        "doc_id"] == "zorblax-accord"
