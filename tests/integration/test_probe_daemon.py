"""`mailpulse-probe run`, the scheduling daemon, against a real sandboxed Postfix (with Dovecot
SASL and smtp-sink), a real mailpulse-milter and scripted misbehaving servers.

Checked: every kind of [[target]] (plain, STARTTLS with a CA file, implicit TLS, AUTH through
Dovecot, a send that reaches the sink, a rejected recipient) ends up in /metrics with the
right values — success, phase durations, reply codes, certificate expiry, TLS version, checks
by result — and the exposition passes `promtool check metrics`; one log line per failed check
with the server's reply; each result as a probe-result event on probe.report_to, where the
probe id and queue id match the message Postfix delivered; SIGHUP adds, changes and removes
targets and keeps the running configuration when the new file is bad; SIGTERM stops the daemon
promptly with checks in flight; the concurrency bound holds; the event socket takes a real
milter's snapshots, drops a garbage peer and lives on, with mode 0660 and the configured group;
and thousands of failing checks leave no file descriptor and no memory behind.
"""
import os
import re
import signal
import socket
import stat
import subprocess
import time

import pytest

import sandbox
from conftest import start_mail_system
from dns_server import DnsServer, null_mx
from probe_daemon import EventListener, ProbeDaemon
from sandbox import SASL_PASSWORD, SASL_USER
from smtp_fakes import Banner421, GarbageBanner, RefusedPort, StartTlsBroken, Tarpit

pytestmark = pytest.mark.usefixtures("probe_binary")

FROM = "probe@mailpulse.test"
LONG = "1h"  # an interval that gives exactly one check within a test


@pytest.fixture(scope="module")
def mail(request, module_workdir):
    return start_mail_system(request, module_workdir, dovecot=True)


@pytest.fixture
def daemons(request):
    """Starts ProbeDaemons (and listeners) that stop, by PID, when the test ends."""
    started = []

    def start(component):
        started.append(component)
        return component.start()

    yield start
    for component in reversed(started):
        component.stop()


def password_file(workdir, password: str):
    path = workdir / "probe-password"
    path.write_text(password + "\n")
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)  # the daemon runs as nobody; SIGHUP rereads it
    return path


def postfix_targets(mail) -> list:
    pf = mail.postfix
    cert, _ = sandbox.make_tls_cert(mail.workdir, pf.hostname)
    secret = password_file(mail.workdir, SASL_PASSWORD)
    common = {"host": "127.0.0.1", "interval": LONG, "timeout": "10s",
              "helo": "probe.mailpulse.test"}
    return [
        {"name": "plain", "port": pf.port, **common},
        {"name": "starttls", "port": pf.port, "tls": "starttls", "ca_file": str(cert),
         "tls_name": pf.hostname, "cert_warn_days": 1, "cert_crit_days": 0, **common},
        {"name": "smtps", "port": pf.submissions_port, "tls": "implicit", "verify": False,
         "cert_warn_days": 1, "cert_crit_days": 0, **common},
        {"name": "submission", "port": pf.submission_port, "tls": "starttls", "verify": False,
         "auth_user": SASL_USER, "auth_password_file": str(secret), "cert_warn_days": 1,
         "cert_crit_days": 0, **common},
        {"name": "send", "port": pf.port, "send": True, "from": FROM, "to": ["alice@sink.test"],
         **common},
        {"name": "rejected", "port": pf.port, "send": True, "from": FROM,
         "to": ["nobody@sink.test"], **common},
    ]


def cert_not_after(cert) -> float:
    out = sandbox.run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)]).stdout
    stamp = out.strip().split("=", 1)[1]
    return time.mktime(time.strptime(stamp, "%b %d %H:%M:%S %Y GMT")) - time.timezone


