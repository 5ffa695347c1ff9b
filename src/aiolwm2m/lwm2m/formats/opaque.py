"""application/octet-stream (content format 42): the raw bytes of one Opaque value."""

from __future__ import annotations

from collections.abc import Sequence

from ..model import ResourceType, TypeLookup
from ..path import Path
from ..values import Record
from .errors import FormatEncodeError, OpaqueError

__all__ = ["decode", "encode"]


def encode(records: Sequence[Record], base: Path) -> bytes:
    """The bytes of the single opaque record at ``base``."""
    if len(records) != 1 or records[0].path != base:
        raise FormatEncodeError(f"opaque carries exactly one value at {base}")
    value = records[0].value
    if not isinstance(value, bytes):
        raise FormatEncodeError(f"opaque format needs bytes, got {type(value).__name__}")
    return value


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """Wrap the payload as the value at ``base``.

    Refused for resources known not to be Opaque: writing raw bytes into, say,
    an Integer has no defined meaning, and accepting it would hide a server bug.
    """
    if base.level < 3:
        raise OpaqueError(f"opaque format needs a resource path, got {base}")
    rtype = types(base) if types is not None else None
    if rtype is not None and rtype is not ResourceType.OPAQUE:
        raise OpaqueError(f"{base} is {rtype.value}, not opaque")
    return [Record(base, bytes(payload))]
