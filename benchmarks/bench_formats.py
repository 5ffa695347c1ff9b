"""Content-format throughput: encode+decode of a 10-resource instance per second.

TLV (11542) and SenML CBOR (112) are the formats the issue asks figures for;
SenML JSON (110) and LwM2M CBOR (11544) run in the same interleaved rounds as
baselines, so their ratios are meaningful on a loaded machine. The instance
is a /3303/0-like sensor: floats, strings, an integer, a boolean, a time and
a 3-instance multiple resource (10 resources, 12 values).

    .venv/bin/python benchmarks/bench_formats.py [--rounds 7] [--number N]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from aiolwm2m.lwm2m import ContentFormat, Path, decode, encode, load_builtin
from aiolwm2m.lwm2m.values import Record

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import compare, fmt_rate, print_table

BASE = Path.parse("/3/0")
FORMATS = {
    "TLV (11542)": ContentFormat.TLV,
    "SenML CBOR (112)": ContentFormat.SENML_CBOR,
    "SenML JSON (110)": ContentFormat.SENML_JSON,
    "LwM2M CBOR (11544)": ContentFormat.LWM2M_CBOR,
}


def instance_records() -> list[Record]:
    """Ten Device-object resources with their real types (so TLV decodes them typed)."""
    values: list[tuple[int, object]] = [
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
    records = [Record(BASE.child(rid), value) for rid, value in values]  # type: ignore[arg-type]
    assert len({r.path.resource_id for r in records}) == 10
    return records


def cases() -> dict[str, Callable[[], object]]:
    records = instance_records()
    types = load_builtin().type_of
    out: dict[str, Callable[[], object]] = {}
    for name, cf in FORMATS.items():
        payload = encode(cf, records, BASE)
        if decode(cf, payload, BASE, types) != records:
            raise AssertionError(f"{name} does not round-trip the instance")

        def roundtrip(cf: int = cf) -> object:
            return decode(cf, encode(cf, records, BASE), BASE, types)

        out[name] = roundtrip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median is shown)")
    parser.add_argument("--number", type=int, default=None, help="calls per round (auto)")
    args = parser.parse_args(argv)
    records = instance_records()
    sizes = {name: len(encode(cf, records, BASE)) for name, cf in FORMATS.items()}
    rates = compare(cases(), number=args.number, rounds=args.rounds)
    baseline = rates["SenML JSON (110)"]
    print("Encode+decode of a 10-resource instance (/3/0), median of interleaved rounds")
    rows = [
        [name, f"{sizes[name]} B", fmt_rate(rate), f"x{rate / baseline:.2f}"]
        for name, rate in rates.items()
    ]
    print_table(["format", "payload", "encode+decode", "vs SenML JSON"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
