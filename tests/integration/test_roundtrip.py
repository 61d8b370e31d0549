"""Round trips through two chained real Postfix instances (roundtrip.ChainedMail): the probe
daemon sends signed probe messages to edge, edge relays them to mx, mx delivers them to an
smtp-sink; a mailpulse-milter on each Postfix stamps and reports them to the probe's event
socket, and the probe's correlator closes each journey as delivered, bounced or lost.

Checked: a delivered journey has the edge and mx hops in order with increasing times, the
delivered message carries both X-Mailpulse-Hop stamps, and the metrics, the journey log line and
`mailpulse-probe trace` (text and JSON) show it; mail held at edge for about 2 s (the hold
queue) shows as edge->mx latency within 100 ms of the hold; an unknown recipient at mx comes
back as a DSN to the return path and the journey is bounced with 5.1.1; with mx stopped the
journey is lost at the deadline, last seen at edge; forged, stale and replayed tokens sent with
swaks are counted by reason and never become probes; an earlier probe released after its
deadline is a late report on its own journey and never satisfies a newer one; a last hop without
a milter (a Postfix delivering over LMTP into a real Dovecot) is confirmed over IMAPS.
"""
import base64
import hashlib
import hmac
import json
import re
import secrets
import subprocess
import time
import urllib.request

import pytest

import roundtrip
import sandbox
from probe_daemon import ProbeDaemon
from roundtrip import PROBE_RETURN, PROBE_SINK, PROBE_UNKNOWN

pytestmark = pytest.mark.usefixtures("milter_binary", "probe_binary")

TARGET = "roundtrip"
# edge main.cf: every message from the probe (127.0.0.1) goes to the hold queue on arrival.
HOLD_PROBES = {"smtpd_end_of_data_restrictions": "check_client_access inline:{ 127.0.0.1=HOLD }"}


def target(port: int, **overrides) -> dict:
    """A roundtrip target sending one probe (first check within 5 s, then hourly)."""
    return {"name": TARGET, "host": "127.0.0.1", "port": port, "send": True,
            "from": PROBE_RETURN, "to": [PROBE_SINK], "roundtrip": True, "interval": "1h",
            "timeout": "10s", "helo": "probe.mailpulse.test", **overrides}


def probe_settings(key, **overrides) -> dict:
    return {"key_file": str(key), "roundtrip_deadline": "30s", "jitter_percent": 0,
            **overrides}


def start(request, workdir, *, targets=None, probe=None, edge=None, discard=False):
    """The chain, its milters reporting to a probe daemon's event socket, and the daemon with
    `targets` (overrides of target(); default: one plain roundtrip target). The chain starts
    first so the first probe finds edge listening; the milters reconnect and their outboxes
    keep what they saw meanwhile."""
    key = roundtrip.write_key(workdir)
    daemon = ProbeDaemon(workdir, [], probe_settings(key, **(probe or {})))
    chain = roundtrip.ChainedMail(workdir, key, daemon.event_socket, discard=discard,
                                  **(edge or {}))
    request.addfinalizer(chain.stop)
    chain.start()
    daemon.targets = [target(chain.edge.port, **t) for t in ([{}] if targets is None else targets)]
    request.addfinalizer(daemon.stop)
    daemon.start()

    def diagnostics():
        return (chain.diagnostics() + "--- probe ---\n" + daemon.log_text()[-4000:])
    chain.diagnostics_all = diagnostics
    return key, chain, daemon


def journeys(daemon) -> list:
    url = f"http://127.0.0.1:{daemon.metrics_port}/journeys"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_journeys(daemon, chain, what: str, check, timeout: float = 30) -> list:
    """Polls /journeys until check(list) is true; returns the list."""
    try:
        return sandbox.poll(lambda: (lambda js: js if check(js) else None)(journeys(daemon)),
                            timeout, what, interval=0.05)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{json.dumps(journeys(daemon), indent=1)}\n"
                             f"{chain.diagnostics_all()}") from None


