"""atheris target: CoAP message codec and its option accessors."""

from __future__ import annotations

import contextlib

import atheris
from _harness import fuzz

with atheris.instrument_imports(include=["aiolwm2m"]):
    from aiolwm2m.coap.message import decode
    from aiolwm2m.errors import DecodeError


ACCESSORS = (
    "uri_path",
    "uri_query",
    "location_path",
    "content_format",
    "accept",
    "observe",
    "max_age",
    "block1",
    "block2",
)


def target(data: bytes) -> None:
    msg = decode(data)
    for name in ACCESSORS:
        with contextlib.suppress(DecodeError):
            getattr(msg, name)
    msg.describe()


if __name__ == "__main__":
    fuzz(target)
