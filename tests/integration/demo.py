#!/usr/bin/python3
"""mailpulse demo: two chained sandboxed Postfix instances on loopback, each with mailpulse-milter
plugged in (smtpd and non-smtpd mail), and mailpulse-probe watching them: a small mix of real
traffic, the edge milter's live counters, the probe's per-phase checks and the round trips of
signed probe messages, hop by hop.

Starts smtp-sink (standing in for every remote server), Postfix "mx" with milter "mx" in front
of it, Postfix "edge" relaying to mx, with submission listeners, Dovecot for SASL and milter
"edge", and the mailpulse-probe daemon checking edge's ports 25 (plain and STARTTLS), 587
(STARTTLS + AUTH) and 465 (implicit TLS), sending a test message and a signed probe message
every few seconds; both milters share the probe key, stamp the probe messages and report to
the probe's event socket, and mx's milter discards them at the probe sink address. All of it
lives under one temporary directory. It sends good, multi-recipient, rejected, TLS,
authenticated, local and aborted mail; then prints the mailpulse_milter_* series of edge's
/metrics, grouped by family, each probe target's state and phase timings and the journeys of
the probe messages (`mailpulse-probe trace`); then stops Postfix mx for a moment, so that the
probe's built-in alert on it fires (a command notifier prints each notice here) and resolves
when mx is back; then reprints every --interval seconds until Ctrl-C (or stops, with --once),
and stops everything it started. Run as root; see contrib/dev/demo, which builds first.
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import roundtrip  # noqa: E402
import sandbox  # noqa: E402
from probe_daemon import ProbeDaemon  # noqa: E402
from roundtrip import ChainedMail  # noqa: E402
from sandbox import REJECTED_CLIENT, SASL_PASSWORD, SASL_USER, TRUSTED_CLIENT  # noqa: E402


def traffic(chain: ChainedMail) -> list:
    """The mix to send to edge: (what, how it is sent, function returning the outcome)."""
    pf = chain.edge

    def swaks(*args, **kwargs):
        return lambda: sandbox.send_swaks(*args, **kwargs).last_reply

    def smtp(*args, **kwargs):
        return lambda: (lambda r: r.error or r.last_reply)(sandbox.smtp_session(*args, **kwargs))

    def sendmail():
        pf.sendmail(["carol@sink.test", "dave@sink.test"], subject="password reset")
        return "handed to postdrop"

    auth = (SASL_USER, SASL_PASSWORD)
    return [
        ("good message", "port 25", swaks(pf.port, "alice@sink.test")),
        ("good message", "port 25", swaks(pf.port, "bob@sink.test")),
        ("3 recipients, one unknown", "port 25",
         smtp(pf.port, ["alice@sink.test", "bob@sink.test", "nobody@sink.test",
                        "carol@sink.test"])),
        ("relay attempt", "port 25", swaks(pf.port, "someone@other.test")),
        ("unknown user", "port 25", swaks(pf.port, "nobody@sink.test")),
        ("blocked client", f"from {REJECTED_CLIENT}",
         swaks(pf.port, "alice@sink.test", local_interface=REJECTED_CLIENT)),
        ("STARTTLS message", "port 25", smtp(pf.port, "dave@sink.test", starttls=True)),
        ("authenticated submission", "587, STARTTLS+AUTH",
         smtp(pf.submission_port, "friend@other.test", starttls=True, auth=auth)),
        ("authenticated submission", "465, TLS+AUTH",
         smtp(pf.submissions_port, "friend@other.test", implicit_tls=True, auth=auth)),
        ("outbound from trusted host", f"from {TRUSTED_CLIENT}",
         swaks(pf.port, "partner@other.test", local_interface=TRUSTED_CLIENT)),
        ("web app via sendmail(1)", "local", sendmail),
        ("client quits after RCPT", "port 25", smtp(pf.port, "bob@sink.test",
                                                    quit_after="RCPT")),
    ]


def send_traffic(chain: ChainedMail) -> None:
    print("\nSending traffic through edge (its milter watches every session):")
    for what, how, send in traffic(chain):
        print(f"  {what:<28} {how:<20} -> {send()}")
    chain.edge.wait_for_queue_empty()
    chain.mx.wait_for_queue_empty()
    print(f"  ... {chain.sink.count()} messages delivered to the sink through mx, queues empty")


def families(metrics_text: str) -> dict:
    """{family: (help, [(labels text, value)])} for the mailpulse_milter_* series."""
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", metrics_text, re.M))
    out: dict = {}
    for (name, labels), value in sorted(sandbox.parse_metrics(metrics_text).items(),
                                        key=lambda kv: (kv[0][0], sorted(kv[0][1]))):
        if not name.startswith("mailpulse_milter_") or name.endswith("_bucket"):
            continue
        family = re.sub(r"_(sum|count)$", "", name) if name not in helps else name
        suffix = name[len(family):]
        text = " ".join(f"{k}={v}" for k, v in sorted(labels)) + (
            f" ({suffix.lstrip('_')})" if suffix else "")
        out.setdefault(family, (helps.get(family, ""), []))[1].append((text or "-", value))
    return out


def print_counters(chain: ChainedMail) -> dict:
    text = chain.edge_milter.metrics_text()
    print(f"\nmailpulse-milter counters of edge at {time.strftime('%H:%M:%S')} "
          f"(live: curl -s {chain.edge_milter.metrics_url})")
    groups = families(text)
    for family, (help_text, series) in groups.items():
        print(f"  {family.removeprefix('mailpulse_milter_')}  — {help_text}")
        for labels, value in series:
            shown = f"{int(value)}" if value.is_integer() else f"{value:.6g}"
            print(f"      {labels:<52} {shown:>14}")
    return groups


# In the order they happen: with implicit TLS the handshake comes right after connect.
PROBE_PHASES = ("dns", "connect", "banner", "ehlo", "starttls", "tls_handshake", "auth", "mail",
                "rcpt", "data", "end_of_data", "quit")
IMPLICIT_PHASES = ("dns", "connect", "tls_handshake", "banner", "ehlo", "auth", "quit")


def probe_targets(chain: ChainedMail) -> list:
    """The probe's [[target]]s: every listener of edge, a delivery and a round trip."""
    pf = chain.edge
    cert, _ = sandbox.make_tls_cert(chain.workdir, pf.hostname)
    secret = chain.workdir / "probe.pw"
    secret.write_text(SASL_PASSWORD + "\n")
    secret.chmod(0o600)
    os.chown(secret, 65534, 65534)  # the daemon runs as nobody
    common = {"host": "127.0.0.1", "interval": "5s", "helo": "probe.mailpulse.test",
              "cert_warn_days": 1, "cert_crit_days": 0}  # the sandbox certificate lives 3 days
    return [
        {"name": "smtp", "port": pf.port, **common},
        {"name": "smtp-starttls", "port": pf.port, "tls": "starttls", "ca_file": str(cert),
         "tls_name": pf.hostname, **common},
        {"name": "submission", "port": pf.submission_port, "tls": "starttls", "verify": False,
         "auth_user": SASL_USER, "auth_password_file": str(secret), **common},
        {"name": "smtps", "port": pf.submissions_port, "tls": "implicit", "verify": False,
         **common},
        {"name": "delivery", "port": pf.port, "send": True, "from": "probe@mailpulse.test",
         "to": ["alice@sink.test"], **common},
        # A signed probe message through edge and mx; bounces would come back to its sender.
        {"name": "roundtrip", "port": pf.port, "send": True, "roundtrip": True,
         "from": roundtrip.PROBE_RETURN, "to": [roundtrip.PROBE_SINK], **common},
        # mx itself, checked every second: the alert demonstration stops it.
        {"name": "mx", "port": chain.mx.port, **common, "interval": "1s", "timeout": "2s"},
    ]