def wait_outcome(daemon, chain, outcome: str, n: int = 1, timeout: float = 30) -> list:
    """Waits until n journeys finished with `outcome` (counted in mailpulse_roundtrip_total:
    a delivered or bounced journey shows its outcome at once and is counted when it settled);
    returns those journeys."""
    wait_journeys(daemon, chain, f"{n} journey(s) {outcome}",
                  lambda js: sandbox.metric_sum(daemon.metrics(), "mailpulse_roundtrip_total",
                                                outcome=outcome) >= n, timeout)
    return finished(outcome)(journeys(daemon))


def finished(outcome: str):
    return lambda js: [j for j in js if j["outcome"] == outcome]


def hop_names(journey) -> list:
    return [h["hop"] for h in journey["hops"]]


def sign_token(key_path, probe_id: str, t_us: int, src: str = "probe") -> str:
    """An X-Mailpulse-Probe value signed like shared/probe_token.cc does."""
    key = key_path.read_text().strip().encode()  # the key file's line is the key
    canonical = f"v=1;id={probe_id};t={t_us};src={src}"
    mac = base64.b64encode(hmac.new(key, canonical.encode(), hashlib.sha256).digest()).decode()
    return f"v=1; id={probe_id}; t={t_us}; src={src}; mac={mac}"


