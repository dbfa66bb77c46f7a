"""Event handlers of the web app, as plain functions of their inputs (tested without a server)."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import re
import tempfile
import threading
from pathlib import Path

from rag import briefing
from rag.citations import Answer
from rag.engine import Engine
from ui.feedback import FeedbackLog
from ui.render import answer_markdown, conversation_markdown, document_html, escape_markdown, sources_html

log = logging.getLogger(__name__)

ERROR_MESSAGE = "Something went wrong while answering; please try again. Details are in the server log."


class Handlers:
    """Everything the app does, over one shared engine; per-user state is passed in and out."""

    def __init__(self, engine: Engine, feedback: FeedbackLog) -> None:
        self.engine = engine
        self.feedback = feedback
        self.sections = _full_sections(engine)
        self._export_dir = Path(tempfile.mkdtemp(prefix="spacesec-export-"))

    # -- chat ----------------------------------------------------------------------
    def ask(self, question: str, chat: list, answers: list[Answer], doc_ids: list[str] | None,
            kinds: list[str] | None, years: list | None, mode: str | None, k: float | None,
            stream=None):
        """Returns (chat, sources html, status, answers, cleared question, answer markdown)."""
        chat = list(chat or [])
        # The chat may have been cleared or cut (its trash button, an API client starting over):
        # the conversation is what the chat shows, one answer per user/assistant pair.
        answers = list(answers or [])[: len(chat) // 2]
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
        turn = len(answers)
        chat += [{"role": "user", "content": escape_markdown(question)},
                 {"role": "assistant", "content": answer_markdown(answer, turn)}]
        status = ("Not found in the corpus: related passages are listed, not an answer."
                  if answer.abstained else f"Answered with {len(answer.citations)} cited passage(s).")
        return chat, self.sources(answers), status, answers, "", answer.to_markdown()

    def ask_stream(self, question: str, chat: list, answers: list[Answer], doc_ids, kinds, years, mode, k):
        """Like ``ask``, but while an LLM writes, yields the text so far (unverified, marked as
        such); the last value is the verified answer, which replaces it."""
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
            yield (shown + [{"role": "assistant", "content": escape_markdown(draft) + " …"}],
                   self.sources(answers), "Writing the answer; citations are checked when it is done…",
                   answers, question, "")
        yield result[0]

    def sources(self, answers: list[Answer]) -> str:
        """Sources of every answer, newest first, so older markers still resolve."""
        panels = [sources_html(a, turn, self.sections) for turn, a in enumerate(answers, 1)]
        return "".join(reversed(panels)) or '<p class="empty">Sources of answers appear here.</p>'

    def clear(self):
        return [], self.sources([]), "", [], "", ""

    def vote(self, answers: list[Answer], index, liked) -> str:
        position = index[0] if isinstance(index, list | tuple) else index
        if not isinstance(position, int) or not 0 <= position // 2 < len(answers or []):
            return "⚠️ That message cannot be rated."
        self.feedback.record(answers[position // 2], bool(liked))
        return "Thank you: your feedback was recorded."

    def export(self, answers: list[Answer]) -> str | None:
        """A Markdown briefing of the conversation, as a file to download."""
        if not answers:
            return None
        # Each export gets its own folder: files already handed out are never overwritten.
        path = Path(tempfile.mkdtemp(dir=self._export_dir)) / f"conversation-{len(answers)}.md"
        path.write_text(conversation_markdown(answers, self.engine.index.fingerprint), encoding="utf-8")
        return str(path)

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


def _full_sections(engine: Engine) -> dict[str, str]:
    """Each chunk's whole section (all its parts), as a verbatim slice of the source."""
    spans: dict[tuple[str, str], tuple[int, int]] = {}
    for c in engine.index.chunks:
        key = (c.doc_id, c.section)
        start, end = spans.get(key, (c.start, c.end))
        spans[key] = (min(start, c.start), max(end, c.end))
    texts = {d.doc_id: engine.corpus.text(d) for d in engine.corpus.documents}
    return {c.chunk_id: texts[c.doc_id][slice(*spans[(c.doc_id, c.section)])] for c in engine.index.chunks}
