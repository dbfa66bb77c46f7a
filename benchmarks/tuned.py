"""What the tuned model costs at serving time: ``rag.load()`` and ``engine.retrieve`` / ``engine.ask``
latencies with the tuned model on and off, in the same run.

Usage: .venv/bin/python benchmarks/tuned.py [--repeat 3] [--passes 5]

Each configuration gets its own index folder under a temporary directory (the tuned model is
part of the index's identity), built once before timing. Loads are timed in fresh processes
(``--repeat`` each, alternating the two configurations so that machine load hits both alike);
latencies over ``--passes`` passes of the dev questions in one process per configuration.
Prints a Markdown table and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "eval" / "dev.jsonl"

_CHILD = """
import json, sys, time
started = time.perf_counter()
import rag
from rag.settings import Settings
engine = rag.load(Settings(index_dir=sys.argv[1], use_tuned_model=sys.argv[2] == "on"))
loaded = time.perf_counter() - started
times = {"load": loaded, "retrieve": [], "ask": []}
questions = [json.loads(line)["question"] for line in open(sys.argv[3])]
for _ in range(int(sys.argv[4])):
    for q in questions:
        t = time.perf_counter(); engine.retrieve(q); times["retrieve"].append(time.perf_counter() - t)
        t = time.perf_counter(); engine.ask(q); times["ask"].append(time.perf_counter() - t)
print(json.dumps(times))
"""


def _run(index_dir: Path, tuned: str, passes: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(index_dir), tuned, str(DEV), str(passes)],
                         capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process loads per configuration")
    parser.add_argument("--passes", type=int, default=5, help="passes over the dev questions")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        dirs = {"on": Path(scratch) / "tuned", "off": Path(scratch) / "installed"}
        for tuned, folder in dirs.items():
            _run(folder, tuned, 0)  # builds the index
        loads: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(args.repeat):
            for tuned, folder in dirs.items():
                loads[tuned].append(_run(folder, tuned, 0)["load"])
        timed = {tuned: _run(folder, tuned, args.passes) for tuned, folder in dirs.items()}
    ms = {t: {k: np.percentile(np.array(timed[t][k]) * 1000, [50, 95]) for k in ("retrieve", "ask")} for t in dirs}
    print("| | installed model | tuned model | ratio |\n|---|---|---|---|")
    print(f"| `rag.load()` (median of {args.repeat}) | {np.median(loads['off']):.2f} s | "
          f"{np.median(loads['on']):.2f} s | +{np.median(loads['on']) - np.median(loads['off']):.2f} s |")
    for kind in ("retrieve", "ask"):
        off, on = ms["off"][kind], ms["on"][kind]
        print(f"| `engine.{kind}` p50 / p95 | {off[0]:.1f} / {off[1]:.1f} ms | {on[0]:.1f} / {on[1]:.1f} ms | "
              f"{on[1] / off[1]:.2f}x (p95) |")
    print(f"\nload average: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; {time.strftime('%Y-%m-%d')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
