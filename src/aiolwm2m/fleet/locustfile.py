"""Locust file: LwM2M devices as Locust users, spread over Locust's workers.

    locust -f "$(python -m aiolwm2m.fleet.locustfile)" --lwm2m-server coap://127.0.0.1:5683 \\
        --lwm2m-devices 1000 -u 2 -r 1

(``python -m aiolwm2m.fleet.locustfile`` prints this file's path; install
with the ``locust`` extra.) Each Locust user hosts ``--lwm2m-devices``
devices — a shard of the fleet — on one asyncio loop per worker process,
which runs in its own kernel thread (:mod:`aiolwm2m.fleet.bridge`: never
inside a greenlet). Registrations, Updates, notifications and errors come
back as Locust request events (type ``LwM2M``; names ``register``,
``update``, ``notify``; an error is a failure named after the request it
concerns, its code as the exception), so the web UI, ``--csv`` and the
master/worker distribution work as for any Locust test. Round trips are
from Register/Update sent to answered, retransmissions included.

Endpoints are ``<prefix>-w<worker>-u<user>-<n>``: unique across workers and
users without coordination. A fleet file (``--lwm2m-fleet``) supplies
values, PSK patterns and client settings; the flags override it.
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import replace
from typing import Any

import gevent
from locust import User, events, task
from locust.env import Environment

from aiolwm2m.accounts import parse_server_uri
from aiolwm2m.fleet.bridge import LoopThread, Outbox
from aiolwm2m.fleet.shard import AioShard
from aiolwm2m.fleet.spec import FleetSpec, load_spec

__all__ = ["LwM2MDevices"]

#: Seconds between the user greenlet's drains of what the loop thread reported.
DRAIN_EVERY = 0.2
#: Upper bound of a user's stop: De-register of its devices, then drop them.
STOP_TIMEOUT = 10.0
#: A Locust run has no end the devices could know: they run until the user stops.
FOREVER = 10 * 365 * 86400.0

_loop_thread: LoopThread | None = None
_users = itertools.count()


def _options(parser: Any) -> None:
    group = parser.add_argument_group("aiolwm2m")
    group.add_argument("--lwm2m-server", default="coap://127.0.0.1:5683", help="server URI")
    group.add_argument("--lwm2m-devices", type=int, default=100, help="devices per Locust user")
    group.add_argument("--lwm2m-rate", type=float, default=100.0, help="Registers/s per user")
    group.add_argument("--lwm2m-lifetime", type=int, default=300, help="lifetime (s)")
    group.add_argument("--lwm2m-prefix", default="locust", help="endpoint prefix")
    group.add_argument("--lwm2m-fleet", default="", help="fleet TOML (values, PSKs, settings)")


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]


def loop_thread() -> LoopThread:
    """This worker's asyncio loop thread, started on first use."""
    global _loop_thread
    if _loop_thread is None or _loop_thread.stopped:
        _loop_thread = LoopThread()
        _loop_thread.start()
        while not _loop_thread.running:
            gevent.sleep(0.01)
    return _loop_thread


def user_spec(environment: Environment, user: int) -> FleetSpec:
    """The shard a Locust user hosts, from the command line (and fleet file)."""
    opts = environment.parsed_options
    assert opts is not None
    uri = parse_server_uri(opts.lwm2m_server)
    # Resolved here, on the gevent side: the loop thread must not use the (patched) resolver.
    ip = socket.gethostbyname(uri.host)
    worker = getattr(environment.runner, "worker_index", 0)
    base = load_spec(opts.lwm2m_fleet) if opts.lwm2m_fleet else FleetSpec()
    return replace(
        base,
        server=f"{'coaps' if uri.secure else 'coap'}://{ip}:{uri.port}",
        devices=opts.lwm2m_devices,
        first=0,
        endpoint=f"{opts.lwm2m_prefix}-w{worker}-u{user}-{{n:05d}}",
        lifetime=opts.lwm2m_lifetime,
        rate=opts.lwm2m_rate,
        duration=FOREVER,
        processes=1,
    )


class LwM2MDevices(User):
    """A shard of LwM2M devices; see the module docstring."""

    def on_start(self) -> None:
        self.outbox = Outbox()
        self.spec = user_spec(self.environment, next(_users))
        self.shard = AioShard(
            self.spec,
            0,
            self.spec.devices,
            origin=time.monotonic(),
            rate=self.spec.rate,
            listener=lambda kind, seconds, error: self.outbox.put((kind, seconds, error)),
        )
        loop_thread().spawn(self.shard.run(lambda window: None), self.outbox, "ended")

    @task
    def report(self) -> None:
        """Hand what the devices did to Locust, from this greenlet (Locust's stats are not
        thread-safe: only the gevent side touches them)."""
        self._fire(self.outbox.drain())
        gevent.sleep(DRAIN_EVERY)

    def _fire(self, items: list[Any]) -> None:
        fire = self.environment.events.request.fire
        for kind, value, error in items:
            if kind in ("ended", "closed"):
                if error is not None and not isinstance(error, gevent.GreenletExit):
                    fire(
                        request_type="LwM2M",
                        name=f"shard {kind}",
                        response_time=0,
                        response_length=0,
                        exception=error,
                        context={},
                    )
                continue
            fire(
                request_type="LwM2M",
                name=kind,
                response_time=value * 1000.0,
                response_length=0,
                exception=None if error is None else Exception(error),
                context={},
            )

    def on_stop(self) -> None:
        thread = loop_thread()
        closed = Outbox()
        thread.spawn(self.shard.close(), closed, "closed")
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and not closed.drain():
            gevent.sleep(0.05)
        self._fire(self.outbox.drain())


if __name__ == "__main__":
    print(__file__)
