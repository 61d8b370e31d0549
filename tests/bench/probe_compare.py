#!/usr/bin/python3
"""STARTTLS checks side by side: mailpulse-probe, check_smtp -S and blackbox_exporter.

One self-contained Postfix (tests/integration/sandbox.py) offers STARTTLS with a self-signed
EC certificate on a loopback port. In ONE run, against that same Postfix, each tool does the
same STARTTLS check over and over — banner, EHLO, STARTTLS, TLS handshake, EHLO, QUIT — at a
few concurrency levels, one tool at a time:

  mailpulse-probe    tests/bench/probe_bench: CheckRunners on one event loop in one process,
                     one TLS context for all checks (--insecure); its CPU is the whole
                     process's, setup included (wait4)
  check_smtp         Debian's monitoring-plugins-standard, /usr/lib/nagios/plugins/check_smtp
                     -S: one process per check, CONCURRENCY of them at a time; CPU from wait4
                     of every process
  blackbox_exporter  Debian's prometheus-blackbox-exporter with a tcp-prober module speaking
                     SMTP STARTTLS (insecure_skip_verify), driven by CONCURRENCY HTTP clients
                     with keep-alive GET /probe; CPU from the exporter's /proc/PID/stat

The drivers of check_smtp and blackbox_exporter run in this script; their CPU is reported
separately ("driver"), never hidden. For each run: checks/s, the tool's CPU per check, the
driver's, Postfix's (master, its live children and the reaped ones), and the machine's busy
time split between them and other work, so the table shows whether Postfix or the tool is the
limit. Every run is verified, so no tool can fake a figure: every check succeeded by the tool's
own account (probe_bench all ok; check_smtp exit 0 and "SMTP OK"; probe_success 1 in the
exporter's answer), and Postfix's log shows, for that run, exactly one session per check:
connect, "TLS connection established", and "disconnect ... ehlo=2 starttls=1 quit=1
commands=4", with no warning, lost connection or timeout.

Then: the probe with certificate verification (the sandbox certificate as CA) at its best
concurrency; 10,000 concurrent plain sessions from one probe_bench process against smtp-sink
(-W ehlo:HOLD keeps every session open; several sinks share them, as one smtp-sink spends its
time in its linear timer list beyond a few thousand sessions), verified by the sessions
greeted at once and by the descriptors the sinks held; for scale, OpenSSL's own `s_time -new`
doing bare TLS 1.3 handshakes with the same library and certificate; and, with --profile,
where the probe's CPU goes (perf).

Run as root with Debian's python3 (stdlib only), from the repository root:
  MAILPULSE_BUILD_DIR=build /usr/bin/python3 tests/bench/probe_compare.py [--write-doc [PATH]]
  ... --quick    a smoke run (seconds): one level, 2 s per tool, 300 held sessions
Needs build/tests/bench/probe_bench, check_smtp and prometheus-blackbox-exporter
(contrib/dev/install-deps). --write-doc replaces its own section of docs/performance.md.
Every process started here is stopped by PID on the way out, whatever happens.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
import sandbox  # noqa: E402  (after the path set-up above)
import doc_sections  # noqa: E402  (tests/bench, the script's own directory)
import postfix_throughput as pt  # noqa: E402  (its /proc readings and machine facts)
import probe_drivers as drivers  # noqa: E402

TOOLS = ("mailpulse-probe", "check_smtp", "blackbox_exporter")
VERIFIED_PROBE = "mailpulse-probe, verified"  # --ca-file, at the probe's best concurrency
RESUMED_PROBE = "mailpulse-probe, tls_resume"  # --resume, at the probe's best concurrency
EXTRA_PROBES = (VERIFIED_PROBE, RESUMED_PROBE)
# At least this share of a --resume run's checks must have resumed for the run to count.
MIN_RESUMED_SHARE = 0.9
DOC_PATH = REPO_ROOT / "docs" / "performance.md"
DOC_SECTION = "probe-compare"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


# --- Postfix's log: one STARTTLS session per check ------------------------------------------

class SessionLog:
    """Counts, from an offset of Postfix's log, what each check must leave there."""
    PATTERNS = {
        "connect": re.compile(r"postfix/smtpd\[\d+\]: connect from \S+$", re.M),
        "tls": re.compile(r"postfix/smtpd\[\d+\]: \w+ TLS connection established from \S+: "
                          r"(\S+) with cipher (\S+)", re.M),
        "full": re.compile(r"postfix/smtpd\[\d+\]: disconnect from \S+ ehlo=2 starttls=1 "
                           r"quit=1 commands=4$", re.M),
        "disconnect": re.compile(r"postfix/smtpd\[\d+\]: disconnect from ", re.M),
        "trouble": re.compile(r"(?:warning|error|fatal|panic): |lost connection|timeout after"
                              r"|too many|\breject", re.M),
    }

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, ""
        self.counts = collections.Counter()
        self.ciphers = collections.Counter()
        self.examples: list = []

    def skip_to_end(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self.partial, self.examples = "", []
        self.counts, self.ciphers = collections.Counter(), collections.Counter()

    def update(self) -> collections.Counter:
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            data = f.read()
            self.offset = f.tell()
        text, _, self.partial = (self.partial + data).rpartition("\n")
        for key, regex in self.PATTERNS.items():
            found = regex.findall(text)
            self.counts[key] += len(found)
            if key == "tls":
                self.ciphers.update(f"{version} {cipher}" for version, cipher in found)
            if key == "trouble" and found and len(self.examples) < 5:
                self.examples += [line for line in text.splitlines() if regex.search(line)][:5]
        return self.counts

    def verify(self, checks: int, timeout: float = 30) -> list:
        """Waits for the run's last sessions to be logged; returns the problems found."""
        with contextlib.suppress(TimeoutError):
            sandbox.poll(lambda: self.update()["disconnect"] >= checks, timeout,
                         f"{checks} sessions in Postfix's log", interval=0.1)
        counts = self.update()
        problems = [f"Postfix log: {counts[key]} {key}, expected {checks}"
                    for key in ("connect", "tls", "full", "disconnect") if counts[key] != checks]
        if counts["trouble"]:
            problems.append(f"Postfix log: {counts['trouble']} trouble lines: {self.examples}")
        return problems


# --- one measured run -----------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    tool: str
    concurrency: int
    outcome: drivers.Outcome
    seconds: float
    postfix_ticks: int
    driver_cpu: float  # this script's own CPU during the run (the HTTP or process driver)
    busy_ticks: int
    total_ticks: int
    problems: list
    ciphers: dict

    @property
    def checks(self) -> int:
        return self.outcome.checks

    @property
    def rate(self) -> float:
        return self.checks / self.seconds

    def per_check_us(self, seconds: float) -> float:
        return seconds / max(1, self.checks) * 1e6

    @property
    def tool_us(self) -> float:
        return self.per_check_us(self.outcome.cpu_seconds)

    @property
    def driver_us(self) -> float:
        return self.per_check_us(self.driver_cpu)

    @property
    def postfix_us(self) -> float:
        return self.per_check_us(self.postfix_ticks / CLK_TCK)

    def share(self, seconds: float) -> float:
        """Fraction of the machine (all CPUs) that `seconds` of CPU took during the run."""
        return seconds * CLK_TCK / max(1, self.total_ticks)

    @property
    def other_share(self) -> float:
        ours = (self.outcome.cpu_seconds + self.driver_cpu) * CLK_TCK + self.postfix_ticks
        return max(0, self.busy_ticks - ours) / max(1, self.total_ticks)

    @property
    def cpu_bound_rate(self) -> float:
        """Checks/s the CPU per check of tool, driver and Postfix allows on all CPUs."""
        return NCPU * 1e6 / max(1.0, self.tool_us + self.driver_us + self.postfix_us)

    @property
    def verified(self) -> bool:
        return not self.problems


class Bench:
    """Postfix and the blackbox exporter, and one verified, measured run at a time."""

    def __init__(self, workdir: Path, build: Path, max_concurrency: int):
        self.workdir, self.build = workdir, build
        self.sink = sandbox.SmtpSink(workdir)
        self.postfix = sandbox.PostfixInstance(
            workdir, "bench", sink_port=self.sink.port,
            # Room for an smtpd per session, and no per-client limit: every tool is 127.0.0.1.
            default_process_limit=str(max_concurrency + 50),
            smtpd_client_connection_count_limit="0", smtpd_client_connection_rate_limit="0")
        self.blackbox = drivers.BlackboxExporter(workdir)
        self.log = SessionLog(self.postfix.maillog)
        self.stack = contextlib.ExitStack()

    def start(self) -> "Bench":
        for part in (self.sink, self.postfix, self.blackbox):
            self.stack.enter_context(part)
        return self

    def stop(self) -> None:
        self.stack.close()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.postfix.port}"

    @property
    def cert(self) -> Path:
        return self.workdir / f"tls-{self.postfix.hostname}.crt"

    def drive(self, tool: str, concurrency: int, duration: float) -> drivers.Outcome:
        if tool in ("mailpulse-probe", *EXTRA_PROBES):
            tls = (["--ca-file", str(self.cert), "--tls-name", self.postfix.hostname]
                   if tool == VERIFIED_PROBE else ["--insecure"])
            if tool == RESUMED_PROBE:
                tls.append("--resume")
            return drivers.run_probe_bench(
                self.build, self.workdir, ["--tls", "starttls", *tls, "--duration", str(duration),
                                           "--concurrency", str(concurrency), self.target])
        if tool == "check_smtp":
            return drivers.run_check_smtp(self.workdir, self.postfix.port, concurrency, duration)
        return drivers.run_blackbox(self.blackbox, self.target, concurrency, duration)

    def run(self, tool: str, concurrency: int, duration: float, quiet: tuple) -> Run:
        pt.wait_for_quiet(*quiet)
        self.log.skip_to_end()
        postfix_before = pt.postfix_cpu_ticks(self.postfix.master_pid)
        sys_before, self_before = pt.system_ticks(), pt.self_cpu_seconds()
        start = time.monotonic()
        outcome = self.drive(tool, concurrency, duration)
        seconds = time.monotonic() - start
        sys_after, self_after = pt.system_ticks(), pt.self_cpu_seconds()
        postfix_ticks = pt.postfix_cpu_ticks(self.postfix.master_pid) - postfix_before
        problems = list(outcome.problems)
        if outcome.ok != outcome.checks or outcome.checks == 0:
            problems.append(f"{outcome.checks - outcome.ok} of {outcome.checks} checks failed: "
                            f"{dict(outcome.failures)}")
        problems += self.log.verify(outcome.checks)
        if tool == RESUMED_PROBE:
            resumed = outcome.report.get("tls_resumed", 0)
            if resumed < MIN_RESUMED_SHARE * max(1, outcome.checks):
                problems.append(f"only {resumed} of {outcome.checks} checks resumed a session")
        if not sandbox.pid_alive(self.postfix.master_pid):
            problems.append("Postfix's master died")
        if self.blackbox.proc.poll() is not None:
            problems.append(f"blackbox_exporter exited {self.blackbox.proc.returncode}")
        return Run(tool, concurrency, outcome, seconds, postfix_ticks, self_after - self_before,
                   sys_after[0] - sys_before[0], sys_after[1] - sys_before[1], problems,
                   dict(self.log.ciphers))


