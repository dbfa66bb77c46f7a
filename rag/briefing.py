"""Onboarding briefings: a preset topic (or a list of questions) answered with citations,
rendered as Markdown, self-contained HTML or PDF."""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rag.citations import Answer, Citation
from rag.corpus import dated_name
from rag.excerpts import ExcerptFinder
from rag.validation import InvalidQuestion, clean_question

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
FORMATS = (".md", ".html", ".htm", ".pdf")
#: A briefing answers every question in turn (about 0.1 s each): past a few hundred it is
#: a batch job, not a briefing.
MAX_QUESTIONS = 200
_MARKER = re.compile(r"\[(\d+)\]")


def presets() -> dict[str, list[str]]:
    """Preset topics and their ordered questions (``rag/data/briefings.json``)."""
    return json.loads(resources.files("rag").joinpath("data/briefings.json").read_text(encoding="utf-8"))


def questions_for(topic_or_file: str, max_chars: int = 2000) -> tuple[str, list[str]]:
    """(title, questions) for a preset name (case-insensitive) or a file of questions, one a line.

    A file is checked whole before anything is answered: a question the engine would refuse
    is reported with its line number, and a file over ``MAX_QUESTIONS`` questions is refused.
    """
    for name, questions in presets().items():
        if name.lower() == topic_or_file.strip().lower():
            return name, questions
    path = Path(topic_or_file)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise ValueError(f"{path.name}: the question file is not UTF-8 text") from None
        questions = []
        for n, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    questions.append(clean_question(line, max_chars))
                except InvalidQuestion as exc:
                    raise ValueError(f"{path.name}, line {n}: {exc}") from None
        if not questions:
            raise ValueError(f"{path.name}: the question file has no questions")
        if len(questions) > MAX_QUESTIONS:
            raise ValueError(f"{path.name}: the file has {len(questions):,} questions; a briefing takes "
                             f"at most {MAX_QUESTIONS}, so split it into several files")
        return f"Briefing: {path.stem.replace('-', ' ').replace('_', ' ')}", questions
    names = "; ".join(presets())
    raise ValueError(f"'{topic_or_file}' is neither a preset topic nor a file. Presets: {names}")


@dataclass(frozen=True)
class Reference:
    """One cited document, listed once in the briefing's references."""

    n: int
    title: str
    year: int
    source: str
    licence_note: str

    @property
    def entry(self) -> str:
        return f"{self.title} ({self.year}). Source: {self.source}. Licence: {self.licence_note}."


@dataclass(frozen=True)
class Quote:
    """A quoted passage of a section: its document's reference and where in it ("art. IV(1)")."""

    reference: Reference
    citation: Citation
    where: str

    @property
    def marker(self) -> str:
        """"[1, art. IV(1)]": the document's reference number and the pinpoint."""
        return f"[{self.reference.n}, {self.where}]"


@dataclass
class Section:
    question: str
    answer: Answer
    text: str  # the answer text, its markers pointing to document and section
    quotes: list[Quote] = field(default_factory=list)


@dataclass
class Briefing:
    title: str
    date: str
    corpus_version: str
    sections: list[Section]
    references: list[Reference]

    @property
    def covered(self) -> list[Section]:
        return [s for s in self.sections if not s.answer.abstained]

    @property
    def not_covered(self) -> list[Section]:
        return [s for s in self.sections if s.answer.abstained]


def build_briefing(engine, title: str, questions: list[str], date: dt.date | None = None,
                   progress: Progress | None = None) -> Briefing:
    """Answer every question (extractively, so the same corpus gives the same briefing). Each
    cited document is one reference, numbered across the briefing; an answer's [n] markers
    become "[reference, section]"."""
    finder = ExcerptFinder(engine)
    chunks = {c.chunk_id: c for c in engine.index.chunks}
    references: dict[str, Reference] = {}
    sections: list[Section] = []
    for i, question in enumerate(questions, 1):
        if progress:
            progress(i - 1, len(questions), question)
        answer = engine.ask(question, mode="extractive")
        quotes: dict[int, Quote] = {}
        for c in answer.citations:
            if c.doc_id not in references:
                doc = engine.corpus.get(c.doc_id)
                references[c.doc_id] = Reference(len(references) + 1, doc.title, doc.year, doc.source,
                                                 doc.licence_note)
            quotes[c.n] = Quote(references[c.doc_id], c, finder.locate(chunks[c.chunk_id], c.quote_start))
        text = _MARKER.sub(lambda m, q=quotes: q[int(m.group(1))].marker if int(m.group(1)) in q
                           else m.group(0), answer.text)
        sections.append(Section(question, answer, text, list(quotes.values())))
    if progress:
        progress(len(questions), len(questions), "done")
    day = (date or dt.date.today()).isoformat()
    return Briefing(title, day, engine.index.fingerprint, sections, list(references.values()))


def _quote_line(q: Quote) -> str:
    return f"{q.marker} {dated_name(q.citation.short_title, q.citation.year)}, {q.where}: \u201c{q.citation.quote}\u201d"


