"""Restart test: ``kill -9`` a process while it writes client state, 200 times.

A writer process saves a new state of the store in a tight loop (accounts
provisioned or not, a registration, stored notifications appended, delivered
or all replaced) and reports each committed generation. The test kills it
with SIGKILL at a random moment (seeded), opens the store and checks it holds
exactly the last reported generation or the one being written — every row of
one generation, never a mix.

The asyncio client at the end checks the same store over real UDP with
wall-clock times.

Interpreter start-up plus imports cost most of a second, so the writers are
forked from one pre-imported "zygote" process (this file run as a script):
each round is still a separate process killed by the kernel mid-write.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import pytest

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client import events as ev
from aiolwm2m.client.bootstrap import Provisioning
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import Notification, RegistrationRecord, Snapshot
from aiolwm2m.coap.message import Code, Message, MessageType
from aiolwm2m.coap.params import TransmissionParameters
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.storage import Store
from aiolwm2m.testbed.server import TestbedServer

KILLS = 200
SEED = 20261123
#: Kill this long after the writer reports it is writing: uniform in [0, MAX_DELAY] s.
MAX_DELAY = 0.03
FAST = TransmissionParameters(ack_timeout=0.2, ack_random_factor=1.0, max_retransmit=2)


# ----------------------------------------------------------------------------- the states


def payloads_after(previous: list[str], gen: int) -> list[str]:
    """Generation ``gen``'s stored notifications, from the previous generation's."""
    if gen % 4 == 0:  # everything replaced (e.g. a new registration dropped them)
        return [f"{gen}:{i}" for i in range(gen % 37 + 1)]
    # Some delivered from the front, new ones stored at the back.
    return previous[gen % 3 :] + [f"{gen}:{i}" for i in range(gen % 5 + 1)]


def provisioning_of(gen: int) -> dict[str, Any] | None:
    if gen % 3 == 0:
        return None
    server = ServerAccount(uri=f"coap://192.0.2.{gen % 250 + 1}:5683", short_server_id=gen % 9 + 1)
    return Provisioning.from_config(ClientConfig("crash", servers=(server,))).to_dict()


def generation_of(snapshot: Snapshot) -> int:
    return int(snapshot.registrations[0].registered_at) if snapshot.registrations else 0


def check(snapshot: Snapshot, gen: int, payloads: list[str]) -> None:
    """The whole store is generation ``gen``: registration, accounts and every notification."""
    assert generation_of(snapshot) == gen
    if gen:
        [reg] = snapshot.registrations
        assert reg.location == ("rd", str(gen)) and reg.lifetime == gen + 1
    assert snapshot.provisioning == provisioning_of(gen)
    assert [n.message.payload.decode() for n in snapshot.notifications] == payloads
    assert all(n.created == float(n.message.payload.split(b":")[0]) for n in snapshot.notifications)


# ----------------------------------------------------------------------------- the writer


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # unbuffered: nothing duplicated by fork


def write_forever(path: str) -> None:
    """Forked writer: save generation after generation until killed."""
    store = Store(path)
    snapshot = store.load()
    gen = generation_of(snapshot)
    notes = list(snapshot.notifications)
    _say(f"ready {os.getpid()} {gen}")
    while True:
        gen += 1
        wanted = payloads_after([n.message.payload.decode() for n in notes], gen)
        kept = [] if gen % 4 == 0 else notes[gen % 3 :]  # the same objects: an incremental save
        notes = kept + [
            Notification(
                1,
                b"tok",
                "/3303/0/5700",
                Message(type=MessageType.NON, code=Code.CONTENT, token=b"tok", payload=p.encode()),
                float(gen),
            )
            for p in wanted[len(kept) :]
        ]
        store.save(
            Snapshot(
                provisioning=provisioning_of(gen),
                registrations=(
                    RegistrationRecord(1, "coap://h", ("rd", str(gen)), float(gen), gen + 1, "1.1"),
                ),
                notifications=tuple(notes),
            )
        )
        _say(f"saved {gen}")


def zygote(path: str) -> None:
    """Fork one writer per line on stdin; report how each one ended."""
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                write_forever(path)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        _say(f"dead {signum}")


# ----------------------------------------------------------------------------- the test


def _read_until(stream: TextIO, prefix: str) -> list[str]:
    lines = []
    while True:
        line = stream.readline()
        assert line, "the writer zygote exited"
        lines.append(line.split())
        if line.startswith(prefix):
            return lines


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_kill_9_during_writes_leaves_the_old_or_the_new_state(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    rng = random.Random(SEED)
    states: dict[int, list[str]] = {0: []}
    proc = subprocess.Popen(
        [sys.executable, __file__, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert proc.stdin is not None and proc.stdout is not None
    started = time.monotonic()
    reported_total = 0
    mid_write = 0
    try:
        for _ in range(KILLS):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            [[_, pid, first]] = _read_until(proc.stdout, "ready")
            time.sleep(rng.uniform(0, MAX_DELAY))  # the random moment of the crash
            os.kill(int(pid), signal.SIGKILL)
            lines = _read_until(proc.stdout, "dead")
            assert lines[-1] == ["dead", str(signal.SIGKILL)], f"writer failed: {lines[-1]}"
            saved = [int(words[1]) for words in lines if words[0] == "saved"]
            last = saved[-1] if saved else int(first)
            reported_total += len(saved)
            for gen in range(max(states) + 1, last + 2):
                states[gen] = payloads_after(states[gen - 1], gen)
            snapshot = reopened(path)  # must open: no StorageError
            gen = generation_of(snapshot)
            assert gen in (last, last + 1), f"stored generation {gen}, last reported {last}"
            mid_write += gen == last + 1
            check(snapshot, gen, states[gen])
    finally:
        proc.kill()
        proc.wait()
    elapsed = time.monotonic() - started
    print(
        f"\n{KILLS} kills in {elapsed:.1f} s; {reported_total} generations committed; "
        f"{mid_write} kills landed after a commit was written but before it was reported"
    )
    assert max(states) > KILLS, "the writers made progress between kills"


# ----------------------------------------------------------------------------- asyncio client


async def test_asyncio_client_saves_wall_clock_times_and_restarts_from_them(
    tmp_path: Path,
) -> None:
    """Real UDP: the store holds wall-clock times; a new process-like client maps them back."""
    server = TestbedServer("127.0.0.1", 0, params=FAST)
    await server.start()
    path = tmp_path / "client.db"
    config = ClientConfig(
        endpoint="store-dev",
        servers=(ServerAccount(uri=server.uri, lifetime=60),),
        coap=FAST,
        storage_path=str(path),
    )
    try:
        before = time.time()
        first = Client(config)
        await first.start()
        await first.wait_for(ev.Registered, 5)
        await first.stop()  # no De-register: what a crash leaves behind
        after = time.time()
        [stored] = reopened(path).registrations
        assert before <= stored.registered_at <= after
        assert stored.location == tuple(
            server.core.registrations["store-dev"].location.strip("/").split("/")
        )

        second = Client(config)
        await second.start()
        engine_now = second.now()  # the engine's (and the events') clock
        [restored] = second.engine.snapshot().registrations
        age = engine_now - restored.registered_at
        assert 0 <= age <= after - before + 1, "the registration's age survived the restart"
        await second.wait_for(ev.Updated, 5)  # the stored registration, resumed (spec §10)
        assert second.engine.snapshot().registrations[0].location == stored.location
        await second.close()
    finally:
        await server.stop()


def reopened(path: Path) -> Snapshot:
    store = Store(path)
    try:
        return store.load()
    finally:
        store.close()


if __name__ == "__main__":
    zygote(sys.argv[1])
