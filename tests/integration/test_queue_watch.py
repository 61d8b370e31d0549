"""The queue watch of mailpulse-milter against a real Postfix: with mail deferred
(defer_transports), held (postsuper -h) and waiting in maildrop (pickup stopped), the
mailpulse_queue_* metrics of one scan match `postqueue -j` taken around it — the count of every
queue and the arrival of its oldest message — and the filesystem's free space matches statvfs.
A milter that may not read the queue (it runs as nobody; Postfix keeps its queues 0700 for
postfix) says which directory, why and what to do, and reports scan_success 0.

The milter scans every second here (milter.queue_interval = 1s; the default is 15s).
"""
import os
import signal
import time
from collections import Counter

import pytest

import sandbox
from conftest import start_mail_system

pytestmark = pytest.mark.usefixtures("milter_binary")

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def mail_system(request, workdir, user: str) -> sandbox.MailSystem:
    # The queue directory of the Postfix that MailSystem makes: the path is fixed in advance.
    queue = workdir / "postfix-mx1" / "queue"
    return start_mail_system(
        request, workdir, milter=True, dovecot=False,
        milter_args={"user": user, "queue_directory": queue,
                     "extra_config": 'queue_interval = "1s"\n'},
        # Nothing leaves: the sink's transport is deferred, and no retry comes during the test.
        defer_transports="smtp", queue_run_delay="1h", minimal_backoff_time="1h",
        maximal_backoff_time="2h")


def queue_metrics(milter) -> tuple:
    """(scan time, {queue: (messages, oldest arrival)}) of the milter's last scan."""
    m = milter.metrics()
    scanned = sandbox.metric_sum(m, "mailpulse_queue_scan_timestamp_seconds", mta="postfix")
    out = {}
    for q in QUEUES:
        n = sandbox.metric_sum(m, "mailpulse_queue_messages", mta="postfix", queue=q)
        age = sandbox.metric_sum(m, "mailpulse_queue_oldest_age_seconds", mta="postfix", queue=q)
        out[q] = (int(n), round(scanned - age) if n else None)
    return scanned, out


def postqueue_view(entries: list) -> dict:
    """{queue: (messages, oldest arrival)} as postqueue -j reports it."""
    counts = Counter(e["queue_name"] for e in entries)
    return {q: (counts[q], min((e["arrival_time"] for e in entries if e["queue_name"] == q),
                               default=None)) for q in QUEUES}


def matching_scan(mail, timeout: float = 20) -> tuple:
    """A scan that began after one postqueue -j and ended before an identical second one: the
    queue did not change around it, so both describe the same moment."""
    def attempt():
        started = time.time()
        before = mail.postfix.queue()
        scanned, ours = sandbox.poll(lambda: (lambda r: r if r[0] > started else None)(
            queue_metrics(mail.milter)), 5, "a queue scan after postqueue -j")
        after = mail.postfix.queue()
        ids = sorted((e["queue_id"], e["queue_name"]) for e in before)
        if ids != sorted((e["queue_id"], e["queue_name"]) for e in after):
            return None  # the queue moved meanwhile: try again
        return ours, postqueue_view(before), scanned
    return sandbox.poll(attempt, timeout, "a scan of a queue that stood still", interval=0.2)


def pickup_pid(postfix) -> int:
    [pid] = [p for p in sandbox.all_pids() if sandbox.parent_pid(p) == postfix.master_pid
             and open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0].endswith(b"pickup")]
    return pid


