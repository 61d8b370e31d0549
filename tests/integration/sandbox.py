"""Real mail components on loopback for mailpulse's integration tests and demo.

Builds self-contained instances under one work directory per test — Postfix (own config, queue,
data and log; nothing under /etc/postfix is touched), an smtp-sink standing in for every remote
server, Dovecot for SASL, and mailpulse-milter — drives traffic with swaks, a stdlib SMTP client
and sendmail(1), and stops every process it started by PID, pass or fail. Every wait is a poll
with a deadline. Standard library only; runs as root (Postfix's master and smtp-sink -u need it).
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.utils
import fcntl
import json
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
SINK_DOMAIN = "sink.test"
SINK_USERS = ("alice", "bob", "carol", "dave")  # the known recipients at sink.test
TRUSTED_CLIENT = "127.0.0.2"  # the only address in Postfix's mynetworks
REJECTED_CLIENT = "127.0.0.3"  # refused by Postfix's client access map
SASL_USER, SASL_PASSWORD = "sender@mailpulse.test", "probe-secret"
_PORT_LOCK_DIR = Path("/tmp/mailpulse-ports")
_held_port_locks: list = []  # flock'ed files: a port stays ours until this process exits
T = TypeVar("T")


def build_dir() -> Path:
    """The CMake build directory: $MAILPULSE_BUILD_DIR, else <repo>/build."""
    return Path(os.environ.get("MAILPULSE_BUILD_DIR") or REPO_ROOT / "build")


def milter_binary() -> Path:
    return build_dir() / "milter" / "mailpulse-milter"


def probe_binary() -> Path:
    return build_dir() / "probe" / "mailpulse-probe"


def poll(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Calls check() until it returns something truthy, or raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while pid runs. Zombies count as dead: PID 1 here may never reap them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def all_pids() -> list:
    """Every process id on the machine."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def parent_pid(pid: int) -> int:
    """The parent of pid, or -1 if it is gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return -1


def kill_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Sends sig to pid, waits for it to exit, then SIGKILLs it if it lingers."""
    for s in (sig, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, s)
        with contextlib.suppress(TimeoutError):
            poll(lambda: not pid_alive(pid), timeout, f"pid {pid} to exit")
            return


def free_port() -> int:
    """A loopback TCP port no other sandbox, in any process, hands out while this one lives.

    Picked below the kernel's ephemeral range (32768+), so outgoing connections never take it,
    and claimed with an flock, so parallel test processes cannot pick the same one."""
    _PORT_LOCK_DIR.mkdir(mode=0o1777, exist_ok=True)
    for _ in range(500):
        port = random.randint(20000, 32000)
        lock = open(_PORT_LOCK_DIR / f"{port}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
        except OSError:
            lock.close()
            continue
        _held_port_locks.append(lock)
        return port
    raise RuntimeError("no free loopback port found")


def port_listening(port: int) -> bool:
    """Whether something listens on TCP port, read from /proc/net/tcp. Unlike a test connect
    this leaves no trace: Postfix would log it and a milter would count it."""
    with open("/proc/net/tcp") as f:
        return any(cols[1].endswith(f":{port:04X}") and cols[3] == "0A"
                   for cols in (line.split() for line in f) if len(cols) > 3)


def make_workdir(tag: str = "test") -> Path:
    """A fresh 0755 directory under /tmp that user postfix can search (a 0700 one fails)."""
    path = Path(tempfile.mkdtemp(prefix=f"mailpulse-{tag[:12]}-", dir="/tmp"))
    path.chmod(0o755)
    for parent in path.parents:
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(f"{parent} is not searchable by user postfix")
    (path / ".owner").write_text(str(os.getpid()))
    return path


def keep_workdir(path: Path) -> None:
    """Marks a work dir whose processes are stopped as kept for inspection: reap_stale()
    leaves it alone."""
    (path / ".owner").unlink(missing_ok=True)


def _record_pid(workdir: Path, kind: str, pid: int) -> None:
    with open(workdir / ".pids", "a") as f:
        f.write(f"{kind} {pid}\n")


def reap_stale(root: Path = Path("/tmp")) -> None:
    """Stops what sandboxes left behind when their owning process died (e.g. a test killed on
    timeout), by the PIDs they recorded, and removes their work directories."""
    for owner in root.glob("mailpulse-*/.owner"):
        with contextlib.suppress(OSError, ValueError):
            if pid_alive(int(owner.read_text())):
                continue
            pids = owner.with_name(".pids")
            for line in pids.read_text().splitlines() if pids.exists() else []:
                kind, pid = line.split()
                comm = Path(f"/proc/{pid}/comm").read_text().strip() if pid_alive(int(pid)) else ""
                if comm and comm in kind:  # guard against a recycled pid
                    kill_pid(int(pid))
            shutil.rmtree(owner.parent, ignore_errors=True)


def run(argv: list, *, check: bool = True, input: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs a command to completion; raises with its output when check fails. Output goes
    through files, not pipes: a daemon (postfix start, dovecot) that inherited a pipe would
    hold it open and make us wait for the daemon's exit."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(argv, input=input, stdout=out, stderr=err, text=True,
                              timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
        out.seek(0), err.seek(0)
        proc.stdout, proc.stderr = out.read(), err.read()
    if check and proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def make_tls_cert(workdir: Path, cn: str) -> tuple[Path, Path]:
    """A self-signed EC certificate and key for cn, generated once per work dir."""
    cert, key = workdir / f"tls-{cn}.crt", workdir / f"tls-{cn}.key"
    if not cert.exists():
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3", "-subj", f"/CN={cn}",
             "-addext", f"subjectAltName=DNS:{cn}", "-keyout", str(key), "-out", str(cert)])
    return cert, key


