"""The training question set: loading, validation, and the splits that keep validation honest.

Several questions share one provision (the verbatim quote that answers them), so every split
is by provision or by document, never by question: a model must not be scored on a provision
whose other questions it was trained on. Splits hash the provision, so they stay put when
questions are added. A near miss and the answerable twin written to mirror it (``twin_of``) are
split together: a model that learned the twin has seen the near miss's wording and provision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

STYLES = ("plain", "scenario", "direct", "keyword", "numeric", "definition", "unanswerable")
#: Share of provisions (and of unanswerable questions) held out by the provision split.
HELD_OUT_SHARE = 0.15


class QuestionFileError(ValueError):
    """A question file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    id: str
    style: str
    question: str
    answerable: bool
    doc: str | None = None
    quote: str | None = None
    near: str | None = None
    kind: str | None = None
    #: The id of the near miss this answerable question mirrors (same wording, answerable).
    twin_of: str | None = None

    @property
    def provision(self) -> str:
        """What the split groups by: the quote for answerable questions, the question itself
        (with its near-miss kind) for unanswerable ones."""
        if self.answerable:
            return f"{self.doc}\x1f{' '.join((self.quote or '').split())}"
        return f"unanswerable\x1f{self.kind}\x1f{self.question}"

    @property
    def document(self) -> str | None:
        """The document the question is about: its answer's, or the near-miss document."""
        return self.doc if self.answerable else self.near


def write_questions(questions: Iterable[Question], path: Path) -> Path:
    """Write ``questions`` in the format ``load_questions`` reads; returns ``path``."""
    rows = [{k: v for k, v in asdict(q).items() if v is not None} for q in questions]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def load_questions(path: Path) -> list[Question]:
    """Read a question file (one JSON object a line), checking every field it needs."""
    questions: list[Question] = []
    seen: set[str] = set()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"{path}: cannot be read ({exc}).") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise QuestionFileError(f"{path}, line {n}: not a JSON object.") from None
        questions.append(_question(row, f"{path}, line {n}"))
        if questions[-1].id in seen:
            raise QuestionFileError(f"{path}, line {n}: the id {questions[-1].id!r} is used twice.")
        seen.add(questions[-1].id)
    if not questions:
        raise QuestionFileError(f"{path}: holds no questions.")
    return questions


def _question(row: object, where: str) -> Question:
    if not isinstance(row, dict):
        raise QuestionFileError(f"{where}: not a JSON object.")
    for key in ("id", "question"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise QuestionFileError(f"{where}: '{key}' must be a non-empty string.")
    answerable = row.get("answerable", True)
    if not isinstance(answerable, bool):
        raise QuestionFileError(f"{where}: 'answerable' must be true or false, not {answerable!r}.")
    style = row.get("style", "plain" if answerable else "unanswerable")
    if style not in STYLES:
        raise QuestionFileError(f"{where}: unknown style {style!r}; use one of {', '.join(STYLES)}.")
    if answerable:
        for key in ("doc", "quote"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise QuestionFileError(f"{where}: an answerable question needs '{key}' (a non-empty string).")
    twin_of = row.get("twin_of")
    if twin_of is not None and not (answerable and isinstance(twin_of, str) and twin_of.strip()):
        raise QuestionFileError(f"{where}: 'twin_of' names the near miss an answerable question mirrors "
                                "(a non-empty id).")
    return Question(row["id"], style, row["question"].strip(), answerable, row.get("doc"),
                    row.get("quote"), row.get("near"), row.get("kind"), twin_of)


def split_keys(questions: list[Question]) -> list[str]:
    """What splits group each question by: its provision, except that a near miss whose twin is
    among ``questions`` goes with the twin's provision."""
    twin_provision = {q.twin_of: q.provision for q in questions if q.twin_of}
    return [twin_provision.get(q.id, q.provision) for q in questions]


def _share(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_provision(questions: Iterable[Question], share: float = HELD_OUT_SHARE,
                       seed: int = 0) -> tuple[list[Question], list[Question]]:
    """(train, held out): ``share`` of the provisions, with all their questions, held out."""
    questions = list(questions)
    train, held_out = [], []
    for q, key in zip(questions, split_keys(questions), strict=True):
        (held_out if _share(key, seed) < share else train).append(q)
    return train, held_out


def split_by_document(questions: Iterable[Question], doc_id: str) -> tuple[list[Question], list[Question]]:
    """(train, held out): every question about ``doc_id`` held out, as if the document were
    added after training."""
    train, held_out = [], []
    for q in questions:
        (held_out if q.document == doc_id else train).append(q)
    return train, held_out
