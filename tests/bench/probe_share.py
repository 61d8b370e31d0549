"""The Postfix half of roundtrip_overhead.py: throughput with mailpulse-milter when 1% of the
messages are probes, beside none, on the machinery of postfix_throughput.py (one sandboxed
Postfix relaying to a FastSink, one smtpd listener per variant, every run timed until the
queue is empty and verified). The variants:

  no-milter        no milter at all (the reference)
  mailpulse-nokey  mailpulse-milter without a probe key: probe handling off
  probes-0%        mailpulse-milter with the probe key, reporting to a running
                   `mailpulse-probe run` over its unix event socket; no probe messages
  probes-1%        a second such milter, the same configuration; 1% of the messages carry a
                   valid, freshly signed X-Mailpulse-Probe token

The bulk is smtp-source as in postfix_throughput.py. Each probe message is one more
`smtp-source -s 1 -m 1 -F FILE` (smtp-source sends the same file for every message, and every
probe needs its own token id, since an id seen twice at one hop is a replay), the file written
before the clock starts with the headers smtp-source itself writes, the token, and the same
2048-byte body. Message k goes out once k/N of the run's messages have left the queue, so they
are spread over the run. A process per message costs the client much more than the bulk's
messages, so every variant sends 1% of its messages that way, with a header of the same
length in place of the token in all but probes-1%: the probe variants differ in the tokens
only. Those smtp-source processes are this script's children: their CPU is in the
benchmark's, as is the probe daemon's.

run_singles() measures what one probe message costs beyond another with everything else
alike: a few hundred messages each by its own smtp-source -F, all probes or all plain.

Every run is verified beyond postfix_throughput.py's checks: the serving milter's
mailpulse_milter_probe_sightings_total rose by exactly the run's probe messages and the other
milter's by none, no token was counted invalid, no event was dropped, and the probe daemon's
mailpulse_probe_events_received_total{kind="hop_sighting"} rose by the same number.
Standard library only.
"""
from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import os
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import postfix_throughput as pt
import roundtrip
import sandbox
from probe_daemon import ProbeDaemon

VARIANTS = ("no-milter", "mailpulse-nokey", "probes-0%", "probes-1%")
PROBE_MILTERS = ("probes-0%", "probes-1%")
SIDE_SHARE = 0.01  # of every run's messages, sent each by its own smtp-source -F
PROBE_VARIANT = "probes-1%"  # the variant whose side messages carry tokens
PROBE_SOURCE = "bench-probe"  # the tokens' src
SINGLES = ("plain", "probe")  # run_singles' kinds
SINGLES_AHEAD = 3  # run_singles: messages in flight beyond the next due one
SIGHTINGS = "mailpulse_milter_probe_sightings_total"
INVALID = "mailpulse_milter_probe_tokens_invalid_total"
DROPPED = "mailpulse_milter_events_dropped_total"
RECEIVED = "mailpulse_probe_events_received_total"


def token(key: bytes, probe_id: str, t_us: int) -> str:
    """An X-Mailpulse-Probe value: HMAC-SHA256 keyed with the key file's line over the
    canonical fields, base64 with padding (shared/probe_token.cc)."""
    canonical = f"v=1;id={probe_id};t={t_us};src={PROBE_SOURCE}"
    mac = base64.b64encode(hmac.new(key, canonical.encode(), hashlib.sha256).digest()).decode()
    return f"v=1; id={probe_id}; t={t_us}; src={PROBE_SOURCE}; mac={mac}"


