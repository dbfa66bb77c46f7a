"""The engine: the whole question-to-passages-to-answer path, top to bottom."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
from langchain_core.documents import Document

from rag.abstention import (
    Vocabulary,
    lacks_answer_type,
    off_topic_reason,
    unanswerable_reason,
    unmentioned_reason,
)
from rag.answer import AnswerComposer, Pick
from rag.asked import UNSPECIFIED
from rag.citations import Answer, Citation
from rag.corpus import Corpus, load_corpus
from rag.embedding import Embedder, OnnxEmbedder, OnnxPairScorer
from rag.followup import is_follow_up, standalone_query
from rag.index_store import (
    IndexError_,
    LoadedIndex,
    build_index,
    check_index,
    expected_identity,
    load_index,
)
from rag.instruments import Catalogue, PartRef
from rag.learn.answerability import NOT_FOUND, PARTIAL, AnswerabilityModel, load_answerability
from rag.learn.features import Draft, FeatureReader
from rag.learn.model_store import (
    ANSWERABILITY,
    PAIR_LORA,
    QUERY_LORA,
    TunedModel,
    TunedModelError,
    read_tuned_model,
)
from rag.learn.term_links import TERM_LINKS_FILE, read_term_links
from rag.llm import condense, llm_answer, make_chat_model
from rag.llm_budget import Deadline, ModelSlots
from rag.retrieval import Filters, Hit, HybridRetriever
from rag.sentences import answer_units
from rag.settings import Settings
from rag.states import without_state_names
from rag.validation import (
    InvalidQuestion,
    clean_filters,
    clean_history,
    clean_question,
    without_instructions,
)

log = logging.getLogger(__name__)


@dataclass
class Engine:
    """Loaded once, shared by every caller; all methods are safe to call from many threads."""

    settings: Settings
    corpus: Corpus
    index: LoadedIndex
    retriever: HybridRetriever
    catalogue: Catalogue
    composer: AnswerComposer
    vocabulary: Vocabulary
    chat_model: object | None = None  # a LangChain chat model when the LLM mode is configured
    answerability: AnswerabilityModel | None = None  # None: the rule-based checks decide alone
    model_slots: ModelSlots = field(default_factory=ModelSlots)  # model calls allowed at once
    #: Below this best sentence similarity a question is off topic; it depends on the question
    #: encoder (the tuned model brings its own, fitted by ``spacesec tune``).
    off_topic_similarity: float = 0.27
    #: At or above this best sentence similarity a question is on topic whatever the topic model
    #: reads (``near_corpus``); None: the topic model decides alone.
    near_corpus_similarity: float | None = None

    @classmethod
    def load(cls, settings: Settings, rebuild: bool = True, embedder: Embedder | None = None) -> Engine:
        """Open the index, rebuilding it first when missing, stale or damaged (if ``rebuild``).

        ``embedder`` replaces the configured model (tests pass a small deterministic one).
        Otherwise questions are embedded by the index's ONNX export when it has one (no torch).
        """
        corpus = load_corpus(settings.corpus_dir)
        given, embedder = embedder, embedder or Embedder(settings.embedder, settings.embed_batch_size)
        identity = expected_identity(corpus, settings)
        problem = check_index(settings.index_dir, identity)
        if problem:
            if not rebuild:
                raise IndexError_(f"{problem}; run 'spacesec build'.")
            log.info("%s; building the index", problem)
            build_index(settings, embedder)
        try:
            index = load_index(settings.index_dir, identity)
        except (IndexError_, RuntimeError, OSError, ValueError) as exc:
            if not rebuild:
                raise
            log.warning("index unreadable (%s); rebuilding", exc)
            build_index(settings, embedder, force=True)
            index = load_index(settings.index_dir, identity)
        if given is None and settings.embedder_runtime == "onnx" and index.onnx_dir is not None:
            embedder = OnnxEmbedder(index.onnx_dir, settings.embed_batch_size, name=settings.embedder,
                                    threads=settings.onnx_threads)
        tuned = _tuned_model(settings, corpus) if given is None else None
        query_embedder, untrained = _query_embedder(settings, tuned, corpus, index, embedder)
        tuned = tuned if query_embedder is not embedder else None
        local = (index.chunks, index.vectors, index.faiss_index, embedder, settings,
                 index.sentences, index.sentence_vectors, query_embedder)
        lexical = index.lexical
        if tuned is not None and lexical is not None:
            lexical = lexical.with_links(read_term_links(tuned.folder / TERM_LINKS_FILE), settings.term_link_weight)
        if settings.search_backend == "milvus":
            from rag.milvus_store import MilvusRetriever, MilvusStore

            store = MilvusStore(settings.milvus_uri, settings.milvus_collection, index.vectors.shape[1])
            log.info("milvus %s: %s", settings.milvus_collection, store.sync(index.chunks, index.vectors))
            retriever = MilvusRetriever(store, *local, lexical=lexical, untrained_docs=untrained)
        else:
            retriever = HybridRetriever(*local, lexical=lexical, untrained_docs=untrained)
        catalogue = Catalogue(corpus)
        vocabulary = index.vocabulary.extended(catalogue.names)
        retriever.embed_query("outer space")  # load the model now, not on the first question
        composer = AnswerComposer(index, settings)
        # The model reads similarities to the question's vector: it fits one question encoder.
        answerability = load_answerability(tuned.folder / ANSWERABILITY if tuned else settings.answerability_dir,
                                           retriever.query_embedder.name, FeatureReader(composer, vocabulary),
                                           _pair_scorer(settings, tuned, index))
        off_topic = (tuned.manifest.get("off_topic_similarity", settings.off_topic_similarity)
                     if tuned else settings.off_topic_similarity)
        return cls(settings, corpus, index, retriever, catalogue, composer, vocabulary,
                   make_chat_model(settings), answerability, ModelSlots(settings.llm_max_concurrent), off_topic,
                   tuned.manifest.get("near_corpus_similarity") if tuned else None)

    @property
    def llm_available(self) -> bool:
        """Whether an LLM answer mode is configured."""
        return self.chat_model is not None

    # -- answers -----------------------------------------------------------------------
    def ask(self, question: str, history: list | None = None, mode: str | None = None,
            k: int | None = None, doc_ids=None, kinds=None, years=None,
            stream: Callable[[str], None] | None = None) -> Answer:
        """Answer from the corpus with a citation for every claim, or abstain and say why.

        ``mode`` "llm" (when configured) lets the chat model write the answer from the same
        passages, verified against them; ``stream`` then receives its raw tokens.
        """
        question = clean_question(question, self.settings.max_question_chars)
        # What is searched and judged; the answer keeps the question as the user asked it.
        asked = without_instructions(question)
        mode = mode or ("llm" if self.llm_available else "extractive")
        if mode not in ("extractive", "llm"):
            raise InvalidQuestion(f"Unknown answer mode '{mode}'; use 'extractive' or 'llm'.")
        if mode == "llm" and not self.llm_available:
            raise InvalidQuestion("The LLM answer mode is not configured (set SPACESEC_LLM_PROVIDER, "
                                  "SPACESEC_LLM_MODEL and SPACESEC_LLM_BASE_URL); use 'extractive'.")
        # One deadline for every model call of this question; none for extractive answers,
        # which never wait for a model.
        deadline = Deadline(self.settings.llm_timeout_s if mode == "llm" else 0.0)
        hits = self.search(asked, self.settings.answer_passages if k is None else k, history,
                           doc_ids, kinds, years, deadline)
        # A follow-up ("And the Moon Agreement?") asks the previous question of another document.
        whole = hits and not (clean_history(history) and is_follow_up(asked))
        overview = self.catalogue.overview_of(asked) if whole else None
        if overview:
            return self._overview_answer(question, overview, hits)
        draft = self.draft(asked, hits)
        reason = self.refusal(draft) or (None if draft.candidates else "no passage answers it")
        if reason:
            return abstain(question, reason, hits)
        if self.answerability is None:
            picks = self.composer.choose(draft.candidates, draft.cues)
            reason = lacks_answer_type(asked, [p.text for p in picks])
            if reason:
                return abstain(question, reason, hits)
            answer = self.composer.write(question, picks)
        else:
            # A follow-up is judged as the question it stands for ("and who pays?" alone asks little).
            judged = draft
            if history and is_follow_up(asked):
                query = standalone_query(asked, clean_history(history), self.catalogue, self.settings.history_turns)
                judged = self.draft(query, hits) if query != asked else draft
            if self.answerability.off_topic(judged) and not self.near_corpus(judged):
                return abstain(question, off_topic_reason(judged.content), hits)
            scores = self.answerability.sentence_scores(judged)
            judgement = self.answerability.judge(judged, scores)
            if judgement.outcome == NOT_FOUND:
                wanted = judgement.asked.wanted()
                reason = ((wanted == UNSPECIFIED and unmentioned_reason(judged.question, judged.cues.doc_ids, self.corpus))
                          or f"no passage states {wanted}")
                return abstain(question, reason, hits, judgement.confidence)
            # The quotes are chosen for the question as asked (history steers retrieval, not selection).
            if judged is not draft:
                scores = self.answerability.sentence_scores(draft)
            lead, left_out = self.answerability.choose_quotes(draft, scores)
            picks = self.answerability.best_first(
                draft, scores, self.composer.choose(draft.candidates, draft.cues, lead, left_out))
            lacking = (judgement.asked.unstated([p.text for p in picks])
                       if judgement.outcome == PARTIAL else None)
            answer = self.composer.write(question, picks, judgement.confidence, lacking)
        if mode == "llm":
            written = llm_answer(self.chat_model, question, hits, self.retriever.embedder.embed, answer, stream,
                                 deadline=deadline, slots=self.model_slots)
            return self._judged_like(written, answer)
        return answer

    def _overview_answer(self, question: str, doc_id: str, hits: list[Hit]) -> Answer:
        """What a document is: its title, then the sentences of its purpose, background or
        preamble passages (``search`` retrieved those) that best state what it is for. It
        answers by the corpus's own structure, so its confidence is 1."""
        draft = self.draft(_PURPOSE_QUERY, hits)
        doc = self.corpus.get(doc_id)
        lede = _lede(draft.candidates, doc.title) if all(_overview_rank(h.chunk) == 3 for h in hits) else None
        answer = self.composer.write(question, self.composer.choose(draft.candidates, draft.cues, lede), 1.0)
        opening = f"{doc.short_title} ({doc.year}, {doc.kind}): \u201c{doc.title}\u201d."
        return replace(answer, text=f"{opening}\n\n{answer.text}")

    @staticmethod
    def _judged_like(written: Answer, extractive: Answer) -> Answer:
        """The chat model's answer carries the check of the passages it was given: their
        confidence, and when they answer only in part, the same opening that says so."""
        if written.mode != "llm" or written.abstained:
            return written
        opening = extractive.text.split("\n\n", 1)[0]  # "The corpus does not state ...; the closest ..."
        text = written.text
        if extractive.partial and not text.startswith(opening):
            text = f"{opening}\n\n{text}"
        return replace(written, text=text, confidence=extractive.confidence, partial=extractive.partial)

    def draft(self, question: str, hits: list[Hit]) -> Draft:
        """The question with its passages and every sentence of them scored: what the answer is
        chosen from (and what the answerability model reads)."""
        content = self.catalogue.without_names(question)
        vector = self.retriever.embed_query(question)
        unnamed = without_state_names(question)
        unnamed_vector = vector if unnamed == question else self.retriever.embed_query(unnamed)
        cues = self.catalogue.cues(question)
        return Draft(question, content, vector, unnamed_vector, hits,
                     self.composer.candidates(vector, content, hits, cues), cues)

    def refusal(self, draft: Draft) -> str | None:
        """Why the corpus cannot answer, before any sentence is judged: the rules that need no
        model (a text the corpus does not hold, today's facts, an opinion or a forecast, off
        topic), or None."""
        if reason := unanswerable_reason(draft.content, self.vocabulary):
            return reason
        if not self._off_topic(draft.vector, draft.hits):
            return None
        # "What do the LTS guidelines say about quantum computing?" is about that document's silence.
        return unmentioned_reason(draft.question, draft.cues.doc_ids, self.corpus) or off_topic_reason(draft.content)

    def near_corpus(self, draft: Draft) -> bool:
        """Whether a sentence of the retrieved passages is nearer the question than almost every
        off-topic question comes to any sentence (``near_corpus_similarity``): the question is
        then on topic, whatever the topic model reads. The topic model knows only the subjects
        of its training questions: it called questions about a document a user adds (space
        weather, lasers) off topic, and keyword queries and plain wordings of trained ones
        ("space reactor fuel type", "crew splashdown international waters help")."""
        level = self.near_corpus_similarity
        return level is not None and self.best_retrieved_sentence(draft.vector, draft.hits) >= level

    def best_retrieved_sentence(self, vector, hits: list[Hit]) -> float:
        """The highest similarity of a question's ``vector`` to a sentence of the passages ``hits``."""
        return self.retriever.best_sentence(vector, [self.retriever.position_of(h.chunk) for h in hits])

    def _off_topic(self, vector, hits: list[Hit]) -> bool:
        """Whether no sentence of the corpus comes near the question: it is outside space law and security.

        A retrieved passage's sentence near enough settles it. Otherwise a corpus of up to
        ``exact_search_max_passages`` passages compares every sentence; a larger one the
        sentences of the passages nearest the question in the FAISS index (a sentence that
        near lies in a passage that near), so no question reads every sentence vector."""
        retriever, threshold = self.retriever, self.off_topic_similarity
        best = self.best_retrieved_sentence(vector, hits)
        if best < threshold and len(self.index.chunks) <= self.settings.exact_search_max_passages:
            best = float((self.index.sentence_vectors @ vector).max(initial=-1.0))
        elif best < threshold:
            best = max(best, retriever.best_sentence(vector, retriever.nearest(vector, self.settings.candidate_pool)))
        return best < threshold

    # -- retrieval ---------------------------------------------------------------------
    def search(self, question: str, k: int | None = None, history: list | None = None,
               doc_ids=None, kinds=None, years=None, deadline: Deadline | None = None) -> list[Hit]:
        """Validated question -> standalone query -> hybrid search -> hits, best first.

        ``deadline`` bounds the model's rewrite of a follow-up (by default, the LLM timeout).
        """
        question = clean_question(question, self.settings.max_question_chars)
        k = self._check_k(k)
        history = clean_history(history)
        follow_up = bool(history) and is_follow_up(question)
        deadline = deadline or Deadline(self.settings.llm_timeout_s)
        condensed = (condense(self.chat_model, question, history, deadline, self.model_slots)
                     if self.chat_model and follow_up else None)
        query = condensed or standalone_query(question, history, self.catalogue, self.settings.history_turns)
        cues = self.catalogue.cues(query)
        filters = Filters(*self._check_filters(doc_ids, kinds, years))
        named = [d for d in self.catalogue.cues(question).doc_ids if not filters.doc_ids or d in filters.doc_ids]
        if follow_up and named:  # "And what does the Moon Agreement say?" asks that document
            filters = replace(filters, doc_ids=named)
        overview = self.catalogue.overview_of(query)
        if overview:
            return self._overview(overview, k, filters, query)
        content = self.catalogue.without_names(query)
        hits = self.retriever.search(content, k, cues, filters)
        return self._with_cross_reference(hits, k, filters, content)

    def _overview(self, doc_id: str, k: int, filters: Filters, query: str) -> list[Hit]:
        """A question about a document as a whole is answered from what says what it is and
        is for: sections on its purpose, objectives or scope, then its opening (preamble or
        first paragraphs), in document order. Structure, not similarity, picks them."""
        positions = [i for i, c in enumerate(self.index.chunks) if c.doc_id == doc_id and filters.admit(c)]
        ranked = sorted((_overview_rank(self.index.chunks[i]), i) for i in positions)
        top = [i for _, i in ranked][:k]
        vector = self.retriever.embed_query(query)
        return [Hit(self.index.chunks[i], 1.0 - rank / max(len(top), 1),
                    float(self.index.vectors[i] @ vector), 0.0) for rank, i in enumerate(top)]

    def _with_cross_reference(self, hits: list[Hit], k: int, filters: Filters, query: str) -> list[Hit]:
        """When the best passage applies another instrument's provision ("in accordance with
        article 5 of the Agreement on the Rescue ..."), that provision is part of the answer:
        it comes second."""
        if not hits or k < 2:
            return hits
        for doc_id, part in self.catalogue.cross_references(hits[0].chunk.text):
            position = self._first_chunk_of_part.get((doc_id, part))
            if position is None or not filters.admit(self.index.chunks[position]) or any(
                    h.chunk.chunk_id == self.index.chunks[position].chunk_id for h in hits[:2]):
                continue
            target = self.index.chunks[position]
            rest = [h for h in hits[1:] if h.chunk.chunk_id != target.chunk_id]
            dense = float(self.retriever.chunk_similarities(query, np.array([position]))[0])
            cited = Hit(target, hits[1].score if len(hits) > 1 else hits[0].score, dense, 0.0)
            return [hits[0], cited, *rest][:k]
        return hits

    def retrieve(self, question: str, k: int | None = None, history: list | None = None,
                 doc_ids=None, kinds=None, years=None) -> list[Document]:
        """The ``k`` best passages as LangChain Documents (verbatim text, metadata with score)."""
        hits = self.search(question, k, history, doc_ids, kinds, years)
        return [to_document(hit) for hit in hits]

    def as_retriever(self, k: int | None = None, **filters):
        """A LangChain ``BaseRetriever`` over this engine."""
        from rag.langchain_retriever import CorpusRetriever

        return CorpusRetriever(engine=self, k=self._check_k(k), **filters)

    @cached_property
    def _first_chunk_of_part(self) -> dict[tuple[str, PartRef], int]:
        """Where each (document, part) starts in the index, for following cross-references."""
        parts: dict[tuple[str, PartRef], int] = {}
        for position, (chunk, ref) in enumerate(zip(self.index.chunks, self.retriever.parts, strict=True)):
            if ref is not None:
                parts.setdefault((chunk.doc_id, ref), position)
        return parts

    def _check_filters(self, doc_ids, kinds, years) -> tuple[list | None, list | None, list | None]:
        """Filters as lists of known values; a single value is accepted, an unknown one refused."""
        known = {"document": {d.doc_id for d in self.corpus.documents},
                 "kind": {d.kind for d in self.corpus.documents},
                 "year": {d.year for d in self.corpus.documents}}
        return clean_filters(doc_ids, kinds, years, known)

    def _check_k(self, k: int | None) -> int:
        k = self.settings.top_k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
            raise InvalidQuestion("k must be a whole number between 1 and 100.")
        return k


