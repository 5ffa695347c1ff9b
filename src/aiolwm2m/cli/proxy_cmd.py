"""``aiolwm2m proxy``: a fault-injecting UDP proxy between LwM2M clients and a server.

Example: 30 % loss and 50-150 ms of delay both ways, every Update answered 5.03::

    aiolwm2m proxy --listen 127.0.0.1:5783 --upstream 127.0.0.1:5683 \\
        --drop 0.3 --delay 0.1 --jitter 0.05 --respond "POST /rd/*=5.03"

Runs until interrupted, printing the fault counters every ``--stats`` seconds
and once more at exit. Faults that change over time are what the Python API
(:class:`aiolwm2m.testbed.proxy.FaultProxy`) and ``aiolwm2m scenario`` are for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from aiolwm2m.cli.common import listen_error
from aiolwm2m.cli.output import emit
from aiolwm2m.errors import ConfigError
from aiolwm2m.testbed.proxy import FAULT_FIELDS, CoapRule, FaultProxy, RuleAction

__all__ = [
    "add_parser",
    "run",
]


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _rule(action: RuleAction) -> Any:
    def parse(text: str) -> CoapRule:
        """``"MATCH=CODE[:max_age=N][:count=N]"`` (respond) or ``"MATCH[:count=N]"``."""
        head, *opts = text.split(":")
        match, _, code = head.partition("=") if action is RuleAction.RESPOND else (head, "", "")
        kwargs: dict[str, Any] = {}
        for opt in opts:
            key, _, value = opt.partition("=")
            if key not in ("max_age", "count") or not value.isdigit():
                raise argparse.ArgumentTypeError(f"bad rule option {opt!r} in {text!r}")
            kwargs[key] = int(value)
        try:
            return CoapRule(match.strip(), action, code or "5.03", **kwargs)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def add_parser(sub: Any) -> None:
    p = sub.add_parser("proxy", help="UDP proxy that injects network and server faults")
    p.add_argument("--listen", type=_hostport, required=True, help="HOST:PORT clients talk to")
    p.add_argument("--upstream", type=_hostport, required=True, help="HOST:PORT of the server")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault randomness")
    p.add_argument(
        "--direction", choices=["up", "down", "both"], default="both", help="where faults apply"
    )
    for name in ("drop", "duplicate", "reorder", "corrupt", "truncate"):
        p.add_argument(f"--{name}", type=float, default=0.0, metavar="P", help="probability")
    p.add_argument("--delay", type=float, default=0.0, metavar="S", help="added latency (s)")
    p.add_argument("--jitter", type=float, default=0.0, metavar="S", help="± latency (s)")
    p.add_argument("--blackhole", action="store_true", help="forward nothing")
    p.add_argument(
        "--respond",
        type=_rule(RuleAction.RESPOND),
        action="append",
        default=[],
        metavar="RULE",
        help='answer matching requests, e.g. "POST /rd=4.29:max_age=30:count=2"',
    )
    p.add_argument(
        "--reset",
        type=_rule(RuleAction.RESET),
        action="append",
        default=[],
        metavar="RULE",
        help='answer matching CON messages with RST, e.g. "2.05" (notifications)',
    )
    p.add_argument(
        "--swallow",
        type=_rule(RuleAction.DROP),
        action="append",
        default=[],
        metavar="RULE",
        help='drop matching messages, e.g. "POST /rd/*:count=1"',
    )
    p.add_argument("--stats", type=float, default=10.0, help="counter print interval (s), 0: off")
    p.set_defaults(func=run)


def _print_counters(proxy: FaultProxy) -> None:
    emit("proxy " + " ".join(f"{k}={v}" for k, v in sorted(proxy.counters.items())))


async def _run(args: argparse.Namespace) -> int:
    proxy = FaultProxy(args.upstream, args.listen, seed=args.seed)
    faults = {k: getattr(args, k) for k in FAULT_FIELDS}
    proxy.set_faults(args.direction, **faults)
    for rule in [*args.respond, *args.reset, *args.swallow]:
        proxy.add_rule(rule)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await proxy.start()
    except OSError as exc:
        raise listen_error(exc, args.listen[0], args.listen[1], flags="--listen") from exc
    emit(f"proxy listening on {proxy.host}:{proxy.port} → {args.upstream[0]}:{args.upstream[1]}")
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.stats if args.stats > 0 else None)
            if args.stats > 0:
                _print_counters(proxy)
    finally:
        await proxy.stop()
    if args.stats <= 0:
        _print_counters(proxy)
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
