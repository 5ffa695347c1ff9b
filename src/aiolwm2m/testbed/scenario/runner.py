"""Running a scenario: the testbed server, a fault proxy and the clients, on one event loop.

:class:`ScenarioRunner` starts the testbed server, a
:class:`~aiolwm2m.testbed.proxy.FaultProxy` in front of it and the clients
(real UDP on 127.0.0.1, ephemeral ports; the clients reach the server by the
name :data:`SERVER_NAME` through the scenario's resolver), applies the steps
at their times, records a timeline and hands what it collected to
:func:`~aiolwm2m.testbed.scenario.judge.judge`. It runs on any asyncio event
loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiolwm2m.client import events as ev
from aiolwm2m.coap.message import Code, Message, MessageType, make_options
from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.aio import Client
from aiolwm2m.testbed.core import Address
from aiolwm2m.testbed.peers import HISTORY_LIMIT, ServerEvent
from aiolwm2m.testbed.proxy import CoapRule, FaultProxy, RuleAction
from aiolwm2m.testbed.scenario.fixtures import (
    OBSERVED_PATH,
    Delivery,
    NotifyingObjects,
    ObservingCore,
    ScenarioResolver,
)
from aiolwm2m.testbed.scenario.judge import ClientReport, Verdict, judge
from aiolwm2m.testbed.scenario.schema import (
    LINK_FAULTS,
    SERVER_NAME,
    NotifySpec,
    Scenario,
    Step,
    client_config,
    wire_max_age,
)
from aiolwm2m.testbed.server import TestbedServer


@dataclass
class TimelineEntry:
    time: float  # real seconds since the scenario started
    source: str  # "fault", "server", "client 0"…
    text: str
    event: ev.Event | None = None


class ScenarioRunner:
    """Runs one :class:`Scenario`; :meth:`run` returns the :class:`Verdict`."""

    def __init__(
        self,
        scenario: Scenario,
        on_entry: Callable[[TimelineEntry], None] | None = None,
        *,
        record: bool = True,
    ) -> None:
        """``record=False`` keeps no timeline or event lists (the soak runs for
        minutes with many clients and measures memory): only the figures the
        verdict needs. ``expect`` patterns need the events, so they need ``record``.
        """
        if not record and any(step.expect for step in scenario.steps):
            raise ConfigError("expect patterns need a recorded run")
        self.scenario = scenario
        self.on_entry = on_entry
        self.record = record
        self.timeline: list[TimelineEntry] = []
        self.reports: list[ClientReport] = []
        self.errors: list[str] = []
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[Client] = []
        self._objects: list[NotifyingObjects] = []
        self._observed: dict[str, int] = {}  # endpoint → server key of its observation
        self._observing: set[str] = set()
        self._sessions: dict[str, tuple[str, Address | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart: Step | None = None
        self._resolver = ScenarioResolver()

    # ------------------------------------------------------------------ helpers
    def scaled(self, seconds: float) -> float:
        return seconds * self.scenario.time_scale

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time() - self._t0

    def _add(self, source: str, text: str, event: ev.Event | None = None) -> None:
        if not self.record and self.on_entry is None:
            return
        entry = TimelineEntry(self.now(), source, text, event)
        if self.record:
            self.timeline.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A failing harness or client task fails the verdict like any unhandled exception."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.errors.append(f"task {task.get_coro()!r} raised {exc!r}")

    # ------------------------------------------------------------------ run
    async def run(self) -> Verdict:
        sc = self.scenario
        loop = asyncio.get_running_loop()
        self._loop = loop
        previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_exception)
        self._t0 = loop.time()
        probe = client_config(sc, "127.0.0.1:1", 0)
        # Without a recording nobody reads the server's history: keep little of it.
        history = HISTORY_LIMIT if self.record else 1000
        core = ObservingCore(params=probe.coap, rng=random.Random(sc.seed), history_limit=history)
        server = TestbedServer("127.0.0.1", 0, core=core)
        server.on_event = self._on_server_event
        await server.start()
        self._server = server

        async def restart() -> None:
            await self._restart_server(server)

        proxy = FaultProxy(("127.0.0.1", server.port), seed=sc.seed, restart_upstream=restart)
        await proxy.start()
        self._proxy = proxy
        self._resolver.names[SERVER_NAME] = "127.0.0.1"
        self._add("----", f"server on 127.0.0.1:{server.port}, proxy on 127.0.0.1:{proxy.port}")
        if sc.time_scale != 1:
            self._add("----", f"time scale {sc.time_scale:g}: scenario times × {sc.time_scale:g}")
        try:
            for i in range(sc.clients):
                self._start_client(i, f"{SERVER_NAME}:{proxy.port}")
            if sc.notify is not None:
                self._spawn(self._produce(sc.notify))
            for i, step in enumerate(sc.steps, 1):
                self._spawn(self._apply(i, step))
            await asyncio.sleep(self.scaled(sc.duration))
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._collect()
        finally:
            for client in self._clients:
                await client.stop()
            await proxy.stop()
            await server.stop()
            loop.set_exception_handler(previous_handler)
        return judge(sc, self.reports, self.errors, proxy.counters, core.duplicates)

    def _start_client(self, index: int, hostport: str) -> None:
        config = client_config(self.scenario, hostport, index)
        objects = NotifyingObjects(config.endpoint, [s.short_server_id for s in config.servers])
        client = Client(
            config,
            objects,
            rng=random.Random(self.scenario.seed * 1000 + index),
            resolver=self._resolver,
        )
        report = ClientReport(index, config.endpoint)
        source = f"client {index}" if self.scenario.clients > 1 else "client"

        def on_event(event: ev.Event) -> None:
            now = self.now()
            if event.name in ("registered", "updated"):
                report.successes.append(now)
            elif isinstance(event, ev.Error) and event.request == "notify":
                report.notify_errors += 1
                if (event.action or "").startswith("cancel_observation"):
                    report.cancelled += 1
            elif isinstance(event, ev.NotificationsDropped):
                if event.reason == ev.NotificationsDropped.OBSERVATION_CANCELLED:
                    report.dropped_cancelled += event.count
                else:
                    report.dropped_at_register += event.count
            if self.record:
                report.events.append((now, event))
            self._add(source, event.name, event)

        client.subscribe(on_event)
        self._clients.append(client)
        self._objects.append(objects)
        self.reports.append(report)
        self._spawn(client.start())

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self.errors.append(f"{context.get('message')}: {exc!r}")
        loop.default_exception_handler(context)

    # ------------------------------------------------------------------ faults
    async def _apply(self, index: int, step: Step) -> None:
        proxy = self._proxy
        await asyncio.sleep(max(0.0, self.scaled(step.at) - self.now()))
        length = self.scaled(step.duration)
        self._add("fault", f"#{index} {step.describe()} for {step.duration:g} s")
        rule: CoapRule | None = None
        if step.fault in LINK_FAULTS:
            settings: dict[str, dict[str, Any]] = {
                "blackhole": {"blackhole": True},
                "loss": {"drop": step.probability},
                "delay": {"delay": self.scaled(step.delay), "jitter": self.scaled(step.jitter)},
            }
            setting = settings.get(step.fault, {step.fault: step.probability})
            proxy.set_faults(step.direction, **setting)
        elif step.fault == "unreachable":
            await proxy.set_unreachable(True)
        elif step.fault in ("respond", "reset", "silence"):
            action = {
                "respond": RuleAction.RESPOND,
                "reset": RuleAction.RESET,
                "silence": RuleAction.DROP,
            }[step.fault]
            max_age = (
                wire_max_age(step, self.scenario.time_scale) if step.max_age is not None else None
            )
            rule = proxy.add_rule(
                CoapRule(step.match, action, step.code, max_age=max_age, count=step.count)
            )
        elif step.fault == "dns":
            self._resolver.names[SERVER_NAME] = None
        elif step.fault == "restart":
            self._restart = step
            await proxy.restart_upstream()
            self._add("fault", f"#{index} server is back")
            return
        try:
            if step.fault == "flap":
                await self._flap(step, length)
            else:
                await asyncio.sleep(length)
        finally:
            if step.fault == "unreachable":
                await proxy.set_unreachable(False)
            elif step.fault == "dns":
                self._resolver.names[SERVER_NAME] = "127.0.0.1"
            elif rule is not None:
                proxy.remove_rule(rule)
            else:
                proxy.clear_faults(step.direction)
        self._add("fault", f"#{index} ends")

    async def _flap(self, step: Step, length: float) -> None:
        end = self.now() + length
        down = True
        while (left := end - self.now()) > 0:
            self._proxy.set_faults("both", blackhole=down)
            await asyncio.sleep(min(left, self.scaled(step.down if down else step.up)))
            down = not down

    async def _restart_server(self, server: TestbedServer) -> None:
        step = self._restart
        assert step is not None
        await server.stop()
        server.core.forget_peers()
        if step.forget_registrations:
            server.core.forget_registrations()
        self._observed.clear()  # a restarted server has forgotten its observations
        await asyncio.sleep(max(self.scaled(step.duration), 0.001))
        await server.start()

    # ------------------------------------------------------------------ notifications
    def _on_server_event(self, event: ServerEvent) -> None:
        endpoint = event.endpoint
        if endpoint is not None and event.kind in ("registered", "expired", "deregistered"):
            reg = self._server.core.registrations.get(endpoint)
            session = ("", None) if reg is None else (reg.location, reg.address)
            if self._sessions.get(endpoint) != session:
                # A new registration, or one from a new address (a NoSec reconnect
                # is a new session, spec §10): the old observation is gone.
                self._sessions[endpoint] = session
                self._forget_observation(endpoint)
        if event.kind in ("registered", "updated") and event.endpoint is not None:
            if event.kind == "registered" or event.endpoint not in self._observed:
                self._add("server", f"{event.kind} {event.endpoint}")
            if (
                self.scenario.notify is not None
                and event.endpoint not in self._observed
                and event.endpoint not in self._observing
            ):
                self._observing.add(event.endpoint)
                self._spawn(self._observe(event.endpoint))
        elif event.kind in ("deregistered", "expired"):
            self._add("server", f"{event.kind} {event.endpoint}")

    def _forget_observation(self, endpoint: str) -> None:
        key = self._observed.pop(endpoint, None)
        if key is not None and self._loop is not None:
            self._server.core.cancel_request(key, self._loop.time())

    async def _observe(self, endpoint: str) -> None:
        """What an LwM2M server does after a registration: observe (again)."""
        server = self._server
        msg = Message(
            type=MessageType.CON,
            code=Code.GET,
            options=make_options(path=list(OBSERVED_PATH), observe=0),
        )
        try:
            result = await server.request(
                endpoint, msg, timeout=server.core.params.max_transmit_wait, keep_open=True
            )
        except (LookupError, TimeoutError, asyncio.CancelledError):
            return  # not registered (any more), or no answer: the next registration retries
        finally:
            self._observing.discard(endpoint)
        response = result.result.response
        if response is not None and response.observe is not None:
            self._observed[endpoint] = result.key
            self._add("server", f"observing {endpoint} /{'/'.join(OBSERVED_PATH)}")

    async def _produce(self, spec: NotifySpec) -> None:
        stop = spec.stop
        if stop is None:
            stop = max(spec.start, self.scenario.duration - (self.scenario.bound or 0.0))
        await asyncio.sleep(self.scaled(spec.start))
        while self.now() < self.scaled(stop):
            for client, objects in zip(self._clients, self._objects, strict=True):
                assert self._loop is not None
                if objects.produce(client.now()):
                    client.poll()
            await asyncio.sleep(self.scaled(spec.every))

    # ------------------------------------------------------------------ verdict
    def _collect(self) -> None:
        core = self._server.core
        assert isinstance(core, ObservingCore)
        for report, client, objects in zip(self.reports, self._clients, self._objects, strict=True):
            ssid = client.config.servers[0].short_server_id
            report.produced = objects.produced
            report.unobserved = objects.unobserved
            delivery = core.received.get(report.endpoint, Delivery())
            report.delivered = delivery.count
            report.out_of_order = delivery.out_of_order
            report.store_dropped = client.engine.dropped_notifications(ssid)
            report.still_stored = len(client.engine.stored_notifications(ssid))


def run_scenario(
    scenario: Scenario, on_entry: Callable[[TimelineEntry], None] | None = None
) -> Verdict:
    """Run ``scenario`` on a fresh event loop and return the verdict."""
    return asyncio.run(ScenarioRunner(scenario, on_entry).run())


__all__ = ["ScenarioRunner", "TimelineEntry", "run_scenario"]
