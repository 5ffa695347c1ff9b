"""CoAP message model and wire codec (RFC 7252 §3, RFC 7641, RFC 7959, RFC 8516).

The codec is deliberately strict on *framing* (anything RFC 7252 calls a message
format error raises :class:`CoapDecodeError`) and lenient on *option values*:
options are kept as raw bytes in wire order so that an unknown or odd option
can still be answered correctly (4.02 Bad Option for an unrecognised critical
option) by the layer that understands the request, instead of the whole
datagram being dropped here. A known option whose value length is outside its
range (:data:`OPTION_LENGTHS`) is unrecognised too (§5.4.3): an elective one is
dropped while decoding, so no accessor ever reads it, and a critical one is
kept for :meth:`Message.unknown_critical_options` to report. :func:`encode`
never sends one (:class:`~aiolwm2m.errors.EncodeError`).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from aiolwm2m.errors import DecodeError, EncodeError

__all__ = [
    "KNOWN_OPTIONS",
    "OPTION_LENGTHS",
    "PAYLOAD_MARKER",
    "VERSION",
    "Block",
    "CoapDecodeError",
    "Code",
    "Message",
    "MessageType",
    "Option",
    "OptionNumber",
    "code_class",
    "code_detail",
    "code_str",
    "decode",
    "decode_uint",
    "encode",
    "encode_fields",
    "encode_uint",
    "is_critical",
    "is_request",
    "is_response",
    "is_success",
    "make_options",
    "with_mid",
]

VERSION = 1
PAYLOAD_MARKER = 0xFF
_MARKER = bytes((PAYLOAD_MARKER,))


class CoapDecodeError(DecodeError):
    """A datagram is not a well-formed CoAP message (RFC 7252 "message format error")."""


class MessageType(enum.IntEnum):
    CON = 0
    NON = 1
    ACK = 2
    RST = 3


# The header's two type bits to a member by indexing: calling the enum costs
# about a tenth of decoding a whole datagram.
_TYPES = tuple(MessageType)


def _code(cls: int, detail: int) -> int:
    return (cls << 5) | detail


class Code(enum.IntEnum):
    """Request methods and response codes; the value is the wire byte (class << 5 | detail)."""

    EMPTY = 0
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4
    FETCH = 5
    PATCH = 6
    IPATCH = 7
    CREATED = _code(2, 1)
    DELETED = _code(2, 2)
    VALID = _code(2, 3)
    CHANGED = _code(2, 4)
    CONTENT = _code(2, 5)
    CONTINUE = _code(2, 31)
    BAD_REQUEST = _code(4, 0)
    UNAUTHORIZED = _code(4, 1)
    BAD_OPTION = _code(4, 2)
    FORBIDDEN = _code(4, 3)
    NOT_FOUND = _code(4, 4)
    METHOD_NOT_ALLOWED = _code(4, 5)
    NOT_ACCEPTABLE = _code(4, 6)
    REQUEST_ENTITY_INCOMPLETE = _code(4, 8)
    CONFLICT = _code(4, 9)
    PRECONDITION_FAILED = _code(4, 12)
    REQUEST_ENTITY_TOO_LARGE = _code(4, 13)
    UNSUPPORTED_CONTENT_FORMAT = _code(4, 15)
    UNPROCESSABLE_ENTITY = _code(4, 22)
    TOO_MANY_REQUESTS = _code(4, 29)
    INTERNAL_SERVER_ERROR = _code(5, 0)
    NOT_IMPLEMENTED = _code(5, 1)
    BAD_GATEWAY = _code(5, 2)
    SERVICE_UNAVAILABLE = _code(5, 3)
    GATEWAY_TIMEOUT = _code(5, 4)
    PROXYING_NOT_SUPPORTED = _code(5, 5)


def code_class(code: int) -> int:
    return code >> 5


def code_detail(code: int) -> int:
    return code & 0x1F


def code_str(code: int) -> str:
    """Dotted form ("4.04") used in logs and events, defined for unknown codes too."""
    return f"{code_class(code)}.{code_detail(code):02d}"


def is_request(code: int) -> bool:
    return 1 <= code <= 31


def is_response(code: int) -> bool:
    return 2 <= code_class(code) <= 5


def is_success(code: int) -> bool:
    return code_class(code) == 2


class OptionNumber(enum.IntEnum):
    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15
    ACCEPT = 17
    LOCATION_QUERY = 20
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    PROXY_URI = 35
    PROXY_SCHEME = 39
    SIZE1 = 60
    NO_RESPONSE = 258


def is_critical(number: int) -> bool:
    """Odd option numbers are critical (RFC 7252 §5.4.1)."""
    return bool(number & 1)


#: Length range (bytes, inclusive) of each option's value: RFC 7252 §5.10 Table 4,
#: Observe RFC 7641 §2, Block1/Block2 RFC 7959 §2.1, Size2 RFC 7959 §4,
#: No-Response RFC 7967 §2. The only definition of the ranges: a received value
#: outside its range is an unrecognised option (§5.4.3), so a too-long Max-Age or
#: Observe is never read; :func:`encode` refuses to send one.
OPTION_LENGTHS: dict[int, tuple[int, int]] = {
    OptionNumber.IF_MATCH: (0, 8),
    OptionNumber.URI_HOST: (1, 255),
    OptionNumber.ETAG: (1, 8),
    OptionNumber.IF_NONE_MATCH: (0, 0),
    OptionNumber.OBSERVE: (0, 3),
    OptionNumber.URI_PORT: (0, 2),
    OptionNumber.LOCATION_PATH: (0, 255),
    OptionNumber.URI_PATH: (0, 255),
    OptionNumber.CONTENT_FORMAT: (0, 2),
    OptionNumber.MAX_AGE: (0, 4),
    OptionNumber.URI_QUERY: (0, 255),
    OptionNumber.ACCEPT: (0, 2),
    OptionNumber.LOCATION_QUERY: (0, 255),
    OptionNumber.BLOCK2: (0, 3),
    OptionNumber.BLOCK1: (0, 3),
    OptionNumber.SIZE2: (0, 4),
    OptionNumber.PROXY_URI: (1, 1034),
    OptionNumber.PROXY_SCHEME: (1, 255),
    OptionNumber.SIZE1: (0, 4),
    OptionNumber.NO_RESPONSE: (0, 1),
}

# Options this implementation understands; a request carrying any other critical
# option must be rejected with 4.02 (RFC 7252 §5.4.1).
KNOWN_OPTIONS = frozenset(OPTION_LENGTHS)


def _out_of_range(number: int, length: int) -> bool:
    """A known option's value length outside :data:`OPTION_LENGTHS` (an unknown one: never)."""
    bounds = OPTION_LENGTHS.get(number)
    return bounds is not None and not bounds[0] <= length <= bounds[1]


