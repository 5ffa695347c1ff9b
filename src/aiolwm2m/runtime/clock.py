"""The one clock of the asyncio runtime: event times, log lines and the CLI's timeline.

Seconds on the event loop's clock (``time.monotonic()`` for asyncio's own
loops) counted from :data:`ORIGIN`, the moment this module was first imported
— in the ``aiolwm2m`` command, the moment the command started. Every
client event's ``time`` is on it (the engine runs on it), the CLI prints event
times as they are, and its log lines print ``time.monotonic() - ORIGIN``, so a
Python program and ``aiolwm2m client --events jsonl`` show the same number for
the same moment. (The simulated runtime's clock is its virtual clock instead.)
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["ORIGIN", "loop_deadline", "loop_now"]

#: ``time.monotonic()`` when the runtime was loaded: time 0 of events and logs.
ORIGIN = time.monotonic()


def loop_now(loop: asyncio.AbstractEventLoop) -> float:
    """The runtime clock now: ``loop``'s time since :data:`ORIGIN`."""
    return loop.time() - ORIGIN


def loop_deadline(when: float) -> float:
    """A runtime-clock instant as ``loop.call_at`` wants it (the loop's own time)."""
    return when + ORIGIN