#: What a document's statement of its purpose answers; sentences are scored against it.
_PURPOSE_QUERY = "the purpose and objectives of this instrument"
_PURPOSE = re.compile(r"\b(?:purposes?|objectives?|scope)\b", re.IGNORECASE)
_CONTEXT = re.compile(r"\b(?:rationale|background)\b", re.IGNORECASE)


def _lede(candidates: list[Pick], title: str) -> Pick | None:
    """The first sentence after the title: a document with no preamble and no section on its
    purpose or background (a statement, a fact sheet) says what it is there, as news does."""
    return min((p for p in candidates if p.text.strip(" .") not in title),
               key=lambda p: p.row, default=None)


def _overview_rank(chunk) -> int:
    """0 a section on the document's purpose, 1 its background, 2 its preamble, 3 the rest."""
    if _PURPOSE.search(chunk.section_title):
        return 0
    if _CONTEXT.search(chunk.section_title):
        return 1
    return 2 if chunk.section == "Preamble" else 3


def _tuned_model(settings: Settings, corpus: Corpus) -> TunedModel | None:
    """The tuned model when it is switched on, present and sound (else None, and why is logged)."""
    if not settings.use_tuned_model:
        return None
    try:
        tuned = read_tuned_model(settings.tuned_model_dir, settings.embedder)
    except (TunedModelError, ValueError) as exc:
        log.warning("not using the tuned model: %s", exc)
        return None
    if tuned is not None and (stale := tuned.staleness(corpus)):
        log.warning("the tuned model predates the corpus (%s); it still helps, but run "
                    "'spacesec tune' to train on what changed", "; ".join(stale))
    return tuned


