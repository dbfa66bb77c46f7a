"""The engine as a LangChain retriever (invoke, ainvoke, batch)."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class CorpusRetriever(BaseRetriever):
    """Hybrid retrieval over the space-security corpus.

    Example: ``rag.load().as_retriever(k=3).invoke("Article IX consultations")``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Any
    k: int = 5
    doc_ids: list[str] | None = None
    kinds: list[str] | None = None
    years: list[int] | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None) -> list[Document]:
        return self.engine.retrieve(query, k=self.k if k is None else k, doc_ids=self.doc_ids,
                                    kinds=self.kinds, years=self.years)

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       k: int | None = None) -> list[Document]:
        return await asyncio.to_thread(self.engine.retrieve, query, k=self.k if k is None else k, doc_ids=self.doc_ids,
                                       kinds=self.kinds, years=self.years)
