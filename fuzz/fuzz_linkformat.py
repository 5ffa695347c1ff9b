"""atheris target: CoRE link-format (Register payloads, Discover answers)."""

from __future__ import annotations

import atheris
from _harness import fuzz

with atheris.instrument_imports(include=["aiolwm2m"]):
    from aiolwm2m.lwm2m import linkformat


def target(data: bytes) -> None:
    linkformat.parse_registration(linkformat.decode(data))


if __name__ == "__main__":
    fuzz(target)
