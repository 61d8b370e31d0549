"""Smoke test of the probe comparison benchmark (tests/bench/probe_compare.py).

Its --quick mode must run end to end — Postfix, the blackbox exporter, probe_bench, check_smtp
processes, the held-sessions smtp-sink and openssl's s_server started, every run verified
against the tool's own account and Postfix's log, everything stopped — and write its section
to a temporary copy of the report, never docs/performance.md. This checks that the benchmark
works, not how fast anything is: the figures of a quick run on a shared machine mean nothing,
so none is asserted."""
import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sandbox

SCRIPT = sandbox.REPO_ROOT / "tests" / "bench" / "probe_compare.py"
TOOLS = ("mailpulse-probe", "check_smtp", "blackbox_exporter", "mailpulse-probe, verified")
OTHER_SECTION = ("<!-- BEGIN milter-throughput -->\nthe milter's figures\n"
                 "<!-- END milter-throughput -->\n")


def leftovers(workdir: Path) -> list:
    """Processes of the benchmark still alive: those it recorded in its work dir's .pids (a
    recycled PID has another name), and any whose command line or environment names its work
    dir (Postfix's daemons, the exporter's and openssl's arguments)."""
    found = []
    recorded = [line.split() for line in (workdir / ".pids").read_text().splitlines()]
    for kind, pid in recorded:
        with contextlib.suppress(OSError):
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if sandbox.pid_alive(int(pid)) and comm in kind:
                found.append(f"{pid} {kind}")
    for pid in sandbox.all_pids():
        with contextlib.suppress(OSError):
            seen = b"".join(Path(f"/proc/{pid}/{name}").read_bytes()
                            for name in ("cmdline", "environ"))
            if str(workdir).encode() in seen and sandbox.pid_alive(pid):
                found.append(f"{pid} {seen[:200]!r}")
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
    argv = [sys.executable, str(SCRIPT), "--quick", "--keep", "--write-doc", str(doc)]
    with subprocess.Popen(argv,
                          env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=110)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the benchmark stops everything it started, then exits
            stdout, stderr = proc.communicate(timeout=60)
            pytest.fail(f"the quick benchmark took over 110 s\n{stdout}\n{stderr[-4000:]}")
    report = f"stdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    found = re.search(r"^work dir (\S+);", stderr, re.M)
    assert found, report
    workdir = Path(found[1])
    try:  # --keep left the work dir, with the PIDs it recorded, for this check
        assert not leftovers(workdir), f"left running: {leftovers(workdir)}\n{report}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert proc.returncode == 0, report
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
