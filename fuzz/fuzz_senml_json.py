"""atheris target: SenML JSON payload decoder at every base path level."""

from __future__ import annotations

from _harness import fuzz_format

if __name__ == "__main__":
    fuzz_format("SENML_JSON")