class Component:
    """Something with start()/stop(); as a context manager it stops on any exit, and a start
    that fails half way still stops what it had started."""

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclasses.dataclass
class SinkMessage:
    """One message smtp-sink received: its envelope and the message as Postfix sent it."""
    path: Path
    mail_from: str
    rcpt_to: list
    text: str

    def header(self, name: str) -> list:
        """Values of every header field called name, unfolded."""
        head = self.text.split("\n\n", 1)[0]
        return [re.sub(r"\n[ \t]+", " ", v) for v in re.findall(
            rf"^{re.escape(name)}:[ \t]*(.*(?:\n[ \t].*)*)", head, re.M | re.I)]


class SmtpSink(Component):
    """smtp-sink on a free port, standing in for every remote server; one file per message.

    smtp-sink -d creates a file per transaction and deletes it when the transaction is aborted
    (RSET, QUIT or a drop before the final dot), so complete files count deliveries exactly."""

    def __init__(self, workdir: Path, name: str = "sink"):
        self.dir, self.port = workdir / name, free_port()
        self.dump_dir = self.dir / "dump"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SmtpSink":
        self.dump_dir.mkdir(parents=True)
        shutil.chown(self.dump_dir, "postfix")
        with open(self.dir / "smtp-sink.log", "w") as log:
            self.proc = subprocess.Popen(
                ["smtp-sink", "-u", "postfix", "-h", SINK_DOMAIN, "-d", f"{self.dump_dir}/%H%M%S.",
                 f"127.0.0.1:{self.port}", "256"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        _record_pid(self.dir.parent, "smtp-sink", self.proc.pid)
        poll(lambda: self.proc.poll() is not None or port_listening(self.port), 10, "smtp-sink")
        if self.proc.poll() is not None:
            raise RuntimeError(f"smtp-sink exited: {(self.dir / 'smtp-sink.log').read_text()}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            kill_pid(self.proc.pid)
            self.proc.wait()

    def messages(self) -> list:
        """Complete messages received so far, oldest first. A file still being written is
        empty or lacks the trailing empty line and the sink's Received: header."""
        out = []
        for path in sorted(self.dump_dir.iterdir(), key=lambda p: p.stat().st_mtime_ns):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                if not (text.endswith("\n\n") and "(smtp-sink)" in text):
                    continue
                envelope, received = text.split("Received: ", 1)
                out.append(SinkMessage(
                    path, re.findall(r"^X-Mail-Args: <(.*?)>", envelope, re.M)[0],
                    re.findall(r"^X-Rcpt-Args: <(.*?)>", envelope, re.M),
                    received.split("\n", 3)[3]))  # drop the sink's 3-line Received: header
        return out

    def count(self) -> int:
        return len(self.messages())

    def wait_for_count(self, n: int, timeout: float = 30) -> list:
        """Waits until at least n messages have arrived; returns them all."""
        return poll(lambda: (lambda m: m if len(m) >= n else None)(self.messages()), timeout,
                    f"{n} message(s) at the sink (have {self.count()})", interval=0.1)


def _message(from_: str, rcpts: list, subject: str, headers: Iterable[str], body: str) -> str:
    return (f"From: <{from_}>\nTo: {', '.join(f'<{r}>' for r in rcpts)}\nSubject: {subject}\n"
            f"Date: {email.utils.formatdate()}\n"
            f"Message-ID: {email.utils.make_msgid(domain='client.mailpulse.test')}\n"
            + "".join(f"{h}\n" for h in headers) + f"\n{body}")


@dataclasses.dataclass
class SwaksResult:
    """What a swaks session printed; `replies` are the server's reply lines, in order."""
    returncode: int
    output: str

    @property
    def replies(self) -> list:
        return re.findall(r"^\s*(?:<-|<~|<\*\*|<~\*\*)\s+(.*)$", self.output, re.M)

    @property
    def last_reply(self) -> str:
        """The last reply before QUIT's 221: the one that decided the session."""
        replies = [r for r in self.replies if not r.startswith("221 ")]
        return replies[-1] if replies else ""


def send_swaks(port: int, to: str | Iterable[str] = f"alice@{SINK_DOMAIN}",
               from_: str = "sender@mailpulse.test", *, local_interface: str | None = None,
               quit_after: str | None = None, subject: str = "mailpulse sandbox test",
               headers: Iterable[str] = (), body: str = "Hello from the sandbox.",
               extra: Iterable[str] = (), timeout: float = 60) -> SwaksResult:
    """One plaintext SMTP session with swaks to 127.0.0.1:port. `quit_after` is a swaks stop
    point (CONNECT, EHLO, MAIL, RCPT). For STARTTLS and AUTH use smtp_session(): swaks needs
    libnet-ssleay-perl for TLS, which install-deps does not install."""
    rcpts = [to] if isinstance(to, str) else list(to)
    argv = ["swaks", "--server", f"127.0.0.1:{port}", "--to", ",".join(rcpts), "--from", from_,
            "--helo", "client.mailpulse.test", "--timeout", "20",
            "--data", _message(from_, rcpts, subject, headers, body)]
    if local_interface:
        argv += ["--local-interface", local_interface]
    if quit_after:
        argv += ["--quit-after", quit_after]
    proc = run(argv + list(extra), check=False, timeout=timeout)
    return SwaksResult(proc.returncode, proc.stdout + proc.stderr)


@dataclasses.dataclass
class SmtpResult:
    """One SMTP session's server replies as (command, code, text), in order. Commands are
    CONNECT, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, "." (end of data) and QUIT."""
    replies: list = dataclasses.field(default_factory=list)
    tls_version: str | None = None
    error: str | None = None  # set if the session broke off (connection lost, TLS failed)

    def codes(self, command: str) -> list:
        return [code for cmd, code, _ in self.replies if cmd == command]

    @property
    def delivered(self) -> bool:
        """The server took the message: 250 after the final dot."""
        return self.codes(".") == [250]

    @property
    def last_reply(self) -> str:
        """The last reply before QUIT's, as "code text": the one that decided the session."""
        decisive = [r for r in self.replies if r[0] != "QUIT"]
        return f"{decisive[-1][1]} {decisive[-1][2]}" if decisive else ""


class _SmtpClient(smtplib.SMTP):
    """smtplib.SMTP that can do TLS from connect; SMTP_SSL cannot without a host name."""
    implicit_tls_context: ssl.SSLContext | None = None

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        ctx = self.implicit_tls_context
        return ctx.wrap_socket(sock) if ctx else sock


def smtp_session(port: int, to: str | Iterable[str] = f"alice@{SINK_DOMAIN}",
                 from_: str = "sender@mailpulse.test", *, source: str | None = None,
                 starttls: bool = False, implicit_tls: bool = False,
                 auth: tuple | None = None, quit_after: str | None = None, drop: bool = False,
                 subject: str = "mailpulse sandbox test", headers: Iterable[str] = (),
                 body: str = "Hello from the sandbox.\n", timeout: float = 30) -> SmtpResult:
    """One SMTP session to 127.0.0.1:port with Python's smtplib, recording every reply.

    source: client address to bind (127.0.0.2 may relay, 127.0.0.3 is refused); starttls /
    implicit_tls: STARTTLS (587) or TLS from connect (465), certificates not verified; auth:
    (user, password) for AUTH PLAIN; quit_after: QUIT after CONNECT, EHLO, AUTH, MAIL or RCPT,
    or drop the connection in the middle of DATA; drop: close the socket instead of QUIT."""
    rcpts = [to] if isinstance(to, str) else list(to)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    result = SmtpResult()
    kwargs = dict(local_hostname="client.mailpulse.test", timeout=timeout,
                  source_address=(source, 0) if source else None)
    smtp = _SmtpClient(**kwargs)
    smtp.implicit_tls_context = ctx if implicit_tls else None

    def step(command: str, reply: tuple) -> bool:
        """Records a reply; True if the session should go on."""
        result.replies.append((command, reply[0], reply[1].decode(errors="replace")))
        return 200 <= reply[0] < 400 and quit_after != command

    def converse() -> bool:
        """Runs the session up to its end or stop point; False if it must end by a drop."""
        if not step("CONNECT", smtp.connect("127.0.0.1", port)) or not step("EHLO", smtp.ehlo()):
            return True
        if starttls:
            if not step("STARTTLS", smtp.docmd("STARTTLS")):
                return True
            smtp.sock, smtp.file = ctx.wrap_socket(smtp.sock), None
            if not step("EHLO", smtp.ehlo()):
                return True
        if starttls or implicit_tls:
            result.tls_version = smtp.sock.version()
        if auth:
            token = base64.b64encode(f"\0{auth[0]}\0{auth[1]}".encode()).decode()
            if not step("AUTH", smtp.docmd("AUTH", f"PLAIN {token}")):
                return True
        if not step("MAIL", smtp.docmd("MAIL", f"FROM:<{from_}>")):
            return True
        accepted = [step("RCPT", smtp.docmd("RCPT", f"TO:<{r}>")) for r in rcpts]
        if quit_after == "RCPT" or not any(accepted) or not step("DATA", smtp.docmd("DATA")):
            if result.codes("DATA") == [354]:  # quit_after DATA: cut the message short
                smtp.send(b"Subject: cut short\r\n\r\npartial body\r\n")
                return False
            return True
        message = _message(from_, rcpts, subject, headers, body).rstrip("\n") + "\n"
        smtp.send(smtplib.quotedata(message).encode() + b".\r\n")
        step(".", smtp.getreply())
        return True

    try:
        if converse() and not drop:
            step("QUIT", smtp.docmd("QUIT"))
    except (OSError, smtplib.SMTPException) as e:
        result.error = f"{type(e).__name__}: {e}"
    finally:
        smtp.close()
    return result


# Postfix services, none chrooted. The smtpd listeners are added per instance.
_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixInstance(Component):
    """A self-contained Postfix on 127.0.0.1:`port` whose only next hop is the smtp-sink on
    `sink_port`: sink.test via relay_domains + transport_maps, everything else (outbound) via
    default_transport. Without a sink, delivery fails with 5.4.4.

    Policy: only 127.0.0.2 may relay to other domains (mynetworks); unknown sink.test users get
    550 5.1.1 (relay_recipient_maps); client 127.0.0.3 is refused by an access map; STARTTLS
    with a self-signed certificate. `submission=True` adds a 587-style listener (STARTTLS
    required, SASL via Dovecot at private/auth) on `submission_port`, `submissions=True` a
    465-style wrapper-mode one. `milter` (unix:/path) is plugged into smtpd and non-smtpd mail.
    Keyword overrides replace or add main.cf parameters."""

    def __init__(self, workdir: Path, name: str = "mx1", *, sink_port: int | None = None,
                 milter: str | None = None, submission: bool = False,
                 submissions: bool = False, **main_cf_overrides: str):
        self.workdir, self.name = workdir, name
        self.dir = workdir / f"postfix-{name}"
        self.config_dir, self.queue_dir = self.dir / "etc", self.dir / "queue"
        self.data_dir, self.maillog = self.dir / "data", self.dir / "maillog"
        self.hostname = f"{name}.mailpulse.test"
        self.port = free_port()
        self.submission_port = free_port() if submission else None
        self.submissions_port = free_port() if submissions else None
        self.sink_port, self.milter, self.overrides = sink_port, milter, main_cf_overrides
        self.master_pid: int | None = None

    def main_cf(self) -> dict:
        cert, key = make_tls_cert(self.workdir, self.hostname)
        users = ", ".join(f"{u}@{SINK_DOMAIN}=ok" for u in SINK_USERS)
        sink = f"smtp:[127.0.0.1]:{self.sink_port}"
        cf = {
            "compatibility_level": "3.6",
            "config_directory": self.config_dir, "queue_directory": self.queue_dir,
            "data_directory": self.data_dir, "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4",
            "myhostname": self.hostname, "mydomain": "mailpulse.test",
            "myorigin": "$myhostname", "mydestination": "", "local_recipient_maps": "",
            "alias_maps": "", "alias_database": "", "biff": "no",
            "smtpd_banner": "$myhostname ESMTP mailpulse sandbox",
            "smtpd_peername_lookup": "no",  # no DNS here: every client is "unknown"
            "in_flow_delay": "0s",
            "mynetworks": f"{TRUSTED_CLIENT}/32",
            "relay_domains": SINK_DOMAIN, "relay_recipient_maps": f"inline:{{ {users} }}",
            "transport_maps": f"inline:{{ {SINK_DOMAIN}={sink} }}" if self.sink_port else "",
            "default_transport": sink if self.sink_port else "error:5.4.4 no sink configured",
            "smtpd_client_restrictions":
                f"check_client_access inline:{{ {REJECTED_CLIENT}=REJECT }}",
            "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
                                        "reject_unauth_destination",
            "smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key,
            "smtpd_tls_security_level": "may", "smtpd_tls_loglevel": "1",
            "smtpd_sasl_type": "dovecot", "smtpd_sasl_path": "private/auth",
            "milter_default_action": "accept", "milter_protocol": "6",
        }
        if self.milter:
            cf["smtpd_milters"] = cf["non_smtpd_milters"] = self.milter
        cf.update(self.overrides)
        return cf

    def master_cf(self) -> str:
        lines = [f"127.0.0.1:{self.port} inet n - n - - smtpd"]
        sasl = ("-o smtpd_sasl_auth_enable=yes -o smtpd_client_restrictions= "
                "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject "
                "-o milter_macro_daemon_name=ORIGINATING")
        if self.submission_port:
            lines.append(f"127.0.0.1:{self.submission_port} inet n - n - - smtpd "
                         f"-o syslog_name=postfix/submission "
                         f"-o smtpd_tls_security_level=encrypt {sasl}")
        if self.submissions_port:
            lines.append(f"127.0.0.1:{self.submissions_port} inet n - n - - smtpd "
                         f"-o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes {sasl}")
        return "\n".join(lines) + "\n" + _MASTER_CF

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs postfix(1) -c <config dir> with args."""
        return run(["postfix", "-c", str(self.config_dir), *args], check=check)

    def start(self) -> "PostfixInstance":
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir(parents=True)
        shutil.chown(self.data_dir, "postfix")  # master refuses to lock a root-owned one
        (self.config_dir / "main.cf").write_text(
            "".join(f"{k} = {v}\n" for k, v in self.main_cf().items()))
        (self.config_dir / "master.cf").write_text(self.master_cf())
        proc = self.postfix("start", check=False)
        pid_file = self.queue_dir / "pid" / "master.pid"
        if pid_file.exists():
            self.master_pid = int(pid_file.read_text().split()[0])
            _record_pid(self.workdir, "master", self.master_pid)
        if proc.returncode != 0 or not self.master_pid:
            raise RuntimeError(f"postfix {self.name} failed to start:\n{proc.stdout}"
                               f"{proc.stderr}\n{self.log_text()[-3000:]}")
        for port in (self.port, self.submission_port, self.submissions_port):
            if port:  # master -w binds before `postfix start` returns; this is a check
                poll(lambda: port_listening(port), 10, f"postfix {self.name} on port {port}")
        return self

    def stop(self) -> None:
        if not self.master_pid:
            return
        pid, self.master_pid = self.master_pid, None
        children = [p for p in all_pids() if parent_pid(p) == pid]
        self.postfix("stop", check=False)
        with contextlib.suppress(TimeoutError):
            poll(lambda: not pid_alive(pid), 10, f"postfix master {pid} to exit")
        for p in [pid] + children:  # they linger only if `postfix stop` failed
            if pid_alive(p):
                kill_pid(p)

    def restart(self) -> None:
        """Starts it again after stop(), with the same configuration and queue."""
        proc = self.postfix("start", check=False)
        pid_file = self.queue_dir / "pid" / "master.pid"
        if proc.returncode != 0 or not pid_file.exists():
            raise RuntimeError(f"postfix {self.name} failed to restart:\n{proc.stdout}"
                               f"{proc.stderr}")
        self.master_pid = int(pid_file.read_text().split()[0])
        _record_pid(self.workdir, "master", self.master_pid)
        poll(lambda: port_listening(self.port), 10, f"postfix {self.name} on port {self.port}")

    def log_text(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def log_mark(self) -> int:
        """The current end of the log, to wait for lines written after this point."""
        return len(self.log_text())

    def wait_for_log(self, regex: str, timeout: float = 20, since: int = 0) -> re.Match:
        """Waits until the log (from offset `since`) matches regex; returns the match."""
        return poll(lambda: re.search(regex, self.log_text()[since:], re.M), timeout,
                    f"/{regex}/ in {self.maillog}")

    def queue(self) -> list:
        """The queue as postqueue -j reports it: one dict per message."""
        out = run(["postqueue", "-c", str(self.config_dir), "-j"]).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for_queue_empty(self, timeout: float = 30) -> None:
        poll(lambda: not self.queue(), timeout, f"postfix {self.name} queue to empty",
             interval=0.2)

    def sendmail(self, to: str | Iterable[str], from_: str = "webapp@mailpulse.test",
                 subject: str = "mailpulse sandbox sendmail", body: str = "Hello.\n",
                 headers: Iterable[str] = ()) -> None:
        """Local submission: sendmail(1) -> postdrop -> pickup, seen by non_smtpd_milters.
        The stock setgid postdrop accepts the sandbox config dir because we run as root:
        Postfix checks alternate_config_directories only for other users."""
        rcpts = [to] if isinstance(to, str) else list(to)
        run(["sendmail", "-C", str(self.config_dir), "-f", from_, "--", *rcpts],
            input=_message(from_, rcpts, subject, headers, body))


class DovecotInstance(Component):
    """A self-contained Dovecot giving `postfix` SASL at <queue>/private/auth, with passwd-file
    users {name: password} and their mail in Maildirs under <dir>/mail. `imap=True` adds IMAP
    on `imap_port`; `imaps=True` adds IMAP over implicit TLS on `imaps_port` and STARTTLS on
    the IMAP port, with a self-signed certificate for `tls_name` (make_tls_cert: `cert_file`);
    both need dovecot-imapd, which dovecot-core alone lacks. `lmtp=True` adds LMTP delivery on
    the unix socket `lmtp_socket` (<queue>/private/dovecot-lmtp, for Postfix's
    `lmtp:unix:private/dovecot-lmtp`); that needs dovecot-lmtpd."""

    def __init__(self, workdir: Path, postfix: PostfixInstance, users: dict | None = None,
                 imap: bool = False, imaps: bool = False, lmtp: bool = False,
                 tls_name: str = "imap.mailpulse.test"):
        self.dir = workdir / "dovecot"
        self.conf, self.pid_file = self.dir / "dovecot.conf", self.dir / "run" / "master.pid"
        self.users = users or {SASL_USER: SASL_PASSWORD}
        self.imap_port = free_port() if imap else None
        self.imaps_port = free_port() if imaps else None
        self.tls_name = tls_name
        self.cert_file: Path | None = None
        self.auth_socket = postfix.queue_dir / "private" / "auth"
        self.lmtp_socket = postfix.queue_dir / "private" / "dovecot-lmtp" if lmtp else None
        self.master_pid: int | None = None

    def maildir(self, user: str) -> Path:
        """Where Dovecot keeps `user`'s INBOX (Maildir: new/ and cur/ hold the messages)."""
        return self.dir / "mail" / user

    def _tls_config(self) -> str:
        if not self.imaps_port:
            return "ssl = no"
        cert, key = make_tls_cert(self.dir.parent, self.tls_name)
        self.cert_file = cert
        return f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"

    def _lmtp_config(self) -> str:
        if not self.lmtp_socket:
            return ""
        return f"""\
service lmtp {{
  unix_listener {self.lmtp_socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""

    def config(self) -> str:
        d = self.dir
        protocols = " ".join(p for p, on in (("imap", self.imap_port or self.imaps_port),
                                             ("lmtp", self.lmtp_socket)) if on) or "none"
        return f"""\
base_dir = {d}/run
state_dir = {d}/state
instance_name = dovecot-{d.parent.name}
log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = {protocols}
{self._tls_config()}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port or 0}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port or 0}
    ssl = {"yes" if self.imaps_port else "no"}
  }}
}}
service auth {{
  unix_listener {self.auth_socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
{self._lmtp_config()}"""

    def start(self) -> "DovecotInstance":
        for sub in ("run", "state"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("mail", "home"):  # mail is read and written as the static userdb's nobody
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
            shutil.chown(self.dir / sub, "nobody", "nogroup")
        (self.dir / "users").write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        self.conf.write_text(self.config())
        proc = run(["dovecot", "-c", str(self.conf)], check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"dovecot failed: {proc.stderr}{self.log_text()}")
        self.master_pid = int(poll(lambda: self.pid_file.exists() and self.pid_file.read_text(),
                                   10, "dovecot pid file").split()[0])
        _record_pid(self.dir.parent, "dovecot", self.master_pid)
        poll(lambda: self.auth_socket.exists() and all(
            port_listening(p) for p in (self.imap_port, self.imaps_port) if p) and (
            not self.lmtp_socket or self.lmtp_socket.exists()), 10,
            "dovecot auth socket, listeners and LMTP socket")
        return self

    def stop(self) -> None:
        if not self.master_pid and self.pid_file.exists():  # start() failed half way
            with contextlib.suppress(ValueError, IndexError):
                self.master_pid = int(self.pid_file.read_text().split()[0])
        if not self.master_pid:
            return
        pid, self.master_pid = self.master_pid, None
        run(["dovecot", "-c", str(self.conf), "stop"], check=False)
        with contextlib.suppress(TimeoutError):
            poll(lambda: not pid_alive(pid), 10, f"dovecot {pid} to exit")
        if pid_alive(pid):
            kill_pid(pid)

    def log_text(self) -> str:
        log = self.dir / "dovecot.log"
        return log.read_text(errors="replace") if log.exists() else ""


def parse_metrics(text: str) -> dict:
    """Prometheus text exposition -> {(name, frozenset(labels.items())): value}."""
    out = {}
    unescape = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
    for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)", text, re.M):
        labels = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"', m[2] or "")
        out[(m[1], frozenset((k, re.sub(r'\\[\\"n]', lambda e: unescape[e[0]], v))
                             for k, v in labels))] = float(m[3])
    return out


def metric_sum(metrics: dict, name: str, **labels: str) -> float:
    """Sum of `name` over every series whose labels include the given ones (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= ls)


class MilterProcess(Component):
    """mailpulse-milter in the foreground, configured by a file it is given (or, with
    use_config=False, by --socket/--metrics-listen flags): socket `socket_path` (Postfix
    address: `address`), /metrics on `metrics_port`, stderr captured to `stderr_path`.
    Started as root, it binds the 0660 socket with group postfix and then becomes `user`
    (nobody). It watches the Postfix queue at `queue_directory` only when given one (never the
    host's own)."""

    def __init__(self, workdir: Path, binary: Path | None = None, *, use_config: bool = True,
                 trusted_networks: Iterable[str] = (f"{TRUSTED_CLIENT}/32",),
                 hop_name: str = "mx1", extra_config: str = "", args: Iterable[str] = (),
                 user: str = "nobody", queue_directory: Path | str = ""):
        self.dir = workdir / "milter"
        self.binary = Path(binary or milter_binary())
        self.socket_path = self.dir / "milter.sock"
        self.address = f"unix:{self.socket_path}"
        self.metrics_port = free_port()
        self.config_path, self.stderr_path = self.dir / "milter.toml", self.dir / "milter.stderr"
        self.use_config, self.args, self.extra_config = use_config, list(args), extra_config
        self.trusted, self.hop_name = list(trusted_networks), hop_name
        self.user, self.queue_directory = user, queue_directory
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        nets = ", ".join(f'"{n}"' for n in self.trusted)
        return (f'[log]\ntarget = "stderr"\nlevel = "info"\n\n'
                f'[milter]\nsocket = "{self.address}"\nsocket_group = "postfix"\n'
                f'user = "{self.user}"\nmetrics_listen = "127.0.0.1:{self.metrics_port}"\n'
                f'trusted_networks = [{nets}]\nhop_name = "{self.hop_name}"\n'
                f'postfix_queue_directory = "{self.queue_directory}"\n'
                f'sendmail_queue_directory = ""\n'
                f"{self.extra_config}")

    def start(self) -> "MilterProcess":
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary} is not built")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        argv = [str(self.binary), "--foreground"]
        argv += (["--config", str(self.config_path)] if self.use_config else
                 ["--socket", self.address, "--metrics-listen", f"127.0.0.1:{self.metrics_port}"])
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(argv + self.args, stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, start_new_session=True)
        _record_pid(self.dir.parent, "mailpulse-milter", self.proc.pid)
        poll(lambda: self.proc.poll() is not None or (
            self.socket_path.exists() and self.metrics_text(quiet=True) is not None),
            15, f"milter socket {self.socket_path} and {self.metrics_url}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"milter exited {self.proc.returncode}:\n{self.stderr_text()}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            kill_pid(self.proc.pid)
        if self.proc:
            self.proc.wait()

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Sends sig (SIGHUP to reload, SIGKILL to crash it, ...) without waiting."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics_text(self, quiet: bool = False) -> str | None:
        """GET /metrics; None on failure if quiet, else the error propagates."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            if quiet:
                return None
            raise

    def metrics(self) -> dict:
        return parse_metrics(self.metrics_text())

    def wait_for_metric(self, name: str, at_least: float, timeout: float = 20,
                        **labels: str) -> dict:
        """Polls /metrics until the sum of `name` over series with `labels` reaches at_least;
        returns the metrics that satisfied it."""
        return poll(lambda: (lambda m: m if metric_sum(m, name, **labels) >= at_least
                             else None)(self.metrics()), timeout,
                    f"{name}{labels or ''} >= {at_least}", interval=0.1)

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


class MailSystem(Component):
    """The usual assembly in one work dir: smtp-sink, then (optionally) the milter, Postfix
    with submission (587) and submissions (465) listeners, then Dovecot for SASL (its users
    {login: password}, default SASL_USER); stopped in reverse order. Postfix keyword overrides
    go to main.cf."""

    def __init__(self, workdir: Path, *, milter: bool = False, dovecot: bool = True,
                 milter_args: dict | None = None, dovecot_users: dict | None = None,
                 **postfix_overrides: str):
        self.workdir = workdir
        self.sink = SmtpSink(workdir)
        self.milter = MilterProcess(workdir, **(milter_args or {})) if milter else None
        self.postfix = PostfixInstance(
            workdir, sink_port=self.sink.port, submission=dovecot, submissions=dovecot,
            milter=self.milter.address if self.milter else None, **postfix_overrides)
        self.dovecot = (DovecotInstance(workdir, self.postfix, users=dovecot_users)
                        if dovecot else None)
        self._stack = contextlib.ExitStack()

    def start(self) -> "MailSystem":
        for part in (self.sink, self.milter, self.postfix, self.dovecot):
            if part:
                self._stack.enter_context(part)
        return self

    def stop(self) -> None:
        self._stack.close()

    def diagnostics(self, lines: int = 40) -> str:
        """Tails of every log, for a failing test's report."""
        logs = {"postfix": self.postfix.log_text(),
                "dovecot": self.dovecot.log_text() if self.dovecot else "",
                "milter": self.milter.stderr_text() if self.milter else ""}
        return "".join(f"--- {name} (last {lines} lines) ---\n"
                       + "\n".join(text.splitlines()[-lines:]) + "\n"
                       for name, text in logs.items() if text)
