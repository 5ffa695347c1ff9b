"""RFC 7252 codec: hand-computed vectors, every format error, properties, aiocoap cross-check."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiolwm2m.coap.message import (
    OPTION_LENGTHS,
    Block,
    CoapDecodeError,
    Code,
    Message,
    MessageType,
    OptionNumber,
    code_class,
    code_detail,
    code_str,
    decode,
    decode_uint,
    encode,
    encode_uint,
    is_critical,
    is_request,
    is_response,
    is_success,
    make_options,
)
from aiolwm2m.errors import DecodeError, EncodeError

from .forge import forge

TOKEN = bytes.fromhex("cafebabe")

# -- known vectors (computed by hand from RFC 7252 §3 / §3.1) -------------------


def test_vector_con_get_with_token_and_uri_path() -> None:
    msg = Message(
        type=MessageType.CON,
        code=Code.GET,
        mid=0x1234,
        token=TOKEN,
        options=make_options(path=["rd", "5a3f"]),
    )
    expected = bytes(
        [
            0x44,  # Ver=1, T=CON(0), TKL=4
            0x01,  # 0.01 GET
            0x12, 0x34,  # Message ID
            0xCA, 0xFE, 0xBA, 0xBE,  # token
            0xB2, ord("r"), ord("d"),  # Uri-Path(11): delta 11, length 2
            0x04, *b"5a3f",  # Uri-Path again: delta 0, length 4
        ]
    )  # fmt: skip
    assert encode(msg) == expected
    back = decode(expected)
    assert back == msg
    assert back.uri_path == ["rd", "5a3f"]
    assert back.type is MessageType.CON


def test_vector_extended_deltas_lengths_and_payload() -> None:
    msg = Message(type=MessageType.NON, code=Code.POST, mid=1)
    msg.add(OptionNumber.URI_PATH, b"rd")
    msg.set_uint(OptionNumber.CONTENT_FORMAT, 40)
    msg.add(OptionNumber.URI_QUERY, b"ep=x")
    msg.set_uint(OptionNumber.SIZE1, 300)
    msg.add(2000, b"A" * 20)
    msg.add(2000, b"B" * 300)
    msg.payload = b"hello"
    expected = (
        bytes([0x50, 0x02, 0x00, 0x01])  # Ver=1, NON, TKL=0, 0.02 POST, MID 1
        + bytes([0xB2]) + b"rd"  # Uri-Path 11
        + bytes([0x11, 40])  # Content-Format 12: delta 1, len 1
        + bytes([0x34]) + b"ep=x"  # Uri-Query 15: delta 3, len 4
        + bytes([0xD2, 60 - 15 - 13, 0x01, 0x2C])  # Size1 60: delta 45 -> 13+32, len 2
        + bytes([0xED, 0x06, 0x87, 20 - 13]) + b"A" * 20  # 2000: delta 1940 -> 14+1671, len 13+7
        + bytes([0x0E, 0x00, 300 - 269]) + b"B" * 300  # repeat: delta 0, len 14+31
        + b"\xffhello"
    )  # fmt: skip
    assert encode(msg) == expected
    back = decode(expected)
    assert back == msg
    assert back.get_all(2000) == [b"A" * 20, b"B" * 300]
    assert back.get_uint(OptionNumber.SIZE1) == 300
    assert back.content_format == 40
    assert back.uri_query == ["ep=x"]


def test_vector_piggybacked_notification() -> None:
    msg = Message(type=MessageType.ACK, code=Code.CONTENT, mid=0xBEEF, token=b"\x01\x02")
    msg.set_uint(OptionNumber.OBSERVE, 12)
    msg.set_uint(OptionNumber.CONTENT_FORMAT, 112)
    msg.payload = b"{}"
    expected = bytes([0x62, 0x45, 0xBE, 0xEF, 0x01, 0x02, 0x61, 12, 0x61, 112, 0xFF, *b"{}"])
    assert encode(msg) == expected
    back = decode(expected)
    assert back.observe == 12
    assert back.content_format == 112
    assert code_str(back.code) == "2.05"


def test_vector_empty_messages() -> None:
    assert encode(Message(type=MessageType.CON, code=Code.EMPTY, mid=7)) == b"\x40\x00\x00\x07"
    assert encode(Message(type=MessageType.ACK, code=Code.EMPTY, mid=7)) == b"\x60\x00\x00\x07"
    assert encode(Message(type=MessageType.RST, code=Code.EMPTY, mid=0xFFFF)) == b"\x70\x00\xff\xff"
    rst = decode(b"\x70\x00\xff\xff")
    assert (rst.type, rst.code, rst.mid, rst.token, rst.options, rst.payload) == (
        MessageType.RST,
        0,
        0xFFFF,
        b"",
        [],
        b"",
    )


@pytest.mark.parametrize(
    ("delta", "header"),
    [
        (12, bytes([0xC0])),
        (13, bytes([0xD0, 0])),
        (268, bytes([0xD0, 255])),
        (269, bytes([0xE0, 0, 0])),
        (270, bytes([0xE0, 0, 1])),
        (65535, bytes([0xE0, 0xFE, 0xF2])),
    ],
)
def test_extended_delta_boundaries(delta: int, header: bytes) -> None:
    msg = Message(code=Code.GET, options=[(delta, b"")])
    data = encode(msg)
    assert data == b"\x40\x01\x00\x00" + header
    assert decode(data).options == [(delta, b"")]


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (12, bytes([0x2C])),
        (13, bytes([0x2D, 0])),
        (268, bytes([0x2D, 255])),
        (269, bytes([0x2E, 0, 0])),
        (1034, bytes([0x2E, 0x02, 0xFD])),
    ],
)
def test_extended_length_boundaries(length: int, header: bytes) -> None:
    # Option 2: unassigned, so no range of its own limits the length.
    value = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    msg = Message(code=Code.GET, options=[(2, value)])
    data = encode(msg)
    assert data == b"\x40\x01\x00\x00" + header + value
    assert decode(data).options == [(2, value)]


def test_encode_sorts_options_stably() -> None:
    msg = Message(
        code=Code.GET,
        options=[(15, b"b=2"), (11, b"x"), (15, b"a=1"), (11, b"y"), (6, b"")],
    )
    back = decode(encode(msg))
    assert back.options == [(6, b""), (11, b"x"), (11, b"y"), (15, b"b=2"), (15, b"a=1")]


def test_add_keeps_numeric_order_and_repeat_order() -> None:
    msg = Message(code=Code.GET)
    msg.add(15, b"q1").add(11, b"p1").add(11, b"p2").add(6, b"").add(15, b"q2")
    assert msg.options == [(6, b""), (11, b"p1"), (11, b"p2"), (15, b"q1"), (15, b"q2")]
    msg.remove(11)
    assert not msg.has(11)
    assert msg.get_first(15) == b"q1"
    assert msg.get_first(11) is None


def test_encode_rejects_invalid_messages() -> None:
    with pytest.raises(ValueError):
        encode(Message(code=Code.GET, token=b"123456789"))
    with pytest.raises(ValueError):
        encode(Message(code=Code.GET, mid=0x10000))
    with pytest.raises(ValueError):
        encode(Message(code=256))
    with pytest.raises(ValueError):
        encode(Message(code=Code.GET, options=[(65805, b"")]))


# -- codes -----------------------------------------------------------------------


def test_code_values_and_helpers() -> None:
    assert int(Code.TOO_MANY_REQUESTS) == 0x9D == (4 << 5) | 29
    assert code_str(Code.TOO_MANY_REQUESTS) == "4.29"
    assert code_class(Code.TOO_MANY_REQUESTS) == 4
    assert code_detail(Code.TOO_MANY_REQUESTS) == 29
    assert is_response(Code.TOO_MANY_REQUESTS)
    assert not is_success(Code.TOO_MANY_REQUESTS)
    assert code_str(Code.CONTINUE) == "2.31"
    assert code_str(Code.REQUEST_ENTITY_INCOMPLETE) == "4.08"
    assert code_str(Code.REQUEST_ENTITY_TOO_LARGE) == "4.13"
    assert code_str(Code.UNPROCESSABLE_ENTITY) == "4.22"
    assert code_str(Code.FETCH) == "0.05" and code_str(Code.IPATCH) == "0.07"
    assert code_str(0xE1) == "7.01"
    assert is_request(Code.GET) and not is_request(Code.EMPTY) and not is_request(0x20)
    assert not is_response(0x20) and not is_response(0xC0)  # 1.xx and 6.xx are reserved
    msg = decode(encode(Message(type=MessageType.ACK, code=Code.TOO_MANY_REQUESTS, token=b"t")))
    assert msg.code == Code.TOO_MANY_REQUESTS


def test_critical_and_unknown_options() -> None:
    assert is_critical(OptionNumber.URI_PATH) and is_critical(OptionNumber.BLOCK2)
    assert not is_critical(OptionNumber.OBSERVE) and not is_critical(OptionNumber.SIZE2)
    msg = Message(code=Code.GET, options=[(11, b"x"), (2001, b""), (2002, b""), (9, b"")])
    assert msg.unknown_critical_options() == [9, 2001]


# -- option value lengths (RFC 7252 §5.10 Table 4, §5.4.3) ------------------------

#: RFC 7252 §5.10 Table 4, RFC 7641 §2, RFC 7959 §2.1/§4, RFC 7967 §2, copied by hand.
TABLE_4 = {
    1: (0, 8),
    3: (1, 255),
    4: (1, 8),
    5: (0, 0),
    6: (0, 3),
    7: (0, 2),
    8: (0, 255),
    11: (0, 255),
    12: (0, 2),
    14: (0, 4),
    15: (0, 255),
    17: (0, 2),
    20: (0, 255),
    23: (0, 3),
    27: (0, 3),
    28: (0, 4),
    35: (1, 1034),
    39: (1, 255),
    60: (0, 4),
    258: (0, 1),
}


def test_option_lengths_are_table_4_for_every_known_option() -> None:
    assert OPTION_LENGTHS == TABLE_4
    assert set(OPTION_LENGTHS) == {int(o) for o in OptionNumber}


def _lengths(low: int, high: int) -> list[int]:
    """Both sides of each bound, both sides of the one-byte header's 12, long ones."""
    return sorted({n for n in (0, 1, low, high, high + 1, 12, 13, 300, 1035) if n >= 0})


