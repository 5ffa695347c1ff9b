"""SenML JSON (content format 110) with the LwM2M 1.1 conventions (see :mod:`.senml`).

Opaque values travel in ``vd`` as base64url without padding (RFC 8428 5.1);
decoding also accepts padding and the standard alphabet because peers differ.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from ..model import TypeLookup
from ..path import Path
from ..values import Record
from .errors import FormatEncodeError, SenmlJsonError
from .senml import entries_to_paths, entries_to_records, paths_to_entries, records_to_entries

__all__ = ["decode", "decode_paths", "encode", "encode_paths"]

_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def _dumps(entries: list[dict[str, Any]]) -> bytes:
    for entry in entries:
        if "vd" in entry:
            entry["vd"] = base64.urlsafe_b64encode(entry["vd"]).rstrip(b"=").decode("ascii")
    try:
        return json.dumps(
            entries, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except ValueError as exc:
        raise FormatEncodeError(f"SenML JSON cannot carry this value: {exc}") from exc


def encode(records: Sequence[Record], base: Path) -> bytes:
    """Encode records below ``base``; names are ``bn`` (first record) + ``n``."""
    return _dumps(records_to_entries(records, base))


def encode_paths(paths: Sequence[Path]) -> bytes:
    """Read-Composite / Observe-Composite request body."""
    return _dumps(paths_to_entries(paths))


def _reject_constant(name: str) -> NoReturn:
    raise SenmlJsonError(f"JSON constant {name} is not allowed")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SenmlJsonError(f"number out of range: {text[:40]}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):  # only then look for the culprit
        labels = [key for key, _ in pairs]
        duplicate = next(key for n, key in enumerate(labels) if key in labels[:n])
        raise SenmlJsonError(f"duplicate label {duplicate!r}")
    return result


def _loads(payload: bytes) -> object:
    try:
        text = bytes(payload).decode("utf-8")
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            object_pairs_hook=_no_duplicates,
        )
    except SenmlJsonError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError, int limits
        raise SenmlJsonError(f"invalid JSON: {exc}") from None


def _decode_data(raw: object) -> bytes:
    if not isinstance(raw, str) or _BASE64.fullmatch(raw) is None:
        raise SenmlJsonError("vd must be a base64 string")
    text = raw.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SenmlJsonError(f"vd is not valid base64: {exc}") from None


def decode(payload: bytes, base: Path, types: TypeLookup | None = None) -> list[Record]:
    """Decode a SenML JSON pack; every record must lie below ``base``."""
    return entries_to_records(_loads(payload), base, types, SenmlJsonError, _decode_data)


def decode_paths(payload: bytes) -> list[Path]:
    """Paths of a Read-Composite / Observe-Composite request body."""
    return entries_to_paths(_loads(payload), SenmlJsonError)