def measure(bench: Bench, args, tool: str, concurrency: int) -> Run:
    """One run, again when other work on the machine disturbed it; the quietest counts."""
    best = None
    for _ in range(args.retries + 1):
        r = bench.run(tool, concurrency, args.duration,
                      quiet=(args.quiet_threshold, args.quiet_wait))
        print(f"  {tool:26} c={concurrency:<4} {r.rate:7.1f} checks/s  tool {r.tool_us:7.0f} µs"
              f"  driver {r.driver_us:5.0f} µs  Postfix {r.postfix_us:6.0f} µs per check, other"
              f" load {r.other_share:.0%}{'' if r.verified else '  NOT VERIFIED: '}"
              f"{'; '.join(r.problems)[:600]}", file=sys.stderr, flush=True)
        if best is None or (r.verified, -r.other_share) > (best.verified, -best.other_share):
            best = r
        if r.verified and r.other_share <= args.max_other_load:
            break
    return best


def best_runs(runs: list) -> dict:
    """Per tool, its verified run with the highest rate (its saturating concurrency)."""
    best = {}
    for r in runs:
        if r.verified and (r.tool not in best or r.rate > best[r.tool].rate):
            best[r.tool] = r
    return best


# --- reporting ------------------------------------------------------------------------------

def fmt_us(us: float) -> str:
    """CPU per check: µs below 10 ms, else ms with one decimal."""
    return f"{us:.0f} µs" if us < 10000 else f"{us / 1000:.1f} ms"


