"""How long ``spacesec tune`` takes when it trains its pair models, then when it reads them from
the pair-model cache, and whether both runs install the same model.

Usage: .venv/bin/python benchmarks/tune_cache.py [--pair-models 1] [--keep DIR]

Both runs start from the same state: a copy of the committed model and of the index each, and
an empty cache folder that the first run fills. Nothing of the project's own is written. About
an hour for the first run on 2 cores (its pair trainings take most of it), and the second run's
time is the point. Prints the two times and the installed files that differ (none expected).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

from rag.learn.model_store import file_digests
from rag.learn.pair_model import PairTraining
from rag.learn.query_model import QueryTraining
from rag.learn.tune import tune
from rag.settings import Settings

log = logging.getLogger("tune_cache")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair-models", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = args.keep or Path(tempfile.mkdtemp(prefix="tune-cache-"))
    base = Settings()
    times, installed = {}, {}
    for run in ("trained", "read from the cache"):
        folder = work / run.replace(" ", "-")
        shutil.copytree(base.tuned_model_dir, folder / "model")
        shutil.copytree(base.index_dir, folder / "index", symlinks=True)
        settings = base.model_copy(update={"tuned_model_dir": folder / "model", "index_dir": folder / "index",
                                           "pair_cache_dir": work / "pair-models"})
        started = time.perf_counter()
        report = tune(settings, config=QueryTraining(), pair=PairTraining(models=args.pair_models))
        times[run] = time.perf_counter() - started
        installed[run] = file_digests(report.model.folder)
        log.info("tune with pair models %s: %.0f s", run, times[run])
    differing = sorted(name for name in installed["trained"]
                       if installed["trained"][name] != installed["read from the cache"].get(name))
    print("| pair models | seconds |\n|---|---|")
    for run, seconds in times.items():
        print(f"| {run} | {seconds:.0f} |")
    print(f"\nfiles that differ: {', '.join(differing) or 'none'} ({len(installed['trained'])} installed)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