def _query_embedder(settings: Settings, tuned: TunedModel | None, corpus: Corpus, index: LoadedIndex,
                    embedder):
    """(question embedder, documents it was not trained on): the tuned query encoder (its ONNX
    export kept with the index, or its LoRA weights on the torch runtime), else ``embedder``."""
    if tuned is None:
        return embedder, frozenset()
    untrained = tuned.untrained_documents(corpus)
    if settings.embedder_runtime == "onnx":
        if index.query_onnx_dir is None:  # the passages were not embedded by the tuned model's base
            log.warning("the index holds no export of the tuned query encoder; questions are "
                        "embedded like the passages")
            return embedder, frozenset()
        return OnnxEmbedder(index.query_onnx_dir, settings.embed_batch_size, name=tuned.query_encoder_name,
                            threads=settings.onnx_threads), untrained
    from rag.learn.query_model import TunedQueryEmbedder

    return TunedQueryEmbedder(tuned.query_encoder_name, settings.embedder, tuned.folder / QUERY_LORA,
                              settings.embed_batch_size), untrained


def _pair_scorer(settings: Settings, tuned: TunedModel | None, index: LoadedIndex):
    """The tuned model's pair model (its ONNX export kept with the index, or its LoRA weights on
    the torch runtime), or None when it has none."""
    if tuned is None or not (tuned.folder / PAIR_LORA).is_dir():
        return None
    if settings.embedder_runtime == "onnx":
        return OnnxPairScorer(index.pair_onnx_dir, settings.pair_onnx_threads) if index.pair_onnx_dir else None
    from rag.learn.pair_model import TorchPairScorer

    return TorchPairScorer(settings.embedder, tuned.folder / PAIR_LORA)


