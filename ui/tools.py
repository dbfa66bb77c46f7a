"""The two functions the app offers to programs: its API endpoints and, with
``spacesec serve --mcp``, its MCP tools. Their docstrings are what an agent reads."""

from __future__ import annotations

from collections.abc import Callable

from rag.engine import Engine
from rag.excerpts import ExcerptFinder

NOT_IN_CORPUS = "NOT IN THE CORPUS"


def make_tools(engine: Engine, finder: ExcerptFinder) -> list[Callable[..., str]]:
    """``search_excerpts`` and ``cited_answer`` over one loaded engine."""

    def search_excerpts(query: str, k: int = 5, documents: list[str] | None = None,
                        kinds: list[str] | None = None, years: list[int] | None = None) -> str:
        """Search the space-security corpus (UN space treaties, UN principles, COPUOS guidelines,
        state statements) for verbatim excerpts. No answer is composed: use it to find and quote
        provisions.

        Args:
            query: words or a question, e.g. "nuclear weapons in orbit".
            k: how many excerpts, 1 to 20 (default 5), best first.
            documents: only these document ids, e.g. ["outer-space-treaty-1967"]; empty for all.
            kinds: only these kinds: treaty, resolution, guidelines, statement; empty for all.
            years: only documents of these years, e.g. [1967]; empty for all.

        Returns:
            One block per excerpt, best first: "[rank] <formal citation>" (e.g. "Outer Space
            Treaty (1967), art. IV(1)") on the first line, then the paragraph's text verbatim in
            quotation marks. Quote it as given; cite it with the formal citation. "No excerpt
            matches." when nothing does; a line starting "Error:" for invalid input.
        """
        try:
            found = finder.search(query, max(1, min(int(k), 20)), documents or None, kinds or None,
                                  years or None)
        except ValueError as exc:
            return f"Error: {exc}"
        if not found:
            return "No excerpt matches."
        return "\n\n".join(f"[{e.rank}] {e.citation}\n\u201c{e.text.strip()}\u201d" for e in found)

    def cited_answer(question: str, documents: list[str] | None = None) -> str:
        """Answer a question about space law and space security from the corpus only, by quoting
        it verbatim with a citation for every claim. Nothing is generated or paraphrased.

        Args:
            question: the question in English, e.g. "Who is liable for damage caused by a space
                object on the ground?".
            documents: only these document ids, e.g. ["liability-convention-1972"]; empty for all.

        Returns:
            Either the answer (verbatim quotes with [n] markers) followed by "References:" and one
            line per marker, "[n] <document (year), section>: \u201cquote\u201d"; or, when the
            corpus does not answer, a text starting "NOT IN THE CORPUS:" with the reason and the
            closest passages, which are related material and must not be presented as an answer.
        """
        try:
            answer = engine.ask(question, mode="extractive", doc_ids=documents or None)
        except ValueError as exc:
            return f"Error: {exc}"
        text = answer.to_markdown()
        if answer.abstained:
            return f"{NOT_IN_CORPUS}: {text.removeprefix('Not found in the corpus: ')}"
        return text

    return [search_excerpts, cited_answer]
