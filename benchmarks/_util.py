"""Shared timing helpers for the scripts in benchmarks/ (stdlib only).

    from _util import compare, measure, print_table
    ops = measure(lambda: work(), number=10_000, rounds=7)

``measure`` runs the callable ``number`` times per round for ``rounds``
rounds (after ``warmup`` untimed rounds) with :func:`time.perf_counter` and
returns the median rate in operations per second. ``number=None`` picks a
count so one round takes about ``round_seconds``. ``compare`` does the same for
several callables with their rounds interleaved (use it for A-vs-B ratios).
A script in benchmarks/ gets this module with ``sys.path`` holding its own
directory, which is the case when it is run as ``python benchmarks/x.py``.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence


def calibrate(fn: Callable[[], object], round_seconds: float = 0.2) -> int:
    """Calls per round so that one round takes roughly ``round_seconds``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= round_seconds / 10 or number >= 1 << 24:
            return max(1, int(number * round_seconds / max(elapsed, 1e-9)))
        number *= 10


def measure(
    fn: Callable[[], object],
    *,
    number: int | None = None,
    rounds: int = 7,
    warmup: int = 1,
    round_seconds: float = 0.2,
) -> float:
    """Median operations per second of ``fn`` over ``rounds`` rounds of ``number`` calls."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if number is None:
        number = calibrate(fn, round_seconds)
    loop = range(number)
    rates: list[float] = []
    for i in range(warmup + rounds):
        gc.collect()
        start = time.perf_counter()
        for _ in loop:
            fn()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            rates.append(number / elapsed if elapsed > 0 else float("inf"))
    return statistics.median(rates)


def compare(
    cases: dict[str, Callable[[], object]],
    *,
    number: int | None = None,
    rounds: int = 7,
    warmup: int = 1,
    round_seconds: float = 0.2,
) -> dict[str, float]:
    """Median ops/s for several callables, their rounds interleaved.

    Round r of every case runs before round r+1 of any, so a burst of load from
    another process on the machine hits all cases alike and ratios stay fair.
    A full collection runs before each round so one case's garbage is not
    collected on another case's clock (the collector stays enabled inside a round,
    as it would be in real use).
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    numbers = {name: number or calibrate(fn, round_seconds) for name, fn in cases.items()}
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(warmup + rounds):
        for name, fn in cases.items():
            loop = range(numbers[name])
            gc.collect()
            start = time.perf_counter()
            for _ in loop:
                fn()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                rates[name].append(numbers[name] / elapsed if elapsed > 0 else float("inf"))
    return {name: statistics.median(r) for name, r in rates.items()}


def fmt_rate(ops: float) -> str:
    """Human-readable ops/s: 1234567 -> '1.23 M/s'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if ops >= scale:
            return f"{ops / scale:.2f} {unit}/s"
    return f"{ops:.1f} /s"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Plain fixed-width table on stdout (first column left-aligned, others right)."""
    table = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells)

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in table[1:]:
        print(line(row))
