"""``aiolwm2m client`` stopping, verbosity flags and shell completion, as real processes.

A server that went silent (its port held by a socket that never answers, so
no ICMP either) is the worst case for a De-register: without a bound it takes
MAX_TRANSMIT_WAIT (93 s with default parameters).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from aiolwm2m.cli.completion_cmd import completion_script
from aiolwm2m.cli.main import build_parser
from aiolwm2m.testbed.server import TestbedServer


def _client(port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "aiolwm2m", "client", "--endpoint", "stopper"),
            *("--server", f"coap://127.0.0.1:{port}", *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


async def _registered_then_silent(*extra: str) -> tuple[subprocess.Popen[str], socket.socket]:
    """A client registered to a server whose port then answers nothing at all."""
    server = TestbedServer("127.0.0.1", 0)
    await server.start()
    port = server.port
    proc = _client(port, *extra)
    deadline = time.monotonic() + 20
    while "stopper" not in server.core.registrations:
        assert time.monotonic() < deadline and proc.poll() is None, "never registered"
        await asyncio.sleep(0.05)
    await server.stop()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", port))
    return proc, silent


async def _finish(proc: subprocess.Popen[str]) -> tuple[str, str, float]:
    start = time.monotonic()
    out, err = await asyncio.get_running_loop().run_in_executor(None, proc.communicate, None)
    return out, err, time.monotonic() - start


async def test_sigint_deregister_is_bounded_by_the_flag() -> None:
    proc, silent = await _registered_then_silent("--deregister-timeout", "1", "-v")
    try:
        proc.send_signal(signal.SIGINT)
        _out, err, took = await _finish(proc)
    finally:
        silent.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert 0.9 < took < 6, f"took {took:.1f} s"
    assert "press Ctrl-C again to quit now" in err
    assert "got no answer within 1 s" in err
    # -v after the sub-command: state changes on stderr, on the timeline's clock.
    assert "server 1: registering -> registered" in err, err


async def test_a_second_signal_quits_at_once() -> None:
    proc, silent = await _registered_then_silent()
    try:
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _out, err, took = await _finish(proc)
    finally:
        silent.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert took < 3, f"took {took:.1f} s after the first signal (default bound is 5 s)"
    assert "quit without waiting for the De-register" in err


def test_a_client_that_never_registered_stops_at_once_without_an_error(
    silent_port: socket.socket,
) -> None:
    proc = _client(silent_port.getsockname()[1], "--events", "jsonl")
    time.sleep(1.5)  # registering, against silence
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - start < 3
    assert '"registering"' in out
    assert "not_registered" not in out, "no spurious error when nothing was registered"
    assert "de-registering" not in err


def _complete(words: list[str]) -> list[str]:
    """What bash offers after ``words`` (the last one being typed), through the script."""
    script = completion_script(build_parser(), "bash")
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _aiolwm2m; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


def test_completion_offers_commands_flags_and_choices() -> None:
    assert {"client", "server", "bootstrap-server"} <= set(_complete(["aiolwm2m", ""]))
    assert _complete(["aiolwm2m", "client", "--ev"]) == ["--events"]
    assert _complete(["aiolwm2m", "-v", "client", "--events", ""]) == ["jsonl", "text"]
    assert _complete(["aiolwm2m", "certs", ""])[:2] == ["--help", "--quiet"]
    assert "--force" in _complete(["aiolwm2m", "certs", "init", "--"])
    assert {"blackhole", "server_restart"} <= set(_complete(["aiolwm2m", "scenario", ""]))
    # A free value (an endpoint name) gets no suggestions rather than the flags.
    assert _complete(["aiolwm2m", "client", "--endpoint", ""]) == []


def test_completion_command_prints_the_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiolwm2m", "completion", "zsh"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("autoload -U +X bashcompinit")
    assert done.stdout.rstrip().endswith("complete -o default -F _aiolwm2m aiolwm2m")


async def test_demo_gives_up_at_its_overall_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo that cannot finish ends with exit 1 instead of running forever."""
    from aiolwm2m.cli import demo_cmd

    monkeypatch.setattr(demo_cmd, "DEADLINE_MARGIN", 0.5)
    start = time.monotonic()
    assert await demo_cmd._demo(1.0, 1, "jsonl") == 1  # 1.5 s cannot hold the whole story
    assert time.monotonic() - start < 5
