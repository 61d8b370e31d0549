"""`mailpulse-probe check` against scripted misbehaving SMTP servers (smtp_fakes.py).

Every broken server must end the check CRITICAL (exit 2) with its own failure kind, the phase
it happened at and, where the server said something, the server's own reply — and where the
server has already answered, well under the timeout: these run with --timeout 10 and must end
in under 5 s. Only the cases that are timeouts by nature (tarpit, full accept queue, a banner
slower than the timeout, a server that falls silent) run with a short timeout and take about
that long.

The probe CLI is one-shot, so a file descriptor or memory leak over thousands of failing
checks cannot show in one process here; test_many_failing_checks_exit_cleanly runs a few
hundred checks back to back and checks each ends cleanly and closes its connection. The fd
count over thousands of checks belongs to the daemon's tests.

Peak memory is VmHWM sampled every 5 ms while the probe runs (a lower bound for a probe that
ends within a few ms); a probe that let an endless line grow its buffers would run long
enough to be caught, and would fail the "ends in under 5 s" check besides.
"""
import re

import pytest

import sandbox
import smtp_fakes
from dns_server import DnsServer
from smtp_fakes import (Banner421, DataDisconnect, EndlessLine, FullBacklog, GarbageBanner,
                        MailRejecter, NoStartTls, RefusedPort, SlowBanner, StartTlsBroken,
                        Tarpit, Unresponsive, run_check)

TIMEOUT = ["--timeout", "10"]
ANSWERED_WITHIN = 5.0  # seconds, for servers that have already answered
SEND = ["--from", "probe@mailpulse.test", "--to", "alice@sink.test", "--send"]
MAX_RSS_KB = 64 * 1024


pytestmark = pytest.mark.usefixtures("probe_binary")


def target(fake) -> str:
    return f"127.0.0.1:{fake.port}"


def assert_critical(result, kind: str, phase: str, within: float | None = ANSWERED_WITHIN):
    """Exit 2, a CRITICAL status line naming kind and phase, ended within `within` s.
    Returns the reply or reason text of the line."""
    assert result.returncode == 2, result.info
    assert result.state == "CRITICAL", result.info
    got_kind, got_phase, text = result.failure
    assert (got_kind, got_phase) == (kind, phase), result.info
    if within is not None:
        assert result.wall < within, result.info
    assert result.peak_rss_kb < MAX_RSS_KB, result.info
    return text


def test_refused_port():
    with RefusedPort() as fake:
        result = run_check(*TIMEOUT, target(fake))
    text = assert_critical(result, "connection_refused", "connect")
    assert re.search(r"refused", text, re.I), result.info


def test_unknown_host_is_a_dns_failure(tmp_path):
    """Asked of a real DNS server on loopback (dnsmasq), never of the machine's resolver."""
    tmp_path.chmod(0o755)
    with DnsServer(tmp_path, ["--host-record=known.mail.test,127.0.0.1"]) as dns:
        result = run_check("--timeout", "5", "--resolver", dns.address, "no-such-host.mail.test:25")
    text = assert_critical(result, "dns_failure", "dns")
    assert "no-such-host.mail.test" in text, result.info


def test_full_accept_queue_is_a_connect_timeout():
    with FullBacklog() as fake:
        result = run_check("--timeout", "2", target(fake))
    assert_critical(result, "connect_timeout", "connect", within=None)
    assert 1.8 < result.wall < 4.5, result.info


def test_tarpit_is_a_banner_timeout():
    with Tarpit() as fake:
        result = run_check("--timeout", "2", target(fake))
        connections = fake.connections
    assert_critical(result, "banner_timeout", "banner", within=None)
    assert connections == 1
    assert 1.8 < result.wall < 4.5, result.info


def test_slow_banner_times_out_when_slower_than_the_timeout():
    with SlowBanner(delay=3.0) as fake:
        result = run_check("--timeout", "1.5", target(fake))
    assert_critical(result, "banner_timeout", "banner", within=None)
    assert 1.3 < result.wall < 2.9, result.info  # gave up at the timeout, before the banner came


def test_slow_banner_within_the_timeout_is_a_slow_success():
    with SlowBanner(delay=3.0) as fake:
        result = run_check(*TIMEOUT, "--warn", "1", "--crit", "8", target(fake))
    assert result.returncode == 1, result.info  # WARNING: 3 s is above --warn 1
    assert result.state == "WARNING", result.info
    perf = result.perfdata
    assert 2.9 < perf["banner"].value < 5, result.info
    assert perf["total"].value >= perf["banner"].value, result.info
    assert (perf["total"].warn, perf["total"].crit) == ("1", "8"), result.info


