#!/usr/bin/python3
"""Postfix throughput with outbound spike detection on vs off (issue 5), side by side in one run.

The method and machinery of postfix_throughput.py (imported as pt): one sandboxed Postfix with
one smtpd listener per variant, smtp-source -> Postfix -> an smtp-sink that writes nothing,
each run timed until every message left the queue and verified, medians over rounds, CPU per
message from /proc, a wait for a quiet machine before each run. The variants:

  no-milter   no milter at all (the baseline)
  spikes-off  mailpulse-milter with milter.spike_detection = false
  spikes-on   mailpulse-milter with spike detection on, every milter.spike_* key at its default

The detector only counts outbound mail, so both milters trust 127.0.0.0/8
(milter.trusted_networks; postfix_throughput.py trusts 127.0.0.2 only): smtp-source's mail,
from 127.0.0.1, is outbound there. Postfix relays it to the sink as before (sink.test is in
relay_domains). Rounds run the variants in one order and then in the reverse one (no-milter,
spikes-off, spikes-on; spikes-on, spikes-off, no-milter; ...), so a drift within a round
weighs on every pair alike; then a few single-session rounds for the latency per message.

Every run is verified beyond pt's checks (all delivered, none deferred, bounced or rejected,
the serving milter counted and read every message, the others none): the serving milter
counted every message as outbound (mailpulse_milter_messages_total{direction="outbound"}),
spikes-off has no detector (GET /top answers 404, no mailpulse_milter_outbound_* metric), and
spikes-on's detector counted the run's messages, from its total key in GET /top. /top gives
decayed rates, not counts: the short rate (time constant 10 s) and the baseline (1 h), fed by
what leaks out of the short window. Between messages the short count as of the last message
(the rate brought back to the time of the last message, which the milter's log line per
message dates: its stderr's mtime) and the baseline's forward-decayed count are constant, and
a message adds one to the first and moves what decayed since into the second; so the run's
messages are the rise of the first plus what moved into the second, weighed back to when it
moved. That must match the run's count within 1% (see check_detector()). While the total key
spikes the baseline does not learn (the detector's design), so in a run during a spike only
bounds hold: the short count is between that of N messages all at the start of the run and
all at its end; such runs are counted in the report.

Run as root with Debian's python3 (stdlib only), from the repository root:
  MAILPULSE_BUILD_DIR=build /usr/bin/python3 tests/bench/spike_throughput.py [--write-doc [PATH]]
  ... --quick        a smoke run (200 messages, 4 sessions, 2 rounds, no waiting)
  ... --milter PATH  the mailpulse-milter to run (default build/milter/mailpulse-milter)
  ... --budget MIN   start no round after about MIN minutes (default 22)
--write-doc writes its section of docs/performance.md (or of PATH), keeping the others. Every
process started here is stopped by PID on the way out, whatever happens.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
import sandbox  # noqa: E402  (after the path set-up above)
import doc_sections  # noqa: E402  (tests/bench, the script's own directory)
import postfix_throughput as pt  # noqa: E402

VARIANTS = ("no-milter", "spikes-off", "spikes-on")
OUTBOUND_NETWORK = "127.0.0.0/8"  # milter.trusted_networks of both milters
SHORT_S, BASELINE_S = 10.0, 3600.0  # milter.spike_short_window, spike_baseline_window defaults
TOLERANCE = 0.01  # of a run's messages: how closely the detector's count must match
DETECTOR_US = 2.0  # spike_bench's OnMessage, 10,000 keys (section spike-detector, 2026-12-02)
DOC_PATH = REPO_ROOT / "docs" / "performance.md"
DOC_SECTION = "spike-throughput"


def http_get(url: str) -> tuple:
    """(status, body) of a GET; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def mtime_monotonic(path: Path) -> float:
    """A file's last write on the time.monotonic() clock (the milter's steady_clock)."""
    return os.stat(path).st_mtime_ns / 1e9 - (time.time() - time.monotonic())


