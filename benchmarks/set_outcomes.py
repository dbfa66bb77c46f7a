"""Outcomes on the question sets by other writers: per set and pooled, answerable questions
refused and partial, near misses refused and answered outright. These are the figures a
retrained model is judged on against the shipped one before it ships (docs/ANSWERS.md).

Usage: .venv/bin/python benchmarks/set_outcomes.py [--out FILE.jsonl] [--against EARLIER.jsonl]
       [SET.jsonl ...]

The sets default to every ``benchmarks/*_questions*.jsonl``. The engine is the configured one:
to judge another model, point ``SPACESEC_TUNED_MODEL_DIR`` and ``SPACESEC_INDEX_DIR`` at it.
One record a question (set, id, answerable, verdict, confidence, lead) goes to ``--out``. With
``--against`` an earlier run's records, two more parts follow the table: for each outcome, how many
questions have it in one run only, with the exact McNemar p-value of that split; then the
questions whose verdict differs. About a minute for the eight sets' 900 questions on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERDICTS = ("answered", "partial", "not found")
POOLED = "pooled"


def verdict(answer) -> str:
    from rag.learn.answerability import ANSWERED, NOT_FOUND, PARTIAL

    return NOT_FOUND if answer.abstained else PARTIAL if answer.partial else ANSWERED


def records(engine, paths: list[Path]) -> list[dict]:
    """Each question of each set asked once, as a user would (no history unless the set gives one)."""
    from rag.evaluation import load_items

    rows = []
    for path in paths:
        for item in load_items(path):
            answer = engine.ask(item.question, history=list(item.history))
            rows.append({"set": path.stem, "id": item.id, "answerable": item.answerable,
                         "question": item.question, "verdict": verdict(answer),
                         "confidence": round(answer.confidence, 4),
                         "lead": answer.citations[0].label if answer.citations else None})
    return rows


def tally(rows: list[dict]) -> dict[str, Counter]:
    """(answerable, verdict) counts per set, in the sets' order, then pooled."""
    counts: dict[str, Counter] = {}
    for row in rows:
        for key in (row["set"], POOLED):
            counts.setdefault(key, Counter())[(row["answerable"], row["verdict"])] += 1
    return {key: counts[key] for key in [*(k for k in counts if k != POOLED), POOLED] if key in counts}


def table(rows: list[dict]) -> str:
    """The Markdown table of ``tally``: counts, with shares of the set's questions of that kind."""
    def cell(count: Counter, answerable: bool, verdicts: tuple[str, ...]) -> str:
        total = sum(count[(answerable, v)] for v in VERDICTS)
        n = sum(count[(answerable, v)] for v in verdicts)
        return f"{n} / {total} ({n / total:.3f})" if total else "-"

    header = ("| set | answerable refused | answerable partial | near misses refused "
              "| near misses refused or partial | near misses answered outright |")
    lines = [header, "|---|---|---|---|---|---|"]
    for key, count in tally(rows).items():
        lines.append(f"| {key} | {cell(count, True, ('not found',))} | {cell(count, True, ('partial',))} "
                     f"| {cell(count, False, ('not found',))} | {cell(count, False, ('not found', 'partial'))} "
                     f"| {cell(count, False, ('answered',))} |")
    return "\n".join(lines)


def in_both(earlier: list[dict], now: list[dict]) -> list[tuple[str, dict]]:
    """(earlier verdict, record now) for every question asked in both runs."""
    before = {(r["set"], r["id"]): r["verdict"] for r in earlier}
    return [(before[(r["set"], r["id"])], r) for r in now if (r["set"], r["id"]) in before]


def changes(earlier: list[dict], now: list[dict]) -> list[tuple[dict, str]]:
    """(record now, its earlier verdict) for every question asked in both runs whose verdict differs."""
    return [(r, old) for old, r in in_both(earlier, now) if old != r["verdict"]]


#: The outcomes a retrain is judged on: (name, answerable, verdicts that count).
OUTCOMES = (("answerable refused", True, ("not found",)),
            ("answerable refused or partial", True, ("not found", "partial")),
            ("near misses refused", False, ("not found",)),
            ("near misses answered outright", False, ("answered",)))


def mcnemar_p(only_earlier: int, only_now: int) -> float:
    """Exact two-sided McNemar p-value: the chance of a split at least this uneven among the
    questions where the two runs differ, if either run were as likely to be the one that differs."""
    n = only_earlier + only_now
    tail = sum(math.comb(n, i) for i in range(min(only_earlier, only_now) + 1)) / 2 ** n if n else 1.0
    return min(1.0, 2 * tail)


def paired(earlier: list[dict], now: list[dict]) -> str:
    """For each outcome of ``OUTCOMES``, the questions asked in both runs that have it in one run only,
    and whether the split is more uneven than chance: the sets judge the two models served, question by
    question, not the recipes behind them."""
    both = in_both(earlier, now)
    lines = ["| outcome | earlier only | now only | McNemar p |", "|---|---|---|---|"]
    for name, answerable, verdicts in OUTCOMES:
        rows = [(old in verdicts, r["verdict"] in verdicts) for old, r in both if r["answerable"] == answerable]
        only_earlier = sum(o and not n for o, n in rows)
        only_now = sum(n and not o for o, n in rows)
        lines.append(f"| {name} | {only_earlier} | {only_now} | {mcnemar_p(only_earlier, only_now):.3f} |")
    return "\n".join(lines)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="*", type=Path, help="question sets (default: benchmarks/*_questions*.jsonl)")
    parser.add_argument("--out", type=Path, help="write one JSON record a question here")
    parser.add_argument("--against", type=Path, help="an earlier run's --out: list the verdicts that changed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    paths = args.sets or sorted((ROOT / "benchmarks").glob("*_questions*.jsonl"))
    missing = [str(p) for p in [*paths, *([args.against] if args.against else [])] if not p.is_file()]
    if missing:
        print(f"Not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    earlier = read_records(args.against) if args.against else None

    import rag

    rows = records(rag.load(), paths)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(table(rows))
    if earlier is not None:
        print(f"\nQuestions with an outcome in one run only (earlier: {args.against}):\n\n{paired(earlier, rows)}")
        moved = changes(earlier, rows)
        print(f"\n{len(moved)} verdicts changed against {args.against}:")
        for row, before in moved:
            kind = "answerable" if row["answerable"] else "near miss"
            print(f"- {row['set']} {row['id']} ({kind}): {before} -> {row['verdict']} "
                  f"({row['confidence']:.3f}) {row['question']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