def test_421_at_banner():
    with Banner421() as fake:
        result = run_check(*TIMEOUT, target(fake))
    text = assert_critical(result, "reply_transient", "banner")
    assert Banner421.REPLY in text, result.info


def test_garbage_banner():
    with GarbageBanner() as fake:
        result = run_check(*TIMEOUT, target(fake))
    assert_critical(result, "protocol_violation", "banner")
    assert result.status_line.isprintable(), result.info  # the junk is not echoed raw


@pytest.mark.parametrize("where", ["banner", "ehlo"])
def test_endless_line_fails_fast_with_bounded_memory(where):
    with EndlessLine(where) as fake:
        result = run_check(*TIMEOUT, target(fake))
        swallowed = fake.bytes_sent
    assert_critical(result, "protocol_violation", where)
    assert result.peak_rss_kb < MAX_RSS_KB, result.info
    print(f"the fake pushed {swallowed} bytes of an endless {where} line before the probe "
          f"hung up; the probe's peak RSS {result.peak_rss_kb} kB")


def test_disconnect_in_the_middle_of_data():
    with DataDisconnect() as fake:
        result = run_check(*TIMEOUT, *SEND, target(fake))
        received = fake.data_received
    assert received, "the fake never got any message data"
    assert_critical(result, "server_closed", "end_of_data")


@pytest.mark.parametrize("at, kind, phase", [
    ("EHLO", "timeout", "ehlo"),
    ("MAIL", "timeout", "mail"),
    ("end_of_data", "uncertain", "end_of_data"),  # the message may have been queued
])
def test_server_falls_silent(at, kind, phase):
    with Unresponsive(at) as fake:
        result = run_check("--timeout", "2", *SEND, target(fake))
    assert_critical(result, kind, phase, within=None)
    assert 1.8 < result.wall < 4.5, result.info


@pytest.mark.parametrize("mode", ["garbage", "close"])
def test_starttls_advertised_but_handshake_fails(mode):
    with StartTlsBroken(mode) as fake:
        result = run_check(*TIMEOUT, "--tls", "starttls", "--insecure", target(fake))
        hello = fake.client_hello
    assert hello[:1] == b"\x16", "the probe sent no TLS ClientHello after 220"
    text = assert_critical(result, "tls_handshake_failed", "tls_handshake")
    assert text.strip(), result.info  # OpenSSL's reason


def test_starttls_not_offered():
    with NoStartTls() as fake:
        result = run_check(*TIMEOUT, "--tls", "starttls", "--insecure", target(fake))
        commands = [c.upper() for c in fake.commands]
    assert_critical(result, "starttls_not_offered", "starttls")
    assert "STARTTLS" not in commands, commands


@pytest.mark.parametrize("reply, kind", [
    ("451 4.3.0 <probe@mailpulse.test>: Temporary lookup failure", "reply_transient"),
    ("553 5.7.1 <probe@mailpulse.test>: Sender address rejected: not owned by user",
     "reply_permanent"),
], ids=["451", "553"])
def test_reply_at_mail(reply, kind):
    with MailRejecter(reply) as fake:
        result = run_check(*TIMEOUT, *SEND, target(fake))
        commands = [c.upper() for c in fake.commands]
    text = assert_critical(result, kind, "mail")
    assert reply in text, result.info
    assert not any(c.startswith(("RCPT", "DATA")) for c in commands), commands


@pytest.mark.parametrize("fake_class, kind, phase", [
    (RefusedPort, "connection_refused", "connect"),
    (Banner421, "reply_transient", "banner"),
])
def test_many_failing_checks_exit_cleanly(fake_class, kind, phase):
    """200 one-shot checks in a row: each exits 2 by itself (no signal, no sanitizer
    report) with the same failure, and closes its connection."""
    runs = 200
    with fake_class() as fake:
        results = [run_check(*TIMEOUT, target(fake)) for _ in range(runs)]
        if isinstance(fake, Banner421):  # the probe closed every connection it opened
            sandbox.poll(lambda: fake.closed_by_client >= runs, 10,
                         f"{runs} client closes (have {fake.closed_by_client} "
                         f"of {fake.connections} connections)")
    for r in results:
        assert r.returncode == 2 and r.failure[:2] == (kind, phase), r.info
        assert not re.search(r"Sanitizer|runtime error|terminate called", r.stderr), r.info
    walls = sorted(r.wall for r in results)
    print(f"{runs} checks against {fake_class.__name__}: median {walls[runs // 2]:.3f}s, "
          f"max {walls[-1]:.3f}s, peak RSS up to {max(r.peak_rss_kb for r in results)} kB")

