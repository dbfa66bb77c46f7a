"""Event handlers of the web app, as plain functions of their inputs (tested without a server)."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import re
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

import gradio as gr

from rag import briefing
from rag.citations import Answer
from rag.engine import Engine
from rag.excerpts import ExcerptFinder
from ui.feedback import FeedbackLog
from ui.render import (
    answer_markdown,
    conversation_markdown,
    describe_filters,
    document_html,
    escape_markdown,
    excerpts_html,
    sources_html,
    sources_panel,
    strength,
)

log = logging.getLogger(__name__)

ERROR_MESSAGE = "Something went wrong while answering; please try again. Details are in the server log."
DRAFT_TITLE = "Draft, checking citations…"
DRAFT_STATUS = "Writing the answer; its citations are checked before it is shown as the answer…"


class Handlers:
    """Everything the app does, over one shared engine; per-user state is passed in and out."""

    def __init__(self, engine: Engine, feedback: FeedbackLog) -> None:
        self.engine = engine
        self.feedback = feedback
        self.excerpts = ExcerptFinder(engine)
        self.sections = {c.chunk_id: self.excerpts.full_section(c) for c in engine.index.chunks}
        self._chunks = {c.chunk_id: c for c in engine.index.chunks}
        self._titles = {d.doc_id: d.short_title for d in engine.corpus.documents}
        self._export_dir = Path(tempfile.mkdtemp(prefix="spacesec-export-"))
        # Exported briefings are served from here while the app runs, and removed with it.
        self.close = weakref.finalize(self, shutil.rmtree, self._export_dir, True)

    # -- chat ----------------------------------------------------------------------
    def ask(self, question: str, chat: list, answers: list[Answer], doc_ids: list[str] | None,
            kinds: list[str] | None, years: list | None, mode: str | None, k: float | None,
            stream=None):
        """Returns (chat, sources html, status, answers, cleared question, answer markdown)."""
        chat = list(chat or [])
        # The chat may have been cleared or cut (its trash button, an API client starting over):
        # the conversation is what the chat shows, one answer per user/assistant pair.
        answers = list(answers or [])[: len(chat) // 2]
        if answers and not (question or "").strip():
            # A second click on Ask after an answer (the box is empty then): nothing to do, and
            # the status keeps saying what the last answer was.
            return (gr.skip(),) * 6
        history = [m for a in answers for m in ({"role": "user", "content": a.question},
                                                 {"role": "assistant", "content": a.text})]
        try:
            answer = self.engine.ask(question, history=history, mode=mode or None,
                                     k=int(k) if k else None, doc_ids=doc_ids or None,
                                     kinds=kinds or None, years=[int(y) for y in years or []] or None,
                                     stream=stream)
        except ValueError as exc:
            return chat, self.sources(answers), f"⚠️ {exc}", answers, question, ""
        except Exception:  # a bug must not reach the user as a traceback
            log.exception("answering %r failed", question[:200])
            return chat, self.sources(answers), f"⚠️ {ERROR_MESSAGE}", answers, question, ""
        answers.append(answer)
        filters = self.filters_text(doc_ids, kinds, years)
        weak_below = self.engine.settings.weak_answer_confidence
        chat += [{"role": "user", "content": escape_markdown(question)},
                 {"role": "assistant", "content": answer_markdown(
                     answer, len(answers), self.labels(answer), filters, weak_below)}]
        if answer.abstained:
            status = "Not found in the corpus: related passages are listed, not an answer."
        else:
            status = f"Answered with {len(answer.citations)} cited passage(s)."
            flag = strength(answer, weak_below)
            if flag:
                status += f" {flag[0]}: read the sources before relying on it."
        return chat, self.sources(answers, filters), status, answers, "", answer.to_markdown()

    def ask_stream(self, question: str, chat: list, answers: list[Answer], doc_ids, kinds, years, mode, k):
        """Like ``ask``, but while an LLM writes, shows its text so far as a greyed draft
        ("checking...") that the checked answer replaces when it is done."""
        if mode != "llm" or not self.engine.llm_available:
            yield self.ask(question, chat, answers, doc_ids, kinds, years, mode, k)
            return
        tokens: queue.Queue = queue.Queue()
        result: list = []

        def work() -> None:
            try:
                result.append(self.ask(question, chat, answers, doc_ids, kinds, years, mode, k, tokens.put))
            finally:
                tokens.put(None)

        threading.Thread(target=work, daemon=True).start()
        draft = ""
        shown = list(chat or []) + [{"role": "user", "content": escape_markdown(question)}]
        while (token := tokens.get()) is not None:
            draft += token
            yield (shown + [{"role": "assistant", "content": escape_markdown(draft),
                             "metadata": {"title": DRAFT_TITLE, "status": "pending"}}],
                   gr.skip(), DRAFT_STATUS, gr.skip(), gr.skip(), gr.skip())
        yield result[0]

    def labels(self, answer: Answer) -> dict[int, str]:
        """Each citation's formal citation ("Outer Space Treaty (1967), art. IV(1)")."""
        return {c.n: self.excerpts.cite(self._chunks[c.chunk_id], c.quote_start)
                for c in (answer.citations or answer.related) if c.chunk_id in self._chunks}

    def filters_text(self, doc_ids, kinds, years) -> str:
        """"Searched only: Outer Space Treaty, treaty, 1967" for the active filters."""
        return describe_filters([self._titles.get(d, d) for d in doc_ids or []], kinds or [], years or [])

    def sources(self, answers: list[Answer], filters: str = "") -> str:
        """The Sources panel: the latest answer's sources, the earlier ones folded below."""
        turns = [sources_html(a, turn, self.sections, self.labels(a), filters if turn == len(answers) else "")
                 for turn, a in enumerate(answers, 1)]
        return sources_panel(turns)

    def clear(self):
        """One reset for the Clear button and the chat's trash icon: chat, sources, status,
        conversation, question, Markdown and the exported file."""
        return [], self.sources([]), "", [], "", "", gr.DownloadButton(value=None, visible=False)

    def clear_chat(self):
        """The chat's trash icon: the same reset, but a question being typed is the user's."""
        chat, sources, status, answers, _question, markdown, download = self.clear()
        return chat, sources, status, answers, markdown, download

    def vote(self, answers: list[Answer], index, liked) -> str:
        position = index[0] if isinstance(index, list | tuple) else index
        if not isinstance(position, int) or not 0 <= position // 2 < len(answers or []):
            return "⚠️ That message cannot be rated."
        self.feedback.record(answers[position // 2], bool(liked))
        return "Thank you: your feedback was recorded."

    def export(self, answers: list[Answer]) -> tuple[str | None, str]:
        """(a Markdown briefing of the conversation as a file to download, status)."""
        if not answers:
            return None, "⚠️ Nothing to export yet: ask a question first."
        # Each export gets its own folder: files already handed out are never overwritten.
        path = Path(tempfile.mkdtemp(dir=self._export_dir)) / f"conversation-{len(answers)}.md"
        path.write_text(conversation_markdown(answers, self.engine.index.fingerprint), encoding="utf-8")
        return str(path), f"Exported {len(answers)} answer(s): use the download button."

    # -- search --------------------------------------------------------------------
    def search(self, query: str, doc_ids, kinds, years, k: float | None) -> tuple[str, str]:
        """(results html, status) of an excerpt search."""
        try:
            found = self.excerpts.search(query, int(k) if k else 5, doc_ids or None, kinds or None,
                                         [int(y) for y in years or []] or None)
        except ValueError as exc:
            return "", f"⚠️ {exc}"
        filters = self.filters_text(doc_ids, kinds, years)
        return excerpts_html(found, query), f"{len(found)} excerpt(s).{' ' + filters + '.' if filters else ''}"

    # -- briefings -----------------------------------------------------------------
    def briefing(self, preset: str | None, custom: str | None, progress=None):
        """(preview html, files to download, status) for a preset or typed questions."""
        lines = [q.strip() for q in (custom or "").splitlines() if q.strip()]
        try:
            if lines:
                title, questions = "Briefing", lines
                if len(lines) > 30:
                    raise ValueError("Please give at most 30 questions per briefing.")
            elif preset:
                title, questions = briefing.questions_for(preset)
            else:
                raise ValueError("Choose a preset topic or type questions, one per line.")
            built = briefing.build_briefing(self.engine, title, questions, dt.date.today(), progress)
        except ValueError as exc:
            return "", [], f"⚠️ {exc}"
        stem = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        folder = Path(tempfile.mkdtemp(dir=self._export_dir))
        files = [str(briefing.write(built, folder / f"{stem}{suffix}")) for suffix in (".md", ".html")]
        try:
            files.append(str(briefing.write(built, folder / f"{stem}.pdf")))
        except ValueError as exc:  # no Unicode font on this machine: the other formats still work
            log.warning("%s", exc)
        body = re.search(r"<body>(.*)</body>", briefing.to_html(built), re.DOTALL)
        status = (f"Built {len(built.covered)} answered section(s); "
                  f"{len(built.not_covered)} question(s) not covered by the corpus.")
        return body.group(1) if body else "", files, status

    # -- documents -----------------------------------------------------------------
    def document(self, doc_id: str | None):
        """(document html, section choices) for the Documents tab."""
        try:
            doc = self.engine.corpus.get(doc_id or "")
        except KeyError:
            return "<p>Choose a document.</p>", []
        chunks = [c for c in self.engine.index.chunks if c.doc_id == doc.doc_id]
        choices = [(c.section + (f" (part {c.part})" if c.part > 1 else ""), c.chunk_id) for c in chunks]
        return document_html(doc, chunks), choices
