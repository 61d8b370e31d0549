"""The mailpulse-probe daemon (`mailpulse-probe run`) and its event listener for integration
tests: a config file written from Python values, the daemon started in the foreground and
stopped by PID, its /metrics, its log, its open file descriptors and memory; and
`mailpulse-probe events`, which owns an event socket and prints each event as a JSON line (the
daemon's probe.report_to points at it). Standard library only; sandbox.py conventions: work
dirs, free ports, PIDs recorded for reap_stale, every wait a poll with a deadline.
"""
from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import urllib.request
from pathlib import Path

import sandbox


def toml_value(value) -> str:
    """A TOML literal for a str, bool, int, float or list of str."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def render_config(probe: dict, targets: list, log_level: str = "info",
                  sections: tuple = ()) -> str:
    """[log], [probe], one [[target]] per dict, then the (array name, dict) `sections`
    ([[alert]], [[notifier]] ...), in order."""
    out = [f'[log]\ntarget = "stderr"\nlevel = "{log_level}"\n', "[probe]"]
    out += [f"{k} = {toml_value(v)}" for k, v in probe.items()]
    for array, keys in [("target", t) for t in targets] + list(sections):
        out.append(f"\n[[{array}]]")
        out += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    return "\n".join(out) + "\n"


class ProbeDaemon(sandbox.Component):
    """`mailpulse-probe run --foreground` with a config made from `targets` (dicts of [[target]]
    keys) and `probe` ([probe] keys, over these defaults: a free metrics port, an event socket
    in the work dir, user nobody). Started as root, it binds, then becomes nobody."""

    def __init__(self, workdir: Path, targets: list, probe: dict | None = None,
                 name: str = "probe", log_level: str = "info", sections: tuple = ()):
        self.dir = workdir / name
        self.metrics_port = sandbox.free_port()
        self.event_socket = self.dir / "events.sock"
        self.state_dir = self.dir / "state"  # nobody's, for probe.alert_state_file
        self.probe = {"name": name, "user": "nobody",
                      "metrics_listen": f"127.0.0.1:{self.metrics_port}",
                      "event_socket": f"unix:{self.event_socket}",
                      "alert_state_file": str(self.state_dir / "alerts.json"), **(probe or {})}
        self.targets, self.log_level, self.sections = list(targets), log_level, tuple(sections)
        self.config_path, self.log_path = self.dir / "probe.toml", self.dir / "probe.log"
        self.proc: subprocess.Popen | None = None

    def write_config(self, targets: list | None = None, probe: dict | None = None,
                     text: str | None = None) -> None:
        """Rewrites the config file (for a reload): new targets and/or [probe] keys, or
        verbatim text."""
        if targets is not None:
            self.targets = list(targets)
        if probe is not None:
            self.probe.update(probe)
        self.config_path.write_text(
            text if text is not None else render_config(self.probe, self.targets, self.log_level,
                                                        self.sections))

    def start(self) -> "ProbeDaemon":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.state_dir.mkdir(exist_ok=True)
        os.chown(self.state_dir, pwd.getpwnam("nobody").pw_uid, -1)
        self.write_config()
        argv = [str(sandbox.probe_binary()), "run", "--foreground", "--config",
                str(self.config_path)]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        sandbox._record_pid(self.dir.parent, "mailpulse-probe", self.proc.pid)
        sandbox.poll(lambda: self.proc.poll() is not None or self.metrics_text(quiet=True),
                     15, f"probe daemon /metrics on port {self.metrics_port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"probe daemon exited {self.proc.returncode}:\n{self.log_text()}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            sandbox.kill_pid(self.proc.pid)
        if self.proc:
            self.proc.wait()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def reload(self, expect: str = "success", timeout: float = 10) -> dict:
        """SIGHUP, then waits until the reload counter with result `expect` went up by one;
        returns the metrics that showed it."""
        name = "mailpulse_probe_config_reloads_total"
        before = sandbox.metric_sum(self.metrics(), name, result=expect)
        self.signal(signal.SIGHUP)
        return self.wait_for_metric(name, before + 1, timeout, result=expect)

    def metrics_text(self, quiet: bool = False) -> str | None:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            if quiet:
                return None
            raise

    def metrics(self) -> dict:
        return sandbox.parse_metrics(self.metrics_text())

    def metric(self, name: str, **labels: str) -> float:
        return sandbox.metric_sum(self.metrics(), name, **labels)

    def wait_for_metric(self, name: str, at_least: float, timeout: float = 20,
                        **labels: str) -> dict:
        return sandbox.poll(
            lambda: (lambda m: m if sandbox.metric_sum(m, name, **labels) >= at_least
                     else None)(self.metrics()),
            timeout, f"{name}{labels or ''} >= {at_least}", interval=0.05)

    def wait_for_checks(self, target: str, n: int, timeout: float = 20) -> dict:
        """Waits until `target` has had at least n checks (any result)."""
        return self.wait_for_metric("mailpulse_probe_checks_total", n, timeout, target=target)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def open_fds(self) -> int:
        """Open file descriptors, without the /metrics listener and its connections (a
        scrape that just ended may still hold one for a moment)."""
        http = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for row in (line.split() for line in list(f)[1:]):
                    if row[1].endswith(f":{self.metrics_port:04X}"):
                        http.add(f"socket:[{row[9]}]")
        fd_dir = f"/proc/{self.proc.pid}/fd"
        links = []
        for fd in os.listdir(fd_dir):
            try:
                links.append(os.readlink(f"{fd_dir}/{fd}"))
            except OSError:
                pass  # closed meanwhile
        return sum(1 for link in links if link not in http)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def user(self) -> str:
        uid = int(Path(f"/proc/{self.proc.pid}/status").read_text()
                  .split("Uid:", 1)[1].split()[0])
        return pwd.getpwuid(uid).pw_name


class EventListener(sandbox.Component):
    """`mailpulse-probe events --listen unix:<dir>/events.sock`: every event it receives is a
    JSON line in its output file; `events()` parses them."""

    def __init__(self, workdir: Path, name: str = "listener"):
        self.dir = workdir / name
        self.socket = self.dir / "events.sock"
        self.address = f"unix:{self.socket}"
        self.out_path = self.dir / "events.jsonl"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "EventListener":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        with open(self.out_path, "w") as out, open(self.dir / "stderr", "w") as err:
            self.proc = subprocess.Popen(
                [str(sandbox.probe_binary()), "events", "--listen", self.address],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        sandbox._record_pid(self.dir.parent, "mailpulse-probe", self.proc.pid)
        sandbox.poll(lambda: self.proc.poll() is not None or self.socket.exists(), 10,
                     f"event listener socket {self.socket}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"event listener exited: {(self.dir / 'stderr').read_text()}")
        # A daemon running as nobody must be able to connect.
        os.chmod(self.socket, 0o666)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            sandbox.kill_pid(self.proc.pid)
        if self.proc:
            self.proc.wait()

    def events(self) -> list:
        lines = self.out_path.read_text().splitlines() if self.out_path.exists() else []
        return [json.loads(line) for line in lines if line.endswith("}")]

    def probe_results(self, target: str | None = None) -> list:
        return [e["probe_result"] for e in self.events() if "probe_result" in e and
                (target is None or e["probe_result"]["target"] == target)]

    def wait_for_results(self, target: str, n: int = 1, timeout: float = 20) -> list:
        return sandbox.poll(lambda: (lambda r: r if len(r) >= n else None)(
            self.probe_results(target)), timeout, f"{n} probe result(s) for {target}")