def message_file(key: bytes, probe: bool = True) -> str:
    """A message for smtp-source -F: the headers smtp-source writes for the bulk, the token
    with a fresh id (probe=False: a header of the same length that is no token), and a body of
    PAYLOAD bytes on the wire as smtp-source's (lines of 78 characters; smtp-source -F ends
    each line with CRLF)."""
    probe_id = os.urandom(16).hex()
    value = token(key, probe_id, time.time_ns() // 1000)
    lines = [f"From: <{pt.SENDER}>", f"To: <{pt.RECIPIENT}>",
             f"Date: {email.utils.formatdate()}", f"Message-Id: <{probe_id}@client.mailpulse.test>",
             f"X-Mailpulse-Probe: {value}" if probe else f"X-Bench-Filler: {value}", ""]
    full, rest = divmod(pt.PAYLOAD, 80)
    lines += ["X" * 78] * full + (["X" * (rest - 2)] if rest >= 2 else [])
    return "\n".join(lines) + "\n"


def side_count(messages: int) -> int:
    """How many of a run's messages go each by its own smtp-source -F: SIDE_SHARE, at least
    one."""
    return max(1, round(messages * SIDE_SHARE))


def probe_count(variant: str, messages: int) -> int:
    """How many of a run's messages are probes: its side messages in PROBE_VARIANT."""
    return side_count(messages) if variant == PROBE_VARIANT else 0


class ProbeMilter(pt.MailpulseMilter):
    """mailpulse-milter with the probe key, reporting to the probe's unix event socket."""

    def __init__(self, workdir: Path, name: str, binary: Path, key: Path, event_socket: Path):
        super().__init__(workdir, name, binary)
        self.probe_config = f'probe_key_file = "{key}"\nevent_socket = "unix:{event_socket}"\n'

    def config(self) -> str:
        return super().config() + self.probe_config

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return sandbox.metric_sum(sandbox.parse_metrics(resp.read().decode()), name)


class MessageSender:
    """Messages each sent by its own smtp-source -F, beside smtp-source's bulk or alone
    (Bench.run's `side`): `count` of the run's `total`, message k once k/count of all are
    delivered, or up to `ahead` messages before that; probes, or with probe=False the same
    messages without a token."""

    def __init__(self, bench: "ProbeShareBench", variant: str, count: int, total: int,
                 ahead: int = 0, probe: bool = True):
        self.bench, self.messages, self.total, self.ahead = bench, count, total, ahead
        self.port = bench.postfix.port_of(variant)
        self.dir = bench.workdir / "messages"
        self.dir.mkdir(exist_ok=True)
        key = bench.key.read_text().strip().encode()
        self.files = []
        for i in range(count):  # outside the clock: Bench.run starts it after __init__
            path = self.dir / f"{i}.eml"
            path.write_text(message_file(key, probe))
            self.files.append(path)
        self.running: list = []
        self.sent = 0

    def poll(self, removed: int) -> None:
        """Sends every message now due and reaps the finished ones; raises if one failed."""
        while (self.sent < self.messages
               and removed + self.ahead >= self.sent * self.total // self.messages):
            with open(self.files[self.sent].with_suffix(".err"), "w") as err:
                proc = subprocess.Popen(
                    ["smtp-source", "-s", "1", "-m", "1", "-F", str(self.files[self.sent]),
                     "-M", "client.mailpulse.test", "-f", pt.SENDER, "-t", pt.RECIPIENT,
                     f"127.0.0.1:{self.port}"],
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            pt.record_pid(self.bench.workdir, "smtp-source", proc.pid)
            self.running.append((proc, self.files[self.sent]))
            self.sent += 1
        for proc, path in list(self.running):
            if proc.poll() is None:
                continue
            self.running.remove((proc, path))
            said = path.with_suffix(".err").read_text(errors="replace").strip()
            if proc.returncode != 0 or said:
                raise RuntimeError(f"smtp-source -F {path.name} exited "
                                   f"{proc.returncode}: {said[-500:]}")

    def done(self) -> bool:
        return self.sent == self.messages and not self.running

    def stop(self) -> None:
        for proc, _ in self.running:
            if proc.poll() is None:
                sandbox.kill_pid(proc.pid)
            proc.wait()
        self.running = []


class ProbeShareBench(pt.Bench):
    """pt.Bench with this benchmark's milters and the probe daemon they report to."""

    def __init__(self, workdir: Path, build: Path):
        self.key = roundtrip.write_key(workdir)
        self.daemon = ProbeDaemon(workdir, [], {"name": PROBE_SOURCE}, name="probe")
        binary = build / "milter" / "mailpulse-milter"
        milters = {"mailpulse-nokey": pt.MailpulseMilter(workdir, "mailpulse-nokey", binary)}
        for name in PROBE_MILTERS:
            milters[name] = ProbeMilter(workdir, name, binary, self.key, self.daemon.event_socket)
        super().__init__(workdir, build, milters, helpers=(self.daemon,))

    def probe_counts(self) -> dict:
        counts = {"received": self.daemon.metric(RECEIVED, kind="hop_sighting")}
        for name in PROBE_MILTERS:
            m = self.milters[name]
            counts[name] = (m.metric(SIGHTINGS), m.metric(INVALID), m.metric(DROPPED))
        return counts

    def run(self, variant: str, sessions: int, messages: int, timeout: float = 900,
            quiet: tuple = (1.0, 0), side=None) -> pt.RunResult:
        """One verified run: the bulk, and side_count() messages each by its own
        smtp-source -F beside it, probes in PROBE_VARIANT and alike but without a token in the
        others, so that every variant has the same clients. The SINGLES kinds are
        run_singles()."""
        if variant in SINGLES:
            return self.run_singles(variant, messages, quiet)
        probes = probe_count(variant, messages)
        before = self.probe_counts()
        side = MessageSender(self, variant, side_count(messages), messages, probe=probes > 0)
        result = super().run(variant, sessions, messages, timeout, quiet, side)
        self.verify_probes(variant, probes, before)
        return result

    def run_singles(self, kind: str, messages: int, quiet: tuple) -> pt.RunResult:
        """A verified run of `messages` messages through probes-1%, each by its own
        smtp-source -F, SINGLES_AHEAD + 1 at a time at most: all probes (kind "probe") or all
        the same messages without a token ("plain"). Their difference is what a probe message
        costs beyond another message, with everything else alike."""
        before = self.probe_counts()
        side = MessageSender(self, "probes-1%", messages, messages, SINGLES_AHEAD,
                             probe=kind == "probe")
        result = super().run("probes-1%", 0, messages, quiet=quiet, side=side)
        result.variant = kind
        self.verify_probes("probes-1%", messages if kind == "probe" else 0, before)
        return result

    def verify_probes(self, variant: str, probes: int, before: dict) -> None:
        problems, after = [], self.probe_counts()
        for name in PROBE_MILTERS:
            want = probes if name == variant else 0
            got = [a - b for a, b in zip(after[name], before[name])]
            if got[0] != want:
                problems.append(f"{name}: {got[0]:g} probe sightings, expected {want}")
            if got[1] or got[2]:
                problems.append(f"{name}: {got[1]:g} tokens invalid, {got[2]:g} events dropped")
        want = before["received"] + probes
        with contextlib.suppress(TimeoutError):  # the event follows the sighting by a moment
            sandbox.poll(lambda: self.daemon.metric(RECEIVED, kind="hop_sighting") >= want, 10,
                         f"the probe to receive {probes} sightings")
        got = self.daemon.metric(RECEIVED, kind="hop_sighting") - before["received"]
        if got != probes:
            problems.append(f"probe daemon: received {got:g} hop sightings, expected {probes}")
        if problems:
            raise RuntimeError(f"{variant} run failed the probe checks:\n  "
                               + "\n  ".join(problems))


def table(summaries: dict, messages: int) -> str:
    """The probe-share throughput table: ratios to no-milter and to probes-0%."""
    base, zero = summaries["no-milter"], summaries["probes-0%"]
    rows = ["| variant | probe messages per run | msgs/s (median) | runs | ratio to no-milter | "
            "ratio to probes-0% | CPU-bound ratio to probes-0% | milter CPU µs/msg | "
            "Postfix CPU µs/msg | probe daemon CPU µs/msg | clients CPU µs/msg | "
            "benchmark CPU µs/msg | CPU busy: benchmark + other |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: |"]
    for v, s in summaries.items():
        runs = ", ".join(f"{r.rate:.0f}" for r in s.runs)
        probes = probe_count(v, messages)
        rows.append(f"| {v} | {probes} | {s.rate:.0f} | {runs} | {s.rate / base.rate:.3f} | "
                    f"{s.rate / zero.rate:.3f} | "
                    f"{s.cpu_bound_rate / zero.cpu_bound_rate:.3f} | "
                    f"{pt.fmt(s.cpu_us('milter_ticks'))} | {pt.fmt(s.cpu_us('postfix_ticks'))} | "
                    f"{pt.fmt(s.cpu_us('helper_ticks'), '.1f')} | "
                    f"{pt.median([r.source_cpu / r.messages * 1e6 for r in s.runs]):.0f} | "
                    f"{s.bench_us:.0f} | "
                    f"{s.bench_share:.0%} + {s.others:.0%} |")
    return "\n".join(rows)


def round_order(rnd: int) -> list:
    """Round rnd's runs: the probe variants ABBA (probes-0%, 1%, 1%, 0%, and the other way
    round in odd rounds), so a drift during the round weighs on both alike, between the two
    references, which swap ends each round."""
    a, b = PROBE_MILTERS if rnd % 2 == 0 else PROBE_MILTERS[::-1]
    first, last = ("no-milter", "mailpulse-nokey")[::1 if rnd % 2 == 0 else -1]
    return [first, a, b, b, a, last]


def round_ratio(runs: list) -> float:
    """One round's probes-1% / probes-0%: the mean rates of its two runs of each."""
    def rate(variant: str) -> float:
        return statistics.mean(r.rate for r in runs if r.variant == variant)
    return rate("probes-1%") / rate("probes-0%")


COSTS = (("mailpulse-milter", "milter_ticks"), ("Postfix", "postfix_ticks"),
         ("probe daemon", "helper_ticks"), ("the benchmark in all", "bench_ticks"))


def extra_costs(runs: list) -> dict:
    """From run_singles' runs (a plain and a probe run each round): {label: (plain µs/msg,
    probe µs/msg, [extra µs per probe message, round by round])}, medians over the rounds."""
    plain = [r for r in runs if r.variant == "plain"]
    probe = [r for r in runs if r.variant == "probe"]
    out = {}
    for label, attr in COSTS:
        a = [r.per_msg_us(getattr(r, attr)) for r in plain]
        b = [r.per_msg_us(getattr(r, attr)) for r in probe]
        out[label] = (pt.median(a), pt.median(b), [y - x for x, y in zip(a, b)])
    return out


def singles_table(costs: dict) -> str:
    rows = ["| CPU per message | plain (median) | probe (median) | extra per probe message "
            "(median of the rounds) | each round's extra |",
            "| --- | ---: | ---: | ---: | --- |"]
    for label, (plain, probe, extras) in costs.items():
        rows.append(f"| {label} | {plain:.0f} µs | {probe:.0f} µs | "
                    f"{pt.median(extras):+.0f} µs | "
                    f"{', '.join(f'{e:+.0f}' for e in extras)} |")
    return "\n".join(rows)
