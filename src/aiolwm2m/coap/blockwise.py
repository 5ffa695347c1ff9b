"""Block-wise transfer helpers (RFC 7959), sans-IO and pure.

Three pieces, each usable on its own:

* :func:`slice_block2` / :func:`apply_block2` -- server side of Block2: cut a
  response payload into the block the request asked for (or the first block
  of the preferred size) and say which Block2 / Size2 options go with it.
* :class:`Block2Receiver` -- client side of Block2: feed it every response of
  one transfer; it says which block to request next and checks that the
  representation did not change underneath (ETag, Size2, block sequence).
* :class:`Block1Assembler` -- receiving side of Block1 (a server, or an LwM2M
  client receiving a large Write): reassembles request bodies and tells the
  caller which code to answer with: 2.31 Continue, 4.08 Request Entity
  Incomplete on a gap, 4.13 Request Entity Too Large with Size1.

Nothing here sends, sleeps or reads a clock; time is passed in as ``now``.
Peer mistakes raise a subclass of :class:`BlockwiseError` (a
:class:`~aiolwm2m.errors.DecodeError`) or, on the Block1 side, come back as an
error :class:`Block1Result` carrying the response code.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field

from aiolwm2m.coap.message import (
    Block,
    CoapDecodeError,
    Code,
    Message,
    Option,
    OptionNumber,
    encode_uint,
)
from aiolwm2m.errors import DecodeError

__all__ = [
    "MAX_NUM",
    "MAX_SZX",
    "Block1Assembler",
    "Block1Result",
    "Block1Status",
    "Block2EtagMismatch",
    "Block2OutOfRange",
    "Block2Receiver",
    "Block2SequenceError",
    "Block2SizeMismatch",
    "Block2Slice",
    "BlockwiseError",
    "EntityTooLarge",
    "apply_block2",
    "block_size",
    "slice_block2",
    "szx_for",
]

MAX_SZX = 6  # 1024 bytes; SZX 7 is reserved (BERT, RFC 8323, is TCP only)
MAX_NUM = (1 << 20) - 1  # NUM is at most 20 bits in a 3-byte option value


class BlockwiseError(DecodeError):
    """A block-wise transfer cannot go on; ``code`` is the response a server would send."""

    code: int = Code.BAD_REQUEST


class Block2OutOfRange(BlockwiseError):
    """A Block2 request asked for a block that starts past the end of the representation."""

    code = Code.BAD_OPTION


class Block2SequenceError(BlockwiseError):
    """A response does not continue the transfer (wrong offset, short block, code changed...)."""


class Block2EtagMismatch(BlockwiseError):
    """The ETag changed between blocks: the representation changed, restart the transfer."""


class Block2SizeMismatch(BlockwiseError):
    """Size2 changed between blocks, or the reassembled length differs from it."""


class EntityTooLarge(BlockwiseError):
    """The reassembled body would exceed the configured maximum."""

    code = Code.REQUEST_ENTITY_TOO_LARGE


def block_size(szx: int) -> int:
    return 1 << (szx + 4)


def szx_for(size: int) -> int:
    """SZX of the largest block size not above ``size`` (clamped to 16..1024)."""
    if size < 16:
        raise ValueError(f"block size {size} is below the minimum of 16")
    return min(MAX_SZX, size.bit_length() - 5)


def _check_szx(szx: int) -> None:
    if not 0 <= szx <= MAX_SZX:
        raise ValueError(f"SZX {szx} outside 0..{MAX_SZX}")


# -- server side of Block2 --------------------------------------------------------


@dataclass(frozen=True)
class Block2Slice:
    """What to put in one response: the payload slice and its Block2 / Size2 options.

    ``block`` is None when the whole payload fits and the request did not use
    Block2: the response then carries no Block2 option at all.
    """

    payload: bytes
    block: Block | None
    size2: int | None

    def options(self) -> list[Option]:
        opts: list[Option] = []
        if self.block is not None:
            opts.append((OptionNumber.BLOCK2, self.block.encode()))
        if self.size2 is not None:
            opts.append((OptionNumber.SIZE2, encode_uint(self.size2)))
        return opts

    def apply(self, response: Message) -> Message:
        """Set payload, Block2 and Size2 on ``response`` (replacing any); returns it."""
        response.payload = self.payload
        response.remove(OptionNumber.BLOCK2)
        response.remove(OptionNumber.SIZE2)
        for number, value in self.options():
            response.add(number, value)
        return response


def slice_block2(
    payload: bytes,
    requested: Block | None,
    *,
    max_szx: int = MAX_SZX,
    include_size2: bool = False,
) -> Block2Slice:
    """Cut the block a request asked for out of a complete response payload.

    ``requested`` is the request's Block2 option (None if absent). The block
    size is the requested one or ``max_szx`` if smaller (RFC 7959 §2.4: the
    server may answer with a smaller block, the block number is then scaled so
    the offset stays the same). Size2 is given with the first block, and with
    every block when ``include_size2`` (the request carried Size2, §4).

    Raises :class:`Block2OutOfRange` for a block starting past the end.
    """
    _check_szx(max_szx)
    total = len(payload)
    if requested is None:
        szx, offset = max_szx, 0
        if total <= block_size(szx):
            return Block2Slice(payload, None, total if include_size2 else None)
    else:
        szx, offset = min(requested.szx, max_szx), requested.offset
        if offset > 0 and offset >= total:
            raise Block2OutOfRange(f"block at offset {offset} is past the end ({total} bytes)")
    size = block_size(szx)
    num = offset // size
    if num > MAX_NUM:
        raise Block2OutOfRange(f"block number {num} does not fit the Block2 option")
    chunk = payload[offset : offset + size]
    more = offset + size < total
    size2 = total if include_size2 or num == 0 else None
    return Block2Slice(chunk, Block(num=num, more=more, szx=szx), size2)


def apply_block2(request: Message, response: Message, *, max_szx: int = MAX_SZX) -> Message:
    """Make ``response`` (holding the full payload) answer ``request``'s Block2 option.

    Raises :class:`Block2OutOfRange` (answer 4.02) for a block past the end, and
    :class:`~aiolwm2m.coap.message.CoapDecodeError` for an unreadable Block2
    option (answer 4.02 too).
    """
    piece = slice_block2(
        response.payload,
        request.block2,
        max_szx=max_szx,
        include_size2=request.has(OptionNumber.SIZE2),
    )
    return piece.apply(response)


# -- client side of Block2 ----------------------------------------------------------


class Block2Receiver:
    """Reassembles one Block2 transfer on the requesting side.

    Usage: send the request (with ``first_request_block()`` as Block2 if it is
    not None), then for every response call :meth:`feed`; it returns the Block2
    option value for the next request, or None once :attr:`payload` is complete.
    Only successful responses belong here: the caller handles an error code
    (e.g. 4.08) itself before feeding.

    ``szx`` is the block size this side prefers (None: whatever the server
    picks). ``strict_size`` also rejects a final length that differs from the
    announced Size2; RFC 7959 §4 calls Size2 an estimate, so a lenient caller
    may turn that off (a change of Size2 between blocks is always an error).
    """

    def __init__(
        self, *, max_size: int = 1 << 20, szx: int | None = None, strict_size: bool = True
    ) -> None:
        if szx is not None:
            _check_szx(szx)
        self.max_size = max_size
        self.szx = szx
        self.strict_size = strict_size
        self.code: int | None = None
        self.etag: bytes | None = None
        self.size2: int | None = None
        self.content_format: int | None = None
        self.blocks = 0
        self._buf = bytearray()
        self._done = False

    def first_request_block(self) -> Block | None:
        """Block2 option for the first request (only needed to ask for a small size)."""
        return None if self.szx is None else Block(num=0, more=False, szx=self.szx)

    @property
    def done(self) -> bool:
        return self._done

    @property
    def received(self) -> int:
        return len(self._buf)

    @property
    def payload(self) -> bytes:
        if not self._done:
            raise RuntimeError("block-wise transfer is not complete")
        return bytes(self._buf)

    def feed(self, response: Message) -> Block | None:
        """Take one response; returns the next Block2 to request or None when complete."""
        if self._done:
            raise Block2SequenceError("transfer is already complete")
        try:
            block = response.block2
            size2 = response.get_uint(OptionNumber.SIZE2)
            content_format = response.content_format
        except CoapDecodeError as exc:
            raise Block2SequenceError(f"unreadable option: {exc}") from exc
        etag = response.get_first(OptionNumber.ETAG)
        first = self.blocks == 0
        if first:
            self.code = response.code
            self.etag = etag
            self.content_format = content_format
        else:
            if response.code != self.code:
                raise Block2SequenceError(
                    f"response code changed mid-transfer ({response.code} != {self.code})"
                )
            if block is None:
                raise Block2SequenceError("continuation response without Block2")
            if etag != self.etag:
                raise Block2EtagMismatch("ETag changed between blocks")
        if size2 is not None:
            if self.size2 is not None and size2 != self.size2:
                raise Block2SizeMismatch(f"Size2 changed from {self.size2} to {size2}")
            self.size2 = size2
            if size2 > self.max_size:
                raise EntityTooLarge(f"announced size {size2} exceeds {self.max_size}")
        chunk = response.payload
        self.blocks += 1
        if block is None:  # the whole representation in one response
            self._append(chunk)
            self._finish()
            return None
        if block.offset != len(self._buf):
            raise Block2SequenceError(
                f"block {block.num} (offset {block.offset}) does not follow "
                f"{len(self._buf)} received bytes"
            )
        if len(chunk) > block.size or (block.more and len(chunk) != block.size):
            raise Block2SequenceError(
                f"block {block.num} carries {len(chunk)} bytes for size {block.size}"
            )
        self._append(chunk)
        if not block.more:
            self._finish()
            return None
        szx = block.szx if self.szx is None else min(block.szx, self.szx)
        num = len(self._buf) // block_size(szx)
        if num > MAX_NUM:
            raise EntityTooLarge("block number would exceed 20 bits")
        return Block(num=num, more=False, szx=szx)

    def _append(self, chunk: bytes) -> None:
        if len(self._buf) + len(chunk) > self.max_size:
            raise EntityTooLarge(f"body exceeds {self.max_size} bytes")
        self._buf += chunk

    def _finish(self) -> None:
        if self.strict_size and self.size2 is not None and self.size2 != len(self._buf):
            raise Block2SizeMismatch(
                f"received {len(self._buf)} bytes but Size2 announced {self.size2}"
            )
        self._done = True


# -- receiving side of Block1 ---------------------------------------------------------


class Block1Status(enum.Enum):
    CONTINUE = "continue"  # answer with result.code (2.31) and its Block1 option
    COMPLETE = "complete"  # result.payload is the whole body: process the request
    ERROR = "error"  # answer with result.code (4.xx) and its options


@dataclass(frozen=True)
class Block1Result:
    status: Block1Status
    code: int | None = None  # None for COMPLETE: the application picks the final code
    block1: Block | None = None  # echo in the response (also in the final one, §2.3)
    size1: int | None = None  # with 4.13: the largest body this side accepts
    payload: bytes | None = None  # the whole body, for COMPLETE
    reason: str = ""

    def options(self) -> list[Option]:
        opts: list[Option] = []
        if self.block1 is not None:
            opts.append((OptionNumber.BLOCK1, self.block1.encode()))
        if self.size1 is not None:
            opts.append((OptionNumber.SIZE1, encode_uint(self.size1)))
        return opts

    def apply(self, response: Message) -> Message:
        """Add Block1 / Size1 (and the code, unless COMPLETE) to ``response``; returns it."""
        if self.code is not None:
            response.code = self.code
        response.remove(OptionNumber.BLOCK1)
        response.remove(OptionNumber.SIZE1)
        for number, value in self.options():
            response.add(number, value)
        return response


@dataclass
class _Transfer:
    body: bytearray
    content_format: int | None
    expires: float


@dataclass
class Block1Assembler:
    """Reassembles Block1 request bodies, one transfer per key.

    The key defaults to (method, Uri-Path, Uri-Query): RFC 7959 §2.5 lets a
    client change the token between the blocks of one body, so the token is not
    part of it. Use one assembler per peer, like the message layer, or pass a
    key that includes the peer.

    A transfer that sees no block for ``lifetime`` seconds is forgotten (the
    next continuation then gets 4.08); at most ``max_transfers`` are kept, the
    least recently active one is dropped first.
    """

    max_size: int = 1 << 20
    max_szx: int = MAX_SZX
    lifetime: float = 247.0  # EXCHANGE_LIFETIME with the default parameters
    max_transfers: int = 8
    _transfers: dict[Hashable, _Transfer] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_szx(self.max_szx)
        if self.max_size < 0 or self.lifetime <= 0 or self.max_transfers < 1:
            raise ValueError("max_size >= 0, lifetime > 0 and max_transfers >= 1 are required")

    @staticmethod
    def default_key(request: Message) -> Hashable:
        return (
            request.code,
            tuple(request.get_all(OptionNumber.URI_HOST)),
            tuple(request.get_all(OptionNumber.URI_PATH)),
            tuple(request.get_all(OptionNumber.URI_QUERY)),
        )

    def pending(self) -> int:
        return len(self._transfers)

    def expire(self, now: float) -> None:
        for key in [k for k, t in self._transfers.items() if t.expires <= now]:
            del self._transfers[key]

    def cancel(self, request: Message, *, key: Hashable | None = None) -> None:
        self._transfers.pop(self.default_key(request) if key is None else key, None)

    def feed(self, request: Message, now: float, *, key: Hashable | None = None) -> Block1Result:
        """Take one request; says how to answer it and, when complete, gives the body."""
        self.expire(now)
        if key is None:
            key = self.default_key(request)
        try:
            block = request.block1
            size1 = request.get_uint(OptionNumber.SIZE1)
            content_format = request.content_format
        except CoapDecodeError as exc:
            self._transfers.pop(key, None)
            return Block1Result(Block1Status.ERROR, Code.BAD_OPTION, reason=str(exc))
        payload = request.payload
        if block is None:
            if len(payload) > self.max_size:
                return self._too_large(key, f"body of {len(payload)} bytes")
            return Block1Result(Block1Status.COMPLETE, payload=payload)
        if size1 is not None and size1 > self.max_size:
            return self._too_large(key, f"announced Size1 {size1}")
        if len(payload) > block.size or (block.more and len(payload) != block.size):
            self._transfers.pop(key, None)
            return Block1Result(
                Block1Status.ERROR,
                Code.BAD_REQUEST,
                reason=f"block {block.num} carries {len(payload)} bytes for size {block.size}",
            )
        offset = block.offset
        transfer = self._transfers.get(key)
        if block.num == 0:
            transfer = _Transfer(bytearray(), content_format, now + self.lifetime)
            self._transfers.pop(key, None)
            self._make_room()
            self._transfers[key] = transfer
        elif transfer is None:
            return self._incomplete(f"block {block.num} without a transfer in progress")
        elif content_format != transfer.content_format:
            return self._incomplete("Content-Format changed between blocks")
        elif offset != len(transfer.body):
            end = offset + len(payload)
            if block.more and end == len(transfer.body) and transfer.body[offset:end] == payload:
                # The client repeated the block we already accepted (our 2.31 got
                # lost and it sent it again as a new request): answer the same.
                transfer.expires = now + self.lifetime
                return self._continue(block, offset)
            return self._incomplete(
                f"block at offset {offset} but {len(transfer.body)} bytes received"
            )
        if len(transfer.body) + len(payload) > self.max_size:
            return self._too_large(key, "reassembled body")
        transfer.body += payload
        transfer.expires = now + self.lifetime
        if block.more:
            # Keep the most recent entry last, so eviction drops the stalest transfer.
            self._transfers[key] = self._transfers.pop(key)
            return self._continue(block, offset)
        del self._transfers[key]
        return Block1Result(
            Block1Status.COMPLETE,
            block1=Block(num=block.num, more=False, szx=block.szx),
            payload=bytes(transfer.body),
        )

    def _continue(self, block: Block, offset: int) -> Block1Result:
        # Echo the block; a smaller SZX tells the client the size we prefer
        # (§2.3), with NUM scaled so that it still names the same offset.
        szx = min(block.szx, self.max_szx)
        num = block.num if szx == block.szx else offset // block_size(szx)
        return Block1Result(Block1Status.CONTINUE, Code.CONTINUE, Block(num, True, szx))

    def _incomplete(self, reason: str) -> Block1Result:
        # The transfer (if any) is kept: a stray block must not destroy a good one,
        # and a client that restarts at block 0 replaces it anyway.
        return Block1Result(Block1Status.ERROR, Code.REQUEST_ENTITY_INCOMPLETE, reason=reason)

    def _too_large(self, key: Hashable, what: str) -> Block1Result:
        self._transfers.pop(key, None)
        return Block1Result(
            Block1Status.ERROR,
            Code.REQUEST_ENTITY_TOO_LARGE,
            size1=self.max_size,
            reason=f"{what} exceeds {self.max_size} bytes",
        )

    def _make_room(self) -> None:
        while len(self._transfers) >= self.max_transfers:
            del self._transfers[next(iter(self._transfers))]
