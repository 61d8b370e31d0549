"""The Prometheus path of alerting: contrib/prometheus/ (mailpulse-rules.yml, prometheus.yml).

Checked: `promtool check rules` passes on the rules (lint errors fatal) and `promtool check
config` on the shipped prometheus.yml and on a copy adjusted to this test's ports; every alert
has a `for:`, a severity and summary/description annotations, and uses only metrics that
docs/metrics.md documents; `promtool test rules` passes prometheus_rules_test.yml, whose
synthetic series show every alert firing when it should (and not before its `for:`, nor for the
series beside it); and a real Prometheus (loopback, its own storage in the work dir, 1 s
scrapes and evaluations) scraping a real mailpulse-milter and a real mailpulse-probe daemon
with the rules loaded fires, on its HTTP API, MailpulseTargetFailing for a target nothing
listens on (with the failure kind in the description), both certificate alerts for a server
whose certificate expires in two days, and the deferred-queue alerts for the milter's queue —
and not the alerts whose conditions are absent; every rule evaluates without error; when the
milter is stopped, MailpulseMilterDown fires and so does MailpulseEventPeerLost on the probe's
side, and the queue alerts resolve. The probe's built-in alerting, with the equivalent rules,
fires the same alerts (target failing, certificate expiring, deferred queue) on GET /alerts.

The queue the milter watches is a directory tree laid out as Postfix's (maildrop, incoming,
active, deferred, hold, hashed subdirectories, complete queue files mode 0700 starting with a
time record), filled by the test: the queue watch against a real Postfix is tested in
test_queue_watch.py. For the real Prometheus every `for:` of the rules is shortened to 1 s;
expressions, thresholds, labels and annotations are those shipped.
"""
from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import yaml

import sandbox
from probe_daemon import ProbeDaemon
from smtp_fakes import RefusedPort, ScriptedSmtp

CONTRIB = sandbox.REPO_ROOT / "contrib" / "prometheus"
RULES = CONTRIB / "mailpulse-rules.yml"
CONFIG = CONTRIB / "prometheus.yml"
UNIT_TESTS = Path(__file__).with_name("prometheus_rules_test.yml")
METRICS_DOC = sandbox.REPO_ROOT / "docs" / "metrics.md"
PROMTOOL, PROMETHEUS = shutil.which("promtool"), shutil.which("prometheus")
TLS_NAME = "tls.mailpulse.test"


@pytest.fixture(scope="module", autouse=True)
def prometheus_installed():
    if not (PROMTOOL and PROMETHEUS):
        pytest.skip("prometheus and promtool not installed (contrib/dev/install-deps)")


def promtool(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def rule_groups(text: str | None = None) -> list:
    return yaml.safe_load(text if text is not None else RULES.read_text())["groups"]


def alerting_rules() -> list:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def quick_rules() -> str:
    """The shipped rules with every `for:` shortened to 1 s, for a test that cannot wait
    minutes; nothing else changes."""
    groups = rule_groups()
    for group in groups:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "1s"
    return yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000)


