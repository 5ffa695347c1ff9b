"""``aiolwm2m factory-reset``: forget a client's stored state, back to its config file.

What goes: accounts a bootstrap provisioned, registrations and stored
notifications (see ``docs/storage.md``). The next ``aiolwm2m client`` run
starts from the configuration file alone. Run it while the client is stopped:
a running client writes its state straight back. Only a file that is an
aiolwm2m store is touched (exit 2 for anything else, which stays as it was).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from aiolwm2m.client.config import load_config
from aiolwm2m.errors import ConfigError, StorageError
from aiolwm2m.runtime.storage import NotAStore, factory_reset

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "factory-reset",
        help="clear a client's stored state (provisioned accounts, registrations, "
        "stored notifications) back to its configuration file",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help="client TOML file whose [storage] path is cleared")
    where.add_argument("--storage", help="path of the store itself")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.storage
    if args.config:
        # Only [storage] matters here; the override spares files that leave the
        # endpoint to the client's --endpoint flag.
        config = load_config(args.config, endpoint="factory-reset")
        if config.storage_path is None:
            raise ConfigError(f"{args.config} has no [storage] path: nothing is stored")
        path = config.storage_path
    try:
        print(factory_reset(path))
    except NotAStore as exc:
        print(f"aiolwm2m factory-reset: refused: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"aiolwm2m: factory reset failed: {exc}", file=sys.stderr)
        return 1
    return 0
