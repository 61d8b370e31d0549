"""docs/performance.md is shared by several benchmarks: each owns one section between marker
comments, and its --write-doc replaces only that section, keeping the others as they are.

    <!-- BEGIN milter-throughput -->
    ...
    <!-- END milter-throughput -->

A file without the section gets it appended; a missing file is created with the common header.
Standard library only."""
from __future__ import annotations

import re
from pathlib import Path

HEADER = """\
# Performance

Benchmark figures and how they were made. Each section below is written by one benchmark's
`--write-doc`, between its BEGIN and END marker comments, and a rerun replaces only that
section: rerun the benchmark rather than edit a section by hand.

- mailpulse-milter on the mail path: `tests/bench/postfix_throughput.py`
- mailpulse-probe beside check_smtp and blackbox_exporter: `tests/bench/probe_compare.py`
- Overhead of probe handling, probe share and event socket: `tests/bench/roundtrip_overhead.py`
"""


def begin_marker(name: str) -> str:
    return f"<!-- BEGIN {name} -->"


def end_marker(name: str) -> str:
    return f"<!-- END {name} -->"


def write_section(path: Path, name: str, body: str) -> None:
    """Replaces section `name` of the Markdown file at path with body (or adds it)."""
    block = f"{begin_marker(name)}\n{body.strip()}\n{end_marker(name)}\n"
    text = path.read_text() if path.exists() else HEADER
    begins, ends = text.count(begin_marker(name)), text.count(end_marker(name))
    if (begins, ends) not in ((0, 0), (1, 1)):
        raise ValueError(f"{path}: section {name} has {begins} BEGIN and {ends} END markers; "
                         "fix the file by hand before writing it again")
    section = re.compile(rf"^{re.escape(begin_marker(name))}\n.*?^{re.escape(end_marker(name))}"
                         r"[ \t]*(?:\n|\Z)", re.S | re.M)
    if begins:
        if not section.search(text):
            raise ValueError(f"{path}: the END marker of section {name} precedes its BEGIN")
        text = section.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
