"""Event output shared by the CLI commands: JSON lines or a readable timeline.

Times are seconds since the command started (:func:`~aiolwm2m.cli.common.clock_origin`),
the clock log lines print too. A client event's ``time`` already is (the runtime
clock, :mod:`aiolwm2m.runtime.clock`) and is printed as it is, so a Python
program sees the numbers the CLI prints; a server event's time is the loop's
and is counted from the origin here.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

from aiolwm2m.cli.common import clock_origin
from aiolwm2m.client import events as ev
from aiolwm2m.testbed.peers import ServerEvent

__all__ = [
    "EventPrinter",
    "emit",
    "event_json",
    "event_line",
    "log_event",
    "server_event_json",
    "since_start",
]

_SKIP_HUMAN = {"state_changed"}

log = logging.getLogger("aiolwm2m.client")


def since_start(t: float) -> float:
    """A monotonic time (an event's, a server event's) as seconds since the command started."""
    return t - clock_origin()


def event_json(event: ev.Event, since: float = 0.0) -> str:
    """One JSON line; ``time`` counted from ``since`` (an instant on the events' clock)."""
    data = event.to_dict()
    data["time"] = round(event.time - since, 6)
    return json.dumps(data, sort_keys=False)


def event_line(event: ev.Event, since: float = 0.0, source: str = "client") -> str | None:
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
    at = event.time - since
    return f"{at:8.3f}s  {source}  {event.name:<24} {detail}".rstrip()


def server_event_json(event: ServerEvent) -> str:
    """A testbed server's event as one JSON object: its facts as separate fields.

    ``detail`` (the readable text) is kept only for events that carry no fields.
    """
    record: dict[str, Any] = {
        "time": round(since_start(event.time), 6),
        "event": event.kind,
        "endpoint": event.endpoint,
    }
    if event.fields:
        record.update(event.fields)
    elif event.detail:
        record["detail"] = event.detail
    return json.dumps(record)


class EventPrinter:
    """Prints a client's events on stdout as ``--events`` asked (``jsonl`` or ``text``)."""

    def __init__(self, fmt: str) -> None:
        self.jsonl = fmt == "jsonl"

    def show(self, event: ev.Event) -> None:
        if self.jsonl:
            emit(event_json(event))
        elif (line := event_line(event)) is not None:
            emit(line)


def log_event(event: ev.Event) -> None:
    """State changes and errors with their reasons, for ``-v`` (INFO) on stderr."""
    if isinstance(event, ev.StateChanged):
        log.info("server %s: %s -> %s", event.ssid, event.old, event.new)
    elif isinstance(event, ev.Error):
        where = " ".join(
            f"{k}={v}" for k, v in event.to_dict().items() if k not in ("time", "event", "code")
        )
        log.info("error %s %s", event.code.value, where)


def emit(line: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(line + "\n")
    out.flush()
