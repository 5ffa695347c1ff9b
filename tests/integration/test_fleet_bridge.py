"""The gevent/asyncio bridge under Locust's monkey-patching (in a child process: patching
the test process would change every other test).

What must hold: the asyncio loop runs in a kernel thread, not a greenlet; the gevent
hub keeps scheduling its greenlets while that loop is busy; records cross from the
loop thread to a greenlet complete and in order; calls cross the other way; a real
fleet shard on that loop registers over UDP while the hub keeps ticking.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()  # what `import locust` does
    import asyncio, json, time
    import gevent
    real_sleep = monkey.get_original("time", "sleep")  # blocks the kernel thread
    real_ident = monkey.get_original("_thread", "get_ident")  # kernel thread id
    from aiolwm2m.fleet.bridge import LoopThread, Outbox

    hub_ticks = []
    def ticker():
        while True:
            hub_ticks.append(time.monotonic())
            gevent.sleep(0.005)
    gevent.spawn(ticker)

    thread = LoopThread()
    thread.start()
    while not thread.running:
        gevent.sleep(0.01)
    out = Outbox()
    facts = {}

    async def busy():
        facts["loop_thread"] = real_ident()
        for i in range(10_000):
            out.put(i)
            if i % 1000 == 0:
                real_sleep(0.05)  # blocks this thread only: the hub must keep ticking
                await asyncio.sleep(0)
        return "done"

    start = time.monotonic()
    thread.spawn(busy(), out, "busy")
    received, ended = [], None
    while ended is None and time.monotonic() - start < 20:
        for item in out.drain():
            if isinstance(item, tuple):
                ended = item
            else:
                received.append(item)
        gevent.sleep(0.002)
    busy_ticks = [t for t in hub_ticks if start <= t <= time.monotonic()]

    # The other way: a call into the loop, answered through an outbox.
    back = Outbox()
    thread.call(lambda: back.put(asyncio.get_running_loop() is thread.loop))
    while not (answer := back.drain()):
        gevent.sleep(0.002)
    thread.stop()
    while not thread.stopped:
        gevent.sleep(0.01)
    print(json.dumps({
        "main_thread": real_ident(),
        "loop_thread": facts["loop_thread"],
        "received_in_order": received == list(range(10_000)),
        "ended": [ended[0], ended[1], repr(ended[2])],
        "busy_seconds": time.monotonic() - start,
        "hub_ticks_while_busy": len(busy_ticks),
        "call_answer": answer,
        "crashed": repr(thread.crashed),
    }))
    """
)


def test_asyncio_runs_in_a_kernel_thread_while_the_gevent_hub_keeps_ticking() -> None:
    if importlib.util.find_spec("gevent") is None:
        pytest.skip("gevent is not installed (comes with the 'locust' extra)")
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["loop_thread"] != facts["main_thread"], "not the hub's thread"
    assert facts["received_in_order"]
    assert facts["ended"] == ["busy", "done", "None"]
    assert facts["call_answer"] == [True]
    assert facts["crashed"] == "None"
    # The loop thread blocked 0.5 s in total in 10 steps; a hub sharing its thread
    # (a loop run in a greenlet) would have ticked about 10 times, a free one every ~5 ms.
    assert facts["hub_ticks_while_busy"] >= facts["busy_seconds"] / 0.005 / 4
