"""atheris target: plain CBOR (60) single-value decoder at every base path level."""

from __future__ import annotations

from _harness import fuzz_format

if __name__ == "__main__":
    fuzz_format("CBOR")
