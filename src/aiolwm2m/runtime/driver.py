"""What every runtime does with the engine, written once (internal: use :class:`Client`).

A runtime supplies a clock, a way to open links and a way to set one timer;
:class:`EngineDriver` carries out the engine's link actions, delivers its
events to subscribers and re-arms the timer. The asyncio runtime and the
simulated (virtual clock) runtime are both thin subclasses, so tests on the
virtual clock exercise exactly the code path production uses.

Applications never see a driver: :class:`~aiolwm2m.runtime.aio.Client` and
:class:`~aiolwm2m.runtime.sim.SimClient` *hold* one (as aioquic's protocol
holds its ``_quic`` connection) and show only :class:`ClientSurface`, the
verbs and read-only accessors both share, plus their own lifecycle verbs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from aiolwm2m.client import events as ev
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import (
    ClientEngine,
    CloseLink,
    DataModel,
    LinkFailure,
    OpenLink,
    SendDatagram,
    ServerState,
    Snapshot,
)
from aiolwm2m.client.operations import DataModelRuntime, Job, SendError, default_objects
from aiolwm2m.coap.message import Code, Message
from aiolwm2m.errors import NotAllowedError
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.runtime.host import system_host
from aiolwm2m.runtime.links import Link
from aiolwm2m.runtime.storage import (
    Store,
    StoreReadError,
    StoreWriteError,
    factory_reset,
    open_store,
)
from aiolwm2m.runtime.wiretap import WireTap, trace, trace_link
from aiolwm2m.runtime.wiretap import log as _trace_log

__all__ = ["ClientSurface", "EngineDriver", "EventCallback"]

log = logging.getLogger("aiolwm2m.client")
_DEBUG = logging.DEBUG

EventCallback = Callable[[ev.Event], None]


class EngineDriver(ABC):
    """Runs a :class:`ClientEngine` against some clock and network."""

    def __init__(
        self,
        config: ClientConfig,
        objects: DataModel | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.objects = objects if objects is not None else default_objects(config)
        self.engine = ClientEngine(config, self.objects, rng=rng or random.Random())
        # The data model's async hooks, engine actions and value-change wake-ups.
        self._data_model = self.objects if isinstance(self.objects, DataModelRuntime) else None
        # Created with the first async hook job: an empty set is 216 bytes a device.
        self._job_tasks: set[asyncio.Task[None]] | None = None
        if self._data_model is not None:
            self._data_model.set_wakeup(self.poll)
            self._data_model.attach_host(system_host())
        self._links: dict[int, Link] = {}
        self._generation: dict[int, int] = {}
        self._callbacks: list[EventCallback] = []
        # Copies of every datagram and link outcome (metrics); the -vv trace is always fed.
        self.wire_taps: list[WireTap] = []
        self._timer_at: float | None = None
        #: Set once the engine is idle while :meth:`wait_idle` is waited for.
        self._idle: asyncio.Event | None = None
        #: While a timer's work runs: how late the runtime ran it (what a fleet's
        #: Update lateness is); None otherwise.
        self.timer_lateness: float | None = None
        self._started_at = 0.0
        self._started = False
        self._stopped = False
        # Persistent state ([storage] path): read now, restored and reported at start.
        self._store: Store | None = None
        self._restored = Snapshot()
        self._storage_errors: list[StoreReadError] = []
        if config.storage_path is not None:
            self._store, self._restored, self._storage_errors = open_store(config.storage_path)
        self._saved_version = 0
        self._time_offset = 0.0  # wall clock - engine clock, fixed at start

    # ------------------------------------------------------------------ runtime hooks
    @abstractmethod
    def now(self) -> float: ...

    @abstractmethod
    def _begin_open(self, action: OpenLink, generation: int) -> None:
        """Start opening a link; finish with :meth:`_link_opened` or :meth:`_link_failed`."""

    @abstractmethod
    def _cancel_open(self, link_id: int) -> None: ...

    @abstractmethod
    def _set_timer(self, when: float | None) -> None: ...

    def wall_time(self) -> float:
        """Seconds since the epoch: stored times use it so they survive a reboot."""
        return time.time()

    # ------------------------------------------------------------------ application API
    def start_engine(self) -> None:
        now = self._started_at = self.now()
        self._started = True
        for exc in self._storage_errors:
            self.emit(ev.Error(now, exc.code, detail=str(exc)))
        self._time_offset = self.wall_time() - now
        self.engine.restore(self._restored.shifted(-self._time_offset))
        self._restored = Snapshot()
        self._saved_version = self.engine.state_version
        self.engine.start(now)
        self._pump()

    def factory_reset(self) -> None:
        """Clear the persistent state: the next start runs from the factory configuration.

        Allowed before start and after stop only; a running engine would write
        its state straight back. Raises :class:`NotAllowedError` (and reports
        ``not_allowed``) otherwise, or ``StoreWriteError`` if the store refuses.
        """
        if self._started and not self._stopped:
            detail = "factory_reset() while running"
            self.emit(ev.Error(self.now(), ev.ErrorCode.NOT_ALLOWED, detail=detail))
            raise NotAllowedError("factory_reset() while the client runs: stop it first")
        self._restored = Snapshot()
        if self._store is not None:
            self._store.clear()
        elif self.config.storage_path is not None:
            factory_reset(self.config.storage_path)

    @property
    def store(self) -> Store | None:
        """The open persistent store (``[storage] path``), for state kept beside the engine's
        (the firmware record); None without persistence or when the store is unusable."""
        return self._store

    def all_connections_failed(self) -> bool:
        return self.engine.all_connections_failed()

    def schedule_reconnect(self) -> None:
        self.engine.schedule_reconnect(self.now())
        self._pump()

    def enable_server(self, ssid: int) -> None:
        self.engine.enable_server(ssid, self.now())
        self._pump()

    def disable_server(self, ssid: int, timeout: float | None = None) -> None:
        self.engine.disable_server(ssid, self.now(), timeout)
        self._pump()

    def enter_offline(self) -> None:
        """Close every connection and store notifications until :meth:`exit_offline`."""
        self.engine.enter_offline(self.now())
        self._pump()

    def exit_offline(self) -> None:
        self.engine.exit_offline(self.now())
        self._pump()

    def network_changed(self) -> None:
        """The network is back or changed: pending reconnect/retry waits end within
        ``[reconnect] network_change_window`` s (jittered; spec §2)."""
        self.engine.network_changed(self.now())
        self._pump()

    def trigger_update(self, ssid: int | None = None) -> None:
        self.engine.trigger_update(self.now(), ssid)
        self._pump()

    def objects_changed(self) -> None:
        self.engine.objects_changed(self.now())
        self._pump()

    def start_send(
        self,
        paths: Sequence[Path | str],
        *,
        ssid: int | None = None,
        content_format: int = ContentFormat.SENML_CBOR,
    ) -> int:
        """LwM2M Send of the current values of ``paths``; returns the send id.

        The outcome arrives as a ``send_finished`` event with that id. ``ssid``
        may be omitted when exactly one server is configured. Raises
        :class:`NotAllowedError` (also reported as ``not_allowed``) when the
        data model cannot build the payload: Mute Send set by the server,
        unknown or unreadable paths, a non-SenML format, no such server.
        """
        now = self.now()
        servers = sorted(self.engine.server_states())
        if ssid is None and len(servers) == 1:
            ssid = servers[0]
        try:
            if ssid is None or ssid not in servers:
                raise SendError(f"send(): name one of the servers {servers}, not {ssid}")
            if self._data_model is None:
                raise SendError("send() needs the client's data model (client.operations)")
            payload = self._data_model.send_payload(
                ssid, paths, content_format, now + self._time_offset
            )
        except SendError as exc:
            self.emit(
                ev.Error(now, ev.ErrorCode.NOT_ALLOWED, ssid, ev.Request.SEND, detail=str(exc))
            )
            raise NotAllowedError(str(exc)) from exc
        send_id = self.engine.send(ssid, payload, content_format, now)
        self._pump()
        return send_id

    def poll(self) -> None:
        """The data model has new notifications (a value changed): send or store them now.

        Before start there is nothing to send yet (objects added before
        ``start()`` go out with the Register), and no clock to read.
        """
        if self._started and not self._stopped:
            self.engine.poll(self.now())
            self._pump(polled=True)

    def state(self, ssid: int) -> ServerState:
        return self.engine.server_state(ssid)

    def elapsed(self, t: float) -> float:
        """An event's engine time as seconds since the client started."""
        return t - self._started_at

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    def stop_links(self) -> None:
        """Drop every link and the timer without De-register (a crash or power loss)."""
        self._stopped = True
        self._set_timer(None)
        for link_id in list(self._generation):
            self._cancel_open(link_id)
        for link in self._links.values():
            link.close()
        self._links.clear()

    def wait_idle(self) -> asyncio.Event:
        """An event set as soon as nothing is in flight (now, or after a later input)."""
        idle = self._idle = asyncio.Event()
        if self.engine.idle:
            idle.set()
        return idle

    # ------------------------------------------------------------------ plumbing
    def _pump(self, *, polled: bool = False) -> None:
        """Start the async hook jobs, carry out the engine's link actions, deliver
        its events, re-arm its timer, and tell :meth:`wait_idle` once idle.

        The engine is polled after the jobs (the data model's notifications),
        except when it was ``polled`` just before (a value changed) and no job
        started since: a second poll would find nothing (one poll per value set).
        The engine carries out the data model's other requests itself.
        """
        if self._stopped:
            return
        engine = self.engine
        model = self._data_model
        if model is not None:
            jobs = model.take_jobs()
            for job in jobs:
                self._start_job(job)
            if jobs or not polled:
                engine.poll(self.now())
        # The engine's queues, drained in place (engine.link_actions() and
        # next_event() without their call): one datagram, no event, per notification.
        actions = engine.actions
        batch = actions.copy()
        actions.clear()
        for action in batch:
            if type(action) is SendDatagram:  # nearly every action: no isinstance chain
                link = self._links.get(action.link)
                if link is not None:
                    # Without taps or the DEBUG trace a datagram costs no tap call.
                    if self.wire_taps or _trace_log.isEnabledFor(_DEBUG):
                        self._tap_datagram(action.link, True, action.data)
                    link.send(action.data)
            elif isinstance(action, CloseLink):
                self._close_link(action.link)
            elif isinstance(action, OpenLink):
                self._close_link(action.link)
                self._begin_open(action, self._generation[action.link])
        events = engine.events
        while events:
            self.emit(events.pop(0))
        if self._store is not None and engine.state_version != self._saved_version:
            self._save()
        when = engine.next_timer()
        if when != self._timer_at:
            self._timer_at = when
            self._set_timer(when)
        if self._idle is not None and engine.idle:
            self._idle.set()

    def _save(self) -> None:
        """Write the engine's state; a failure is reported and retried at the next change."""
        assert self._store is not None
        self._saved_version = self.engine.state_version
        try:
            self._store.save(self.engine.snapshot(), self._time_offset)
        except StoreWriteError as exc:
            self.emit(ev.Error(self.now(), exc.code, detail=str(exc)))

    def _start_job(self, job: Job) -> None:
        """Await an async hook on the running event loop, then send its response.

        Without a running loop (the simulated runtime driven synchronously)
        the hook runs at once instead, see :meth:`_run_job_now`.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._run_job_now(job)
            return
        task = loop.create_task(self._finish_job(job))
        tasks = self._job_tasks
        if tasks is None:
            tasks = self._job_tasks = set()
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _run_job_now(self, job: Job) -> None:
        """Run an async hook to completion without an event loop (deterministic).

        An ``async def`` hook that only computes finishes in one step and is
        answered as usual. One that waits for IO or time cannot run on the
        virtual clock: it is stopped, answered 5.00 and reported as an
        ``internal_error`` event; such hooks need the asyncio runtime. An
        observation's read hook (a job without a request) answers nothing: the
        engine poll after the jobs sends the notification (with the stored
        value if the hook could not finish).
        """
        try:
            job.coroutine.send(None)
        except StopIteration as done:
            response: Message | None = done.value
        else:
            job.coroutine.close()
            response = Message(code=Code.INTERNAL_SERVER_ERROR, payload=b"internal error")
        if job.request is None or response is None:
            if response is not None:
                self._hook_failed("an observed resource", job.ssid)
            return
        if response.code == Code.INTERNAL_SERVER_ERROR:
            self._hook_failed("/" + "/".join(job.request.uri_path), job.ssid)
        self.engine.respond(job.ssid, job.request, response, self.now())

    def _hook_failed(self, target: str, ssid: int) -> None:
        detail = (
            f"async data model hook for {target} failed without an event loop "
            "(hooks that await IO or time need the asyncio runtime)"
        )
        log.error("%s", detail)
        self.emit(ev.Error(self.now(), ev.ErrorCode.INTERNAL_ERROR, ssid, detail=detail))

    async def _finish_job(self, job: Job) -> None:
        response = await job.coroutine
        if not self._stopped:
            if job.request is not None and response is not None:
                self.engine.respond(job.ssid, job.request, response, self.now())
            else:  # an observation's read hook answered: its notification goes out now
                self.engine.poll(self.now())
            self._pump()

    def emit(self, event: ev.Event) -> None:
        """Hand ``event`` to every subscriber, in order.

        The engine's events come through here; so do those of components that
        run beside it and report through the client's stream (the firmware
        update runner, storage errors). A failing callback is logged, never raised.
        """
        log.debug("event %s", event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:  # an application callback must not break the client
                log.exception("event callback failed")

    def _on_timer(self) -> None:
        now = self.now()
        if self._timer_at is not None:
            self.timer_lateness = now - self._timer_at
        self._timer_at = None
        self.engine.handle_timer(now)
        self._pump()
        self.timer_lateness = None

    def _close_link(self, link_id: int) -> None:
        self._generation[link_id] = self._generation.get(link_id, 0) + 1
        self._cancel_open(link_id)
        link = self._links.pop(link_id, None)
        if link is not None:
            link.close()

    def _current(self, link_id: int, generation: int) -> bool:
        return not self._stopped and self._generation.get(link_id) == generation

    def _tap_datagram(self, link_id: int, outgoing: bool, data: bytes) -> None:
        trace(link_id, outgoing, data)
        for tap in self.wire_taps:
            tap.datagram(link_id, outgoing, data, self.now())

    def _on_datagram(self, link_id: int, generation: int, data: bytes) -> None:
        if self._current(link_id, generation):
            self._tap_datagram(link_id, False, data)
            self.engine.datagram_received(link_id, data, self.now())
            self._pump()

    def _on_link_error(self, link_id: int, generation: int, exc: Exception) -> None:
        if self._current(link_id, generation):
            log.debug("link %d: socket error %r", link_id, exc)
            self.engine.link_error(link_id, self.now())
            self._pump()

    def _link_opened(self, link_id: int, generation: int, link: Link) -> None:
        if not self._current(link_id, generation):
            link.close()
            return
        self._links[link_id] = link
        trace_link(link_id, "opened" + (" (DTLS session)" if link.secure else ""))
        for tap in self.wire_taps:
            tap.link_up(link_id, link.secure, self.now())
        self.engine.link_up(link_id, self.now(), secure=link.secure, resumed=link.resumed)
        self._pump()

    def _handshake_progress(
        self, link_id: int, generation: int, attempt: int, next_timeout: float, resuming: bool
    ) -> None:
        """A DTLS handshake flight went out: the first (attempt 1) or a retransmission."""
        if not self._current(link_id, generation):
            return
        if attempt <= 1:
            self.engine.handshake_started(link_id, self.now(), resuming=resuming)
        else:
            self.engine.handshake_retransmitted(link_id, self.now(), attempt, next_timeout)
        self._pump()

    def _link_failed(
        self, link_id: int, generation: int, failure: LinkFailure, detail: str
    ) -> None:
        if self._current(link_id, generation):
            trace_link(link_id, f"failed to open: {failure.value}: {detail}")
            for tap in self.wire_taps:
                tap.link_failed(link_id, failure, self.now())
            self.engine.link_failed(link_id, failure, self.now(), detail)
            self._pump()


D = TypeVar("D", bound=EngineDriver)
_Verb = TypeVar("_Verb", bound=Callable[..., object])


def _documented_by(method: Callable[..., object]) -> Callable[[_Verb], _Verb]:
    """Give a surface verb the docstring of the driver method that does its work.

    The verb only delegates, so what it does is written once, beside the code
    that does it, and ``help(Client.start_send)`` still says it.
    """

    def document(verb: _Verb) -> _Verb:
        verb.__doc__ = method.__doc__
        return verb

    return document


class ClientSurface(Generic[D]):
    """What :class:`~aiolwm2m.runtime.aio.Client` and :class:`~aiolwm2m.runtime.sim.SimClient`
    share: the verbs that only enqueue work, and read-only accessors.

    One rule for the verbs: a verb that only tells the engine something is
    synchronous (it returns once the engine took it, the work runs later on
    the loop or the virtual clock); a verb that waits for an outcome is
    ``async`` on :class:`Client`. The driver doing the IO is held in
    ``_driver`` and is no API.

    Accessors kept on purpose: ``config``, ``objects`` (the data model the
    application changes values in), ``store`` (state kept beside the engine's,
    such as the firmware record), ``state(ssid)``/``registered()``/
    ``all_connections_failed()`` (what the client is doing), ``now()``/``elapsed()``
    (the clock of event times), ``wire_taps``/``timer_lateness`` (metrics and
    fleets), and ``engine``, the sans-IO core, for advanced uses and tests only.
    """

    __slots__ = ("_driver",)

    def __init__(self, driver: D) -> None:
        self._driver = driver

    # ------------------------------------------------------------------ accessors
    @property
    def config(self) -> ClientConfig:
        return self._driver.config

    @property
    def objects(self) -> DataModel:
        """The data model (by default an ``OperationHandler`` over ``objects.tree``)."""
        return self._driver.objects

    @property
    def engine(self) -> ClientEngine:
        """The sans-IO engine: for advanced uses and tests; drive the client through the verbs."""
        return self._driver.engine

    @property
    def store(self) -> Store | None:
        """The open persistent store (``[storage] path``), None without persistence."""
        return self._driver.store

    @property
    def wire_taps(self) -> list[WireTap]:
        """Append a :class:`~aiolwm2m.runtime.wiretap.WireTap` to see every datagram (metrics)."""
        return self._driver.wire_taps

    @property
    def timer_lateness(self) -> float | None:
        """While a timer's work runs: how late the runtime ran it; None otherwise."""
        return self._driver.timer_lateness

    def now(self) -> float:
        """The client's clock: the one every event's ``time`` is on."""
        return self._driver.now()

    def elapsed(self, t: float) -> float:
        """An event's ``time`` as seconds since the client started."""
        return self._driver.elapsed(t)

    def state(self, ssid: int) -> ServerState:
        return self._driver.state(ssid)

    def registered(self, ssid: int | None = None) -> bool:
        """Registered with server ``ssid`` (any server when None)."""
        return self._driver.engine.registered(ssid)

    def all_connections_failed(self) -> bool:
        """No server has a usable connection: the outer reconnect loop runs."""
        return self._driver.all_connections_failed()

    # ------------------------------------------------------------------ verbs that enqueue
    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns the unsubscribe function.

        Subscribe *before* :meth:`start` to see every event from the first
        (``state_changed`` to ``registering`` is reported during ``start()``).
        """
        return self._driver.subscribe(callback)

    def emit(self, event: ev.Event) -> None:
        """Report ``event`` through this client's stream (components beside the engine)."""
        self._driver.emit(event)

    def trigger_update(self, ssid: int | None = None) -> None:
        """Send an Update to ``ssid`` (every registered server when None)."""
        self._driver.trigger_update(ssid)

    @_documented_by(EngineDriver.network_changed)
    def network_changed(self) -> None:
        self._driver.network_changed()

    def schedule_reconnect(self) -> None:
        """Reconnect every failed server now (ends the outer loop's wait)."""
        self._driver.schedule_reconnect()

    def enable_server(self, ssid: int) -> None:
        self._driver.enable_server(ssid)

    def disable_server(self, ssid: int, timeout: float | None = None) -> None:
        """De-register from ``ssid``, away ``timeout`` s (None: the account's Disable Timeout)."""
        self._driver.disable_server(ssid, timeout)

    @_documented_by(EngineDriver.enter_offline)
    def enter_offline(self) -> None:
        self._driver.enter_offline()

    def exit_offline(self) -> None:
        self._driver.exit_offline()

    def objects_changed(self) -> None:
        """Objects or instances were added or removed: registered servers get an Update."""
        self._driver.objects_changed()

    def poll(self) -> None:
        """Values changed: send or store their notifications now (the default data model
        does this by itself; a custom one calls it)."""
        self._driver.poll()

    @_documented_by(EngineDriver.start_send)
    def start_send(
        self,
        paths: Sequence[Path | str],
        *,
        ssid: int | None = None,
        content_format: int = ContentFormat.SENML_CBOR,
    ) -> int:
        return self._driver.start_send(paths, ssid=ssid, content_format=content_format)

    @_documented_by(EngineDriver.factory_reset)
    def factory_reset(self) -> None:
        self._driver.factory_reset()
