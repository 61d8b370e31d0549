"""Outbound spikes seen by mailpulse-milter in a real Postfix: an account authenticated on the
submission port floods, and the spike-started event reaches the event socket (a `mailpulse-probe
events` listener), with one log line, the metrics and `mailpulse-milter top`; the spike ends
after the flood. With throttling on, the flooding login gets 451 4.7.1 at MAIL above its limit
while another account and an allowed one go through untouched.

The milters run with spike_learning = 0 (no learning period after start, which would hold off
every spike for 5 minutes) and otherwise the defaults, except where a test says so; the flood
starts after the milter has been up for 30 s.
"""
import json
import re
import smtplib
import ssl
import subprocess
import time

import pytest

import sandbox
from conftest import start_mail_system
from probe_daemon import EventListener

FLOODER, OTHER, ALLOWED = "flood@mailpulse.test", "other@mailpulse.test", "bulk@mailpulse.test"
PASSWORD = "spike-secret"
USERS = {FLOODER: PASSWORD, OTHER: PASSWORD, ALLOWED: PASSWORD}

pytestmark = pytest.mark.usefixtures("milter_binary", "probe_binary")


def mail_system(request, workdir, listener, extra: str):
    config = (f'event_socket = "{listener.address}"\nspike_learning = "0s"\n{extra}')
    return start_mail_system(request, workdir, milter=True, dovecot_users=USERS,
                             milter_args={"extra_config": config})


def submit(port: int, login: str, n: int, sender: str, rcpts=("a@gmail.test", "b@yahoo.test")):
    """n messages in one STARTTLS + AUTH session on the submission port; returns the replies
    to MAIL of those refused (code, text) and how many were accepted."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    refused, accepted = [], 0
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.mailpulse.test",
                      timeout=30) as s:
        s.starttls(context=ctx)
        s.login(login, PASSWORD)
        for i in range(n):
            msg = f"From: <{sender}>\r\nSubject: note {i}\r\n\r\nHello {i}.\r\n"
            try:
                s.sendmail(sender, list(rcpts), msg)
                accepted += 1
            except smtplib.SMTPSenderRefused as e:
                refused.append((e.smtp_code, e.smtp_error.decode(errors="replace")))
    return accepted, refused


def spikes(listener, started=True):
    return [e["outbound_spike"] for e in listener.events()
            if "outbound_spike" in e and e["outbound_spike"]["started"] == started]


def test_an_authenticated_flood_is_a_spike_with_event_log_and_top(request, workdir):
    listener = EventListener(workdir)
    request.addfinalizer(listener.stop)
    listener.start()
    mail = mail_system(request, workdir, listener, 'spike_end_hold = "3s"\n')
    # Right after a start every key is new and the baseline is the average since the start:
    # give the detector half a minute of (quiet) history first.
    started = sandbox.metric_sum(mail.milter.metrics(), "mailpulse_milter_start_time_seconds")
    sandbox.poll(lambda: time.time() - started >= 30, 60, "the milter up for 30 s")
    t0 = time.time()
    accepted, refused = submit(mail.postfix.submission_port, FLOODER, 60, FLOODER)
    assert (accepted, refused) == (60, [])  # detection alone never refuses mail

    def login_spike():
        return [s for s in spikes(listener) if s["key_kind"] == "sasl_login"]
    [spike] = sandbox.poll(login_spike, 20, "a spike-started event for the login")
    assert spike["key"] == FLOODER and spike["source"] == "mx1"
    assert spike["time_unix_us"] / 1e6 - t0 < 10, spike  # within hold + ramp of the flood
    assert spike["messages_per_minute"] >= 60
    assert spike["recipients_per_minute"] >= 120
    assert spike["baseline_messages_per_minute"] < 2
    assert set(spike["recipient_domains"]) == {"gmail.test", "yahoo.test"}
    kinds = {s["key_kind"]: s["key"] for s in spikes(listener)}
    assert kinds.get("client_ip") == "127.0.0.1" and kinds.get("sender_domain") == "mailpulse.test"

    log = sandbox.poll(lambda: re.search(
        rf"outbound spike started: sasl_login {re.escape(FLOODER)}: [\d.]+ messages and [\d.]+ "
        r"recipients a minute \(baseline [\d.]+ and [\d.]+\); recipient domains \S+",
        mail.milter.stderr_text()), 10, "the spike's log line")
    assert log
    m = mail.milter.metrics()
    assert sandbox.metric_sum(m, "mailpulse_milter_outbound_spikes_total",
                              key_kind="sasl_login") == 1
    assert sandbox.metric_sum(m, "mailpulse_milter_outbound_keys_tracked",
                              key_kind="sasl_login") == 1

    top = subprocess.run([str(sandbox.milter_binary()), "top", "--url",
                          f"127.0.0.1:{mail.milter.metrics_port}", "-n", "3"],
                         capture_output=True, text=True, timeout=30)
    assert top.returncode == 0, top.stderr
    row = rf"^  sasl_login +{re.escape(FLOODER)} +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+  SPIKE$"
    assert re.search(row, top.stdout, re.M), top.stdout
    raw = json.loads(subprocess.run([str(sandbox.milter_binary()), "top", "--json", "--url",
                                     f"127.0.0.1:{mail.milter.metrics_port}"],
                                    capture_output=True, text=True, timeout=30).stdout)
    assert raw["sasl_login"]["top"][0]["key"] == FLOODER

    # The flood is over: the rate falls under half the threshold, and 3 s later the spike ends.
    [ended] = sandbox.poll(lambda: [s for s in spikes(listener, started=False)
                                    if s["key_kind"] == "sasl_login"], 60, "the spike's end")
    assert ended["key"] == FLOODER and ended["messages"] <= 60 and ended["duration_seconds"] > 3
    assert sandbox.metric_sum(mail.milter.metrics(), "mailpulse_milter_outbound_spike_active",
                              key_kind="sasl_login") == 0
    assert PASSWORD not in mail.milter.stderr_text()


def test_throttling_tempfails_the_flooding_login_only(request, workdir):
    listener = EventListener(workdir)
    request.addfinalizer(listener.stop)
    listener.start()
    # Only logins are keys here: every client of this sandbox comes from 127.0.0.1, and a
    # client_ip key would throttle them all together.
    extra = ('spike_keys = ["sasl_login"]\nthrottle = true\n'
             f'throttle_messages_per_minute = 30\nthrottle_allow = ["{ALLOWED}"]\n')
    mail = mail_system(request, workdir, listener, extra)
    port = mail.postfix.submission_port
    accepted, refused = submit(port, FLOODER, 40, FLOODER)
    assert accepted >= 5 and refused, (accepted, refused)
    assert accepted + len(refused) == 40
    for code, text in refused:
        assert code == 451 and text.startswith("4.7.1 Too much mail from login " + FLOODER), text
    # Another account and an allowed one are not affected.
    assert submit(port, OTHER, 4, OTHER) == (4, [])
    assert submit(port, ALLOWED, 40, ALLOWED) == (40, [])
    m = mail.milter.metrics()
    assert sandbox.metric_sum(m, "mailpulse_milter_outbound_throttled_total",
                              key_kind="sasl_login") == len(refused)
    assert re.search(rf"login={re.escape(FLOODER)}: throttled at MAIL: Too much mail",
                     mail.milter.stderr_text())
    # Every refused message was a temporary failure at MAIL: nothing was queued and bounced.
    mail.postfix.wait_for_queue_empty()
    assert "status=bounced" not in mail.postfix.log_text()
    assert "milter-reject: MAIL" in mail.postfix.log_text()