def promtool_check(text: str) -> None:
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_kind_of_target_lands_in_the_metrics(mail, workdir, daemons):
    listener = daemons(EventListener(workdir))
    targets = postfix_targets(mail)
    probe = daemons(ProbeDaemon(workdir, targets, {"report_to": listener.address}))
    for t in targets:
        probe.wait_for_checks(t["name"], 1)
    m = probe.metrics()
    value = lambda name, **labels: sandbox.metric_sum(m, name, **labels)  # noqa: E731
    for name in ("plain", "starttls", "smtps", "submission", "send"):
        assert value("mailpulse_probe_success", target=name) == 1, probe.log_text()
        assert value("mailpulse_probe_checks_total", target=name, result="success") == 1
        assert value("mailpulse_probe_state", target=name) == 0
        assert value("mailpulse_probe_duration_seconds", target=name) > 0
        assert value("mailpulse_probe_last_reply_code", target=name, phase="banner") == 220
        assert value("mailpulse_probe_last_reply_code", target=name, phase="quit") == 221
    assert value("mailpulse_probe_success", target="rejected") == 0
    assert value("mailpulse_probe_checks_total", target="rejected", result="reply_permanent") == 1
    assert value("mailpulse_probe_state", target="rejected") == 2
    assert value("mailpulse_probe_last_reply_code", target="rejected", phase="rcpt") == 550
    for phase in ("connect", "banner", "ehlo", "mail", "rcpt", "data", "end_of_data", "quit"):
        assert value("mailpulse_probe_phase_duration_seconds", target="send", phase=phase) > 0
        assert value("mailpulse_probe_phase_seconds_count", target="send", phase=phase) == 1
    assert value("mailpulse_probe_last_reply_code", target="send", phase="data") == 354
    assert value("mailpulse_probe_last_reply_code", target="submission", phase="auth") == 235
    assert value("mailpulse_probe_phase_duration_seconds", target="smtps",
                 phase="tls_handshake") > 0
    assert not any(n == "mailpulse_probe_phase_duration_seconds" and ("phase", "mail") in ls
                   and ("target", "plain") in ls for n, ls in m)  # not reached by plain
    cert, _ = sandbox.make_tls_cert(mail.workdir, mail.postfix.hostname)
    for name in ("starttls", "smtps", "submission"):
        assert value("mailpulse_tls_version_info", target=name, version="TLSv1.3") == 1
        assert abs(value("mailpulse_tls_cert_not_after_timestamp_seconds", target=name)
                   - cert_not_after(cert)) < 2
    assert value("mailpulse_probe_targets") == len(targets)
    promtool_check(probe.metrics_text())
    assert probe.user() == "nobody"
    assert SASL_PASSWORD not in probe.log_text() + probe.metrics_text()


def test_one_log_line_per_failed_check_with_the_servers_reply(mail, workdir, daemons):
    targets = [t for t in postfix_targets(mail) if t["name"] in ("plain", "rejected")]
    probe = daemons(ProbeDaemon(workdir, targets))
    probe.wait_for_checks("rejected", 1)
    probe.wait_for_checks("plain", 1)
    lines = [line for line in probe.log_text().splitlines() if "target rejected" in line]
    assert len(lines) == 1, probe.log_text()
    assert re.search(r"warning: target rejected \(127\.0\.0\.1:\d+\): CRITICAL reply_permanent at "
                     r"rcpt: 550 5\.1\.1 <nobody@sink\.test>: Recipient address rejected", lines[0])
    assert "target plain" not in probe.log_text()  # successes are logged at debug level only


def test_probe_results_reach_report_to_as_events(mail, workdir, daemons):
    listener = daemons(EventListener(workdir))
    targets = [t for t in postfix_targets(mail) if t["name"] in ("send", "rejected", "starttls")]
    before = {m.path for m in mail.sink.messages()}
    daemons(ProbeDaemon(workdir, targets, {"report_to": listener.address, "name": "edge-probe"}))
    send = listener.wait_for_results("send")[0]
    rejected = listener.wait_for_results("rejected")[0]
    starttls = listener.wait_for_results("starttls")[0]
    assert send["source"] == "edge-probe" and send["success"] and send["state"] == "OK"
    assert [p["phase"] for p in send["phases"]] == [
        "connect", "banner", "ehlo", "mail", "rcpt", "data", "end_of_data", "quit"]
    assert [p["reply_code"] for p in send["phases"]] == [0, 220, 250, 250, 250, 354, 250, 221]
    assert send["address"] == f"127.0.0.1:{mail.postfix.port}"
    mail.postfix.wait_for_queue_empty()
    arrived = [m for m in mail.sink.messages() if m.path not in before]
    assert len(arrived) == 1, arrived
    message_id = arrived[0].header("Message-ID")[0]
    assert send["probe_id"] and send["probe_id"] in message_id, (send, message_id)
    received = " ".join(arrived[0].header("Received"))
    assert f"with ESMTP id {send['queue_id']}" in received, (send, received)
    assert rejected["result"] == "reply_permanent" and rejected["failed_phase"] == "rcpt"
    assert rejected["reply_code"] == 550 and rejected["enhanced_code"] == "5.1.1"
    assert rejected["reason"].startswith("550 5.1.1 <nobody@sink.test>: Recipient address")
    assert rejected["state"] == "CRITICAL"
    assert starttls["tls_version"] == "TLSv1.3" and starttls["cert_verified"]
    assert starttls["cert_not_after_unix"] > time.time()