def prometheus_dir(directory: Path, milter_port: int, probe_port: int, rules: str) -> Path:
    """A copy of contrib/prometheus/prometheus.yml in `directory`, scraping the milter and the
    probe on these loopback ports every second, evaluating every second, sending no alerts
    (there is no Alertmanager here), with `rules` as its mailpulse-rules.yml beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["mailpulse-rules.yml"]
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config.pop("alerting")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"mailpulse-milter", "mailpulse-probe"}, set(jobs)
    for name, port in (("mailpulse-milter", milter_port), ("mailpulse-probe", probe_port)):
        assert len(jobs[name]["static_configs"]) == 1
        jobs[name]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "mailpulse-rules.yml").write_text(rules)
    return path


# ------------------------------------------------------------------------------------------
# Static checks


def test_rules_and_config_pass_promtool_check(workdir):
    out = promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert "SUCCESS" in out, out
    out = promtool("check", "config", str(CONFIG))
    assert "SUCCESS: 1 rule files found" in out, out
    adjusted = prometheus_dir(workdir / "prometheus", sandbox.free_port(), sandbox.free_port(),
                              RULES.read_text())
    out = promtool("check", "config", str(adjusted))
    assert "is valid prometheus config file syntax" in out and "rules found" in out, out


def test_every_alert_has_for_severity_and_annotations_naming_its_subject():
    alerts = alerting_rules()
    assert len(alerts) >= 20
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), names
    for a in alerts:
        assert a["alert"].startswith("Mailpulse"), a["alert"]
        assert re.fullmatch(r"\d+[smh]", a.get("for", "")), a
        assert a["labels"]["severity"] in ("critical", "warning"), a
        assert set(a["annotations"]) == {"summary", "description"}, a
        text = a["annotations"]["summary"] + a["annotations"]["description"]
        # What the alert is about, from its labels: a target, a hop, a queue, an instance
        # (an absent() alert's subject is the job its expression names).
        assert (re.search(r"\$labels\.(target|hop|queue|instance|job)", text)
                or a["expr"].startswith("absent(")), a["alert"]


def test_rules_use_only_documented_metrics():
    documented = set(re.findall(r"^\| `(mailpulse_[a-z0-9_]+)`", METRICS_DOC.read_text(), re.M))
    assert "mailpulse_probe_success" in documented and "mailpulse_queue_messages" in documented
    used = set()
    for group in rule_groups():
        for rule in group["rules"]:
            text = rule["expr"] + json.dumps(rule.get("annotations", {}))
            used |= set(re.findall(r"(?<![\w:])mailpulse_[a-z0-9_]+(?![\w:])", text))
    base = {re.sub(r"_bucket$", "", name) for name in used}
    assert base - documented == set(), "not in docs/metrics.md"
    # The signals the built-in alerting has (issue 6), each in some rule.
    assert {"mailpulse_probe_success", "mailpulse_probe_duration_seconds",
            "mailpulse_probe_phase_duration_seconds", "mailpulse_probe_checks_total",
            "mailpulse_tls_cert_not_after_timestamp_seconds", "mailpulse_roundtrip_total",
            "mailpulse_hop_latency_seconds", "mailpulse_queue_messages",
            "mailpulse_queue_oldest_age_seconds", "mailpulse_queue_scan_success",
            "mailpulse_queue_filesystem_free_bytes", "mailpulse_milter_outbound_spike_active",
            "mailpulse_probe_event_peers", "mailpulse_milter_events_dropped_total"} <= base


def test_promtool_unit_tests_fire_every_alert_when_they_should():
    out = promtool("test", "rules", str(UNIT_TESTS), cwd=UNIT_TESTS.parent)
    assert "SUCCESS" in out, out
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    checked = [t for group in tests for t in group.get("alert_rule_test", [])]
    fired = {t["alertname"] for t in checked if t["exp_alerts"]}
    quiet = {t["alertname"] for t in checked if not t["exp_alerts"]}
    names = {a["alert"] for a in alerting_rules()}
    assert names - fired == set(), "alerts no unit test shows firing"
    assert names - quiet == set(), "alerts no unit test shows not (yet) firing"
    assert fired | quiet <= names, "unit tests of alerts that do not exist"


# ------------------------------------------------------------------------------------------
# A real Prometheus scraping both daemons


class PrometheusServer(sandbox.Component):
    """`prometheus` on a free loopback port with the config at `config` and its TSDB in
    <dir>/data; stopped by PID."""

    def __init__(self, workdir: Path, config: Path):
        self.workdir, self.config = workdir, config
        self.dir = config.parent
        self.port = sandbox.free_port()
        self.log_path = self.dir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PrometheusServer":
        argv = [PROMETHEUS, f"--config.file={self.config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info"]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=self.dir, start_new_session=True)
        sandbox._record_pid(self.workdir, "prometheus", self.proc.pid)
        sandbox.poll(lambda: self.proc.poll() is not None or self.ready(), 30,
                     f"prometheus ready on port {self.port}", interval=0.2)
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log_text()}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            sandbox.kill_pid(self.proc.pid, timeout=10)
        if self.proc:
            self.proc.wait()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                        timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self, state: str | None = "firing") -> list:
        """Active alerts (firing, or `state`; None: pending and firing)."""
        return [a for a in self.api("alerts")["alerts"] if state is None or a["state"] == state]

    def query(self, expr: str) -> dict:
        """{frozenset(labels without __name__): value} of an instant query."""
        return {frozenset((k, v) for k, v in s["metric"].items() if k != "__name__"):
                float(s["value"][1]) for s in self.api("query", query=expr)["result"]}

    def rules(self) -> list:
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ImplicitTlsSmtp(ScriptedSmtp):
    """A well-behaved SMTP server behind implicit TLS with the given certificate."""

    def __init__(self, cert: Path, key: Path):
        super().__init__()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)

    def handle(self, conn, reader):
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self._lock:  # so that stop() can shut it down (conn itself is detached now)
            self._conns.add(tls)
        try:
            super().handle(tls, type(reader)(tls))
        finally:
            with self._lock:
                self._conns.discard(tls)
            tls.close()


def short_lived_cert(workdir: Path, days: int) -> tuple:
    cert, key = workdir / "short-lived.crt", workdir / "short-lived.key"
    sandbox.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", str(days), "-subj",
                 f"/CN={TLS_NAME}", "-addext", f"subjectAltName=DNS:{TLS_NAME}",
                 "-keyout", str(key), "-out", str(cert)])
    cert.chmod(0o644)  # read by the probe, which runs as nobody
    return cert, key


def fake_postfix_queue(root: Path, deferred: int, arrival: float) -> Path:
    """Postfix's queue directories under `root`, with `deferred` complete queue files in
    deferred/ (hashed one level deep, as hash_queue_depth = 1 does), each starting with the
    time record of its arrival; readable by nobody, the milter's user here."""
    for queue in ("maildrop", "incoming", "active", "deferred", "hold"):
        (root / queue).mkdir(parents=True)
    stamp = f"{int(arrival)} 0".encode()
    for i in range(deferred):
        sub = root / "deferred" / f"{i % 16:X}"
        sub.mkdir(exist_ok=True)
        path = sub / f"4Z{i % 16:X}{i:08X}"
        path.write_bytes(b"T" + bytes([len(stamp)]) + stamp + b"E\x00")
        path.chmod(0o700)  # what Postfix gives a queue file once it is complete
    for path in [root, *root.rglob("*")]:
        shutil.chown(path, "nobody")
    return root


