"""Fleets over real UDP on 127.0.0.1: `aiolwm2m fleet` and Locust (master + 2 workers),
each against the testbed server in its own process. Small, bounded runs (benchmarks/
bench_fleet.py has the large ones); every process is stopped by the test.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_START = 30.0


@pytest.fixture
def server_port() -> Iterator[int]:
    """``aiolwm2m server --quiet`` on a free port, in its own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiolwm2m.cli.main", "server", "--port", "0", "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    try:
        banner = proc.stderr.readline().decode()
        yield int(banner.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        proc.wait(10)


def test_fleet_command_over_udp_through_an_outage(server_port: int, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiolwm2m.cli.main",
            "fleet",
            "--server",
            f"coap://127.0.0.1:{server_port}",
            "--devices",
            "200",
            "--rate",
            "100",
            "--lifetime",
            "10",
            "--duration",
            "20",
            "--processes",
            "2",
            "--outage",
            "8:4",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "udp" and summary["processes"] == 2
    final = summary["final"]
    assert final["registered"] + final["backing_off"] + final["connecting"] == 200
    assert summary["registrations"] >= 200
    assert summary["reregistrations"] > 0, "devices noticed the closed port and came back"
    assert summary["errors"].get("network_error", 0) > 0
    assert summary["updates"] > 0 and summary["update_rtt_ms"]["p99"] is not None
    with (out / "timeline.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and float(rows[-1]["t"]) == 20.0
    assert max(int(r["registered"]) for r in rows) == 200
    assert min(int(r["registered"]) for r in rows[9:12]) < 200, "the outage shows"
    assert (out / "fleet.png").read_bytes().startswith(b"\x89PNG")
    assert "registrations" in done.stdout


def test_locust_master_and_two_workers_register_and_update(
    server_port: int, tmp_path: Path
) -> None:
    # Not importorskip: importing locust monkey-patches this whole test process (gevent).
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (the 'locust' extra)")
    locustfile = subprocess.run(
        [sys.executable, "-m", "aiolwm2m.fleet.locustfile"], capture_output=True, text=True
    ).stdout.strip()
    locust = [sys.executable, "-m", "locust", "-f", locustfile]
    master_port = _free_tcp_port()
    workers = [
        subprocess.Popen(
            [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"worker{i}.log").open("w"),
        )
        for i in range(2)
    ]
    try:
        master = subprocess.run(
            [
                *locust,
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(master_port),
                "--headless",
                "--expect-workers",
                "2",
                "-u",
                "2",
                "-r",
                "2",
                "-t",
                "20s",
                "--csv",
                str(tmp_path / "run"),
                "--lwm2m-server",
                f"coap://127.0.0.1:{server_port}",
                "--lwm2m-devices",
                "100",
                "--lwm2m-lifetime",
                "6",
                "--lwm2m-rate",
                "100",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        deadline = time.monotonic() + 15
        for worker in workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
    assert master.returncode == 0, master.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open() as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    # 2 users, one per worker, 100 devices each: every device registered once, then updated.
    assert int(stats["register"]["Request Count"]) == 200
    assert int(stats["update"]["Request Count"]) >= 200
    assert stats["register"]["Type"] == "LwM2M"
    assert int(stats["Aggregated"]["Failure Count"]) == 0
    assert "Worker" in master.stderr and "(index 1)" in master.stderr, "two workers took part"


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bench_fleet_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/bench_fleet.py end to end on a tiny load (figures not asserted: a bench)."""
    bench_dir = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(bench_dir))
    try:
        spec = importlib.util.spec_from_file_location("bench_fleet", bench_dir / "bench_fleet.py")
        assert spec is not None and spec.loader is not None
        bench = importlib.util.module_from_spec(spec)
        sys.modules["bench_fleet"] = bench  # the spawned processes import it by name
        spec.loader.exec_module(bench)
        argv = ["--devices", "60", "--rate", "120", "--hold", "2", "--storm-out", str(tmp_path)]
        assert bench.main([*argv, "--only", "udp", "--only", "sim", "--only", "storm"]) == 0
    finally:
        sys.path.remove(str(bench_dir))
        sys.modules.pop("bench_fleet", None)
    out = capsys.readouterr().out
    for figure in ("RSS per device (KB)", "CPU per Register (ms)", "Update lateness p99 (ms)"):
        assert figure in out
    assert "wall time (s)" in out and "peak registrations/s after" in out
    assert (tmp_path / "fleet.png").exists()
