"""`spacesec tune` on a handful of questions (a smoke model: CI never trains a real one)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from conftest import ROOT, copy_index, make_settings

from rag.cli import answerability_summary
from rag.embedding import OnnxPairScorer
from rag.engine import Engine
from rag.learn import pair_model
from rag.learn.answerability import PAIR_FEATURE
from rag.learn.model_store import (
    ANSWERABILITY,
    MANIFEST_FILE,
    PAIR_LORA,
    QUERY_LORA,
    TunedModelError,
    file_digests,
    read_tuned_model,
)
from rag.learn.pair_model import PairTraining
from rag.learn.query_model import QueryTraining, TunedQueryEmbedder
from rag.learn.questions import QuestionFileError, load_questions
from rag.learn.term_links import TERM_LINKS_FILE
from rag.learn.tune import _staging_folder, question_files, questions_digest, tune, tune_topic

SMOKE = QueryTraining(epochs=1, batch_size=4, lora_rank=2)
PAIR_SMOKE = PairTraining(epochs=1, batch_size=8, lora_rank=2, max_length=64, models=2, min_spread=0.0)
QUESTIONS = [
    ("t1", "Can a country own the Moon?", "outer-space-treaty-1967",
     "Outer space, including the moon and other celestial bodies, is not subject to national appropriation"),
    ("t2", "Who pays when a falling satellite wrecks a house?", "liability-convention-1972",
     "A launching State shall be absolutely liable to pay compensation for damage caused by its space object on the surface of the earth"),
    ("t3", "Must countries help astronauts who land in the wrong place?", "rescue-agreement-1968",
     "it shall immediately take all possible steps to rescue them and render them all necessary assistance"),
    ("t4", "Does a launch have to be written down in a national list?", "registration-convention-1975",
     "the launching State shall register the space object by means of an entry in an appropriate registry"),
]

#: Off-topic questions that share everyday words with the corpus's (a ship, damage, a claim).
SHIPPING_QUESTIONS = ["Who pays when two cargo ships collide in a harbour?", "How do I claim salvage for towing a yacht?",
                      "What if a hurricane hits a tanker far out at sea?", "Can a ferry company refuse me a refund?",
                      "Who is liable when a fishing boat damages an undersea cable?", "How are ships registered under a flag?",
                      "What happens if a container falls off a ship?", "Do ports charge fees for docking?"]


def _question_file(path, rows=QUESTIONS):
    path.write_text("".join(json.dumps({"id": i, "style": "plain", "question": q, "answerable": True,
                                        "doc": d, "quote": quote}) + "\n" for i, q, d, quote in rows),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(real_engine, tmp_path_factory):
    """Settings over the real engine's corpus, a copy of its index, a small question file and
    a model folder of their own."""
    base = tmp_path_factory.mktemp("tune")
    settings = make_settings(real_engine.settings.corpus_dir, copy_index(real_engine.settings.index_dir, base / "index"),
                             questions_path=_question_file(base / "questions.jsonl"),
                             other_writers_questions_path=None, tuned_model_dir=base / "model")
    report = tune(settings, config=SMOKE, answerability=False)
    return settings, report


def test_tune_installs_a_small_model_with_its_manifest(workspace):
    settings, report = workspace
    manifest = json.loads((settings.tuned_model_dir / MANIFEST_FILE).read_text())
    assert manifest["documents"].keys() == {q[2] for q in QUESTIONS}
    assert manifest["questions_sha256"] and manifest["base_model_sha256"]
    assert TERM_LINKS_FILE in manifest["files"]  # what the question words link to, learned beside the encoder
    weights = settings.tuned_model_dir / QUERY_LORA / "adapter_model.safetensors"
    assert 0 < weights.stat().st_size < 20 * 2**20
    off_topic = load_questions(settings.off_topic_questions_path)
    assert report.questions == len(QUESTIONS) + len(off_topic) and report.examples >= 4
    assert read_tuned_model(settings.tuned_model_dir, settings.embedder).manifest == manifest


def test_tuning_is_reproducible(workspace, tmp_path):
    settings, _ = workspace
    again = settings.model_copy(update={"tuned_model_dir": tmp_path / "model"})
    tune(again, config=SMOKE, answerability=False)
    name = f"{QUERY_LORA}/adapter_model.safetensors"
    assert (again.tuned_model_dir / name).read_bytes() == (settings.tuned_model_dir / name).read_bytes()


def test_the_engine_embeds_questions_with_the_tuned_model(workspace):
    settings, _ = workspace
    engine = Engine.load(settings)
    assert engine.index.query_onnx_dir is not None  # exported with the index: serving needs no torch
    assert engine.retriever.query_embedder is not engine.retriever.embedder
    tuned = engine.retriever.embed_query("Can a country own the Moon?")
    base = engine.retriever.embedder.embed(["Can a country own the Moon?"])[0]
    assert tuned.shape == base.shape and not np.allclose(tuned, base)
    assert abs(float(np.linalg.norm(tuned)) - 1.0) < 1e-4
    assert engine.index.manifest["query_model"]["questions_sha256"]
    assert engine.retrieve("Can a country own the Moon?", k=3)


def test_the_torch_runtime_merges_the_same_weights(workspace):
    settings, _ = workspace
    onnx = Engine.load(settings).retriever
    torch = Engine.load(settings.model_copy(update={"embedder_runtime": "torch"})).retriever
    assert isinstance(torch.query_embedder, TunedQueryEmbedder)
    question = "Who pays when a falling satellite wrecks a house?"
    assert float(onnx.embed_query(question) @ torch.embed_query(question)) > 0.999


def test_untuned_settings_use_the_installed_model(workspace):
    settings, _ = workspace
    engine = Engine.load(settings.model_copy(update={"use_tuned_model": False}))
    assert engine.retriever.query_embedder is engine.retriever.embedder
    assert engine.index.query_onnx_dir is None


def test_a_damaged_model_is_refused_and_the_engine_serves_untuned(workspace, tmp_path, caplog):
    settings, _ = workspace
    damaged = tmp_path / "model"
    shutil.copytree(settings.tuned_model_dir, damaged)
    weights = damaged / QUERY_LORA / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(TunedModelError, match="does not match its manifest"):
        read_tuned_model(damaged, settings.embedder)
    engine = Engine.load(settings.model_copy(update={"tuned_model_dir": damaged}))
    assert engine.retriever.query_embedder is engine.retriever.embedder
    assert "not using the tuned model" in caplog.text


def test_an_interrupted_swap_is_finished_at_the_next_read(workspace, tmp_path):
    settings, _ = workspace
    folder = tmp_path / "model"
    shutil.copytree(settings.tuned_model_dir, tmp_path / ".model-old-123")  # moved aside, then killed
    assert read_tuned_model(folder, settings.embedder) is not None
    assert folder.is_dir() and not (tmp_path / ".model-old-123").exists()


def test_a_killed_tune_leaves_no_staging_folder_behind_the_next(tmp_path):
    """kill -9 skips the clean-up of the folder a tune builds in; the next tune (holding the
    lock, so no other tune is running) removes it and leaves the installed model alone."""
    target = tmp_path / "model"
    (target / "query-lora").mkdir(parents=True)
    leftover = tmp_path / ".model-new-4242"
    (leftover / "query-lora").mkdir(parents=True)
    staged = _staging_folder(target)
    assert staged.is_dir() and not any(staged.iterdir())
    assert not leftover.exists() and (target / "query-lora").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", staged.name])


def test_a_changed_corpus_makes_the_model_stale_but_usable(workspace):
    settings, _ = workspace
    tuned = read_tuned_model(settings.tuned_model_dir, settings.embedder)
    from rag.corpus import load_corpus

    notes = tuned.staleness(load_corpus(settings.corpus_dir))
    assert any("no training questions cover" in n and "moon-agreement-1979" in n for n in notes)


@pytest.mark.parametrize("field", ["off_topic_questions_path", "other_writers_questions_path"])
def test_the_configured_question_files_are_part_of_the_question_set_and_its_digest(workspace, tmp_path, field):
    settings, report = workspace
    manifest = report.model.manifest
    assert manifest["questions_sha256"] == questions_digest(question_files(settings, []))
    changed = tmp_path / "more.jsonl"
    changed.write_text('{"id": "o1", "question": "How do I bake bread?", "answerable": false, "kind": "off-topic"}\n',
                       encoding="utf-8")
    other = settings.model_copy(update={field: changed})
    assert changed in question_files(other, [])
    assert questions_digest(question_files(other, [])) != manifest["questions_sha256"]
    without = settings.model_copy(update={"off_topic_questions_path": None, "other_writers_questions_path": None})
    assert question_files(without, []) == [settings.questions_path]


def test_the_project_ships_other_writers_questions_in_its_question_files():
    from rag.settings import Settings

    assert Settings().other_writers_questions_path in question_files(Settings(), [])


def test_questions_about_documents_not_in_the_corpus_are_refused(workspace, tmp_path):
    settings, _ = workspace
    rows = [("x1", "What does my report say?", "my-report-2025", "a quote of at least a few words")]
    extra = _question_file(tmp_path / "mine.jsonl", rows)
    with pytest.raises(QuestionFileError, match="my-report-2025"):
        tune(settings.model_copy(update={"tuned_model_dir": tmp_path / "m"}), [extra], config=SMOKE,
             answerability=False)
    assert not (tmp_path / "m").exists()


def test_documents_the_model_was_not_trained_on_keep_the_installed_models_scores(workspace):
    settings, _ = workspace
    engine = Engine.load(settings.model_copy(update={"tuned_weight_on_untrained": 0.0}))
    retriever = engine.retriever
    question = "Can a country own the Moon?"
    positions = {c.doc_id: i for i, c in reversed(list(enumerate(engine.index.chunks)))}
    untrained, trained = positions["moon-agreement-1979"], positions["outer-space-treaty-1967"]
    assert "moon-agreement-1979" in retriever.untrained_docs and "outer-space-treaty-1967" not in retriever.untrained_docs
    assert engine.near_corpus_similarity is None  # trained without off-topic questions: no level
    scores = retriever.chunk_similarities(question, np.array([untrained, trained]))
    base = retriever.embedder.embed([question])[0]
    assert scores[0] == pytest.approx(float(engine.index.vectors[untrained] @ base), abs=1e-5)
    assert scores[1] == pytest.approx(float(engine.index.vectors[trained] @ retriever.embed_query(question)), abs=1e-5)
    half = Engine.load(settings.model_copy(update={"tuned_weight_on_untrained": 0.5}))
    blended = half.retriever.chunk_similarities(question, np.array([untrained]))[0]
    assert min(scores[0], float(engine.index.vectors[untrained] @ retriever.embed_query(question))) - 1e-4 \
        <= blended <= max(scores[0], float(engine.index.vectors[untrained] @ retriever.embed_query(question))) + 1e-4


def test_tune_trains_the_answerability_model_on_out_of_fold_drafts(workspace, tmp_path, monkeypatch):
    settings, _ = workspace
    rows = [json.loads(line) for line in (ROOT / "training" / "questions.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r["answerable"]][:240:3] + [r for r in rows if not r["answerable"]][:40]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in picked), encoding="utf-8")
    off_topic = tmp_path / "off_topic.jsonl"
    off_topic.write_text("".join((ROOT / "training" / "off_topic.jsonl").read_text().splitlines(True)[:40]),
                         encoding="utf-8")
    full = settings.model_copy(update={"questions_path": questions, "off_topic_questions_path": off_topic,
                                       "tuned_model_dir": tmp_path / "model", "pair_cache_dir": tmp_path / "pairs"})
    report = tune(full, config=SMOKE, pair=PAIR_SMOKE)
    manifest = report.model.manifest
    assert report.answerability["thresholds"] == manifest["answerability"]
    summary = answerability_summary(report.answerability)  # what `spacesec tune` prints
    assert re.search(r"AUROC 0\.\d{3}", summary) and "near misses: not found 0." in summary
    assert "off-topic questions refused: " in summary
    assert re.search(r"pair model alone \(out of fold\): AUROC [01]\.\d{3}", summary)
    assert re.search(r"thresholds chosen on the other folds: answerable not found 0\.\d{3} \(most: \w+", summary)
    assert 0.0 < manifest["off_topic_similarity"] < 0.6
    assert set(manifest["answerability"]) == {"partial", "partial_quantity", "answer", "off_topic"}
    assert (full.tuned_model_dir / ANSWERABILITY / "answerability.json").is_file()
    engine = Engine.load(full)
    assert engine.answerability is not None  # tied to this encoder by its weights' digest
    assert engine.answerability.meta["embedder"] == engine.retriever.query_embedder.name
    assert engine.off_topic_similarity == manifest["off_topic_similarity"]
    # The level at which a question near a sentence of the corpus escapes the topic model.
    assert manifest["off_topic_similarity"] < manifest["near_corpus_similarity"] < 1.0
    assert engine.near_corpus_similarity == manifest["near_corpus_similarity"]
    # The pair model: trained with it, exported with the index, read by the answer model.
    assert manifest["pair_training"]["max_length"] == 64
    assert manifest["pair_training"]["models"] == 2  # averaged into one LoRA of twice the rank
    assert json.loads((full.tuned_model_dir / PAIR_LORA / "adapter_config.json").read_text())["r"] == 4
    assert (full.tuned_model_dir / PAIR_LORA / "adapter_model.safetensors").is_file()
    assert PAIR_FEATURE in engine.answerability.answer_features
    assert isinstance(engine.answerability.pair, OnnxPairScorer)
    assert engine.answerability.pair.path == engine.index.pair_onnx_dir
    answer = engine.ask("Can a country claim the Moon?")
    assert 0.0 <= answer.confidence <= 1.0
    # Two halves and the final model, two seeds each: kept, and read back by a second tune, which
    # then installs the same pair model and the same answer model without training one.
    assert len(list((tmp_path / "pairs").glob("*.safetensors"))) == 6

    def no_training(*args, **kwargs):
        raise AssertionError("a pair model was trained although the cache holds it")

    monkeypatch.setattr(pair_model, "_train_one", no_training)
    again = tune(full.model_copy(update={"tuned_model_dir": tmp_path / "again"}), config=SMOKE, pair=PAIR_SMOKE)
    installed = file_digests(full.tuned_model_dir)
    assert file_digests(again.model.folder) == installed
    assert any(name.startswith(PAIR_LORA) for name in installed)

    # A tune that keeps the installed pair model copies it byte for byte (here one a tune would not
    # make: its length limit changed) and trains no final pair model.
    kept_dir = tmp_path / "kept"
    shutil.copytree(again.model.folder, kept_dir)
    pair_json = kept_dir / PAIR_LORA / "pair.json"
    pair_json.write_text(json.dumps({"max_length": 48}) + "\n")
    kept_manifest = json.loads((kept_dir / MANIFEST_FILE).read_text())
    (kept_dir / MANIFEST_FILE).write_text(json.dumps({**kept_manifest, "files": file_digests(kept_dir)}))
    kept = tune(full.model_copy(update={"tuned_model_dir": kept_dir}), config=SMOKE, pair=PAIR_SMOKE,
                keep_pair_model=True)
    assert json.loads((kept.model.folder / PAIR_LORA / "pair.json").read_text()) == {"max_length": 48}
    kept_files = file_digests(kept.model.folder)
    assert all(kept_files[name] == installed[name] for name in installed
               if name.startswith(PAIR_LORA) and not name.endswith("pair.json"))
    assert kept.model.manifest["pair_training"] == {**again.model.manifest["pair_training"], "kept": True}
    assert Engine.load(full.model_copy(update={"tuned_model_dir": kept_dir})).answerability.pair is not None

    # Only the topic part fitted again, with more off-topic questions: every other file and
    # weight stays, the topic model learns the new ones, and a second refit gives the same bytes.
    more = tmp_path / "more_off_topic.jsonl"
    more.write_text("".join(json.dumps({"id": f"x{i}", "style": "unanswerable", "question": q, "answerable": False,
                                        "doc": None, "quote": None, "near": None, "kind": "off-topic"}) + "\n"
                            for i, q in enumerate(SHIPPING_QUESTIONS)), encoding="utf-8")
    before = Engine.load(full)
    weights_before = dict(np.load(full.tuned_model_dir / ANSWERABILITY / "answerability.npz"))
    figures = tune_topic(full, [more], config=SMOKE)
    after = file_digests(full.tuned_model_dir)
    changed = {name for name in installed if after.get(name) != installed[name]}
    assert changed == {f"{ANSWERABILITY}/answerability.json", f"{ANSWERABILITY}/answerability.npz",
                       f"{ANSWERABILITY}/answerability-report.json"}
    weights_after = dict(np.load(full.tuned_model_dir / ANSWERABILITY / "answerability.npz"))
    assert weights_after.keys() == weights_before.keys()
    assert all(np.array_equal(weights_after[k], weights_before[k]) for k in weights_before if not k.startswith("topic_"))
    assert not np.array_equal(weights_after["topic_coef"], weights_before["topic_coef"])
    refitted = read_tuned_model(full.tuned_model_dir, full.embedder).manifest
    assert refitted["answerability"] == {**manifest["answerability"], "off_topic": figures["threshold"]}
    assert refitted["query_training"] == manifest["query_training"]
    report_now = json.loads((full.tuned_model_dir / ANSWERABILITY / "answerability-report.json").read_text())
    assert report_now["off_topic"]["questions"] == 40 + len(SHIPPING_QUESTIONS)
    assert 0.0 <= figures["refused"] <= 1.0
    refit = Engine.load(full)
    probe = refit.draft(SHIPPING_QUESTIONS[0], refit.search(SHIPPING_QUESTIONS[0]))
    assert refit.answerability.topic_probability(probe) > before.answerability.topic_probability(probe)
    tune_topic(full, [more], config=SMOKE)
    assert file_digests(full.tuned_model_dir) == after


@pytest.mark.parametrize("flags,pair", [([], PairTraining(seed=3)), (["--no-pair-model"], None),
                                        (["--pair-models", "3"], PairTraining(seed=3, models=3))])
def test_the_pair_model_is_trained_unless_left_out(monkeypatch, flags, pair):
    import rag.learn.tune as tuning
    from rag.cli import build_parser

    asked = []

    def stop_before_training(*args, **kwargs):
        asked.append(kwargs["pair"])
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "tune", stop_before_training)
    args = build_parser().parse_args(["tune", "--seed", "3", *flags])
    with pytest.raises(KeyboardInterrupt):
        args.func(args)
    assert asked == [pair]


@pytest.mark.parametrize("flags,cache", [([], ROOT / "index" / "pair-models"), (["--no-pair-cache"], None)])
def test_trained_pair_models_are_kept_unless_asked_to_train_afresh(monkeypatch, flags, cache):
    import rag.learn.tune as tuning
    from rag.cli import build_parser

    asked = []

    def stop_before_training(settings, *args, **kwargs):
        asked.append(settings.pair_cache_dir)
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "tune", stop_before_training)
    args = build_parser().parse_args(["tune", *flags])
    with pytest.raises(KeyboardInterrupt):
        args.func(args)
    assert asked == [cache]


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_a_pair_model_count_below_one_is_refused_with_a_message(count, capsys):
    from rag.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "--pair-models", count])
    assert "expected a whole number of at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--no-pair-model"], ["--pair-models", "2"]])
def test_keeping_the_pair_model_with_no_or_averaged_pair_models_is_refused(flags, capsys):
    from rag.cli import main

    assert main(["tune", "--keep-pair-model", *flags, "--quiet"]) == 2
    assert "--keep-pair-model keeps the installed pair model" in capsys.readouterr().err


def test_keeping_a_pair_model_that_is_not_installed_says_so(tmp_path, monkeypatch, capsys):
    from rag.cli import main

    monkeypatch.setenv("SPACESEC_TUNED_MODEL_DIR", str(tmp_path / "no-model"))
    assert main(["tune", "--keep-pair-model", "--quiet"]) == 1
    assert "holds no tuned model with a pair model to keep" in capsys.readouterr().err


def test_a_topic_refit_without_a_tuned_model_says_so(tmp_path, monkeypatch, capsys):
    from rag.cli import main

    monkeypatch.setenv("SPACESEC_TUNED_MODEL_DIR", str(tmp_path / "no-model"))
    assert main(["tune", "--topic-only", "--quiet"]) == 1
    assert "no tuned answerability model to refit: run 'spacesec tune' first." in capsys.readouterr().err
