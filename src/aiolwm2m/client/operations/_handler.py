"""The façade the engine and the runtime talk to; each operation lives in a part.

:class:`OperationHandler` keeps the engine's ``DataModel`` protocol, the
observe ``Sampler`` protocol and the runtime side (jobs, actions, wakeup)
here, and dispatches a server's request (after :class:`Transfers` handled
its blocks) to :class:`Reader`, :class:`Writer`, :class:`Instances` or
:class:`Discovery`. Internal to :mod:`aiolwm2m.client.operations`, which
re-exports the class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client.engine import Notification
from aiolwm2m.client.observe import ObservedPathGone, Observer, ObserveSettings, SamplePending
from aiolwm2m.client.operations._answers import (
    HANDLED,
    Deferred,
    HookFailed,
    Reply,
    Result,
    error,
    later,
)
from aiolwm2m.client.operations._blockwise import BlockwiseSettings, Transfers
from aiolwm2m.client.operations._discovery import Discovery
from aiolwm2m.client.operations._instances import Instances
from aiolwm2m.client.operations._model import HIDDEN_OBJECTS, Model
from aiolwm2m.client.operations._reading import AWAITING, AwaitHook, Reader, hook_answer
from aiolwm2m.client.operations._types import (
    CancelObserve,
    ClientAction,
    Job,
    ObjectsChanged,
    SendError,
)
from aiolwm2m.client.operations._writing import Writer
from aiolwm2m.coap.message import Code, Message, is_success
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.attributes import Attributes
from aiolwm2m.lwm2m.formats import ContentFormat, encode
from aiolwm2m.lwm2m.objects import (
    AccessControl,
    ConnectivityInstance,
    DeviceInstance,
    HostInfo,
    ServerCallbacks,
    add_server_instances,
)
from aiolwm2m.lwm2m.objects.server import (
    DEFAULT_PMAX,
    DEFAULT_PMIN,
    MUTE_SEND,
    SERVER_OBJECT,
    SHORT_SERVER_ID,
)
from aiolwm2m.lwm2m.path import Path, PathLevel
from aiolwm2m.lwm2m.tree import NotFoundError, ObjectTree
from aiolwm2m.lwm2m.values import Record, joined_records

__all__ = ["ANNOUNCED_FORMATS", "SEND_FORMATS", "OperationHandler"]

#: The ``ct`` of the Register root link: the 1.1 value formats beyond the
#: mandatory text, opaque and link-format (which go unsaid, as Leshan's client
#: does). LwM2M CBOR (11544) is a 1.2 format, so a 1.1 registration leaves it out.
ANNOUNCED_FORMATS = (
    ContentFormat.CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR,
    ContentFormat.TLV,
    ContentFormat.OMA_JSON,
)

#: Content formats a Send payload may use (LwM2M 1.1 Transport: SenML only).
SEND_FORMATS = frozenset({ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR})


#: What :meth:`OperationHandler.sample` passes while no hook is awaited.
_NOTHING_AWAITED: Mapping[Path, Any] = MappingProxyType({})


class OperationHandler:
    """The client data model as the engine sees it; also the observe :class:`Sampler`.

    ``access`` enforces Access Control (give the one from
    :func:`~aiolwm2m.lwm2m.objects.build_default_tree`); without it every
    server has every right, as the spec says for a single server.
    """

    def __init__(
        self,
        tree: ObjectTree,
        *,
        access: AccessControl | None = None,
        observe: ObserveSettings | None = None,
        blockwise: BlockwiseSettings | None = None,
    ) -> None:
        self.tree = tree
        self.access = access if access is not None else AccessControl(tree, enabled=False)
        #: What new /1 instances call back into (set by :func:`default_objects`).
        self.server_callbacks = ServerCallbacks()
        #: Whether the client has a Bootstrap-Server account now, asked at each
        #: Execute of the Bootstrap-Request Trigger (/1/x/9, 4.05 without one): the
        #: engine's, once one drives this handler (:meth:`follow_bootstrap_account`);
        #: without an engine nothing could carry the bootstrap out, so none.
        self.bootstrap_account_present: Callable[[], bool] = lambda: False
        self.observer = Observer(self, observe)
        # Asked at every poll: a live view of the observations (how many, whether
        # any) and the bound method listing them, made once instead of per poll.
        self._observed = self.observer.keys()
        self._observations = self.observer.observations
        #: The engine's timer protocol is the observer's own: ``next_timer`` is asked
        #: after every input, so no method stands in between.
        self.next_timer: Callable[[], float | None] = self.observer.next_timer
        self.handle_timer: Callable[[float], None] = self.observer.handle_timer
        self.blockwise = blockwise if blockwise is not None else BlockwiseSettings()
        model = Model(tree, self.access)
        self._model = model
        self._transfers = Transfers(model, self.blockwise)
        self._reader = Reader(model, self.observer, self._transfers, self._observation_cancelled)
        self._writer = Writer(model)
        self._instances = Instances(model, self._writer)
        self._discovery = Discovery(model, self.observer)
        self._jobs: list[Job] = []
        # Answers of async read hooks awaited for observations (_reading.Fresh); None
        # while there are none, so a device without such hooks pays nothing for it.
        self._fresh: dict[Path, Any] | None = None
        self._actions: list[ClientAction] = []
        self._wakeup: Callable[[], None] | None = None
        self._busy = False
        # The last object list built, by (LwM2M version, tree structure version): a device
        # that cannot reach its server re-sends the same list with every Register.
        self._payload: tuple[tuple[str, int], bytes] | None = None
        # The initial state is no change: the object list goes out with Register.
        # Objects and instances added or removed since show as a new structure
        # version, compared at every poll (no call while it stays the same).
        self._structure_seen = tree.structure_version
        tree.take_changes()

    # ------------------------------------------------------------------ runtime side
    def attach_host(self, host: HostInfo) -> None:
        """Give the Device and Connectivity objects the machine to report (the runtime's).

        Instances that already have a host (the application chose one) keep it.
        """
        for node in self.tree.objects.values():
            for inst in node.instances.values():
                if isinstance(inst, DeviceInstance | ConnectivityInstance) and inst.host is None:
                    inst.host = host

    def take_jobs(self) -> list[Job]:
        out, self._jobs = self._jobs, []
        return out

    def take_actions(self) -> list[ClientAction]:
        version = self.tree.structure_version
        if version != self._structure_seen:
            self._structure_seen = version
            self._actions.append(ObjectsChanged())
        out, self._actions = self._actions, []
        return out

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        """``callback`` runs when the application changed a value (outside a request).

        It is the tree's listener itself, nothing in between (it runs for every
        value set); :meth:`handle_request` takes it away while a request runs.
        """
        self._wakeup = callback
        if not self._busy:
            self.tree.set_listener(callback)

    def queue_action(self, action: ClientAction) -> None:
        self._actions.append(action)

    def _observation_cancelled(self, ssid: int, token: bytes) -> None:
        self._actions.append(CancelObserve(ssid, token))

    # ------------------------------------------------------------------ engine protocol
    def accounts_changed(self, accounts: Sequence[ServerAccount]) -> None:
        """The engine's server set changed (Bootstrap-Finish, restored state): /1 follows.

        Every Server instance is rebuilt from ``accounts`` so servers read, and
        Register lists, the accounts the client really uses, under the instance
        ids the Bootstrap-Server wrote them with; each server owns its own
        instance when Access Control is on.
        """
        for iid in self.tree.instance_ids().get(SERVER_OBJECT, []):
            self.tree.remove_instance(SERVER_OBJECT, iid)
        add_server_instances(self.tree, self.access, accounts, self.server_callbacks)

    def follow_bootstrap_account(self, present: Callable[[], bool]) -> None:
        """The engine says whether it has a Bootstrap-Server account (``present()``).

        Asked, not copied: the engine's account is the one source of truth, and
        it changes after the configuration this handler was built from (a
        bootstrap rewrites it, the Account Timeout /0/x/12 purges it, invalid
        parameters drop it), so /1/x/9 answers as the client is now.
        """
        self.bootstrap_account_present = present

    def registration_payload(self, lwm2m_version: str) -> bytes:
        """The Register/Update object list; as 1.1 it opens with the root link announcing
        the content formats the client reads and writes (Core §6.2.1), so a server does
        not fall back to TLV. A 1.0 server gets the plain list it knows."""
        key = (lwm2m_version, self.tree.structure_version)
        if self._payload is not None and self._payload[0] == key:
            return self._payload[1]
        formats = ANNOUNCED_FORMATS if lwm2m_version != "1.0" else ()
        links = linkformat.registration_links(
            self.tree.instance_ids(), self.tree.versions(), content_formats=formats
        )
        payload = linkformat.encode(links)
        self._payload = (key, payload)
        return payload

    def handle_request(self, ssid: int, request: Message, now: float) -> Message | None:
        # Changes made before this request must not count against observations it starts.
        self._feed_changes(now)
        self._busy = True
        self.tree.set_listener(None)  # what the request changes is collected after it
        try:
            result = self._transfers.around(ssid, request, now, self._dispatch)
        except HANDLED as exc:
            self._refused(ssid, request)
            return error(exc)
        finally:
            self._busy = False
            self.tree.set_listener(self._wakeup)
        if isinstance(result, Message):
            return result
        self._jobs.append(Job(ssid, request, self._later(ssid, request, result)))
        return None

    async def _later(self, ssid: int, request: Message, deferred: Deferred) -> Message:
        response = await later(deferred)
        if not is_success(response.code):
            self._refused(ssid, request)
        return response

    def _refused(self, ssid: int, request: Message) -> None:
        """An Observe (re-)registration answered with an error ends the observation by its token.

        The server takes the error as the end of that token's observation (RFC
        7641 §3.2); notifying it under an observation it re-registered would
        only draw Resets.
        """
        if request.observe == 0:
            self._reader.cancel(ssid, request.token)

    def drop_observations(self, ssid: int) -> None:
        self.observer.drop(ssid)

    def cancel_observation(self, ssid: int, token: bytes, reason: str) -> bool:
        return self.observer.remove(ssid, token)

    def take_notifications(self, now: float) -> list[Notification]:
        if not self._observed and not self.observer.busy:
            # Nothing observed: a change concerns nobody (an Observe starting later
            # must not count it either), and there is nothing to sample.
            self.tree.take_changes()
            return []
        self._feed_changes(now)
        fresh = self._fresh
        if fresh is not None and (answered := [p for p, v in fresh.items() if v is not AWAITING]):
            self.observer.resume(now)  # hooks answered: the observations waiting for them run
            for path in answered:  # in place: hooks still awaited write into this dict
                del fresh[path]
            if not fresh:
                self._fresh = None
        notes = self.observer.take_notifications(now)
        self._transfers.first_blocks(notes, self._observations, len(self._observed), now)
        return notes

    def _feed_changes(self, now: float) -> None:
        changes = self.tree.take_changes()
        for path in changes:
            ids = path.ids
            if ids and ids[0] == SERVER_OBJECT:  # rare: /1 is written by its server
                self._server_changed(path, now)
        self.observer.values_changed(changes, now)

    def _server_changed(self, path: Path, now: float) -> None:
        """A Default Minimum/Maximum Period (/1/x/2, /1/x/3) governs that server's
        observations that set no pmin/pmax (Core §5.1.2), like the attributes a
        Write-Attributes stores, so running observations follow the new value.

        Done before the value changes of the same batch are fed, so a change
        reported with the new period is already held back by it.
        """
        ids = path.ids
        if len(ids) < 2 or (len(ids) > 2 and ids[2] not in (DEFAULT_PMIN, DEFAULT_PMAX)):
            return
        node = self.tree.objects.get(SERVER_OBJECT)
        inst = node.instances.get(ids[1]) if node is not None else None
        ssid = inst.values.get(SHORT_SERVER_ID) if inst is not None else None
        if isinstance(ssid, int):
            self.observer.attributes_changed(ssid, now)

    # ------------------------------------------------------------------ Sampler protocol
    def sample(
        self, ssid: int, paths: Sequence[Path], content_format: int
    ) -> tuple[bytes, list[Record]]:
        """Values as a Read gives them; an async read hook is awaited (:class:`SamplePending`
        until it answered, then the observation runs again, see :meth:`take_notifications`)."""
        reader = self._reader
        fresh = self._fresh or _NOTHING_AWAITED  # None, or a dict that is never left empty
        try:
            if len(paths) == 1:
                return reader.sample(ssid, paths[0], fresh, content_format)
            records = joined_records(reader.records(ssid, path, fresh) for path in paths)
            return encode(content_format, records, Path()), records
        except (NotFoundError, Reply, HookFailed) as exc:
            raise ObservedPathGone(str(exc)) from exc
        except AwaitHook as hook:
            if hook.awaitable is not None:
                if self._fresh is None:
                    self._fresh = {}
                self._fresh[hook.path] = AWAITING
                job = hook_answer(self._fresh, hook.path, hook.awaitable)
                self._jobs.append(Job(ssid, None, job))
            raise SamplePending(f"{hook.path}: awaiting its read hook") from None

    def attributes(self, ssid: int, path: Path) -> Attributes:
        return self._discovery.attributes(ssid, path)

    # ------------------------------------------------------------------ Send
    def send_payload(
        self, ssid: int, paths: Sequence[Path | str], content_format: int, time: float
    ) -> bytes:
        """The SenML body of a Send of ``paths`` to ``ssid``, stamped with ``time``.

        Values are sampled as for a notification (an async read hook gives its
        last stored value). Raises :class:`SendError` when server ``ssid`` set
        Mute Send (/1/x/23), for a path it may not read or that does not
        exist, and for a format other than SenML JSON (110) / CBOR (112).
        """
        if content_format not in SEND_FORMATS:
            raise SendError(f"Send uses SenML JSON (110) or CBOR (112), not {content_format}")
        if self._model.server_value(ssid, MUTE_SEND) is True:
            raise SendError(f"server {ssid} muted Send (/1/x/{MUTE_SEND})")
        if not paths:
            raise SendError("Send needs at least one path")
        records: list[Record] = []
        try:
            for item in paths:
                path = Path.parse(item) if isinstance(item, str) else item
                if path.is_root or path.object_id in HIDDEN_OBJECTS:
                    raise NotFoundError(f"{path} cannot be sent")
                self.tree.check_exists(path)
                records.extend(
                    self._reader.finish_read(self._reader.collect(ssid, path, sync=True))
                )
        except HANDLED as exc:
            raise SendError(f"cannot send: {exc}") from exc
        stamped = [record.with_time(time) for record in records]
        return encode(content_format, stamped, Path())

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, ssid: int, request: Message, now: float) -> Result:
        code = request.code
        segments = request.uri_path
        path = Path.from_segments(segments) if segments else Path()
        if path.object_id in HIDDEN_OBJECTS:
            raise Reply(Code.NOT_FOUND, f"{path} is not exposed to servers")
        observe = request.observe
        if code == Code.GET:
            if request.accept == ContentFormat.LINK_FORMAT:
                return self._discovery.discover(ssid, path)
            return self._reader.read(ssid, request, path, observe, now)
        if code == Code.FETCH:
            return self._reader.read_composite(ssid, request, path, observe, now)
        if code == Code.IPATCH:
            return self._writer.write_composite(ssid, request, path)
        if code == Code.PUT:
            if not request.payload and request.content_format is None and request.uri_query:
                return self._discovery.write_attributes(ssid, request, path, now)
            return self._writer.write(ssid, request, path, replace=True)
        if code == Code.POST:
            if path.level is PathLevel.OBJECT:
                return self._instances.create(ssid, request, path)
            if path.level is PathLevel.RESOURCE:
                rdef = self.tree.resource_def(path)
                if rdef.operations.executable or not rdef.multiple:
                    return self._writer.execute(ssid, request, path)
            return self._writer.write(ssid, request, path, replace=False)
        if code == Code.DELETE:
            return self._instances.delete(ssid, path)
        raise Reply(Code.METHOD_NOT_ALLOWED, f"method {code} not supported")
