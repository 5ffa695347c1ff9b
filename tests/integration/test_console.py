"""The testbed console on a terminal: prompt, Tab completion, history — through a real pty."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from aiolwm2m.cli.console import candidates, registered_paths
from aiolwm2m.lwm2m.ddf import load_builtin

LINKS = "</1>;ver=1.1,</1/0>,</3>;ver=1.2,</3/0>,</3303>;ver=1.1,</3303/0>"


def test_completion_candidates() -> None:
    paths = registered_paths(LINKS, load_builtin())
    assert {"/1", "/1/0", "/3/0", "/3303/0", "/1/0/1", "/3/0/13", "/3303/0/5700"} <= set(paths)
    commands = ["read", "read-composite", "write", "list", "sleep"]
    assert candidates("", "rea", commands, ["dev1"], lambda ep: paths) == [
        "read",
        "read-composite",
    ]
    assert candidates("read ", "d", commands, ["dev1", "other"], lambda ep: paths) == ["dev1"]
    assert candidates("observe dev1 ", "/3303/0/57", commands, ["dev1"], lambda ep: paths) == [
        "/3303/0/5700",
        "/3303/0/5701",
        "/3303/0/5750",
    ]
    assert candidates("sleep ", "", commands, ["dev1"], lambda ep: paths) == []
    assert registered_paths("<not a link", load_builtin()) == []


def _read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {needle!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen += os.read(fd, 4096)
    return seen


def test_prompt_tab_completion_and_history_on_a_terminal(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiolwm2m", "server", "--port", "0"],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.DEVNULL,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    try:
        _read_until(controller, b"lwm2m> ")
        os.write(controller, b"hel\t\n")  # Tab completes "help"
        out = _read_until(controller, b"quit                                 stop the server")
        assert b"commands (one per line" in out
        _read_until(controller, b"lwm2m> ")
        os.write(controller, b"quit\n")
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert proc.returncode == 0
    history = (tmp_path / ".aiolwm2m_history").read_text().split()
    assert history[-2:] == ["help", "quit"]
