"""Server-initiated LwM2M operations on the client's object tree (the engine's ``ObjectTree``).

:class:`OperationHandler` maps a CoAP request to an LwM2M operation (LwM2M 1.1.1
Transport §6.4 / Core §5.4):

============================  =====================================================
GET                           Read; Accept 40: Discover; Observe 0/1: (Cancel) Observe
PUT with payload              Write (replace)
PUT with Uri-Query only       Write-Attributes
POST /oid                     Create (2.01, Location-Path of the new instance)
POST /oid/iid                 Write (partial update)
POST /oid/iid/rid             Execute (E resource) or partial update of a multiple one
DELETE /oid/iid               Delete
FETCH /                       Read-Composite; Observe 0/1: (Cancel) Observe-Composite
iPATCH /                      Write-Composite
============================  =====================================================

Errors are answered, never raised: 4.00 bad payload/arguments/attributes,
4.01 refused by Access Control, 4.04 no such path (or a hidden object: the
Security object is never exposed), 4.05 operation not allowed on the target,
4.06 no acceptable format, 4.15 unsupported Content-Format, 5.00 when an
application hook raises (a hook may raise
:class:`~aiolwm2m.lwm2m.model.InvalidValueError` to refuse a written value:
4.00).

**Async hooks.** Any application hook may return an awaitable. The request
is then not answered at once: :meth:`OperationHandler.handle_request` returns None
(the engine keeps the request for a later ``engine.respond``) and queues a
:class:`Job`. The runtime collects jobs with :meth:`OperationHandler.take_jobs`,
awaits ``job.coroutine`` (which never raises: errors become the response)
and passes its result to ``engine.respond(job.ssid, job.request, response,
now)``. This keeps this module sans-IO: it never touches an event loop.
Observe sampling is synchronous, so an observed resource with an async read
hook notifies its last stored value.

**Block-wise transfers** (RFC 7959, :class:`BlockwiseSettings`). A Read,
Discover or Read-Composite answer larger than the block size (the request's
Block2 size if it names one, else ``block_size``) goes out in Block2 slices
with an ETag; the representation is kept per (server, request) for
``lifetime`` seconds (at most ``max_representations`` of them), so the
following GETs with Block2 NUM > 0 get slices of the same bytes. A request
with Block1 is assembled first (2.31 Continue per block, 4.08 on a gap, 4.13
above ``max_body``) and then handled as one request; its final answer echoes
Block1. The exception is an Opaque Block1 Write to a resource whose instance
is a :class:`~aiolwm2m.lwm2m.tree.BlockSink` (a firmware Package): each block
is handed over as it comes, so the body is never held in memory. A large
notification carries the first block and is continued the same way (RFC
7959 §2.6).

Server object executes and writes that concern the engine (Registration
Update Trigger, Disable, a new lifetime) and instance creation/deletion are
likewise queued as :data:`ClientAction` values for :meth:`take_actions`.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import Notification
from aiolwm2m.client.observe import (
    InvalidObservationError,
    Observation,
    ObservedPathGone,
    Observer,
    ObserveSettings,
)
from aiolwm2m.coap.blockwise import (
    Block1Assembler,
    Block1Result,
    Block1Status,
    BlockwiseError,
    slice_block2,
    szx_for,
)
from aiolwm2m.coap.message import (
    Block,
    CoapDecodeError,
    Code,
    Message,
    OptionNumber,
    encode_uint,
)
from aiolwm2m.errors import ConfigError, Lwm2mError
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.attributes import (
    Attributes,
    InvalidAttributesError,
    effective_attributes,
    parse_query,
    write_attributes,
)
from aiolwm2m.lwm2m.ddf import ObjectRegistry
from aiolwm2m.lwm2m.formats import (
    VALUE_FORMATS,
    ContentFormat,
    ContentFormatError,
    FormatEncodeError,
    UnsupportedFormatError,
    decode,
    encode,
    senml_cbor,
    senml_json,
)
from aiolwm2m.lwm2m.model import InvalidValueError, ResourceType
from aiolwm2m.lwm2m.objects import (
    AccessControl,
    ConnectivityInstance,
    DeviceInfo,
    DeviceInstance,
    HostInfo,
    Right,
    ServerCallbacks,
    add_server_instances,
    build_default_tree,
)
from aiolwm2m.lwm2m.objects.access_control import CREATE_TARGET
from aiolwm2m.lwm2m.objects.server import (
    DEFAULT_PMAX,
    DEFAULT_PMIN,
    MUTE_SEND,
    SERVER_OBJECT,
)
from aiolwm2m.lwm2m.path import Path, PathError, PathLevel
from aiolwm2m.lwm2m.tree import (
    BadArgumentsError,
    BlockSink,
    ExecuteHook,
    Instance,
    NotFoundError,
    ObjectTree,
    OperationNotAllowedError,
    ResourceValue,
    is_awaitable,
    parse_execute_arguments,
)
from aiolwm2m.lwm2m.values import Record

__all__ = [
    "BlockwiseSettings",
    "ClientAction",
    "DataModelRuntime",
    "DisableServer",
    "Job",
    "ObjectsChanged",
    "OperationHandler",
    "RequestBootstrap",
    "SendError",
    "TriggerUpdate",
    "default_objects",
]

#: Objects never exposed to LwM2M servers (Security, OSCORE): answered 4.04.
HIDDEN_OBJECTS = frozenset({0, 21})
_COMPOSITE_FORMATS = frozenset(
    {ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR}
)


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


class SendError(Lwm2mError):
    """A Send cannot be built: Mute Send is on, a path is unknown or unreadable, or
    the format is not SenML."""


@dataclass(frozen=True)
class BlockwiseSettings:
    """RFC 7959 limits of the client's answers to servers (see the module docstring).

    ``block_size`` (16..1024, a power of two) is used when a request names no
    Block2 size; a smaller size a server asks for wins. ``lifetime`` defaults
    to EXCHANGE_LIFETIME: a server fetches the blocks of one answer within it.
    """

    block_size: int = 1024
    max_body: int = 1 << 20
    lifetime: float = 247.0
    max_representations: int = 8

    def __post_init__(self) -> None:
        size = self.block_size
        if not 16 <= size <= 1024 or size & (size - 1):
            raise ConfigError(f"block_size must be a power of two in 16..1024, not {size}")
        if self.max_body < 0 or self.lifetime <= 0 or self.max_representations < 1:
            raise ConfigError("max_body >= 0, lifetime > 0 and max_representations >= 1")

    @property
    def szx(self) -> int:
        return szx_for(self.block_size)


@dataclass
class _Representation:
    """A complete answer being fetched block by block (RFC 7959 §2.4)."""

    code: int
    content_format: int | None
    payload: bytes
    etag: bytes
    expires: float


class _Representations:
    """The Block2 answers kept for continuations; bounded in count and time."""

    def __init__(self, settings: BlockwiseSettings) -> None:
        self._settings = settings
        self._kept: OrderedDict[Hashable, _Representation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Hashable, now: float) -> _Representation | None:
        self._expire(now)
        return self._kept.get(key)

    def keep(self, key: Hashable, response: Message, now: float) -> _Representation:
        self._expire(now)
        found = self._kept.pop(key, None)
        cf = response.content_format
        if found is None or found.payload != response.payload or found.content_format != cf:
            found = _Representation(response.code, cf, response.payload, _etag(response), 0.0)
        found.expires = now + self._settings.lifetime
        self._kept[key] = found
        while len(self._kept) > self._settings.max_representations:
            self._kept.popitem(last=False)
        return found

    def _expire(self, now: float) -> None:
        for key in [k for k, r in self._kept.items() if r.expires <= now]:
            del self._kept[key]


def _etag(response: Message) -> bytes:
    """A content hash, so a regenerated identical answer keeps its ETag across blocks."""
    digest = hashlib.blake2b(response.payload, digest_size=8)
    digest.update(encode_uint(response.content_format or 0))
    return digest.digest()


@dataclass(frozen=True)
class TriggerUpdate:
    """Send an Update to ``ssid`` (Registration Update Trigger, or its account changed)."""

    ssid: int
    account: ServerAccount | None = None


@dataclass(frozen=True)
class DisableServer:
    """Server ``ssid`` executed Disable (/1/x/4): go offline for ``timeout`` seconds."""

    ssid: int
    timeout: float


@dataclass(frozen=True)
class RequestBootstrap:
    """Server ``ssid`` executed Bootstrap-Request Trigger (/1/x/9): bootstrap now."""

    ssid: int


@dataclass(frozen=True)
class ObjectsChanged:
    """Instances were created or deleted: registered servers need an Update."""


ClientAction = TriggerUpdate | DisableServer | RequestBootstrap | ObjectsChanged


@dataclass
class Job:
    """A request whose answer waits for async hooks; see the module docstring."""

    ssid: int
    request: Message
    coroutine: Coroutine[Any, Any, Message]


@runtime_checkable
class DataModelRuntime(Protocol):
    """What a runtime drives beyond the engine's ``ObjectTree`` protocol."""

    def attach_host(self, host: HostInfo) -> None: ...

    def take_jobs(self) -> list[Job]: ...

    def take_actions(self) -> list[ClientAction]: ...

    def set_wakeup(self, callback: Callable[[], None] | None) -> None: ...

    def send_payload(
        self, ssid: int, paths: Sequence[Path | str], content_format: int, time: float
    ) -> bytes: ...


