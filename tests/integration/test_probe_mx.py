"""`mailpulse-probe check --mx DOMAIN` against a real DNS server and a real Postfix on loopback.

dnsmasq (dns_server.DnsServer) serves the mail domains below on its own port, and every check
names it with --resolver, so no real DNS is ever asked. MX records carry no port: the check's
port (the sandbox Postfix's) applies to every MX host, so each MX host gets its own loopback
address — mx1.mailpulse.test is the Postfix on 127.0.0.1:P, down.mailpulse.test is 127.0.0.5,
where nothing listens on P (connection refused). The Postfix certificate is for
mx1.mailpulse.test; mx-alias.mailpulse.test reaches the same Postfix under a name the
certificate does not carry.

Each case asserts the Nagios status line: state, failure kind, phase and exact text.
"""
import re
import socket

import pytest

import sandbox
from conftest import start_mail_system
from dns_server import DnsServer, free_udp_and_tcp_port, null_mx, raw_mx
from smtp_fakes import run_check

TIMEOUT = ["--timeout", "10"]
CERT_OK = ["--cert-warn-days", "1", "--cert-crit-days", "0"]  # the sandbox cert has 3 days

RECORDS = [
    "--host-record=mx1.mailpulse.test,127.0.0.1",
    "--host-record=mx-alias.mailpulse.test,127.0.0.1",
    "--host-record=down.mailpulse.test,127.0.0.5",
    "--mx-host=ok.mail.test,mx1.mailpulse.test,10",
    # the preferred host refuses; RFC 5321 5.1: go on to the next one
    "--mx-host=fallback.mail.test,down.mailpulse.test,10",
    "--mx-host=fallback.mail.test,mx1.mailpulse.test,20",
    # the preferred host has no address (NXDOMAIN): skipped
    "--mx-host=skip.mail.test,ghost.mailpulse.test,10",
    "--mx-host=skip.mail.test,mx1.mailpulse.test,20",
    "--mx-host=noaddress.mail.test,ghost.mailpulse.test,10",
    "--mx-host=alias.mail.test,mx-alias.mailpulse.test,10",
    null_mx("nullmx.mail.test"),
    "--host-record=implicit.mail.test,127.0.0.1",  # no MX: the domain is its own MX
    "--txt-record=empty.mail.test,no mail here",   # exists, but no MX and no address
    raw_mx("hostile.mail.test", 10, [b"a.b", b"example"]),  # a label with a dot in it
]


pytestmark = pytest.mark.usefixtures("probe_binary")


@pytest.fixture(scope="module")
def mail(request, module_workdir):
    return start_mail_system(request, module_workdir, dovecot=False)


@pytest.fixture(scope="module")
def dns(request, module_workdir):
    server = DnsServer(module_workdir, RECORDS)
    request.addfinalizer(server.stop)
    return server.start()


@pytest.fixture(scope="module")
def ca_file(mail):
    cert, _ = sandbox.make_tls_cert(mail.workdir, mail.postfix.hostname)
    return cert


def check_mx(dns, domain: str, port: int, *args: str):
    return run_check(*TIMEOUT, "--resolver", dns.address, *args, "--mx", f"{domain}:{port}")


def report(result) -> str:
    return result.stdout.rsplit(result.status_line, 1)[0]


def assert_ok_via(result, domain: str, port: int, mx_host: str) -> None:
    """OK for DOMAIN:PORT, the dns phase timed, and the report naming the MX host reached."""
    assert result.returncode == 0 and result.state == "OK", result.info
    assert re.match(rf"{re.escape(domain)}:{port} [0-9.]+s\b", result.message), result.info
    assert "dns" in result.perfdata and "connect" in result.perfdata, result.info
    assert f"mx host        {mx_host}\n" in report(result), result.info
    assert f"address        127.0.0.1:{port}\n" in report(result), result.info


def assert_dns_failure(result, text: str, within: float = 5.0) -> None:
    assert result.returncode == 2 and result.state == "CRITICAL", result.info
    assert result.failure == ("dns_failure", "dns", text), result.info
    assert "connect" not in result.perfdata, result.info
    assert result.wall < within, result.info


def test_mx_domain_is_checked_at_its_mx_host(mail, dns):
    port = mail.postfix.port
    result = check_mx(dns, "ok.mail.test", port)
    assert_ok_via(result, "ok.mail.test", port, "mx1.mailpulse.test")


def test_refusing_preferred_mx_host_hands_over_to_the_next(mail, dns):
    port = mail.postfix.port
    result = check_mx(dns, "fallback.mail.test", port, "--verbose")
    assert_ok_via(result, "fallback.mail.test", port, "mx1.mailpulse.test")
    # The preferred host was tried first and refused: not merely skipped.
    assert f"connect to 127.0.0.5:{port}: Connection refused" in result.stderr, result.info


def test_mx_host_without_an_address_is_skipped(mail, dns):
    port = mail.postfix.port
    result = check_mx(dns, "skip.mail.test", port)
    assert_ok_via(result, "skip.mail.test", port, "mx1.mailpulse.test")


