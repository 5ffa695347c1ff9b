"""Persistent client state (runtime/storage.py): round trips, damaged stores, failed
writes, factory reset, and a client restarting on the virtual clock.

Damaged stores are made the ways they happen in the field: random bytes, a
file cut short, another program's SQLite file, a schema from another version,
rows that do not decode. Every one must surface as the typed error carrying
its spec §6 code, keep the bad file (moved aside, never deleted) and leave the
client running from its factory configuration.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from simkit import FakeTree, MakeClient, account

from aiolwm2m.cli.main import main
from aiolwm2m.client import events as ev
from aiolwm2m.client.bootstrap import Provisioning
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import (
    Notification,
    RegistrationRecord,
    ServerState,
    Snapshot,
)
from aiolwm2m.coap.message import Code, Message, MessageType, OptionNumber, decode, encode
from aiolwm2m.errors import NotAllowedError
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.runtime.storage import (
    CorruptStore,
    InvalidStoredCredentials,
    NotAStore,
    Store,
    StoreReadError,
    StoreWriteError,
    factory_reset,
    open_store,
)
from aiolwm2m.testbed.sim import SimServer

URI = "coap://10.0.0.1:5683"


def note(i: int, ssid: int = 1, created: float | None = None) -> Notification:
    msg = Message(type=MessageType.CON, code=Code.CONTENT, token=b"tk%d" % ssid, payload=b"v%d" % i)
    msg.set_uint(OptionNumber.OBSERVE, i)
    return Notification(
        ssid, b"tk%d" % ssid, "/3303/0/5700", msg, 100.0 + i if created is None else created
    )


def provisioning(uri: str = "coap://198.51.100.7:5683", ssid: int = 7) -> dict[str, object]:
    config = ClientConfig("dev", servers=(account(uri, short_server_id=ssid),))
    return Provisioning.from_config(config).to_dict()


def full_snapshot(n: int = 5) -> Snapshot:
    return Snapshot(
        provisioning=provisioning(),
        registrations=(
            RegistrationRecord(7, "coap://198.51.100.7:5683", ("rd", "5"), 42.5, 300, "1.0"),
        ),
        notifications=tuple(note(i, ssid=7) for i in range(n)),
    )


def wire(notes: tuple[Notification, ...]) -> list[tuple[int, bytes, str, bytes, float]]:
    """What identifies a notification across a save/load: the bytes that go out."""
    return [(n.ssid, n.token, n.path, encode(n.message), n.created) for n in notes]


def reopened(path: Path) -> Snapshot:
    store = Store(path)
    try:
        return store.load()
    finally:
        store.close()


# ----------------------------------------------------------------------------- round trip


def test_new_store_is_empty_and_a_saved_state_reads_back_identically(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    assert store.load() == Snapshot()
    snap = full_snapshot()
    store.save(snap)
    store.close()
    back = reopened(path)
    assert back.provisioning == snap.provisioning
    assert back.registrations == snap.registrations
    assert wire(back.notifications) == wire(snap.notifications)


def test_notifications_keep_their_order_as_they_are_appended_and_delivered(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    notes = [note(i) for i in range(4)]
    store.save(Snapshot(notifications=tuple(notes)))
    # Delivered from the front, new ones appended at the back, twice.
    notes = [*notes[2:], note(4), note(5)]
    store.save(Snapshot(notifications=tuple(notes)))
    notes = [*notes[1:], note(6)]
    store.save(Snapshot(notifications=tuple(notes)))
    store.close()
    assert [n.message.payload for n in reopened(path).notifications] == [
        b"v3",
        b"v4",
        b"v5",
        b"v6",
    ]


def test_two_servers_interleaved_keep_each_servers_order(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    a = [note(i, ssid=1) for i in range(3)]
    b = [note(10 + i, ssid=2) for i in range(2)]
    store.save(Snapshot(notifications=(*a, *b)))
    a.append(note(3, ssid=1))  # appended to server 1 while server 2 has some stored
    store.save(Snapshot(notifications=(*a, *b)))
    store.close()
    back = reopened(path).notifications
    for ssid, expected in ((1, a), (2, b)):
        assert wire(tuple(n for n in back if n.ssid == ssid)) == wire(tuple(expected))


def test_times_are_stored_with_the_callers_offset(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    store.save(full_snapshot(2), time_offset=1_000_000.0)
    store.close()
    back = reopened(path)
    assert back.registrations[0].registered_at == 1_000_042.5
    assert [n.created for n in back.notifications] == [1_000_100.0, 1_000_101.0]
    assert back.shifted(-1_000_000.0).registrations == full_snapshot(2).registrations


def test_clearing_provisioning_returns_to_the_factory_accounts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    store.save(full_snapshot())
    store.save(Snapshot())
    store.close()
    assert reopened(path) == Snapshot()


# ----------------------------------------------------------------------------- damaged stores


def damaged(path: Path) -> tuple[Store | None, Snapshot, list[StoreReadError]]:
    before = path.read_bytes()
    store, snap, errors = open_store(path)
    moved = path.with_name(path.name + ".corrupt-1")
    assert moved.read_bytes() == before, "the bad file is kept, byte for byte"
    assert store is not None and snap == Snapshot(), "factory configuration, fresh store"
    store.save(full_snapshot())  # the fresh store works
    store.close()
    return store, snap, errors


def test_random_bytes_are_a_read_error_and_the_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(random.Random(1).randbytes(8192))
    _, _, [error] = damaged(path)
    assert isinstance(error, CorruptStore)
    assert error.code is ev.ErrorCode.FAILED_TO_READ_CREDENTIALS
    assert "corrupt-1" in str(error)


def test_a_truncated_store_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    store.save(full_snapshot(300))  # several pages of notifications
    store.close()  # checkpoints the WAL into the main file
    data = path.read_bytes()
    assert len(data) > 4 * 4096
    path.write_bytes(data[: len(data) // 2])
    _, _, [error] = damaged(path)
    assert isinstance(error, CorruptStore)


def test_another_programs_sqlite_file_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")
    db.close()
    _, _, [error] = damaged(path)
    assert isinstance(error, CorruptStore) and "not an aiolwm2m store" in str(error)


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    db.close()
    _, _, [error] = damaged(path)
    assert isinstance(error, CorruptStore) and "schema version 99" in str(error)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO notifications (ssid, token, path, message, created) "
        "VALUES (1, x'01', '/3/0', x'ffff', 1.0)",  # not a CoAP message
        "INSERT INTO notifications (ssid, token, path, message, created) "
        "VALUES ('one', x'01', '/3/0', x'40', 1.0)",  # wrong column type
        "INSERT INTO registrations VALUES (1, 'coap://h', 'not json', 1.0, 60, '1.1')",
        "INSERT INTO registrations VALUES (1, 'coap://h', '[\"rd\"]', 1.0, 60, '9.9')",
    ],
)
def test_undecodable_rows_are_a_read_error(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(statement)
    db.close()
    _, _, [error] = damaged(path)
    assert type(error) is CorruptStore
    assert error.code is ev.ErrorCode.FAILED_TO_READ_CREDENTIALS


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"0": {"0": "not an instance"}}),
        json.dumps({"0": {}, "1": {}}),  # no account at all: Bootstrap-Finish would refuse it
    ],
)
def test_unusable_stored_accounts_are_invalid_credentials(tmp_path: Path, stored: str) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO meta VALUES ('provisioning', ?)", (stored,))
    db.close()
    _, _, [error] = damaged(path)
    assert isinstance(error, InvalidStoredCredentials)
    assert error.code is ev.ErrorCode.INVALID_CREDENTIALS


def test_an_unopenable_store_is_left_alone_and_reported(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    path = tmp_path / "a-file" / "state.db"  # its directory can never be created
    store, snap, [error] = open_store(path)
    assert store is None and snap == Snapshot()
    assert type(error) is StoreReadError
    assert error.code is ev.ErrorCode.FAILED_TO_READ_CREDENTIALS
    assert (tmp_path / "a-file").read_text() == "not a directory"


def test_a_missing_store_directory_is_created(tmp_path: Path) -> None:
    """A fresh device's first start: persistence must not be silently off."""
    path = tmp_path / "var" / "lib" / "state.db"
    store, snap, errors = open_store(path)
    assert store is not None and snap == Snapshot() and errors == []
    store.save(full_snapshot(1))
    store.close()
    assert len(reopened(path).notifications) == 1


