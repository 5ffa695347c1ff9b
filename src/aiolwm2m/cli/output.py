"""Event output shared by the CLI commands: JSON lines or a readable timeline."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from aiolwm2m.client import events as ev

_SKIP_HUMAN = {"state_changed"}


def event_json(event: ev.Event, since: float) -> str:
    data = event.to_dict()
    data["time"] = round(event.time - since, 6)
    return json.dumps(data, sort_keys=False)


def event_line(event: ev.Event, since: float, source: str = "client") -> str | None:
    """One human-readable timeline line, or None for events too chatty to show.

    ``source`` names the client in the line (``aiolwm2m scenario`` runs several).
    """
    if event.name in _SKIP_HUMAN:
        return None
    fields: dict[str, Any] = {
        k: v for k, v in event.to_dict().items() if k not in ("time", "event")
    }
    if "delay" in fields:
        fields["delay"] = f"{fields['delay']:.2f}s"
    detail = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{event.time - since:8.3f}s  {source}  {event.name:<24} {detail}".rstrip()


def emit(line: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(line + "\n")
    out.flush()
