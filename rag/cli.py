"""The ``spacesec`` command. Heavy imports happen inside each command, so ``--help`` is instant."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

log = logging.getLogger("spacesec")


def settings_from(args: argparse.Namespace):
    from rag.settings import Settings

    overrides = {}
    if getattr(args, "index_dir", None):
        overrides["index_dir"] = Path(args.index_dir)
    if getattr(args, "corpus_dir", None):
        overrides["corpus_dir"] = Path(args.corpus_dir)
    if getattr(args, "backend", None):
        overrides["search_backend"] = args.backend
    if getattr(args, "uri", None):
        overrides["milvus_uri"] = args.uri
    return Settings(**overrides)


def _engine(args: argparse.Namespace):
    import rag

    return rag.load(settings_from(args))


def cmd_build(args: argparse.Namespace) -> int:
    from rag.embedding import Embedder
    from rag.index_store import build_index

    settings = settings_from(args)
    report = build_index(settings, Embedder(settings.embedder, settings.embed_batch_size),
                         force=args.force, progress=not args.quiet)
    state = "built" if report.rebuilt else "up to date"
    print(f"Index {state}: {report.documents} documents, {report.chunks} passages "
          f"({report.embedded} embedded) in {report.seconds:.1f} s [{report.fingerprint}]")
    if settings.search_backend == "milvus":
        from rag.corpus import load_corpus
        from rag.index_store import expected_identity, load_index
        from rag.milvus_store import MilvusStore

        index = load_index(settings.index_dir, expected_identity(load_corpus(settings.corpus_dir), settings))
        with MilvusStore(settings.milvus_uri, settings.milvus_collection, index.vectors.shape[1]) as store:
            synced = store.sync(index.chunks, index.vectors)
        print(f"Milvus collection {settings.milvus_collection} at {settings.milvus_uri}: "
              f"{synced.upserted} written, {synced.deleted} deleted, {synced.unchanged} unchanged")
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    engine = _engine(args)
    docs = engine.retrieve(args.question, k=args.k, doc_ids=args.doc or None)
    if args.json:
        print(json.dumps([{"text": d.page_content, **d.metadata} for d in docs], indent=2, ensure_ascii=False))
        return 0
    for rank, doc in enumerate(docs, 1):
        meta = doc.metadata
        print(f"[{rank}] {meta['short_title']} ({meta['year']}), {meta['section']}  "
              f"score {meta['score']:.3f}  {meta['chunk_id']}")
        print("    " + doc.page_content.strip().replace("\n", "\n    ")[:600] + "\n")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    engine = _engine(args)
    answer = engine.ask(args.question, doc_ids=args.doc or None)
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(answer.to_markdown())
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from rag.excerpts import ExcerptFinder

    engine = _engine(args)
    excerpts = ExcerptFinder(engine).search(args.query, args.k, args.doc, args.kind, args.year)
    if args.json:
        print(json.dumps([e.to_dict() for e in excerpts], indent=2, ensure_ascii=False))
        return 0
    if not excerpts:
        print("No passage matches; try other words or fewer filters.")
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    for e in excerpts:
        text = e.text
        if color:  # bold yellow, from the last span back so earlier offsets stay valid
            for start, end in reversed(e.highlights):
                text = f"{text[:start]}\033[1;33m{text[start:end]}\033[0m{text[end:]}"
        print(f"[{e.rank}] {e.citation}  (score {e.score:.2f})")
        print("    " + text.strip().replace("\n", "\n    ") + "\n")
    return 0


def cmd_brief(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rag import briefing

    if args.list:
        for name, questions in briefing.presets().items():
            print(f"{name} ({len(questions)} questions)")
        return 0
    if not args.topic:
        raise ValueError("give a preset topic or a file of questions (see --list)")
    title, questions = briefing.questions_for(args.topic, settings_from(args).max_question_chars)
    outputs = args.out or [f"{re.sub(r'[^a-z0-9]+', '-', title.lower()).strip('-')}.md"]
    for out in outputs:
        if Path(out).suffix.lower() not in briefing.FORMATS:
            raise ValueError(f"{out}: choose an output ending in .md, .html or .pdf")
    engine = _engine(args)
    with tqdm(total=len(questions), desc="questions", disable=args.quiet) as bar:
        built = briefing.build_briefing(engine, title, questions, progress=lambda i, n, q: bar.update(i - bar.n))
    for out in outputs:
        print(f"Wrote {briefing.write(built, Path(out))}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from rag.embedding import Embedder
    from rag.index_store import build_index
    from rag.ingest import add_documents

    settings = settings_from(args)
    embedder = Embedder(settings.embedder, settings.embed_batch_size)
    added = add_documents([Path(p) for p in args.paths], settings,
                          rebuild=lambda staged: build_index(staged, embedder, progress=not args.quiet),
                          title=args.title, short_title=args.short_title, kind=args.kind,
                          year=args.year, doc_id=args.id)
    print(f"Added {len(added)} document(s): {', '.join(added)}; index rebuilt.")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.split:
        return _validate(args)
    if not args.qa and not args.held_out:
        raise ValueError("give a question set with --qa FILE, a validation split with --split, "
                         "or held-out answers with --held-out")
    from rag import evaluation

    if args.held_out:
        return _eval_held_out(args, _engine(args))
    items = evaluation.load_items(Path(args.qa))  # checked line by line before the engine loads
    engine = _engine(args)

    def ours(question: str, history: list, k: int) -> list[str]:
        return [d.page_content for d in engine.retrieve(question, k=k, history=history)]

    scored = any(item.answerable for item in items)  # retrieval is scored on answerable items only
    report: dict[str, dict] = {"retrieval": {}}
    if scored:
        report["retrieval"]["space-security-rag"] = evaluation.score_retrieval(items, ours, args.k)
    if scored and args.compare_runtimes:
        serving = engine.retriever.embedder
        for name, embedder in evaluation.other_runtimes(engine).items():
            engine.retriever.embedder = embedder
            engine.retriever.embed_query.cache_clear()
            report["retrieval"][f"space-security-rag, questions embedded by {name}"] = \
                evaluation.score_retrieval(items, ours, args.k)
        engine.retriever.embedder = serving
        engine.retriever.embed_query.cache_clear()
    if scored and not args.no_baselines:
        from rag.embedding import resolve_model_path

        model_path = str(resolve_model_path(engine.settings.embedder))
        for name, retrieve in evaluation.baseline_retrievers(engine.corpus, model_path).items():
            report["retrieval"][name] = evaluation.score_retrieval(items, retrieve, args.k)
    if not args.no_answers:
        engine.retriever.embed_query.cache_clear()  # time answers without retrieval's cached vectors
        report["answers"] = evaluation.score_answers(
            items, lambda q, h: engine.ask(q, history=h),
            lambda doc_id: engine.corpus.text(engine.corpus.get(doc_id)))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if not scored:
        print("Retrieval: no answerable questions in the set, so retrieval is not scored.\n")
    for name, summary in report["retrieval"].items():
        print(evaluation.format_table(f"Retrieval: {name}", summary) + "\n")
    if "answers" in report:
        print(evaluation.format_table("Answers (extractive)", report["answers"]))
    return 0


def _eval_held_out(args: argparse.Namespace, engine) -> int:
    """Answers on held-out training questions, with an answerability model trained on the rest."""
    import tempfile

    from rag import evaluation
    from rag.learn.questions import load_questions

    questions = load_questions(Path(args.questions))
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="spacesec-eval-"))
    report = evaluation.held_out_answers(engine, questions, args.held_out, args.seed, work)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"Held out: {report['held_out']} questions ({report['split']}, seed {report['seed']}); "
          f"answerability model trained on {report['trained_on']} in {report['training']['seconds']} s")
    print(evaluation.format_table("Answers (extractive), held-out questions", report["answers"]))
    return 0


def _validate(args: argparse.Namespace) -> int:
    """``eval --split``: train on part of the question set, score what was held out."""
    from rag.learn import validation
    from rag.learn.query_model import QueryTraining

    settings = settings_from(args)
    config = QueryTraining()
    if args.split == "provisions":
        runs = [("held-out provisions (15%)", lambda: validation.provision_split(settings, config, not args.quiet))]
    else:
        from rag.corpus import load_corpus

        docs = args.doc or [d.doc_id for d in load_corpus(settings.corpus_dir).documents]
        weights = tuple(args.untrained_weight or ())
        runs = [(f"held-out document: {d}",
                 lambda d=d: validation.document_split(settings, d, config, not args.quiet, weights))
                for d in docs]
    reports = {}
    for title, run in runs:
        reports[title] = run()
        if not args.json:
            print(validation.format_comparison(title, reports[title]) + "\n", flush=True)
    if args.json:
        print(json.dumps(reports, indent=2))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rag.learn.pair_model import PairTraining
    from rag.learn.query_model import QueryTraining
    from rag.learn.tune import tune, tune_topic

    settings = settings_from(args)
    if not args.pair_cache:
        settings = settings.model_copy(update={"pair_cache_dir": None})
    config = QueryTraining()
    config = replace(config, epochs=args.epochs or config.epochs, seed=args.seed)
    if args.topic_only:
        figures = tune_topic(settings, [Path(p) for p in args.qa or []], config, progress=not args.quiet)
        print(f"Refitted the topic model of {settings.tuned_model_dir} (threshold {figures['threshold']:.3f}); "
              f"on held-out folds it refuses {figures['refused']:.3f} of the off-topic questions "
              f"({figures['answerable_called_off_topic']} answerable questions called off topic). "
              "Run 'spacesec build' (or any command) to use it.")
        return 0
    if args.keep_pair_model and args.pair_models:
        # The answer model would learn from averaged pair models' scores and be served one draw's.
        raise ValueError("--keep-pair-model keeps the installed pair model; it does not go with --pair-models.")
    pair = PairTraining(seed=args.seed) if args.pair_model else None
    if pair and args.pair_models:
        pair = replace(pair, models=args.pair_models)
    report = tune(settings, [Path(p) for p in args.qa or []], config, progress=not args.quiet, pair=pair,
                  keep_pair_model=args.keep_pair_model)
    print(f"Tuned on {report.questions} questions ({report.examples} training examples, "
          f"{report.documents} documents) in {report.seconds:.0f} s; installed in {report.model.folder}. "
          "Run 'spacesec build' (or any command) to use it.")
    if report.answerability:
        print(answerability_summary(report.answerability))
    return 0


def answerability_summary(report: dict) -> str:
    """The answerability model's held-out figures in three lines."""
    folds, off_topic = report["held_out_folds"], report["off_topic"]

    def share(rows: list[dict], outcome: str) -> float:
        n = sum(r["n"] for r in rows)
        return sum(r[outcome] * r["n"] for r in rows) / n if n else float("nan")

    def split(outcomes: dict[str, dict]) -> tuple[list[dict], list[dict]]:
        """(answerable styles' rows, near-miss kinds' rows)."""
        near = [r for name, r in outcomes.items() if name.startswith("unanswerable")]
        return [r for name, r in outcomes.items() if not name.startswith("unanswerable")], near

    answerable, near_misses = split(folds["outcomes"])
    thresholds = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in report["thresholds"].items())
    lines = [(f"Answerability model (held-out folds): AUROC {folds['auroc']:.3f}, ECE {folds['ece']:.3f}; "
              f"thresholds {thresholds}."),
             (f"  answerable questions: not found {share(answerable, 'not found'):.3f}, "
              f"partial {share(answerable, 'partial'):.3f}; near misses: not found "
              f"{share(near_misses, 'not found'):.3f}, partial {share(near_misses, 'partial'):.3f}.")]
    if "held_out_thresholds" in report:
        crossed = report["held_out_thresholds"]["outcomes"]
        styles, kinds = split(crossed)
        worst = max((name for name in crossed if not name.startswith("unanswerable")),
                    key=lambda name: crossed[name]["not found"])
        lines.append(f"  with thresholds chosen on the other folds: answerable not found "
                     f"{share(styles, 'not found'):.3f} (most: {worst} {crossed[worst]['not found']:.3f}); "
                     f"near misses not found {share(kinds, 'not found'):.3f}, partial {share(kinds, 'partial'):.3f}.")
    if report.get("pair_model_auroc") is not None:
        lines.append(f"  pair model alone (out of fold): AUROC {report['pair_model_auroc']:.3f}.")
    if off_topic["questions"]:
        lines.append(f"  off-topic questions refused: {off_topic['refused']:.3f} "
                     f"({off_topic['answerable_called_off_topic']} answerable questions called off topic).")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spacesec", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--index-dir", help="index folder (default: ./index)")
    parser.add_argument("--corpus-dir", help="corpus folder (default: ./corpus)")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build the index (only what changed, unless --force)")
    build.add_argument("--force", action="store_true", help="rebuild everything")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.add_argument("--backend", choices=["faiss", "milvus"], help="also load the passages into Milvus")
    build.add_argument("--uri", help="Milvus URI: a server (http://host:19530) or a Milvus Lite file")
    build.set_defaults(func=cmd_build)

    retrieve = sub.add_parser("retrieve", help="show the passages that best match a question")
    retrieve.add_argument("question")
    retrieve.add_argument("--k", type=int, default=5)
    retrieve.add_argument("--doc", action="append", help="only this document id (repeatable)")
    retrieve.add_argument("--json", action="store_true")
    retrieve.set_defaults(func=cmd_retrieve)

    ask = sub.add_parser("ask", help="answer a question with cited quotes from the corpus")
    ask.add_argument("question")
    ask.add_argument("--doc", action="append", help="only this document id (repeatable)")
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(func=cmd_ask)

    search = sub.add_parser("search", help="ranked verbatim excerpts with formal citations (no answer)")
    search.add_argument("query")
    search.add_argument("--k", type=int, default=5, help="number of excerpts (default 5)")
    search.add_argument("--doc", action="append", help="only this document id (repeatable)")
    search.add_argument("--kind", action="append", help="only this kind, e.g. treaty (repeatable)")
    search.add_argument("--year", action="append", type=int, help="only this year (repeatable)")
    search.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                        help="highlight matching words (default: when printing to a terminal)")
    search.add_argument("--json", action="store_true", help="citation, text and highlight spans as JSON")
    search.set_defaults(func=cmd_search)

    brief = sub.add_parser("brief", help="write a cited onboarding briefing (.md, .html, .pdf)")
    brief.add_argument("topic", nargs="?", help="a preset topic (see --list) or a file of questions, one a line")
    brief.add_argument("--out", action="append", help="output file; repeat for several formats")
    brief.add_argument("--list", action="store_true", help="list the preset topics")
    brief.add_argument("--quiet", action="store_true")
    brief.set_defaults(func=cmd_brief)

    add = sub.add_parser("add", help="add .md, .txt, .pdf or .html files to the corpus")
    add.add_argument("paths", nargs="+")
    add.add_argument("--title")
    add.add_argument("--short-title")
    add.add_argument("--kind")
    add.add_argument("--year", type=int)
    add.add_argument("--id", help="document id (default: from the file name)")
    add.add_argument("--quiet", action="store_true")
    add.set_defaults(func=cmd_add)
    evaluate = sub.add_parser("eval", help="score retrieval and answers on a question set")
    evaluate.add_argument("--qa", help="JSONL question set (format of dev.jsonl)")
    evaluate.add_argument("--split", choices=["provisions", "documents"],
                          help="instead: train on part of the training questions and score the rest, "
                               "held out by provision (15%%) or by whole document (minutes per run)")
    evaluate.add_argument("--doc", action="append", help="with --split documents: only this document "
                                                          "(repeatable; default: every document)")
    evaluate.add_argument("--untrained-weight", type=float, action="append",
                          help="with --split documents: also score with this tuned_weight_on_untrained "
                               "(repeatable)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.add_argument("--questions", default=str(Path(__file__).resolve().parent.parent / "training" / "questions.jsonl"),
                          help="training question set, for --held-out (default: training/questions.jsonl)")
    evaluate.add_argument("--held-out", help="score answers on held-out training questions: 'provision' or "
                                             "'document:<id>' (trains the answerability model on the rest)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the training")
    evaluate.add_argument("--work-dir", help="where the held-out model and the retrieval cache go (default: a temporary folder)")
    evaluate.add_argument("--k", type=int, default=10)
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--no-baselines", action="store_true", help="skip the two tutorial baselines")
    evaluate.add_argument("--no-answers", action="store_true", help="score retrieval only")
    evaluate.add_argument("--compare-runtimes", action="store_true",
                          help="also score retrieval with questions embedded by the other embedder runtime "
                               "(PyTorch when serving with ONNX): the serving path's parity")
    evaluate.set_defaults(func=cmd_eval)

    tune = sub.add_parser("tune", help="train the query model on the question set (minutes; the "
                                       "result is committed, so only after corpus or questions change)")
    tune.add_argument("--qa", action="append", help="more training questions, for documents you added "
                                                     "(JSONL, the format of training/questions.jsonl; repeatable)")
    tune.add_argument("--epochs", type=int, help="passes over the questions (default 3)")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--no-pair-model", dest="pair_model", action="store_false",
                      help="leave out the pair model the answerability model reads (the committed model has "
                           "one; it takes most of the time tune runs: see docs/ANSWERS.md)")
    tune.add_argument("--pair-models", type=_at_least_one, metavar="N",
                      help="pair models trained with successive seeds and averaged into one (default 1; "
                           "each adds about 40 minutes: see docs/ANSWERS.md)")
    tune.add_argument("--keep-pair-model", action="store_true",
                      help="keep the installed model's pair model instead of training the final one (the "
                           "out-of-fold ones the answer model learns from are still trained): see docs/ANSWERS.md")
    tune.add_argument("--no-pair-cache", dest="pair_cache", action="store_false",
                      help="train every pair model afresh, neither reading nor keeping trained ones "
                           "(kept in index/pair-models by default, by what they were trained on)")
    tune.add_argument("--topic-only", action="store_true",
                      help="fit only the installed model's topic part again (about 13 minutes), keeping "
                           "everything else: after adding on-topic or off-topic questions (docs/ANSWERS.md)")
    tune.add_argument("--quiet", action="store_true")
    tune.set_defaults(func=cmd_tune)
    _register_plugins(sub)
    return parser


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _register_plugins(sub) -> None:
    """Commands that other packages add (the web app's ``serve``), found by entry point so the
    library never imports them."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group="spacesec.commands"), key=lambda e: e.name):
        entry.load()(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except ValueError as exc:  # bad input: a sentence for the user, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure we did not foresee: a sentence, the traceback with -v
        if args.verbose:
            log.exception("unexpected failure")
        print(f"error: unexpected failure ({type(exc).__name__}: {exc})"
              + ("" if args.verbose else "; run with -v for details"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
