"""Smoke test: benchmarks/bench_coap.py keeps working (tiny round counts, no timing asserts)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_coap.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_coap_smoke", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_coap_runs(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    data = bench.check_same_bytes()  # ours and aiocoap's bytes are identical
    assert 70 <= len(data) <= 90
    results = bench.run(rounds=1, number=20)
    assert set(results["aiolwm2m"]) == {"encode", "decode", "encode+decode"}
    assert all(rate > 0 for r in results.values() for rate in r.values())
    assert bench.main(["--rounds", "1", "--number", "10"]) == 0
    assert "aiolwm2m / aiocoap" in capsys.readouterr().out
    sys.modules.pop("bench_coap_smoke", None)