# ----------------------------------------------------------------------------- failed writes


def test_a_write_failing_half_way_leaves_the_previous_state(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    old = full_snapshot(3)
    store.save(old)
    # A full disk, the SQLite way: the database may not grow any more, so the
    # insert of the many new rows fails after some of them were written.
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")
    big = Snapshot(notifications=tuple(note(i) for i in range(2000)))
    with pytest.raises(StoreWriteError) as info:
        store.save(big)
    assert info.value.code is ev.ErrorCode.FAILED_TO_STORE_CREDENTIALS
    back = reopened(path)
    assert back.registrations == old.registrations
    assert wire(back.notifications) == wire(old.notifications), "nothing half-written"
    # Room again: the next save writes the whole new state.
    store._db.execute("PRAGMA max_page_count=1073741823")
    store.save(big)
    store.close()
    assert len(reopened(path).notifications) == 2000


def test_a_store_locked_by_another_process_fails_the_save_and_keeps_the_old_state(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    store.save(full_snapshot(1))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreWriteError):
        store.save(Snapshot())
    other.execute("ROLLBACK")
    other.close()
    assert len(reopened(path).notifications) == 1
    store.save(Snapshot())
    store.close()
    assert reopened(path) == Snapshot()


# ----------------------------------------------------------------------------- factory reset


def test_factory_reset_clears_a_store_and_moves_a_damaged_one_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    assert "no stored state" in factory_reset(path)
    store = Store(path)
    store.save(full_snapshot())
    store.close()
    assert "cleared" in factory_reset(path)
    assert reopened(path) == Snapshot()
    # Ours but damaged: the header still carries our application_id.
    data = bytearray(path.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)
    path.write_bytes(bytes(data))
    assert "moved to" in factory_reset(path)
    assert not path.exists()
    assert (tmp_path / "state.db.corrupt-1").read_bytes() == bytes(data), "kept byte for byte"


@pytest.mark.parametrize(
    "content",
    [b"", b'endpoint = "gateway-17"\n', b"garbage" * 1000, b"SQLite format 3\x00 cut short"],
    ids=["empty", "toml", "garbage", "short-header"],
)
def test_factory_reset_refuses_what_is_not_a_store_and_leaves_it(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "precious"
    path.write_bytes(content)
    with pytest.raises(NotAStore, match="not an aiolwm2m store"):
        factory_reset(path)
    assert path.read_bytes() == content
    assert list(tmp_path.iterdir()) == [path]


def test_factory_reset_refuses_another_programs_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE contacts (name TEXT)")
        db.execute("INSERT INTO contacts VALUES ('Ada')")
    db.close()
    before = path.read_bytes()
    with pytest.raises(NotAStore, match="another program"):
        factory_reset(path)
    assert path.read_bytes() == before


def test_factory_reset_recognises_a_store_whose_header_is_still_in_the_wal(
    tmp_path: Path,
) -> None:
    """After a crash a new store's first page can live in ``-wal`` only."""
    path = tmp_path / "state.db"
    writer = Store(path)
    writer.save(full_snapshot(1))
    other = sqlite3.connect(path)  # keeps the WAL from being checkpointed away
    other.execute("SELECT 1").fetchall()
    assert "cleared" in factory_reset(path)
    other.close()
    writer.close()
    assert reopened(path) == Snapshot()


# ----------------------------------------------------------------------------- the client


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "client.db"


def test_client_reports_a_corrupt_store_and_runs_from_the_factory_config(
    net: SimNetwork, server: SimServer, make_client: MakeClient, store_path: Path
) -> None:
    store_path.write_bytes(b"\x00garbage" * 600)
    client = make_client(storage_path=str(store_path))
    [error] = client.errors()
    assert error.code is ev.ErrorCode.FAILED_TO_READ_CREDENTIALS
    assert net.clock.run_until_true(lambda: client.engine.registered(), timeout=5)
    assert store_path.with_name("client.db.corrupt-1").exists()
    assert reopened(store_path).registrations[0].uri == server.uri


def test_client_restores_provisioned_accounts(
    net: SimNetwork, server: SimServer, make_client: MakeClient, store_path: Path
) -> None:
    other = SimServer(net, ("10.0.0.9", 5683))
    other.start()
    store = Store(store_path)
    store.save(Snapshot(provisioning=provisioning(other.uri, ssid=9)))
    store.close()
    client = make_client(storage_path=str(store_path))
    assert net.clock.run_until_true(lambda: client.engine.registered(9), timeout=5)
    assert "dev-1" in other.core.registrations and "dev-1" not in server.core.registrations


def test_a_failed_save_is_reported_and_the_client_keeps_running(
    net: SimNetwork, server: SimServer, make_client: MakeClient, store_path: Path
) -> None:
    tree = FakeTree()
    client = make_client(storage_path=str(store_path), objects=tree)
    assert net.clock.run_until_true(lambda: client.engine.registered(), timeout=5)
    other = sqlite3.connect(store_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    server.stop()
    client.trigger_update()  # ICMP: the server is gone, notifications are stored
    net.clock.run_for(1)
    tree.notify(net.clock.now, value="kept in memory")
    client.poll()
    [error] = client.errors(ev.ErrorCode.FAILED_TO_STORE_CREDENTIALS)
    assert error.ssid is None and "locked" in (error.detail or "")
    assert len(client.engine.stored_notifications(1)) == 1
    other.execute("ROLLBACK")
    other.close()
    tree.notify(net.clock.now, value="second")
    client.poll()  # the next change saves everything, the first one too
    assert [n.message.payload for n in reopened(store_path).notifications] == [
        b"kept in memory",
        b"second",
    ]


def test_factory_reset_api_only_when_not_running(
    net: SimNetwork, server: SimServer, make_client: MakeClient, store_path: Path
) -> None:
    store = Store(store_path)
    store.save(Snapshot(provisioning=provisioning()))
    store.close()
    client = make_client(storage_path=str(store_path), start=False)
    client.factory_reset()
    assert reopened(store_path) == Snapshot()
    client.start()
    assert net.clock.run_until_true(lambda: client.engine.registered(1), timeout=5)
    with pytest.raises(NotAllowedError):
        client.factory_reset()
    assert client.errors(ev.ErrorCode.NOT_ALLOWED)
    assert reopened(store_path).registrations, "state unchanged"
    client.stop()
    client.factory_reset()
    assert reopened(store_path) == Snapshot()


def test_restart_delivers_stored_notifications_in_order_after_resuming(
    net: SimNetwork, server: SimServer, make_client: MakeClient, store_path: Path
) -> None:
    """A client stores notifications during an outage, dies, and its successor delivers them.

    The successor resumes the stored registration with an Update (spec §10).
    """
    tree = FakeTree()
    first = make_client(storage_path=str(store_path), objects=tree)
    assert net.clock.run_until_true(lambda: first.engine.registered(), timeout=5)
    location = server.core.registrations["dev-1"].location
    server.stop()
    first.trigger_update()  # ICMP: the server is gone, notifications are stored
    created = []
    for value in ("a", "b", "c"):
        net.clock.run_for(20)
        # One token each: the server, which never observed them, Resets each, and
        # a Reset ends an observation's notifications not yet sent.
        created.append(tree.notify(net.clock.now, token=value.encode(), value=value).created)
        first.poll()
    assert len(first.named("notification_stored")) == 3
    first.stop()  # kill -9: no De-register, nothing more is written

    net.clock.run_for(60)  # back well within the 300 s lifetime: the server kept us
    server.start()
    net.trace = []
    second = make_client(storage_path=str(store_path), objects=FakeTree(), seed=2)
    stored = second.engine.stored_notifications(1)
    assert [n.message.payload for n in stored] == [b"a", b"b", b"c"]
    assert [n.created for n in stored] == created, "original times, not the restart time"
    assert second.engine.state_version == 0, "restoring is not a change to save"

    assert net.clock.run_until_true(lambda: second.engine.registered(), timeout=5)
    net.clock.run_for(1)
    assert server.core.registrations["dev-1"].location == location
    to_server = [decode(d) for _, _, dst, d in net.trace if dst == server.addr]
    kinds = [m.payload.decode() if m.code == Code.CONTENT else Code(m.code).name for m in to_server]
    assert kinds[:4] == ["POST", "a", "b", "c"], "the Update first, then the values in order"
    assert [m.uri_path for m in to_server[:1]] == [location.strip("/").split("/")]
    assert not second.named("registering"), "resumed (spec §10), not registered again"
    [flushed] = second.named("notifications_flushed")
    assert isinstance(flushed, ev.NotificationsFlushed) and flushed.count == 3
    assert second.engine.stored_notifications(1) == []
    assert reopened(store_path).notifications == ()
    assert second.engine.server_state(1) is ServerState.REGISTERED


def test_restart_with_another_server_uri_forgets_the_registration(
    net: SimNetwork, server: SimServer, make_client: MakeClient, store_path: Path
) -> None:
    first = make_client(storage_path=str(store_path))
    assert net.clock.run_until_true(lambda: first.engine.registered(), timeout=5)
    first.stop()
    other = SimServer(net, ("10.0.0.9", 5683))
    other.start()
    second = make_client(storage_path=str(store_path), servers=(account(other.uri),), start=False)
    second.engine.restore(reopened(store_path))
    assert second.engine.snapshot().registrations == ()


def test_restart_after_the_registration_expired_drops_what_was_stored(
    net: SimNetwork, server: SimServer, make_client: MakeClient, store_path: Path
) -> None:
    """A new location means a new registration: its observations, and their values, are gone."""
    tree = FakeTree()
    first = make_client(storage_path=str(store_path), objects=tree)
    assert net.clock.run_until_true(lambda: first.engine.registered(), timeout=5)
    server.stop()
    first.trigger_update()
    net.clock.run_for(1)
    tree.notify(net.clock.now)
    first.poll()
    first.stop()
    net.clock.run_for(1000)  # past lifetime (300 s): the server forgets dev-1
    server.start()
    net.clock.run_for(1)
    second = make_client(storage_path=str(store_path), objects=FakeTree(), seed=2)
    assert len(second.engine.stored_notifications(1)) == 1
    assert net.clock.run_until_true(lambda: second.engine.registered(), timeout=30)
    assert server.core.registrations["dev-1"].location != "/rd/1"
    assert second.engine.dropped_notifications(1) == 1
    assert second.named("notifications_flushed") == []
    assert reopened(store_path).notifications == ()


def test_cli_factory_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    store.save(full_snapshot())
    store.close()
    config = tmp_path / "client.toml"
    config.write_text(f'endpoint = "dev"\n[storage]\npath = "{path}"\n')
    assert main(["factory-reset", "--config", str(config)]) == 0
    assert "cleared" in capsys.readouterr().out
    assert reopened(path) == Snapshot()
    config.write_text('endpoint = "dev"\n')
    assert main(["factory-reset", "--config", str(config)]) == 2, "no [storage] path"
    assert main(["factory-reset", "--storage", str(tmp_path / "none.db")]) == 0
