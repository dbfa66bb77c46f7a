"""Parity of the question embedders: the same index, questions embedded by PyTorch or by ONNX.

Usage: .venv/bin/python benchmarks/parity.py [--index-dir index] [ONNX_FOLDER ...]

Scores retrieval (Recall@5, MRR@10, the rule of ``spacesec eval``) on the dev set, on the
answerable questions of ``../shared/train/questions.jsonl`` and on its provision split (the
questions of a fifth of the provisions, chosen by a hash of the quote), with the questions
embedded by the sentence-transformers model, by the index's ONNX export and by each extra
ONNX folder given (for example an int8 export). Every question text is embedded once per
embedder, in batches; the searches then look the vectors up, so all embedders are scored on
exactly the same searches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class _Recorder:
    """Collects the texts a search embeds (and returns zeros)."""

    def __init__(self, dimension: int) -> None:
        self.texts: list[str] = []
        self.dimension = dimension

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        self.texts += texts
        return np.zeros((len(texts), self.dimension), np.float32)


class _Lookup:
    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def question_sets(shared: Path) -> dict[str, list]:
    from rag import evaluation

    train = [evaluation.Item(r["id"], r["style"], r["question"], True, (r["quote"],), (), (), ())
             for r in map(json.loads, (shared / "train" / "questions.jsonl").read_text().splitlines())
             if r["answerable"]]
    held = [i for i in train if int(hashlib.sha256(i.gold[0].encode()).hexdigest(), 16) % 5 == 0]
    return {"dev": evaluation.load_items(shared / "eval" / "dev.jsonl"), "questions.jsonl": train,
            "provision split (1/5)": held}


def main(argv: list[str] | None = None) -> int:
    from rag import evaluation
    from rag.embedding import Embedder, OnnxEmbedder
    from rag.engine import Engine
    from rag.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", default=str(ROOT / "index"))
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("onnx", nargs="*", help="extra ONNX embedder folders to score")
    args = parser.parse_args(argv)
    settings = Settings(index_dir=Path(args.index_dir))
    engine = Engine.load(settings, rebuild=False)
    sets = question_sets(Path(args.shared))
    recorder = _Recorder(engine.index.vectors.shape[1])
    engine.retriever.embedder = recorder
    for items in sets.values():
        for item in items:
            if item.answerable and item.gold:
                engine.retrieve(item.question, k=10, history=list(item.history))
    texts = sorted(set(recorder.texts))
    embedders = {"PyTorch (sentence-transformers)": Embedder(settings.embedder),
                 "ONNX export of the index": OnnxEmbedder(engine.index.onnx_dir)}
    embedders |= {folder: OnnxEmbedder(folder) for folder in args.onnx}
    print("| questions embedded by | " + " | ".join(f"{name}: R@5 / MRR@10" for name in sets) + " |")
    print("|---" * (len(sets) + 1) + "|")
    for name, embedder in embedders.items():
        engine.retriever.embedder = _Lookup(dict(zip(texts, embedder.embed(texts), strict=True)))
        engine.retriever.embed_query.cache_clear()

        def ours(question: str, history: list, k: int) -> list[str]:
            return [d.page_content for d in engine.retrieve(question, k=k, history=history)]

        cells = []
        for items in sets.values():
            summary = evaluation.score_retrieval(items, ours, 10)["all"]
            cells.append(f"{summary['recall@5']:.4f} / {summary['mrr@10']:.4f} (n={summary['n']})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
