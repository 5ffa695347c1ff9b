"""``aiolwm2m`` console script: one sub-command per module in this package.

Each sub-command module exposes ``add_parser(subparsers)`` and the parser's
``func`` default; keeping them separate keeps the public CLI contract of each
command (flags, output) in one readable place.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiolwm2m import __version__
from aiolwm2m.cli import (
    bootstrap_cmd,
    certs_cmd,
    client_cmd,
    demo_cmd,
    factory_reset_cmd,
    manifest_cmd,
    proxy_cmd,
    scenario_cmd,
    server_cmd,
)
from aiolwm2m.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiolwm2m", description="asyncio LwM2M client that recovers on its own"
    )
    parser.add_argument("--version", action="version", version=f"aiolwm2m {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logs on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (
        client_cmd,
        server_cmd,
        bootstrap_cmd,
        demo_cmd,
        certs_cmd,
        proxy_cmd,
        scenario_cmd,
        factory_reset_cmd,
        manifest_cmd,
    ):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(
        stream=sys.stderr,
        level=max(level, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"aiolwm2m: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
