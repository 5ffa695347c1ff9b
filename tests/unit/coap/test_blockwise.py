"""RFC 7959 helpers: Block2 slicing and reassembly, Block1 assembly, typed errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiolwm2m.coap.blockwise import (
    MAX_SZX,
    Block1Assembler,
    Block1Result,
    Block1Status,
    Block2EtagMismatch,
    Block2OutOfRange,
    Block2Receiver,
    Block2SequenceError,
    Block2SizeMismatch,
    Block2Slice,
    BlockwiseError,
    EntityTooLarge,
    apply_block2,
    block_size,
    slice_block2,
    szx_for,
)
from aiolwm2m.coap.message import (
    Block,
    Code,
    Message,
    MessageType,
    OptionNumber,
    decode,
    encode,
    encode_uint,
    make_options,
)
from aiolwm2m.errors import DecodeError

BODY = bytes(range(256)) * 10  # 2560 bytes


def test_sizes() -> None:
    assert [block_size(s) for s in range(7)] == [16, 32, 64, 128, 256, 512, 1024]
    assert szx_for(16) == 0 and szx_for(1024) == 6 and szx_for(1000) == 5
    assert szx_for(1 << 20) == MAX_SZX
    with pytest.raises(ValueError):
        szx_for(15)


def test_error_hierarchy() -> None:
    for cls in (
        Block2OutOfRange,
        Block2SequenceError,
        Block2EtagMismatch,
        Block2SizeMismatch,
        EntityTooLarge,
    ):
        assert issubclass(cls, BlockwiseError)
    assert issubclass(BlockwiseError, DecodeError)
    assert Block2OutOfRange.code == Code.BAD_OPTION
    assert EntityTooLarge.code == Code.REQUEST_ENTITY_TOO_LARGE


# -- server-side Block2 slicing ---------------------------------------------------


def test_small_payload_without_block2_request_is_untouched() -> None:
    piece = slice_block2(b"x" * 1024, None)
    assert piece == Block2Slice(b"x" * 1024, None, None)
    assert piece.options() == []


def test_large_payload_first_block_with_size2() -> None:
    piece = slice_block2(BODY, None)
    assert piece.payload == BODY[:1024]
    assert piece.block == Block(0, True, 6)
    assert piece.size2 == len(BODY)
    assert piece.options() == [
        (OptionNumber.BLOCK2, Block(0, True, 6).encode()),
        (OptionNumber.SIZE2, encode_uint(2560)),
    ]


def test_requested_blocks() -> None:
    second = slice_block2(BODY, Block(1, False, 6))
    assert (second.payload, second.block, second.size2) == (
        BODY[1024:2048],
        Block(1, True, 6),
        None,
    )
    last = slice_block2(BODY, Block(2, False, 6))
    assert (last.payload, last.block) == (BODY[2048:], Block(2, False, 6))
    small = slice_block2(BODY, Block(5, False, 2), include_size2=True)  # 64-byte blocks
    assert (small.payload, small.block, small.size2) == (BODY[320:384], Block(5, True, 2), 2560)


def test_request_m_bit_is_ignored() -> None:
    assert slice_block2(BODY, Block(1, True, 6)) == slice_block2(BODY, Block(1, False, 6))


def test_server_smaller_size_scales_block_number() -> None:
    # The client asks for block 1 of 1024 bytes; the server only does 256-byte blocks.
    piece = slice_block2(BODY, Block(1, False, 6), max_szx=4)
    assert piece.block == Block(4, True, 4)
    assert piece.payload == BODY[1024:1280]
    assert piece.block.offset == 1024


def test_block0_request_for_small_payload_gets_block2_m0() -> None:
    piece = slice_block2(b"tiny", Block(0, False, 2))
    assert (piece.payload, piece.block, piece.size2) == (b"tiny", Block(0, False, 2), 4)
    empty = slice_block2(b"", Block(0, False, 6))
    assert (empty.payload, empty.block) == (b"", Block(0, False, 6))


def test_exact_multiple_ends_with_full_last_block() -> None:
    payload = b"a" * 2048
    assert slice_block2(payload, Block(1, False, 6)).block == Block(1, False, 6)
    with pytest.raises(Block2OutOfRange):
        slice_block2(payload, Block(2, False, 6))


def test_block_past_the_end() -> None:
    with pytest.raises(Block2OutOfRange) as info:
        slice_block2(BODY, Block(3, False, 6))
    assert info.value.code == Code.BAD_OPTION
    with pytest.raises(Block2OutOfRange):
        slice_block2(b"", Block(1, False, 0))


def test_bad_max_szx() -> None:
    with pytest.raises(ValueError):
        slice_block2(BODY, None, max_szx=7)


def test_apply_block2_to_a_response() -> None:
    request = Message(code=Code.GET, token=b"t", options=make_options(path=["5", "0", "0"]))
    request.add(OptionNumber.BLOCK2, Block(1, False, 5).encode())
    request.add(OptionNumber.SIZE2, b"")
    response = Message(type=MessageType.ACK, code=Code.CONTENT, token=b"t", payload=BODY)
    response.set_uint(OptionNumber.CONTENT_FORMAT, 42)
    apply_block2(request, response, max_szx=6)
    back = decode(encode(response))
    assert back.payload == BODY[512:1024]
    assert back.block2 == Block(1, True, 5)
    assert back.get_uint(OptionNumber.SIZE2) == 2560
    assert back.content_format == 42


# -- client-side Block2 reassembly -------------------------------------------------


def server_response(
    payload: bytes,
    requested: Block | None,
    *,
    max_szx: int = MAX_SZX,
    etag: bytes | None = b"v1",
    size2: bool = False,
) -> Message:
    msg = Message(type=MessageType.ACK, code=Code.CONTENT, token=b"t")
    if etag is not None:
        msg.add(OptionNumber.ETAG, etag)
    msg.set_uint(OptionNumber.CONTENT_FORMAT, 11542)
    slice_block2(payload, requested, max_szx=max_szx, include_size2=size2).apply(msg)
    return decode(encode(msg))


def transfer(
    payload: bytes, *, server_szx: int = MAX_SZX, client_szx: int | None = None
) -> tuple[bytes, int]:
    rx = Block2Receiver(szx=client_szx)
    request = rx.first_request_block()
    rounds = 0
    while True:
        rounds += 1
        nxt = rx.feed(server_response(payload, request, max_szx=server_szx))
        if nxt is None:
            break
        assert not rx.done
        assert nxt.more is False
        request = nxt
    assert rx.done
    return rx.payload, rounds


def test_receiver_single_response_without_block2() -> None:
    rx = Block2Receiver()
    assert rx.first_request_block() is None
    assert rx.feed(server_response(b"short", None)) is None
    assert rx.done and rx.payload == b"short"
    assert rx.etag == b"v1" and rx.code == Code.CONTENT and rx.content_format == 11542
    with pytest.raises(Block2SequenceError):
        rx.feed(server_response(b"short", None))


def test_receiver_requests_blocks_in_order() -> None:
    rx = Block2Receiver()
    assert rx.feed(server_response(BODY, None)) == Block(1, False, 6)
    assert rx.size2 == 2560
    assert rx.received == 1024
    with pytest.raises(RuntimeError):
        _ = rx.payload
    assert rx.feed(server_response(BODY, Block(1, False, 6))) == Block(2, False, 6)
    assert rx.feed(server_response(BODY, Block(2, False, 6))) is None
    assert rx.payload == BODY
    assert rx.blocks == 3


def test_receiver_client_prefers_smaller_blocks() -> None:
    rx = Block2Receiver(szx=4)
    assert rx.first_request_block() == Block(0, False, 4)
    # A server that ignores the preference on the first block: continue at 256 bytes.
    assert rx.feed(server_response(BODY, None)) == Block(4, False, 4)
    assert rx.feed(server_response(BODY, Block(4, False, 4))) == Block(5, False, 4)


def test_receiver_etag_change_is_an_error() -> None:
    rx = Block2Receiver()
    rx.feed(server_response(BODY, None, etag=b"v1"))
    with pytest.raises(Block2EtagMismatch):
        rx.feed(server_response(BODY, Block(1, False, 6), etag=b"v2"))
    rx = Block2Receiver()
    rx.feed(server_response(BODY, None, etag=None))
    with pytest.raises(Block2EtagMismatch):
        rx.feed(server_response(BODY, Block(1, False, 6), etag=b"v2"))


def test_receiver_size2_change_is_an_error() -> None:
    rx = Block2Receiver()
    rx.feed(server_response(BODY, None))
    with pytest.raises(Block2SizeMismatch):
        rx.feed(server_response(BODY + b"more", Block(1, False, 6), size2=True))


def test_receiver_final_length_must_match_size2_when_strict() -> None:
    first = server_response(BODY, None)
    first.set_uint(OptionNumber.SIZE2, 3000)
    rx = Block2Receiver()
    rx.feed(first)
    rx.feed(server_response(BODY, Block(1, False, 6)))
    with pytest.raises(Block2SizeMismatch):
        rx.feed(server_response(BODY, Block(2, False, 6)))
    lenient = Block2Receiver(strict_size=False)
    lenient.feed(first)
    lenient.feed(server_response(BODY, Block(1, False, 6)))
    assert lenient.feed(server_response(BODY, Block(2, False, 6))) is None
    assert lenient.payload == BODY


def test_receiver_out_of_order_and_short_blocks() -> None:
    rx = Block2Receiver()
    rx.feed(server_response(BODY, None))
    with pytest.raises(Block2SequenceError):
        rx.feed(server_response(BODY, Block(2, False, 6)))  # skipped block 1
    rx = Block2Receiver()
    with pytest.raises(Block2SequenceError):
        rx.feed(server_response(BODY, Block(1, False, 6)))  # never got block 0
    rx = Block2Receiver()
    rx.feed(server_response(BODY, None))
    short = server_response(BODY, Block(1, False, 6))
    short.payload = short.payload[:100]  # M=1 but not a full block
    with pytest.raises(Block2SequenceError):
        rx.feed(short)
    rx = Block2Receiver()
    rx.feed(server_response(BODY, None))
    missing = server_response(BODY, Block(1, False, 6))
    missing.remove(OptionNumber.BLOCK2)
    with pytest.raises(Block2SequenceError):
        rx.feed(missing)


def test_receiver_code_change_and_bad_option() -> None:
    rx = Block2Receiver()
    rx.feed(server_response(BODY, None))
    changed = server_response(BODY, Block(1, False, 6))
    changed.code = Code.CHANGED
    with pytest.raises(Block2SequenceError):
        rx.feed(changed)
    bad = server_response(BODY, None)
    bad.remove(OptionNumber.BLOCK2)
    bad.add(OptionNumber.BLOCK2, b"\x0f")  # SZX 7
    with pytest.raises(Block2SequenceError):
        Block2Receiver().feed(bad)


def test_receiver_max_size() -> None:
    rx = Block2Receiver(max_size=2000)
    with pytest.raises(EntityTooLarge):
        rx.feed(server_response(BODY, None))  # Size2 2560 announced up front
    rx = Block2Receiver(max_size=2000)
    first = server_response(BODY, None)
    first.remove(OptionNumber.SIZE2)
    rx.feed(first)
    with pytest.raises(EntityTooLarge):
        rx.feed(server_response(BODY, Block(1, False, 6)))
    with pytest.raises(EntityTooLarge):
        Block2Receiver(max_size=10).feed(server_response(b"x" * 11, None))


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=3000) | st.integers(0, 5000).map(lambda n: bytes(n % 251 for n in range(n))),
    st.integers(0, 6),
    st.none() | st.integers(0, 6),
)
def test_slice_then_reassemble_is_identity(
    payload: bytes, server_szx: int, client_szx: int | None
) -> None:
    got, rounds = transfer(payload, server_szx=server_szx, client_szx=client_szx)
    assert got == payload
    size = block_size(server_szx if client_szx is None else min(server_szx, client_szx))
    if client_szx is None and len(payload) <= size:
        assert rounds == 1
    else:
        assert rounds == max(1, -(-len(payload) // size))


# -- receiving side of Block1 ----------------------------------------------------


def block1_request(
    payload: bytes,
    block: Block | None,
    *,
    path: str = "5/0/0",
    size1: int | None = None,
    token: bytes = b"t",
    content_format: int | None = 42,
) -> Message:
    msg = Message(
        code=Code.PUT,
        token=token,
        options=make_options(path=path.split("/"), content_format=content_format),
        payload=payload,
    )
    if block is not None:
        msg.add(OptionNumber.BLOCK1, block.encode())
    if size1 is not None:
        msg.set_uint(OptionNumber.SIZE1, size1)
    return decode(encode(msg))


def send_body(
    asm: Block1Assembler, payload: bytes, szx: int, *, now: float = 0.0, path: str = "5/0/0"
) -> list[Block1Result]:
    """A well-behaved client: follows the server's preferred size from 2.31 answers."""
    results = []
    offset = 0
    while True:
        size = block_size(szx)
        chunk = payload[offset : offset + size]
        more = offset + size < len(payload)
        req = block1_request(chunk, Block(offset // size, more, szx), path=path)
        result = asm.feed(req, now)
        results.append(result)
        if result.status is not Block1Status.CONTINUE:
            return results
        assert result.block1 is not None
        szx = min(szx, result.block1.szx)
        offset += len(chunk)


def test_block1_simple_atomic_put() -> None:
    asm = Block1Assembler()
    results = send_body(asm, BODY[:300], szx=3)  # 128-byte blocks: 0, 1, 2
    assert [r.status for r in results] == [
        Block1Status.CONTINUE,
        Block1Status.CONTINUE,
        Block1Status.COMPLETE,
    ]
    assert [r.code for r in results] == [Code.CONTINUE, Code.CONTINUE, None]
    assert [r.block1 for r in results] == [Block(0, True, 3), Block(1, True, 3), Block(2, False, 3)]
    assert results[-1].payload == BODY[:300]
    assert asm.pending() == 0
    response = results[0].apply(Message(type=MessageType.ACK, token=b"t"))
    assert response.code == Code.CONTINUE and response.block1 == Block(0, True, 3)
    final = results[-1].apply(Message(type=MessageType.ACK, code=Code.CHANGED))
    assert final.code == Code.CHANGED and final.block1 == Block(2, False, 3)


def test_block1_without_option_is_complete_at_once() -> None:
    asm = Block1Assembler()
    result = asm.feed(block1_request(b"abc", None), 0.0)
    assert result == Block1Result(Block1Status.COMPLETE, payload=b"abc")
    assert result.options() == []


def test_block1_single_block_with_m0() -> None:
    result = Block1Assembler().feed(block1_request(b"abc", Block(0, False, 6)), 0.0)
    assert result.status is Block1Status.COMPLETE
    assert result.payload == b"abc"
    assert result.block1 == Block(0, False, 6)


def test_block1_server_prefers_smaller_blocks() -> None:
    asm = Block1Assembler(max_szx=3)
    results = send_body(asm, BODY, szx=6)
    # The first 1024-byte block is taken whole and answered with SZX 3 (128 bytes)...
    assert results[0].block1 == Block(0, True, 3)
    # ... and the client continues at offset 1024 = block 8 of 128 bytes.
    assert results[1].block1 == Block(8, True, 3)
    assert results[-1].status is Block1Status.COMPLETE
    assert results[-1].payload == BODY


def test_block1_gap_gives_4_08() -> None:
    asm = Block1Assembler()
    assert asm.feed(block1_request(b"a" * 64, Block(0, True, 2)), 0.0).code == Code.CONTINUE
    gap = asm.feed(block1_request(b"c" * 64, Block(2, True, 2)), 1.0)
    assert (gap.status, gap.code) == (Block1Status.ERROR, Code.REQUEST_ENTITY_INCOMPLETE)
    assert gap.block1 is None
    # The good transfer survives the stray block.
    assert asm.feed(block1_request(b"b" * 64, Block(1, True, 2)), 2.0).code == Code.CONTINUE
    done = asm.feed(block1_request(b"c", Block(2, False, 2)), 3.0)
    assert done.payload == b"a" * 64 + b"b" * 64 + b"c"


def test_block1_continuation_without_start_gives_4_08() -> None:
    result = Block1Assembler().feed(block1_request(b"x" * 16, Block(3, True, 0)), 0.0)
    assert result.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert result.apply(Message()).code == Code.REQUEST_ENTITY_INCOMPLETE


def test_block1_repeated_block_is_answered_again() -> None:
    asm = Block1Assembler()
    first = asm.feed(block1_request(b"a" * 32, Block(0, True, 1)), 0.0)
    asm.feed(block1_request(b"b" * 32, Block(1, True, 1)), 0.1)
    again = asm.feed(block1_request(b"b" * 32, Block(1, True, 1), token=b"new"), 0.2)
    assert again == Block1Result(Block1Status.CONTINUE, Code.CONTINUE, Block(1, True, 1))
    assert first.block1 == Block(0, True, 1)
    assert asm.feed(block1_request(b"c", Block(2, False, 1)), 0.3).payload == (
        b"a" * 32 + b"b" * 32 + b"c"
    )


def test_block1_restart_at_block_zero_discards_old_body() -> None:
    asm = Block1Assembler()
    asm.feed(block1_request(b"a" * 16, Block(0, True, 0)), 0.0)
    asm.feed(block1_request(b"z" * 16, Block(0, True, 0)), 1.0)
    done = asm.feed(block1_request(b"!", Block(1, False, 0)), 2.0)
    assert done.payload == b"z" * 16 + b"!"


def test_block1_too_large_gives_4_13_with_size1() -> None:
    asm = Block1Assembler(max_size=100)
    asm.feed(block1_request(b"a" * 64, Block(0, True, 2)), 0.0)
    result = asm.feed(block1_request(b"b" * 64, Block(1, True, 2)), 1.0)
    assert (result.status, result.code, result.size1) == (
        Block1Status.ERROR,
        Code.REQUEST_ENTITY_TOO_LARGE,
        100,
    )
    assert result.options() == [(OptionNumber.SIZE1, encode_uint(100))]
    assert asm.pending() == 0
    # Announced up front with Size1: rejected on the first block.
    early = asm.feed(block1_request(b"a" * 64, Block(0, True, 2), size1=5000), 2.0)
    assert (early.code, early.size1) == (Code.REQUEST_ENTITY_TOO_LARGE, 100)
    # A plain (non block-wise) request that is too large.
    plain = asm.feed(block1_request(b"x" * 101, None), 3.0)
    assert (plain.code, plain.size1) == (Code.REQUEST_ENTITY_TOO_LARGE, 100)


def test_block1_wrong_block_length_is_bad_request() -> None:
    asm = Block1Assembler()
    short = asm.feed(block1_request(b"a" * 10, Block(0, True, 1)), 0.0)
    assert short.code == Code.BAD_REQUEST
    long = asm.feed(block1_request(b"a" * 40, Block(0, False, 1)), 0.0)
    assert long.code == Code.BAD_REQUEST


def test_block1_bad_option_value() -> None:
    req = block1_request(b"a", None)
    req.add(OptionNumber.BLOCK1, b"\x07")  # SZX 7
    result = Block1Assembler().feed(req, 0.0)
    assert (result.status, result.code) == (Block1Status.ERROR, Code.BAD_OPTION)


def test_block1_content_format_change_is_incomplete() -> None:
    asm = Block1Assembler()
    asm.feed(block1_request(b"a" * 16, Block(0, True, 0), content_format=42), 0.0)
    changed = asm.feed(block1_request(b"b", Block(1, False, 0), content_format=11542), 1.0)
    assert changed.code == Code.REQUEST_ENTITY_INCOMPLETE


def test_block1_transfers_are_keyed_by_path_not_token() -> None:
    asm = Block1Assembler()
    asm.feed(block1_request(b"a" * 16, Block(0, True, 0), path="5/0/0", token=b"1"), 0.0)
    asm.feed(block1_request(b"X" * 16, Block(0, True, 0), path="19/0/0", token=b"2"), 0.0)
    assert asm.pending() == 2
    a = asm.feed(block1_request(b"!", Block(1, False, 0), path="5/0/0", token=b"3"), 1.0)
    b = asm.feed(block1_request(b"?", Block(1, False, 0), path="19/0/0", token=b"4"), 1.0)
    assert a.payload == b"a" * 16 + b"!"
    assert b.payload == b"X" * 16 + b"?"
    # An explicit key (e.g. the token) is honoured too.
    asm.feed(block1_request(b"k" * 16, Block(0, True, 0)), 2.0, key="mine")
    assert asm.feed(block1_request(b"!", Block(1, False, 0)), 2.0).code == (
        Code.REQUEST_ENTITY_INCOMPLETE
    )
    assert asm.feed(block1_request(b"!", Block(1, False, 0)), 2.0, key="mine").payload == (
        b"k" * 16 + b"!"
    )


def test_block1_transfer_expires() -> None:
    asm = Block1Assembler(lifetime=10.0)
    asm.feed(block1_request(b"a" * 16, Block(0, True, 0)), 0.0)
    assert asm.feed(block1_request(b"b" * 16, Block(1, True, 0)), 9.9).code == Code.CONTINUE
    late = asm.feed(block1_request(b"c", Block(2, False, 0)), 19.9)
    assert late.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert asm.pending() == 0


def test_block1_max_transfers_drops_the_stalest() -> None:
    asm = Block1Assembler(max_transfers=2)
    asm.feed(block1_request(b"a" * 16, Block(0, True, 0), path="1"), 0.0)
    asm.feed(block1_request(b"b" * 16, Block(0, True, 0), path="2"), 1.0)
    asm.feed(block1_request(b"a" * 16, Block(1, True, 0), path="1"), 2.0)  # "1" is fresh again
    asm.feed(block1_request(b"c" * 16, Block(0, True, 0), path="3"), 3.0)
    assert asm.pending() == 2
    gone = asm.feed(block1_request(b"!", Block(1, False, 0), path="2"), 4.0)
    assert gone.code == Code.REQUEST_ENTITY_INCOMPLETE
    kept = asm.feed(block1_request(b"!", Block(2, False, 0), path="1"), 4.0)
    assert kept.payload == b"a" * 32 + b"!"
    asm.cancel(block1_request(b"", None, path="3"))
    assert asm.pending() == 0


def test_block1_assembler_validates_config() -> None:
    with pytest.raises(ValueError):
        Block1Assembler(max_szx=7)
    with pytest.raises(ValueError):
        Block1Assembler(lifetime=0)
    with pytest.raises(ValueError):
        Block1Assembler(max_transfers=0)


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=3000),
    st.integers(0, 6),
    st.integers(0, 6),
)
def test_block1_split_then_assemble_is_identity(payload: bytes, szx: int, server_szx: int) -> None:
    asm = Block1Assembler(max_szx=server_szx)
    results = send_body(asm, payload, szx)
    assert all(r.status is Block1Status.CONTINUE for r in results[:-1])
    assert results[-1].status is Block1Status.COMPLETE
    assert results[-1].payload == payload
    assert asm.pending() == 0
