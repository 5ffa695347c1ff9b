"""What every ``aiolwm2m`` command shares: verbosity flags, logging, the clock, listen errors.

One clock: events, log lines and timeline text all print seconds since the
command started, measured on ``time.monotonic()`` — the clock asyncio's event
loop runs on — from :data:`aiolwm2m.runtime.clock.ORIGIN`, which client events'
``time`` already counts from. A log line and an event that happen together show
the same time, and a Python program gets the numbers the CLI prints.
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
import time

from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.clock import ORIGIN

__all__ = [
    "UsageError",
    "add_verbosity_everywhere",
    "clock_origin",
    "configure_logging",
    "listen_error",
    "port_number",
    "positive_number",
    "restore_logging",
    "verbosity",
    "verbosity_flags",
]

#: Logger of the decoded CoAP message trace (``-vv``).
TRACE_LOGGER = "aiolwm2m.trace"

_origin = ORIGIN
_handler: logging.Handler | None = None
_levels = (logging.WARNING, logging.NOTSET)  # root's and asyncio's before configure_logging


class UsageError(Exception):
    """A command line argparse refused; the message is the whole (single) line."""


def clock_origin() -> float:
    """The monotonic time the command started: subtract it from any event's ``time``."""
    return _origin


def verbosity_flags(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``-v``/``-vv``/``-q`` on ``parser``: before the command (``top``) or after it.

    The sub-command copy uses ``SUPPRESS`` as its default so a nested parser
    (``certs init``) that was not given the flag does not reset a count its
    parent parsed.
    """
    prefix = "top_" if top else ""
    default = 0 if top else argparse.SUPPRESS
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest=prefix + "verbose",
        default=default,
        help="more on stderr: -v state changes and errors, -vv also every CoAP "
        "message and DTLS handshake step (tracebacks from -v)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="count",
        dest=prefix + "quiet",
        default=default,
        help="less output: only errors on stderr (and, where a command has a "
        "progress or timeline display, only its result)",
    )


def add_verbosity_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every sub-command (and nested one, ``certs init``) the verbosity flags."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                verbosity_flags(child)
                add_verbosity_everywhere(child)


def verbosity(args: argparse.Namespace) -> int:
    """Net ``-v`` count minus ``-q`` count, wherever on the command line they were."""
    return int(args.top_verbose + getattr(args, "verbose", 0)) - int(
        args.top_quiet + getattr(args, "quiet", 0)
    )


class _SinceStart(logging.Filter):
    """Stamps each record with seconds since the command started (the timeline clock)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.since_start = time.monotonic() - _origin
        return True


def configure_logging(verbosity: int, stream: object = None) -> None:
    """Route ``logging`` to stderr at the level ``-v``/``-q`` asked for.

    0: warnings; 1 (``-v``): info — state changes, errors with their reasons;
    2 (``-vv``): debug — the CoAP message trace and DTLS handshake steps;
    below 0 (``-q``): errors only.
    """
    if verbosity < 0:
        level = logging.ERROR
    else:
        level = (logging.WARNING, logging.INFO)[verbosity] if verbosity < 2 else logging.DEBUG
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(_SinceStart())
    handler.setFormatter(
        logging.Formatter("%(since_start)8.3fs  %(levelname)-7s %(name)s: %(message)s")
    )
    global _handler, _levels
    root = logging.getLogger()
    restore_logging()  # called again (tests run main() in-process): replace ours only
    _levels = (root.level, logging.getLogger("asyncio").level)
    _handler = handler
    root.addHandler(handler)
    root.setLevel(level)
    # asyncio's own debug chatter ("Using selector") is not ours to show at -vv.
    logging.getLogger("asyncio").setLevel(max(level, logging.INFO))


def restore_logging() -> None:
    """Take our handler off again (``main()`` run in-process, e.g. by tests, leaves no trace)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        logging.getLogger().setLevel(_levels[0])
        logging.getLogger("asyncio").setLevel(_levels[1])
        _handler = None


def port_number(text: str) -> int:
    """argparse type: a UDP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def positive_number(text: str) -> float:
    """argparse type: a number > 0 and finite (durations, validity periods)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


def listen_error(exc: OSError, host: str, port: int, flags: str = "--host/--port") -> ConfigError:
    """A socket that cannot be bound, as the one-line configuration error naming the flags."""
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use (another server running? pick another port)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = f"{host} is not an address of this machine"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied (ports below 1024 need privileges)"
    elif isinstance(exc, socket.gaierror):
        why = f"cannot resolve {host!r}"
    else:
        why = exc.strerror or str(exc)
    return ConfigError(f"{flags} {where}: cannot listen: {why}")
