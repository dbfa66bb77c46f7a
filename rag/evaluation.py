"""`spacesec eval`: retrieval and answer metrics on a question set, with two baselines.

Scoring rule (shared with the project's evaluation tooling, keep it exact): lower-case,
keep ``[a-z0-9]+`` tokens; a passage covers a quote when at least 60% of the quote's word
4-grams occur in the passage.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag.question_sets import check_question_set

NUMBER_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "fifteen": "15",
    "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "hundred": "100",
    "first": "1st", "second": "2nd", "third": "3rd",
}

Retrieve = Callable[[str, list, int], list[str]]  # (question, history, k) -> passage texts


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _grams(words: list[str], n: int = 4) -> list[tuple[str, ...]]:
    if len(words) < n:
        return [tuple(words)] if words else []
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def quote_grams(text: str) -> set[tuple[str, ...]]:
    """The word 4-grams the scoring rule compares."""
    return set(_grams(tokens(text)))


def covers(passage: str, quote: str, threshold: float = 0.6) -> bool:
    """Whether ``passage`` covers ``quote`` under the shared 60%-of-4-grams rule."""
    quote_grams = _grams(tokens(quote))
    if not quote_grams:
        return False
    words = tokens(passage)
    n = len(quote_grams[0])
    passage_grams = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    return sum(g in passage_grams for g in quote_grams) / len(quote_grams) >= threshold


@dataclass(frozen=True)
class Item:
    id: str
    type: str
    question: str
    answerable: bool
    gold: tuple[str, ...]
    alt: tuple[str, ...]
    answer_keywords: tuple[str, ...]
    history: tuple[dict, ...]


def load_items(path: Path) -> list[Item]:
    check_question_set(path)
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(Item(row["id"], row["type"], row["question"], bool(row["answerable"]),
                              tuple(g["quote"] for g in row.get("gold", [])),
                              tuple(a["quote"] for a in row.get("alt", []) or []),
                              tuple(row.get("answer_keywords", [])), tuple(row.get("history", []))))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}, line {n}: not a valid question item ({exc})") from None
    return items


def gold_covered(item: Item, passages: Sequence[str]) -> list[bool]:
    """For each gold quote, whether some passage covers it (or, for one-quote items, an alt)."""
    result = []
    for quote in item.gold:
        options = (quote, *item.alt) if len(item.gold) == 1 else (quote,)
        result.append(any(covers(p, q) for p in passages for q in options))
    return result


def first_hit_rank(item: Item, passages: Sequence[str]) -> int | None:
    quotes = (*item.gold, *item.alt)
    for rank, passage in enumerate(passages, 1):
        if any(covers(passage, q) for q in quotes):
            return rank
    return None


@dataclass
class Scores:
    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, **metrics: float) -> None:
        for name, value in metrics.items():
            self.values[name].append(value)

    def mean(self, name: str) -> float | None:
        values = self.values.get(name)
        return sum(values) / len(values) if values else None


def score_retrieval(items: list[Item], retrieve: Retrieve, k: int) -> dict[str, dict[str, float]]:
    """Recall@5, Recall@k and MRR@10, overall and per question type (answerable items only)."""
    by_type: dict[str, Scores] = defaultdict(Scores)
    depth = max(k, 10)
    for item in items:
        if not item.answerable or not item.gold:
            continue
        passages = retrieve(item.question, list(item.history), depth)
        rank = first_hit_rank(item, passages[:10])
        metrics = {
            "recall@5": _share(gold_covered(item, passages[:5])),
            f"recall@{k}": _share(gold_covered(item, passages[:k])),
            "mrr@10": 1.0 / rank if rank else 0.0,
        }
        for key in ("all", item.type):
            by_type[key].add(**metrics)
    return _summarise(by_type)


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def _normalise_numbers(text: str) -> str:
    words = tokens(text)
    return " ".join(NUMBER_WORDS.get(w, w) for w in words)


def keyword_share(answer: str, keywords: Sequence[str]) -> float:
    if not keywords:
        return 1.0
    text = f" {_normalise_numbers(answer)} "
    return sum(f" {_normalise_numbers(k)} " in text for k in keywords) / len(keywords)


def score_answers(items: list[Item], ask: Callable[[str, list], object], source_text: Callable[[str], str]) -> dict[str, dict[str, float]]:
    """Keyword hit, citation hit (any citation, the first, and the reciprocal rank of the first
    that holds the gold: whether the quotes are in best-answering order), abstention, partial answers,
    false abstention and quote validity per question type; the AUROC and the expected
    calibration error of ``confidence`` between answerable and unanswerable questions."""
    from rag.learn.train_answerability import auroc, expected_calibration_error

    by_type: dict[str, Scores] = defaultdict(Scores)
    latencies, labels, confidences = [], [], []
    for item in items:
        started = time.perf_counter()
        answer = ask(item.question, list(item.history))
        latencies.append(time.perf_counter() - started)
        valid = all(c.quote in c.text and source_text(c.doc_id).find(c.text) >= 0 for c in answer.citations)
        partial = float(getattr(answer, "partial", False))
        if item.answerable:
            metrics = {
                "keyword_hit": keyword_share(answer.text, item.answer_keywords),
                "citation_hit": float(any(gold_covered(item, [c.text for c in answer.citations]))),
                "first_citation_hit": float(any(gold_covered(item, [c.text for c in answer.citations[:1]]))),
                "citation_mrr": 1.0 / (first_hit_rank(item, [c.text for c in answer.citations]) or math.inf),
                "false_abstention": float(answer.abstained),
                "partial": partial,
                "quote_validity": float(valid),
            }
        else:
            metrics = {"abstention_accuracy": float(answer.abstained),
                       "abstained_or_partial": float(answer.abstained or bool(partial)),
                       "quote_validity": float(valid)}
        labels.append(int(item.answerable))
        confidences.append(float(getattr(answer, "confidence", 0.0)))
        for key in ("all", item.type):
            by_type[key].add(**metrics)
    summary = _summarise(by_type)
    latencies.sort()
    summary["all"]["ask_p50_ms"] = 1000 * latencies[len(latencies) // 2]
    summary["all"]["ask_p95_ms"] = 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    if 0 < sum(labels) < len(labels):
        summary["all"]["confidence_auroc"] = round(auroc(labels, confidences), 4)
        summary["all"]["confidence_ece"] = round(expected_calibration_error(labels, confidences), 4)
    return summary


def question_items(questions) -> list[Item]:
    """Training-set questions (``rag.learn.questions.Question``) as evaluation items: the type
    is the style, or "unanswerable: <kind>"; the quote is the gold passage text."""
    return [Item(q.id, q.style if q.answerable else f"unanswerable: {q.kind}", q.question, q.answerable,
                 (q.quote,) if q.answerable else (), (), (), ()) for q in questions]


def held_out_answers(engine, questions, split: str, seed: int, work_dir: Path) -> dict:
    """Answer metrics on the held-out part of a question set, with an answerability model
    trained on the rest only (written to ``work_dir``; retrieval drafts cached there).

    ``split``: "provision" (30% of the provisions, and 30% of the unanswerable questions at
    random) or "document:<id>" (every question about that document)."""
    from rag.learn.answerability import load_answerability
    from rag.learn.features import FeatureReader
    from rag.learn.questions import split_by_document, split_by_provision
    from rag.learn.train_answerability import train_answerability

    if split == "provision":
        train, held_out = split_by_provision(questions, share=0.3, seed=seed)
    elif split.startswith("document:"):
        train, held_out = split_by_document(questions, split.removeprefix("document:"))
    else:
        raise ValueError(f"unknown split {split!r}; use 'provision' or 'document:<document id>'")
    if not held_out or not train:
        raise ValueError(f"the split {split!r} leaves nothing to train on or nothing to score")
    training = train_answerability(engine, train, work_dir / "model", seed, cache_dir=work_dir)
    engine.answerability = load_answerability(work_dir / "model", engine.retriever.query_embedder.name,
                                              FeatureReader(engine.composer, engine.vocabulary))
    answers = score_answers(question_items(held_out), lambda q, h: engine.ask(q, history=h),
                            lambda doc_id: engine.corpus.text(engine.corpus.get(doc_id)))
    return {"split": split, "seed": seed, "trained_on": len(train), "held_out": len(held_out),
            "training": training, "answers": answers}


def _summarise(by_type: dict[str, Scores]) -> dict[str, dict[str, float]]:
    out = {}
    for key in sorted(by_type, key=lambda t: (t != "all", t)):
        scores = by_type[key]
        out[key] = {name: round(scores.mean(name), 4) for name in scores.values} | {"n": len(next(iter(scores.values.values())))}
    return out


def baseline_retrievers(corpus, embedder_path: str) -> dict[str, Retrieve]:
    """The usual tutorial pipelines over RecursiveCharacterTextSplitter(1000, 200) chunks:
    BM25 alone, and LangChain FAISS with the same MiniLM embedder."""
    import bm25s
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    docs = splitter.create_documents([corpus.text(d) for d in corpus.documents],
                                     metadatas=[{"doc_id": d.doc_id} for d in corpus.documents])
    texts = [d.page_content for d in docs]
    bm25 = bm25s.BM25()
    bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    embeddings = HuggingFaceEmbeddings(model_name=embedder_path, model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
    store = FAISS.from_documents(docs, embeddings)

    def bm25_retrieve(question: str, history: list, k: int) -> list[str]:
        query = bm25s.tokenize([question], stopwords="en", show_progress=False)
        results, _ = bm25.retrieve(query, k=min(k, len(texts)), show_progress=False)
        return [texts[i] for i in results[0]]

    def faiss_retrieve(question: str, history: list, k: int) -> list[str]:
        return [d.page_content for d in store.similarity_search(question, k=k)]

    return {"baseline: BM25 (1000/200 chunks)": bm25_retrieve,
            "baseline: LangChain FAISS (1000/200 chunks)": faiss_retrieve}


def other_runtimes(engine) -> dict[str, object]:
    """Question embedders to compare with the engine's own, by name: the sentence-transformers
    model (PyTorch) when the engine serves with the index's ONNX export, and that export when
    it serves with PyTorch. Same passages, same index: only the question's vector differs."""
    from rag.embedding import Embedder, OnnxEmbedder

    settings = engine.settings
    if isinstance(engine.retriever.embedder, OnnxEmbedder):
        return {"PyTorch (sentence-transformers)": Embedder(settings.embedder, settings.embed_batch_size)}
    if engine.index.onnx_dir is None:
        raise ValueError("this index has no ONNX export to compare with; build it with "
                         "SPACESEC_EMBEDDER_RUNTIME=onnx (the default).")
    return {"ONNX (onnxruntime)": OnnxEmbedder(engine.index.onnx_dir, settings.embed_batch_size,
                                               name=settings.embedder, threads=settings.onnx_threads)}


def format_table(title: str, summary: dict[str, dict[str, float]]) -> str:
    metrics = [m for m in next(iter(summary.values())) if m != "n"]
    width = max(14, *(len(key) + 2 for key in summary))
    columns = {m: max(20, len(m) + 2) for m in metrics}  # a long name never runs into the next
    lines = [title, f"{'type':<{width}}{'n':>4}" + "".join(f"{m:>{w}}" for m, w in columns.items())]
    for key, row in summary.items():
        cells = "".join(f"{row[m]:>{w}.3f}" if isinstance(row.get(m), float | int) else f"{'-':>{w}}"
                        for m, w in columns.items())
        lines.append(f"{key:<{width}}{row['n']:>4}{cells}")
    return "\n".join(lines)
