"""The optional netlink watcher against a real kernel, in a network namespace of its own.

A veth pair brought up inside a fresh namespace must call the hook within a
second (its burst of link and address messages coalesced; IPv6 link-local
addresses appear after duplicate address detection, a later burst); the
host's own interfaces are never touched. The watcher runs in a child process
entered into that namespace (``ip netns exec``), since netlink reports only
its own namespace. Skipped,
with the reason, where the machine does not allow namespaces (not root, no
``ip``, no CAP_NET_ADMIN) or pyroute2 (the ``netwatch`` extra) is missing.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from aiolwm2m.runtime.netwatch import IFF_LOWER_UP, IFF_UP, NetworkWatcher, network_came_up

pytest.importorskip("pyroute2", reason="the netwatch extra (pyroute2) is not installed")

#: The watcher in the namespace: prints "ready", then one "changed" per hook call.
CHILD = """
import asyncio, sys
from aiolwm2m.runtime.netwatch import NetworkWatcher

async def main():
    loop = asyncio.get_running_loop()
    watcher = NetworkWatcher(lambda: print("changed", loop.time(), flush=True), settle=0.3)
    await watcher.start()
    print("ready", flush=True)
    await asyncio.sleep(float(sys.argv[1]))
    await watcher.stop()

asyncio.run(main())
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespace() -> Iterator[str]:
    if shutil.which("ip") is None:
        pytest.skip("no ip(8) on this machine")
    name = f"aiolwm2m-{uuid.uuid4().hex[:8]}"
    try:
        ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        yield name
    finally:
        ip("netns", "del", name)


def test_a_veth_pair_coming_up_calls_the_hook(namespace: str) -> None:
    child = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", CHILD, "4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        begun = time.monotonic()  # the child's loop.time() is this clock
        ip("-n", namespace, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b")
        ip("-n", namespace, "address", "add", "10.99.0.1/24", "dev", "veth-a")
        ip("-n", namespace, "link", "set", "veth-a", "up")
        ip("-n", namespace, "link", "set", "veth-b", "up")  # carrier on veth-a too
        out, _ = child.communicate(timeout=15)
    finally:
        child.kill()
    calls = [float(line.split()[1]) for line in out.splitlines()]
    after = [round(t - begun, 3) for t in calls]
    print(f"\nnetlink watcher calls, s after the veth pair was made: {after}")
    assert calls and 0.3 <= calls[0] - begun <= 1.0, out
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(calls)), "one call a burst"


async def test_a_burst_of_messages_is_one_call() -> None:
    calls: list[float] = []
    watcher = NetworkWatcher(lambda: calls.append(time.monotonic()), settle=0.05)
    for _ in range(5):
        watcher._soon()
    await asyncio.sleep(0.1)
    watcher._soon()
    await asyncio.sleep(0.1)
    assert len(calls) == 2 and watcher.calls == 2


def test_which_messages_count_as_the_network_coming_up() -> None:
    link = {"header": {"type": 16}}
    assert network_came_up({**link, "flags": IFF_UP | IFF_LOWER_UP})
    assert not network_came_up({**link, "flags": IFF_UP})  # up, but no carrier yet
    assert not network_came_up({**link, "flags": 0})  # went down
    assert network_came_up({"header": {"type": 20}})  # a new address
    assert not network_came_up({"header": {"type": 24}})  # a route: not on its own
