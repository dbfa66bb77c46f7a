"""space-security-rag: cited answers over space-security texts.

>>> import rag
>>> engine = rag.load()
>>> engine.retrieve("What does the Outer Space Treaty say about nuclear weapons in orbit?")[0].metadata["section"]
'Article IV'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.engine import Engine
    from rag.settings import Settings


def load(settings: Settings | None = None, *, rebuild: bool = True) -> Engine:
    """Load the engine; builds the index first when it is missing or stale."""
    from rag.engine import Engine
    from rag.settings import Settings

    return Engine.load(settings or Settings(), rebuild=rebuild)


__all__ = ["load"]