@pytest.mark.parametrize(("number", "bounds"), TABLE_4.items())
def test_decode_treats_a_length_outside_the_range_as_unrecognised(
    number: int, bounds: tuple[int, int]
) -> None:
    """§5.4.3: an elective option is ignored (not read: a 5-byte Max-Age is no huge
    number), a critical one is kept and reported with the unknown ones (4.02)."""
    low, high = bounds
    for length in _lengths(low, high):
        value = bytes([0x61]) * length
        msg = decode(forge(Message(code=Code.GET, token=b"t"), (number, value)))
        recognised = low <= length <= high
        if recognised or is_critical(number):
            assert msg.options == [(number, value)], length
        else:
            assert msg.options == [], length
        assert msg.unknown_critical_options() == (
            [] if recognised or not is_critical(number) else [number]
        )


def test_out_of_range_uint_options_read_as_absent() -> None:
    extra = [(6, b"\x01" * 4), (12, b"\x01" * 3), (14, b"\xff" * 5), (28, b"\x01" * 5)]
    msg = decode(forge(Message(code=Code.CONTENT, token=b"t"), *extra))
    assert (msg.observe, msg.content_format, msg.max_age) == (None, None, None)
    assert msg.get_uint(OptionNumber.SIZE2) is None
    assert msg.options == []