# What decode() drops on the spot, precomputed for the lengths of a one-byte
# option header (0-12), the common case, so its loop pays a tuple index and a set
# lookup per option instead of a call: for each such length, the elective options
# it is outside the range of (an unrecognised elective option is ignored,
# §5.4.1). Critical ones stay, for unknown_critical_options() to report.
_ELECTIVE_SHORT_OUT_OF_RANGE = tuple(
    frozenset(int(n) for n in OPTION_LENGTHS if not is_critical(n) and _out_of_range(n, length))
    for length in range(13)
)


def encode_uint(value: int) -> bytes:
    """Minimal-length big-endian unsigned integer, as every uint option requires (§3.2).

    Big-endian is ``to_bytes``' default (no byte order string to parse): one
    runs per notification (its Observe value).
    """
    if value < 0:
        raise ValueError("option uint must be non-negative")
    return value.to_bytes((value.bit_length() + 7) >> 3)


def decode_uint(data: bytes, max_len: int = 4) -> int:
    if len(data) > max_len:
        raise CoapDecodeError(f"uint option of {len(data)} bytes exceeds {max_len}")
    return int.from_bytes(data, "big")


@dataclass(frozen=True)
class Block:
    """Block1/Block2 option value (RFC 7959 §2.2)."""

    num: int
    more: bool
    szx: int

    @property
    def size(self) -> int:
        return 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        return self.num * self.size

    def encode(self) -> bytes:
        return encode_uint((self.num << 4) | (int(self.more) << 3) | self.szx)

    @classmethod
    def decode(cls, data: bytes) -> Block:
        value = decode_uint(data, 3)
        szx = value & 0x7
        if szx == 7:
            raise CoapDecodeError("block SZX 7 is reserved")
        return cls(num=value >> 4, more=bool(value & 0x8), szx=szx)

    @classmethod
    def for_size(cls, num: int, more: bool, size: int) -> Block:
        if size not in (16, 32, 64, 128, 256, 512, 1024):
            raise ValueError(f"block size {size} is not a power of two in 16..1024")
        return cls(num=num, more=more, szx=size.bit_length() - 5)


