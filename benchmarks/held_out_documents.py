"""What a user's added documents see: the whole tuned model (question encoder, term links, pair
model, answerability model) trained without half of the documents, scored on that half's questions.

Usage: .venv/bin/python benchmarks/held_out_documents.py WORK_DIR [--seed 0] [--half 0 --half 1]

The documents are split in two halves of about equal question counts. For each half,
``spacesec tune`` runs on the training questions about the other half (off-topic questions are
kept: they name no document) into WORK_DIR/half-N, and the engine loaded with that model answers
every training question about the held-out half, as it would after ``spacesec add``. Each half
takes as long as a ``spacesec tune`` of half the questions. Per-question records go
to WORK_DIR/half-N/answers.jsonl; the summary of the halves done so far is printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

log = logging.getLogger("held_out_documents")


def document_halves(questions) -> tuple[list[str], list[str]]:
    """Two lists of document ids with about equal numbers of questions: the largest document
    first, each into the half with fewer questions so far (ties: the first half)."""
    counts = Counter(q.document for q in questions if q.document)
    halves: tuple[list[str], list[str]] = ([], [])
    sizes = [0, 0]
    for doc, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        side = int(sizes[1] < sizes[0])
        halves[side].append(doc)
        sizes[side] += n
    return sorted(halves[0]), sorted(halves[1])


def run_half(settings, rows_by_file: dict[str, list], held_docs: list[str], folder: Path, seed: int) -> Path:
    """Tune without ``held_docs`` into ``folder``; answer their questions; return the records' path."""
    from rag.engine import Engine
    from rag.evaluation import gold_covered, question_items
    from rag.learn.pair_model import PairTraining
    from rag.learn.query_model import QueryTraining
    from rag.learn.questions import write_questions
    from rag.learn.tune import tune

    folder.mkdir(parents=True, exist_ok=True)
    held = set(held_docs)
    paths = {name: write_questions([q for q in rows if q.document not in held], folder / f"{name}.jsonl")
             for name, rows in rows_by_file.items()}
    scratch = settings.model_copy(update={
        "tuned_model_dir": folder / "model", "index_dir": folder / "index",
        "questions_path": paths["questions"], "other_writers_questions_path": paths["other_writers"],
        "off_topic_questions_path": paths["off_topic"]})
    if not (folder / "model").is_dir():
        report = tune(scratch, [], config=QueryTraining(seed=seed), pair=PairTraining(seed=seed))
        log.info("tuned without %s in %.0f s", ", ".join(held_docs), report.seconds)
    engine = Engine.load(scratch)
    scored = [q for rows in (rows_by_file["questions"], rows_by_file["other_writers"]) for q in rows
              if q.document in held]
    out = folder / "answers.jsonl"
    with out.open("w", encoding="utf-8") as f:
        for q, item in zip(scored, question_items(scored), strict=True):
            answer = engine.ask(q.question)
            f.write(json.dumps({
                "id": q.id, "document": q.document, "answerable": q.answerable,
                "type": item.type, "abstained": answer.abstained, "partial": answer.partial,
                "confidence": answer.confidence,
                "first_citation_hit": bool(q.answerable and any(gold_covered(item, [c.text for c in answer.citations[:1]]))),
                "citation_hit": bool(q.answerable and any(gold_covered(item, [c.text for c in answer.citations]))),
            }) + "\n")
    return out


def summary(records: list[dict]) -> str:
    """Markdown: outcomes per answerable style and unanswerable kind, and the AUROC."""
    from rag.learn.train_answerability import auroc

    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["type"], []).append(r)
    lines = ["| questions | n | not found | partial | first-citation hit |", "|---|---|---|---|---|"]

    def row(name: str, rs: list[dict]) -> str:
        share = lambda key: sum(bool(r[key]) for r in rs) / len(rs)
        hit = f"{share('first_citation_hit'):.3f}" if rs[0]["answerable"] else "-"
        return f"| {name} | {len(rs)} | {share('abstained'):.3f} | {share('partial'):.3f} | {hit} |"

    for name in sorted(groups, key=lambda t: (t.startswith("unanswerable"), t)):
        lines.append(row(name, groups[name]))
    for label, answerable in (("all answerable", True), ("all unanswerable", False)):
        rs = [r for r in records if r["answerable"] == answerable]
        if rs:
            lines.append(row(f"**{label}**", rs))
    labels = np.array([r["answerable"] for r in records], dtype=int)
    scores = np.array([r["confidence"] for r in records])
    lines.append(f"\nAUROC of confidence: {auroc(labels, scores):.3f} ({len(records)} questions)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from rag.learn.questions import load_questions
    from rag.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half", type=int, action="append", choices=(0, 1), help="only this half (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    rows_by_file = {"questions": load_questions(settings.questions_path),
                    "other_writers": load_questions(settings.other_writers_questions_path),
                    "off_topic": load_questions(settings.off_topic_questions_path)}
    halves = document_halves(rows_by_file["questions"] + rows_by_file["other_writers"])
    records = []
    for n in args.half or (0, 1):
        log.info("half %d held out: %s", n, ", ".join(halves[n]))
        path = run_half(settings, rows_by_file, halves[n], args.work_dir / f"half-{n}", args.seed)
        half = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        print(f"\n## Held out: {', '.join(halves[n])}\n\n{summary(half)}", flush=True)
        records += half
    if len(args.half or (0, 1)) > 1:
        print(f"\n## Both halves\n\n{summary(records)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
