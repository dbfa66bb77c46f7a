"""Thumbs up/down on answers, appended to a local JSONL file (one line per vote)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from rag.citations import Answer


class FeedbackLog:
    """Appends votes; a lock keeps concurrent sessions' lines whole."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, answer: Answer, liked: bool) -> dict:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "vote": "up" if liked else "down",
            "question": answer.question,
            "answer": answer.text,
            "abstained": answer.abstained,
            "citations": [{"n": c.n, "chunk_id": c.chunk_id, "quote": c.quote} for c in answer.citations],
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
        return entry
