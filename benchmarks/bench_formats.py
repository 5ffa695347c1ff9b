"""Content-format throughput: encode+decode of a 10-resource instance, beside a minimal codec.

Each format runs next to a minimal codec written here on the same library
(``struct`` for TLV, ``cbor2`` for SenML CBOR, ``json`` for SenML JSON): it
produces the same bytes and decodes them to the same (path, typed value)
pairs — both checked before timing — but validates nothing and builds no
objects. The ratio is what the library's layers cost on top of the wire work
(issue 16: within 2x). LwM2M CBOR (11544) runs as well, without a reference.

The instance is /3/0-like: strings, integers, a time (10 resources), decoded
with the shipped Device definition so TLV values come back typed.

    .venv/bin/python benchmarks/bench_formats.py [--rounds 7] [--number N]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import cbor2

from aiolwm2m.lwm2m import ContentFormat, Path, decode, encode, load_builtin
from aiolwm2m.lwm2m.values import Record

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import compare, fmt_rate, print_table

BASE = Path.parse("/3/0")
VALUES: list[tuple[int, object]] = [
    (0, "ACME Corporation"),
    (1, "Sensor Model 42"),
    (2, "SN-0123456789"),
    (3, "1.4.2"),
    (9, 87),
    (10, 15_360),
    (13, datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (14, "UTC+01:00"),
    (15, "Europe/Paris"),
    (16, "UQ"),
]
TIME_IDS = frozenset({13})
Pairs = list[tuple[tuple[int, ...], object]]


def instance_records() -> list[Record]:
    return [Record(BASE.child(rid), value) for rid, value in VALUES]  # type: ignore[arg-type]


# -- minimal codecs: same bytes, same decoded pairs, nothing else ------------------------


def _tlv_value(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, datetime):
        value = int(value.timestamp())
    assert isinstance(value, int)
    for width, fmt in ((1, ">b"), (2, ">h"), (4, ">i"), (8, ">q")):
        if -(1 << (8 * width - 1)) <= value < 1 << (8 * width - 1):
            return struct.pack(fmt, value)
    raise ValueError(value)


def tlv_encode(values: Sequence[tuple[int, object]]) -> bytes:
    out = bytearray()
    for rid, value in values:
        body = _tlv_value(value)
        n = len(body)
        if n < 8:
            out += struct.pack(">BB", 0xC0 | n, rid)
        else:
            out += struct.pack(">BBB", 0xC8, rid, n)
        out += body
    return bytes(out)


def tlv_decode(data: bytes, types: dict[int, str]) -> Pairs:
    out: Pairs = []
    pos = 0
    while pos < len(data):
        head, rid = data[pos], data[pos + 1]
        pos += 2
        if head & 0x18:
            n = data[pos]
            pos += 1
        else:
            n = head & 7
        raw = data[pos : pos + n]
        pos += n
        value: object
        if types[rid] == "string":
            value = raw.decode()
        else:
            value = int.from_bytes(raw, "big", signed=True)
            if rid in TIME_IDS:
                value = datetime.fromtimestamp(value, UTC)
        out.append(((3, 0, rid), value))
    return out


def _senml(values: Sequence[tuple[int, object]], labels: dict[str, object]) -> list[dict]:
    entries = []
    for index, (rid, value) in enumerate(values):
        entry: dict[object, object] = {labels["bn"]: "/3/0/"} if index == 0 else {}
        entry[labels["n"]] = str(rid)
        if isinstance(value, str):
            entry[labels["vs"]] = value
        else:
            entry[labels["v"]] = int(value.timestamp()) if isinstance(value, datetime) else value
        entries.append(entry)
    return entries


def _pairs(entries: list[dict], labels: dict[str, object]) -> Pairs:
    out: Pairs = []
    bn = ""
    for entry in entries:
        bn = entry.get(labels["bn"], bn)
        ids = tuple(int(s) for s in (bn + entry[labels["n"]]).split("/")[1:])
        value = entry.get(labels["vs"])
        if value is None:
            value = entry[labels["v"]]
            if ids[2] in TIME_IDS:
                value = datetime.fromtimestamp(value, UTC)
        out.append((ids, value))
    return out


CBOR_LABELS: dict[str, object] = {"bn": -2, "n": 0, "v": 2, "vs": 3}
JSON_LABELS: dict[str, object] = {k: k for k in ("bn", "n", "v", "vs")}


def cbor_encode(values: Sequence[tuple[int, object]]) -> bytes:
    return cbor2.dumps(_senml(values, CBOR_LABELS), canonical=True)


def cbor_decode(data: bytes) -> Pairs:
    return _pairs(cbor2.loads(data), CBOR_LABELS)


def json_encode(values: Sequence[tuple[int, object]]) -> bytes:
    return json.dumps(_senml(values, JSON_LABELS), separators=(",", ":")).encode()


def json_decode(data: bytes) -> Pairs:
    return _pairs(json.loads(data), JSON_LABELS)


# -- cases -------------------------------------------------------------------------------

REFERENCES: dict[str, tuple[ContentFormat, str]] = {
    "TLV (11542)": (ContentFormat.TLV, "struct"),
    "SenML CBOR (112)": (ContentFormat.SENML_CBOR, "cbor2"),
    "SenML JSON (110)": (ContentFormat.SENML_JSON, "json"),
    "LwM2M CBOR (11544)": (ContentFormat.LWM2M_CBOR, ""),
}


def cases() -> dict[str, Callable[[], object]]:
    records = instance_records()
    registry = load_builtin()
    types = registry.type_of
    tlv_types = {rid: "string" if isinstance(v, str) else "int" for rid, v in VALUES}
    minimal: dict[str, tuple[Callable[[], bytes], Callable[[bytes], Pairs]]] = {
        "struct": (lambda: tlv_encode(VALUES), lambda data: tlv_decode(data, tlv_types)),
        "cbor2": (lambda: cbor_encode(VALUES), cbor_decode),
        "json": (lambda: json_encode(VALUES), json_decode),
    }
    out: dict[str, Callable[[], object]] = {}
    for name, (cf, library) in REFERENCES.items():
        payload = encode(cf, records, BASE)
        decoded = decode(cf, payload, BASE, types)
        if decoded != records:
            raise AssertionError(f"{name} does not round-trip the instance")

        def ours(cf: int = cf) -> object:
            return decode(cf, encode(cf, records, BASE), BASE, types)

        out[name] = ours
        if not library:
            continue
        enc, dec = minimal[library]
        if enc() != payload:
            raise AssertionError(f"minimal {library} bytes differ: {enc()!r} != {payload!r}")
        if dec(payload) != [(r.path.ids, r.value) for r in decoded]:
            raise AssertionError(f"minimal {library} decodes differently")

        def reference(
            enc: Callable[[], bytes] = enc, dec: Callable[[bytes], Pairs] = dec
        ) -> object:
            return dec(enc())

        out[f"minimal {library}"] = reference
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median is shown)")
    parser.add_argument("--number", type=int, default=None, help="calls per round (auto)")
    args = parser.parse_args(argv)
    records = instance_records()
    rates = compare(cases(), number=args.number, rounds=args.rounds)
    print("Encode+decode of a 10-resource instance (/3/0), median of interleaved rounds")
    rows = []
    for name, (cf, library) in REFERENCES.items():
        size = len(encode(cf, records, BASE))
        ours = rates[name]
        if library:
            ref = rates[f"minimal {library}"]
            rows.append(
                [
                    name,
                    f"{size} B",
                    fmt_rate(ours),
                    f"{1e6 / ours:.1f} us",
                    library,
                    f"{1e6 / ref:.1f} us",
                    f"x{ref / ours:.2f}",
                ]
            )
        else:
            rows.append([name, f"{size} B", fmt_rate(ours), f"{1e6 / ours:.1f} us", "-", "-", "-"])
    print_table(
        ["format", "payload", "encode+decode", "time", "minimal on", "minimal", "slower by"],
        rows,
    )
    print("target: slower by <= x2.00")
    return 0


if __name__ == "__main__":
    sys.exit(main())
