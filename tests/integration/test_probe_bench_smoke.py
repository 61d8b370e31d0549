"""Smoke test of the probe comparison benchmark (tests/bench/probe_compare.py).

Its --quick mode must run end to end — Postfix, the blackbox exporter, probe_bench, check_smtp
processes, the held-sessions smtp-sink and openssl's s_server started, every run verified
against the tool's own account and Postfix's log, everything stopped — and write its section
to a temporary copy of the report, never docs/performance.md. This checks that the benchmark
works, not how fast anything is: the figures of a quick run on a shared machine mean nothing,
so none is asserted."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sandbox

SCRIPT = sandbox.REPO_ROOT / "tests" / "bench" / "probe_compare.py"
TOOLS = ("mailpulse-probe", "check_smtp", "blackbox_exporter", "mailpulse-probe, verified")
OTHER_SECTION = ("<!-- BEGIN milter-throughput -->\nthe milter's figures\n"
                 "<!-- END milter-throughput -->\n")


def leftovers(workdir: str) -> list:
    """Processes of this benchmark still alive: the kinds only it starts (probe_bench,
    check_smtp, the exporter, smtp-sink with -W), and any whose command line or environment
    names its work directory (Postfix, openssl s_server)."""
    found = []
    for pid in sandbox.all_pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ours = (comm in ("probe_bench", "check_smtp", "prometheus-blac")
                or (comm == "smtp-sink" and " -W ehlo:" in cmdline)
                or workdir in cmdline or workdir in environ)
        if ours and sandbox.pid_alive(pid):
            found.append(f"{pid} {cmdline}")
    return found


def test_quick_comparison_runs_verifies_and_reports_every_tool(tmp_path):
    probe_bench = sandbox.build_dir() / "tests" / "bench" / "probe_bench"
    if not probe_bench.exists():
        pytest.skip(f"probe_bench not built at {probe_bench}")
    for tool in ("/usr/lib/nagios/plugins/check_smtp", "/usr/bin/prometheus-blackbox-exporter"):
        if not Path(tool).exists():
            pytest.skip(f"{tool} missing: run contrib/dev/install-deps")
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n" + OTHER_SECTION)
    env = dict(os.environ, MAILPULSE_BUILD_DIR=str(sandbox.build_dir()))
    with subprocess.Popen([sys.executable, str(SCRIPT), "--quick", "--write-doc", str(doc)],
                          env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=110)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the benchmark stops everything it started, then exits
            stdout, stderr = proc.communicate(timeout=60)
            pytest.fail(f"the quick benchmark took over 110 s\n{stdout}\n{stderr[-4000:]}")
    report = f"stdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    workdir = re.search(r"^work dir (\S+);", stderr, re.M)
    assert workdir, report
    assert not leftovers(workdir[1]), f"left running: {leftovers(workdir[1])}\n{report}"
    assert proc.returncode == 0, report
    assert not Path(workdir[1]).exists(), f"work dir {workdir[1]} left behind\n{report}"
    assert "NOT VERIFIED" not in stderr, report

    compare, rest = stdout.split("## Every run", 1)
    for tool in TOOLS:  # a row: the tool, its concurrency, then its checks per second
        assert re.search(rf"^\| {re.escape(tool)} \| \d+ \| \d+ \|", compare, re.M), report
        assert re.search(rf"^\| {re.escape(tool)} \| \d+ \| \d+ \| \d+ \|.*\| yes \|$", rest,
                         re.M), report
    held = re.search(r"^\| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| [\d.]+ MiB \|", rest, re.M)
    assert held, report
    assert len(set(held.groups())) == 1, report  # all held at once and all succeeded
    assert "## Verdict" in rest, report

    text = doc.read_text()
    assert OTHER_SECTION in text, text  # the other benchmark's section is kept as it was
    assert text.count("<!-- BEGIN probe-compare -->") == 1, text
    assert text.count("<!-- END probe-compare -->") == 1, text
    for tool in TOOLS:
        assert f"| {tool} |" in text, text
    assert "concurrent plain sessions in one probe process" in text, text
