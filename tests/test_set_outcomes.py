"""benchmarks/set_outcomes.py: the tally, the table and the changed verdicts it prints, and the
records it takes from a real engine."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("set_outcomes")


def _row(set_name, id_, answerable, verdict):
    return {"set": set_name, "id": id_, "answerable": answerable, "question": f"q {id_}",
            "verdict": verdict, "confidence": 0.5, "lead": None}


ROWS = [_row("b", "1", True, "answered"), _row("b", "2", True, "not found"), _row("b", "3", False, "partial"),
        _row("a", "1", False, "answered"), _row("a", "2", False, "not found"), _row("a", "3", True, "partial")]


def test_tally_counts_each_set_in_order_then_pooled(bench):
    counts = bench.tally(ROWS)
    assert list(counts) == ["b", "a", "pooled"]
    assert counts["b"][(True, "not found")] == 1 and counts["a"][(False, "answered")] == 1
    assert sum(counts["pooled"].values()) == len(ROWS)
    assert counts["pooled"][(False, "answered")] == 1 and counts["pooled"][(True, "partial")] == 1


def test_table_gives_counts_and_shares_per_kind(bench):
    lines = bench.table(ROWS).splitlines()
    assert len(lines) == 2 + 3
    pooled = [c.strip() for c in lines[-1].strip("|").split("|")]
    # answerable refused, partial; near misses refused, refused or partial, answered outright
    assert pooled == ["pooled", "1 / 3 (0.333)", "1 / 3 (0.333)", "1 / 3 (0.333)", "2 / 3 (0.667)", "1 / 3 (0.333)"]
    only_answerable = bench.table([_row("c", "1", True, "answered")]).splitlines()[2]
    assert only_answerable.count("| - ") == 3  # a set without near misses has no share of them


def test_changes_list_only_questions_in_both_runs_whose_verdict_moved(bench):
    now = [_row("a", "1", False, "not found"), _row("a", "2", False, "not found"), _row("a", "9", True, "answered")]
    moved = bench.changes(ROWS, now)
    assert [(r["id"], before, r["verdict"]) for r, before in moved] == [("1", "answered", "not found")]


def test_mcnemar_p_is_the_exact_two_sided_binomial_tail(bench):
    assert bench.mcnemar_p(3, 12) == pytest.approx(2 * (1 + 15 + 105 + 455) / 2 ** 15)  # 0.035
    assert bench.mcnemar_p(12, 3) == bench.mcnemar_p(3, 12)
    assert bench.mcnemar_p(0, 6) == pytest.approx(2 / 2 ** 6)
    assert bench.mcnemar_p(4, 4) == 1.0 and bench.mcnemar_p(0, 0) == 1.0


def test_paired_counts_the_questions_with_an_outcome_in_one_run_only(bench):
    now = [_row("b", "1", True, "not found"), _row("b", "2", True, "partial"), _row("b", "3", False, "answered"),
           _row("a", "1", False, "answered"), _row("a", "2", False, "answered"), _row("z", "9", True, "not found")]
    lines = bench.paired(ROWS, now).splitlines()
    cells = {row[0]: row[1:3] for row in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    # b1 newly refused, b2 no longer refused (partial instead); z9 is in one run only and not counted.
    assert cells["answerable refused"] == ["1", "1"]
    assert cells["answerable refused or partial"] == ["0", "1"]
    assert cells["near misses refused"] == ["1", "0"]
    assert cells["near misses answered outright"] == ["0", "2"]


def test_a_missing_file_is_a_message_not_a_traceback(bench, tmp_path, capsys):
    assert bench.main([str(tmp_path / "nope.jsonl")]) == 2
    assert "Not a file" in capsys.readouterr().err


@pytest.mark.slow
def test_records_come_from_the_engines_answers(bench, real_engine, tmp_path):
    rows = [json.loads(line) for line in (ROOT / "benchmarks" / "independent_questions.jsonl").read_text().splitlines()]
    picked = [next(r for r in rows if r["answerable"]), next(r for r in rows if not r["answerable"])]
    path = tmp_path / "two_questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in picked))
    records = bench.records(real_engine, [path])
    assert [(r["set"], r["id"], r["answerable"]) for r in records] == [("two_questions", p["id"], p["answerable"])
                                                                       for p in picked]
    for record, row in zip(records, picked, strict=True):
        answer = real_engine.ask(row["question"])
        assert record["verdict"] == bench.verdict(answer) and record["confidence"] == round(answer.confidence, 4)
        assert record["lead"] == (answer.citations[0].label if answer.citations else None)
