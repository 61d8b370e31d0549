"""The probe daemon's built-in alerting against real components: a real Postfix target is
stopped and started again, and a local HTTP receiver records the webhook firing and resolving
with the failing phase and the server's reply; a command notifier runs with the notice on
stdin and in its environment; `mailpulse-probe alerts`, `ack` and `silence` talk to the daemon,
and what they did survives a restart of it; a tier escalates when nobody acknowledges; a
receiver that answers 500 is retried, one that hangs gives up after its timeout, and neither
holds back the others; an e-mail alert goes through a real Postfix (STARTTLS and AUTH on its
submission port, Dovecot SASL) to the sink; an HTTPS receiver is verified; rules change on
SIGHUP. Checks run every second here.
"""
import json
import os
import pwd
import re
import subprocess

import pytest

import sandbox
from conftest import start_mail_system
from probe_daemon import ProbeDaemon
from webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.usefixtures("probe_binary")

TOKEN = "T0KEN-5ecret-in-the-url"


def secret_file(workdir, name: str, text: str):
    """A 0600 file for the daemon (it reads them as root, before it becomes nobody)."""
    path = workdir / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def webhook(workdir, receiver, name: str, path: str, **keys) -> tuple:
    url = secret_file(workdir, f"{name}.url", receiver.url(f"{path}/{TOKEN}"))
    return ("notifier", {"name": name, "type": "webhook", "url_file": str(url),
                         "retry_backoff": "200ms", **keys})


def target(name: str, port: int) -> dict:
    return {"name": name, "host": "127.0.0.1", "port": port, "interval": "1s",
            "timeout": "2s"}


def rule(name: str, notify: list, **keys) -> tuple:
    return ("alert", {"name": name, "when": "check_failing", "checks": 2, "notify": notify,
                      "severity": "critical", "flap_changes": 0, **keys})


def probe_cli(daemon, *args) -> subprocess.CompletedProcess:
    return sandbox.run([str(sandbox.probe_binary()), *args, "--url",
                        f"127.0.0.1:{daemon.metrics_port}"], check=False)


def start(request, component):
    request.addfinalizer(component.stop)
    return component.start()


def test_a_stopped_postfix_fires_with_phase_and_reply_and_its_restart_resolves(request,
                                                                                 workdir):
    mail = start_mail_system(request, workdir, dovecot=False)
    receiver = start(request, WebhookReceiver())
    out = workdir / "command-out"
    out.mkdir()
    os.chown(out, pwd.getpwnam("nobody").pw_uid, -1)
    script = workdir / "notify.sh"
    script.write_text(f'#!/bin/sh\nn=$(ls {out} | grep -c json)\ncat > {out}/$n.json\n'
                      f'env | grep ^MAILPULSE_ALERT_ | sort > {out}/$n.env\n')
    script.chmod(0o755)
    daemon = start(request, ProbeDaemon(workdir, [target("mx1", mail.postfix.port)], sections=(
        webhook(workdir, receiver, "hook", "/hook"),
        ("notifier", {"name": "cmd", "type": "command", "command": [str(script)]}),
        rule("smtp-down", ["hook", "cmd"]))))
    daemon.wait_for_metric("mailpulse_probe_checks_total", 2, target="mx1", result="success")

    mail.postfix.stop()
    firing = receiver.wait_for("/hook", lambda b: b["status"] == "firing")
    body = firing["body"]
    assert body["id"] == "smtp-down/mx1" and body["rule"] == "smtp-down"
    assert body["subject"] == "mx1" and body["severity"] == "critical"
    assert body["kind"] == "firing" and body["probe"] == "probe"
    assert body["details"]["phase"] == "connect"
    assert "refused" in body["details"]["reply"].lower(), body
    assert int(body["details"]["failures_in_a_row"]) >= 2
    assert firing["headers"]["Content-Type"] == "application/json"
    # The command ran with the same notice on stdin and in its environment.
    def written(name):  # the script's env file is complete once its last line is there
        path = out / name
        return path.exists() and "MAILPULSE_ALERT_TIME=" in path.read_text()
    sandbox.poll(lambda: written("0.env"), 10, "the command notifier's output")
    assert json.loads((out / "0.json").read_text())["id"] == "smtp-down/mx1"
    env = (out / "0.env").read_text()
    assert "MAILPULSE_ALERT_STATUS=firing" in env and "MAILPULSE_ALERT_ID=smtp-down/mx1" in env
    # The command line sees it firing.
    listing = probe_cli(daemon, "alerts")
    assert listing.returncode == 0 and "firing" in listing.stdout
    assert "smtp-down/mx1" in listing.stdout and "refused" in listing.stdout.lower()
    assert daemon.metric("mailpulse_alerts_firing", rule="smtp-down") == 1

    mail.postfix.restart()
    resolved = receiver.wait_for("/hook", lambda b: b["status"] == "resolved")
    assert resolved["body"]["id"] == "smtp-down/mx1" and resolved["body"]["kind"] == "resolved"
    assert [p["body"]["status"] for p in receiver.posts("/hook")] == ["firing", "resolved"]
    sandbox.poll(lambda: written("1.env"), 10, "the command notifier run again")
    assert "MAILPULSE_ALERT_STATUS=resolved" in (out / "1.env").read_text()
    assert probe_cli(daemon, "alerts").stdout.startswith("no alerts")
    assert daemon.metric("mailpulse_alerts_firing", rule="smtp-down") == 0
    assert TOKEN not in daemon.log_text() + daemon.metrics_text()