class _Reply(Exception):
    """Internal: stop handling and answer ``code`` (with a diagnostic payload)."""

    def __init__(self, code: Code, detail: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class _HookFailed(Exception):
    """Internal: an application hook raised; answered 5.00."""


@dataclass
class _Deferred:
    """Awaitables from hooks plus the synchronous step that builds the answer."""

    awaitables: list[Awaitable[Any]]
    finish: Callable[[list[Any]], Message]


_Result = Message | _Deferred


@dataclass
class _ServerState:
    attributes: dict[Path, Attributes] = field(default_factory=dict)


def _error_code(exc: Exception) -> Code:
    """HTTP-like mapping of the typed errors to LwM2M response codes."""
    if isinstance(exc, _Reply):
        return exc.code
    if isinstance(exc, NotFoundError | PathError):
        return Code.NOT_FOUND
    if isinstance(exc, OperationNotAllowedError):
        return Code.METHOD_NOT_ALLOWED
    if isinstance(exc, UnsupportedFormatError):
        return Code.UNSUPPORTED_CONTENT_FORMAT
    if isinstance(
        exc,
        ContentFormatError
        | InvalidValueError
        | InvalidAttributesError
        | BadArgumentsError
        | CoapDecodeError
        | ConfigError
        | InvalidObservationError,
    ):
        return Code.BAD_REQUEST
    return Code.INTERNAL_SERVER_ERROR


def _error(exc: Exception) -> Message:
    code = _error_code(exc)
    detail = str(exc) if code != Code.INTERNAL_SERVER_ERROR else "internal error"
    return Message(code=code, payload=detail[:120].encode("utf-8", "replace"))


_HANDLED = (
    _Reply,
    _HookFailed,
    NotFoundError,
    PathError,
    OperationNotAllowedError,
    ContentFormatError,
    InvalidValueError,
    InvalidAttributesError,
    BadArgumentsError,
    CoapDecodeError,
    ConfigError,
    InvalidObservationError,
)


def _call(hook: Callable[..., Any], *args: Any) -> Any:
    """Run an application hook; anything it raises except a value refusal is a 5.00."""
    try:
        return hook(*args)
    except (InvalidValueError, ConfigError, NotFoundError, OperationNotAllowedError):
        raise
    except Exception as exc:
        raise _HookFailed(repr(exc)) from exc


def _content(payload: bytes, content_format: int, observe: int | None = None) -> Message:
    msg = Message(code=Code.CONTENT, payload=payload)
    if observe is not None:
        msg.add(OptionNumber.OBSERVE, encode_uint(observe))
    msg.add(OptionNumber.CONTENT_FORMAT, encode_uint(content_format))
    return msg


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
        self.observer = Observer(self, observe)
        self.blockwise = blockwise if blockwise is not None else BlockwiseSettings()
        # Block-wise state is made when a first transfer needs it: most clients
        # never see one, and a fleet pays for every empty table.
        self._kept: _Representations | None = None
        # (ssid, token) of an observation -> its request's representation key, so a
        # large notification can be continued block-wise like the first answer.
        self._observed: dict[tuple[int, bytes], Hashable] = {}
        self._assembler: Block1Assembler | None = None
        # (ssid, resource path) of a streamed Block1 Write -> (next offset, expiry).
        self._streams: dict[tuple[int, Path], tuple[int, float]] = {}
        self._servers: dict[int, _ServerState] = {}
        self._jobs: list[Job] = []
        self._actions: list[ClientAction] = []
        self._wakeup: Callable[[], None] | None = None
        self._busy = False
        # The last object list built, by (LwM2M version, tree structure version): a device
        # that cannot reach its server re-sends the same list with every Register.
        self._payload: tuple[tuple[str, int], bytes] | None = None
        # The initial state is no change: the object list goes out with Register.
        tree.take_structure_changed()
        tree.take_changes()
        tree.set_listener(self._tree_changed)

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
        if self.tree.take_structure_changed():
            self._actions.append(ObjectsChanged())
        out, self._actions = self._actions, []
        return out

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        """``callback`` runs when the application changed a value (outside a request)."""
        self._wakeup = callback

    def queue_action(self, action: ClientAction) -> None:
        self._actions.append(action)

    def _tree_changed(self) -> None:
        if not self._busy and self._wakeup is not None:
            self._wakeup()

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
        try:
            result = self._blockwise(ssid, request, now)
        except _HANDLED as exc:
            return _error(exc)
        finally:
            self._busy = False
        if isinstance(result, Message):
            return result
        self._jobs.append(Job(ssid, request, self._later(result)))
        return None

    # ------------------------------------------------------------------ block-wise
    def _blockwise(self, ssid: int, request: Message, now: float) -> _Result:
        """RFC 7959 around :meth:`_dispatch`: assemble Block1, slice (or resume) Block2."""
        try:
            block1 = request.block1
            block2 = request.block2
        except CoapDecodeError as exc:
            raise _Reply(Code.BAD_OPTION, f"unreadable block option: {exc}") from exc
        echo: Block1Result | None = None
        if block1 is not None:
            streamed = self._streamed_write(ssid, request, block1, now)
            if streamed is not None:
                return streamed
            echo = self._block1().feed(
                request, now, key=(ssid, Block1Assembler.default_key(request))
            )
            if echo.status is not Block1Status.COMPLETE:
                assert echo.code is not None
                return echo.apply(Message(code=echo.code, payload=echo.reason[:120].encode()))
            assert echo.payload is not None
            request = replace(request, options=list(request.options), payload=echo.payload)
            request.remove(OptionNumber.BLOCK1)
            request.remove(OptionNumber.SIZE1)
        key: Hashable = None
        if request.code in (Code.GET, Code.FETCH):
            key = self._representation_key(ssid, request)
            if block2 is not None and block2.num > 0:
                kept = self._representations().get(key, now)
                if kept is not None:
                    resumed = self._resumed(kept)
                    return self._sliced(key, resumed, block2, request.has(OptionNumber.SIZE2), now)
        result = self._dispatch(ssid, request, now)

        def finish(response: Message) -> Message:
            if echo is not None and echo.block1 is not None:
                echo.apply(response)
            if key is None or response.code != Code.CONTENT:
                return response
            return self._sliced(key, response, block2, request.has(OptionNumber.SIZE2), now)

        if isinstance(result, Message):
            return finish(result)
        inner = result.finish
        return _Deferred(result.awaitables, lambda values: finish(inner(values)))

    def _streamed_write(
        self, ssid: int, request: Message, block: Block, now: float
    ) -> _Result | None:
        """A Block1 Opaque Write to a :class:`BlockSink` resource, handed over block by block.

        None when the request is not one (it is then assembled as usual).
        Blocks must come in order; a repeat of the block just taken (our 2.31
        was lost) gets the same answer, anything else 4.08.
        """
        if request.code not in (Code.PUT, Code.POST):
            return None
        if request.content_format != ContentFormat.OPAQUE:
            return None
        try:
            path = Path.from_segments(request.uri_path)
        except PathError:
            return None
        if path.level is not PathLevel.RESOURCE or path.object_id in HIDDEN_OBJECTS:
            return None
        assert path.object_id is not None and path.instance_id is not None
        rid = path.resource_id
        assert rid is not None
        node = self.tree.objects.get(path.object_id)
        inst = node.instances.get(path.instance_id) if node is not None else None
        if not isinstance(inst, BlockSink) or not inst.streams(rid):
            return None
        if not self.tree.resource_def(path).operations.writable:
            raise _Reply(Code.METHOD_NOT_ALLOWED, f"{path} is not writable")
        self._require(ssid, path, Right.WRITE)
        payload = request.payload
        if len(payload) > block.size or (block.more and len(payload) != block.size):
            raise _Reply(
                Code.BAD_REQUEST, f"block {block.num} carries {len(payload)} bytes for {block.size}"
            )
        key = (ssid, path)
        for stale in [k for k, (_, expires) in self._streams.items() if expires <= now]:
            del self._streams[stale]
        expected = self._streams.get(key)
        offset = block.offset
        if expected is not None and block.more and offset + len(payload) == expected[0]:
            return self._stream_answer(block)  # a repeat of the block just taken
        if block.num != 0 and (expected is None or offset != expected[0]):
            where = "no transfer" if expected is None else f"{expected[0]} bytes taken"
            raise _Reply(Code.REQUEST_ENTITY_INCOMPLETE, f"block at offset {offset}, {where}")
        sink = inst
        result = _call(lambda: sink.write_block(rid, offset, payload, block.more))
        if block.more:
            self._streams[key] = (offset + len(payload), now + self.blockwise.lifetime)
        else:
            self._streams.pop(key, None)
        pending = [(path, result)] if is_awaitable(result) else []
        return self._maybe_later(pending, lambda _: self._stream_answer(block))

    def _stream_answer(self, block: Block) -> Message:
        """2.31 (more to come) or 2.04 with Block1 echoed; a smaller SZX states our preference."""
        szx = min(block.szx, self.blockwise.szx)
        num = block.num if szx == block.szx else block.offset // (1 << (szx + 4))
        response = Message(code=Code.CONTINUE if block.more else Code.CHANGED)
        response.add(OptionNumber.BLOCK1, Block(num, block.more, szx).encode())
        return response

    def _block1(self) -> Block1Assembler:
        if self._assembler is None:
            settings = self.blockwise
            self._assembler = Block1Assembler(
                max_size=settings.max_body, max_szx=settings.szx, lifetime=settings.lifetime
            )
        return self._assembler

    def _representations(self) -> _Representations:
        if self._kept is None:
            self._kept = _Representations(self.blockwise)
        return self._kept

    @staticmethod
    def _representation_key(ssid: int, request: Message) -> Hashable:
        """What identifies one answer across its Block2 continuations (not Observe/Block2)."""
        return (ssid, request.code, tuple(request.uri_path), request.accept, request.payload)

    def _sliced(
        self,
        key: Hashable,
        response: Message,
        block2: Block | None,
        include_size2: bool,
        now: float,
    ) -> Message:
        """Cut a complete 2.05 to the requested block; keep it if it spans several blocks."""
        if block2 is None and len(response.payload) <= self.blockwise.block_size:
            return response
        try:
            piece = slice_block2(
                response.payload,
                block2,
                max_szx=self.blockwise.szx,
                include_size2=include_size2,
            )
        except BlockwiseError as exc:
            return Message(code=exc.code, payload=str(exc)[:120].encode())
        if piece.block is not None and (piece.block.more or piece.block.num > 0):
            response.remove(OptionNumber.ETAG)
            response.add(OptionNumber.ETAG, self._representations().keep(key, response, now).etag)
        return piece.apply(response)

    @staticmethod
    def _resumed(kept: _Representation) -> Message:
        """The kept answer again, for a continuation (no Observe: RFC 7959 §2.6)."""
        response = Message(code=kept.code, payload=kept.payload)
        if kept.content_format is not None:
            response.add(OptionNumber.CONTENT_FORMAT, encode_uint(kept.content_format))
        return response

    def drop_observations(self, ssid: int) -> None:
        self.observer.drop(ssid)

    def cancel_observation(self, ssid: int, token: bytes, reason: str) -> None:
        self.observer.remove(ssid, token)

    def take_notifications(self, now: float) -> list[Notification]:
        if not self.observer.busy:
            # Nothing observed: a change concerns nobody (an Observe starting later
            # must not count it either), and there is nothing to sample.
            self.tree.take_changes()
            return []
        self._feed_changes(now)
        notes = self.observer.take_notifications(now)
        if len(self._observed) > len(self.observer):
            live = {(o.ssid, o.token) for o in self.observer.observations()}
            self._observed = {k: v for k, v in self._observed.items() if k in live}
        for note in notes:
            key = self._observed.get((note.ssid, note.token))
            if key is not None and len(note.message.payload) > self.blockwise.block_size:
                # RFC 7959 §2.6: the first block; the server GETs the rest.
                note.message = self._sliced(key, note.message, None, False, now)
        return notes

    def _feed_changes(self, now: float) -> None:
        for path in self.tree.take_changes():
            self.observer.value_changed(path, now)

    def next_timer(self) -> float | None:
        return self.observer.next_timer()

    def handle_timer(self, now: float) -> None:
        self.observer.handle_timer(now)

    # ------------------------------------------------------------------ Sampler protocol
    def sample(
        self, ssid: int, paths: Sequence[Path], content_format: int
    ) -> tuple[bytes, list[Record]]:
        records: list[Record] = []
        try:
            for path in paths:
                records.extend(self._finish_read(self._collect_composite(ssid, path, sync=True)))
            base = paths[0] if len(paths) == 1 else Path()
            return encode(content_format, records, base), records
        except (NotFoundError, _Reply, _HookFailed) as exc:
            raise ObservedPathGone(str(exc)) from exc

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
        if self._server_value(ssid, MUTE_SEND) is True:
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
                records.extend(self._finish_read(self._collect(ssid, path, sync=True)))
        except _HANDLED as exc:
            raise SendError(f"cannot send: {exc}") from exc
        stamped = [record.with_time(time) for record in records]
        return encode(content_format, stamped, Path())

    def attributes(self, ssid: int, path: Path) -> Attributes:
        pmin, pmax = self._default_periods(ssid)
        stored = self._server(ssid).attributes
        return effective_attributes(path, stored, default_pmin=pmin, default_pmax=pmax)

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, ssid: int, request: Message, now: float) -> _Result:
        code = request.code
        segments = request.uri_path
        path = Path.from_segments(segments) if segments else Path()
        if path.object_id in HIDDEN_OBJECTS:
            raise _Reply(Code.NOT_FOUND, f"{path} is not exposed to servers")
        observe = request.observe
        if code == Code.GET:
            if request.accept == ContentFormat.LINK_FORMAT:
                return self._discover(ssid, path)
            return self._read(ssid, request, path, observe, now)
        if code == Code.FETCH:
            return self._read_composite(ssid, request, path, observe, now)
        if code == Code.IPATCH:
            return self._write_composite(ssid, request, path)
        if code == Code.PUT:
            if not request.payload and request.content_format is None and request.uri_query:
                return self._write_attributes(ssid, request, path, now)
            return self._write(ssid, request, path, replace=True)
        if code == Code.POST:
            if path.level is PathLevel.OBJECT:
                return self._create(ssid, request, path)
            if path.level is PathLevel.RESOURCE:
                rdef = self.tree.resource_def(path)
                if rdef.operations.executable or not rdef.multiple:
                    return self._execute(ssid, request, path)
            return self._write(ssid, request, path, replace=False)
        if code == Code.DELETE:
            return self._delete(ssid, path)
        raise _Reply(Code.METHOD_NOT_ALLOWED, f"method {code} not supported")

    # ------------------------------------------------------------------ access control
    def _require(self, ssid: int, path: Path, right: Right) -> None:
        if path.object_id is None or path.instance_id is None:
            return
        if not self.access.allowed(ssid, path.object_id, path.instance_id, right):
            raise _Reply(Code.UNAUTHORIZED, f"server {ssid} lacks {right.name} on {path}")

    def _visible_instances(self, ssid: int, object_id: int) -> list[int]:
        node = self.tree.node(object_id)
        return [
            iid
            for iid in sorted(node.instances)
            if self.access.allowed(ssid, object_id, iid, Right.READ)
        ]

    # ------------------------------------------------------------------ Read / Observe
    def _collect(self, ssid: int, path: Path, *, sync: bool = False) -> list[tuple[Path, Any]]:
        """``(resource path, value or awaitable)`` for everything a Read of ``path`` returns.

        ``sync`` (observe sampling) replaces an async hook's answer by the
        stored value.
        """
        tree = self.tree
        if path.is_root:
            raise _Reply(Code.METHOD_NOT_ALLOWED, "Read of the root path; use Read-Composite")
        found, rdef = tree.lookup(path)
        ids = path.ids
        if found is None:  # an object: every instance this server may read
            targets = [
                (Path._trusted((ids[0], iid)), tree.instance(ids[0], iid))
                for iid in self._visible_instances(ssid, ids[0])
            ]
        else:
            self._require(ssid, path, Right.READ)
            targets = [(path, found)]
        out: list[tuple[Path, Any]] = []
        for target, inst in targets:
            if rdef is None:
                target_ids = target.ids
                rids = tree.readable_resources(target_ids[0], target_ids[1])
                strict = False
            else:
                if not rdef.operations.readable:
                    raise _Reply(Code.METHOD_NOT_ALLOWED, f"{target} is not readable")
                rids = [ids[2]]
                strict = True
            for rid in rids:
                try:
                    value = _call(inst.read, rid)
                except NotFoundError:
                    if strict:
                        raise
                    continue
                if sync and is_awaitable(value):
                    _discard(value)
                    value = inst.values.get(rid)
                    if value is None:
                        continue
                out.append((target if strict else target.child(rid), value))
        return out

    def _collect_composite(
        self, ssid: int, path: Path, *, sync: bool = False
    ) -> list[tuple[Path, Any]]:
        """:meth:`_collect` for one path of a Read- or Observe-Composite, where the root
        path names every object (Core §6.3.8): everything this server may read."""
        if not path.is_root:
            return self._collect(ssid, path, sync=sync)
        out: list[tuple[Path, Any]] = []
        for object_id in sorted(self.tree.objects):
            if object_id not in HIDDEN_OBJECTS:
                out.extend(self._collect(ssid, Path.of(object_id), sync=sync))
        return out

    def _finish_read(self, collected: Sequence[tuple[Path, Any]]) -> list[Record]:
        records: list[Record] = []
        tree = self.tree
        for path, value in collected:
            resource_path = path if len(path.ids) == 3 else path.parent
            try:
                checked = tree.validate(resource_path, value)
            except InvalidValueError as exc:
                raise _HookFailed(f"{resource_path} holds an invalid value: {exc}") from exc
            records.extend(tree.to_records(path, tree.select(path, checked)))
        return records

    def _response_format(self, request: Message, path: Path, records: Sequence[Record]) -> int:
        accept = request.accept
        if accept is not None:
            if accept not in VALUE_FORMATS:
                raise _Reply(Code.NOT_ACCEPTABLE, f"cannot answer in content format {accept}")
            return accept
        if len(records) == 1 and records[0].path == path:
            if isinstance(records[0].value, bytes):
                return ContentFormat.OPAQUE
            return ContentFormat.TEXT
        return ContentFormat.TLV

    def _encode(self, content_format: int, records: Sequence[Record], base: Path) -> bytes:
        try:
            return encode(content_format, records, base)
        except (FormatEncodeError, UnsupportedFormatError) as exc:
            raise _Reply(Code.NOT_ACCEPTABLE, str(exc)) from exc

    def _read(
        self, ssid: int, request: Message, path: Path, observe: int | None, now: float
    ) -> _Result:
        if observe == 0:
            collected = self._collect(ssid, path, sync=True)
            records = self._finish_read(collected)
            cf = self._response_format(request, path, records)
            payload = self._encode(cf, records, path)
            obs = Observation(ssid, request.token, (path,), cf)
            self._observed[(ssid, request.token)] = self._representation_key(ssid, request)
            seq = self.observer.add(obs, now, records=records)
            return _content(payload, cf, observe=seq)
        if observe == 1:
            self.observer.remove(ssid, request.token)
        collected = self._collect(ssid, path)

        def finish(values: list[Any]) -> Message:
            records = self._finish_read(_resolved(collected, values))
            cf = self._response_format(request, path, records)
            return _content(self._encode(cf, records, path), cf)

        return self._maybe_later(collected, finish)

    # ------------------------------------------------------------------ composite
    def _composite_paths(self, request: Message) -> list[Path]:
        cf = request.content_format
        if cf in (ContentFormat.SENML_JSON,):
            return senml_json.decode_paths(request.payload)
        if cf in (ContentFormat.SENML_CBOR,):
            return senml_cbor.decode_paths(request.payload)
        raise _Reply(Code.UNSUPPORTED_CONTENT_FORMAT, f"Read-Composite in content format {cf}")

    def _read_composite(
        self, ssid: int, request: Message, path: Path, observe: int | None, now: float
    ) -> _Result:
        if not path.is_root:
            raise _Reply(Code.METHOD_NOT_ALLOWED, "FETCH is only defined on the root path")
        paths = self._composite_paths(request)
        accept = request.accept if request.accept is not None else request.content_format
        if accept not in _COMPOSITE_FORMATS:
            raise _Reply(Code.NOT_ACCEPTABLE, f"composite answers cannot use format {accept}")
        assert accept is not None
        collected: list[tuple[Path, Any]] = []
        found: list[Path] = []
        for target in paths:
            if target.object_id in HIDDEN_OBJECTS or not self.tree.exists(target):
                continue
            try:
                collected.extend(self._collect_composite(ssid, target, sync=observe == 0))
            except _Reply as exc:
                if exc.code not in (Code.UNAUTHORIZED, Code.METHOD_NOT_ALLOWED):
                    raise
                continue
            found.append(target)
        if not found:
            raise _Reply(Code.NOT_FOUND, "none of the requested paths exists")
        if observe == 0:
            records = self._finish_read(collected)
            payload = self._encode(accept, records, Path())
            seq = self.observer.add(
                Observation(ssid, request.token, tuple(found), accept), now, records=records
            )
            self._observed[(ssid, request.token)] = self._representation_key(ssid, request)
            return _content(payload, accept, observe=seq)
        if observe == 1:
            self.observer.remove(ssid, request.token)

        def finish(values: list[Any]) -> Message:
            records = self._finish_read(_resolved(collected, values))
            return _content(self._encode(accept, records, Path()), accept)

        return self._maybe_later(collected, finish)

    def _write_composite(self, ssid: int, request: Message, path: Path) -> _Result:
        if not path.is_root:
            raise _Reply(Code.METHOD_NOT_ALLOWED, "iPATCH is only defined on the root path")
        cf = request.content_format
        if cf not in _COMPOSITE_FORMATS:
            raise _Reply(Code.UNSUPPORTED_CONTENT_FORMAT, f"Write-Composite in format {cf}")
        records = decode(cf, request.payload, Path(), self.tree.type_of)
        if not records:
            raise _Reply(Code.BAD_REQUEST, "Write-Composite without values")
        changes = self._prepare_writes(ssid, records, merge=True)
        return self._apply_writes(changes, Code.CHANGED)

    # ------------------------------------------------------------------ Write
    def _write(self, ssid: int, request: Message, path: Path, *, replace: bool) -> _Result:
        if path.level < PathLevel.INSTANCE or (not replace and path.is_resource_instance):
            raise _Reply(Code.METHOD_NOT_ALLOWED, f"Write is not allowed on {path}")
        assert path.object_id is not None and path.instance_id is not None
        self.tree.instance(path.object_id, path.instance_id)
        if path.resource_id is not None:
            self.tree.resource_def(path)
        self._require(ssid, path, Right.WRITE)
        records = self._decode_payload(request, path)
        if not records:
            raise _Reply(Code.BAD_REQUEST, "Write without values")
        merge = not replace or path.is_resource_instance
        changes = self._prepare_writes(ssid, records, merge=merge)
        if replace and path.is_instance:
            self._clear_unwritten(path, {rpath.resource_id for rpath, _ in changes})
        return self._apply_writes(changes, Code.CHANGED)

    def _clear_unwritten(self, path: Path, written: set[int | None]) -> None:
        """Replace of an instance: writable optional resources not in the payload go away.

        The Write replaces the instance with what the server sent (Core, Write
        operation); mandatory resources cannot be absent, so a missing one
        keeps its value, and read-only resources belong to the client.
        """
        assert path.object_id is not None and path.instance_id is not None
        inst = self.tree.instance(path.object_id, path.instance_id)
        definition = self.tree.node(path.object_id).definition
        for rid in sorted(set(inst.resource_ids()) - written):
            rdef = definition.resource(rid)
            if rdef is None or rdef.mandatory or not rdef.operations.writable:
                continue
            _call(inst.remove, rid)
            self.tree.mark_changed(path.child(rid))

    def _decode_payload(self, request: Message, path: Path) -> list[Record]:
        cf = request.content_format
        if cf is None:
            raise _Reply(Code.BAD_REQUEST, "Content-Format option missing")
        if cf not in VALUE_FORMATS:
            raise _Reply(Code.UNSUPPORTED_CONTENT_FORMAT, f"content format {cf} carries no values")
        records = decode(cf, request.payload, path, self.tree.type_of)
        for record in records:
            if not path.contains(record.path):
                raise _Reply(Code.BAD_REQUEST, f"{record.path} is not below {path}")
        return records

    def _prepare_writes(
        self, ssid: int, records: Iterable[Record], *, merge: bool
    ) -> list[tuple[Path, ResourceValue]]:
        """Validate every record first (all-or-nothing): ``[(resource path, new value)]``.

        Multiple resources are replaced by the written instances unless
        ``merge`` (partial update, composite, resource-instance writes).
        """
        grouped: dict[Path, dict[int, object] | object] = {}
        for record in records:
            rpath = Path.of(*record.path.ids[:3])
            assert rpath.object_id is not None and rpath.instance_id is not None
            self.tree.instance(rpath.object_id, rpath.instance_id)
            rdef = self.tree.resource_def(rpath)
            self._require(ssid, rpath, Right.WRITE)
            if not rdef.operations.writable:
                raise _Reply(Code.METHOD_NOT_ALLOWED, f"{rpath} is not writable")
            if record.path.resource_instance_id is not None:
                if not rdef.multiple:
                    raise NotFoundError(f"{rpath} is single-instance")
                slot = grouped.setdefault(rpath, {})
                assert isinstance(slot, dict)
                slot[record.path.resource_instance_id] = record.value
            elif rdef.multiple:
                raise _Reply(Code.BAD_REQUEST, f"{rpath} is multiple: write resource instances")
            else:
                grouped[rpath] = record.value
        out: list[tuple[Path, ResourceValue]] = []
        by_instance: dict[tuple[int, int], dict[int, ResourceValue]] = {}
        for rpath, raw in grouped.items():
            value = self.tree.validate(rpath, raw)
            assert rpath.object_id is not None and rpath.instance_id is not None
            assert rpath.resource_id is not None
            if merge and isinstance(value, dict):
                current = self.tree.instance(rpath.object_id, rpath.instance_id).values.get(
                    rpath.resource_id
                )
                if isinstance(current, dict):
                    value = {**current, **value}
            out.append((rpath, value))
            by_instance.setdefault((rpath.object_id, rpath.instance_id), {})[rpath.resource_id] = (
                value
            )
        for (oid, iid), values in by_instance.items():
            _call(self.tree.instance(oid, iid).check, values)  # the instance's own rules
        return out

    def _apply_writes(self, changes: Sequence[tuple[Path, ResourceValue]], code: Code) -> _Result:
        pending: list[Awaitable[Any]] = []
        for rpath, value in changes:
            assert rpath.object_id is not None and rpath.instance_id is not None
            assert rpath.resource_id is not None
            inst = self.tree.instance(rpath.object_id, rpath.instance_id)
            rid = rpath.resource_id
            result = _call(inst.write, rid, value)
            if is_awaitable(result):
                pending.append(result)
            self.tree.mark_changed(rpath)
        return self._maybe_later([(Path(), a) for a in pending], lambda _: Message(code=code))

    # ------------------------------------------------------------------ Execute
    def _execute(self, ssid: int, request: Message, path: Path) -> _Result:
        assert path.object_id is not None and path.instance_id is not None
        assert path.resource_id is not None
        inst = self.tree.instance(path.object_id, path.instance_id)
        rdef = self.tree.resource_def(path)
        if not rdef.operations.executable:
            raise _Reply(Code.METHOD_NOT_ALLOWED, f"{path} is not executable")
        if path.resource_id not in inst.resource_ids():
            raise NotFoundError(f"{path} does not exist")
        self._require(ssid, path, Right.EXECUTE)
        try:
            text = request.payload.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _Reply(Code.BAD_REQUEST, "execute arguments must be ASCII") from exc
        arguments = parse_execute_arguments(text)
        rid = path.resource_id
        result = _call(inst.execute, rid, arguments)
        pending = [(path, result)] if is_awaitable(result) else []
        return self._maybe_later(pending, lambda _: Message(code=Code.CHANGED))

    # ------------------------------------------------------------------ Create / Delete
    def _create(self, ssid: int, request: Message, path: Path) -> _Result:
        """Create one instance, or several when the payload names several (LwM2M 1.1).

        All-or-nothing: every instance id and value is checked before any
        instance is made. One new instance is answered with its Location-Path;
        several have none (the server chose their ids).
        """
        assert path.object_id is not None
        node = self.tree.node(path.object_id)
        if node.factory is None:
            raise _Reply(Code.METHOD_NOT_ALLOWED, f"object {path.object_id} takes no Create")
        if not self.access.allowed(ssid, path.object_id, CREATE_TARGET, Right.CREATE):
            raise _Reply(Code.UNAUTHORIZED, f"server {ssid} may not create in {path}")
        records = self._decode_create(request, path, node.free_instance_id())
        by_instance: dict[int, list[Record]] = {}
        for record in records:
            assert record.path.instance_id is not None
            by_instance.setdefault(record.path.instance_id, []).append(record)
        if not by_instance:
            by_instance[node.free_instance_id()] = []
        if len(by_instance) > 1 and not node.definition.multiple:
            raise _Reply(Code.BAD_REQUEST, f"object {path.object_id} is single-instance")
        planned: list[tuple[int, list[tuple[Path, ResourceValue]]]] = []
        for iid, found in sorted(by_instance.items()):
            if iid in node.instances:
                raise _Reply(Code.BAD_REQUEST, f"{path.child(iid)} already exists")
            planned.append((iid, self._create_values(found)))
        pending: list[Awaitable[Any]] = []
        factory = node.factory
        for iid, checked in planned:
            inst = _call(factory, iid)
            if not isinstance(inst, Instance):
                raise _HookFailed(f"factory of object {path.object_id} returned {inst!r}")
            self.tree.add_instance(path.object_id, iid, inst)
            self.access.created(ssid, path.object_id, iid)
            result = self._apply_writes(checked, Code.CREATED)
            if not isinstance(result, Message):
                pending.extend(result.awaitables)
        created = Message(code=Code.CREATED)
        if len(planned) == 1:
            for segment in path.child(planned[0][0]).segments():
                created.add(OptionNumber.LOCATION_PATH, segment.encode())
        return self._maybe_later([(Path(), a) for a in pending], lambda _: created)

    def _create_values(self, records: Sequence[Record]) -> list[tuple[Path, ResourceValue]]:
        """Validated ``(resource path, value)`` of one instance to create."""
        values: dict[Path, dict[int, object] | object] = {}
        for record in records:
            rpath = Path.of(*record.path.ids[:3])
            rdef = self.tree.resource_def(rpath)
            if rdef.type is ResourceType.NONE:
                raise _Reply(Code.BAD_REQUEST, f"{rpath} is executable")
            if record.path.resource_instance_id is not None:
                slot = values.setdefault(rpath, {})
                assert isinstance(slot, dict)
                slot[record.path.resource_instance_id] = record.value
            else:
                values[rpath] = record.value
        return [(rpath, self.tree.validate(rpath, raw)) for rpath, raw in values.items()]

    def _decode_create(self, request: Message, path: Path, new_id: int) -> list[Record]:
        try:
            return self._decode_payload(request, path)
        except ContentFormatError:
            # LwM2M 1.0 style: resources without an instance wrapper.
            if request.content_format not in (ContentFormat.TLV, ContentFormat.LEGACY_TLV):
                raise
            return self._decode_payload(request, path.child(new_id))

    def _delete(self, ssid: int, path: Path) -> _Result:
        if not path.is_instance:
            raise _Reply(Code.METHOD_NOT_ALLOWED, f"Delete is not allowed on {path}")
        assert path.object_id is not None and path.instance_id is not None
        node = self.tree.node(path.object_id)
        self.tree.instance(path.object_id, path.instance_id)
        if not node.deletable:
            raise _Reply(
                Code.METHOD_NOT_ALLOWED, f"instances of {path.object_id} cannot be deleted"
            )
        self._require(ssid, path, Right.DELETE)
        self.tree.remove_instance(path.object_id, path.instance_id)
        self.access.deleted(path.object_id, path.instance_id)
        for state in self._servers.values():
            for stored in [p for p in state.attributes if path.contains(p)]:
                del state.attributes[stored]
        self.tree.mark_changed(path)
        return Message(code=Code.DELETED)

    # ------------------------------------------------------------------ Discover / attributes
    def _discover(self, ssid: int, path: Path) -> _Result:
        if path.is_root:
            raise _Reply(Code.METHOD_NOT_ALLOWED, "Discover of the root path")
        self.tree.check_exists(path)
        assert path.object_id is not None
        stored = self._server(ssid).attributes
        node = self.tree.node(path.object_id)
        entries: list[tuple[Path, dict[str, object]]] = []

        def attrs(p: Path, **extra: object) -> dict[str, object]:
            found = stored.get(p)
            return {**extra, **(found.as_dict() if found else {})}

        if path.is_object:
            version = node.definition.version
            entries.append((path, attrs(path, ver=version if version != "1.0" else None)))
            instance_ids = self._visible_instances(ssid, path.object_id)
        else:
            self._require(ssid, path, Right.READ)  # Discover needs the Read right (Core §7.3)
            instance_ids = [path.instance_id] if path.instance_id is not None else []
        for iid in instance_ids:
            ipath = Path.of(path.object_id, iid)
            inst = node.instances[iid]
            if path.level <= PathLevel.INSTANCE:
                entries.append((ipath, attrs(ipath)))
                rids = sorted(r for r in inst.resource_ids() if node.definition.resource(r))
            else:
                assert path.resource_id is not None
                rids = [path.resource_id]
            for rid in rids:
                rpath = ipath.child(rid)
                if path.is_resource_instance:
                    entries.append((path, attrs(path)))
                    continue
                riids = self._instance_ids(inst, rpath)
                entries.append((rpath, attrs(rpath, dim=len(riids) if riids is not None else None)))
                if path.level is PathLevel.RESOURCE and riids:
                    entries.extend((rpath.child(r), attrs(rpath.child(r))) for r in riids)
        payload = linkformat.encode(linkformat.discover_links(entries))
        msg = Message(code=Code.CONTENT, payload=payload)
        msg.add(OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.LINK_FORMAT))
        return msg

    def _instance_ids(self, inst: Instance, rpath: Path) -> list[int] | None:
        """Resource instance ids of a multiple resource (None for single ones)."""
        if not self.tree.resource_def(rpath).multiple:
            return None
        assert rpath.resource_id is not None
        value: object = inst.values.get(rpath.resource_id)
        try:
            read = inst.read(rpath.resource_id)  # hooks and host-backed values too
        except Exception:
            return None
        if is_awaitable(read):
            _discard(read)
        else:
            value = read
        return sorted(value) if isinstance(value, dict) else []

    def _write_attributes(self, ssid: int, request: Message, path: Path, now: float) -> _Result:
        if path.is_root:
            raise _Reply(Code.METHOD_NOT_ALLOWED, "attributes cannot be written on the root")
        self.tree.check_exists(path)
        self._require(ssid, path, Right.READ)
        update = parse_query(request.uri_query)
        stored = self._server(ssid).attributes
        rtype = self.tree.type_of(path) if path.level >= PathLevel.RESOURCE else None
        result = write_attributes(stored.get(path, Attributes()), update, path, rtype)
        if result:
            stored[path] = result
        else:
            stored.pop(path, None)
        self.observer.attributes_changed(ssid, now)
        return Message(code=Code.CHANGED)

    # ------------------------------------------------------------------ helpers
    def _server(self, ssid: int) -> _ServerState:
        state = self._servers.get(ssid)
        if state is None:
            state = self._servers[ssid] = _ServerState()
        return state

    def _server_value(self, ssid: int, resource_id: int) -> object:
        """A resource of the server's /1 instance (None if absent)."""
        node = self.tree.objects.get(SERVER_OBJECT)
        for inst in node.instances.values() if node is not None else ():
            if inst.values.get(0) == ssid:
                return inst.values.get(resource_id)
        return None

    def _default_periods(self, ssid: int) -> tuple[int | None, int | None]:
        """Default Minimum/Maximum Period from the server's /1 instance."""
        pmin = self._server_value(ssid, DEFAULT_PMIN)
        pmax = self._server_value(ssid, DEFAULT_PMAX)
        return (
            pmin if isinstance(pmin, int) else None,
            pmax if isinstance(pmax, int) and pmax > 0 else None,
        )

    def _maybe_later(
        self, collected: Sequence[tuple[Path, Any]], finish: Callable[[list[Any]], Message]
    ) -> _Result:
        awaitables = [value for _, value in collected if is_awaitable(value)]
        if not awaitables:
            return finish([value for _, value in collected])
        values = [value for _, value in collected]

        def finish_all(results: list[Any]) -> Message:
            done = iter(results)
            return finish([next(done) if is_awaitable(v) else v for v in values])

        return _Deferred(awaitables, finish_all)

    async def _later(self, deferred: _Deferred) -> Message:
        """Await the hooks, then build the answer; never raises (errors are answers)."""
        results: list[Any] = []
        remaining = list(deferred.awaitables)
        try:
            while remaining:
                awaitable = remaining.pop(0)
                try:
                    results.append(await awaitable)
                except _HANDLED:
                    raise
                except (InvalidValueError, ConfigError):
                    raise
                except Exception as exc:
                    raise _HookFailed(repr(exc)) from exc
            return deferred.finish(results)
        except _HANDLED as exc:
            for leftover in remaining:
                _discard(leftover)
            return _error(exc)


