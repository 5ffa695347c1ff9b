"""Smoke test: benchmarks/bench_dtls.py keeps working (tiny counts, no timing asserts)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_dtls.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_dtls_smoke", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_dtls_runs(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    rates = bench.run(rounds=1, number=3)
    assert {
        "handshake PSK-AES128-CCM8",
        "resumed handshake PSK-AES128-CCM8",
        "handshake ECDHE-ECDSA-AES128-CCM8",
        "resumed handshake ECDHE-ECDSA-AES128-CCM8",
        "record round trip, memory",
        "round trip over UDP, plain UDP",
        "round trip over UDP, DTLS-PSK",
    } <= set(rates)  # plus python-mbedtls' figures where it is installed
    assert all(rate > 0 for rate in rates.values())
    assert bench.main(["--rounds", "1", "--number", "3"]) == 0
    out = capsys.readouterr().out
    assert "DTLS-PSK / plain UDP" in out and "resumed / full PSK handshakes" in out
    sys.modules.pop("bench_dtls_smoke", None)