def test_ack_silence_and_escalation_and_both_survive_a_restart(request, workdir):
    receiver = start(request, WebhookReceiver())
    closed = sandbox.free_port()  # nothing listens there: every check fails at connect
    sections = (webhook(workdir, receiver, "oncall", "/oncall"),
                webhook(workdir, receiver, "lead", "/lead"),
                rule("down", ["oncall"], escalate=["2s lead"], repeat="0s"),
                rule("down-quiet", ["oncall"], escalate=["1h lead"], repeat="0s"))
    daemon = ProbeDaemon(workdir, [target("dead", closed)], sections=sections)
    start(request, daemon)
    # Nobody acknowledges "down": its second tier is told.
    escalated = receiver.wait_for("/lead", lambda b: b["kind"] == "escalated")
    assert escalated["body"]["id"] == "down/dead" and escalated["body"]["tier"] == 1
    receiver.wait_for("/oncall", lambda b: b["id"] == "down-quiet/dead")

    ack = probe_cli(daemon, "ack", "down-quiet/dead", "--by", "alice")
    assert ack.returncode == 0 and "acknowledged down-quiet/dead" in ack.stdout
    assert probe_cli(daemon, "ack", "no-such/alert").returncode == 1
    silence = probe_cli(daemon, "silence", "--rule", "down*", "--subject", "other*", "--for",
                        "2h", "--comment", "maintenance", "--by", "bob")
    assert silence.returncode == 0 and "silence s1 added" in silence.stdout
    listing = json.loads(probe_cli(daemon, "alerts", "--json").stdout)
    acked = {a["id"]: a["acked_by"] for a in listing["alerts"]}
    assert acked == {"down/dead": "", "down-quiet/dead": "alice"}
    assert [(s["id"], s["comment"], s["created_by"]) for s in listing["silences"]] == [
        ("s1", "maintenance", "bob")]

    # A restart keeps both alerts (firing, told already: nobody is told twice), the ack and
    # the silence.
    sandbox.poll(lambda: "alice" in (daemon.state_dir / "alerts.json").read_text(), 10,
                 "the ack in the state file")
    told_before = len(receiver.posts())
    daemon.stop()
    start(request, daemon)
    daemon.wait_for_checks("dead", 3)
    listing = json.loads(probe_cli(daemon, "alerts", "--json").stdout)
    assert {a["id"]: (a["state"], a["acked_by"]) for a in listing["alerts"]} == {
        "down/dead": ("firing", ""), "down-quiet/dead": ("firing", "alice")}
    assert [s["id"] for s in listing["silences"]] == ["s1"]
    assert len(receiver.posts()) == told_before
    assert "alert state" in daemon.log_text() and "2 alerts, 1 silences" in daemon.log_text()
    removed = probe_cli(daemon, "silence", "--remove", "s1")
    assert removed.returncode == 0 and "silence s1 removed" in removed.stdout
    assert json.loads(probe_cli(daemon, "alerts", "--json").stdout)["silences"] == []


def test_a_failing_or_hanging_receiver_is_retried_and_holds_back_no_other(request, workdir):
    receiver = start(request, WebhookReceiver())
    sections = (webhook(workdir, receiver, "hangs", "/hang", timeout="3s", retries=1),
                webhook(workdir, receiver, "flaky", "/fail-2", retries=3),
                webhook(workdir, receiver, "fine", "/fine"),
                rule("down", ["hangs", "flaky", "fine"]))
    daemon = start(request, ProbeDaemon(workdir, [target("dead", sandbox.free_port())],
                                        sections=sections))
    fine = receiver.wait_for("/fine")
    # The hanging receiver was asked first and still holds its request: it delayed nobody.
    assert receiver.posts("/hang") and receiver.posts("/hang")[0]["time"] <= fine["time"]
    flaky = sandbox.poll(lambda: [p for p in receiver.posts("/fail-2")][2:] or None, 20,
                         "the flaky receiver's third request")
    assert flaky[0]["body"]["id"] == "down/dead"
    m = daemon.wait_for_metric("mailpulse_alert_notifications_total", 1, notifier="flaky",
                               result="sent")
    assert sandbox.metric_sum(m, "mailpulse_alert_notification_attempts_total",
                              notifier="flaky", result="error") == 2
    # The hanging one times out, is tried once more, and gives up: logged and counted.
    m = daemon.wait_for_metric("mailpulse_alert_notifications_total", 1, 30, notifier="hangs",
                               result="failed")
    assert len(receiver.posts("/hang")) == 2
    assert sandbox.metric_sum(m, "mailpulse_alert_notifications_total", notifier="fine",
                              result="sent") == 1
    log = daemon.log_text()
    assert "hangs (webhook http://127.0.0.1:" in log and "gave up after 2 attempts" in log
    assert "attempt 1 of 4 failed: HTTP 500" in log
    assert TOKEN not in log + daemon.metrics_text()
    assert daemon.proc.poll() is None