def _resolved(collected: Sequence[tuple[Path, Any]], values: list[Any]) -> list[tuple[Path, Any]]:
    return [(path, value) for (path, _), value in zip(collected, values, strict=True)]


def _discard(awaitable: object) -> None:
    if inspect.iscoroutine(awaitable):
        awaitable.close()


def default_objects(
    config: ClientConfig,
    *,
    registry: ObjectRegistry | None = None,
    device: DeviceInfo | None = None,
    host: HostInfo | None = None,
    on_reboot: ExecuteHook | None = None,
    on_factory_reset: ExecuteHook | None = None,
    observe: ObserveSettings | None = None,
    blockwise: BlockwiseSettings | None = None,
) -> OperationHandler:
    """The client's default data model: Server (1), Access Control (2, only with more
    than one server), Device (3), Connectivity Monitoring (4).

    Add application objects to ``result.tree`` before starting the client (or
    later: the next Update carries the new object list). ``host`` is what /3
    and /4 report; without one the runtime attaches its own when the client is
    built (see :meth:`OperationHandler.attach_host`).
    """
    actions = _ActionQueue()
    callbacks = ServerCallbacks(
        account_changed=actions.account_changed,
        update_trigger=actions.update_trigger,
        disable=actions.disable,
        bootstrap_request=actions.bootstrap_request if config.bootstrap is not None else None,
    )
    built = build_default_tree(
        config.servers,
        registry=registry,
        device=device,
        host=host,
        on_reboot=on_reboot,
        on_factory_reset=on_factory_reset,
        callbacks=callbacks,
    )
    ops = OperationHandler(built.tree, access=built.access, observe=observe, blockwise=blockwise)
    ops.server_callbacks = callbacks
    actions.handler = ops
    return ops


class _ActionQueue:
    """Server object callbacks turned into the handler's :data:`ClientAction` queue.

    One small object per client instead of three closures and a holder list.
    """

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: OperationHandler | None = None

    def _queue(self, action: ClientAction) -> None:
        assert self.handler is not None, "the handler is set as soon as it is built"
        self.handler.queue_action(action)

    def account_changed(self, account: ServerAccount) -> None:
        self._queue(TriggerUpdate(account.short_server_id, account))

    def update_trigger(self, ssid: int) -> None:
        self._queue(TriggerUpdate(ssid))

    def disable(self, ssid: int, timeout: float) -> None:
        self._queue(DisableServer(ssid, timeout))

    def bootstrap_request(self, ssid: int) -> None:
        self._queue(RequestBootstrap(ssid))
