"""What a fleet run leaves behind: a JSON summary, a CSV timeline and (with matplotlib) a PNG.

The same files come from a real-network run and from a simulation, so a
server team compares a replay against their server with the simulator's
prediction directly. The plot has three panels over time: registrations per
second, devices per state, and the p50/p99 Register and Update round trips.
matplotlib is the optional ``plot`` extra; without it the PNG is skipped and
the run says so.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiolwm2m.fleet.stats import Category

__all__ = ["PlotUnavailable", "plot_timeline", "status_line", "write_csv", "write_summary"]


class PlotUnavailable(Exception):
    """matplotlib is not installed (``pip install 'aiolwm2m[plot]'``)."""


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        if not rows:
            return
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def status_line(row: dict[str, Any], errors: dict[str, int], total: int) -> str:
    """One line: states, rates, errors by code, round trips (what the live status shows)."""

    def ms(key: str) -> str:
        value = row.get(key, "")
        return "-" if value == "" else f"{value:.0f}"

    states = " ".join(
        f"{c.label.replace('_', '-')} {row[c.label]}" for c in Category if c is not Category.WAITING
    )
    worst = ", ".join(f"{code} {n}" for code, n in sorted(errors.items(), key=lambda e: -e[1])[:3])
    return (
        f"t={row['t']:.0f}s {states} of {total} | reg/s {row['registrations_per_s']:.0f} "
        f"upd/s {row['updates_per_s']:.0f} | Register p50/p99 {ms('register_p50_ms')}/"
        f"{ms('register_p99_ms')} ms Update {ms('update_p50_ms')}/{ms('update_p99_ms')} ms"
        + (f" | errors: {worst}" if worst else "")
    )


def plot_timeline(
    path: Path, rows: Sequence[dict[str, Any]], title: str, outages: Sequence[tuple[float, float]]
) -> None:
    """The three-panel PNG; raises :class:`PlotUnavailable` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(str(exc)) from exc
    t = [row["t"] for row in rows]
    fig, (rate_ax, state_ax, rtt_ax) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    rate_ax.plot(t, [row["registrations_per_s"] for row in rows], label="registrations/s")
    rate_ax.plot(t, [row["updates_per_s"] for row in rows], label="updates/s", alpha=0.7)
    rate_ax.set_ylabel("per second")
    rate_ax.legend(loc="upper right")
    for category in Category:
        state_ax.plot(t, [row[category.label] for row in rows], label=category.label)
    state_ax.set_ylabel("devices")
    state_ax.legend(loc="upper right")
    for key, label in (
        ("register_p50_ms", "Register p50"),
        ("register_p99_ms", "Register p99"),
        ("update_p50_ms", "Update p50"),
        ("update_p99_ms", "Update p99"),
    ):
        points = [(row["t"], row[key]) for row in rows if row[key] != ""]
        if points:
            rtt_ax.plot(*zip(*points, strict=True), label=label, marker=".", linestyle="")
    rtt_ax.set_ylabel("round trip (ms)")
    rtt_ax.set_yscale("log")
    rtt_ax.set_xlabel("seconds since start")
    if rtt_ax.has_data():
        rtt_ax.legend(loc="upper right")
    for ax in (rate_ax, state_ax, rtt_ax):
        for start, end in outages:
            ax.axvspan(start, end, color="red", alpha=0.1)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