Option = tuple[int, bytes]


@dataclass(slots=True)
class Message:
    """One CoAP message. Options are (number, raw value) pairs kept sorted by number.

    Repeated options keep their relative order, which carries meaning for
    Uri-Path / Uri-Query / Location-Path.
    """

    type: MessageType = MessageType.CON
    code: int = Code.EMPTY
    mid: int = 0
    token: bytes = b""
    options: list[Option] = field(default_factory=list)
    payload: bytes = b""

    # -- generic option access -------------------------------------------------
    def get_all(self, number: int) -> list[bytes]:
        return [v for n, v in self.options if n == number]

    def get_first(self, number: int) -> bytes | None:
        for n, v in self.options:
            if n == number:
                return v
        return None

    def has(self, number: int) -> bool:
        return any(n == number for n, _ in self.options)

    def add(self, number: int, value: bytes) -> Message:
        """Insert keeping numeric order (stable for repeats); returns self for chaining."""
        idx = len(self.options)
        for i, (n, _) in enumerate(self.options):
            if n > number:
                idx = i
                break
        self.options.insert(idx, (int(number), value))
        return self

    def remove(self, number: int) -> None:
        self.options = [(n, v) for n, v in self.options if n != number]

    def set_uint(self, number: int, value: int) -> Message:
        self.remove(number)
        return self.add(number, encode_uint(value))

    def get_uint(self, number: int, max_len: int = 4) -> int | None:
        raw = self.get_first(number)
        return None if raw is None else decode_uint(raw, max_len)

    # -- typed accessors ---------------------------------------------------------
    @property
    def uri_path(self) -> list[str]:
        return [_utf8(v) for v in self.get_all(OptionNumber.URI_PATH)]

    @property
    def uri_query(self) -> list[str]:
        return [_utf8(v) for v in self.get_all(OptionNumber.URI_QUERY)]

    @property
    def location_path(self) -> list[str]:
        return [_utf8(v) for v in self.get_all(OptionNumber.LOCATION_PATH)]

    @property
    def content_format(self) -> int | None:
        return self.get_uint(OptionNumber.CONTENT_FORMAT, 2)

    @property
    def accept(self) -> int | None:
        return self.get_uint(OptionNumber.ACCEPT, 2)

    @property
    def observe(self) -> int | None:
        return self.get_uint(OptionNumber.OBSERVE, 3)

    @property
    def max_age(self) -> int | None:
        return self.get_uint(OptionNumber.MAX_AGE, 4)

    @property
    def block1(self) -> Block | None:
        raw = self.get_first(OptionNumber.BLOCK1)
        return None if raw is None else Block.decode(raw)

    @property
    def block2(self) -> Block | None:
        raw = self.get_first(OptionNumber.BLOCK2)
        return None if raw is None else Block.decode(raw)

    def unknown_critical_options(self) -> list[int]:
        """Critical options this implementation does not recognise (RFC 7252 §5.4.1).

        An unknown number, or (§5.4.3) a known one whose value length is outside
        :data:`OPTION_LENGTHS`: both are refused the same way by the message layer.
        """
        return sorted(
            {
                n
                for n, v in self.options
                if n & 1 and (n not in KNOWN_OPTIONS or _out_of_range(n, len(v)))
            }
        )

    def describe(self) -> str:
        """Compact one-line rendering for logs."""
        path = "/" + "/".join(self.uri_path) if self.has(OptionNumber.URI_PATH) else ""
        return (
            f"{self.type.name} {code_str(self.code)} mid={self.mid} "
            f"tok={self.token.hex()}{' ' + path if path else ''} ({len(self.payload)} B)"
        )


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CoapDecodeError("string option is not valid UTF-8") from exc


