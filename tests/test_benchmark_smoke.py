"""benchmarks/run.py --smoke: the benchmark machinery runs end to end and reports every row."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

ROWS = ("cold start (process start to first answer)", "index build, full", "index build, no change",
        "retrieve p50 / p95", "ask p50 / p95", "peak memory: index build", "peak memory: cold start",
        "peak memory: latency run")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """stdout of one smoke run and the Markdown file it wrote (about 30 s on an idle machine;
    the timeout leaves room for a machine shared with other test runs)."""
    out = tmp_path_factory.mktemp("bench") / "PERFORMANCE.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, out.read_text(encoding="utf-8")


@pytest.mark.parametrize("row", ROWS)
def test_every_row_has_a_measured_value(smoke, row):
    stdout, _ = smoke
    line = next((l for l in stdout.splitlines() if l.startswith(f"| {row} |")), None)
    assert line, f"row {row!r} missing from:\n{stdout}"
    ours, baseline = [cell.strip() for cell in line.strip("|").split("|")][1:3]
    assert re.fullmatch(r"\d+(\.\d+)? (s|MiB)|\d+\.\d / \d+\.\d ms", ours), line
    assert baseline == "-"  # the smoke run skips the baseline


def test_values_are_plausible(smoke):
    stdout, _ = smoke
    values = {l.split("|")[1].strip(): l.split("|")[2].strip() for l in stdout.splitlines() if l.startswith("| ")}
    assert float(values["index build, no change"].split()[0]) < float(values["index build, full"].split()[0])
    p50, p95 = (float(v) for v in values["retrieve p50 / p95"].removesuffix(" ms").split(" / "))
    assert 0 < p50 <= p95
    assert float(values["peak memory: cold start"].split()[0]) > 100  # the model was really loaded


def test_the_markdown_section_is_written_with_the_machine(smoke):
    _, written = smoke
    assert "<!-- begin comparison (generated) -->" in written and "<!-- end comparison -->" in written
    assert re.search(r"\d+ x .+, \d+\.\d GiB RAM", written)
    for row in ROWS:
        assert f"| {row} |" in written
