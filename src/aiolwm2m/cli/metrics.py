"""``--metrics HOST:PORT`` for ``aiolwm2m client`` and ``aiolwm2m server``.

The Prometheus modules are imported only when the flag is given, so the
optional ``prometheus-client`` is needed only by those who ask for metrics —
and those who ask without it get one line saying how to install it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from aiolwm2m.cli.common import listen_error, port_number
from aiolwm2m.errors import ConfigError

if TYPE_CHECKING:
    from aiolwm2m.runtime.aio import Client
    from aiolwm2m.runtime.metrics import MetricsServer
    from aiolwm2m.testbed.core import ServerCore

__all__ = ["add_metrics_flag", "metrics_address", "start_client_metrics", "start_server_metrics"]

INSTALL_HINT = "--metrics needs prometheus-client: pip install 'aiolwm2m[metrics]'"


def metrics_address(text: str) -> tuple[str, int]:
    """argparse type: ``HOST:PORT`` (``:PORT`` alone listens on 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", port_number(port)


def add_metrics_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics",
        type=metrics_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics "
        "(needs the 'metrics' extra; names in docs/observability.md)",
    )


async def _serve(registry: Any, address: tuple[str, int]) -> MetricsServer:
    from aiolwm2m.runtime.metrics import serve_metrics

    try:
        server = await serve_metrics(registry, *address)
    except OSError as exc:
        raise listen_error(exc, address[0], address[1], flags="--metrics") from exc
    host, port = server.address
    print(f"metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True)
    return server


async def start_client_metrics(client: Client, address: tuple[str, int]) -> MetricsServer:
    try:
        from aiolwm2m.runtime.metrics import ClientMetrics
    except ImportError as exc:
        raise ConfigError(f"{INSTALL_HINT} ({exc})") from exc
    metrics = ClientMetrics()
    metrics.attach(client)
    return await _serve(metrics.registry, address)


async def start_server_metrics(core: ServerCore, address: tuple[str, int]) -> MetricsServer:
    try:
        from prometheus_client import CollectorRegistry

        from aiolwm2m.testbed.metrics import ServerMetrics
    except ImportError as exc:
        raise ConfigError(f"{INSTALL_HINT} ({exc})") from exc
    registry = CollectorRegistry()
    registry.register(ServerMetrics(core))
    return await _serve(registry, address)
