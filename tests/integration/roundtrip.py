"""Two chained sandboxed Postfix instances with a mailpulse-milter on each, for the round-trip
tests and the demo: edge (where probes are sent) relays sink.test to mx, mx delivers to an
smtp-sink. Both milters share the probe key and report to one probe's event socket; mx's
milter knows the sink address (delivered) and the probes' return path (bounces). Standard
library only; every component is a sandbox.Component stopped by PID, pass or fail.

Addresses: probes go to PROBE_SINK, their envelope sender (where bounces return) is
PROBE_RETURN; both are known users at mx. edge accepts any sink.test recipient, so an unknown
one (PROBE_UNKNOWN) is refused by mx (550 5.1.1) and edge sends the DSN back to PROBE_RETURN
through mx, whose milter reads it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import sandbox

PROBE_SINK = f"dave@{sandbox.SINK_DOMAIN}"
PROBE_RETURN = f"carol@{sandbox.SINK_DOMAIN}"
PROBE_UNKNOWN = f"nobody@{sandbox.SINK_DOMAIN}"


def write_key(workdir: Path, name: str = "probe.key") -> Path:
    """A probe key (64 hex digits, as keygen writes it), mode 0600, owned by nobody (the
    milters and the probe run as nobody and read it at start as root anyway)."""
    path = workdir / name
    path.write_text(os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    return path


def milter(workdir: Path, hop: str, key: Path, event_socket: Path, extra: str = ""):
    """A MilterProcess named for its hop, in its own directory of the work dir."""
    config = (f'probe_key_file = "{key}"\nevent_socket = "unix:{event_socket}"\n'
              f'snapshot_interval = "1s"\n{extra}')
    m = sandbox.MilterProcess(workdir, hop_name=hop, extra_config=config)
    m.dir = workdir / f"milter-{hop}"
    m.socket_path = m.dir / "milter.sock"
    m.address = f"unix:{m.socket_path}"
    m.config_path, m.stderr_path = m.dir / "milter.toml", m.dir / "milter.stderr"
    return m


class ChainedMail(sandbox.Component):
    """smtp-sink <- mx (+ milter "mx") <- edge (+ milter "edge"). `edge_overrides` go to edge's
    main.cf (e.g. a HOLD restriction to hold mail there). By default edge relays every
    sink.test recipient and mx is the one that knows the users; `edge_knows_users` gives edge
    the sandbox's user list too (unknown users refused at edge, as the demo wants).
    `submission` adds edge's 587 and 465 listeners with Dovecot for SASL; mx then relays mail
    for other domains from edge (mynetworks 127.0.0.0/8), as a smarthost would."""

    def __init__(self, workdir: Path, key: Path, event_socket: Path, *, discard: bool = False,
                 edge_knows_users: bool = False, submission: bool = False,
                 **edge_overrides: str):
        self.workdir = workdir
        self.sink = sandbox.SmtpSink(workdir)
        mx_extra = (f'probe_sinks = ["{PROBE_SINK}"]\nprobe_return_paths = ["{PROBE_RETURN}"]\n'
                    f"probe_discard = {'true' if discard else 'false'}\n")
        self.mx_milter = milter(workdir, "mx", key, event_socket, mx_extra)
        mx_overrides = {"mynetworks": "127.0.0.0/8"} if submission else {}
        self.mx = sandbox.PostfixInstance(workdir, "mx", sink_port=self.sink.port,
                                          milter=self.mx_milter.address, **mx_overrides)
        self.edge_milter = milter(workdir, "edge", key, event_socket)
        if not edge_knows_users:
            edge_overrides = {"relay_recipient_maps": "", **edge_overrides}
        self.edge = sandbox.PostfixInstance(workdir, "edge", sink_port=self.mx.port,
                                            milter=self.edge_milter.address,
                                            submission=submission, submissions=submission,
                                            **edge_overrides)
        self.dovecot = sandbox.DovecotInstance(workdir, self.edge) if submission else None
        self._stack = contextlib.ExitStack()

    def start(self) -> "ChainedMail":
        for part in (self.sink, self.mx_milter, self.mx, self.edge_milter, self.edge,
                     self.dovecot):
            if part:
                self._stack.enter_context(part)
        return self

    def stop(self) -> None:
        self._stack.close()

    def diagnostics(self, lines: int = 40) -> str:
        logs = {"edge": self.edge.log_text(), "mx": self.mx.log_text(),
                "edge milter": self.edge_milter.stderr_text(),
                "mx milter": self.mx_milter.stderr_text()}
        return "".join(f"--- {name} (last {lines} lines) ---\n"
                       + "\n".join(text.splitlines()[-lines:]) + "\n"
                       for name, text in logs.items() if text)