def alert_sections(workdir: Path) -> tuple:
    """A rule on the mx target and a command notifier that appends each notice (the webhook
    JSON document) to a file the demo prints from."""
    notices = workdir / "alerts" / "notices.jsonl"
    notices.parent.mkdir()
    os.chown(notices.parent, 65534, 65534)  # the daemon runs as nobody
    script = workdir / "alerts" / "notify"
    script.write_text(f"#!/bin/sh\n{{ cat; echo; }} >> {notices}\n")
    script.chmod(0o755)
    return (("notifier", {"name": "demo", "type": "command", "command": [str(script)]}),
            ("alert", {"name": "mx-down", "when": "check_failing", "match": "mx",
                       "checks": 2, "severity": "critical", "notify": ["demo"]}))


def notices(workdir: Path) -> list:
    path = workdir / "alerts" / "notices.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def demonstrate_alert(chain: ChainedMail, probe: ProbeDaemon) -> bool:
    """Stops Postfix mx until the alert on it fires, starts it again until it resolves,
    printing each notice and `mailpulse-probe alerts` in between."""
    cli = [str(sandbox.probe_binary()), "alerts", "--url", f"127.0.0.1:{probe.metrics_port}"]
    print("\nAn alert: stopping Postfix mx (the probe checks it every second; rule mx-down, "
          "2 failed checks in a row, notifier: a command printing here) ...")
    chain.mx.stop()
    try:
        firing = sandbox.poll(lambda: [n for n in notices(chain.workdir)
                                       if n["status"] == "firing"], 30, "the alert firing")
        print(f"  notice: {firing[0]['text']}")
        print("  $ mailpulse-probe alerts\n" + "".join(
            "    " + line + "\n" for line in subprocess.run(
                cli, capture_output=True, text=True, timeout=30).stdout.splitlines()), end="")
    except TimeoutError as e:
        print(f"\nWARNING: {e}; the probe's log:\n{probe.log_text()[-3000:]}")
        return False
    finally:
        print("  ... starting Postfix mx again")
        chain.mx.restart()
    try:
        resolved = sandbox.poll(lambda: [n for n in notices(chain.workdir)
                                         if n["status"] == "resolved"], 30, "the alert resolved")
    except TimeoutError as e:
        print(f"\nWARNING: {e}; the probe's log:\n{probe.log_text()[-3000:]}")
        return False
    print(f"  notice: {resolved[0]['text']}")
    return True