def test_an_email_alert_goes_through_postfix_with_starttls_and_auth_to_the_sink(request,
                                                                               workdir):
    users = {"alerts@mailpulse.test": "alert-secret"}
    mail = start_mail_system(request, workdir, dovecot_users=users)
    password = secret_file(workdir, "smtp.pw", "alert-secret")
    sections = (("notifier", {"name": "mail", "type": "email",
                              "server": f"127.0.0.1:{mail.postfix.submission_port}",
                              "tls": "starttls", "verify": False,
                              "auth_user": "alerts@mailpulse.test",
                              "auth_password_file": str(password),
                              "from": "alerts@mailpulse.test",
                              "to": [f"alice@{sandbox.SINK_DOMAIN}"]}),
                rule("down", ["mail"]))
    daemon = start(request, ProbeDaemon(workdir, [target("dead", sandbox.free_port())],
                                        sections=sections))
    [message] = mail.sink.wait_for_count(1, timeout=60)
    subject = message.header("Subject")[0]
    assert subject == "[mailpulse] FIRING down dead", subject
    assert message.header("X-Mailpulse-Alert") == ["down/dead"]
    assert "Acknowledge: mailpulse-probe ack down/dead" in message.text
    assert "phase: connect" in message.text
    assert daemon.metric("mailpulse_alert_notifications_total", notifier="mail",
                         result="sent") == 1
    assert "alert-secret" not in daemon.log_text()


def test_an_https_webhook_is_verified_against_its_ca_and_refused_without(request, workdir):
    cert, key = workdir / "hook.crt", workdir / "hook.key"
    sandbox.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3", "-subj",
                 "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                 str(key), "-out", str(cert)])
    receiver = start(request, WebhookReceiver(tls=(cert, key)))
    sections = (webhook(workdir, receiver, "trusted", "/trusted", ca_file=str(cert)),
                webhook(workdir, receiver, "untrusted", "/untrusted", retries=0),
                rule("down", ["trusted", "untrusted"]))
    daemon = start(request, ProbeDaemon(workdir, [target("dead", sandbox.free_port())],
                                        sections=sections))
    post = receiver.wait_for("/trusted")
    assert post["body"]["id"] == "down/dead" and post["body"]["status"] == "firing"
    daemon.wait_for_metric("mailpulse_alert_notifications_total", 1, notifier="untrusted",
                           result="failed")
    assert receiver.posts("/untrusted") == []  # nothing was sent to an unverified server
    log = daemon.log_text()
    assert re.search(r"untrusted \(webhook https://127\.0\.0\.1:\d+/…\): gave up after 1 "
                     r"attempt: TLS: certificate verify failed", log), log
    assert TOKEN not in log


def test_rules_and_notifiers_change_on_sighup_and_a_bad_one_keeps_the_running_set(request,
                                                                                 workdir):
    receiver = start(request, WebhookReceiver())
    daemon = start(request, ProbeDaemon(workdir, [target("dead", sandbox.free_port())]))
    daemon.wait_for_checks("dead", 3)
    assert json.loads(probe_cli(daemon, "alerts", "--json").stdout)["alerts"] == []
    # A rule naming a notifier that does not exist: the reload fails, nothing changes.
    daemon.sections = (rule("down", ["nobody-here"]),)
    daemon.write_config()
    daemon.reload(expect="failure")
    assert "alert.notify: no [[notifier]] named 'nobody-here'" in daemon.log_text()
    hook = webhook(workdir, receiver, "hook", "/hook")
    # Rereading secrets happens as probe.user (nobody here): the URL file must be its.
    os.chown(hook[1]["url_file"], pwd.getpwnam("nobody").pw_uid, -1)
    daemon.sections = (hook, rule("down", ["hook"]))
    daemon.write_config()
    daemon.reload()
    post = receiver.wait_for("/hook")
    assert post["body"]["id"] == "down/dead" and post["body"]["status"] == "firing"
