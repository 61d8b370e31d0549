"""Runs the demo once (demo.py --once) with the built milter and probe: it must send its
traffic, print the edge milter's live counters with the /metrics URL, every probe target OK
with its phase timings, a delivered round trip with its edge and mx hops, and an alert that
fires when it stops Postfix mx and resolves when mx is back; exit 0 and leave no process
behind."""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import sandbox

DEMO = Path(__file__).resolve().parent / "demo.py"


def test_demo_once_prints_live_counters_and_cleans_up(milter_binary, probe_binary):
    with tempfile.TemporaryFile("w+") as out:  # a file: a leaked daemon cannot hold it open
        proc = subprocess.run([sys.executable, str(DEMO), "--once"], stdout=out,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
        out.seek(0)
        output = out.read()
    assert proc.returncode == 0, output
    assert re.search(r"mailpulse-milter counters of edge at .*curl -s http://127\.0\.0\.1:\d+/metrics",
                     output), output
    assert re.search(r"^  connections_total  — ", output, re.M), output
    assert re.search(r"mailpulse-probe checks at .*curl -s http://127\.0\.0\.1:\d+/metrics",
                     output), output
    for target in ("smtp", "smtp-starttls", "submission", "smtps", "delivery", "roundtrip", "mx"):
        assert re.search(rf"^  {target} +OK +\d+\.\d+ ms .* banner \d+\.\d+ ", output, re.M), output
    assert re.search(r"^  submission .* auth \d", output, re.M), output
    assert re.search(r"^  delivery .* end_of_data \d", output, re.M), output
    journey = re.search(r"^  journey [0-9a-f]{32}  target roundtrip  delivered  \d+\.\d{3} s\n"
                        r"    sent +\d{4}-\d\d-\d\d [\d:.]+ UTC  qid \w+\n"
                        r"    edge +\d{4}-\d\d-\d\d [\d:.]+ UTC  \+\d+\.\d{3} s  qid \w+\n"
                        r"    mx +\d{4}-\d\d-\d\d [\d:.]+ UTC  \+\d+\.\d{3} s  qid \w+\n",
                        output, re.M)
    assert journey, output
    # The alert demonstration: mx stopped, the built-in alert fires with the failing phase,
    # `mailpulse-probe alerts` lists it, and it resolves once mx is back.
    assert re.search(r"^  notice: \[FIRING\] critical mx-down mx: mx: .*Connection refused "
                     r"\(2 failed checks in a row\)$", output, re.M), output
    assert re.search(r"^    firing +critical mx-down/mx ", output, re.M), output
    assert re.search(r"^  notice: \[RESOLVED\] critical mx-down mx: ", output, re.M), output
    assert "WARNING" not in output, output
    workdir = re.search(r"^Sandbox in (/tmp/mailpulse-demo-\S+):", output, re.M).group(1)
    assert not Path(workdir).exists()
    assert [pid for pid in sandbox.all_pids() if uses(pid, workdir)] == []


def uses(pid: int, workdir: str) -> bool:
    """Whether a live process runs in or was started with a path in workdir (Postfix's
    daemons run in its queue directory; smtp-sink, Dovecot and the milter name it)."""
    def read(how):
        try:
            return how()
        except OSError:  # gone, or unreadable after the process changed user
            return ""

    return sandbox.pid_alive(pid) and (
        workdir in read(lambda: os.readlink(f"/proc/{pid}/cwd"))
        or workdir in read(lambda: Path(f"/proc/{pid}/cmdline").read_text(errors="replace")))
