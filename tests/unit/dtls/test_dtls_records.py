from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiolwm2m.dtls.records import (
    is_client_hello,
    iter_records,
    looks_like_dtls,
    plaintext_alerts,
    split_into_datagrams,
)


def rec(ctype: int, payload: bytes, epoch: int = 0, seq: int = 0) -> bytes:
    return (
        bytes([ctype, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(payload).to_bytes(2, "big")
        + payload
    )


CLIENT_HELLO = rec(22, bytes([1]) + bytes(11) + b"\xfe\xfd" + bytes(40))


def test_parse_records() -> None:
    data = rec(22, b"abc", 0, 1) + rec(23, b"xyz!", 1, 7)
    records = list(iter_records(data))
    assert [(r.content_type, r.epoch, r.sequence_number, r.fragment) for r in records] == [
        (22, 0, 1, b"abc"),
        (23, 1, 7, b"xyz!"),
    ]
    assert looks_like_dtls(data)
    assert not looks_like_dtls(data + b"\x00")
    assert not looks_like_dtls(b"")


def test_client_hello_detection() -> None:
    assert is_client_hello(CLIENT_HELLO)
    assert not is_client_hello(rec(22, bytes([2]) + bytes(20)))  # ServerHello
    assert not is_client_hello(rec(22, bytes([1]) + bytes(20), epoch=1))
    assert not is_client_hello(rec(23, bytes(30)))
    assert not is_client_hello(b"\x40\x01\x00\x01")  # a CoAP header


def test_plaintext_alerts() -> None:
    data = rec(21, b"\x02\x14") + rec(21, b"\x02\x73", epoch=1) + rec(21, b"\x01\x00")
    assert plaintext_alerts(data) == [(2, 20), (1, 0)]


def test_split_keeps_records_whole() -> None:
    a, b, c = rec(22, bytes(500)), rec(22, bytes(600)), rec(22, bytes(2000))
    assert split_into_datagrams(a + b + c, 1400) == [a + b, c]
    assert split_into_datagrams(a + b, 1000) == [a, b]
    assert split_into_datagrams(b"", 1400) == []


def test_split_passes_unparseable_tail_through() -> None:
    a = rec(22, b"x")
    assert split_into_datagrams(a + b"junk", 1400) == [a, b"junk"]


@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    list(iter_records(data))
    looks_like_dtls(data)
    is_client_hello(data)
    plaintext_alerts(data)
    assert b"".join(split_into_datagrams(data, 100)) == data


_records = st.lists(
    st.tuples(
        st.sampled_from([20, 21, 22, 23]),
        st.binary(max_size=40),
        st.integers(0, 2),
    ).map(lambda t: rec(t[0], t[1], epoch=t[2])),
    max_size=6,
)


@given(_records, st.binary(max_size=20), st.integers(14, 120))
def test_header_walk_agrees_with_full_parse(records: list[bytes], tail: bytes, size: int) -> None:
    """The copy-free hot path means exactly what parsing every record means."""
    data = b"".join(records) + tail
    parsed = list(iter_records(data))
    covered = sum(r.wire_length for r in parsed)
    assert looks_like_dtls(data) == (covered == len(data) > 0)
    assert plaintext_alerts(data) == [
        (r.fragment[0], r.fragment[1])
        for r in parsed
        if r.content_type == 21 and r.epoch == 0 and len(r.fragment) == 2
    ]
    datagrams = split_into_datagrams(data, size)
    assert b"".join(datagrams) == data
    for datagram in datagrams[: len(datagrams) - (covered < len(data))]:
        inner = list(iter_records(datagram))
        assert sum(r.wire_length for r in inner) == len(datagram)
        assert len(inner) == 1 or len(datagram) <= size
    hello = next(iter(parsed), None)
    assert is_client_hello(data) == (
        hello is not None
        and hello.content_type == 22
        and hello.epoch == 0
        and len(hello.fragment) >= 12
        and hello.fragment[0] == 1
    )