def print_probe(probe: ProbeDaemon) -> list:
    """Each target's last check: state, total and phase timings, certificate days left."""
    m = probe.metrics()
    print(f"\nmailpulse-probe checks at {time.strftime('%H:%M:%S')} "
          f"(live: curl -s http://127.0.0.1:{probe.metrics_port}/metrics)")
    rows = []
    for t in probe.targets:
        name = t["name"]
        value = lambda metric, **labels: sandbox.metric_sum(m, metric, target=name, **labels)  # noqa: E731,E501
        state = ("OK", "WARNING", "CRITICAL")[int(value("mailpulse_probe_state"))]
        checks = int(value("mailpulse_probe_checks_total"))
        phases = " ".join(
            f"{p} {value('mailpulse_probe_phase_duration_seconds', phase=p) * 1000:.2f}"
            for p in (IMPLICIT_PHASES if t.get("tls") == "implicit" else PROBE_PHASES)
            if any(n == "mailpulse_probe_phase_duration_seconds" and
                                         ("target", name) in ls and ("phase", p) in ls
                                         for n, ls in m))
        line = (f"  {name:<14} {state:<8} {value('mailpulse_probe_duration_seconds') * 1000:7.2f} "
                f"ms  {checks:>3} checks  {phases}")
        not_after = value("mailpulse_tls_cert_not_after_timestamp_seconds")
        if not_after:
            line += f"  cert {(not_after - time.time()) / 86400:.1f} days left"
        print(line)
        rows.append((name, state))
    print("  (phase times in ms; the log lines of failed checks are in "
          f"{probe.log_path})")
    return rows


def wait_for_probe(probe: ProbeDaemon) -> bool:
    """Waits (with a deadline) until every target has been checked and passed."""
    try:
        for t in probe.targets:
            probe.wait_for_metric("mailpulse_probe_checks_total", 1, timeout=20,
                                  target=t["name"], result="success")
        return True
    except TimeoutError as e:
        print(f"\nWARNING: {e}; the probe's log:\n{probe.log_text()[-3000:]}")
        return False


def journeys(probe: ProbeDaemon) -> list:
    url = f"http://127.0.0.1:{probe.metrics_port}/journeys"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def print_journeys(probe: ProbeDaemon, shown: set) -> int:
    """Prints, with `mailpulse-probe trace`, the journeys finished since the last call (ids in
    `shown`); returns how many of them were delivered."""
    new = [j for j in journeys(probe) if j["outcome"] != "pending" and j["probe_id"] not in shown]
    print(f"\nRound trips finished since the last print ({len(new)}; "
          f"live: mailpulse-probe trace --url 127.0.0.1:{probe.metrics_port}):")
    for j in new:
        proc = subprocess.run([str(sandbox.probe_binary()), "trace", "--url",
                               f"127.0.0.1:{probe.metrics_port}", j["probe_id"]],
                              capture_output=True, text=True, timeout=30)
        print("".join("  " + line + "\n" for line in (proc.stdout or proc.stderr).splitlines()),
              end="")
        shown.add(j["probe_id"])
    if not new:
        print("  (none yet)")
    return sum(1 for j in new if j["outcome"] == "delivered")


def wait_for_journey(probe: ProbeDaemon) -> bool:
    """Waits (with a deadline) until a probe message's journey has finished delivered."""
    try:
        probe.wait_for_metric("mailpulse_roundtrip_total", 1, timeout=30, target="roundtrip",
                              outcome="delivered")
        return True
    except TimeoutError as e:
        print(f"\nWARNING: {e}; the probe's log:\n{probe.log_text()[-3000:]}")
        return False