def abstain(question: str, reason: str, hits: list[Hit], confidence: float = 0.0) -> Answer:
    """The corpus does not answer: say so, and list the closest passages as related only."""
    related = [Citation.from_chunk(n, h.chunk, *_lead_sentence(h.chunk.text), h.dense)
               for n, h in enumerate(hits[:3], 1)]
    reason = reason[:1].upper() + reason[1:]  # it follows "Not found in the corpus:" as a sentence
    text = (f"Not found in the corpus: {reason}. The passages below are the closest the corpus has; "
            "they are related material, not an answer.")
    return Answer(question=question, text=text, citations=[], abstained=True, related=related,
                  confidence=confidence)


def _lead_sentence(text: str) -> tuple[int, int]:
    """The first sentence of a passage that is not a heading (the passage itself if none)."""
    units = answer_units(text)
    return units[0] if units else (0, len(text))


def to_document(hit: Hit) -> Document:
    chunk = hit.chunk
    return Document(
        page_content=chunk.text,
        id=chunk.chunk_id,
        metadata={
            "chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id, "title": chunk.title,
            "short_title": chunk.short_title, "year": chunk.year, "kind": chunk.kind,
            "section": chunk.section, "section_title": chunk.section_title,
            "start": chunk.start, "end": chunk.end, "score": round(hit.score, 6),
            "dense_score": round(hit.dense, 6), "lexical_score": round(hit.lexical, 6),
        },
    )