def trace(daemon, *args: str) -> str:
    proc = subprocess.run([str(sandbox.probe_binary()), "trace", "--url",
                           f"127.0.0.1:{daemon.metrics_port}", *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_delivered_journey_has_both_hops_in_order(request, workdir):
    _, chain, daemon = start(request, workdir)
    [j] = wait_outcome(daemon, chain, "delivered")
    assert hop_names(j) == ["edge", "mx"], j
    assert j["delivered_hop"] == "mx"
    edge, mx = j["hops"]
    assert j["sent_unix_us"] < edge["time_unix_us"] < mx["time_unix_us"], j
    assert edge["latency_seconds"] > 0 and mx["latency_seconds"] > 0
    assert edge["queue_id"] and mx["queue_id"] and edge["queue_id"] != mx["queue_id"]
    assert edge["client_address"] == "127.0.0.1" and mx["client_address"] == "127.0.0.1"
    assert 0 < j["roundtrip_seconds"] < 30
    assert re.fullmatch(r"[0-9a-f]{32}", j["probe_id"])

    # The delivered message carries its own trail: each hop's stamp with its time and qid.
    [message] = chain.sink.wait_for_count(1)
    assert message.rcpt_to == [PROBE_SINK]
    assert message.header("X-Mailpulse-Probe")[0].startswith(f"v=1; id={j['probe_id']}; ")
    stamps = {}
    for value in message.header("X-Mailpulse-Hop"):
        fields = dict(part.strip().split("=", 1) for part in value.split(";"))
        stamps[fields["hop"]] = fields
    assert set(stamps) == {"edge", "mx"}, message.text
    assert int(stamps["edge"]["t"]) == edge["time_unix_us"]
    assert int(stamps["mx"]["t"]) == mx["time_unix_us"]
    assert stamps["edge"]["qid"] == edge["queue_id"] and stamps["mx"]["qid"] == mx["queue_id"]

    m = daemon.metrics()
    assert sandbox.metric_sum(m, "mailpulse_roundtrip_total", target=TARGET,
                              outcome="delivered") == 1
    assert sandbox.metric_sum(m, "mailpulse_roundtrip_seconds_count", target=TARGET) == 1
    for hop in ("edge", "mx"):
        assert sandbox.metric_sum(m, "mailpulse_hop_latency_seconds_count", target=TARGET,
                                  hop=hop) == 1
    last = sandbox.metric_sum(m, "mailpulse_roundtrip_last_seconds", target=TARGET)
    assert last == pytest.approx(j["roundtrip_seconds"], abs=1e-6)
    for milter in (chain.edge_milter, chain.mx_milter):
        assert sandbox.metric_sum(milter.metrics(),
                                  "mailpulse_milter_probe_sightings_total") == 1
    assert sandbox.metric_sum(chain.mx_milter.metrics(),
                              "mailpulse_milter_probe_deliveries_total") == 1

    # One log line with the whole timeline.
    line = sandbox.poll(lambda: re.search(rf"journey {j['probe_id']} target {TARGET}: "
                                          r"delivered in [\d.]+ s: sent .*, edge \+[\d.]+ s "
                                          r"\(qid \w+\), mx \+[\d.]+ s \(qid \w+\) delivered at mx",
                                          daemon.log_text()), 10, "the journey's log line")
    assert line

    text = trace(daemon)
    assert re.search(rf"^journey {j['probe_id']}  target {TARGET}  delivered  [\d.]+ s$", text,
                     re.M), text
    assert re.search(r"^  edge +\d{4}-\d\d-\d\d [\d:.]+ UTC  \+[\d.]+ s  qid \w+", text, re.M)
    assert re.search(r"^  mx +\d{4}-\d\d-\d\d [\d:.]+ UTC  \+[\d.]+ s  qid \w+", text, re.M)
    assert text.index("  edge ") < text.index("  mx ")
    one = json.loads(trace(daemon, j["probe_id"], "--json"))
    assert one["probe_id"] == j["probe_id"] and hop_names(one) == ["edge", "mx"]
    missing = subprocess.run([str(sandbox.probe_binary()), "trace", "--url",
                              f"127.0.0.1:{daemon.metrics_port}", "0" * 32],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "no journey" in missing.stderr


def test_mail_held_at_edge_shows_as_edge_to_mx_latency(request, workdir):
    """edge puts every message from the probe on hold when it accepts it (HOLD at end of
    data); about 2 s after edge stamped it, the test releases it (postsuper -H, postqueue -i:
    no reload, so the release itself takes milliseconds) and it goes on to mx."""
    _, chain, daemon = start(request, workdir, edge=HOLD_PROBES)
    js = wait_journeys(daemon, chain, "the probe seen at edge",
                       lambda js: [j for j in js if hop_names(j) == ["edge"]])
    edge_hop = js[0]["hops"][0]
    edge_us, qid = edge_hop["time_unix_us"], edge_hop["queue_id"]
    chain.edge.wait_for_log(rf"{qid}: .*: Client host triggers HOLD action")
    sandbox.poll(lambda: time.time_ns() // 1000 >= edge_us + 2_000_000, 10, "2 s of hold")
    released_from = time.time_ns() // 1000
    sandbox.run(["postsuper", "-c", str(chain.edge.config_dir), "-H", qid])
    sandbox.run(["postqueue", "-c", str(chain.edge.config_dir), "-i", qid])
    released_by = time.time_ns() // 1000
    j = wait_outcome(daemon, chain, "delivered")[0]
    assert hop_names(j) == ["edge", "mx"]
    latency = j["hops"][1]["latency_seconds"]
    hold_min = (released_from - edge_us) / 1e6
    hold_max = (released_by - edge_us) / 1e6
    assert hold_min >= 2
    # The latency is the hold, ended somewhere within the release commands, plus the relay to
    # mx as Postfix itself timed it (delays=a/b/c/d: b+c+d is queue manager, connection set-up
    # and transmission after the release, to 10 ms), to within 100 ms. Postfix's own figure
    # rather than a fixed allowance, so that a loaded machine slowing the relay is no failure.
    sent = chain.edge.wait_for_log(
        rf"{qid}: to=<.*relay=127\.0\.0\.1\[127\.0\.0\.1\]:{chain.mx.port}, .*"
        r"delays=[\d.]+/([\d.]+)/([\d.]+)/([\d.]+), .*status=sent")
    relay = sum(float(x) for x in sent.groups())
    assert hold_min <= latency <= hold_max + relay + 0.1, (latency, hold_min, hold_max, relay)
    print(f"edge->mx latency {latency:.3f} s; hold {hold_min:.3f}..{hold_max:.3f} s; "
          f"relay {relay:.2f} s")


def test_unknown_recipient_at_mx_is_bounced_5_1_1(request, workdir):
    _, chain, daemon = start(request, workdir, targets=[{"to": [PROBE_UNKNOWN]}])
    j = wait_outcome(daemon, chain, "bounced")[0]
    [rcpt] = j["bounce"]["recipients"]
    assert rcpt["final_recipient"].lower().endswith(PROBE_UNKNOWN), rcpt
    assert rcpt["action"] == "failed" and rcpt["status"] == "5.1.1", rcpt
    assert "550" in rcpt["diagnostic_code"], rcpt
    assert j["bounce"]["hop"] == "mx"  # the DSN reached mx, the return path's hop
    assert hop_names(j)[0] == "edge"
    assert sandbox.metric_sum(daemon.metrics(), "mailpulse_roundtrip_total", target=TARGET,
                              outcome="bounced") == 1
    assert sandbox.metric_sum(chain.mx_milter.metrics(),
                              "mailpulse_milter_probe_bounces_total") == 1
    assert re.search(rf"journey {j['probe_id']} target {TARGET}: bounced: .*; bounced: .*"
                     r"failed 5\.1\.1", daemon.log_text())
    assert "5.1.1" in trace(daemon, j["probe_id"])


def test_mx_stopped_gives_lost_at_the_deadline(request, workdir):
    key = roundtrip.write_key(workdir)
    daemon = ProbeDaemon(workdir, [], probe_settings(key, roundtrip_deadline="3s"))
    chain = roundtrip.ChainedMail(workdir, key, daemon.event_socket)
    request.addfinalizer(chain.stop)
    chain.start()
    chain.mx.stop()
    chain.diagnostics_all = chain.diagnostics
    daemon.targets = [target(chain.edge.port)]
    request.addfinalizer(daemon.stop)
    daemon.start()
    [j] = wait_outcome(daemon, chain, "lost", timeout=20)
    assert hop_names(j) == ["edge"]
    assert "roundtrip_seconds" not in j
    # Lost at the deadline: 3 s after sending (the timer fires on time, give it a second).
    seen_lost = time.time_ns() // 1000
    assert seen_lost - j["sent_unix_us"] >= 3_000_000
    m = daemon.metrics()
    assert sandbox.metric_sum(m, "mailpulse_roundtrip_total", target=TARGET, outcome="lost") == 1
    assert sandbox.metric_sum(m, "mailpulse_roundtrip_total", target=TARGET,
                              outcome="delivered") == 0
    assert sandbox.metric_sum(m, "mailpulse_hop_latency_seconds_count", target=TARGET) == 0
    assert re.search(rf"journey {j['probe_id']} target {TARGET}: lost: .*; last seen at edge",
                     daemon.log_text())


def test_forged_stale_and_replayed_tokens_are_counted_never_probes(request, workdir):
    key, chain, daemon = start(request, workdir, targets=[])
    edge = chain.edge_milter

    def send(token: str, subject: str):
        r = sandbox.send_swaks(chain.edge.port, PROBE_SINK, PROBE_RETURN, subject=subject,
                               headers=[f"X-Mailpulse-Probe: {token}"])
        assert r.returncode == 0, r.output

    now = time.time_ns() // 1000
    forged = sign_token(key, secrets.token_hex(16), now)
    forged = forged[:-8] + ("AAAAAAA=" if not forged.endswith("AAAAAAA=") else "BBBBBBB=")
    send(forged, "forged")
    wrong_key = workdir / "other.key"
    wrong_key.write_text(secrets.token_hex(32))
    send(sign_token(wrong_key, secrets.token_hex(16), now), "other key")
    send(sign_token(key, secrets.token_hex(16), now - 3600 * 10**6), "stale")
    chain.sink.wait_for_count(3)
    m = edge.wait_for_metric("mailpulse_milter_probe_tokens_invalid_total", 3)
    assert sandbox.metric_sum(m, "mailpulse_milter_probe_tokens_invalid_total", reason="mac") == 2
    assert sandbox.metric_sum(m, "mailpulse_milter_probe_tokens_invalid_total",
                              reason="stale") == 1
    for message in chain.sink.messages():  # delivered as ordinary mail, with no hop stamp
        assert message.header("X-Mailpulse-Hop") == [], message.text
    for milter in (edge, chain.mx_milter):
        assert sandbox.metric_sum(milter.metrics(),
                                  "mailpulse_milter_probe_sightings_total") == 0

    # A valid token seen twice at one hop: the second is a replay, and never a sighting.
    valid = sign_token(key, secrets.token_hex(16), time.time_ns() // 1000)
    send(valid, "valid")
    edge.wait_for_metric("mailpulse_milter_probe_sightings_total", 1)
    send(valid, "replayed")
    m = edge.wait_for_metric("mailpulse_milter_probe_tokens_invalid_total", 4)
    assert sandbox.metric_sum(m, "mailpulse_milter_probe_tokens_invalid_total",
                              reason="replayed") == 1
    assert sandbox.metric_sum(m, "mailpulse_milter_probe_sightings_total") == 1
    chain.sink.wait_for_count(5)
    # None of it is a journey of the probe: it sent no probe, and reports of ids it did not
    # send are ignored, not counted as round trips.
    assert journeys(daemon) == []
    assert sandbox.metric_sum(daemon.metrics(), "mailpulse_roundtrip_total") == 0


def test_an_earlier_probe_arriving_late_never_satisfies_a_newer_one(request, workdir):
    """edge holds every probe on arrival. Probe A stays held past its deadline (lost); probe B
    is sent and held too; A is released and reaches mx: a late report on A's journey, B still
    pending. Then B is released and delivered with its own hops."""
    _, chain, daemon = start(request, workdir, targets=[{"interval": "8s"}],
                             probe={"roundtrip_deadline": "6s"}, edge=HOLD_PROBES)
    conf = str(chain.edge.config_dir)

    def release(qid: str) -> None:
        sandbox.run(["postsuper", "-c", conf, "-H", qid])
        sandbox.run(["postqueue", "-c", conf, "-i", qid])

    a = wait_journeys(daemon, chain, "probe A at edge",
                      lambda js: [j for j in js if hop_names(j) == ["edge"]])[0]
    wait_outcome(daemon, chain, "lost", timeout=20)
    js = wait_journeys(daemon, chain, "probe B at edge",
                       lambda js: [j for j in js if j["probe_id"] != a["probe_id"]
                                   and hop_names(j) == ["edge"] and j["outcome"] == "pending"],
                       timeout=20)
    b = next(j for j in js if j["probe_id"] != a["probe_id"])
    assert b["sent_unix_us"] > a["sent_unix_us"]
    release(a["hops"][0]["queue_id"])

    js = wait_journeys(daemon, chain, "A's late report",
                       lambda js: [j for j in js if j["probe_id"] == a["probe_id"]
                                   and j["late_reports"] >= 1])
    a_now = next(j for j in js if j["probe_id"] == a["probe_id"])
    b_now = next(j for j in js if j["probe_id"] == b["probe_id"])
    assert a_now["outcome"] == "lost"  # late reports change nothing
    assert b_now["outcome"] == "pending", b_now  # A's arrival satisfied nothing else
    assert hop_names(b_now) == ["edge"]
    m = daemon.metrics()
    assert sandbox.metric_sum(m, "mailpulse_roundtrip_late_reports_total", target=TARGET) >= 1
    assert sandbox.metric_sum(m, "mailpulse_roundtrip_total", target=TARGET,
                              outcome="delivered") == 0
    [a_message] = chain.sink.wait_for_count(1)
    assert a["probe_id"] in a_message.header("X-Mailpulse-Probe")[0]

    release(b["hops"][0]["queue_id"])
    js = wait_journeys(daemon, chain, "B delivered",
                       lambda js: [j for j in js if j["probe_id"] == b["probe_id"]
                                   and j["outcome"] == "delivered"], timeout=20)
    b_done = next(j for j in js if j["probe_id"] == b["probe_id"])
    assert hop_names(b_done) == ["edge", "mx"]
    assert b_done["hops"][1]["queue_id"] not in {h["queue_id"] for h in a_now["hops"]}
    assert b_done["late_reports"] == 0


IMAP_USER, IMAP_PASSWORD, IMAP_NAME = "probe@mailbox.test", "imap-rt-secret", "imap.mailpulse.test"


def test_last_hop_without_milter_is_confirmed_over_imap(request, workdir):
    """edge (+ milter) relays mailbox.test to a Postfix without a milter that delivers over
    LMTP into Dovecot; the probe finds the message over IMAPS, reads edge's stamp from it and
    deletes it."""
    key = roundtrip.write_key(workdir)
    daemon = ProbeDaemon(workdir, [], probe_settings(key))
    mailbox = sandbox.PostfixInstance(
        workdir, "mailbox", relay_domains="mailbox.test",
        relay_recipient_maps=f"inline:{{ {IMAP_USER}=ok }}",
        transport_maps="inline:{ mailbox.test=lmtp:unix:private/dovecot-lmtp }")
    dovecot = sandbox.DovecotInstance(workdir, mailbox, users={IMAP_USER: IMAP_PASSWORD},
                                      imaps=True, lmtp=True, tls_name=IMAP_NAME)
    edge_milter = roundtrip.milter(workdir, "edge", key, daemon.event_socket)
    edge = sandbox.PostfixInstance(
        workdir, "edge", milter=edge_milter.address, relay_domains="mailbox.test",
        relay_recipient_maps="",
        transport_maps=f"inline:{{ mailbox.test=smtp:[127.0.0.1]:{mailbox.port} }}")
    for part in (mailbox, dovecot, edge_milter, edge):
        request.addfinalizer(part.stop)  # last in, first out
        part.start()
    password = workdir / "imap.password"
    password.write_text(IMAP_PASSWORD + "\n")
    password.chmod(0o600)
    sandbox.run(["chown", "nobody", str(password)])
    daemon.targets = [target(edge.port, to=[IMAP_USER], imap_host="127.0.0.1",
                             imap_port=dovecot.imaps_port, imap_tls_name=IMAP_NAME,
                             imap_ca_file=str(dovecot.cert_file), imap_user=IMAP_USER,
                             imap_password_file=str(password), imap_poll="500ms")]
    request.addfinalizer(daemon.stop)
    daemon.start()

    class Chain:
        def diagnostics_all(self):
            return (f"--- edge ---\n{edge.log_text()[-3000:]}\n--- mailbox ---\n"
                    f"{mailbox.log_text()[-3000:]}\n--- dovecot ---\n{dovecot.log_text()[-2000:]}"
                    f"\n--- probe ---\n{daemon.log_text()[-3000:]}")

    j = wait_outcome(daemon, Chain(), "delivered")[0]
    assert hop_names(j) == ["edge", "imap:127.0.0.1"], j
    assert j["delivered_hop"] == "imap:127.0.0.1"
    assert j["hops"][0]["time_unix_us"] < j["hops"][1]["time_unix_us"]
    assert re.search(rf"journey {j['probe_id']}: found in mailbox INBOX of {IMAP_USER} at "
                     r"127\.0\.0\.1 over IMAP, deleted", daemon.log_text())
    box = dovecot.maildir(IMAP_USER)
    # Dovecot expunges the deleted file; nothing with the probe id is left in the Maildir.
    sandbox.poll(lambda: not [p for sub in ("new", "cur") if (box / sub).is_dir()
                              for p in (box / sub).iterdir()
                              if j["probe_id"] in p.read_text(errors="replace")],
                 10, "the probe message gone from the Maildir")
    assert IMAP_PASSWORD not in daemon.log_text()
