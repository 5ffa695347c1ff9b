"""``aiolwm2m`` console script: one sub-command per module in this package.

Each sub-command module exposes ``add_parser(subparsers)`` and the parser's
``func`` default; keeping them separate keeps the public CLI contract of each
command (flags, output) in one readable place.

Exit codes are a contract too: 0 success, 1 a failed scenario/demo (or a bug:
an unexpected exception), 2 a usage or configuration error, 130 interrupted.
Every error a user can cause ends in one line on stderr naming the flag or
key; a traceback appears only with ``-v``, because a stranger's first run
must say what to fix rather than where our code was.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from aiolwm2m import __version__
from aiolwm2m.cli import (
    bootstrap_cmd,
    certs_cmd,
    client_cmd,
    completion_cmd,
    demo_cmd,
    factory_reset_cmd,
    fleet_cmd,
    manifest_cmd,
    proxy_cmd,
    scenario_cmd,
    server_cmd,
)
from aiolwm2m.cli.common import (
    UsageError,
    add_verbosity_everywhere,
    configure_logging,
    restore_logging,
    verbosity,
    verbosity_flags,
)
from aiolwm2m.errors import ConfigError

__all__ = ["Parser", "build_parser", "main"]

COMMANDS = (
    client_cmd,
    server_cmd,
    bootstrap_cmd,
    demo_cmd,
    certs_cmd,
    proxy_cmd,
    fleet_cmd,
    scenario_cmd,
    factory_reset_cmd,
    manifest_cmd,
    completion_cmd,
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (usage goes to ``--help``)."""

    commands: tuple[str, ...] = ()

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see: {self.prog} --help)")


def build_parser() -> Parser:
    parser = Parser(prog="aiolwm2m", description="asyncio LwM2M client that recovers on its own")
    parser.add_argument("--version", action="version", version=f"aiolwm2m {__version__}")
    verbosity_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    parser.commands = tuple(sub.choices)
    add_verbosity_everywhere(parser)
    return parser


def parse(parser: Parser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``, naming an unknown flag before complaining about a missing command."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        prog = parser.prog if args.command is None else f"{parser.prog} {args.command}"
        raise UsageError(f"{prog}: unrecognized arguments: {' '.join(extras)} (see: {prog} --help)")
    if args.command is None:
        names = ", ".join(parser.commands)
        raise UsageError(f"aiolwm2m: a command is required: {names} (see: aiolwm2m --help)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    verbose = 0
    try:
        args = parse(build_parser(), argv)
        verbose = verbosity(args)
        configure_logging(verbose)
        return int(args.func(args))
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"aiolwm2m: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        if verbose > 0:
            traceback.print_exc()
        print(
            f"aiolwm2m: unexpected error: {type(exc).__name__}: {exc}"
            + ("" if verbose > 0 else " (run with -v for the traceback)"),
            file=sys.stderr,
        )
        return 1
    finally:
        restore_logging()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
