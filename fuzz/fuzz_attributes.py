"""atheris target: Write-Attributes query strings."""

from __future__ import annotations

import atheris
from _harness import fuzz

with atheris.instrument_imports(include=["aiolwm2m"]):
    from aiolwm2m.lwm2m.attributes import parse_query


def target(data: bytes) -> None:
    parse_query(data.decode("utf-8", "replace").split("&"))


if __name__ == "__main__":
    fuzz(target)
