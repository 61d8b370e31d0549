"""The tools tests/bench/probe_compare.py compares, and how each is driven and measured.

Each driver runs one tool at a given concurrency for a given time (launching new checks until
then, and waiting for those in flight), and returns an Outcome: checks done, how many the tool
itself counted as successful, failures by kind, and the CPU the tool's own processes used.
Every process started here is recorded for sandbox.reap_stale() and stopped by PID, pass or
fail. Standard library only.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import sandbox

CHECK_SMTP = Path("/usr/lib/nagios/plugins/check_smtp")
BLACKBOX = Path("/usr/bin/prometheus-blackbox-exporter")
CLK_TCK = os.sysconf("SC_CLK_TCK")
TIMEOUT = 30  # seconds per check, for every tool


@dataclasses.dataclass
class Outcome:
    checks: int
    ok: int
    cpu_seconds: float  # the tool's own processes, user + system
    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    problems: list = dataclasses.field(default_factory=list)  # the driver's own complaints
    report: dict = dataclasses.field(default_factory=dict)  # probe_bench's JSON, when it ran


def record_pid(workdir: Path, kind: str, pid: int) -> None:
    """Notes a PID as sandbox.py does, for sandbox.reap_stale() should this script die."""
    with open(workdir / ".pids", "a") as f:
        f.write(f"{kind} {pid}\n")


def rusage_seconds(ru) -> float:
    return ru.ru_utime + ru.ru_stime


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of a live process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_child(proc: subprocess.Popen, timeout: float, sample=None) -> float:
    """Reaps proc (killing it after timeout seconds); returns its CPU seconds from wait4.
    Never proc.poll(): that would reap it and lose the rusage. `sample`, if given, is called
    every 0.25 s meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return rusage_seconds(ru)
        if time.monotonic() > deadline:
            sandbox.kill_pid(proc.pid)
            raise TimeoutError(f"{proc.args[0]} still running after {timeout:g}s; killed")
        if sample:
            sample()
        time.sleep(0.25 if sample else 0.02)


# --- mailpulse-probe ------------------------------------------------------------------------

def probe_bench_binary(build: Path) -> Path:
    return build / "tests" / "bench" / "probe_bench"


