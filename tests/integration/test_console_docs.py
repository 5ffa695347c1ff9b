"""docs/testbed.md's console example, run as written against the shipped example client.

The commands come from the document itself (the block after
``<!-- console-example -->``), so the documentation cannot drift from what
``aiolwm2m server`` and ``python -m aiolwm2m.examples.custom_object`` do.
Both run as real processes; the server runs the commands as a ``--script``
with ``--events jsonl``, which also shows the server's events with their
facts as separate fields.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "testbed.md"


def documented_commands() -> list[tuple[str, str]]:
    """(command, expected code class or code) from the documented session."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- console-example -->", 1)[1].split("```", 2)[1]
    commands = []
    for line in block.strip().splitlines():
        command, _, comment = line.partition("#")
        expect = re.search(r"expect (\d\.\d\d)", comment)
        commands.append((command.strip(), expect.group(1) if expect else "2."))
    return commands


def test_documented_console_session_works_against_the_example_client(tmp_path: Path) -> None:
    commands = documented_commands()
    assert len(commands) >= 10
    script = tmp_path / "session.txt"
    lines = ["wait dev1 30", *(c for c, _ in commands), "quit"]
    script.write_text("\n".join(lines) + "\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "aiolwm2m", "server", "--port", str(port)),
            *("--script", str(script), "--events", "jsonl"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        assert "listening on" in server.stderr.readline()  # up before the client starts
        client = subprocess.Popen(
            [
                *(sys.executable, "-m", "aiolwm2m.examples.custom_object"),
                *(f"coap://127.0.0.1:{port}", "--endpoint", "dev1", "--seconds", "60"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            out, err = server.communicate(timeout=90)
        finally:
            client.kill()
            client.wait()
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, f"a documented command failed:\n{out}\n{err}"
    records = [json.loads(line) for line in out.splitlines()]
    [registered] = [r for r in records if r.get("event") == "registered"]
    assert registered["location"].startswith("/rd/") and registered["lifetime"] == 60
    assert "detail" not in registered, "facts as separate fields, not one string"
    results = [r for r in records if "op" in r]
    for (command, expected), result in zip(
        [c for c in commands if c[0].split()[0] not in ("sleep", "list")],
        _first_result_per_command(results),
        strict=True,
    ):
        assert result["code"].startswith(expected), (command, result)


def _first_result_per_command(results: list[dict[str, object]]) -> list[dict[str, object]]:
    """Drop the notifications that follow an observe: same op and path as its first answer."""
    firsts, seen = [], set()
    for result in results:
        key = (result["op"], result["path"])
        if result["op"] in ("observe", "observe-composite"):
            if key in seen:
                continue
            seen.add(key)
        firsts.append(result)
    return firsts
