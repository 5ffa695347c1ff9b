"""SenML CBOR (content format 112) with the LwM2M 1.1 conventions (see :mod:`.senml`).

RFC 8428 section 6 integer labels (bver -1, bn -2, bt -3, bu -4, bv -5, bs -6,
n 0, u 1, v 2, vs 3, vb 4, s 5, t 6, ut 7, vd 8); LwM2M's object-link value
has no integer label and uses the text key ``"vlo"``. Opaque ``vd`` is a CBOR
byte string. Floats are written in the shortest exact width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cbor2

from ..model import TypeLookup
from ..path import Path
from ..values import Record
from .errors import FormatEncodeError, SenmlCborError
from .senml import (
    CBOR_LABELS,
    entries_to_paths,
    entries_to_records,
    paths_to_entries,
    records_to_entries,
)

__all__ = ["decode", "decode_paths", "encode", "encode_paths"]

_MAX_DEPTH = 8  # a pack is an array of flat maps; anything deeper is garbage


def _dumps(entries: list[dict[Any, Any]]) -> bytes:
    try:
        return bytes(cbor2.dumps(entries, canonical=True))
    except (cbor2.CBOREncodeError, ValueError, TypeError) as exc:
        raise FormatEncodeError(f"SenML CBOR cannot carry this value: {exc}") from exc


def encode(records: Sequence[Record], base: Path) -> bytes:
    """Encode records below ``base``; names are ``bn`` (first record) + ``n``."""
    return _dumps(records_to_entries(records, base, CBOR_LABELS))


def encode_paths(paths: Sequence[Path]) -> bytes:
    """Read-Composite / Observe-Composite request body."""
    return _dumps(paths_to_entries(paths, CBOR_LABELS))


def _loads(payload: bytes) -> object:
    try:
        return cbor2.loads(bytes(payload), max_depth=_MAX_DEPTH, allow_duplicate_keys=False)
    except Exception as exc:  # cbor2 raises assorted exception types on hostile input
        raise SenmlCborError(f"invalid CBOR: {exc}") from None


def _decode_data(raw: object) -> bytes:
    if not isinstance(raw, bytes):
        raise SenmlCborError("vd must be a byte string")
    return raw


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """Decode a SenML CBOR pack; every record must lie below ``base``."""
    return entries_to_records(
        _loads(payload), base, types, SenmlCborError, _decode_data, CBOR_LABELS
    )


def decode_paths(payload: bytes) -> list[Path]:
    """Paths of a Read-Composite / Observe-Composite request body."""
    return entries_to_paths(_loads(payload), SenmlCborError, CBOR_LABELS)