def test_tls_resume_resumes_sessions_and_keeps_the_certificate_facts(mail, workdir, daemons):
    listener = daemons(EventListener(workdir))
    pf = mail.postfix
    cert, _ = sandbox.make_tls_cert(mail.workdir, pf.hostname)
    target = {"name": "resumed", "host": "127.0.0.1", "port": pf.port, "tls": "starttls",
              "ca_file": str(cert), "tls_name": pf.hostname, "interval": "100ms",
              "tls_resume": "1h", "cert_warn_days": 1, "cert_crit_days": 0}
    full = {**target, "name": "full", "tls_resume": 0}
    probe = daemons(ProbeDaemon(workdir, [target, full], {"report_to": listener.address}))
    results = listener.wait_for_results("resumed", 4)
    assert not results[0]["tls_resumed"], results[0]  # the first one makes the session
    later = results[1:]
    assert all(r["success"] and r["tls_resumed"] for r in later), later
    # The facts of the full handshake stay: the certificate, verified against its name.
    assert all(r["cert_verified"] and r["cert_not_after_unix"] == results[0]["cert_not_after_unix"]
               for r in later), later
    assert probe.metric("mailpulse_probe_tls_resumed", target="resumed") == 1
    assert abs(probe.metric("mailpulse_tls_cert_not_after_timestamp_seconds", target="resumed")
               - cert_not_after(cert)) < 2
    fulls = listener.wait_for_results("full", 3)
    assert not any(r["tls_resumed"] for r in fulls), fulls
    assert probe.metric("mailpulse_probe_tls_resumed", target="full") == 0


def test_mx_targets_use_the_configured_resolvers(mail, workdir, daemons):
    dns = daemons(DnsServer(workdir, ["--host-record=mx1.mailpulse.test,127.0.0.1",
                                      "--mx-host=ok.mail.test,mx1.mailpulse.test,10",
                                      null_mx("nullmx.mail.test")]))
    cert, _ = sandbox.make_tls_cert(mail.workdir, mail.postfix.hostname)
    listener = daemons(EventListener(workdir))
    common = {"mx": True, "port": mail.postfix.port, "interval": LONG}
    targets = [{"name": "domain", "host": "ok.mail.test", "tls": "starttls",
                "ca_file": str(cert), "cert_warn_days": 1, "cert_crit_days": 0, **common},
               {"name": "nullmx", "host": "nullmx.mail.test", **common}]
    probe = daemons(ProbeDaemon(workdir, targets, {"resolvers": [dns.address],
                                                   "report_to": listener.address}))
    domain = listener.wait_for_results("domain")[0]
    nullmx = listener.wait_for_results("nullmx")[0]
    assert domain["success"] and domain["cert_verified"], domain  # against mx1.mailpulse.test
    assert domain["address"] == f"127.0.0.1:{mail.postfix.port}"
    assert [p["phase"] for p in domain["phases"]][:2] == ["dns", "connect"]
    assert nullmx["result"] == "dns_failure" and nullmx["failed_phase"] == "dns"
    assert "null MX" in nullmx["reason"], nullmx
    assert probe.metric("mailpulse_probe_success", target="domain") == 1
    assert probe.metric("mailpulse_probe_phase_duration_seconds", target="domain", phase="dns") > 0