def test_only_the_option_out_of_range_is_dropped() -> None:
    base = Message(code=Code.CONTENT, token=b"t", options=[(6, b"\x05")], payload=b"p")
    msg = decode(forge(base, (12, b"\x00\x00\x00"), (14, b"\x3c")))
    assert msg.options == [(6, b"\x05"), (14, b"\x3c")]
    assert (msg.observe, msg.max_age, msg.payload) == (5, 60, b"p")


@pytest.mark.parametrize(("number", "bounds"), TABLE_4.items())
def test_encode_refuses_a_length_outside_the_range(number: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    for length in _lengths(low, high):
        msg = Message(code=Code.GET, options=[(11, b"a"), (number, b"\x01" * length)])
        if low <= length <= high:
            assert decode(encode(msg)).options == sorted(msg.options, key=lambda o: o[0])
        else:
            with pytest.raises(EncodeError, match=f"option {number} of {length} bytes"):
                encode(msg)


def test_a_uri_query_over_255_bytes_is_not_sent() -> None:
    msg = Message(code=Code.POST, options=make_options(path=["rd"], query=["ep=" + "e" * 253]))
    with pytest.raises(EncodeError):
        encode(msg)
    assert isinstance(EncodeError("x"), ValueError)  # every caller's ``except ValueError``


# -- option values ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "raw"),
    [
        (Block(0, False, 0), b""),
        (Block(0, True, 0), b"\x08"),
        (Block(1, True, 6), b"\x1e"),
        (Block(2, False, 2), b"\x22"),
        (Block(15, False, 6), b"\xf6"),
        (Block(16, True, 6), b"\x01\x0e"),
        (Block(0xFFFFF, True, 6), b"\xff\xff\xfe"),
    ],
)
def test_block_option_encoding(block: Block, raw: bytes) -> None:
    assert block.encode() == raw
    assert Block.decode(raw) == block


