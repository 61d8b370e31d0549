"""The event socket over TCP with TLS and the shared token, for milters and probes on other
hosts: a real mailpulse-milter and a second mailpulse-probe reporting to a probe daemon's
probe.event_listen_tls (all on loopback, the probe's certificate self-signed for
probe.mailpulse.test and given to the peers as their CA file).

Checked: a milter with the right token and CA is accepted and its snapshots counted, under its
hop name; a wrong token, a peer that speaks before saying hello, and a peer without TLS are each
dropped with a log line naming why while the daemon and the good peers go on; a milter that
cannot verify the probe's certificate never sends an event; a probe's results reach a central
probe over TLS (probe.report_to = tls:...)."""
import os
import re
import socket
import ssl

import pytest

import sandbox
from probe_daemon import ProbeDaemon
from smtp_fakes import RefusedPort

pytestmark = pytest.mark.usefixtures("probe_binary", "milter_binary")

PROBE_NAME = "probe.mailpulse.test"


@pytest.fixture
def started(request):
    """Starts components that stop, by PID, when the test ends (last started, first stopped)."""
    components = []

    def start(component):
        components.append(component)
        return component.start()

    yield start
    for component in reversed(components):
        component.stop()


def secret(workdir, name: str, text: str):
    path = workdir / name
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return path


def probe_cert(workdir):
    """A self-signed certificate for the central probe, by name and by loopback address."""
    cert, key = workdir / "probe.crt", workdir / "probe.key"
    sandbox.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3", "-subj",
                 f"/CN={PROBE_NAME}", "-addext", f"subjectAltName=DNS:{PROBE_NAME},IP:127.0.0.1",
                 "-keyout", str(key), "-out", str(cert)])
    os.chmod(key, 0o600)
    return cert, key


@pytest.fixture
def central(workdir, started):
    """A probe daemon with a TLS event socket; returns (daemon, port, cert, token file)."""
    cert, key = probe_cert(workdir)
    token = secret(workdir, "event.token", "s3cret-event-token-0123456789abcdef")
    port = sandbox.free_port()
    daemon = started(ProbeDaemon(workdir, [], {
        "event_listen_tls": f"127.0.0.1:{port}", "event_tls_cert_file": str(cert),
        "event_tls_key_file": str(key), "event_token_file": str(token)}, name="central"))
    return daemon, port, cert, token


def tls_milter(workdir, port: int, cert, token, hop: str, tls_name: str = PROBE_NAME):
    extra = (f'event_socket = "tls:127.0.0.1:{port}"\nevent_token_file = "{token}"\n'
             f'event_ca_file = "{cert}"\nevent_tls_name = "{tls_name}"\n'
             'snapshot_interval = "200ms"\n')
    milter = sandbox.MilterProcess(workdir, hop_name=hop, extra_config=extra)
    milter.dir = workdir / f"milter-{hop}"  # several milters in one work dir
    milter.socket_path = milter.dir / "milter.sock"
    milter.address = f"unix:{milter.socket_path}"
    milter.config_path, milter.stderr_path = milter.dir / "milter.toml", milter.dir / "stderr"
    return milter


def test_a_milter_with_the_token_reports_over_tls(workdir, started, central):
    daemon, port, cert, token = central
    milter = started(tls_milter(workdir, port, cert, token, hop="edge"))
    daemon.wait_for_metric("mailpulse_probe_events_received_total", 3, kind="traffic_snapshot")
    assert re.search(r"event peer edge@127\.0\.0\.1#\d+: authenticated", daemon.log_text()), \
        daemon.log_text()
    assert daemon.metric("mailpulse_probe_event_peers") == 1
    assert "s3cret" not in daemon.log_text() + milter.stderr_text() + daemon.metrics_text()


def test_a_wrong_token_is_dropped_and_the_good_peer_goes_on(workdir, started, central):
    daemon, port, cert, token = central
    started(tls_milter(workdir, port, cert, token, hop="good"))
    wrong = secret(workdir, "wrong.token", "not-the-token")
    bad = started(tls_milter(workdir, port, cert, wrong, hop="bad"))
    daemon.wait_for_metric("mailpulse_probe_event_peers_dropped_total", 1)
    assert re.search(r"event peer 127\.0\.0\.1#\d+: wrong token in its hello \(it calls itself "
                     r"'bad'\); dropping", daemon.log_text()), daemon.log_text()
    seen = daemon.metric("mailpulse_probe_events_received_total", kind="traffic_snapshot")
    daemon.wait_for_metric("mailpulse_probe_events_received_total", seen + 3,
                           kind="traffic_snapshot")  # the good milter's
    assert "authenticated" not in [l for l in daemon.log_text().splitlines() if "bad@" in l]
    assert bad.proc.poll() is None  # the bad milter keeps retrying, mail unaffected


def test_a_peer_that_speaks_before_hello_or_without_tls_is_dropped(workdir, central):
    daemon, port, cert, _ = central
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            context.wrap_socket(raw, server_hostname=PROBE_NAME) as tls:
        tls.sendall(bytes([2, 0x0a, 0x00]))  # a frame holding an empty traffic snapshot
        daemon.wait_for_metric("mailpulse_probe_event_peers_dropped_total", 1)
    assert "sent an event before its hello" in daemon.log_text()
    with socket.create_connection(("127.0.0.1", port)) as plain:
        plain.sendall(b"EHLO not-tls\r\n" * 4)
        daemon.wait_for_metric("mailpulse_probe_event_peers_dropped_total", 2)
    assert re.search(r"event peer 127\.0\.0\.1#\d+: TLS: .*; dropping", daemon.log_text()), \
        daemon.log_text()
    assert daemon.proc.poll() is None
    assert daemon.metric("mailpulse_probe_events_received_total", kind="traffic_snapshot") == 0


def test_a_milter_that_cannot_verify_the_probe_sends_nothing(workdir, started, central):
    daemon, port, cert, token = central
    milter = started(tls_milter(workdir, port, cert, token, hop="edge",
                                tls_name="someone-else.mailpulse.test"))
    sandbox.poll(lambda: "certificate verify failed" in milter.stderr_text(), 15,
                 "the milter to refuse the probe's certificate")
    assert daemon.metric("mailpulse_probe_events_received_total", kind="traffic_snapshot") == 0


def test_probe_results_reach_a_central_probe_over_tls(workdir, started, central):
    daemon, port, cert, token = central
    with RefusedPort() as refused:
        started(ProbeDaemon(workdir, [{"name": "down", "host": "127.0.0.1",
                                       "port": refused.port, "interval": "200ms"}], {
            "report_to": f"tls:127.0.0.1:{port}", "event_token_file": str(token),
            "event_ca_file": str(cert)}, name="edge-probe"))
        daemon.wait_for_metric("mailpulse_probe_events_received_total", 2, kind="probe_result")
    assert re.search(r"event peer edge-probe@127\.0\.0\.1#\d+: authenticated", daemon.log_text())
