"""CoAP codec throughput: aiolwm2m's codec vs aiocoap's Message, same message, same run.

The message is a typical LwM2M Notify: CON 2.05 Content, 8-byte token,
Observe, Content-Format 112 (SenML CBOR) and a ~60-byte payload.

    .venv/bin/python benchmarks/bench_coap.py [--rounds 7] [--number N]

``run()`` returns the figures as a dict for other scripts (e.g. ``make bench``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from aiolwm2m.coap.message import Code, Message, MessageType, OptionNumber, decode, encode

# Importable as a script (benchmarks/ is sys.path[0]) and as benchmarks.bench_coap.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import compare, fmt_rate, print_table

# 60 bytes standing in for a small SenML CBOR record set (the codec does not look inside).
PAYLOAD = bytes(range(0x80, 0x80 + 60))
TOKEN = bytes.fromhex("0102030405060708")
OBSERVE = 0x01F4A3
CONTENT_FORMAT = 112
MID = 0x4D2C


def notify_message() -> Message:
    msg = Message(type=MessageType.CON, code=Code.CONTENT, mid=MID, token=TOKEN, payload=PAYLOAD)
    msg.set_uint(OptionNumber.OBSERVE, OBSERVE)
    msg.set_uint(OptionNumber.CONTENT_FORMAT, CONTENT_FORMAT)
    return msg


def ours_cases() -> dict[str, Callable[[], object]]:
    msg = notify_message()
    data = encode(msg)

    def roundtrip() -> object:
        return decode(encode(msg))

    return {
        "encode": lambda: encode(msg),
        "decode": lambda: decode(data),
        "encode+decode": roundtrip,
    }


def aiocoap_message() -> Any:
    import aiocoap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        msg = aiocoap.Message(
            code=aiocoap.CONTENT, payload=PAYLOAD, _mtype=aiocoap.CON, _mid=MID, _token=TOKEN
        )
    msg.opt.observe = OBSERVE
    msg.opt.content_format = CONTENT_FORMAT
    return msg


def aiocoap_cases() -> dict[str, Callable[[], object]]:
    import aiocoap

    msg = aiocoap_message()
    data = msg.encode()
    decode_ = aiocoap.Message.decode

    def roundtrip() -> object:
        return decode_(msg.encode())

    return {"encode": msg.encode, "decode": lambda: decode_(data), "encode+decode": roundtrip}


def check_same_bytes() -> bytes:
    """Both codecs must produce identical datagrams for the benchmark to be fair."""
    ours = encode(notify_message())
    try:
        theirs = aiocoap_message().encode()
    except ImportError:
        return ours
    if ours != theirs:
        raise AssertionError(f"codecs disagree: {ours.hex()} != {theirs.hex()}")
    return ours


OPS = ("encode", "decode", "encode+decode")


def run(rounds: int = 7, number: int | None = None) -> dict[str, dict[str, float]]:
    """{codec: {operation: median ops/s}}; aiocoap is skipped if it is not installed."""
    codecs: dict[str, Callable[[], dict[str, Callable[[], object]]]] = {
        "aiolwm2m": ours_cases,
        "aiocoap 0.4": aiocoap_cases,
    }
    cases: dict[str, Callable[[], object]] = {}
    for name, make in codecs.items():
        try:
            cases.update({f"{name}|{op}": fn for op, fn in make().items()})
        except ImportError:
            continue
    rates = compare(cases, number=number, rounds=rounds)
    results: dict[str, dict[str, float]] = {}
    for label, ops in rates.items():
        name, op = label.split("|")
        results.setdefault(name, {})[op] = ops
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median is shown)")
    parser.add_argument("--number", type=int, default=None, help="calls per round (auto)")
    args = parser.parse_args(argv)
    data = check_same_bytes()
    print(f"CoAP Notify message: {len(data)} bytes (CON 2.05, 8-byte token, Observe, CF 112)")
    results = run(rounds=args.rounds, number=args.number)
    rows = [[name, *(fmt_rate(r[op]) for op in OPS)] for name, r in results.items()]
    print_table(["codec", *OPS], rows)
    if len(results) == 2:
        ours, theirs = results.values()
        ratios = ", ".join(f"{op} x{ours[op] / theirs[op]:.2f}" for op in OPS)
        print(f"aiolwm2m / aiocoap: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
