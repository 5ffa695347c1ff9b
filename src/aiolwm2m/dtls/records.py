"""Just enough DTLS 1.2 record parsing to see what the TLS stack does not tell us.

A server needs a cheap way to reject non-DTLS junk before allocating a
connection, a memory BIO concatenates datagrams, and OpenSSL silently drops a
client Finished it cannot decrypt (a wrong PSK) where the client deserves a
bad_record_mac alert. Reading the 13-byte record headers (RFC 6347 §4.1)
ourselves covers all three: a new peer must start with a ClientHello, output
is cut back into datagrams at record boundaries, and a plaintext alert can be
built with the next epoch-0 sequence number. Pure functions; never raise on
garbage.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "HEADER_LEN",
    "ContentType",
    "Record",
    "alert_record",
    "has_encrypted_handshake",
    "is_client_hello",
    "iter_records",
    "last_plaintext_sequence",
    "looks_like_dtls",
    "plaintext_alerts",
    "split_into_datagrams",
]

HEADER_LEN = 13
_DTLS_MAJOR = 0xFE  # DTLS 1.0 is fe ff, DTLS 1.2 is fe fd
_HANDSHAKE_CLIENT_HELLO = 1


class ContentType(enum.IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


@dataclass(frozen=True)
class Record:
    content_type: int
    version: int
    epoch: int
    sequence_number: int
    fragment: bytes

    @property
    def wire_length(self) -> int:
        return HEADER_LEN + len(self.fragment)


def _parse_one(data: bytes, offset: int) -> Record | None:
    if len(data) - offset < HEADER_LEN:
        return None
    ctype = data[offset]
    if ctype not in (20, 21, 22, 23) or data[offset + 1] != _DTLS_MAJOR:
        return None
    version = int.from_bytes(data[offset + 1 : offset + 3], "big")
    epoch = int.from_bytes(data[offset + 3 : offset + 5], "big")
    seq = int.from_bytes(data[offset + 5 : offset + 11], "big")
    length = int.from_bytes(data[offset + 11 : offset + 13], "big")
    end = offset + HEADER_LEN + length
    if end > len(data):
        return None
    return Record(ctype, version, epoch, seq, bytes(data[offset + HEADER_LEN : end]))


_RECORD_TYPES = frozenset((20, 21, 22, 23))


def _spans(data: bytes) -> Iterator[tuple[int, int]]:
    """(offset, end) of each well-formed record at the start of ``data``.

    The per-datagram hot path: reads only the type, version and length bytes
    and copies nothing (``iter_records`` builds full objects for tests/tools).
    """
    offset, size = 0, len(data)
    while size - offset >= HEADER_LEN:
        if data[offset] not in _RECORD_TYPES or data[offset + 1] != _DTLS_MAJOR:
            return
        end = offset + HEADER_LEN + ((data[offset + 11] << 8) | data[offset + 12])
        if end > size:
            return
        yield offset, end
        offset = end


def iter_records(data: bytes) -> Iterator[Record]:
    """Yield the well-formed records at the start of ``data``; stop at the first bad one."""
    offset = 0
    while offset < len(data):
        record = _parse_one(data, offset)
        if record is None:
            return
        yield record
        offset += record.wire_length


def looks_like_dtls(data: bytes) -> bool:
    """True if ``data`` is entirely a sequence of well-formed DTLS records."""
    ends = [end for _, end in _spans(data)]
    return bool(ends) and ends[-1] == len(data)


def is_client_hello(data: bytes) -> bool:
    """True if the datagram opens with a plaintext handshake record carrying a ClientHello."""
    for start, end in _spans(data):
        return (
            data[start] == ContentType.HANDSHAKE
            and data[start + 3] == data[start + 4] == 0  # epoch 0
            and end - start >= HEADER_LEN + 12
            and data[start + HEADER_LEN] == _HANDSHAKE_CLIENT_HELLO
        )
    return False


def plaintext_alerts(data: bytes) -> list[tuple[int, int]]:
    """(level, description) of every unencrypted alert record in the datagram."""
    return [
        (data[start + HEADER_LEN], data[start + HEADER_LEN + 1])
        for start, end in _spans(data)
        if data[start] == ContentType.ALERT
        and data[start + 3] == data[start + 4] == 0  # epoch 0: not encrypted
        and end - start == HEADER_LEN + 2
    ]


def split_into_datagrams(stream: bytes, max_size: int) -> list[bytes]:
    """Cut a byte stream of records back into datagrams of at most ``max_size``.

    Records are never split (a record larger than ``max_size`` travels alone);
    consecutive small records share a datagram, which DTLS allows. Anything
    that does not parse as records is passed through as one datagram rather
    than dropped, so a bug here cannot silently eat traffic.
    """
    out: list[bytes] = []
    first = last = 0  # the records stream[first:last] make the current datagram
    for start, end in _spans(stream):
        if last > first and end - first > max_size:
            out.append(bytes(stream[first:last]))
            first = start
        last = end
    if last > first:
        out.append(bytes(stream[first:last]))
    if last < len(stream):
        out.append(bytes(stream[last:]))
    return out


def has_encrypted_handshake(data: bytes) -> bool:
    """True if the datagram holds a ChangeCipherSpec and an epoch > 0 handshake record.

    From a DTLS 1.2 client before the handshake ends, that is its Finished.
    """
    spans = list(_spans(data))
    return any(data[s] == ContentType.CHANGE_CIPHER_SPEC for s, _ in spans) and any(
        data[s] == ContentType.HANDSHAKE and (data[s + 3] or data[s + 4]) for s, _ in spans
    )


def last_plaintext_sequence(stream: bytes) -> int | None:
    """Highest epoch-0 record sequence number in a stream of records, if any."""
    seqs = [
        int.from_bytes(stream[s + 5 : s + 11], "big")
        for s, _ in _spans(stream)
        if stream[s + 3] == stream[s + 4] == 0
    ]
    return max(seqs) if seqs else None


def alert_record(sequence: int, level: int, description: int) -> bytes:
    """An unencrypted (epoch 0) DTLS 1.2 alert record."""
    return (
        bytes((ContentType.ALERT, _DTLS_MAJOR, 0xFD, 0, 0))
        + sequence.to_bytes(6, "big")
        + (2).to_bytes(2, "big")
        + bytes((level, description))
    )
