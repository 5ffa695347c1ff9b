"""The testbed server's interactive console: prompt, line editing, history, Tab completion.

On a terminal, ``aiolwm2m server`` reads commands with ``input()`` and
Python's ``readline`` (history in ``~/.aiolwm2m_history``); Tab completes
the command name, then a registered endpoint, then the paths that endpoint
registered and the resources the shipped object definitions give them.
Without a terminal (a pipe, ``< script``), or where ``readline`` does not
exist, lines are read plainly, as before.

:func:`candidates` is the completion logic alone — the word being typed and
what comes before it in, completions out — so it is tested without a
terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.ddf import ObjectRegistry, load_builtin

__all__ = ["HISTORY", "PROMPT", "Completer", "candidates", "read_lines"]

PROMPT = "lwm2m> "
HISTORY = Path.home() / ".aiolwm2m_history"
HISTORY_LENGTH = 1000
#: Commands whose first argument is not an endpoint.
NO_ENDPOINT = {"help", "list", "quit", "exit", "sleep", "images"}


def registered_paths(links: str, registry: ObjectRegistry) -> list[str]:
    """Every path a registration's link payload names, plus its instances' resources."""
    paths: list[str] = []
    try:
        entries = linkformat.decode(links.encode())
    except linkformat.LinkFormatError:
        return paths
    for entry in entries:
        path = entry.path()
        if path.object_id is None:
            continue
        paths.append(str(path))
        definition = registry.get(path.object_id)
        if path.instance_id is not None and path.resource_id is None and definition is not None:
            paths += [f"{path}/{rid}" for rid in sorted(definition.resources)]
    return paths


def candidates(
    before: str,
    text: str,
    commands: Iterable[str],
    endpoints: Iterable[str],
    paths: Callable[[str], list[str]],
) -> list[str]:
    """Completions of ``text``, the word being typed after ``before`` on the line."""
    words = before.split()
    if not words:
        options: Iterable[str] = commands
    elif len(words) == 1 and words[0] not in NO_ENDPOINT:
        options = endpoints
    elif len(words) >= 2 and words[0] not in NO_ENDPOINT:
        # Write-Composite and friends take PATH=VALUE: complete the path part.
        options = paths(words[1])
    else:
        options = ()
    return sorted(o for o in set(options) if o.startswith(text))


class Completer:
    """``readline``'s completer over live server state (read from the input thread)."""

    def __init__(
        self,
        commands: Iterable[str],
        registrations: Callable[[], dict[str, str]],
        registry: ObjectRegistry | None = None,
    ) -> None:
        self.commands = sorted(commands)
        self.registrations = registrations  # endpoint -> its registered links
        self.registry = registry if registry is not None else load_builtin()
        self._matches: list[str] = []

    def paths(self, endpoint: str) -> list[str]:
        links = self.registrations().get(endpoint)
        return [] if links is None else registered_paths(links, self.registry)

    def complete(self, text: str, state: int) -> str | None:
        import readline

        if state == 0:
            before = readline.get_line_buffer()[: readline.get_begidx()]
            endpoints = list(self.registrations())
            self._matches = candidates(before, text, self.commands, endpoints, self.paths)
        return self._matches[state] if state < len(self._matches) else None


def read_lines(
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[str | None],
    completer: Completer,
    ready: threading.Event,
) -> None:
    """Feed stdin lines to ``queue`` from a daemon thread (None at EOF).

    A thread rather than ``connect_read_pipe`` because stdin may be a regular
    file (``< script``) and a blocked read must not keep the process alive.
    On a terminal the next prompt waits for ``ready`` (set once the previous
    command has printed its answer), so answers do not land after a prompt.
    """
    interactive = sys.stdin.isatty() and _setup_readline(completer)

    def read() -> None:
        if interactive:
            while ready.wait():
                ready.clear()
                try:
                    line = input(PROMPT)
                except EOFError:
                    break
                _remember(line)
                loop.call_soon_threadsafe(queue.put_nowait, line)
        else:
            # No stdin, or one that cannot be read (closed, a test harness's): EOF.
            with contextlib.suppress(OSError, ValueError, AttributeError):
                for line in sys.stdin:
                    loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="aiolwm2m-stdin", daemon=True).start()


def _setup_readline(completer: Completer) -> bool:
    try:
        import readline
    except ImportError:  # not on every platform: plain input still works
        return False
    readline.set_completer(completer.complete)
    readline.set_completer_delims(" \t=")
    # libedit (macOS) and GNU readline spell the Tab binding differently.
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        HISTORY.touch(exist_ok=True)
        readline.read_history_file(HISTORY)
    return True


def _remember(line: str) -> None:
    """Append each line to the history file at once: the server may end by a signal."""
    import readline

    if line.strip():
        with contextlib.suppress(OSError):
            readline.append_history_file(1, HISTORY)