def test_block_option_properties_and_errors() -> None:
    b = Block(num=3, more=True, szx=2)
    assert (b.size, b.offset) == (64, 192)
    assert Block.for_size(5, False, 1024) == Block(5, False, 6)
    assert Block.for_size(0, True, 16) == Block(0, True, 0)
    with pytest.raises(ValueError):
        Block.for_size(0, False, 48)
    with pytest.raises(ValueError):
        Block.for_size(0, False, 2048)
    with pytest.raises(CoapDecodeError):
        Block.decode(b"\x0f")  # SZX 7 is reserved (BERT is TCP only)
    with pytest.raises(CoapDecodeError):
        Block.decode(b"\x00\x00\x00\x16")  # longer than 3 bytes
    msg = Message(code=Code.GET)
    msg.add(OptionNumber.BLOCK2, Block(4, False, 5).encode())
    msg.add(OptionNumber.BLOCK1, Block(1, True, 3).encode())
    back = decode(encode(msg))
    assert back.block2 == Block(4, False, 5)
    assert back.block1 == Block(1, True, 3)
    assert Message(code=Code.GET).block2 is None


def test_observe_size_and_uint_options() -> None:
    msg = Message(type=MessageType.CON, code=Code.CONTENT, token=b"\x00" * 8)
    msg.set_uint(OptionNumber.OBSERVE, 0)
    msg.set_uint(OptionNumber.SIZE2, 70000)
    msg.set_uint(OptionNumber.SIZE1, 1024)
    msg.set_uint(OptionNumber.MAX_AGE, 60)
    msg.set_uint(OptionNumber.ACCEPT, 11542)
    assert msg.get_first(OptionNumber.OBSERVE) == b""  # zero is the empty uint
    back = decode(encode(msg))
    assert back.observe == 0
    assert back.get_uint(OptionNumber.SIZE2) == 70000
    assert back.get_uint(OptionNumber.SIZE1) == 1024
    assert back.max_age == 60
    assert back.accept == 11542
    back.set_uint(OptionNumber.OBSERVE, 0xFFFFFF)
    assert back.get_first(OptionNumber.OBSERVE) == b"\xff\xff\xff"
    assert back.observe == 0xFFFFFF
    back.set_uint(OptionNumber.OBSERVE, 0x1000000)  # 4 bytes: not a valid Observe value
    with pytest.raises(CoapDecodeError):
        _ = back.observe
    assert Message(code=Code.GET).observe is None


def test_uint_helpers() -> None:
    assert encode_uint(0) == b""
    assert encode_uint(255) == b"\xff"
    assert encode_uint(256) == b"\x01\x00"
    assert decode_uint(b"") == 0
    assert decode_uint(b"\x00\x05") == 5  # leading zeros are tolerated on input
    with pytest.raises(ValueError):
        encode_uint(-1)
    with pytest.raises(CoapDecodeError):
        decode_uint(b"\x01\x02\x03\x04\x05")


def test_string_options_must_be_utf8() -> None:
    msg = decode(b"\x40\x01\x00\x00\xb2\xff\xfe")
    with pytest.raises(CoapDecodeError):
        _ = msg.uri_path


