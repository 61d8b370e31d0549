"""Scripted misbehaving SMTP servers on loopback, and a runner for `mailpulse-probe check`.

Each fake listens on 127.0.0.1:`port` (a sandbox.free_port()) and serves every connection from
its own thread, so the probe under test meets one precise misbehaviour: a refused port, a
listener whose accept queue is full (connect timeout), a tarpit that never speaks, a slow
banner, a 421 greeting, binary junk for a greeting, a drop in the middle of DATA, a server that
falls silent mid-session, a STARTTLS whose handshake fails, an endless line, a 4xx/5xx at MAIL.
They are context managers (sandbox.Component): leaving the block closes the listener and every
connection and joins the threads, pass or fail. Sleeps in here are the fakes' scripted
behaviour, not waits of the tests.

These fakes stand in for servers too broken to configure a real Postfix into; everything a real
server can do is tested against the sandboxed Postfix (test_probe_check.py).

run_check() runs the probe binary once and returns its exit code, output, wall time and peak
memory (VmHWM from /proc/PID/status, sampled while it runs: wait4's ru_maxrss would include the
forking Python's own size, which exec carries over); CheckResult parses the Nagios status line
and perfdata of its output. Standard library only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import sandbox

FAKE_HOSTNAME = "fake.mailpulse.test"


probe_binary = sandbox.probe_binary


# ----------------------------------------------------------------------------------------
# Fakes


class RefusedPort(sandbox.Component):
    """A free loopback port nobody listens on: a connect gets RST (connection refused)."""

    def __init__(self):
        self.port = sandbox.free_port()  # flock'ed: no other sandbox will listen on it

    def start(self) -> "RefusedPort":
        assert not sandbox.port_listening(self.port), f"port {self.port} is in use"
        return self

    def stop(self) -> None:
        pass


class FullBacklog(sandbox.Component):
    """A listener that never accepts and whose accept queue is already full (listen(0) plus
    one connection of our own): the kernel drops further SYNs, so a connect times out."""

    def __init__(self):
        self.port = sandbox.free_port()
        self._listener: socket.socket | None = None
        self._fillers: list = []

    def start(self) -> "FullBacklog":
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(0)
        for _ in range(8):  # fill the queue until a connect no longer completes
            filler = socket.socket()
            filler.settimeout(0.5)
            self._fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", self.port))
            except OSError:
                return self
        raise RuntimeError("could not fill the accept queue of a listen(0) socket")

    def stop(self) -> None:
        for s in self._fillers + [self._listener]:
            if s:
                s.close()
        self._fillers, self._listener = [], None


class _Reader:
    """Line reading on a blocking socket; None at EOF or when the connection broke."""

    def __init__(self, conn: socket.socket):
        self.conn, self.buf = conn, b""

    def line(self, limit: int = 65536) -> bytes | None:
        while b"\n" not in self.buf:
            chunk = self.recv()
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > limit:
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def recv(self) -> bytes:
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        try:
            return self.conn.recv(65536)
        except OSError:
            return b""


class FakeServer(sandbox.Component):
    """Listens on 127.0.0.1:`port`; each accepted connection runs handle(conn) in a thread.
    Counts `connections` accepted and `closed_by_client` (a read saw EOF), the most connections
    open at once (`max_open`) and those open now (`open_now`), and records the command lines
    received in `commands` (all connections, in order)."""

    def __init__(self):
        self.port = sandbox.free_port()
        self.connections = 0
        self.closed_by_client = 0
        self.max_open = 0
        self.commands: list = []
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set = set()
        self._threads: list = []

    # --- lifecycle

    def start(self) -> "FakeServer":
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(128)
        self._listener.settimeout(0.1)  # the accept loop looks at _stopping this often
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # wakes handlers blocked in recv/send
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(timeout=10)
        stuck = [t.name for t in self._threads if t.is_alive()]
        if self._listener:
            self._listener.close()
            self._listener = None
        assert not stuck, f"fake server threads did not stop: {stuck}"

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True,
                             name=f"{type(self).__name__}:{self.port}")
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                self._conns.add(conn)
                self.max_open = max(self.max_open, len(self._conns))
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn, _Reader(conn))
        except OSError:
            pass  # the client hung up on us: that is the probe's right
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    @property
    def open_now(self) -> int:
        with self._lock:
            return len(self._conns)

    # --- helpers for handlers

    def handle(self, conn: socket.socket, reader: _Reader) -> None:
        raise NotImplementedError

    def sleep(self, seconds: float) -> bool:
        """Scripted delay; False if the fake is being stopped meanwhile."""
        return not self._stopping.wait(seconds)

    def send(self, conn: socket.socket, data: bytes | str) -> None:
        conn.sendall(data.encode() if isinstance(data, str) else data)

    def hold_until_client_closes(self, reader: _Reader) -> None:
        """Reads and discards until the client closes (or the fake stops)."""
        while reader.recv():
            pass
        self._note_client_closed()

    def close_gracefully(self, conn: socket.socket, reader: _Reader, wait: float = 2) -> None:
        """Closes our side now (the client reads EOF at once), then reads what the client
        still sends until it closes too, for at most `wait` seconds: a close() with unread
        data would make the kernel answer with RST instead of a plain FIN."""
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        reader.buf = b""
        conn.settimeout(wait)
        try:
            while conn.recv(65536):
                pass
        except OSError:  # timed out, or reset
            return
        self._note_client_closed()

    def _note_client_closed(self) -> None:
        if self._stopping.is_set():
            return  # our own shutdown, not the client's
        with self._lock:
            self.closed_by_client += 1

    def _note_command(self, line: bytes) -> None:
        with self._lock:
            self.commands.append(line.decode(errors="replace"))


class Tarpit(FakeServer):
    """Accepts and never says a word: the probe must give up with banner_timeout."""

    def handle(self, conn, reader):
        self.hold_until_client_closes(reader)


class GarbageBanner(FakeServer):
    """Greets with binary junk (a line that is no SMTP reply), then stays connected."""

    JUNK = bytes([0x16, 0x03, 0x01, 0x00, 0x2a, 0x02, 0x00, 0xff, 0xfe, 0x00, 0x9c]) + \
        b"\x80\x81 not smtp \x00\x07\x1b[2J" + b"\r\n"

    def handle(self, conn, reader):
        self.send(conn, self.JUNK)
        self.hold_until_client_closes(reader)


class EndlessLine(FakeServer):
    """Streams bytes without CRLF until the client hangs up: from the first byte of the
    greeting (`where="banner"`) or inside the EHLO reply (`where="ehlo"`). `bytes_sent` says
    how much the client swallowed before it gave up."""

    CHUNK = b"x" * 65536

    def __init__(self, where: str = "banner"):
        super().__init__()
        assert where in ("banner", "ehlo")
        self.where, self.bytes_sent = where, 0

    def handle(self, conn, reader):
        if self.where == "ehlo":
            self.send(conn, f"220 {FAKE_HOSTNAME} ESMTP endless line ahead\r\n")
            line = reader.line()
            if line is None:
                return
            self._note_command(line)
            self.send(conn, f"250-{FAKE_HOSTNAME} ")
        else:
            self.send(conn, "220 ")
        while not self._stopping.is_set():
            conn.sendall(self.CHUNK)  # raises once the client has closed: BrokenPipe / reset
            with self._lock:
                self.bytes_sent += len(self.CHUNK)


class ScriptedSmtp(FakeServer):
    """A small well-behaved SMTP server (EHLO/HELO, STARTTLS only if overridden, MAIL, RCPT,
    DATA, RSET, NOOP, QUIT) that subclasses bend at one point. Messages it takes are kept in
    `messages`."""

    capabilities = ("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES")
    banner_delay = 0.0

    def __init__(self):
        super().__init__()
        self.messages: list = []

    def banner(self) -> str:
        return f"220 {FAKE_HOSTNAME} ESMTP mailpulse scripted fake\r\n"

    def handle(self, conn, reader):
        if self.banner_delay and not self.sleep(self.banner_delay):
            return
        self.send(conn, self.banner())
        while True:
            line = reader.line()
            if line is None:
                self._note_client_closed()
                return
            self._note_command(line)
            verb = line.split(b" ", 1)[0].upper().decode(errors="replace")
            if not self.command(conn, reader, verb, line):
                return

    def command(self, conn, reader, verb: str, line: bytes) -> bool:
        """Answers one command; False ends the connection (after this method, we close)."""
        if verb == "EHLO":
            caps = [FAKE_HOSTNAME, *self.capabilities]
            self.send(conn, "".join(f"250{'-' if i < len(caps) - 1 else ' '}{c}\r\n"
                                    for i, c in enumerate(caps)))
        elif verb == "HELO":
            self.send(conn, f"250 {FAKE_HOSTNAME}\r\n")
        elif verb == "MAIL":
            self.send(conn, "250 2.1.0 Ok\r\n")
        elif verb == "RCPT":
            self.send(conn, "250 2.1.5 Ok\r\n")
        elif verb == "DATA":
            self.send(conn, "354 End data with <CR><LF>.<CR><LF>\r\n")
            return self.data(conn, reader)
        elif verb in ("RSET", "NOOP"):
            self.send(conn, "250 2.0.0 Ok\r\n")
        elif verb == "QUIT":
            self.send(conn, "221 2.0.0 Bye\r\n")
            return False
        else:
            self.send(conn, "502 5.5.2 Error: command not recognized\r\n")
        return True

    def data(self, conn, reader) -> bool:
        """Reads the message up to the lone dot and accepts it."""
        lines = []
        while (line := reader.line()) is not None:
            if line == b".":
                with self._lock:
                    self.messages.append(b"\r\n".join(lines))
                self.send(conn, "250 2.0.0 Ok: queued as FAKE123\r\n")
                return True
            lines.append(line)
        return False


class SlowBanner(ScriptedSmtp):
    """Says nothing for `delay` seconds, then behaves."""

    def __init__(self, delay: float = 3.0):
        super().__init__()
        self.banner_delay = delay


class Banner421(ScriptedSmtp):
    """Greets with 421 and closes, as a server shutting down or overloaded does."""

    REPLY = f"421 4.3.2 {FAKE_HOSTNAME} Service not available, closing transmission channel"

    def handle(self, conn, reader):
        self.send(conn, self.REPLY + "\r\n")
        self.close_gracefully(conn, reader)


class MailRejecter(ScriptedSmtp):
    """Answers MAIL FROM with `reply` (a 4xx or 5xx line without CRLF)."""

    def __init__(self, reply: str):
        super().__init__()
        self.reply = reply

    def command(self, conn, reader, verb, line):
        if verb == "MAIL":
            self.send(conn, self.reply + "\r\n")
            return True
        return super().command(conn, reader, verb, line)


class DataDisconnect(ScriptedSmtp):
    """Takes MAIL, RCPT and DATA (354), reads some of the message, then closes without a
    final reply. `data_received` holds what it read."""

    def __init__(self):
        super().__init__()
        self.data_received = b""

    def data(self, conn, reader):
        chunk = reader.recv()
        with self._lock:
            self.data_received += chunk
        self.close_gracefully(conn, reader)
        return False


class Unresponsive(ScriptedSmtp):
    """Behaves until `at` — a command verb ("EHLO", "MAIL", ...) or "end_of_data" (the lone
    dot after the message) — and then never answers, holding the connection open."""

    def __init__(self, at: str):
        super().__init__()
        self.at = at

    def command(self, conn, reader, verb, line):
        if verb == self.at:
            self.hold_until_client_closes(reader)
            return False
        return super().command(conn, reader, verb, line)

    def data(self, conn, reader):
        if self.at != "end_of_data":
            return super().data(conn, reader)
        while (line := reader.line()) not in (None, b"."):
            pass
        if line is not None:
            self.hold_until_client_closes(reader)
        return False


class NoStartTls(ScriptedSmtp):
    """A good server that does not offer STARTTLS."""


class StartTlsBroken(ScriptedSmtp):
    """Advertises STARTTLS and answers it with 220, then breaks the handshake: with
    `mode="garbage"` it reads the ClientHello and answers with plain text that is no TLS
    record; with `mode="close"` it closes the connection instead."""

    capabilities = ScriptedSmtp.capabilities + ("STARTTLS",)

    def __init__(self, mode: str = "garbage"):
        super().__init__()
        assert mode in ("garbage", "close")
        self.mode = mode
        self.client_hello = b""

    def command(self, conn, reader, verb, line):
        if verb != "STARTTLS":
            return super().command(conn, reader, verb, line)
        self.send(conn, "220 2.0.0 Ready to start TLS\r\n")
        self.client_hello = reader.recv()
        if self.mode == "garbage":
            self.send(conn, "this is not a TLS record, it is just text\r\n" * 4)
        self.close_gracefully(conn, reader)
        return False


# ----------------------------------------------------------------------------------------
# Running the probe


@dataclasses.dataclass
class Perf:
    """One perfdata item: `value` in `unit`, then the optional warn;crit;min;max fields."""
    value: float
    unit: str
    warn: str = ""
    crit: str = ""
    min: str = ""
    max: str = ""


_STATUS_RE = re.compile(r"^SMTP (OK|WARNING|CRITICAL|UNKNOWN) - (.*?)(?: \| (.*))?$")
_FAILURE_RE = re.compile(r"^([a-z_]+) at ([a-z_]+): ?(.*)$")


@dataclasses.dataclass
class CheckResult:
    """What one `mailpulse-probe check` run did."""
    argv: list
    returncode: int
    stdout: str
    stderr: str
    wall: float          # seconds from start to exit
    peak_rss_kb: int     # highest VmHWM seen while it ran (0: it ended before a sample)

    @property
    def status_line(self) -> str:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def _status(self) -> re.Match | None:
        return _STATUS_RE.match(self.status_line)

    @property
    def state(self) -> str | None:
        """OK, WARNING, CRITICAL or UNKNOWN; None if the last line is no status line."""
        m = self._status()
        return m[1] if m else None

    @property
    def message(self) -> str:
        """The status text between ' - ' and ' | '."""
        m = self._status()
        return m[2] if m else ""

    @property
    def failure(self) -> tuple:
        """(failure_kind, phase, reply or reason) of a CRITICAL line; ("", "", "") else."""
        m = _FAILURE_RE.match(self.message)
        return (m[1], m[2], m[3]) if m else ("", "", "")

    @property
    def perfdata(self) -> dict:
        """{label: Perf} from the part after ' | '."""
        m = self._status()
        out = {}
        for label, value in re.findall(r"('[^']*'|[^\s=]+)=(\S+)", (m[3] or "") if m else ""):
            fields = value.split(";")
            num = re.match(r"^(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)(\S*)$", fields[0])
            if not num:
                continue
            fields += [""] * (5 - len(fields))
            out[label.strip("'")] = Perf(float(num[1]), num[2], *fields[1:5])
        return out

    @property
    def info(self) -> str:
        """Everything about the run, for an assertion message (pytest truncates reprs)."""
        return (f"$ {' '.join(map(str, self.argv))}\nexit {self.returncode} after "
                f"{self.wall:.3f}s, peak RSS {self.peak_rss_kb} kB\n--- stdout ---\n"
                f"{self.stdout}--- stderr ---\n{self.stderr}")


def _vm_hwm_kb(pid: int) -> int:
    """The peak resident set size of a running process, in kB; 0 if it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_check(*args: str, binary: Path | None = None, deadline: float = 60) -> CheckResult:
    """Runs `mailpulse-probe check ARGS...` to completion, sampling its peak memory every few
    milliseconds. A probe still running after `deadline` seconds is killed by PID and reported
    as a test failure (TimeoutError)."""
    argv = [str(binary or probe_binary()), "check", *map(str, args)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                text=True, start_new_session=True)
        peak_rss_kb, ended = 0, None

        def sample_and_reap() -> bool:
            nonlocal peak_rss_kb, ended
            peak_rss_kb = max(peak_rss_kb, _vm_hwm_kb(proc.pid))
            if proc.poll() is None:
                return False
            ended = time.monotonic()
            return True

        try:
            sandbox.poll(sample_and_reap, deadline, f"{argv} to exit", interval=0.005)
        except TimeoutError:
            sandbox.kill_pid(proc.pid, timeout=2)
            proc.wait()
            raise
        out.seek(0), err.seek(0)
        return CheckResult(argv, proc.returncode, out.read(), err.read(), ended - start,
                           peak_rss_kb)