def wait_for_milter(chain: ChainedMail) -> bool:
    """Waits (with a deadline) until edge's milter has counted the messages delivered."""
    delivered = chain.sink.count()
    try:
        chain.edge_milter.wait_for_metric("mailpulse_milter_messages_total", delivered,
                                          timeout=15)
        return True
    except TimeoutError:
        print(f"\nWARNING: the milter counted fewer than the {delivered} messages Postfix "
              "delivered. Postfix's milter lines:\n" + "\n".join(
                  line for line in chain.edge.log_text().splitlines() if "milter" in line))
        return False


def interrupt(signum, frame):
    raise KeyboardInterrupt


def show(chain: ChainedMail, probe: ProbeDaemon, once: bool, interval: float) -> bool:
    """Sends the traffic and prints the counters, checks and journeys (repeatedly unless once);
    False if the milter did not see the traffic, a probe check failed or no round trip was
    delivered."""
    pf, mx = chain.edge, chain.mx
    print(f"Sandbox in {chain.workdir}:\n"
          f"  Postfix {pf.hostname}: smtpd 127.0.0.1:{pf.port}, submission "
          f"{pf.submission_port}, submissions {pf.submissions_port}; log {pf.maillog}\n"
          f"    smtpd_milters = non_smtpd_milters = {chain.edge_milter.address} (hop edge)\n"
          f"    relays to Postfix {mx.hostname}: smtpd 127.0.0.1:{mx.port}; log {mx.maillog}\n"
          f"    smtpd_milters = non_smtpd_milters = {chain.mx_milter.address} (hop mx)\n"
          f"  smtp-sink (every remote server) on 127.0.0.1:{chain.sink.port}\n"
          f"  milter metrics: edge {chain.edge_milter.metrics_url}, "
          f"mx {chain.mx_milter.metrics_url}\n"
          f"  mailpulse-probe run --config {probe.config_path}: {len(probe.targets)} targets, "
          f"event socket {probe.event_socket}")
    send_traffic(chain)
    ok = wait_for_milter(chain)
    ok = bool(print_counters(chain)) and ok
    ok = wait_for_probe(probe) and ok
    ok = all(state == "OK" for _, state in print_probe(probe)) and ok
    ok = wait_for_journey(probe) and ok
    shown: set = set()
    ok = print_journeys(probe, shown) > 0 and ok
    ok = demonstrate_alert(chain, probe) and ok
    if once:
        return ok
    print(f"\nSend more mail, e.g.: swaks --server 127.0.0.1:{pf.port} --to alice@sink.test"
          f"\nReprinting every {interval:g}s; Ctrl-C stops everything.")
    while True:
        time.sleep(interval)  # the refresh cadence, not a synchronisation
        print_counters(chain)
        print_probe(probe)
        print_journeys(probe, shown)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="print the counters once and exit")
    parser.add_argument("--interval", type=float, default=10, help="seconds between prints")
    parser.add_argument("--build-dir", help="CMake build directory (default: <repo>/build)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.build_dir:
        os.environ["MAILPULSE_BUILD_DIR"] = str(Path(args.build_dir).resolve())
    if os.geteuid() != 0:
        sys.exit("demo.py: run as root (it starts Postfix, Dovecot and smtp-sink)")
    if not sandbox.milter_binary().exists():
        sys.exit(f"demo.py: {sandbox.milter_binary()} is not built")
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (&)
        signal.signal(sig, interrupt)

    sandbox.reap_stale()
    workdir = sandbox.make_workdir("demo")
    ok = False
    try:
        key = roundtrip.write_key(workdir)
        probe = ProbeDaemon(workdir, [], probe={"key_file": str(key),
                                                "roundtrip_deadline": "60s"},
                            sections=alert_sections(workdir))
        chain = ChainedMail(workdir, key, probe.event_socket, discard=True,
                            edge_knows_users=True, submission=True)
        with contextlib.ExitStack() as stack:
            stack.enter_context(chain)
            probe.targets = probe_targets(chain)
            stack.enter_context(probe)
            try:
                ok = show(chain, probe, args.once, args.interval)
            except KeyboardInterrupt:
                ok = True
                print("\nStopping the sandbox ...")
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the stop finish
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except KeyboardInterrupt:  # while starting: whatever had started is stopped already
        print("\nInterrupted.")
    finally:
        if args.keep or not ok:
            sandbox.keep_workdir(workdir)
            print(f"Work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
