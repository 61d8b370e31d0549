"""`mailpulse-probe check` against a real sandboxed Postfix (with Dovecot SASL and smtp-sink).

The sandbox's Postfix listens on three ports: `port` (plain + STARTTLS, self-signed certificate
for mx1.mailpulse.test, valid for 3 days), `submission_port` (587-style: STARTTLS required,
AUTH through Dovecot) and `submissions_port` (465-style implicit TLS). Its policy gives the
replies asserted here: unknown users at sink.test get 550 5.1.1, relaying from 127.0.0.1 to
other domains 554 5.7.1 (see test_postfix_sandbox.py).

Checked: the plain, STARTTLS and implicit TLS checks with their per-phase report, TLS facts and
perfdata; certificate verification (an untrusted self-signed certificate; trusted through
--ca-file; the right name — the certificate names mx1.mailpulse.test, so verified checks of
127.0.0.1 give --tls-name) and expiry thresholds; AUTH; a real send that reaches the sink;
rejected recipients with Postfix's own reply; time thresholds; the Nagios exit codes, including
UNKNOWN for a password file others can read. The failed-AUTH test runs last: after a failed
login Dovecot slows later logins from the same address by seconds.
"""
import os
import re

import pytest

import sandbox
import smtp_fakes
from conftest import start_mail_system
from sandbox import SASL_PASSWORD, SASL_USER
from smtp_fakes import run_check

TIMEOUT = ["--timeout", "10"]
# The sandbox certificate has 3 days left: thresholds low enough that it passes.
CERT_OK = ["--cert-warn-days", "1", "--cert-crit-days", "0"]
FROM = "probe@mailpulse.test"
HELO = "probe.mailpulse.test"


pytestmark = pytest.mark.usefixtures("probe_binary")


@pytest.fixture(scope="module")
def mail(request, module_workdir):
    return start_mail_system(request, module_workdir, dovecot=True)


@pytest.fixture(scope="module")
def ca_file(mail):
    """The sandbox Postfix's self-signed certificate (make_tls_cert made it at start)."""
    cert, _ = sandbox.make_tls_cert(mail.workdir, mail.postfix.hostname)
    assert cert.exists()
    return cert


def password_file(mail, name: str, password: str, mode: int = 0o600):
    path = mail.workdir / name
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    os.chmod(path, mode)  # not subject to the umask
    return path


def target(port: int) -> str:
    return f"127.0.0.1:{port}"


def report(result) -> str:
    """The readable part of the output: everything above the status line."""
    return result.stdout.rsplit(result.status_line, 1)[0]


def assert_ok(result, port: int, phases: tuple) -> None:
    """Exit 0, `SMTP OK - 127.0.0.1:PORT N.NNNs | ...`, each phase timed in the perfdata, and
    `total=...s;W;C;0`."""
    assert result.returncode == 0, result.info
    assert result.state == "OK", result.info
    assert re.match(rf"127\.0\.0\.1:{port} [0-9]+\.[0-9]+s\b", result.message), result.info
    perf = result.perfdata
    for phase in phases:
        assert phase in perf and perf[phase].unit == "s", f"{phase}: no perfdata\n{result.info}"
    assert perf["total"].unit == "s" and perf["total"].min == "0", result.info
    assert perf["total"].value >= max(perf[p].value for p in phases), result.info


def assert_critical(result, kind: str, phase: str) -> str:
    """Exit 2, `SMTP CRITICAL - kind at phase: ...`; returns the reply or reason text."""
    assert result.returncode == 2, result.info
    assert result.state == "CRITICAL", result.info
    got_kind, got_phase, text = result.failure
    assert (got_kind, got_phase) == (kind, phase), result.info
    return text


def assert_tls_facts(result) -> None:
    assert "TLSv1.3" in report(result), result.info
    assert re.search(r"CN\s*=\s*mx1\.mailpulse\.test", report(result)), result.info
    perf = result.perfdata
    assert "cert_days" in perf, result.info
    assert 2 <= perf["cert_days"].value <= 3, result.info  # openssl req -days 3


def test_plain_connect_check(mail):
    result = run_check(*TIMEOUT, target(mail.postfix.port))
    assert_ok(result, mail.postfix.port, ("connect", "banner", "ehlo", "quit"))
    for phase in ("banner", "ehlo", "quit"):
        assert re.search(rf"\b{phase}\b", report(result)), f"{phase}: not reported\n{result.info}"
    assert "starttls" not in result.perfdata and "auth" not in result.perfdata, result.info


