"""Smoke test of the probe-handling overhead benchmark (tests/bench/roundtrip_overhead.py).

Its --quick mode must run end to end — the probe daemons, event_socket_bench in all four
scenarios (rate, probe stopped, probe killed, no socket), Postfix, smtp-sink and the three
mailpulse-milter processes started, every run verified (probe sightings counted by the
milter and received by the probe included), everything stopped — and write its section to a
temporary copy of the report, never docs/performance.md. This checks that the benchmark
works, not how fast anything is: the figures of a quick run on a shared machine mean nothing,
so none is asserted."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sandbox
from test_probe_bench_smoke import leftovers

SCRIPT = sandbox.REPO_ROOT / "tests" / "bench" / "roundtrip_overhead.py"
VARIANTS = ("no-milter", "mailpulse-nokey", "probes-0%", "probes-1%")
SCENARIOS = ("the probe up", "the probe stopped", "the probe killed", "no socket")
OTHER_SECTION = ("<!-- BEGIN milter-throughput -->\nthe milter's figures\n"
                 "<!-- END milter-throughput -->\n")


def test_quick_overhead_benchmark_runs_verifies_and_reports_both_halves(milter_binary,
                                                                        probe_binary, tmp_path):
    driver = sandbox.build_dir() / "tests" / "bench" / "event_socket_bench"
    if not driver.exists():
        pytest.skip(f"event_socket_bench not built at {driver}")
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n" + OTHER_SECTION)
    env = dict(os.environ, MAILPULSE_BUILD_DIR=str(sandbox.build_dir()))
    argv = [sys.executable, str(SCRIPT), "--quick", "--keep", "--write-doc", str(doc)]
    with subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the benchmark stops everything it started, then exits
            stdout, stderr = proc.communicate(timeout=60)
            pytest.fail(f"the quick benchmark took over 90 s\n{stdout}\n{stderr[-4000:]}")
    report = f"stdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    found = re.search(r"^work dir (\S+);", stderr, re.M)
    assert found, report
    workdir = Path(found[1])
    try:  # --keep left the work dir, with the PIDs it recorded, for this check
        assert not leftovers(workdir), f"left running: {leftovers(workdir)}\n{report}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert proc.returncode == 0, report

    share, rest = stdout.split("## Event socket rate", 1)
    for variant in VARIANTS:  # a row: the variant, its probe messages, its messages per second
        assert re.search(rf"^\| {re.escape(variant)} \| \d+ \| \d+ \|", share, re.M), report
    assert re.search(r"^\| probes-1% \| [1-9]\d* \|", share, re.M), report
    rate_row = r"^\| 1 \| [\d,]+ \| [\d.]+× \|.*\| every post received, none dropped \|$"
    assert re.search(rate_row, rest, re.M), report
    for scenario in SCENARIOS:  # every scenario measured, its accounting adding up
        assert re.search(rf"^\| {re.escape(scenario)}[^|]* \| [\d,]+ \| [\d.]+ \|", rest,
                         re.M), report
    assert "NOT ok" not in rest, report
    assert "## Verdict" in rest, report

    text = doc.read_text()
    assert OTHER_SECTION in text, text  # the other benchmark's section is kept as it was
    assert text.count("<!-- BEGIN roundtrip-overhead -->") == 1, text
    assert text.count("<!-- END roundtrip-overhead -->") == 1, text
    for variant in VARIANTS:
        assert f"| {variant} |" in text, text