def test_describe_is_one_line() -> None:
    msg = Message(code=Code.GET, mid=5, token=b"\xab", options=make_options(path=["3", "0"]))
    assert msg.describe() == "CON 0.01 mid=5 tok=ab /3/0 (0 B)"


# -- every RFC 7252 message format error -----------------------------------------

HDR = b"\x40\x01\x00\x01"  # CON GET MID 1, TKL 0

FORMAT_ERRORS = {
    "empty datagram": b"",
    "short header": b"\x40\x01\x00",
    "version 0": b"\x00\x01\x00\x01",
    "version 2": b"\x80\x01\x00\x01",
    "version 3": b"\xc0\x01\x00\x01",
    **{f"tkl {n}": bytes([0x40 | n, 0x01, 0, 1]) + b"\x00" * 16 for n in range(9, 16)},
    "truncated token": b"\x44\x01\x00\x01\xaa\xbb",
    "delta nibble 15": HDR + b"\xf1x",
    "delta nibble 15 length 0": HDR + b"\xf0",
    "length nibble 15": HDR + b"\x1f" + b"x" * 20,
    "length nibble 15 after option": HDR + b"\xb1a\x0f",
    "truncated ext delta 13": HDR + b"\xd0",
    "truncated ext delta 14": HDR + b"\xe0\x00",
    "truncated ext length 13": HDR + b"\x1d",
    "truncated ext length 14": HDR + b"\x1e\x01",
    "truncated ext length after ext delta": HDR + b"\xde\x00\x00",
    "truncated value": HDR + b"\xb3ab",
    "truncated long value": HDR + b"\x1d\x10" + b"x" * 28,
    "marker with empty payload": HDR + b"\xff",
    "marker with empty payload after options": HDR + b"\xb2rd\xff",
    "empty message with token": b"\x41\x00\x00\x01\xaa",
    "empty ACK with token": b"\x61\x00\x00\x01\xaa",
    "empty RST with payload": b"\x70\x00\x00\x01\xff\x01",
    "empty message with option": b"\x40\x00\x00\x01\xb1a",
    "empty message with one byte": b"\x60\x00\x00\x01\x00",
    "empty message with tkl only": b"\x48\x00\x00\x01",
}


@pytest.mark.parametrize("data", FORMAT_ERRORS.values(), ids=FORMAT_ERRORS.keys())
def test_format_errors_raise_coap_decode_error(data: bytes) -> None:
    with pytest.raises(CoapDecodeError):
        decode(data)


def test_coap_decode_error_is_a_decode_error() -> None:
    assert issubclass(CoapDecodeError, DecodeError)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode(Message(code=Code.GET, token=b"t", options=make_options(path=["a"])))
    from_bytearray = decode(bytearray(data))  # type: ignore[arg-type]
    from_view = decode(memoryview(data))  # type: ignore[arg-type]
    assert from_bytearray == decode(data) == from_view


# -- properties ------------------------------------------------------------------


def fits(number: int, value: bytes) -> bool:
    low, high = OPTION_LENGTHS.get(number, (0, len(value)))
    return low <= len(value) <= high


def in_range(option: tuple[int, bytes]) -> tuple[int, bytes]:
    """The option cut to its length range (every lower bound is 0 or 1): encode() sends no other."""
    number, value = option
    low, high = OPTION_LENGTHS.get(number, (0, len(value)))
    return number, value[:high] or bytes(low)