def run_probe_bench(build: Path, workdir: Path, args: list, timeout: float = 600,
                    sample=None) -> Outcome:
    """One probe_bench process; its JSON line is its own account, wait4 gives its CPU (setup
    included). `sample`, if given, is called every 0.25 s while it runs."""
    out_path, err_path = workdir / "probe_bench.out", workdir / "probe_bench.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([str(probe_bench_binary(build)), *args],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    record_pid(workdir, "probe_bench", proc.pid)
    try:
        cpu = wait_child(proc, timeout, sample)
    finally:
        if proc.returncode is None:
            sandbox.kill_pid(proc.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
    lines = out_path.read_text().splitlines()
    if not lines:
        raise RuntimeError(f"probe_bench exited {proc.returncode} without a report: "
                           f"{err_path.read_text()[-2000:]}")
    report = json.loads(lines[-1])
    o = Outcome(report["checks"], report["ok"], cpu,
                collections.Counter(report["failures"]), report=report)
    if proc.returncode != 0 and report["all_ok"]:
        o.problems.append(f"probe_bench exited {proc.returncode}")
    return o


# --- check_smtp -----------------------------------------------------------------------------

def run_check_smtp(workdir: Path, port: int, concurrency: int, duration: float) -> Outcome:
    """check_smtp -S, one process per check, `concurrency` at a time, launched with
    posix_spawn and reaped with wait4, which gives each process's CPU."""
    argv = [str(CHECK_SMTP), "-H", "127.0.0.1", "-p", str(port), "-S",
            "-F", "check-smtp.bench.mailpulse.test", "-t", str(TIMEOUT)]
    out_path = workdir / "check_smtp.out"
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out, 1),
               (os.POSIX_SPAWN_DUP2, out, 2)]
    running, exits, cpu = set(), collections.Counter(), 0.0
    start = time.monotonic()
    try:
        while True:
            while len(running) < concurrency and time.monotonic() - start < duration:
                running.add(os.posix_spawn(argv[0], argv, {"LC_ALL": "C"}, file_actions=actions))
            if not running:
                break
            # Blocking is bounded: every check_smtp gives up after its -t timeout.
            pid, status, ru = os.wait4(-1, 0)
            if pid not in running:  # another child of ours; the caller checks its components
                print(f"warning: process {pid}, not a check_smtp, exited during the run "
                      f"(status {status:#x})", file=sys.stderr, flush=True)
                continue
            running.discard(pid)
            cpu += rusage_seconds(ru)
            exits[os.waitstatus_to_exitcode(status)] += 1
    finally:
        for pid in running:  # only after an error: stop what is still running
            sandbox.kill_pid(pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        os.close(out), os.close(null)
    text = out_path.read_text(errors="replace")
    said_ok = len(re.findall(r"^SMTP OK - ", text, re.M))
    checks = sum(exits.values())
    o = Outcome(checks, exits[0], cpu,
                collections.Counter({f"exit {c}": n for c, n in exits.items() if c != 0}))
    if said_ok != exits[0]:
        o.problems.append(f"check_smtp: {exits[0]} exited 0 but {said_ok} said 'SMTP OK'")
    return o


# --- blackbox_exporter ----------------------------------------------------------------------

class BlackboxExporter(sandbox.Component):
    """prometheus-blackbox-exporter on a loopback port with one module, smtp_starttls: the tcp
    prober speaking SMTP up to STARTTLS, the handshake, EHLO again and QUIT. Sends end in
    "\\r" because the prober appends only "\\n" and SMTP wants CRLF."""
    MODULE = "smtp_starttls"
    CONFIG = """\
modules:
  smtp_starttls:
    prober: tcp
    timeout: 30s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220"
        - send: "EHLO blackbox.bench.mailpulse.test\\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO blackbox.bench.mailpulse.test\\r"
        - expect: "^250 "
        - send: "QUIT\\r"
      tls_config:
        insecure_skip_verify: true
"""

    def __init__(self, workdir: Path):
        self.dir, self.port = workdir / "blackbox", sandbox.free_port()
        self.config_path = self.dir / "blackbox.yml"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "BlackboxExporter":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.CONFIG)
        sandbox.run([str(BLACKBOX), "--config.check", f"--config.file={self.config_path}"])
        with open(self.dir / "exporter.log", "w") as log:
            self.proc = subprocess.Popen(
                [str(BLACKBOX), f"--config.file={self.config_path}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        record_pid(self.dir.parent, "prometheus-blackbox-exporter", self.proc.pid)
        sandbox.poll(lambda: self.proc.poll() is not None or sandbox.port_listening(self.port),
                     15, "blackbox_exporter")
        if self.proc.poll() is not None:
            raise RuntimeError(f"blackbox_exporter exited: {self.log_text()[-2000:]}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            sandbox.kill_pid(self.proc.pid)
        if self.proc:
            self.proc.wait()

    def log_text(self) -> str:
        return (self.dir / "exporter.log").read_text(errors="replace")


def run_blackbox(exporter: BlackboxExporter, target: str, concurrency: int,
                 duration: float) -> Outcome:
    """`concurrency` HTTP clients, each on one keep-alive connection, GET /probe until the
    time is up. A check succeeded when the exporter answered 200 with probe_success 1."""
    path = f"/probe?module={exporter.MODULE}&target={target}"
    deadline = time.monotonic() + duration
    lock = threading.Lock()
    totals = {"checks": 0, "ok": 0}
    failures = collections.Counter()

    def client() -> None:
        checks = ok = 0
        failed = collections.Counter()
        conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=TIMEOUT + 5)
        while time.monotonic() < deadline:
            checks += 1
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
            except (OSError, http.client.HTTPException) as e:
                failed[f"http: {type(e).__name__}"] += 1
                conn.close()
                continue
            if resp.status == 200 and re.search(r"^probe_success 1$", body, re.M):
                ok += 1
            else:
                failed["probe_failed_due_to_regex 1" if "probe_failed_due_to_regex 1" in body
                       else f"HTTP {resp.status}, probe_success != 1"] += 1
        conn.close()
        with lock:
            totals["checks"] += checks
            totals["ok"] += ok
            failures.update(failed)

    cpu_before = proc_cpu_seconds(exporter.proc.pid)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + TIMEOUT + 30)  # a client ends by itself after its deadline
    o = Outcome(totals["checks"], totals["ok"], proc_cpu_seconds(exporter.proc.pid) - cpu_before,
                failures)
    if any(t.is_alive() for t in threads):
        o.problems.append("an HTTP client did not finish")
    if exporter.proc.poll() is not None:
        o.problems.append(f"blackbox_exporter died: {exporter.log_text()[-500:]}")
    return o


# --- 10,000 sessions held open against smtp-sink -------------------------------------------

class HoldSinks(sandbox.Component):
    """`count` smtp-sink processes that wait `hold` seconds before answering EHLO, so every
    session stays open; each may hold `per_sink` sessions (-m) and has descriptors for them."""

    def __init__(self, workdir: Path, count: int, per_sink: int, hold: float):
        self.dir, self.per_sink, self.hold = workdir / "hold-sinks", per_sink, hold
        self.ports = [sandbox.free_port() for _ in range(count)]
        self.procs: list = []

    def start(self) -> "HoldSinks":
        self.dir.mkdir(parents=True, exist_ok=True)
        limit = self.per_sink + 256

        def raise_fd_limit() -> None:  # in the child, before exec
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        for port in self.ports:
            with open(self.dir / f"smtp-sink-{port}.log", "w") as log:
                proc = subprocess.Popen(
                    ["smtp-sink", "-u", "postfix", "-h", sandbox.SINK_DOMAIN, "-m",
                     str(self.per_sink + 100), "-W", f"ehlo:{self.hold:g}",
                     f"127.0.0.1:{port}", "4096"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    preexec_fn=raise_fd_limit)
            self.procs.append(proc)
            record_pid(self.dir.parent, "smtp-sink", proc.pid)
        for port, proc in zip(self.ports, self.procs):
            sandbox.poll(lambda: proc.poll() is not None or sandbox.port_listening(port), 10,
                         f"smtp-sink on {port}")
            if proc.poll() is not None:
                raise RuntimeError(f"smtp-sink on {port} exited")
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                sandbox.kill_pid(proc.pid)
            proc.wait()

    def open_fds(self) -> int:
        return sum(len(os.listdir(f"/proc/{p.pid}/fd")) for p in self.procs if p.poll() is None)


@dataclasses.dataclass
class HeldSessions:
    sessions: int
    sinks: int
    hold: float
    outcome: Outcome
    sink_peak: int  # most sessions the sinks held at once (their descriptors over the idle)

    @property
    def report(self) -> dict:
        return self.outcome.report


def run_held_sessions(build: Path, workdir: Path, sessions: int, per_sink: int,
                      hold: float) -> HeldSessions:
    """`sessions` plain checks (banner, EHLO, QUIT) all launched at once from one probe_bench
    process, each held open by the sink's delayed EHLO reply."""
    count = math.ceil(sessions / per_sink)
    with HoldSinks(workdir, count, math.ceil(sessions / count), hold) as sinks:
        idle = sinks.open_fds()
        peak = [0]

        def sample() -> None:
            peak[0] = max(peak[0], sinks.open_fds() - idle)

        outcome = run_probe_bench(
            build, workdir, ["--tls", "none", "--checks", str(sessions), "--concurrency",
                             str(sessions), "--timeout", "120",
                             *(f"127.0.0.1:{p}" for p in sinks.ports)], sample=sample)
        if any(p.poll() is not None for p in sinks.procs):
            outcome.problems.append("an smtp-sink died during the run")
    return HeldSessions(sessions, count, hold, outcome, peak[0])


# --- references: OpenSSL's own client, and where the probe's CPU goes -----------------------

def openssl_s_time(workdir: Path, cert: Path, seconds: float) -> dict:
    """`openssl s_time -new` against `openssl s_server` with the sandbox certificate: full
    TLS 1.3 handshakes with the same library, no SMTP. Returns handshakes and s_time's CPU."""
    port = sandbox.free_port()
    key = cert.with_suffix(".key")
    with open(workdir / "s_server.log", "w") as log:
        server = subprocess.Popen(
            ["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
             "-key", str(key)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    record_pid(workdir, "openssl", server.pid)
    try:
        sandbox.poll(lambda: server.poll() is not None or sandbox.port_listening(port), 10,
                     "openssl s_server")
        with open(workdir / "s_time.out", "w") as out:
            client = subprocess.Popen(
                ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time",
                 f"{max(1, round(seconds))}"], stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT)
        record_pid(workdir, "openssl", client.pid)
        cpu = wait_child(client, seconds + 60)
    finally:
        sandbox.kill_pid(server.pid)
        server.wait()
    text = (workdir / "s_time.out").read_text(errors="replace")
    m = re.search(r"^(\d+) connections in [\d.]+s;", text, re.M)
    if client.returncode != 0 or not m or int(m[1]) == 0:
        raise RuntimeError(f"openssl s_time failed ({client.returncode}): {text[-1000:]}")
    return {"handshakes": int(m[1]), "cpu_seconds": cpu,
            "us_per_handshake": cpu / int(m[1]) * 1e6}


PROFILE_SYMBOLS = (  # exported entry points the probe's CPU passes through, inclusive
    ("ASN1_item_d2i_ex", "decoding the server's certificate (ASN1_item_d2i_ex)"),
    ("OSSL_DECODER_CTX_new_for_pkey", "… of which setting up OpenSSL 3's key decoder"),
    ("EVP_DigestVerifyFinal", "checking the server's handshake signature"),
    ("EVP_PKEY_generate", "generating the key share"),
    ("X509_verify_cert", "certificate chain check (its verdict ignored with --insecure)"),
    ("SSL_free", "SSL_free"),
    ("mailpulse::CheckRunner::Impl::HandleHandshakeDone", "collecting the certificate facts"),
    ("entry_SYSCALL_64_after_hwframe", "system calls (TCP over loopback, epoll)"),
)


def profile_probe(build: Path, workdir: Path, target: str, checks: int) -> dict | None:
    """perf record of probe_bench doing STARTTLS checks: CPU share by library and the
    inclusive share of PROFILE_SYMBOLS. None when perf is missing or fails."""
    perf = shutil.which("perf")
    if not perf:
        return None
    data = workdir / "perf.data"
    argv = [perf, "record", "-q", "-F", "999", "--call-graph", "dwarf,16384", "-o", str(data),
            "--", str(probe_bench_binary(build)), "--tls", "starttls", "--insecure", "--checks",
            str(checks), "--concurrency", "16", target]
    if sandbox.run(argv, check=False, timeout=300).returncode != 0:
        return None
    report = [perf, "report", "-i", str(data), "--stdio", "-g", "none"]
    by_dso = sandbox.run(report + ["--no-children", "--sort", "dso"], timeout=600).stdout
    by_sym = sandbox.run(report + ["--children", "--sort", "sym"], timeout=600).stdout
    dsos = [(float(p), name) for p, name in re.findall(r"^\s+([\d.]+)%\s+(\S+)\s*$", by_dso, re.M)]
    inclusive = {}
    for total, name in re.findall(r"^\s+([\d.]+)%\s+[\d.]+%\s+\[[.k]\]\s+(\S+)", by_sym, re.M):
        inclusive.setdefault(name, float(total))
    return {"checks": checks, "dsos": dsos[:8],
            "symbols": [(label, inclusive.get(sym)) for sym, label in PROFILE_SYMBOLS]}