def test_sighup_adds_changes_and_removes_targets(workdir, daemons):
    with RefusedPort() as refused, Banner421() as b421:
        a = {"name": "a", "host": "127.0.0.1", "port": refused.port, "interval": "50ms"}
        b = {"name": "b", "host": "127.0.0.1", "port": refused.port, "interval": "50ms"}
        probe = daemons(ProbeDaemon(workdir, [a, b]))
        probe.wait_for_checks("a", 2)
        probe.wait_for_checks("b", 2)
        c = {"name": "c", "host": "127.0.0.1", "port": refused.port, "interval": "50ms"}
        b_moved = {**b, "port": b421.port}
        probe.write_config(targets=[b_moved, c])
        probe.reload()
        probe.wait_for_checks("c", 2)
        probe.wait_for_metric("mailpulse_probe_checks_total", 1, target="b",
                              result="reply_transient")
        m = probe.metrics()
        assert not any(("target", "a") in ls for _, ls in m), "removed target a is still shown"
        assert sandbox.metric_sum(m, "mailpulse_probe_targets") == 2
        assert sandbox.metric_sum(m, "mailpulse_probe_config_last_reload_successful") == 1

        probe.write_config(text=probe.config_path.read_text() + "\n[[target]]\nname = \"d\"\n")
        probe.reload(expect="failure")
        log = probe.log_text()
        assert re.search(rf"error: reload failed, keeping the running configuration: "
                         rf"{re.escape(str(probe.config_path))}:\d+:1: \[\[target\]\] lacks the "
                         rf"required key 'target.host'", log), log
        assert probe.metric("mailpulse_probe_config_last_reload_successful") == 0
        seen = probe.metric("mailpulse_probe_checks_total", target="c")
        probe.wait_for_checks("c", seen + 2)  # the running configuration goes on
        assert probe.proc.poll() is None
        probe.stop()  # before the fakes: a stopping fake must not be hammered


def test_sigterm_stops_promptly_with_checks_in_flight(workdir, daemons):
    with Tarpit() as tarpit:
        t = {"name": "tarpit", "host": "127.0.0.1", "port": tarpit.port, "timeout": "30s"}
        probe = daemons(ProbeDaemon(workdir, [t]))
        probe.wait_for_metric("mailpulse_probe_checks_running", 1)
        sandbox.poll(lambda: tarpit.open_now == 1, 10, "the probe's connection at the tarpit")
        start = time.monotonic()
        probe.signal(signal.SIGTERM)
        probe.proc.wait(timeout=10)
        assert probe.proc.returncode == 0, probe.log_text()
        assert time.monotonic() - start < 3
        assert "stopping; 1 checks in flight abandoned" in probe.log_text()
        sandbox.poll(lambda: tarpit.open_now == 0, 10, "the tarpit connection to close")


