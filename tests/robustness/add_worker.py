"""Runs ``spacesec add`` in its own process (with the fake embedder), for the interrupted-add
tests.

    python add_worker.py CORPUS_DIR INDEX_DIR FILE [--pause PHASE]

With ``--pause``, the add prints ``PAUSED <phase>`` and sleeps at that point, so the test can
send SIGINT or SIGKILL exactly there. Phases: ``rebuild`` (the index build starts), ``copy``
(a new document has just appeared in the corpus folder under its final name), and
``before-manifest`` / ``after-manifest`` (just before / after the live manifest is replaced).
The hooks only observe; they never change what the add does.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys
import time

TESTS = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))


def pause(phase: str) -> None:
    print(f"PAUSED {phase}", flush=True)
    time.sleep(120)


def install_hooks(phase: str, corpus: pathlib.Path) -> None:
    if phase == "rebuild":
        import rag.index_store

        real_build = rag.index_store.build_index

        def build_index(*args, **kwargs):
            pause(phase)
            return real_build(*args, **kwargs)

        rag.index_store.build_index = build_index
        return
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        target = pathlib.Path(str(dst))
        in_corpus = target.parent.resolve() == corpus.resolve()
        manifest = in_corpus and target.name == "manifest.json"
        if manifest and phase == "before-manifest":
            pause(phase)
        result = real_replace(src, dst, *args, **kwargs)
        if manifest and phase == "after-manifest":
            pause(phase)
        if in_corpus and target.suffix in (".md", ".txt") and phase == "copy":
            pause(phase)
        return result

    os.replace = replace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus_dir")
    parser.add_argument("index_dir")
    parser.add_argument("file")
    parser.add_argument("--pause")
    args = parser.parse_args()
    # A user's Ctrl-C: a process started in the background of a non-interactive shell (a CI
    # step, `make test &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.pause:
        install_hooks(args.pause, pathlib.Path(args.corpus_dir))

    from conftest import FakeEmbedder

    import rag.embedding
    import rag.index_store  # binds the real Embedder class before the swap below

    rag.embedding.Embedder = lambda name, batch_size=32: FakeEmbedder()  # what `add` builds with
    from rag import cli

    print("STARTED", flush=True)
    sys.exit(cli.main(["--corpus-dir", args.corpus_dir, "--index-dir", args.index_dir,
                       "add", args.file, "--quiet"]))


if __name__ == "__main__":
    main()