# -- Markdown ----------------------------------------------------------------------------
def to_markdown(b: Briefing) -> str:
    lines = [f"# {b.title}", "", f"Date: {b.date}  ", f"Corpus version: `{b.corpus_version}`", "",
             "## Contents", ""]
    lines += [f"{i}. {s.question}" for i, s in enumerate(b.covered, 1)]
    if b.not_covered:
        lines.append(f"{len(b.covered) + 1}. Not covered by the corpus")
    lines.append("")
    for i, s in enumerate(b.covered, 1):
        lines += [f"## {i}. {s.question}", "", s.text, "", "Key quotes:", ""]
        lines += [f"> {_quote_line(q)}" + "\n>" for q in s.quotes]
        lines.append("")
    lines += ["## References", ""]
    lines += [f"[{r.n}] {r.entry}" for r in b.references]
    if b.not_covered:
        lines += ["", "## Not covered by the corpus", ""]
        lines += [f"- {s.question} ({s.answer.text.removeprefix('Not found in the corpus: ').split('. ')[0]})"
                  for s in b.not_covered]
    return "\n".join(lines).rstrip() + "\n"


# -- HTML --------------------------------------------------------------------------------
_HTML_CSS = """
body { font-family: Georgia, 'DejaVu Serif', serif; max-width: 46rem; margin: 2rem auto; line-height: 1.5; color: #111; }
h1 { font-size: 1.7rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
blockquote { margin: .5rem 0; padding: .3rem .8rem; border-left: 3px solid #888; background: #f6f6f6; overflow-wrap: anywhere; }
.meta { color: #555; } .refs li { margin-bottom: .4rem; overflow-wrap: anywhere; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } blockquote { break-inside: avoid; } }
"""


def to_html(b: Briefing) -> str:
    e = html.escape
    parts = [(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(b.title)}</title>"
              f"<style>{_HTML_CSS}</style></head><body>"),
             (f"<h1>{e(b.title)}</h1><p class='meta'>Date: {e(b.date)}<br>Corpus version: "
              f"<code>{e(b.corpus_version)}</code></p><h2>Contents</h2><ol>")]
    parts += [f"<li><a href='#q{i}'>{e(s.question)}</a></li>" for i, s in enumerate(b.covered, 1)]
    if b.not_covered:
        parts.append("<li><a href='#not-covered'>Not covered by the corpus</a></li>")
    parts.append("</ol>")
    for i, s in enumerate(b.covered, 1):
        text = re.sub(r"\[(\d+), ([^\]]+)\]", r"<a href='#ref\1'>[\1, \2]</a>", e(s.text))
        parts.append(f"<h2 id='q{i}'>{i}. {e(s.question)}</h2><p>{text}</p><p><b>Key quotes</b></p>")
        parts += [f"<blockquote>{e(q.marker)} <i>{e(dated_name(q.citation.short_title, q.citation.year))}, "
                  f"{e(q.where)}</i>: \u201c{e(q.citation.quote)}\u201d</blockquote>" for q in s.quotes]
    parts.append("<h2>References</h2><ol class='refs'>")
    parts += [f"<li id='ref{r.n}' value='{r.n}'>{e(r.entry)}</li>" for r in b.references]
    parts.append("</ol>")
    if b.not_covered:
        parts.append("<h2 id='not-covered'>Not covered by the corpus</h2><ul>")
        parts += [f"<li>{e(s.question)}</li>" for s in b.not_covered]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)


# -- PDF ---------------------------------------------------------------------------------
def _font_files() -> tuple[Path, Path] | None:
    for folder in FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


def to_pdf(b: Briefing) -> bytes:
    """A PDF through fpdf2, with a Unicode TrueType font so curly quotes and accents render."""
    from fpdf import FPDF

    fonts = _font_files()
    if fonts is None:
        raise ValueError("PDF output needs the DejaVu fonts (Debian package fonts-dejavu-core); "
                         "use --out briefing.html or briefing.md meanwhile.")
    pdf = FPDF(format="A4")
    pdf.set_creation_date(dt.datetime.fromisoformat(b.date).replace(tzinfo=dt.UTC))
    pdf.set_title(b.title)
    pdf.add_font("DejaVu", "", str(fonts[0]))
    pdf.add_font("DejaVu", "B", str(fonts[1]))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    width = pdf.epw

    def heading(text: str, size: int = 13) -> None:
        pdf.ln(3)
        pdf.set_font("DejaVu", "B", size)
        pdf.multi_cell(width, 7, text, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    def para(text: str, size: int = 10, indent: float = 0) -> None:
        pdf.set_font("DejaVu", "", size)
        pdf.set_x(pdf.l_margin + indent)
        pdf.multi_cell(width - indent, 5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    heading(b.title, 17)
    para(f"Date: {b.date}    Corpus version: {b.corpus_version}", 9)
    heading("Contents")
    for i, s in enumerate(b.covered, 1):
        para(f"{i}. {s.question}")
    if b.not_covered:
        para(f"{len(b.covered) + 1}. Not covered by the corpus")
    for i, s in enumerate(b.covered, 1):
        heading(f"{i}. {s.question}")
        para(s.text)
        for q in s.quotes:
            para(_quote_line(q), 9, indent=6)
    heading("References")
    for r in b.references:
        para(f"[{r.n}] {r.entry}", 8)
    if b.not_covered:
        heading("Not covered by the corpus")
        for s in b.not_covered:
            para(f"\u2022 {s.question}")
    return bytes(pdf.output())


def write(b: Briefing, path: Path) -> Path:
    """Write the briefing in the format its suffix names (.md, .html or .pdf)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".md":
        data = to_markdown(b).encode("utf-8")
    elif suffix in (".html", ".htm"):
        data = to_html(b).encode("utf-8")
    elif suffix == ".pdf":
        data = to_pdf(b)
    else:
        raise ValueError(f"{path.name}: choose an output ending in .md, .html or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
