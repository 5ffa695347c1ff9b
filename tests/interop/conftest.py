"""Interop tests against third-party peers: marker, per-test logs and a run/skip summary.

Every test here carries the ``interop`` marker. ``make test`` prints how many of them
ran and how many skipped (and why), so a machine that could not install the peers
shows up in the output instead of passing silently.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from interop.peers import libcoap_version, node_lib_version

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.interop)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for outcome in ("passed", "failed", "skipped", "error", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "tests/interop/" not in nodeid and not nodeid.startswith("interop/"):
                continue
            if outcome == "skipped" or report.when == "call" or outcome == "error":
                counts[outcome] += 1
            if outcome == "skipped" and isinstance(report.longrepr, tuple):
                reasons[str(report.longrepr[2]).removeprefix("Skipped: ")] += 1
    if not counts:
        return
    ran = counts["passed"] + counts["failed"] + counts["xfailed"] + counts["xpassed"]
    terminalreporter.write_sep("=", "interop peers")
    terminalreporter.write_line(
        f"libcoap {libcoap_version() or 'missing'}, "
        f"lwm2m-node-lib {node_lib_version() or 'missing'}: "
        f"{ran} interop tests ran ({counts['passed']} passed, {counts['failed']} failed), "
        f"{counts['skipped']} skipped, {counts['error']} errors"
    )
    for reason, n in reasons.most_common():
        terminalreporter.write_line(f"  skipped {n}: {reason}")
