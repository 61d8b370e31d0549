"""mailpulse-milter inside a real Postfix: a known mix of traffic goes through, and every
counter on /metrics must equal the mix exactly and agree with Postfix's own log.

The mix, by direction (127.0.0.1 is an untrusted "internet" client, 127.0.0.2 is in the
milter's trusted networks and Postfix's mynetworks, SASL clients are outbound, sendmail(1)
is local):
  inbound   swaks, 1 message                                  conn 1, msg 1, rcpt 1
  inbound   smtp-source, 3 messages on one connection         conn 1, msg 3, rcpt 3
  inbound   3 recipients, 1 unknown (550 5.1.1)               conn 1, msg 1, rcpt 2, reject rcpt
  inbound   relay denied (554 5.7.1)                          conn 1, reject rcpt
  inbound   client on the access map, 127.0.0.3 (554 5.7.1)   conn 1, reject connect
  inbound   HELO on the HELO access map (554 5.7.1)           conn 1, reject helo
  inbound   sender on the sender access map (554 5.7.1)       conn 1, reject mail
  inbound   QUIT after RCPT                                   conn 1, abort 1
  inbound   connection dropped mid-DATA                       conn 1, abort 1
  inbound   STARTTLS                                          conn 1, tls 1, msg 1, rcpt 1
  outbound  STARTTLS + AUTH on submission                     conn 1, tls 1, msg 1, rcpt 1
  outbound  trusted client 127.0.0.2 relaying                 conn 1, msg 1, rcpt 1
  local     sendmail(1)                                       conn 1, msg 1, rcpt 1
"""
import re
import socket

import pytest

import sandbox
from conftest import start_mail_system
from sandbox import REJECTED_CLIENT, SASL_PASSWORD, SASL_USER, TRUSTED_CLIENT, metric_sum

BAD_HELO = "bad-helo.mailpulse.test"
BAD_SENDER = "spammer@bad.mailpulse.test"


@pytest.fixture(scope="module")
def mail(request, module_workdir):
    return start_mail_system(
        request, module_workdir, milter=True,
        smtpd_helo_restrictions=f"check_helo_access inline:{{ {BAD_HELO}=REJECT }}",
        smtpd_sender_restrictions=f"check_sender_access inline:{{ {BAD_SENDER}=REJECT }}")