def test_no_mx_host_with_an_address_is_a_dns_failure(mail, dns):
    result = check_mx(dns, "noaddress.mail.test", mail.postfix.port)
    assert_dns_failure(result, "noaddress.mail.test: no MX host has an address "
                               "(ghost.mailpulse.test: nodename nor servname provided, or not known)")


def test_domain_without_mx_is_its_own_mail_host(mail, dns):
    port = mail.postfix.port
    result = check_mx(dns, "implicit.mail.test", port)
    assert_ok_via(result, "implicit.mail.test", port, "implicit.mail.test")


def test_null_mx_is_a_dns_failure(mail, dns):
    result = check_mx(dns, "nullmx.mail.test", mail.postfix.port)
    assert_dns_failure(result, "nullmx.mail.test: domain accepts no mail (null MX, RFC 7505)")


def test_nxdomain_is_a_dns_failure(mail, dns):
    result = check_mx(dns, "nosuch.mail.test", mail.postfix.port)
    assert_dns_failure(result, "nosuch.mail.test: no such domain (NXDOMAIN)")


def test_no_mx_and_no_address_is_a_dns_failure(mail, dns):
    result = check_mx(dns, "empty.mail.test", mail.postfix.port)
    assert_dns_failure(result, "empty.mail.test: no MX and no address "
                               "(non-recoverable failure in name resolution)")


def test_hostile_mx_name_is_refused_and_shown_escaped(mail, dns):
    result = check_mx(dns, "hostile.mail.test", mail.postfix.port)
    assert_dns_failure(result,
                       r"hostile.mail.test: no usable MX host ('a\.b.example' is not a host name)")


def test_starttls_certificate_is_checked_against_the_mx_host_name(mail, dns, ca_file):
    port = mail.postfix.port
    result = check_mx(dns, "ok.mail.test", port, *CERT_OK, "--tls", "starttls",
                      "--ca-file", ca_file)
    assert_ok_via(result, "ok.mail.test", port, "mx1.mailpulse.test")
    assert "verified     yes" in report(result), result.info


def test_certificate_without_the_mx_host_name_is_invalid(mail, dns, ca_file):
    result = check_mx(dns, "alias.mail.test", mail.postfix.port, *CERT_OK, "--tls", "starttls",
                      "--ca-file", ca_file)
    assert result.returncode == 2 and result.state == "CRITICAL", result.info
    assert result.failure == ("certificate_invalid", "tls_handshake", "hostname mismatch"), \
        result.info
    assert "mx host        mx-alias.mailpulse.test\n" in report(result), result.info


def test_tls_name_overrides_the_mx_host_name(mail, dns, ca_file):
    port = mail.postfix.port
    result = check_mx(dns, "alias.mail.test", port, *CERT_OK, "--tls", "starttls",
                      "--ca-file", ca_file, "--tls-name", "mx1.mailpulse.test")
    assert_ok_via(result, "alias.mail.test", port, "mx-alias.mailpulse.test")


def test_resolver_option_serves_plain_host_lookups_too(mail, dns):
    port = mail.postfix.port
    result = run_check(*TIMEOUT, "--resolver", dns.address, f"mx1.mailpulse.test:{port}")
    assert result.returncode == 0 and result.state == "OK", result.info
    assert "dns" in result.perfdata and "mx host" not in report(result), result.info


def test_hosts_file_still_answers_with_an_explicit_resolver(mail, dns):
    """dnsmasq runs with --no-hosts: only the probe's own /etc/hosts can know localhost."""
    result = run_check(*TIMEOUT, "--resolver", dns.address, f"localhost:{mail.postfix.port}")
    assert result.returncode == 0 and result.state == "OK", result.info


def test_dead_nameserver_is_a_quick_dns_failure():
    """Nothing listens on the port: the kernel refuses every query (ICMP port unreachable)."""
    port = free_udp_and_tcp_port()
    result = run_check("--timeout", "5", "--resolver", f"127.0.0.1:{port}", "--mx",
                       "ok.mail.test")
    assert_dns_failure(result, "ok.mail.test: Could not contact DNS servers", within=5)


def test_silent_nameserver_fails_at_the_phase_timeout():
    """A nameserver that takes the query and never answers: the check's own deadline ends it."""
    port = free_udp_and_tcp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", port))
        result = run_check("--timeout", "5", "--phase-timeout", "1.5", "--resolver",
                           f"127.0.0.1:{port}", "--mx", "ok.mail.test")
    assert_dns_failure(result, "ok.mail.test: no answer within 1.5s (waiting for the MX records)",
                       within=4)
    assert result.wall > 1.4, result.info


def test_mx_target_must_be_a_domain_not_an_address(dns):
    result = run_check("--resolver", dns.address, "--mx", "127.0.0.1:25")
    assert result.returncode == 3 and result.state == "UNKNOWN", result.info
    assert result.message == "--mx needs a mail domain, not the address 127.0.0.1", result.info


def test_resolver_must_be_an_address():
    result = run_check("--resolver", "ns.example.test", "--mx", "ok.mail.test")
    assert result.returncode == 3 and result.state == "UNKNOWN", result.info
    assert result.message == ("--resolver: nameserver 'ns.example.test' is not an IP address "
                              "(IP[:PORT])"), result.info
