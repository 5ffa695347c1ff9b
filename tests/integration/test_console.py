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


class Terminal:
    """The controller side of a pty: everything read so far, consumed up to each match."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def read_until(self, needle: bytes, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {needle!r} in {self.buffer!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                self.buffer += os.read(self.fd, 4096)
        end = self.buffer.index(needle) + len(needle)
        seen, self.buffer = self.buffer[:end], self.buffer[end:]
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
        term = Terminal(controller)
        term.read_until(b"lwm2m> ")
        os.write(controller, b"hel\t\n")  # Tab completes "help"
        out = term.read_until(b"quit                                 stop the server")
        assert b"commands (one per line" in out
        term.read_until(b"lwm2m> ")
        os.write(controller, b"quit\n")
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert proc.returncode == 0
    history = (tmp_path / ".aiolwm2m_history").read_text().split()
    assert history[-2:] == ["help", "quit"]
