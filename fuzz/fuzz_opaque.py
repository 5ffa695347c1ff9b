"""atheris target: opaque payload decoder at every base path level."""

from __future__ import annotations

import atheris
from _harness import fuzz

with atheris.instrument_imports(include=["aiolwm2m"]):
    from aiolwm2m.lwm2m import formats
    from aiolwm2m.lwm2m.ddf import load_builtin
    from aiolwm2m.lwm2m.path import Path


TYPES = load_builtin().type_of
BASES = [Path.parse(p) for p in ("/", "/3", "/3/0", "/3/0/0", "/1/0", "/3/0/7/1")]


def target(data: bytes) -> None:
    if not data:
        return
    base = BASES[data[0] % len(BASES)]
    types = TYPES if data[0] & 0x80 else None
    formats.decode(formats.ContentFormat.OPAQUE, data[1:], base, types)


if __name__ == "__main__":
    fuzz(target)
