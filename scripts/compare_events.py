#!/usr/bin/env python3
"""Compare the client's event streams with a baseline, timing stripped.

The refactors of the engine promise "no change of behaviour": the JSONL of
``aiolwm2m demo --seed N --events jsonl`` and the text timeline of every
shipped scenario must stay the same apart from timing. This script captures
both (``--capture DIR``) and compares two captures (``--baseline DIR``),
after removing what legitimately varies between runs: event times, the
ephemeral UDP ports, and the measured seconds in the scenario verdict lines.

    scripts/compare_events.py --capture /tmp/after --baseline /work/coord/baseline

Exit status 0 when every stream matches, 1 otherwise (a unified diff is printed).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["capture", "compare", "normalise_jsonl", "normalise_text"]

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (1, 2, 3)

_PORT = re.compile(r"(127\.0\.0\.1|\.invalid|localhost):\d+")
_LEADING_TIME = re.compile(r"^\s*-?\d+\.\d+s  ")
_SECONDS = re.compile(r"\d+\.\d+ s\b")
_PROXY_COUNTS = re.compile(r"=\d+")


def normalise_jsonl(text: str) -> list[str]:
    """One line per event, without ``time`` and with ports replaced."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        event.pop("time", None)
        out.append(_PORT.sub(r"\1:PORT", json.dumps(event)))
    return out


def normalise_text(text: str) -> list[str]:
    """Timeline lines without their leading time; ports and measured seconds replaced.

    Fault-injection lines logged at the same instant come out in any order (the
    harness starts its faults concurrently): each run of them is sorted.
    """
    out: list[str] = []
    faults: list[str] = []
    for raw in text.splitlines():
        line = _PORT.sub(r"\1:PORT", _LEADING_TIME.sub("", raw)).rstrip()
        if line.startswith(("step #", "  - step #")):
            line = _SECONDS.sub("N s", line)
        if line.startswith("proxy:"):
            line = _PROXY_COUNTS.sub("=N", line)  # datagram counts follow real timing
        if line.startswith("fault "):
            faults.append(line)
            continue
        out += sorted(faults)
        faults = []
        out.append(line)
    return out + sorted(faults)


def _run(args: list[str], out: Path) -> None:
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "aiolwm2m"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    out.write_text(proc.stdout + (f"exit {proc.returncode}\n" if args[0] == "scenario" else ""))


def capture(dest: Path, only: str | None = None) -> None:
    """Run the demo for each seed and every shipped scenario, writing what the baseline has."""
    dest.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS:
        if only is None or only == f"demo-seed{seed}":
            _run(
                ["demo", "--seed", str(seed), "--events", "jsonl"], dest / f"demo-seed{seed}.jsonl"
            )
    for scenario in sorted((ROOT / "src" / "aiolwm2m" / "scenarios").glob("*.toml")):
        if only is None or only == f"scenario-{scenario.stem}":
            _run(["scenario", str(scenario)], dest / f"scenario-{scenario.stem}.txt")


def compare(baseline: Path, new: Path) -> bool:
    """Print a diff for every stream that differs; True when all match."""
    same = True
    for base in sorted([*baseline.glob("*.jsonl"), *baseline.glob("scenario-*.txt")]):
        other = new / base.name
        if not other.exists():
            continue
        norm = normalise_jsonl if base.suffix == ".jsonl" else normalise_text
        a, b = norm(base.read_text()), norm(other.read_text())
        if a != b:
            same = False
            print(f"== {base.name} differs")
            sys.stdout.writelines(
                line + "\n" for line in difflib.unified_diff(a, b, "baseline", "new", lineterm="")
            )
        else:
            print(f"== {base.name} same")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--capture", type=Path, help="run demo and scenarios into this folder")
    parser.add_argument("--only", help="capture one stream only, e.g. scenario-overloaded")
    parser.add_argument("--baseline", type=Path, help="compare the capture with this folder")
    parser.add_argument("new", nargs="?", type=Path, help="a capture to compare (no --capture)")
    args = parser.parse_args()
    new = args.capture or args.new
    if new is None:
        parser.error("give --capture DIR or a folder to compare")
    if args.capture is not None:
        capture(args.capture, args.only)
    if args.baseline is None:
        return 0
    return 0 if compare(args.baseline, new) else 1


if __name__ == "__main__":
    sys.exit(main())