option_values = st.binary(max_size=20) | st.binary(min_size=250, max_size=400)
option_numbers = st.integers(0, 30) | st.integers(0, 65535)
options = st.lists(st.tuples(option_numbers, option_values).map(in_range), max_size=12).map(
    lambda opts: sorted(opts, key=lambda o: o[0])  # stable: repeats keep their order
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    mtype = draw(st.sampled_from(MessageType))
    mid = draw(st.integers(0, 0xFFFF))
    code = draw(st.integers(0, 255))
    if code == Code.EMPTY:
        return Message(type=mtype, code=code, mid=mid)
    return Message(
        type=mtype,
        code=code,
        mid=mid,
        token=draw(st.binary(max_size=8)),
        options=draw(options),
        payload=draw(st.binary(max_size=300)),
    )


@given(messages())
def test_roundtrip_encode_decode(msg: Message) -> None:
    data = encode(msg)
    back = decode(data)
    assert back == msg
    assert encode(back) == data


@given(messages(), st.randoms(use_true_random=False))
def test_roundtrip_with_unsorted_input(msg: Message, rnd: Any) -> None:
    """Encoding sorts options by number and keeps the order of repeats."""
    numbers = list({n for n, _ in msg.options})
    rnd.shuffle(numbers)
    rank = {n: i for i, n in enumerate(numbers)}
    shuffled = sorted(msg.options, key=lambda o: rank[o[0]])  # stable: repeats keep order
    scrambled = Message(msg.type, msg.code, msg.mid, msg.token, shuffled, msg.payload)
    assert decode(encode(scrambled)) == msg


def assert_reencodes(data: bytes) -> None:
    """An accepted datagram is canonical: re-encoding gives the same bytes, less the
    elective options outside their range that decode() ignored; a critical one outside
    its range is kept (for a 4.02) and never sent."""
    try:
        msg = decode(data)
    except CoapDecodeError:
        return
    if not all(fits(n, v) for n, v in msg.options):
        assert msg.unknown_critical_options()
        with pytest.raises(EncodeError):
            encode(msg)
        return
    again = encode(msg)
    assert decode(again) == msg
    assert again == data or len(again) < len(data)


@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_coap_decode_error(data: bytes) -> None:
    assert_reencodes(data)


@settings(max_examples=300)
@given(messages(), st.data())
def test_mutated_valid_messages_only_raise_coap_decode_error(msg: Message, data: Any) -> None:
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    assert_reencodes(bytes(raw))
    assert_reencodes(bytes(raw[:cut]))


# -- cross-check with aiocoap ----------------------------------------------------

aiocoap = pytest.importorskip("aiocoap")
from aiocoap import optiontypes as aio_opt  # noqa: E402
from aiocoap.numbers.optionnumbers import OptionNumber as AioOptionNumber  # noqa: E402


def _value_for(number: int) -> st.SearchStrategy[bytes]:
    """Values aiocoap decodes and re-encodes byte-identically, by its option format."""
    fmt = AioOptionNumber(number).format
    if fmt is aio_opt.StringOption:
        return st.text(max_size=30).map(lambda s: s.encode("utf-8"))
    if fmt in (aio_opt.UintOption, aio_opt.ContentFormatOption):
        return st.integers(0, 0xFFFF if number in (12, 17) else 0xFFFFFFFF).map(encode_uint)
    if fmt is aio_opt.BlockOption:
        return st.builds(Block, st.integers(0, 0xFFFFF), st.booleans(), st.integers(0, 6)).map(
            Block.encode
        )
    return option_values


_typed_option = (st.sampled_from([int(o) for o in OptionNumber]) | st.integers(0, 65535)).flatmap(
    lambda n: _value_for(n).map(lambda v: in_range((n, v)))
)


@st.composite
def typed_messages(draw: st.DrawFn) -> Message:
    msg: Message = draw(messages())
    if msg.code == Code.EMPTY:
        return msg
    opts = draw(st.lists(_typed_option, max_size=10))
    msg.options = sorted(opts, key=lambda o: o[0])
    return msg


def _to_aiocoap(msg: Message) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        aio = aiocoap.Message(
            code=msg.code, payload=msg.payload, _mid=msg.mid, _mtype=int(msg.type), _token=msg.token
        )
    for number, value in msg.options:
        aio.opt.add_option(aio_opt.OpaqueOption(number, value))
    return aio


def _from_aiocoap(aio: Any) -> tuple[Any, ...]:
    return (
        int(aio.mtype),
        int(aio.code),
        aio.mid,
        bytes(aio.token),
        [(int(o.number), o.encode()) for o in aio.opt.option_list()],
        bytes(aio.payload),
    )


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_aiocoap_encodes_what_we_decode(msg: Message) -> None:
    data = _to_aiocoap(msg).encode()
    assert data == encode(msg)
    assert decode(data) == msg


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(typed_messages())
def test_aiocoap_decodes_what_we_encode(msg: Message) -> None:
    aio = aiocoap.Message.decode(encode(msg))
    assert _from_aiocoap(aio) == (
        int(msg.type),
        msg.code,
        msg.mid,
        msg.token,
        msg.options,
        msg.payload,
    )