def _labels(alert: dict, **want: str) -> bool:
    return all(alert["labels"].get(k) == v for k, v in want.items())


def test_real_prometheus_scraping_both_daemons_fires_the_alerts(request, workdir):
    def start(component):
        request.addfinalizer(component.stop)  # by PID, pass or fail, last started first
        return component.start()

    cert, key = short_lived_cert(workdir, days=2)
    refused = start(RefusedPort())
    tls = start(ImplicitTlsSmtp(cert, key))
    common = {"host": "127.0.0.1", "interval": "1s", "timeout": "5s"}
    # The probe's built-in alerting has the equivalent rules, to fire the same alerts.
    builtin = (("notifier", {"name": "none", "type": "command", "command": ["/bin/true"]}),
               ("alert", {"name": "target-failing", "when": "check_failing", "checks": 3,
                          "severity": "critical", "notify": ["none"]}),
               ("alert", {"name": "cert-expiring", "when": "certificate_expiry", "days": 14,
                          "notify": ["none"]}),
               ("alert", {"name": "queue-deferred", "when": "queue_messages",
                          "queue": "deferred", "messages": 100, "notify": ["none"]}))
    probe = start(ProbeDaemon(workdir, [
        {"name": "refused", "port": refused.port, **common},
        {"name": "tls-ok", "port": tls.port, "tls": "implicit", "ca_file": str(cert),
         "tls_name": TLS_NAME, **common}], sections=builtin))
    queue = fake_postfix_queue(workdir / "spool", deferred=150, arrival=time.time() - 2 * 86400)
    milter = start(sandbox.MilterProcess(
        workdir, hop_name="mx1", queue_directory=queue,
        extra_config=(f'queue_interval = "1s"\nevent_socket = "unix:{probe.event_socket}"\n'
                      'snapshot_interval = "200ms"\n')))
    probe.wait_for_metric("mailpulse_probe_event_peers", 1)
    milter.wait_for_metric("mailpulse_queue_messages", 150, mta="postfix", queue="deferred")
    config = prometheus_dir(workdir / "prometheus", milter.metrics_port, probe.metrics_port,
                            quick_rules())
    promtool("check", "config", str(config))
    prom = start(PrometheusServer(workdir, config))
    milter_instance = f"127.0.0.1:{milter.metrics_port}"
    probe_instance = f"127.0.0.1:{probe.metrics_port}"

    def wait(check, timeout: float, what: str):
        try:
            return sandbox.poll(check, timeout, what, interval=0.25)
        except TimeoutError as e:
            raise AssertionError(
                f"{e}\nalerts: {json.dumps(prom.alerts(None), indent=1)}\n"
                f"prometheus log:\n{prom.log_text()[-3000:]}\nprobe log:\n"
                f"{probe.log_text()[-2000:]}\nmilter log:\n{milter.stderr_text()[-2000:]}"
            ) from None

    expected = {
        ("MailpulseTargetFailing", "target", "refused"),
        ("MailpulseCertificateExpiringSoon", "target", "tls-ok"),
        ("MailpulseCertificateExpiringCritical", "target", "tls-ok"),
        ("MailpulseQueueDeferred", "queue", "deferred"),
        ("MailpulseQueueOldestMessage", "queue", "deferred"),
    }

    def firing_expected():
        alerts = prom.alerts()
        found = {(n, k, v) for n, k, v in expected
                 if any(a["labels"]["alertname"] == n and _labels(a, **{k: v}) for a in alerts)}
        # The failure kinds in MailpulseTargetFailing's description come from increase() over
        # the checks counter, which needs two scrapes of it: the alert fires on the third
        # failed check (1 s apart here) and its description is filled in at a later evaluation.
        described = any("Failing with:" in a["annotations"]["description"] for a in alerts
                        if a["labels"]["alertname"] == "MailpulseTargetFailing")
        return alerts if found == expected and described else None

    t0 = time.time()
    alerts = wait(firing_expected, 30, f"alerts {sorted(expected)} firing")
    fired_after = time.time() - t0
    by_name = {}
    for a in alerts:
        by_name.setdefault(a["labels"]["alertname"], []).append(a)

    # The same alerts from the built-in alerting (mailpulse-probe alerts).
    def builtin_firing():
        url = f"http://127.0.0.1:{probe.metrics_port}/alerts"
        with urllib.request.urlopen(url, timeout=5) as resp:
            listed = json.loads(resp.read())["alerts"]
        ids = {a["id"] for a in listed if a["state"] == "firing"}
        want = {"target-failing/refused", "cert-expiring/tls-ok", "queue-deferred/mx1/deferred"}
        return ids if want <= ids else None
    assert wait(builtin_firing, 15, "the built-in alerts firing") == {
        "target-failing/refused", "cert-expiring/tls-ok", "queue-deferred/mx1/deferred"}

    [failing] = by_name["MailpulseTargetFailing"]  # for refused only: tls-ok checks succeed
    assert failing["labels"] == {"alertname": "MailpulseTargetFailing", "severity": "critical",
                                 "job": "mailpulse-probe", "instance": probe_instance,
                                 "target": "refused"}
    assert failing["annotations"]["summary"] == "mailpulse: target refused is failing"
    assert "Failing with: connection_refused." in failing["annotations"]["description"]
    for name, severity in (("MailpulseCertificateExpiringSoon", "warning"),
                           ("MailpulseCertificateExpiringCritical", "critical")):
        [cert_alert] = by_name[name]
        assert cert_alert["labels"]["severity"] == severity
        days = float(re.search(r"expires in (-?[\d.]+) days",
                               cert_alert["annotations"]["description"])[1])
        assert 1.9 <= days <= 2.0, cert_alert
    for name in ("MailpulseQueueDeferred", "MailpulseQueueOldestMessage"):
        [q] = by_name[name]
        assert _labels(q, job="mailpulse-milter", instance=milter_instance, mta="postfix",
                       queue="deferred", hop="mx1", severity="warning"), q
    assert by_name["MailpulseQueueDeferred"][0]["annotations"]["summary"] == \
        "mailpulse: 150 messages in the deferred queue on mx1"
    assert "arrived 2d 0h" in by_name["MailpulseQueueOldestMessage"][0]["annotations"][
        "description"]

    # Every rule has been evaluated, without error, a few times more: what else would have
    # fired by now has.
    since = time.time()

    def evaluated_again():
        rules = prom.rules()
        done = all(_rfc3339(r["lastEvaluation"]) > since + 3 for r in rules)
        return rules if done else None
    rules = wait(evaluated_again, 20, "every rule evaluated 3 s later")
    assert len(rules) == sum(len(g["rules"]) for g in rule_groups())
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert bad == [], bad
    quiet = ("MailpulseMilterDown", "MailpulseProbeDown", "MailpulseMilterAbsent",
             "MailpulseProbeAbsent", "MailpulseEventPeerLost", "MailpulseMilterEventsDropped",
             "MailpulseOutboundSpike", "MailpulseQueueScanFailing", "MailpulseQueueScanStale",
             "MailpulseQueueBacklog", "MailpulseTargetNotChecked", "MailpulseDaemonRestarting",
             "MailpulseProbeConfigReloadFailed")
    active = prom.alerts(None)
    assert [a["labels"] for a in active if a["labels"]["alertname"] in quiet] == []
    assert [a["labels"] for a in active if _labels(a, target="tls-ok") and
            a["labels"]["alertname"] not in
            ("MailpulseCertificateExpiringSoon", "MailpulseCertificateExpiringCritical")] == []

    # The recording rules on real data.
    ratio = prom.query("target:mailpulse_probe_success:ratio15m")
    assert sorted(ratio.values()) == [0, 1], ratio
    [days] = prom.query('target:mailpulse_tls_cert_expiry:days{target="tls-ok"}').values()
    assert 1.9 <= days <= 2.0
    hops = prom.query("instance:mailpulse_milter:hop")
    assert [dict(k)["hop"] for k in hops] == ["mx1"], hops

    # The milter stops: down from Prometheus' side, one peer fewer from the probe's, and its
    # queue alerts resolve (its series went stale).
    milter.stop()

    def milter_down():
        alerts = prom.alerts()
        names = {a["labels"]["alertname"] for a in alerts}
        return alerts if ({"MailpulseMilterDown", "MailpulseEventPeerLost"} <= names and
                          not names & {"MailpulseQueueDeferred", "MailpulseQueueOldestMessage"}
                          ) else None
    alerts = wait(milter_down, 30, "MailpulseMilterDown and MailpulseEventPeerLost firing, "
                  "the queue alerts resolved")
    [down] = [a for a in alerts if a["labels"]["alertname"] == "MailpulseMilterDown"]
    assert down["labels"] == {"alertname": "MailpulseMilterDown", "severity": "critical",
                              "job": "mailpulse-milter", "instance": milter_instance}
    assert milter_instance in down["annotations"]["summary"]
    [lost] = [a for a in alerts if a["labels"]["alertname"] == "MailpulseEventPeerLost"]
    assert lost["labels"]["instance"] == probe_instance
    assert prom.alerts(None) and not any(
        a["labels"]["alertname"] == "MailpulseProbeDown" for a in prom.alerts(None))
    print(f"\nexpected alerts firing {fired_after:.1f}s after Prometheus was ready; active "
          f"before the milter stopped: {sorted({a['labels']['alertname'] for a in active})}")


def _rfc3339(stamp: str) -> float:
    """Unix time of Prometheus' RFC 3339 timestamps (nanoseconds and a zone offset)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", stamp)
    assert m, stamp
    zone = "+00:00" if m[3] == "Z" else m[3]
    base = datetime.fromisoformat(m[1] + zone).timestamp()
    return base + float("0" + (m[2] or ".0"))
