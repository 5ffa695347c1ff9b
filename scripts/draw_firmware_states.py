#!/usr/bin/env python3
"""Draw the firmware state machines and failure table into docs/firmware.md.

The diagrams (Mermaid) and the download-failure table are generated from the
very dicts the client runs (``OBJECT5_TRANSITIONS``, ``MANIFEST_TRANSITIONS``,
``DEFAULT_FAILURE_RULES``), between ``<!-- generated:NAME -->`` and
``<!-- end:NAME -->`` markers. ``--check`` exits 1 when the file is stale
(the test suite runs the same comparison).

    python scripts/draw_firmware_states.py          # rewrite docs/firmware.md
    python scripts/draw_firmware_states.py --check  # is it up to date?
"""

from __future__ import annotations

import enum
import re
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiolwm2m.client.firmware.download import DEFAULT_FAILURE_RULES
from aiolwm2m.client.firmware.states import MANIFEST_TRANSITIONS, OBJECT5_TRANSITIONS, Transition

DOC = Path(__file__).resolve().parent.parent / "docs" / "firmware.md"


def _name(state: enum.IntEnum) -> str:
    return f"{state.name.lower()}"


def state_diagram(table: Mapping[tuple[Any, Any], Transition[Any, Any]]) -> str:
    """Mermaid stateDiagram-v2: one arrow per (from, to) pair, its triggers and result codes."""
    arrows: dict[tuple[Any, Any], list[str]] = defaultdict(list)
    for (state, trigger), transition in table.items():
        label = trigger.value
        if transition.results:
            label += " [" + ",".join(str(int(r)) for r in transition.results) + "]"
        arrows[(state, transition.target)].append(label)
    states = sorted({s for pair in arrows for s in pair}, key=int)
    lines = ["```mermaid", "stateDiagram-v2"]
    lines += [f"    {_name(s)}: {int(s)} {_name(s)}" for s in states]
    first = states[0]
    lines.append(f"    [*] --> {_name(first)}")
    for (source, target), labels in sorted(
        arrows.items(), key=lambda kv: (int(kv[0][0]), int(kv[0][1]))
    ):
        lines.append(f"    {_name(source)} --> {_name(target)}: {' / '.join(labels)}")
    lines.append("```")
    return "\n".join(lines)


def failure_table() -> str:
    lines = [
        "| failure kind | retried | /5/0/5 Update Result | /10252/0/3 Manifest Result |",
        "|---|---|---|---|",
    ]
    for kind, rule in DEFAULT_FAILURE_RULES.items():
        lines.append(
            f"| `{kind.value}` | {'yes' if rule.retry else 'no'} | "
            f"{int(rule.result)} {rule.result.name.lower()} | "
            f"{int(rule.manifest_result)} {rule.manifest_result.name.lower()} |"
        )
    return "\n".join(lines)


SECTIONS = {
    "object5": lambda: state_diagram(OBJECT5_TRANSITIONS),
    "manifest": lambda: state_diagram(MANIFEST_TRANSITIONS),
    "failures": failure_table,
}


def render(text: str) -> str:
    """``text`` with every generated section replaced by what the code says now."""
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- end:{name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: no generated:{name} section")
        text = pattern.sub(lambda m, body=make(): m[1] + body + "\n" + m[2], text)  # noqa: B008
    return text


def main(argv: list[str]) -> int:
    current = DOC.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{DOC} is stale: run python scripts/draw_firmware_states.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
