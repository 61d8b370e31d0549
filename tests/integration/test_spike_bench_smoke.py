"""Smoke test of the spike detection on/off benchmark (tests/bench/spike_throughput.py).

Its --quick mode must run end to end — Postfix, smtp-sink and the two mailpulse-milter
processes (detection off and on, both trusting the sender so its mail is outbound) started,
every run verified (spikes-on's detector counted each run's messages, spikes-off has none),
everything stopped — and write its section to a temporary copy of the report, never
docs/performance.md. This checks that the benchmark works, not how fast anything is: the
figures of a quick run on a shared machine mean nothing, so none is asserted."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import sandbox
from test_probe_bench_smoke import leftovers

SCRIPT = sandbox.REPO_ROOT / "tests" / "bench" / "spike_throughput.py"
VARIANTS = ("no-milter", "spikes-off", "spikes-on")
OTHER_SECTION = ("<!-- BEGIN milter-throughput -->\nthe milter's figures\n"
                 "<!-- END milter-throughput -->\n")


def test_quick_spike_benchmark_runs_verifies_and_reports(milter_binary, tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n" + OTHER_SECTION)
    env = dict(os.environ, MAILPULSE_BUILD_DIR=str(sandbox.build_dir()))
    argv = [sys.executable, str(SCRIPT), "--quick", "--keep", "--milter", str(milter_binary),
            "--write-doc", str(doc)]
    with subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the benchmark stops everything it started, then exits
            stdout, stderr = proc.communicate(timeout=60)
            raise AssertionError(f"the quick benchmark took over 120 s\n{stdout}\n"
                                 f"{stderr[-4000:]}") from None
    report = f"stdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    found = re.search(r"^work dir (\S+);", stderr, re.M)
    assert found, report
    workdir = Path(found[1])
    try:  # --keep left the work dir, with the PIDs it recorded, for this check
        assert not leftovers(workdir), f"left running: {leftovers(workdir)}\n{report}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert proc.returncode == 0, report

    # Every measured run was made and verified: 2 rounds of 3 variants, 1 single round, and
    # spikes-on's detector checked in each of its runs (warm-up, 2 rounds, 1 single).
    measured = re.findall(r"^(round [12]|single 1): (\S+) ", stderr, re.M)
    assert sorted(measured) == sorted((r, v) for r in ("round 1", "round 2", "single 1")
                                      for v in VARIANTS), report
    checks = re.findall(r"^  spikes-on's detector counted [\d.]+ of (\d+) messages", stderr,
                        re.M)
    assert checks == ["20", "200", "200", "30"], report
    for variant in VARIANTS:  # a row: the variant, its messages per second, its runs
        assert re.search(rf"^\| {re.escape(variant)} \| \d+ \| \d+, \d+ \|", stdout, re.M), report
    assert re.search(r"^- spikes-on / spikes-off: [\d.]+, [\d.]+; median", stdout, re.M), report
    assert "the count read from /top matched" in stdout, report

    text = doc.read_text()
    assert OTHER_SECTION in text, text  # the other benchmark's section is kept as it was
    assert text.count("<!-- BEGIN spike-throughput -->") == 1, text
    assert text.count("<!-- END spike-throughput -->") == 1, text
    for variant in VARIANTS:
        assert f"| {variant} |" in text, text
    assert str(Path(milter_binary).resolve()) in text, text
