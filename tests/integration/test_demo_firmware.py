"""``aiolwm2m demo --firmware`` as a user runs it: a child process, its timeline, its exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiolwm2m.cli.main", "demo", "--firmware", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.slow
def test_demo_firmware_resumes_after_the_outage_and_ends_with_19() -> None:
    done = _demo("--seed", "3", "--outage", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "OUTAGE" in out and "firmware_retry" in out
    assert "Manifest Result 19, Update Result 1, PkgVersion '2.0.0'" in out
    # Resumed, not restarted: the retries resume from a non-zero offset.
    assert "offset=0 " not in out.split("OUTAGE", 1)[1]


def test_demo_firmware_jsonl_events() -> None:
    done = _demo("--seed", "5", "--outage", "2", "--events", "jsonl")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    retries = [e for e in events if e["event"] == "firmware_retry"]
    assert retries and all(e["offset"] > 0 for e in retries)
    finals = [e for e in events if e["event"] == "firmware_state" and e["new"] == "idle"]
    assert finals[-1]["object_id"] == 10252 and finals[-1]["result"] == 19
    assert any(e["object_id"] == 5 and e["result"] == 1 for e in finals)