def client_connections(port: int) -> int:
    """Established TCP connections to 127.0.0.1:port, counted on the client side from
    /proc/net/tcp: a socket the client closed leaves ESTABLISHED at once, whereas the server
    side notices only when it next reads."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f][1:]
    return sum(1 for r in rows if r[2].endswith(f":{port:04X}") and r[3] == "01")


def test_concurrency_bound_holds(workdir, daemons):
    with Tarpit() as tarpit:
        targets = [{"name": f"t{i}", "host": "127.0.0.1", "port": tarpit.port,
                    "timeout": "1s", "interval": "100ms"} for i in range(6)]
        probe = daemons(ProbeDaemon(workdir, targets, {"max_concurrent_checks": 2}))
        most = 0

        def eight_checks_done() -> bool:
            nonlocal most
            most = max(most, client_connections(tarpit.port))
            return probe.metric("mailpulse_probe_checks_total", result="banner_timeout") >= 8

        sandbox.poll(eight_checks_done, 30, "8 checks of the tarpit", interval=0.01)
        assert 1 <= most <= 2, most
        m = probe.metrics()
        assert sandbox.metric_sum(m, "mailpulse_probe_checks_running") <= 2
        # Checks waited for a slot: the lag histogram saw some of at least a second.
        lag_count = sandbox.metric_sum(m, "mailpulse_probe_schedule_lag_seconds_count")
        fast = sandbox.metric_sum(m, "mailpulse_probe_schedule_lag_seconds_bucket", le="0.5")
        assert lag_count > fast, (lag_count, fast)
        assert all(sandbox.metric_sum(m, "mailpulse_probe_checks_total", target=f"t{i}") >= 1
                   for i in range(6)), "a target starved"
        probe.stop()


def test_event_socket_takes_milter_snapshots_and_survives_garbage(workdir, daemons):
    probe = daemons(ProbeDaemon(workdir, [], {"event_socket_group": "postfix"}))
    st = os.stat(probe.event_socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    import grp
    import pwd
    assert pwd.getpwuid(st.st_uid).pw_name == "nobody"
    assert grp.getgrgid(st.st_gid).gr_name == "postfix"
    milter = daemons(sandbox.MilterProcess(
        workdir, extra_config=f'event_socket = "unix:{probe.event_socket}"\n'
                              'snapshot_interval = "200ms"\n'))
    probe.wait_for_metric("mailpulse_probe_events_received_total", 2, kind="traffic_snapshot")
    with socket.socket(socket.AF_UNIX) as garbage:
        garbage.connect(str(probe.event_socket))
        garbage.sendall(b"\xff" * 64)
        probe.wait_for_metric("mailpulse_probe_event_peers_dropped_total", 1)
    seen = probe.metric("mailpulse_probe_events_received_total", kind="traffic_snapshot")
    probe.wait_for_metric("mailpulse_probe_events_received_total", seen + 2,
                          kind="traffic_snapshot")
    assert "dropping the connection" in probe.log_text()
    assert probe.metric("mailpulse_probe_event_peers") == 1  # the milter
    assert milter.proc.poll() is None and probe.proc.poll() is None


def test_no_descriptor_or_memory_leak_over_thousands_of_failing_checks(workdir, daemons):
    """Counts open fds and RSS with no check in flight (all targets removed by a reload)
    after a warm-up and again after thousands more failing checks: they must not grow."""
    with RefusedPort() as refused, Banner421() as b421, GarbageBanner() as garbage, \
            StartTlsBroken("garbage") as tls:
        common = {"host": "127.0.0.1", "interval": "2ms", "timeout": "5s"}
        targets = [{"name": "refused", "port": refused.port, **common},
                   {"name": "b421", "port": b421.port, **common},
                   {"name": "garbage", "port": garbage.port, **common},
                   {"name": "tls", "port": tls.port, "tls": "starttls", "verify": False,
                    **common}]
        probe = daemons(ProbeDaemon(workdir, targets, {"jitter_percent": 0}, log_level="error"))
        total = "mailpulse_probe_checks_total"

        def quiesce() -> tuple:
            probe.write_config(targets=[])
            probe.reload()
            probe.wait_for_metric("mailpulse_probe_targets", 0)
            sandbox.poll(lambda: probe.metric("mailpulse_probe_checks_running") == 0, 10,
                         "no check in flight")
            return probe.open_fds(), probe.rss_kb()

        probe.wait_for_metric(total, 400, timeout=60)
        fds_before, rss_before = quiesce()
        probe.write_config(targets=targets)
        probe.reload()
        probe.wait_for_metric(total, 4000, timeout=120)  # the re-added targets count from 0
        fds_after, rss_after = quiesce()
        print(f"open fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} kB")
        assert fds_after == fds_before
        assert rss_after - rss_before < 4096, (rss_before, rss_after)
        assert garbage.connections >= 500 and tls.connections >= 500, \
            (garbage.connections, tls.connections)
        probe.stop()


@pytest.mark.parametrize("extra, error", [
    ('tls = "tsl"\n', r":5: target\.tls: expected none, starttls or implicit, got 'tsl'"),
    ('prot = 25\n', r":5:1: unknown key 'target\.prot' \(did you mean 'target\.port'\?\)"),
])
def test_check_config_names_the_file_and_line(workdir, extra, error):
    path = workdir / "bad.toml"
    path.write_text('[[target]]\nname = "mx1"\nhost = "127.0.0.1"\n\n' + extra)
    bad = subprocess.run([str(sandbox.probe_binary()), "run", "--check-config", "--config",
                          str(path)], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 78, bad.stdout + bad.stderr
    assert re.search(re.escape(str(path)) + error, bad.stderr), bad.stderr
    path.write_text('[[target]]\nname = "mx1"\nhost = "127.0.0.1"\n')
    good = subprocess.run([str(sandbox.probe_binary()), "run", "--check-config", "--config",
                           str(path)], capture_output=True, text=True, timeout=30)
    assert good.returncode == 0 and "valid (1 targets)" in good.stdout, good.stdout + good.stderr