class OutboundMilter(pt.MailpulseMilter):
    """pt's mailpulse-milter trusting 127.0.0.0/8 (smtp-source's mail is outbound), with spike
    detection on (defaults) or off. `made` is when its detector was made: the time of its
    "listening" log line, written just after."""

    def __init__(self, workdir: Path, name: str, binary: Path, detection: bool):
        super().__init__(workdir, name, binary)
        self.detection, self.made = detection, 0.0
        self.url = f"http://127.0.0.1:{self.metrics_port}"

    def config(self) -> str:
        trusted = f'trusted_networks = ["{sandbox.TRUSTED_CLIENT}/32"]'
        text = super().config()
        if trusted not in text:
            raise RuntimeError("pt.MailpulseMilter.config() has no trusted_networks line "
                               "to replace")
        return (text.replace(trusted, f'trusted_networks = ["{OUTBOUND_NETWORK}"]')
                + f"spike_detection = {'true' if self.detection else 'false'}\n")

    def start(self) -> "OutboundMilter":
        super().start()
        sandbox.poll(lambda: "listening on" in self.stderr_path.read_text(errors="replace"), 10,
                     f"{self.dir.name}'s listening line")
        self.made = mtime_monotonic(self.stderr_path)
        return self

    def metric(self, name: str, **labels: str) -> float | None:
        """A metric's sum over the matching series; None when there is no such series."""
        status, body = http_get(self.url + "/metrics")
        found = {k: v for k, v in sandbox.parse_metrics(body.decode()).items()
                 if k[0] == name and set(labels.items()) <= k[1]}
        return sum(found.values()) if found else None


class SpikeBench(pt.Bench):
    """pt.Bench with the two outbound milters; run() adds the checks of the module docstring
    and notes the quiet wait before each run."""

    def __init__(self, workdir: Path, build: Path, binary: Path):
        milters = {"spikes-off": OutboundMilter(workdir, "spikes-off", binary, False),
                   "spikes-on": OutboundMilter(workdir, "spikes-on", binary, True)}
        super().__init__(workdir, build, milters)
        self.ledger: dict | None = None  # spikes-on's total key after its last run
        self.checks: list = []  # (sessions, messages, counted, spiked) of each spikes-on run
        self.attempts = 0
        self.delivered_at = 0.0

    def _wait_for_delivery(self, *args) -> None:
        super()._wait_for_delivery(*args)
        self.delivered_at = time.monotonic()  # run start = this - RunResult.seconds

    def detector(self, last: float | None) -> dict:
        """spikes-on's total key now, in messages: `short`, its short-window count as of the
        last message (at `last`), and `long`, the baseline's forward-decayed count (landmark:
        the detector's start) — both constant between messages."""
        m = self.milters["spikes-on"]
        t0 = time.monotonic()
        status, body = http_get(m.url + "/top")
        t = (t0 + time.monotonic()) / 2
        if status != 200:
            raise RuntimeError(f"spikes-on: GET /top answered {status}")
        total, age = json.loads(body)["total"], t - m.made
        warmth = max(1 - math.exp(-age / BASELINE_S), SHORT_S / BASELINE_S)  # as the detector's
        short = total["messages_per_minute"] * SHORT_S / 60
        return {"last": last, "spiking": total["spiking"],
                "short": short * math.exp((t - last) / SHORT_S) if last is not None else short,
                "long": (total["baseline_messages_per_minute"] / 60 * BASELINE_S * warmth
                         * math.exp(age / BASELINE_S)),
                "spikes": m.metric("mailpulse_milter_outbound_spikes_total", key_kind="total")}

    def run(self, variant: str, sessions: int, messages: int, timeout: float = 900,
            quiet: tuple = (1.0, 0), side=None) -> pt.RunResult:
        self.attempts += 1
        t = time.monotonic()
        busy = pt.wait_for_quiet(*quiet)
        waited = time.monotonic() - t
        problems = []
        off = self.milters["spikes-off"]
        status, _ = http_get(off.url + "/top")
        if status != 404 or off.metric("mailpulse_milter_outbound_keys_tracked") is not None:
            problems.append(f"spikes-off has a detector: GET /top answered {status}")
        before = self.detector(self.ledger["last"] if self.ledger else None)
        if self.ledger and any(abs(before[k] - self.ledger[k]) > 1e-3 * self.ledger[k] + 0.5
                               for k in ("short", "long")):
            problems.append(f"spikes-on's detector counted between its runs: {self.ledger} "
                            f"then {before}")
        outbound = {n: m.metric("mailpulse_milter_messages_total", direction="outbound") or 0
                    for n, m in self.milters.items()}
        result = super().run(variant, sessions, messages, timeout, side=side)
        result.quiet_before, result.waited = busy, waited
        for name, m in self.milters.items():
            got = (m.metric("mailpulse_milter_messages_total", direction="outbound") or 0
                   ) - outbound[name]
            if got != (messages if name == variant else 0):
                problems.append(f"{name}: {got:g} outbound messages counted during a {variant} "
                                f"run of {messages}")
        if variant == "spikes-on":
            problems += self.check_detector(before, sessions, messages,
                                            self.delivered_at - result.seconds)
        if problems:
            raise RuntimeError(f"{variant} run failed the spike checks:\n  "
                               + "\n  ".join(problems))
        return result

    def check_detector(self, before: dict, sessions: int, messages: int, start: float) -> list:
        """Whether spikes-on's detector counted the run's `messages`, from its total key
        before and after the run (detector()); the run's first message came just after
        `start`, its last at the milter's last log line."""
        m = self.milters["spikes-on"]
        last = mtime_monotonic(m.stderr_path)
        after = self.detector(last)
        self.ledger = after
        spiked = before["spiking"] or after["spiking"] or after["spikes"] > before["spikes"]
        prev = before["last"]
        if spiked:  # the baseline did not learn: only bounds on the short count (docstring)
            counted = after["short"] - (before["short"] * math.exp(-(last - prev) / SHORT_S)
                                        if prev is not None else 0)
            low = messages * math.exp(-(last - start) / SHORT_S)
            ok = low * (1 - TOLERANCE) - 3 <= counted <= messages * (1 + TOLERANCE) + 3
        else:
            # The first message moved what had decayed since `prev` into the baseline, weighed
            # as of min(then, prev + one short window); the rest moved during the run.
            leak, moved_at = 0.0, start
            if prev is not None:
                leak = before["short"] * (1 - math.exp(-(start - prev) / SHORT_S))
                moved_at = min(start, prev + SHORT_S)

            def weight(at: float) -> float:
                return math.exp((at - m.made) / BASELINE_S)
            moved = leak + (after["long"] - before["long"] - leak * weight(moved_at)) / weight(
                (start + last) / 2)
            counted = after["short"] - before["short"] + moved
            ok = abs(counted - messages) <= max(3, TOLERANCE * messages)
        self.checks.append((sessions, messages, counted, spiked))
        print(f"  spikes-on's detector counted {counted:.1f} of {messages} messages"
              + (" (during a spike: bounds only)" if spiked else ""), file=sys.stderr)
        if ok:
            return []
        return [f"spikes-on's detector counted {counted:.1f} of the run's {messages} messages "
                f"({'during a spike: bounds only' if spiked else 'no spike'}); before {before},"
                f" after {after}"]