def test_host_name_is_resolved(mail):
    result = run_check(*TIMEOUT, f"localhost:{mail.postfix.port}")
    assert result.returncode == 0, result.info
    assert "dns" in result.perfdata, result.info


def test_starttls_insecure_shows_tls_facts(mail):
    result = run_check(*TIMEOUT, *CERT_OK, "--tls", "starttls", "--insecure",
                       target(mail.postfix.port))
    assert_ok(result, mail.postfix.port, ("banner", "ehlo", "starttls", "tls_handshake", "quit"))
    assert_tls_facts(result)


def test_starttls_self_signed_is_untrusted(mail):
    result = run_check(*TIMEOUT, *CERT_OK, "--tls", "starttls", target(mail.postfix.port))
    text = assert_critical(result, "certificate_invalid", "tls_handshake")
    assert re.search(r"self[- ]signed", text, re.I), result.info


def test_starttls_trusted_through_ca_file(mail, ca_file):
    result = run_check(*TIMEOUT, *CERT_OK, "--tls", "starttls", "--ca-file", ca_file,
                       "--tls-name", mail.postfix.hostname, target(mail.postfix.port))
    assert_ok(result, mail.postfix.port, ("starttls", "tls_handshake"))
    assert_tls_facts(result)


@pytest.mark.parametrize("tls_name", [None, "other.mailpulse.test"])
def test_trusted_certificate_with_the_wrong_name_is_invalid(mail, ca_file, tls_name):
    """The chain is good, the name is not: 127.0.0.1 (no IP SAN) or another host name."""
    name = ["--tls-name", tls_name] if tls_name else []
    result = run_check(*TIMEOUT, *CERT_OK, "--tls", "starttls", "--ca-file", ca_file, *name,
                       target(mail.postfix.port))
    text = assert_critical(result, "certificate_invalid", "tls_handshake")
    assert re.search(r"mismatch", text, re.I), result.info


def test_implicit_tls(mail):
    port = mail.postfix.submissions_port
    result = run_check(*TIMEOUT, *CERT_OK, "--tls", "implicit", "--insecure", target(port))
    assert_ok(result, port, ("tls_handshake", "banner", "ehlo", "quit"))
    assert "starttls" not in result.perfdata, result.info
    assert_tls_facts(result)


def test_auth_with_good_password(mail):
    port = mail.postfix.submission_port
    secret = password_file(mail, "password-good", SASL_PASSWORD)
    result = run_check(*TIMEOUT, *CERT_OK, "--tls", "starttls", "--insecure",
                       "--auth-user", SASL_USER, "--auth-password-file", secret, target(port))
    assert_ok(result, port, ("starttls", "tls_handshake", "auth", "quit"))
    assert SASL_PASSWORD not in result.stdout + result.stderr, result.info


def test_authenticated_send_relays_to_another_domain(mail):
    port = mail.postfix.submission_port
    secret = password_file(mail, "password-good", SASL_PASSWORD)
    before = {m.path for m in mail.sink.messages()}
    result = run_check(*TIMEOUT, *CERT_OK, "--tls", "starttls", "--insecure",
                       "--auth-user", SASL_USER, "--auth-password-file", secret,
                       "--from", SASL_USER, "--to", "someone@other.test", "--send",
                       target(port))
    assert_ok(result, port, ("auth", "mail", "rcpt", "data", "end_of_data"))
    mail.postfix.wait_for_queue_empty()
    arrived = [m for m in mail.sink.messages() if m.path not in before]
    assert [(m.mail_from, m.rcpt_to) for m in arrived] == [
        (SASL_USER, ["someone@other.test"])], result.info


def test_auth_not_offered_on_port_25(mail):
    secret = password_file(mail, "password-good", SASL_PASSWORD)
    result = run_check(*TIMEOUT, "--auth-user", SASL_USER, "--auth-password-file", secret,
                       target(mail.postfix.port))
    assert_critical(result, "auth_not_offered", "auth")


def test_send_reaches_the_sink(mail):
    before = {m.path for m in mail.sink.messages()}
    result = run_check(*TIMEOUT, "--helo", HELO, "--from", FROM, "--to", "alice@sink.test",
                       "--send", target(mail.postfix.port))
    assert_ok(result, mail.postfix.port,
              ("banner", "ehlo", "mail", "rcpt", "data", "end_of_data", "quit"))
    mail.postfix.wait_for_queue_empty()
    arrived = [m for m in mail.sink.messages() if m.path not in before]
    assert [(m.mail_from, m.rcpt_to) for m in arrived] == [(FROM, ["alice@sink.test"])], result.info
    received = " ".join(arrived[0].header("Received"))
    assert f"from {HELO} (unknown [127.0.0.1])" in received, received  # our --helo
    queue_id = re.search(r"with ESMTP id ([0-9A-Za-z]+)", received)[1]  # Postfix's queue id
    assert queue_id in report(result), f"queue id {queue_id} not reported\n{result.info}"


