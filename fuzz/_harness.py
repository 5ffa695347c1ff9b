"""Shared atheris driver: every ``fuzz_<decoder>.py`` target calls :func:`fuzz`.

The contract checked is the one of ``tests/fuzz/test_fuzz_decoders.py``:
the decoder either returns or raises its typed error (a ``DecodeError`` or
``ConfigError`` subclass); any other exception is a finding, which atheris
reports with the crashing input saved as ``crash-<sha1>`` in the current
directory. Run one target by hand with
``python fuzz/fuzz_tlv.py -max_total_time=60 /tmp/corpus-tlv`` or all of them
with ``make fuzz FUZZ_SECONDS=600``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["aiolwm2m"]):
    from aiolwm2m.errors import ConfigError, DecodeError

EXPECTED = (DecodeError, ConfigError)


def fuzz(target: Callable[[bytes], object]) -> None:
    """Run ``target`` under libFuzzer with the command-line flags given to the script."""

    def one_input(data: bytes) -> None:
        with contextlib.suppress(EXPECTED):
            target(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


def fuzz_format(name: str) -> None:
    """Fuzz one content-format decoder (``ContentFormat[name]``) at every base path level.

    The first input byte picks the base path and whether resource types are
    known (TLV and text decode differently with and without them).
    """
    with atheris.instrument_imports(include=["aiolwm2m"]):
        from aiolwm2m.lwm2m import formats
        from aiolwm2m.lwm2m.ddf import load_builtin
        from aiolwm2m.lwm2m.path import Path

    content_format = formats.ContentFormat[name]
    types = load_builtin().type_of
    bases = [Path.parse(p) for p in ("/", "/3", "/3/0", "/3/0/0", "/1/0", "/3/0/7/1")]

    def target(data: bytes) -> None:
        if not data:
            return
        base = bases[data[0] % len(bases)]
        formats.decode(content_format, data[1:], base, types if data[0] & 0x80 else None)

    fuzz(target)
