"""RFC 7959 around the operations: Block1 assembled or streamed, Block2 sliced and resumed.

:class:`Transfers` wraps the dispatch of one request (:meth:`Transfers.around`)
and keeps what spans several requests: the assembler of Block1 bodies, the
answers being fetched block by block, the offsets of streamed writes and
which observation continues which answer. Internal to
:mod:`aiolwm2m.client.operations` (whose docstring describes the behaviour).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace

from aiolwm2m.client.engine import Notification
from aiolwm2m.client.observe import Observation
from aiolwm2m.client.operations._answers import Deferred, Reply, Result, call, maybe_later
from aiolwm2m.client.operations._model import HIDDEN_OBJECTS, Model
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
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.objects import Right
from aiolwm2m.lwm2m.path import Path, PathError, PathLevel
from aiolwm2m.lwm2m.tree import BlockSink, is_awaitable

__all__ = ["BlockwiseSettings", "Transfers", "representation_key"]


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


def representation_key(ssid: int, request: Message) -> Hashable:
    """What identifies one answer across its Block2 continuations (not Observe/Block2)."""
    return (ssid, request.code, tuple(request.uri_path), request.accept, request.payload)


def _resumed(kept: _Representation) -> Message:
    """The kept answer again, for a continuation (no Observe: RFC 7959 §2.6)."""
    response = Message(code=kept.code, payload=kept.payload)
    if kept.content_format is not None:
        response.add(OptionNumber.CONTENT_FORMAT, encode_uint(kept.content_format))
    return response


Dispatch = Callable[[int, Message, float], Result]


class Transfers:
    """The block-wise state of one client; its tables for blocks are made at a first transfer."""

    __slots__ = ("_assembler", "_kept", "_model", "_observed", "_streams", "settings")

    def __init__(self, model: Model, settings: BlockwiseSettings) -> None:
        self._model = model
        self.settings = settings
        # Block-wise state is made when a first transfer needs it: most clients
        # never see one, and a fleet pays for every empty table.
        self._kept: _Representations | None = None
        # (ssid, token) of an observation -> its request's representation key, so a
        # large notification can be continued block-wise like the first answer.
        self._observed: dict[tuple[int, bytes], Hashable] = {}
        self._assembler: Block1Assembler | None = None
        # (ssid, resource path) of a streamed Block1 Write -> (next offset, expiry).
        self._streams: dict[tuple[int, Path], tuple[int, float]] = {}

    def around(self, ssid: int, request: Message, now: float, dispatch: Dispatch) -> Result:
        """RFC 7959 around ``dispatch``: assemble Block1, slice (or resume) Block2."""
        try:
            block1 = request.block1
            block2 = request.block2
        except CoapDecodeError as exc:
            raise Reply(Code.BAD_OPTION, f"unreadable block option: {exc}") from exc
        echo: Block1Result | None = None
        if block1 is not None:
            streamed = self._streamed_write(ssid, request, block1, now)
            if streamed is not None:
                return streamed
            echo = self.block1().feed(
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
            key = representation_key(ssid, request)
            if block2 is not None and block2.num > 0:
                kept = self.representations().get(key, now)
                if kept is not None:
                    resumed = _resumed(kept)
                    return self.sliced(key, resumed, block2, request.has(OptionNumber.SIZE2), now)
        result = dispatch(ssid, request, now)

        def finish(response: Message) -> Message:
            if echo is not None and echo.block1 is not None:
                echo.apply(response)
            if key is None or response.code != Code.CONTENT:
                return response
            return self.sliced(key, response, block2, request.has(OptionNumber.SIZE2), now)

        if isinstance(result, Message):
            return finish(result)
        inner = result.finish
        return Deferred(result.awaitables, lambda values: finish(inner(values)))

    def _sink(self, request: Message) -> tuple[Path, BlockSink, int] | None:
        """The :class:`BlockSink` resource an Opaque PUT/POST streams to, if it names one."""
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
        node = self._model.tree.objects.get(path.object_id)
        inst = node.instances.get(path.instance_id) if node is not None else None
        if not isinstance(inst, BlockSink) or not inst.streams(rid):
            return None
        return path, inst, rid

    def _streamed_write(
        self, ssid: int, request: Message, block: Block, now: float
    ) -> Result | None:
        """A Block1 Opaque Write to a :class:`BlockSink` resource, handed over block by block.

        None when the request is not one (it is then assembled as usual).
        Blocks must come in order; a repeat of the block just taken (our 2.31
        was lost) gets the same answer, anything else 4.08.
        """
        target = self._sink(request)
        if target is None:
            return None
        path, sink, rid = target
        if not self._model.tree.resource_def(path).operations.writable:
            raise Reply(Code.METHOD_NOT_ALLOWED, f"{path} is not writable")
        self._model.require(ssid, path, Right.WRITE)
        payload = request.payload
        if len(payload) > block.size or (block.more and len(payload) != block.size):
            raise Reply(
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
            raise Reply(Code.REQUEST_ENTITY_INCOMPLETE, f"block at offset {offset}, {where}")
        result = call(lambda: sink.write_block(rid, offset, payload, block.more))
        if block.more:
            self._streams[key] = (offset + len(payload), now + self.settings.lifetime)
        else:
            self._streams.pop(key, None)
        pending = [(path, result)] if is_awaitable(result) else []
        return maybe_later(pending, lambda _: self._stream_answer(block))

    def _stream_answer(self, block: Block) -> Message:
        """2.31 (more to come) or 2.04 with Block1 echoed; a smaller SZX states our preference."""
        szx = min(block.szx, self.settings.szx)
        num = block.num if szx == block.szx else block.offset // (1 << (szx + 4))
        response = Message(code=Code.CONTINUE if block.more else Code.CHANGED)
        response.add(OptionNumber.BLOCK1, Block(num, block.more, szx).encode())
        return response

    def block1(self) -> Block1Assembler:
        if self._assembler is None:
            settings = self.settings
            self._assembler = Block1Assembler(
                max_size=settings.max_body, max_szx=settings.szx, lifetime=settings.lifetime
            )
        return self._assembler

    def representations(self) -> _Representations:
        if self._kept is None:
            self._kept = _Representations(self.settings)
        return self._kept

    def sliced(
        self,
        key: Hashable,
        response: Message,
        block2: Block | None,
        include_size2: bool,
        now: float,
    ) -> Message:
        """Cut a complete 2.05 to the requested block; keep it if it spans several blocks."""
        if block2 is None and len(response.payload) <= self.settings.block_size:
            return response
        try:
            piece = slice_block2(
                response.payload,
                block2,
                max_szx=self.settings.szx,
                include_size2=include_size2,
            )
        except BlockwiseError as exc:
            return Message(code=exc.code, payload=str(exc)[:120].encode())
        if piece.block is not None and (piece.block.more or piece.block.num > 0):
            response.remove(OptionNumber.ETAG)
            response.add(OptionNumber.ETAG, self.representations().keep(key, response, now).etag)
        return piece.apply(response)

    def observed(self, ssid: int, request: Message) -> None:
        """Observation ``request`` started: its notifications continue like its answer."""
        self._observed[(ssid, request.token)] = representation_key(ssid, request)

    def first_blocks(
        self,
        notes: Iterable[Notification],
        live: Callable[[], Iterable[Observation]],
        count: int,
        now: float,
    ) -> None:
        """Cut each large notification to its first block (RFC 7959 §2.6: the server
        GETs the rest); forget the observations that ended (``count`` are left)."""
        if len(self._observed) > count:
            alive = {(o.ssid, o.token) for o in live()}
            self._observed = {k: v for k, v in self._observed.items() if k in alive}
        block_size = self.settings.block_size
        for note in notes:  # the size first: nearly every notification fits in one block
            if len(note.message.payload) > block_size:
                key = self._observed.get((note.ssid, note.token))
                if key is not None:
                    note.message = self.sliced(key, note.message, None, False, now)
