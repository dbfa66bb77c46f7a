"""Runs one index build in its own process, for the killed-build tests.

    python build_worker.py CORPUS_DIR INDEX_DIR {real|fake} [--force] [--pause PHASE]

With ``--pause``, the build prints ``PAUSED <phase>`` and sleeps at that point of writing
the new build, so the test can SIGKILL it exactly there. Phases, in order:
``tmp-partial`` (vectors.npy written in the temporary folder, dense.faiss not yet),
``before-rename`` (temporary folder complete, not yet renamed to builds/<fingerprint>),
``before-swap`` (renamed, ``current`` not yet switched), ``after-swap`` (switched, old
builds not yet removed). The hooks only observe; they never change what the build does.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def pause(phase: str) -> None:
    print(f"PAUSED {phase}", flush=True)
    time.sleep(120)


def install_hooks(phase: str) -> None:
    import numpy

    if phase == "tmp-partial":
        real_save = numpy.save

        def save(file, arr, *args, **kwargs):
            real_save(file, arr, *args, **kwargs)
            path = pathlib.Path(str(file))
            if path.parent.name.startswith(".tmp-") and path.name == "vectors.npy":
                pause(phase)

        numpy.save = save
    elif phase == "before-rename":
        real_rename = pathlib.Path.rename

        def rename(self, target):
            if self.name.startswith(".tmp-"):
                pause(phase)
            return real_rename(self, target)

        pathlib.Path.rename = rename
    elif phase in ("before-swap", "after-swap"):
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            swap = pathlib.Path(str(dst)).name == "current"
            if swap and phase == "before-swap":
                pause(phase)
            result = real_replace(src, dst, *args, **kwargs)
            if swap and phase == "after-swap":
                pause(phase)
            return result

        os.replace = replace
    else:
        raise SystemExit(f"unknown phase {phase}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus_dir")
    parser.add_argument("index_dir")
    parser.add_argument("embedder", choices=["real", "fake"])
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--pause")
    args = parser.parse_args()
    if args.pause:
        install_hooks(args.pause)

    from rag.embedding import Embedder
    from rag.index_store import build_index
    from rag.settings import Settings

    settings = Settings(corpus_dir=args.corpus_dir, index_dir=args.index_dir)
    if args.embedder == "real":
        embedder = Embedder(settings.embedder, settings.embed_batch_size)
    else:
        from conftest import FakeEmbedder

        embedder = FakeEmbedder()
    print("STARTED", flush=True)
    report = build_index(settings, embedder, force=args.force)
    print(f"DONE {report.fingerprint} rebuilt={report.rebuilt}", flush=True)


if __name__ == "__main__":
    main()
