"""atheris target: client TOML configuration."""

from __future__ import annotations

import atheris
from _harness import fuzz

# tomllib is instrumented too, so libFuzzer learns TOML syntax from its branches.
with atheris.instrument_imports(include=["aiolwm2m", "tomllib"]):
    import tomllib

    from aiolwm2m.client.config import load_config


def target(data: bytes) -> None:
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    load_config(table)


if __name__ == "__main__":
    fuzz(target)
