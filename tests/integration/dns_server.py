"""A real DNS server on loopback for the probe's tests: Debian's dnsmasq (dnsmasq-base).

DnsServer serves fixed records on 127.0.0.1:`port` (UDP and TCP) and nothing else: no upstream
(--no-resolv), no /etc/hosts (--no-hosts), no config file, and authoritative-style answers for
the zones in `local_zones` (--local), so a name it does not know is NXDOMAIN instead of a
forward. It runs in the foreground, is recorded for sandbox.reap_stale() and stopped by PID,
pass or fail. Standard library only.
"""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import sandbox


def udp_bound(port: int, address: str = "127.0.0.1") -> bool:
    """Whether a UDP socket is bound to address:port, read from /proc/net/udp."""
    # The kernel prints the address as a host-order (little-endian) word: 127.0.0.1 0100007F.
    want = f"{socket.inet_aton(address)[::-1].hex().upper()}:{port:04X}"
    with open("/proc/net/udp") as f:
        return any(cols[1] == want for cols in (line.split() for line in f) if len(cols) > 1)


def free_udp_and_tcp_port() -> int:
    """A sandbox.free_port() that is free for UDP too (DNS listens on both)."""
    for _ in range(50):
        port = sandbox.free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no loopback port free for both UDP and TCP")


def null_mx(name: str) -> str:
    """The --dns-rr option of a null MX (RFC 7505): preference 0, exchange "." (root)."""
    return f"--dns-rr={name},15,000000"


def raw_mx(name: str, preference: int, labels: list) -> str:
    """The --dns-rr option of an MX whose exchange is `labels` as raw bytes (for names that
    --mx-host would refuse: hostile answers)."""
    wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return f"--dns-rr={name},15,{preference.to_bytes(2, 'big').hex()}{wire.hex()}"


class DnsServer(sandbox.Component):
    """dnsmasq on 127.0.0.1:`port` answering from `records`, a list of dnsmasq options
    ("--mx-host=example.test,mx1.example.test,10", "--host-record=mx1.example.test,127.0.0.1",
    null_mx(...), ...). Queries are logged to `log` for a failing test's diagnostics."""

    def __init__(self, workdir: Path, records: list, local_zones: tuple = ("test",)):
        self.workdir, self.records, self.local_zones = workdir, list(records), local_zones
        self.dir = workdir / "dnsmasq"
        self.log = self.dir / "dnsmasq.log"
        self.port = free_udp_and_tcp_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """The --resolver argument for this server."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> "DnsServer":
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = ["dnsmasq", "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--user=root", "--pid-file=", "--log-queries", f"--log-facility={self.log}",
                *(f"--local=/{zone}/" for zone in self.local_zones), *self.records]
        with open(self.dir / "dnsmasq.stderr", "w") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        sandbox._record_pid(self.workdir, "dnsmasq", self.proc.pid)
        sandbox.poll(lambda: self.proc.poll() is not None or (
            sandbox.port_listening(self.port) and udp_bound(self.port)), 10,
            f"dnsmasq on UDP and TCP port {self.port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited {self.proc.returncode}: {self.diagnostics()}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            sandbox.kill_pid(self.proc.pid)
        if self.proc:
            self.proc.wait()

    def diagnostics(self) -> str:
        out = ""
        for path in (self.dir / "dnsmasq.stderr", self.log):
            if path.exists():
                out += f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}\n"
        return out