def test_counts_and_oldest_arrivals_match_postqueue_with_mail_deferred_held_and_in_maildrop(
        request, workdir):
    mail = mail_system(request, workdir, user="postfix")
    postfix = mail.postfix
    for i in range(3):
        assert sandbox.send_swaks(postfix.port, subject=f"first {i}").returncode == 0
    sandbox.poll(lambda: [e["queue_name"] for e in postfix.queue()] == ["deferred"] * 3, 20,
                 "three messages deferred")
    # A second batch at least a second later, so the oldest message of each queue differs.
    first_arrival = min(e["arrival_time"] for e in postfix.queue())
    sandbox.poll(lambda: time.time() >= first_arrival + 1.5, 5, "a later second")
    for i in range(2):
        assert sandbox.send_swaks(postfix.port, subject=f"second {i}").returncode == 0
    sandbox.poll(lambda: len(postfix.queue()) == 5 and all(
        e["queue_name"] == "deferred" for e in postfix.queue()), 20, "five messages deferred")
    oldest = min(postfix.queue(), key=lambda e: e["arrival_time"])
    sandbox.run(["postsuper", "-c", str(postfix.config_dir), "-h", oldest["queue_id"]])
    # Local submission with pickup stopped: the message waits in maildrop.
    pickup = pickup_pid(postfix)
    os.kill(pickup, signal.SIGSTOP)
    request.addfinalizer(lambda: sandbox.pid_alive(pickup) and os.kill(pickup, signal.SIGCONT))
    postfix.sendmail(f"alice@{sandbox.SINK_DOMAIN}")
    sandbox.poll(lambda: any(e["queue_name"] == "maildrop" for e in postfix.queue()), 10,
                 "a message in maildrop")

    ours, theirs, scanned = matching_scan(mail)
    assert ours == theirs, (ours, theirs)
    assert theirs["deferred"][0] == 4 and theirs["hold"][0] == 1 and theirs["maildrop"][0] == 1
    assert theirs["hold"][1] == first_arrival
    # The age itself: from the scan to the arrival, the same second as postqueue's.
    m = mail.milter.metrics()
    age = sandbox.metric_sum(m, "mailpulse_queue_oldest_age_seconds", mta="postfix",
                             queue="hold")
    assert age > 1 and abs(scanned - age - theirs["hold"][1]) < 1.01
    assert sandbox.metric_sum(m, "mailpulse_queue_scan_success", mta="postfix") == 1

    fs = os.statvfs(postfix.queue_dir)
    free = sandbox.metric_sum(m, "mailpulse_queue_filesystem_free_bytes", mta="postfix")
    assert abs(free - fs.f_bavail * fs.f_frsize) <= max(0.01 * free, 64 << 20)
    inodes = sandbox.metric_sum(m, "mailpulse_queue_filesystem_free_inodes", mta="postfix")
    assert abs(inodes - fs.f_favail) <= max(0.01 * inodes, 1000)

    # Pickup resumes: the maildrop empties, and the next scan says so.
    os.kill(pickup, signal.SIGCONT)
    sandbox.poll(lambda: not any(e["queue_name"] == "maildrop" for e in postfix.queue()), 20,
                 "maildrop picked up")
    ours, theirs, _ = matching_scan(mail)
    assert ours == theirs and ours["maildrop"] == (0, None) and ours["deferred"][0] == 5


def test_a_milter_that_may_not_read_the_queue_says_where_why_and_what_to_do(request, workdir):
    mail = mail_system(request, workdir, user="nobody")
    queue = mail.postfix.queue_dir
    line = sandbox.poll(lambda: [ln for ln in mail.milter.stderr_text().splitlines()
                                 if "Permission denied" in ln], 20,
                        "a queue watch warning about permissions")[0]
    assert f"cannot read {queue}/" in line
    assert 'milter.user = "postfix"' in line and "CAP_DAC_READ_SEARCH" in line
    m = mail.milter.wait_for_metric("mailpulse_queue_scan_errors_total", 2, mta="postfix")
    assert sandbox.metric_sum(m, "mailpulse_queue_scan_success", mta="postfix") == 0
    assert not any(n == "mailpulse_queue_messages" for n, _ in m)  # never a made-up count
    # Logged once per state, not at every scan.
    sandbox.poll(lambda: sandbox.metric_sum(mail.milter.metrics(),
                                            "mailpulse_queue_scan_errors_total") >= 4, 20,
                 "more failed scans")
    warnings = [ln for ln in mail.milter.stderr_text().splitlines() if "queue watch" in ln]
    assert sum("Permission denied" in ln for ln in warnings) == 1, warnings
