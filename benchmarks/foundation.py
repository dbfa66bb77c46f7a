"""Measure build, load and query latency on this machine (a benchmark, not a test).

Usage: .venv/bin/python benchmarks/foundation.py [--questions ../shared/eval/dev.jsonl]
Builds into a scratch copy of the corpus so the real index is left alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("benchmark")


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _run(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", default=str(ROOT.parent / "shared" / "eval" / "dev.jsonl"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    questions = [json.loads(line) for line in Path(args.questions).read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        corpus, index = Path(tmp) / "corpus", Path(tmp) / "index"
        shutil.copytree(ROOT / "corpus", corpus)
        settings = f"Settings(corpus_dir=Path({str(corpus)!r}), index_dir=Path({str(index)!r}))"
        prelude = "from pathlib import Path; from rag.settings import Settings; "
        build = prelude + ("from rag.embedding import Embedder; from rag.index_store import build_index; "
                           f"s={settings}; build_index(s, Embedder(s.embedder))")
        full = _run(build)
        unchanged = _run(build)
        load = _run(prelude + f"import rag; rag.load({settings}, rebuild=False)")

        sys.path.insert(0, str(ROOT))
        from rag.engine import Engine
        from rag.settings import Settings

        engine = Engine.load(Settings(corpus_dir=corpus, index_dir=index), rebuild=False)
        retrieve_ms, ask_ms = [], []
        for item in questions:  # each once: a repeated question would hit the query-vector cache
            started = time.perf_counter()
            engine.retrieve(item["question"], k=5, history=item.get("history"))
            retrieve_ms.append(1000 * (time.perf_counter() - started))
        engine.retriever.embed_query.cache_clear()
        for item in questions:
            started = time.perf_counter()
            engine.ask(item["question"], history=item.get("history"))
            ask_ms.append(1000 * (time.perf_counter() - started))
        from rag.briefing import build_briefing, presets

        briefing_s = []
        for title, preset_questions in presets().items():
            started = time.perf_counter()
            build_briefing(engine, title, preset_questions)
            briefing_s.append((time.perf_counter() - started, len(preset_questions)))
    slowest = max(briefing_s)
    rows = [
        ("full build (process, incl. imports)", f"{full:.1f} s"),
        ("no-change build (process, incl. imports)", f"{unchanged:.1f} s"),
        ("rag.load() of a built index (process, incl. imports)", f"{load:.1f} s"),
        ("retrieve p50 / p95", f"{statistics.median(retrieve_ms):.1f} / {_percentile(retrieve_ms, 0.95):.1f} ms"),
        ("ask p50 / p95", f"{statistics.median(ask_ms):.1f} / {_percentile(ask_ms, 0.95):.1f} ms"),
        ("slowest preset briefing, after load", f"{slowest[0]:.2f} s ({slowest[1]} questions)"),
    ]
    for name, value in rows:
        log.info("%-55s %s", name, value)


if __name__ == "__main__":
    main()
