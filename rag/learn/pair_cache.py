"""Trained pair models kept on disk, by what they were trained on.

One pair model takes 10 to 25 minutes to train on 2 cores, and `spacesec tune` trains three for
every seed (one for each half of the provisions, and the final one). A tune whose training pairs,
training settings, seed and libraries are unchanged reads the model it trained before instead:
the same fp32 weights, so the same scores and the same installed model (the drafts, the answer
model and its thresholds are all still recomputed).

Each model is one safetensors file written whole (a temporary file, then renamed), so a killed
tune leaves either the file or nothing; a file that cannot be read is trained again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rag.learn.model_store import base_model_digest
from rag.learn.pair_model import _base, _lora

log = logging.getLogger(__name__)

#: ``PairTraining`` fields that change what one training produces (``models`` and ``min_spread``
#: decide which trainings are made and kept, not what each one learns).
TRAINING_FIELDS = ("epochs", "learning_rate", "batch_size", "lora_rank", "max_length")


@dataclass(frozen=True)
class PairModelCache:
    """A folder of trained single-seed pair models (LoRA weights and head, fp32)."""

    folder: Path

    def key(self, embedder: str, pairs: list[tuple[str, str, float]], config, seed: int) -> str:
        """What one training depends on: the installed model's weights, the pairs, the training
        settings, the seed and the versions of the libraries that run it."""
        import peft
        import torch
        import transformers

        payload = {
            "base_model_sha256": base_model_digest(embedder),
            "pairs": [list(pair) for pair in pairs],
            "training": {name: getattr(config, name) for name in TRAINING_FIELDS},
            "seed": seed,
            "libraries": {"torch": torch.__version__, "transformers": transformers.__version__,
                          "peft": peft.__version__},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def load(self, key: str, embedder: str, config):
        """(model, tokenizer) trained before under ``key``, or None when there is none or it is damaged."""
        from peft import get_peft_model, set_peft_model_state_dict
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            state = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            log.warning("the cached pair model %s cannot be read (%s); it is trained again", path.name, exc)
            return None
        base, tokenizer = _base(embedder)
        model = get_peft_model(base, _lora(config.lora_rank))
        try:
            loaded = set_peft_model_state_dict(model, state)
        except RuntimeError as exc:  # shapes that do not fit this rank
            log.warning("the cached pair model %s does not fit (%s); it is trained again", path.name, exc)
            return None
        expected = {name for name in model.state_dict() if "lora_" in name}
        if loaded.unexpected_keys or any(name in loaded.missing_keys for name in expected):
            log.warning("the cached pair model %s holds other weights; it is trained again", path.name)
            return None
        log.info("pair model read from the cache (%s)", path.name)
        return model.eval(), tokenizer

    def store(self, key: str, model) -> None:
        """Write ``model``'s trained weights under ``key``, whole or not at all; a cache that cannot
        be written only costs the next tune its training time."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = {name: tensor.detach().contiguous() for name, tensor in get_peft_model_state_dict(model).items()}
        tmp = self.folder / f"{key}.{os.getpid()}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._sweep()
            save_file(state, str(tmp), metadata={"format": "pt"})
            os.replace(tmp, self.path(key))
        except OSError as exc:
            log.warning("could not keep the pair model in %s (%s)", self.folder, exc)
            tmp.unlink(missing_ok=True)

    def _sweep(self) -> None:
        """Remove temporary files that a killed tune left behind (their process is gone)."""
        for tmp in self.folder.glob("*.tmp"):
            pid = tmp.suffixes[-2].lstrip(".") if len(tmp.suffixes) >= 2 else ""
            if pid.isdigit() and not _running(int(pid)):
                tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
