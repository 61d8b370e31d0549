"""Smoke test of the Postfix throughput benchmark (tests/bench/postfix_throughput.py).

Its --quick mode must run end to end — Postfix, smtp-sink, both mailpulse-milter instances and
the minimal reference milter started, every run delivered and verified, everything stopped —
print a table with all four variants and write its Markdown report (to a temporary file, never
docs/performance.md). This checks that the benchmark works, not how fast anything is: the
figures of a quick run on a shared machine mean nothing, so none is asserted."""
import os
import re
import subprocess
import sys

import pytest

import sandbox

SCRIPT = sandbox.REPO_ROOT / "tests" / "bench" / "postfix_throughput.py"
VARIANTS = ("no-milter", "mailpulse-unix", "mailpulse-inet", "minimal-unix")


def test_quick_benchmark_runs_and_reports_every_variant(milter_binary, tmp_path):
    minimal = sandbox.build_dir() / "tests" / "bench" / "minimal_milter"
    if not minimal.exists():
        pytest.skip(f"minimal_milter not built at {minimal}")
    env = dict(os.environ, MAILPULSE_BUILD_DIR=str(sandbox.build_dir()))
    doc = tmp_path / "performance.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--write-doc", str(doc)],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=480)
    report = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report

    throughput, single = proc.stdout.split("## Single session", 1)
    for variant in VARIANTS:  # a row: the variant, then its messages per second
        assert re.search(rf"^\| {re.escape(variant)} \| \d+ \|", throughput, re.M), report
    assert re.search(r"^\| mailpulse-inet \| \d+ \|", single, re.M), report
    assert "## Verdict" in proc.stdout, report
    text = doc.read_text()
    for variant in VARIANTS:
        assert f"| {variant} |" in text, text