def test_unknown_recipient_is_550_at_rcpt(mail):
    result = run_check(*TIMEOUT, "--from", FROM, "--to", "nobody@sink.test", "--send",
                       target(mail.postfix.port))
    text = assert_critical(result, "reply_permanent", "rcpt")
    assert text.startswith("550 5.1.1 <nobody@sink.test>: Recipient address rejected"), result.info


def test_relay_denied_is_554_at_rcpt(mail):
    result = run_check(*TIMEOUT, "--from", FROM, "--to", "someone@other.test", "--send",
                       target(mail.postfix.port))
    text = assert_critical(result, "reply_permanent", "rcpt")
    assert text.startswith("554 5.7.1 <someone@other.test>: Relay access denied"), result.info


def test_certificate_expiry_warning(mail):
    result = run_check(*TIMEOUT, "--tls", "starttls", "--insecure", "--cert-warn-days", "30",
                       "--cert-crit-days", "1", target(mail.postfix.port))
    assert result.returncode == 1 and result.state == "WARNING", result.info
    assert re.search(r"cert|expir", result.message, re.I), result.info
    cert = result.perfdata["cert_days"]
    assert 2 <= cert.value <= 3 and (cert.warn, cert.crit) == ("30", "1"), result.info


def test_certificate_expiry_critical(mail):
    result = run_check(*TIMEOUT, "--tls", "starttls", "--insecure", "--cert-warn-days", "60",
                       "--cert-crit-days", "30", target(mail.postfix.port))
    assert result.returncode == 2 and result.state == "CRITICAL", result.info
    assert re.search(r"cert|expir", result.message, re.I), result.info
    cert = result.perfdata["cert_days"]
    assert 2 <= cert.value <= 3 and (cert.warn, cert.crit) == ("60", "30"), result.info


def test_slow_total_time_is_a_warning(mail):
    result = run_check(*TIMEOUT, "--warn", "0.000001", "--crit", "60",
                       target(mail.postfix.port))
    assert result.returncode == 1 and result.state == "WARNING", result.info
    total = result.perfdata["total"]
    assert float(total.warn) == 0.000001 and float(total.crit) == 60, result.info


def test_slower_than_crit_is_critical(mail):
    result = run_check(*TIMEOUT, "--warn", "0.000001", "--crit", "0.000002",
                       target(mail.postfix.port))
    assert result.returncode == 2 and result.state == "CRITICAL", result.info


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=oct)
def test_password_file_readable_by_others_is_refused(mail, mode):
    secret = password_file(mail, f"password-{mode:o}", SASL_PASSWORD, mode)
    result = run_check(*TIMEOUT, "--tls", "starttls", "--insecure", "--auth-user", SASL_USER,
                       "--auth-password-file", secret, target(mail.postfix.submission_port))
    assert result.returncode == 3 and result.state == "UNKNOWN", result.info
    assert str(secret) in result.stdout + result.stderr, result.info  # names the file
    assert SASL_PASSWORD not in result.stdout + result.stderr, result.info


def test_missing_password_file_is_unknown(mail):
    result = run_check(*TIMEOUT, "--tls", "starttls", "--insecure", "--auth-user", SASL_USER,
                       "--auth-password-file", mail.workdir / "no-such-file",
                       target(mail.postfix.submission_port))
    assert result.returncode == 3 and result.state == "UNKNOWN", result.info


def test_bad_usage_is_unknown(mail):
    result = run_check("--tls", "sometimes", target(mail.postfix.port))
    assert result.returncode == 3, result.info


# Last: after this, Dovecot delays logins from 127.0.0.1 for a while.
def test_auth_with_bad_password_is_rejected(mail):
    port = mail.postfix.submission_port
    secret = password_file(mail, "password-bad", "not-the-password")
    result = run_check(*TIMEOUT, *CERT_OK, "--tls", "starttls", "--insecure",
                       "--auth-user", SASL_USER, "--auth-password-file", secret, target(port))
    text = assert_critical(result, "auth_rejected", "auth")
    assert text.startswith("535 5.7.8"), result.info
    assert "not-the-password" not in result.stdout + result.stderr, result.info
