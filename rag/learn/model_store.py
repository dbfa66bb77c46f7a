"""The tuned model on disk: one folder (committed, so a fresh clone never trains) holding the
query encoder's LoRA weights, the fusion weights and the answerability model, with a
manifest of what they were trained on.

Writing is a swap of folders: the new model is staged beside the old one and renamed into
place; a swap interrupted between its two renames is finished at the next read, so readers
see the previous model or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag.corpus import Corpus
from rag.embedding import resolve_model_path
from rag.verified_files import sha256_file

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
QUERY_LORA = "query-lora"
PAIR_LORA = "pair-lora"
RANKER_FILE = "ranker.json"
ANSWERABILITY = "answerability"


class TunedModelError(RuntimeError):
    """The tuned model folder cannot be used; the message says what to do."""


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` but the manifest, by relative path."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST_FILE}


def base_model_digest(embedder: str) -> str:
    """What identifies the installed model the LoRA weights apply to: its weight files."""
    folder = resolve_model_path(embedder)
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return _weights_digest(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in weights))


@lru_cache(maxsize=8)
def _weights_digest(files: tuple[tuple[str, int, int], ...]) -> str:
    """Cached by path, size and modification time: hashing ~90 MB on every load costs 0.3 s."""
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).name.encode())
        digest.update(sha256_file(Path(path)).encode())
    return digest.hexdigest()


def query_encoder_name(base_model: str, files: dict[str, str]) -> str:
    """Names a tuned question encoder by its weights (``files``: digests by relative path):
    what the answerability model, which reads its similarities, is tied to."""
    return f"{base_model}+lora-{files.get(f'{QUERY_LORA}/adapter_model.safetensors', '')[:12]}"


@dataclass(frozen=True)
class TunedModel:
    """A tuned model read from disk and checked against its manifest."""

    folder: Path
    manifest: dict

    @property
    def trained_documents(self) -> dict[str, str]:
        """doc_id -> sha256 of the text, for each document the questions covered."""
        return dict(self.manifest.get("documents", {}))

    @property
    def query_encoder_name(self) -> str:
        return query_encoder_name(self.manifest.get("base_model", ""), self.manifest.get("files", {}))

    @property
    def digest(self) -> str:
        """Changes whenever any file of the model does."""
        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()[:20]

    def untrained_documents(self, corpus: Corpus) -> frozenset[str]:
        """Documents of ``corpus`` the model has not seen as they are: added, or changed since."""
        trained = self.trained_documents
        return frozenset(d for d, digest in corpus.checksums().items() if trained.get(d) != digest)

    def staleness(self, corpus: Corpus, questions_digest: str | None = None) -> list[str]:
        """What changed since training, in words (empty when the model is current)."""
        checksums = corpus.checksums()
        notes = []
        for doc_id, digest in sorted(self.trained_documents.items()):
            if doc_id not in checksums:
                notes.append(f"{doc_id} was removed from the corpus")
            elif checksums[doc_id] != digest:
                notes.append(f"{doc_id} changed")
        untrained = sorted(set(checksums) - set(self.trained_documents))
        if untrained:
            notes.append(f"no training questions cover {', '.join(untrained)}")
        if questions_digest and questions_digest != self.manifest.get("questions_sha256"):
            notes.append("the training questions changed")
        return notes


def _recover(folder: Path) -> None:
    """Finish a swap that was interrupted after the old model was moved aside."""
    if folder.exists():
        return
    aside = sorted(folder.parent.glob(f".{folder.name}-old-*"))
    if aside:
        log.warning("restoring the tuned model from an interrupted update (%s)", aside[-1].name)
        aside[-1].rename(folder)


def read_tuned_model(folder: Path, embedder: str) -> TunedModel | None:
    """The tuned model in ``folder``, or None when there is none (the engine then uses the
    installed model as it is). Raises ``TunedModelError`` when it is damaged or was trained
    on another base model."""
    _recover(folder)
    path = folder / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TunedModelError(f"the tuned model's manifest {path} is unreadable ({exc}); "
                              "restore it from git or run 'spacesec tune'.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise TunedModelError(f"{path} is not a tuned model of this version; run 'spacesec tune'.")
    if manifest.get("files") != file_digests(folder):
        raise TunedModelError(f"the tuned model in {folder} does not match its manifest (a file is "
                              "missing or was changed); restore it from git or run 'spacesec tune'.")
    if manifest.get("base_model_sha256") != base_model_digest(embedder):
        raise TunedModelError(f"the tuned model was trained on another base model than '{embedder}'; "
                              "run 'spacesec tune' for this one.")
    return TunedModel(folder, manifest)


def write_tuned_model(staged: Path, folder: Path, manifest: dict) -> TunedModel:
    """Complete ``manifest`` with the digests of the files in ``staged`` and swap ``staged``
    into place as ``folder``."""
    manifest = {**manifest, "format": FORMAT_VERSION, "files": file_digests(staged)}
    (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                        encoding="utf-8")
    for path in staged.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _recover(folder)
    aside = folder.parent / f".{folder.name}-old-{os.getpid()}"
    if folder.exists():
        folder.rename(aside)
    staged.rename(folder)
    shutil.rmtree(aside, ignore_errors=True)
    return TunedModel(folder, manifest)
