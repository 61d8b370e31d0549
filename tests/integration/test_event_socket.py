"""Traffic snapshots from mailpulse-milter reach the probe's event socket with the live
counts; while nobody listens they are dropped and counted, and the milter carries on; a peer
that sends garbage to the probe is dropped without taking the probe down."""
import json
import socket
import subprocess

import pytest

import sandbox
from conftest import start_mail_system
from sandbox import metric_sum


class ProbeEvents(sandbox.Component):
    """`mailpulse-probe events --listen 127.0.0.1:PORT`, its JSON lines collected in a file."""

    def __init__(self, workdir, port):
        self.port, self.out = port, workdir / f"events-{port}.jsonl"
        self.proc = None

    def start(self):
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(
                [str(sandbox.probe_binary()), "events", "--listen", f"127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sandbox.poll(lambda: sandbox.port_listening(self.port), 10, "probe event socket")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            sandbox.kill_pid(self.proc.pid)

    def snapshots(self):
        lines = self.out.read_text().splitlines() if self.out.exists() else []
        return [json.loads(l)["traffic_snapshot"] for l in lines
                if l.startswith("{") and "traffic_snapshot" in l]


@pytest.fixture
def event_port():
    return sandbox.free_port()


def test_snapshots_carry_live_counts_and_drops_are_counted(request, workdir, event_port):
    extra = (f'event_socket = "inet:127.0.0.1:{event_port}"\nsnapshot_interval = "200ms"\n'
             f"event_queue_size = 4\n")
    mail = start_mail_system(request, workdir, milter=True, dovecot=False,
                             milter_args={"extra_config": extra, "hop_name": "edge"})
    # Nobody listens yet: snapshots pile up in the 4-slot queue, the rest are dropped.
    mail.milter.wait_for_metric("mailpulse_milter_events_dropped_total", 1, timeout=30)
    with ProbeEvents(workdir, event_port) as probe:
        assert sandbox.send_swaks(mail.postfix.port, "alice@sink.test").returncode == 0
        snap = sandbox.poll(lambda: next((s for s in reversed(probe.snapshots())
                                          if s["inbound"]["messages"] == 1
                                          and s["inbound"]["connections"] == 1), None),
                            30, "a snapshot showing the message")
        assert snap["source"] == "edge"
        assert snap["inbound"]["recipients"] == 1
        assert snap["events_dropped"] >= 1
        assert mail.milter.metrics() and metric_sum(
            mail.milter.metrics(), "mailpulse_milter_events_sent_total") >= 1


def test_probe_drops_a_garbage_peer_and_keeps_serving(workdir, event_port):
    with ProbeEvents(workdir, event_port) as probe:
        with socket.create_connection(("127.0.0.1", event_port), timeout=10) as bad:
            bad.sendall(b"\xff" * 16)  # a varint that never ends
            bad.settimeout(10)
            assert bad.recv(1) == b""  # the probe hung up on it
        with socket.create_connection(("127.0.0.1", event_port), timeout=10) as big:
            big.sendall(b"\xff\xff\xff\x7f")  # a 256 MiB frame: over the limit
            big.settimeout(10)
            assert big.recv(1) == b""
        # A well-formed empty Event (length 0) is still accepted from a new peer.
        with socket.create_connection(("127.0.0.1", event_port), timeout=10) as good:
            good.sendall(b"\x00")
        assert probe.proc.poll() is None
        log = sandbox.poll(lambda: (lambda t: t if t.count("dropping the connection") >= 2
                                    else None)(probe.out.read_text()), 10, "two drop lines")
        assert "exceeds maximum" in log
