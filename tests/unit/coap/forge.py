"""Datagrams encode() refuses to build: options outside their RFC 7252 §5.10 length range."""

from __future__ import annotations

from aiolwm2m.coap.message import PAYLOAD_MARKER, Message, encode


def _field(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def forge(msg: Message, *extra: tuple[int, bytes]) -> bytes:
    """``msg`` with the ``extra`` options too, its options written by hand (RFC 7252 §3.1)."""
    out = bytearray(encode(Message(msg.type, msg.code, msg.mid, msg.token)))
    last = 0
    for number, value in sorted([*msg.options, *extra], key=lambda o: o[0]):
        delta, delta_ext = _field(number - last)
        length, length_ext = _field(len(value))
        out += bytes([delta << 4 | length]) + delta_ext + length_ext + value
        last = number
    if msg.payload:
        out += bytes([PAYLOAD_MARKER]) + msg.payload
    return bytes(out)