# --- report ---------------------------------------------------------------------------------

def round_order(rnd: int) -> tuple:
    """Round rnd's variants: VARIANTS, reversed in odd rounds."""
    return VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]


def per_round(rounds: list, a: str, b: str) -> list:
    """a's rate / b's rate, round by round."""
    return [r[a].rate / r[b].rate for r in rounds]


def spread(values: list) -> str:
    """Median, range and, with several values, about two standard errors of the median."""
    text = f"median {pt.median(values):.3f}, range {min(values):.3f}–{max(values):.3f}"
    if len(values) > 1:
        text += (f", ±{2 * 1.25 * statistics.stdev(values) / len(values) ** 0.5:.3f} "
                 f"(two standard errors of the median)")
    return text


def table(summaries: dict) -> str:
    base, off = summaries["no-milter"], summaries["spikes-off"]
    rows = ["| variant | msgs/s (median) | runs | ratio to no-milter | ratio to spikes-off | "
            "CPU-bound ratio to spikes-off | milter CPU µs/msg | Postfix CPU µs/msg | "
            "benchmark CPU µs/msg | ms per message, 1 session | CPU busy: benchmark + other |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for v, s in summaries.items():
        rows.append(f"| {v} | {s.rate:.0f} | {', '.join(f'{r.rate:.0f}' for r in s.runs)} | "
                    f"{s.rate / base.rate:.3f} | {s.rate / off.rate:.3f} | "
                    f"{s.cpu_bound_rate / off.cpu_bound_rate:.3f} | "
                    f"{pt.fmt(s.cpu_us('milter_ticks'))} | {pt.fmt(s.cpu_us('postfix_ticks'))} | "
                    f"{s.bench_us:.0f} | {pt.fmt(s.single_ms, '.2f')} | "
                    f"{s.bench_share:.0%} + {s.others:.0%} |")
    return "\n".join(rows)


def ratio_lines(rounds: list) -> str:
    cpu = lambda r: r.per_msg_us(r.milter_ticks)  # noqa: E731
    diffs = [cpu(r["spikes-on"]) - cpu(r["spikes-off"]) for r in rounds]
    on_off = per_round(rounds, "spikes-on", "spikes-off")
    off_none = per_round(rounds, "spikes-off", "no-milter")
    return "\n".join([
        f"- spikes-on / spikes-off: {', '.join(f'{x:.3f}' for x in on_off)}; {spread(on_off)}",
        f"- spikes-off / no-milter: {', '.join(f'{x:.3f}' for x in off_none)}; "
        f"{spread(off_none)}",
        f"- milter CPU, spikes-on − spikes-off: {', '.join(f'{d:+.0f}' for d in diffs)} µs/msg; "
        f"median {pt.median(diffs):+.0f} µs"])


def machine_note(bench: SpikeBench, runs: list, args) -> str:
    waited = [r.waited for r in runs]
    return (f"Before its runs the machine was {pt.median([r.quiet_before for r in runs]):.0%} busy "
            f"(median; at most {max(r.quiet_before for r in runs):.0%}) with the benchmark idle; "
            f"checking it and waiting for it to be under {args.quiet_threshold:.0%} took "
            f"{sum(waited):.0f} s in all (at most {max(waited):.0f} s before one run; the "
            f"wait's limit {args.quiet_wait:g} s); {bench.attempts - len(runs)} of "
            f"{bench.attempts} runs "
            f"were not kept, other work having taken more than "
            f"{args.max_other_load:.0%} of the machine; in the runs kept other work took "
            f"{pt.median([r.other_share for r in runs]):.0%} (median; at most "
            f"{max(r.other_share for r in runs):.0%}).")


def detector_note(bench: SpikeBench) -> str:
    clean = [(n, c) for _, n, c, spiked in bench.checks if not spiked]
    spiked = sum(1 for *_, s in bench.checks if s)
    worst = max((abs(c - n) / n for n, c in clean), default=0)
    return (f"spikes-on's detector counted every run's messages: in the {len(clean)} runs "
            f"(warm-up included) without a spike of the total key the count read from /top "
            f"matched the run's within {worst:.2%} (the check allows {TOLERANCE:.0%}); "
            f"{spiked} run(s) went on during a spike of the total key (the benchmark's own "
            f"flood, judged against a baseline that includes the idle time between runs), "
            f"checked by bounds only.")


def reading(summaries: dict, rounds: list) -> str:
    off, on = summaries["spikes-off"], summaries["spikes-on"]
    on_off = per_round(rounds, "spikes-on", "spikes-off")
    predicted = off.bench_us / (off.bench_us + DETECTOR_US)
    lo, hi, mid = min(on_off), max(on_off), pt.median(on_off)
    error = (2 * 1.25 * statistics.stdev(on_off) / len(on_off) ** 0.5 if len(on_off) > 1
             else math.inf)
    if abs(mid - 1) <= error:
        verdict = (f"the median ratio {mid:.3f} is within its uncertainty (±{error:.3f}) of "
                   f"1: no difference between on and off shows above the noise, and one the "
                   f"size predicted is far below what this run can resolve")
    else:
        verdict = (f"the median ratio {mid:.3f} is {abs(mid - 1) / error:.1f} times its "
                   f"uncertainty (±{error:.3f}) from 1, much more than the detector's own "
                   f"cost predicts: look for another cause (drift, the two processes) before "
                   f"blaming the detector")
    cpu_runs = [r.per_msg_us(r.milter_ticks) for s in (off, on) for r in s.runs]
    return (f"The detector costs {DETECTOR_US:g} µs per message in spike_bench (section \"The "
            f"outbound spike detector\"); against spikes-off's {off.bench_us:.0f} µs of "
            f"benchmark CPU per message that predicts a ratio of {predicted:.4f}, with the "
            f"machine CPU-bound. The rounds' on/off ratios spread from {lo:.3f} to {hi:.3f}; "
            f"{verdict}. The milter's CPU per message (median on "
            f"{pt.fmt(on.cpu_us('milter_ticks'))}, off {pt.fmt(off.cpu_us('milter_ticks'))} µs) "
            f"ranges over {max(cpu_runs) - min(cpu_runs):.0f} µs between runs, against the "
            f"{DETECTOR_US:g} µs looked for; /proc counts it in ticks of "
            f"{1000 / pt.CLK_TCK:g} ms, {1e6 / pt.CLK_TCK / off.runs[0].messages:.0f} µs per "
            f"message over a run.")


def write_doc(path: Path, args, bench: SpikeBench, summaries: dict, rounds: list,
              runs: list, started: datetime.datetime) -> None:
    info = pt.machine_info()
    built = datetime.datetime.fromtimestamp(args.milter.stat().st_mtime, datetime.timezone.utc)
    doc = f"""## Outbound spike detection on vs off on the mail path

<!-- Written by tests/bench/spike_throughput.py --write-doc; rerun it rather than edit. -->

What outbound spike detection costs on the mail path (issue 5): Postfix throughput with
mailpulse-milter and `milter.spike_detection` off, on (every `milter.spike_*` key at its
default), and without a milter, the mail outbound for the milter (from its
`milter.trusted_networks`) so that the detector counts every message.

### How it was measured

- Date: {started:%Y-%m-%d %H:%M} UTC
- Machine: {info['nproc']} CPUs, {info['model']} ({info['mhz']} MHz), Linux {info['kernel']}
- Postfix {info['postfix']}, libmilter {info['libmilter']}, mailpulse built
  {info['build_type']}; mailpulse-milter `{args.milter}` built {built:%Y-%m-%d %H:%M} UTC
- Command (as root, from the repository root):

      {pt.command_line()}

- The method of "mailpulse-milter on the mail path" above (postfix_throughput.py's machinery):
  one sandboxed Postfix with one smtpd listener per variant (`-o smtpd_milters=...`),
  `milter_default_action = accept`, relaying to an smtp-sink that writes nothing; each run
  timed from the start of smtp-source until every message left the queue;
  `smtp-source -s {args.sessions} -m {args.messages} -l {pt.PAYLOAD}` (one message per
  connection), {len(rounds)} round(s) of no-milter, spikes-off, spikes-on and the same in
  reverse in odd rounds (so a drift within a round weighs on every pair alike), after a
  warm-up of {args.warmup} messages a variant; then {args.single_rounds} round(s) of
  `smtp-source -s 1 -m {args.single_messages}` for the time per message in one session. The
  median run of a variant is reported.
- Both milters trust `{OUTBOUND_NETWORK}` (`milter.trusted_networks`), so smtp-source's mail
  (from 127.0.0.1) is outbound and spikes-on's detector sees all of it; Postfix relays it as
  in the benchmark above (the sink's domain is a relay domain). Both log a line per message
  (`level = "info"`), as there.
- Every run is verified as postfix_throughput.py verifies its runs (all delivered, nothing
  deferred, bounced or rejected, no milter warning, the serving milter counted every message
  and read every body, the other nothing), and further: the serving milter counted every
  message as outbound (`mailpulse_milter_messages_total{{direction="outbound"}}`), spikes-off
  has no detector (`GET /top` answers 404, no `mailpulse_milter_outbound_*` metric), and
  spikes-on's detector counted the run's messages, read from its total key in `GET /top`:
  the short-window count as of the run's last message (dated by the milter's log line per
  message) plus what moved into the baseline, weighed back, must match the run's count within
  {TOLERANCE:.0%}; nothing may be counted between its runs. During a spike of the total key
  the baseline does not learn, and such a run is checked by bounds only.
- CPU per message (medians): the serving milter process (/proc/PID/stat), Postfix (master and
  its daemons), and the benchmark in all. "CPU-bound ratio" is {info['nproc']} CPUs ÷ the
  benchmark's CPU per message, against spikes-off: a cross-check that other load on the
  machine disturbs less than the measured rates.
- Shared machine: before each run the script waited up to {args.quiet_wait:g} s for it to be
  less than {args.quiet_threshold:.0%} busy, and ran a run again (up to {args.retries} time(s),
  keeping the quietest) when other work took more than {args.max_other_load:.0%} of it; no
  round started after {args.budget:g} minutes ({len(rounds)} of {args.rounds} rounds ran).

### Throughput, {args.sessions} sessions, {args.messages} messages per run

{table(summaries)}

Round by round (each ratio from the two variants' runs in the same round):

{ratio_lines(rounds)}

{machine_note(bench, runs, args)}

{detector_note(bench)}

### Reading

{reading(summaries, rounds)}
"""
    doc_sections.write_section(path, DOC_SECTION, doc)
    print(f"wrote section {DOC_SECTION} of {path}", file=sys.stderr)


# --- main -----------------------------------------------------------------------------------

def parse_args(argv: list | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    pt.add_load_options(p)
    p.add_argument("--single-messages", type=int, default=300,
                   help="messages per single-session run (default 300)")
    p.add_argument("--single-rounds", type=int, default=4,
                   help="single-session rounds (default 4)")
    p.add_argument("--milter", type=Path, help="the mailpulse-milter binary "
                   "(default $MAILPULSE_BUILD_DIR/milter/mailpulse-milter)")
    p.add_argument("--budget", type=float, default=22,
                   help="minutes after which no further round starts (default 22)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 200 messages, 4 sessions, 2 rounds, 1 single round")
    p.add_argument("--write-doc", nargs="?", const=DOC_PATH, type=Path, metavar="PATH",
                   help=f"write its section of the Markdown report at PATH (default {DOC_PATH})")
    pt.add_quiet_options(p)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.set_defaults(rounds=12, messages=5000, quiet_wait=20, retries=1)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.messages, args.sessions, args.warmup = 2, 200, 4, 20
        args.single_rounds, args.single_messages, args.quiet_wait, args.retries = 1, 30, 0, 0
    args.milter = (args.milter or pt.build_dir() / "milter" / "mailpulse-milter").resolve()
    return args


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    refused = pt.prepare_to_run()
    if refused is not None:
        return refused
    started = datetime.datetime.now(datetime.timezone.utc)
    deadline = time.monotonic() + args.budget * 60
    workdir = sandbox.make_workdir("spikebench")
    bench = SpikeBench(workdir, pt.build_dir(), args.milter)
    ok = False
    try:
        print(f"work dir {workdir}; build dir {pt.build_dir()}; milter {args.milter}",
              file=sys.stderr, flush=True)
        bench.start()
        for variant in VARIANTS:  # caches, process pools, and a first functional check
            bench.run(variant, min(args.sessions, 4), args.warmup)
        bench.attempts = 0  # from here on, the measured runs' attempts (pt.measure)
        rounds = []
        for rnd in range(args.rounds):  # pairs of rounds: each order as often as the other
            if rnd % 2 == 0 and rnd and time.monotonic() > deadline - 60:
                print(f"budget spent: {rnd} of {args.rounds} rounds", file=sys.stderr)
                break
            rounds.append({v: pt.measure(bench, args, f"round {rnd + 1}", v, args.sessions,
                                         args.messages) for v in round_order(rnd)})
        singles = []
        for rnd in range(args.single_rounds):
            singles += [pt.measure(bench, args, f"single {rnd + 1}", v, 1, args.single_messages)
                        for v in round_order(rnd)]
        runs = [r for rd in rounds for r in rd.values()]
        summaries = pt.summarize(runs, VARIANTS)
        for v, s in summaries.items():
            s.single_ms = pt.median([1000 / r.rate for r in singles if r.variant == v])
        print(f"## Throughput, {args.sessions} sessions, {args.messages} messages per run\n")
        print(table(summaries) + "\n\n" + ratio_lines(rounds) + "\n")
        print(machine_note(bench, runs + singles, args) + "\n\n" + detector_note(bench) + "\n")
        print("## Reading\n\n" + reading(summaries, rounds))
        if args.write_doc:
            write_doc(args.write_doc, args, bench, summaries, rounds, runs + singles, started)
        ok = True
        return 0
    finally:
        bench.stop()
        pt.finish_workdir(workdir, ok, args.keep)


if __name__ == "__main__":
    sys.exit(main())