def make_options(
    *,
    path: Sequence[str] = (),
    query: Iterable[str] = (),
    content_format: int | None = None,
    accept: int | None = None,
    observe: int | None = None,
) -> list[Option]:
    """Build a sorted option list for the common request shapes."""
    opts: list[Option] = []
    if observe is not None:
        opts.append((OptionNumber.OBSERVE, encode_uint(observe)))
    opts += [(OptionNumber.URI_PATH, p.encode()) for p in path]
    if content_format is not None:
        opts.append((OptionNumber.CONTENT_FORMAT, encode_uint(content_format)))
    opts += [(OptionNumber.URI_QUERY, q.encode()) for q in query]
    if accept is not None:
        opts.append((OptionNumber.ACCEPT, encode_uint(accept)))
    opts.sort(key=lambda o: o[0])
    return opts


# -- wire format ---------------------------------------------------------------


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    if value < 65805:
        return 14, (value - 269).to_bytes(2, "big")
    raise ValueError(f"option delta/length {value} too large")


def _option_header(delta: int, number: int, length: int) -> bytes:
    """An option's header bytes (nibbles and extended delta/length, RFC 7252 §3.1).

    Raises :class:`~aiolwm2m.errors.EncodeError` for a known option whose
    value length is outside its range.
    """
    if _out_of_range(number, length):
        raise _length_error(number, length)
    delta_nib, delta_ext = _ext(delta)
    len_nib, len_ext = _ext(length)
    return bytes(((delta_nib << 4) | len_nib,)) + delta_ext + len_ext


# The one-byte header of every known option whose value length is in range and
# short (0-12 bytes), keyed by (previous option number, number, length): the
# encoder's common case is one dict lookup, range check included, per option.
# Previous numbers are 0 and the known ones, so an unknown option (or a gap of
# 13 or more) takes :func:`_option_header`.
_SHORT_HEADERS: dict[tuple[int, int, int], bytes] = {
    (last, number, length): bytes(((number - last) << 4 | length,))
    for last in (0, *OPTION_LENGTHS)
    for number in OPTION_LENGTHS
    if 0 <= number - last < 13
    for length in range(13)
    if not _out_of_range(number, length)
}

_NUMBER = itemgetter(0)
# Version, type and token length; code; message id (RFC 7252 §3).
_HEADER = struct.Struct(">BBH").pack


def encode(msg: Message) -> bytes:
    """Serialise a message; options are written in number order (stable for repeats)."""
    return encode_fields(msg.type, msg.code, msg.mid, msg.token, msg.options, msg.payload)