def limit_note(r: Run) -> str:
    """Which of tool and Postfix spent more CPU per check (the driver counts with the tool),
    and its share of the two."""
    tool, postfix = r.tool_us + r.driver_us, r.postfix_us
    who = "Postfix" if postfix >= tool else "the tool"
    return f"{who} ({max(tool, postfix) / max(1.0, tool + postfix):.0%})"


def busy_split(r: Run) -> str:
    return (f"{r.share(r.outcome.cpu_seconds):.0%} + {r.share(r.postfix_ticks / CLK_TCK):.0%} + "
            f"{r.share(r.driver_cpu):.0%} + {r.other_share:.0%}")


def compare_table(best: dict) -> str:
    base = best.get("mailpulse-probe")
    rows = ["| tool | concurrency | checks/s | vs probe | tool CPU per check | vs probe | "
            "driver CPU per check | Postfix CPU per check | CPU-bound checks/s | "
            "more CPU per check | machine busy: tool + Postfix + driver + other | "
            "verified sessions |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for tool in (*TOOLS, *EXTRA_PROBES):
        r = best.get(tool)
        if r is None:
            rows.append(f"| {tool} | – | no verified run | | | | | | | | | |")
            continue
        rate_ratio = f"{r.rate / base.rate:.2f}×" if base else "–"
        cpu_ratio = f"{r.tool_us / base.tool_us:.1f}×" if base else "–"
        rows.append(
            f"| {tool} | {r.concurrency} | {r.rate:.0f} | {rate_ratio} | {fmt_us(r.tool_us)} | "
            f"{cpu_ratio} | {fmt_us(r.driver_us) if r.driver_cpu else '–'} | "
            f"{fmt_us(r.postfix_us)} | {r.cpu_bound_rate:.0f} | {limit_note(r)} | "
            f"{busy_split(r)} | {r.checks} |")
    return "\n".join(rows)


def sweep_table(runs: list) -> str:
    rows = ["| tool | concurrency | checks | checks/s | tool CPU per check | driver CPU per check "
            "| Postfix CPU per check | machine busy | of which other work | verified |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in sorted(runs, key=lambda r: ((*TOOLS, *EXTRA_PROBES).index(r.tool), r.concurrency)):
        busy = r.busy_ticks / max(1, r.total_ticks)
        rows.append(f"| {r.tool} | {r.concurrency} | {r.checks} | {r.rate:.0f} | "
                    f"{fmt_us(r.tool_us)} | {fmt_us(r.driver_us) if r.driver_cpu else '–'} | "
                    f"{fmt_us(r.postfix_us)} | {busy:.0%} | {r.other_share:.0%} | "
                    f"{'yes' if r.verified else 'NO: ' + '; '.join(r.problems)[:300]} |")
    return "\n".join(rows)


def held_table(h: drivers.HeldSessions) -> str:
    r = h.report
    mib = r["peak_rss_kib"] / 1024
    per_session = (r["peak_rss_kib"] - r["rss_before_kib"]) / max(1, h.sessions)
    return "\n".join([
        "| sessions | succeeded | peak in flight | peak greeted at once | peak held by the sinks "
        "| peak RSS (VmHWM) | RSS before | per session | CPU per check | wall time |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {h.sessions} | {r['ok']} | {r['peak_in_flight']} | {r['peak_greeted_sessions']} | "
        f"{h.sink_peak} | {mib:.1f} MiB | {r['rss_before_kib'] / 1024:.1f} MiB | "
        f"{per_session:.1f} KiB | {fmt_us(h.outcome.cpu_seconds / max(1, r['checks']) * 1e6)} | "
        f"{r['wall_seconds']:.1f} s |"])


def held_problems(h: drivers.HeldSessions) -> list:
    r = h.report
    problems = list(h.outcome.problems)
    if r["ok"] != h.sessions or r["checks"] != h.sessions:
        problems.append(f"{r['ok']} of {h.sessions} sessions succeeded: {r['failures']}")
    if r["peak_greeted_sessions"] != h.sessions:
        problems.append(f"only {r['peak_greeted_sessions']} sessions were open at once")
    if h.sink_peak < h.sessions:
        problems.append(f"the sinks held at most {h.sink_peak} sessions at once")
    return problems


def verdicts(runs: list, best: dict, held: drivers.HeldSessions, s_time: dict,
             quick: bool) -> list:
    """(target, met, evidence) for each target of the issue; met None: not judged."""
    out = []
    probe = best.get("mailpulse-probe")
    if probe is None:
        return [("every target", False, "mailpulse-probe had no verified run")]
    levels = ", ".join(f"{r.tool_us:.0f} µs at {r.concurrency}" for r in runs
                       if r.tool == "mailpulse-probe" and r.verified)
    others = "; ".join(f"{t} {fmt_us(best[t].tool_us)}" for t in TOOLS[1:] if t in best)
    out.append(("at most 1 ms CPU per STARTTLS check", probe.tool_us <= 1000,
                f"{probe.tool_us:.0f} µs per check at its best concurrency {probe.concurrency} "
                f"(by concurrency: {levels}); OpenSSL's own s_time spent "
                f"{s_time['us_per_handshake']:.0f} µs per bare handshake with the same library. "
                f"The issue's references — blackbox about 5 ms, check_smtp about 14 ms — "
                f"measured here: {others}"))
    resumed = best.get(RESUMED_PROBE)
    if resumed is not None:
        out.append(("at most 1 ms CPU per STARTTLS check, with tls_resume (a resumed TLS 1.3 "
                    "session, a full handshake at least every tls_resume)",
                    resumed.tool_us <= 1000,
                    f"{resumed.tool_us:.0f} µs per check at concurrency {resumed.concurrency}, "
                    f"{resumed.outcome.report.get('tls_resumed', 0)} of {resumed.checks} checks "
                    f"resumed; Postfix {resumed.postfix_us:.0f} µs per check (full: "
                    f"{probe.postfix_us:.0f} µs). Not the default: by default every check makes a full "
                    f"handshake, which the first target judges"))
    loop = probe.outcome.cpu_seconds / probe.seconds
    out.append((f"checks per second limited by Postfix rather than by the probe (both sharing "
                f"this machine's {NCPU} CPUs)",
                probe.postfix_us > probe.tool_us and loop < 0.9,
                f"{probe.rate:.0f} checks/s at concurrency {probe.concurrency} with the machine "
                f"{probe.busy_ticks / max(1, probe.total_ticks):.0%} busy: Postfix "
                f"{probe.postfix_us:.0f} µs vs probe {probe.tool_us:.0f} µs CPU per check, and the "
                f"probe's one thread was busy {loop:.0%} of the run (criterion: Postfix spends "
                f"more CPU per check than the probe, and the probe's loop stays below 90% of its "
                f"core). Ceilings from the same figures: Postfix alone on all {NCPU} CPUs "
                f"{NCPU * 1e6 / probe.postfix_us:.0f} checks/s, the probe alone on its one core "
                f"{1e6 / probe.tool_us:.0f} checks/s"))
    r = held.report
    problems = held_problems(held)
    under = r["peak_rss_kib"] < 256 * 1024
    evidence = (f"{r['ok']} of {held.sessions} succeeded, {r['peak_greeted_sessions']} open at "
                f"once, peak RSS {r['peak_rss_kib'] / 1024:.1f} MiB")
    if quick or held.sessions < 10000:
        out.append((f"10,000 concurrent plain sessions under 256 MB RSS (this run had "
                    f"{held.sessions})", None, evidence))
    else:
        out.append(("10,000 concurrent plain sessions against smtp-sink in one process under "
                    "256 MB RSS", under and not problems,
                    evidence + ("" if not problems else "; " + "; ".join(problems))))
    return out


def verdict_lines(items: list) -> str:
    """met is True, False, or None for a target this run cannot judge (a quick run)."""
    words = {True: "met", False: "NOT met", None: "not judged"}
    return "\n".join(f"- **{words[met]}** — {target}: {evidence}" for target, met, evidence in items)


def profile_text(profile: dict | None) -> str:
    if profile is None:
        return "(not profiled: run with --profile, which needs perf from linux-perf)"
    dsos = ", ".join(f"{name} {p:.1f}%" for p, name in profile["dsos"])
    lines = [f"`perf record -F 999 --call-graph dwarf` of probe_bench doing {profile['checks']} "
             f"STARTTLS checks at concurrency 16 (--insecure), same Postfix. CPU by library: "
             f"{dsos}.", "", "Inclusive share of the probe's CPU passing through:", ""]
    for label, share in profile["symbols"]:
        lines.append(f"- {label}: {'not seen' if share is None else f'{share:.1f}%'}")
    return "\n".join(lines)


def package_version(name: str) -> str:
    out = sandbox.run(["dpkg-query", "-W", "-f", "${Version}", name], check=False).stdout
    return out.strip() or "not installed"


def versions() -> dict:
    info = pt.machine_info()
    info.update({
        "check_smtp": package_version("monitoring-plugins-standard"),
        "blackbox": package_version("prometheus-blackbox-exporter"),
        "openssl": sandbox.run(["openssl", "version"], check=False).stdout.strip(),
        "libssl": package_version("libssl3"), "libevent": package_version("libevent-2.1-7"),
    })
    return info


def write_doc(path: Path, args, runs: list, best: dict, held: drivers.HeldSessions,
              s_time: dict, profile: dict | None, started: datetime.datetime) -> None:
    v = versions()
    levels = ", ".join(str(c) for c in args.levels)
    probe = best.get("mailpulse-probe")
    s_time_note = (f"{s_time['us_per_handshake']:.0f} µs of CPU per full handshake "
                  f"({s_time['handshakes']} handshakes in {s_time['cpu_seconds']:.2f} s of CPU)")
    if probe:
        s_time_note += (f"; the probe's whole STARTTLS check costs {probe.tool_us:.0f} µs, "
                       f"{probe.tool_us / s_time['us_per_handshake']:.2f}× that")
    doc = f"""## mailpulse-probe beside check_smtp and blackbox_exporter

<!-- Written by tests/bench/probe_compare.py --write-doc; rerun it rather than edit. -->

What one STARTTLS check costs (banner, EHLO, STARTTLS, TLS handshake, EHLO, QUIT) and how many
checks per second each tool sustains, side by side in one run against the same local Postfix:
mailpulse-probe's check glue (CheckRunner) as the probe daemon runs it — many checks on one
event loop in one process, one TLS context for all — beside `check_smtp -S` from
monitoring-plugins and blackbox_exporter's tcp prober with an SMTP STARTTLS module.

### How it was measured

- Date: {started:%Y-%m-%d %H:%M} UTC
- Machine: {v['nproc']} CPUs, {v['model']} ({v['mhz']} MHz), Linux {v['kernel']}
- Postfix {v['postfix']}; mailpulse built {v['build_type']}, with libssl3 {v['libssl']}
  and libevent {v['libevent']}; `openssl version`: {v['openssl']}
- check_smtp from monitoring-plugins-standard {v['check_smtp']};
  prometheus-blackbox-exporter {v['blackbox']}
- Command (as root, from the repository root):

      {pt.command_line()}

- One self-contained Postfix (sandbox.py) on 127.0.0.1 offering STARTTLS with a self-signed
  prime256v1 certificate, with `smtpd_tls_loglevel = 1`, no per-client connection limit and
  `default_process_limit = {max(args.levels) + 50}`.
- Each tool ran {args.duration:g} s per run at each concurrency (checks in flight at once):
  {levels}; one tool at a time, the order rotating per level, after a warm-up run of each. A
  run is timed from its first check until its last one ended.
- mailpulse-probe: `build/tests/bench/probe_bench --tls starttls --insecure --duration S
  --concurrency C 127.0.0.1:PORT`; its CPU is the whole process's (wait4), setup included.
  "mailpulse-probe, verified" is the same with `--ca-file` (the sandbox certificate) and
  `--tls-name`, at the probe's best concurrency; "mailpulse-probe, tls_resume" the same with
  `--resume` (each check resumes the TLS 1.3 session the last finished check left, as a target
  with `tls_resume` does; at least {MIN_RESUMED_SHARE:.0%} of its checks must have resumed for
  the run to count).
- check_smtp: `{drivers.CHECK_SMTP} -H 127.0.0.1 -p PORT -S -F NAME -t {drivers.TIMEOUT}`, one
  process per check, C at a time, started with posix_spawn by this script; its CPU is every
  process's own (wait4), the driver's is this script's.
- blackbox_exporter: started with its own config file on a loopback port, a tcp module sending
  EHLO, expecting `^250-STARTTLS`, STARTTLS, `^220`, `starttls: true`, EHLO, `^250 `, QUIT, with
  `insecure_skip_verify`; C threads of this script each GET
  `/probe?module=smtp_starttls&target=127.0.0.1:PORT` over one keep-alive HTTP connection.
  Its CPU is the exporter's (/proc/PID/stat), the driver's (Python) is reported apart.
- Every run is verified: every check succeeded by the tool's own account (probe_bench: all ok;
  check_smtp: exit 0 and "SMTP OK"; the exporter: HTTP 200 with `probe_success 1`), and
  Postfix's log for the run holds exactly one session per check — `connect`, `TLS connection
  established` and `disconnect ... ehlo=2 starttls=1 quit=1 commands=4` — and no warning, lost
  connection, timeout or reject.
- Postfix's CPU: master, its live children and the ones it reaped (smtpd, tlsmgr, anvil,
  postlogd...). "Machine busy" splits the machine's busy time (/proc/stat) into the tool,
  Postfix, the driver and other work (other work on a shared machine, kernel threads).
- Before each run the script waited up to {args.quiet_wait:g} s for the machine to be less
  than {args.quiet_threshold:.0%} busy, and ran a run again (up to {args.retries} times, keeping
  the quietest) when other work took more than {args.max_other_load:.0%} of it.

### STARTTLS checks, each tool at its best concurrency

{compare_table(best)}

"CPU-bound checks/s" is {v['nproc']} CPUs ÷ (tool + driver + Postfix CPU per check): the rate the
CPU per check allows with the machine to itself. "More CPU per check" names which of the tool
(with its driver) and Postfix spent more per check, and its share of the two. Everything shares
the same {v['nproc']} CPUs, so whatever one spends the other cannot. TLS as Postfix logged it:
{"; ".join(f"{t}: " + ", ".join(f"{k} ×{n}" for k, n in best[t].ciphers.items())
           for t in (*TOOLS, *EXTRA_PROBES) if t in best)}.

### Every run

{sweep_table(runs)}

### {held.sessions:,} concurrent plain sessions in one probe process

`probe_bench --tls none --checks {held.sessions} --concurrency {held.sessions} --timeout 120`
with all checks launched at once, against {held.sinks} smtp-sink process(es) started with
`-W ehlo:{held.hold:g}`: each waits {held.hold:g} s before answering EHLO, so every session
stays open. The checks go round-robin over the sinks, because one smtp-sink spends its time
in its linear timer list once it holds a few thousand sessions.
"Peak greeted at once" is the most sessions that had their banner and had not yet ended at the
same moment, from each check's phase times; "peak held by the sinks" the most descriptors the
sinks had open beyond their idle ones, sampled every 0.25 s.

{held_table(held)}

### Where the probe's CPU goes

For scale, OpenSSL's own client: `openssl s_time -new` against `openssl s_server` with the same
certificate and library (full TLS 1.3 handshakes one after another, no SMTP, no verification)
spent {s_time_note}.

{profile_text(profile)}

### Verdict

{verdict_lines(verdicts(runs, best, held, s_time, args.quick))}
"""
    doc_sections.write_section(path, DOC_SECTION, doc)
    print(f"wrote section {DOC_SECTION} of {path}", file=sys.stderr)


# --- main -----------------------------------------------------------------------------------

def parse_args(argv: list | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--levels", type=lambda s: [int(c) for c in s.split(",")], default=[4, 16, 64],
                   help="concurrency levels, comma-separated (default 4,16,64)")
    p.add_argument("--duration", type=float, default=20,
                   help="seconds per run (default 20)")
    p.add_argument("--sessions", type=int, default=10000,
                   help="concurrent plain sessions for the held-sessions case (default 10000)")
    p.add_argument("--per-sink", type=int, default=2000,
                   help="most held sessions per smtp-sink process (default 2000)")
    p.add_argument("--hold", type=float, default=5,
                   help="seconds smtp-sink waits before answering EHLO (default 5)")
    p.add_argument("--s-time-seconds", type=float, default=5,
                   help="seconds of openssl s_time (default 5)")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                   help="profile the probe with perf (default on; off with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: concurrency 4, 2 s per tool, 300 held sessions, no waiting")
    p.add_argument("--write-doc", nargs="?", const=DOC_PATH, type=Path, metavar="PATH",
                   help=f"write its section of the Markdown report at PATH (default {DOC_PATH})")
    p.add_argument("--quiet-threshold", type=float, default=0.10,
                   help="before each run, wait until the machine is less busy than this "
                        "(default 0.10)")
    p.add_argument("--quiet-wait", type=float, default=60,
                   help="longest wait for that, in seconds (default 60; 0 = never wait)")
    p.add_argument("--max-other-load", type=float, default=0.10,
                   help="run a run again when other work took more than this fraction of the "
                        "machine (default 0.10)")
    p.add_argument("--retries", type=int, default=2, help="most extra attempts per run")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    if args.quick:
        args.levels, args.duration, args.sessions, args.hold = [4], 2, 300, 1
        args.s_time_seconds, args.profile, args.quiet_wait, args.retries = 1, False, 0, 0
    return args


def missing_tools(build: Path) -> list:
    needed = [drivers.probe_bench_binary(build), drivers.CHECK_SMTP, drivers.BLACKBOX]
    missing = [str(p) for p in needed if not p.exists()]
    return missing + [t for t in ("postfix", "smtp-sink", "openssl") if not shutil.which(t)]


def run_all(bench: Bench, args) -> tuple:
    """Warm-up, the concurrency sweep of every tool, and the verified probe at its best."""
    for tool in TOOLS:  # process pools, caches, and a first functional check of each tool
        r = bench.run(tool, args.levels[0], 0.5 if args.quick else 2, quiet=(1.0, 0))
        if not r.verified:
            raise RuntimeError(f"{tool} warm-up failed verification: {r.problems}")
    runs = []
    for i, level in enumerate(args.levels):
        for tool in TOOLS[i % len(TOOLS):] + TOOLS[:i % len(TOOLS)]:
            runs.append(measure(bench, args, tool, level))
    best = best_runs(runs)
    if "mailpulse-probe" in best:
        for extra in EXTRA_PROBES:
            runs.append(measure(bench, args, extra, best["mailpulse-probe"].concurrency))
    return runs, best_runs(runs)


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: Postfix's master and smtp-sink -u need it", file=sys.stderr)
        return 2
    build = pt.build_dir()
    if missing := missing_tools(build):
        print(f"missing: {', '.join(missing)} (build, and run contrib/dev/install-deps)",
              file=sys.stderr)
        return 2
    # SIGTERM (e.g. a test runner's timeout) unwinds like Ctrl-C, so the finally blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.datetime.now(datetime.timezone.utc)
    workdir = sandbox.make_workdir("probecmp")
    bench = Bench(workdir, build, max(args.levels))
    ok = False
    try:
        print(f"work dir {workdir}; build dir {build}", file=sys.stderr)
        bench.start()
        runs, best = run_all(bench, args)
        s_time = drivers.openssl_s_time(workdir, bench.cert, args.s_time_seconds)
        profile = (drivers.profile_probe(build, workdir, bench.target, 1500)
                   if args.profile else None)
        held = drivers.run_held_sessions(build, workdir, args.sessions, args.per_sink,
                                         args.hold)
        print("## STARTTLS checks, each tool at its best concurrency\n")
        print(compare_table(best))
        print("\n## Every run\n\n" + sweep_table(runs))
        print(f"\n## {held.sessions} concurrent plain sessions\n\n" + held_table(held))
        print(f"\nopenssl s_time -new: {s_time['us_per_handshake']:.0f} µs per handshake")
        print("\n" + profile_text(profile))
        print("\n## Verdict\n\n" + verdict_lines(verdicts(runs, best, held, s_time, args.quick)))
        if args.write_doc:
            write_doc(args.write_doc, args, runs, best, held, s_time, profile, started)
        failed = [f"{r.tool} c={r.concurrency}: {r.problems}" for r in runs if not r.verified]
        failed += held_problems(held)
        for problem in failed:
            print(f"NOT VERIFIED: {problem}", file=sys.stderr)
        ok = not failed
        return 0 if ok else 1
    finally:
        bench.stop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            sandbox.keep_workdir(workdir)
            print(f"work dir kept: {workdir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
