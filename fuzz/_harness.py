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