def encode_fields(
    mtype: int, code: int, mid: int, token: bytes, options: Sequence[Option], payload: bytes
) -> bytes:
    """:func:`encode` of a message given by its fields (no Message object needed).

    Raises :class:`~aiolwm2m.errors.EncodeError` (a ValueError) for an option
    value outside its :data:`OPTION_LENGTHS` range.
    """
    tkl = len(token)
    if tkl > 8:
        raise ValueError("token longer than 8 bytes")
    try:
        head = _HEADER(VERSION << 6 | mtype << 4 | tkl, code, mid)
    except struct.error:
        bad = "message id" if not 0 <= mid <= 0xFFFF else "code"
        raise ValueError(f"{bad} out of range") from None
    count = len(options)
    # None or one (an empty ACK or Reset) or two in order (a notification's
    # Observe and Content-Format, built in that order): nothing to sort.
    if count > 2 or (count == 2 and options[0][0] > options[1][0]):
        options = sorted(options, key=_NUMBER)
    parts = [head, token]
    last = 0
    short = _SHORT_HEADERS
    for number, value in options:
        length = len(value)
        try:
            header = short[last, number, length]
        except KeyError:  # long, unknown or out of range
            header = _option_header(number - last, number, length)
        parts.append(header)
        parts.append(value)
        last = number
    if payload:
        parts.append(_MARKER)
        parts.append(payload)
    return b"".join(parts)


def _length_error(number: int, length: int) -> EncodeError:
    """Why :func:`encode` sends nothing: the peer would have to treat the option as
    unrecognised (RFC 7252 §5.4.3), e.g. refuse a request with 4.02."""
    low, high = OPTION_LENGTHS[number]
    return EncodeError(f"option {number} of {length} bytes is outside its range {low}..{high}")


def with_mid(data: bytes, mid: int) -> bytes:
    """An encoded message with another message id (header bytes 2-3, RFC 7252 §3).

    Lets a layer encode a request once, when it is queued, and stamp the id
    when it is actually sent.
    """
    return data[:2] + mid.to_bytes(2, "big") + data[4:]


def _read_ext(data: bytes, pos: int, nibble: int, what: str) -> tuple[int, int]:
    if nibble < 13:
        return nibble, pos
    if nibble == 13:
        if pos + 1 > len(data):
            raise CoapDecodeError(f"truncated extended option {what}")
        return data[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > len(data):
            raise CoapDecodeError(f"truncated extended option {what}")
        return int.from_bytes(data[pos : pos + 2], "big") + 269, pos + 2
    raise CoapDecodeError(f"reserved option {what} nibble 15")


def decode(data: bytes) -> Message:
    """Parse one datagram. Raises :class:`CoapDecodeError` and nothing else."""
    data = bytes(data)
    if len(data) < 4:
        raise CoapDecodeError("datagram shorter than the 4-byte CoAP header")
    first = data[0]
    if first >> 6 != VERSION:
        raise CoapDecodeError(f"unsupported CoAP version {first >> 6}")
    mtype = _TYPES[(first >> 4) & 0x3]
    tkl = first & 0x0F
    if tkl > 8:
        raise CoapDecodeError(f"reserved token length {tkl}")
    code = data[1]
    mid = data[2] << 8 | data[3]
    end = len(data)
    if code == 0:  # Empty
        if end != 4 or tkl:
            raise CoapDecodeError("empty message with token, options or payload")
        return Message(mtype, code, mid)
    pos = 4 + tkl
    if end < pos:
        raise CoapDecodeError("truncated token")
    token = data[4:pos]
    options: list[Option] = []
    number = 0
    payload = b""
    elective_short_out_of_range = _ELECTIVE_SHORT_OUT_OF_RANGE
    while pos < end:
        byte = data[pos]
        pos += 1
        if byte == PAYLOAD_MARKER:
            payload = data[pos:]
            if not payload:
                raise CoapDecodeError("payload marker followed by an empty payload")
            break
        delta = byte >> 4
        length = byte & 0x0F
        if delta >= 13:
            delta, pos = _read_ext(data, pos, delta, "delta")
        number += delta
        if length < 13:
            keep = number not in elective_short_out_of_range[length]
        else:
            length, pos = _read_ext(data, pos, length, "length")
            keep = is_critical(number) or not _out_of_range(number, length)
        if pos + length > end:
            raise CoapDecodeError("truncated option value")
        if keep:  # an elective option outside its range is ignored (§5.4.3)
            options.append((number, data[pos : pos + length]))
        pos += length
    return Message(mtype, code, mid, token, options, payload)