def drop_mid_data(port: int) -> None:
    """Sends MAIL, RCPT, DATA and half a header, then closes the socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")

        def command(line: bytes, expect: bytes) -> None:
            f.write(line + b"\r\n")
            f.flush()
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
            assert reply.startswith(expect), reply

        banner = f.readline()
        assert banner.startswith(b"220"), banner
        command(b"EHLO client.mailpulse.test", b"250")
        command(b"MAIL FROM:<sender@mailpulse.test>", b"250")
        command(b"RCPT TO:<alice@sink.test>", b"250")
        command(b"DATA", b"354")
        f.write(b"Subject: this message never ends\r\nX-Partial: ")
        f.flush()


def swaks(port: int, *args: str) -> sandbox.SwaksResult:
    proc = sandbox.run(["swaks", "--server", f"127.0.0.1:{port}", "--timeout", "20", *args],
                       check=False)
    return sandbox.SwaksResult(proc.returncode, proc.stdout + proc.stderr)


def send_known_mix(mail) -> None:
    port, sub = mail.postfix.port, mail.postfix.submission_port
    assert sandbox.send_swaks(port, "alice@sink.test").returncode == 0
    sandbox.run(["smtp-source", "-d", "-s", "1", "-m", "3", "-l", "2048",
                 "-f", "sender@mailpulse.test", "-t", "bob@sink.test", f"127.0.0.1:{port}"])
    r = sandbox.smtp_session(port, ["alice@sink.test", "nobody@sink.test", "bob@sink.test"])
    assert r.codes("RCPT") == [250, 550, 250] and r.delivered, r.replies
    assert "Relay access denied" in sandbox.send_swaks(port, "someone@other.test").last_reply
    assert "Client host rejected" in sandbox.send_swaks(
        port, local_interface=REJECTED_CLIENT).last_reply
    r = swaks(port, "--helo", BAD_HELO, "--from", "sender@mailpulse.test",
              "--to", "alice@sink.test")
    assert "Helo command rejected" in r.last_reply, r.output
    r = swaks(port, "--helo", "client.mailpulse.test", "--from", BAD_SENDER,
              "--to", "alice@sink.test")
    assert "Sender address rejected" in r.last_reply, r.output
    r = sandbox.smtp_session(port, "alice@sink.test", quit_after="RCPT")
    assert r.codes("RCPT") == [250], r.replies
    drop_mid_data(port)
    r = sandbox.smtp_session(port, "carol@sink.test", starttls=True)
    assert r.tls_version and r.delivered, r.replies
    r = sandbox.smtp_session(sub, "someone@other.test", starttls=True,
                             auth=(SASL_USER, SASL_PASSWORD))
    assert r.delivered, r.replies
    r = sandbox.smtp_session(port, "friend@other.test", source=TRUSTED_CLIENT)
    assert r.delivered, r.replies
    mail.postfix.sendmail("dave@sink.test")


EXPECTED = {
    # metric: {direction: value}
    "mailpulse_milter_connections_total": {"inbound": 10, "outbound": 2, "local": 1},
    "mailpulse_milter_tls_connections_total": {"inbound": 1, "outbound": 1, "local": 0},
    "mailpulse_milter_messages_total": {"inbound": 6, "outbound": 2, "local": 1},
    "mailpulse_milter_recipients_total": {"inbound": 7, "outbound": 2, "local": 1},
    "mailpulse_milter_aborts_total": {"inbound": 2, "outbound": 0, "local": 0},
}
EXPECTED_REJECTS = {
    ("inbound", "rcpt", "5.1.1"): 1,
    ("inbound", "rcpt", "5.7.1"): 1,
    ("inbound", "connect", "5.7.1"): 1,
    ("inbound", "helo", "5.7.1"): 1,
    ("inbound", "mail", "5.7.1"): 1,
}


@pytest.fixture(scope="module")
def counted(mail):
    """Sends the mix once; returns /metrics after every connection has been counted."""
    send_known_mix(mail)
    mail.postfix.wait_for_queue_empty()
    want = sum(EXPECTED["mailpulse_milter_connections_total"].values())
    return mail.milter.wait_for_metric("mailpulse_milter_connections_total", want)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counter_equals_the_known_mix(counted, name):
    got = {d: metric_sum(counted, name, direction=d) for d in EXPECTED[name]}
    assert got == EXPECTED[name]


def test_rejects_by_direction_stage_and_status(counted):
    got = {(dict(labels)["direction"], dict(labels)["stage"], dict(labels)["status"]): v
           for (name, labels), v in counted.items()
           if name == "mailpulse_milter_rejects_total" and v}
    assert got == EXPECTED_REJECTS


def test_totals_agree_with_postfix_log(mail, counted):
    log = mail.postfix.log_text()
    queued = re.findall(r"qmgr\[\d+\]: \w+: from=<[^>]*>, size=\d+, nrcpt=(\d+)", log)
    smtpd_disconnects = re.findall(r"/smtpd\[\d+\]: disconnect from", log)
    # NOQUEUE before the first accepted recipient, the queue id after it.
    rejects = re.findall(r": \w+: reject: RCPT from", log)
    pickups = re.findall(r"pickup\[\d+\]: \w+: uid=", log)
    assert metric_sum(counted, "mailpulse_milter_messages_total") == len(queued)
    assert metric_sum(counted, "mailpulse_milter_recipients_total") == sum(map(int, queued))
    assert metric_sum(counted, "mailpulse_milter_rejects_total") == len(rejects)
    # Every smtpd session is one milter connection; every local submission is one more.
    assert metric_sum(counted, "mailpulse_milter_connections_total") == (
        len(smtpd_disconnects) + len(pickups))


def test_bytes_count_headers_and_body_as_the_milter_sees_them(mail, counted):
    before = metric_sum(mail.milter.metrics(), "mailpulse_milter_bytes_total", direction="inbound")
    body = "line one\nline two\n" + "x" * 1000 + "\n"
    r = sandbox.smtp_session(mail.postfix.port, "alice@sink.test", subject="bytes",
                             headers=["X-Test: exact"], body=body)
    assert r.delivered, r.replies
    m = mail.milter.wait_for_metric("mailpulse_milter_messages_total", 7, direction="inbound")
    got = metric_sum(m, "mailpulse_milter_bytes_total", direction="inbound") - before
    sent = sandbox.poll(lambda: [m for m in mail.sink.messages()
                                 if m.header("Subject") == ["bytes"]], 30, "the message at the sink")
    assert len(sent) == 1
    # Recompute from what the client sent: each header "Name: value" CRLF, the empty line,
    # then the body lines with CRLF. Postfix adds only its Received: header, which no milter
    # sees.
    head = sent[0].text.split("\n\n", 1)[0]
    headers = [h for h in re.split(r"\n(?![ \t])", head) if not h.lower().startswith("received:")]
    expected = sum(len(h) + 2 for h in headers) + 2 + sum(len(l) + 2 for l in body.splitlines())
    assert got == expected


def test_one_log_line_per_message_with_the_queue_id(mail, counted):
    queue_ids = re.findall(r"qmgr\[\d+\]: (\w+): from=", mail.postfix.log_text())
    milter_log = mail.milter.stderr_text()
    logged = re.findall(r"info: (\w+): milter: direction=\w+ client=\S+ tls=\w+ auth=\w+ "
                        r"nrcpt=\d+ size=\d+", milter_log)
    assert sorted(logged) == sorted(queue_ids)


def test_metrics_pass_promtool(mail, counted):
    """Prometheus' own linter accepts the exposition, rejects included."""
    proc = sandbox.run(["promtool", "check", "metrics"], input=mail.milter.metrics_text(),
                       check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
