"""Crash-safe persistent client state: one SQLite database (WAL mode) per client.

What is kept (see :class:`~aiolwm2m.client.engine.Snapshot`): Security/Server
accounts a bootstrap provisioned, each server's registration (location,
registration time, lifetime, LwM2M version) and the stored notifications in
order, the Bootstrap-Server Account Timeout's deadline or purge (a ``meta``
row that older stores simply lack), plus a schema version. The firmware update record (what
``FirmwareUpdate.record()`` returns: states, results, the download's saved
offset and ETag) is one more ``meta`` row, written on its own
(:meth:`Store.save_firmware`), so a firmware checkpoint never rewrites the
engine's state and vice versa.

Why SQLite with WAL (stdlib ``sqlite3``) rather than "write a temp file, fsync,
rename, fsync the directory":

* **Atomic, durable transactions whose crash-safety is proven elsewhere.**
  SQLite's own test suite simulates crashes and power loss at every write;
  in WAL mode a commit appends frames to ``<path>-wal`` and a crash before
  the commit frame is simply rolled back on the next open. The restart test
  (``tests/integration/test_storage_crash.py``) kills a writer 200 times.
* **Small updates stay small.** Stored notifications change at both ends
  (appended while offline, removed as they are delivered); a transaction
  deletes and inserts only the rows that changed instead of rewriting the
  whole state for every notification.
* **Corruption is detected, not guessed.** A foreign or damaged file fails
  SQLite's header check or ``PRAGMA quick_check``; our own
  ``application_id`` and ``user_version`` identify the file and its schema.
* **No extra dependency**: ``sqlite3`` ships with CPython.

Failures map to the three credential errors of spec §6 through each error
class's ``code``: a store that cannot be written raises
:class:`StoreWriteError` and keeps the previous state (the transaction rolls
back: nothing half-written); one that cannot be read raises
:class:`StoreReadError`; damaged content raises :class:`CorruptStore`, and
unusable stored accounts :class:`InvalidStoredCredentials`. :func:`open_store`
is the policy the runtimes use: a corrupt file is moved aside (never deleted)
and the client starts from its factory configuration with a fresh store.

Times are stored on whatever clock the caller passes them in; the runtimes
store wall-clock seconds so they survive a reboot (``time_offset``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

from aiolwm2m.client.bootstrap import BootstrapError, Provisioning
from aiolwm2m.client.engine import Notification, RegistrationRecord, Snapshot
from aiolwm2m.client.events import ErrorCode
from aiolwm2m.coap.message import CoapDecodeError, decode, encode
from aiolwm2m.errors import ConfigError, StorageError

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "CorruptStore",
    "InvalidStoredCredentials",
    "NotAStore",
    "Store",
    "StoreReadError",
    "StoreWriteError",
    "ensure_directory",
    "factory_reset",
    "move_aside",
    "open_store",
]

#: ``PRAGMA application_id``: "LwM2" — marks the file as an aiolwm2m store.
APPLICATION_ID = 0x4C774D32
#: ``PRAGMA user_version``: bumped on any incompatible schema change.
SCHEMA_VERSION = 1
#: Seconds a save waits for a lock held by another connection (e.g. a factory reset).
BUSY_TIMEOUT = 0.1
#: Files SQLite keeps next to the database; they move and vanish together.
SIDECARS = ("-wal", "-shm", "-journal")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE registrations (
    ssid INTEGER PRIMARY KEY,
    uri TEXT NOT NULL,
    location TEXT NOT NULL,
    registered_at REAL NOT NULL,
    lifetime INTEGER NOT NULL,
    lwm2m_version TEXT NOT NULL
);
CREATE TABLE notifications (
    seq INTEGER PRIMARY KEY,
    ssid INTEGER NOT NULL,
    token BLOB NOT NULL,
    path TEXT NOT NULL,
    message BLOB NOT NULL,
    created REAL NOT NULL
);
"""


class StoreReadError(StorageError):
    """The store exists but cannot be opened or read (permissions, I/O error)."""

    code: ClassVar[ErrorCode] = ErrorCode.FAILED_TO_READ_CREDENTIALS


class CorruptStore(StoreReadError):
    """The store's content is damaged, foreign or of another schema version."""


class InvalidStoredCredentials(CorruptStore):
    """The stored Security/Server instances fail the Bootstrap-Finish consistency check."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID_CREDENTIALS


class StoreWriteError(StorageError):
    """A save failed and was rolled back: the store still holds the previous state."""

    code: ClassVar[ErrorCode] = ErrorCode.FAILED_TO_STORE_CREDENTIALS


def _is_corruption(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _read_error(exc: sqlite3.Error, path: Path) -> StoreReadError:
    cls = CorruptStore if _is_corruption(exc) else StoreReadError
    return cls(f"store {path}: {exc}")


class Store:
    """One open store. Not thread-safe; one writer (the client) at a time.

    :meth:`save` remembers which notification objects it wrote under which
    row, so the next save of the same engine only deletes delivered rows and
    inserts new ones.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            # A store locked by another process fails fast (reported, retried at
            # the next change) instead of stalling the event loop for seconds.
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise _read_error(exc, self.path) from exc
        try:
            self._open()
        except StorageError:
            self._db.close()
            raise
        self._provisioning: str | None = None
        self._purge: str | None = None
        self._registrations: tuple[RegistrationRecord, ...] = ()
        self._rows: dict[int, tuple[Notification, int]] = {}  # id(note) -> (note, seq)
        self._time_offset = 0.0

    def _open(self) -> None:
        # Identify the file before changing anything in it (WAL mode rewrites
        # the header): a foreign or damaged file is moved aside byte for byte.
        try:
            app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            check = self._db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as exc:
            raise _read_error(exc, self.path) from exc
        if check != [("ok",)]:
            raise CorruptStore(f"store {self.path} is damaged: {check[0][0]}")
        new = app_id == 0 and version == 0 and tables == 0
        if not new and app_id != APPLICATION_ID:
            raise CorruptStore(f"{self.path} is an SQLite file but not an aiolwm2m store")
        if not new and version != SCHEMA_VERSION:
            raise CorruptStore(
                f"store {self.path} has schema version {version}, this client reads "
                f"{SCHEMA_VERSION} (factory reset to start over)"
            )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise _read_error(exc, self.path) from exc
        if new:
            self._create()

    def _create(self) -> None:
        try:
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except StoreWriteError as exc:
            raise StoreReadError(f"cannot create store {self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any failure (nothing half-written)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreWriteError(f"store {self.path}: {exc}") from exc
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            with suppress(sqlite3.Error):  # SQLite may have rolled back already (SQLITE_FULL)
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error | OSError):
                raise StoreWriteError(f"store {self.path}: {exc}") from exc
            raise

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ reading
    def load(self) -> Snapshot:
        """The stored state (empty for a new store), times on the stored clock."""
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            reg_rows = self._db.execute(
                "SELECT ssid, uri, location, registered_at, lifetime, lwm2m_version "
                "FROM registrations ORDER BY ssid"
            ).fetchall()
            note_rows = self._db.execute(
                "SELECT seq, ssid, token, path, message, created FROM notifications ORDER BY seq"
            ).fetchall()
        except sqlite3.Error as exc:
            raise _read_error(exc, self.path) from exc
        provisioning = meta.get("provisioning")
        purge = meta.get("bootstrap_purge")
        purge_at, purged = self._decode_purge(purge)
        snapshot = Snapshot(
            provisioning=None if provisioning is None else self._decode_provisioning(provisioning),
            registrations=tuple(self._decode_registration(row) for row in reg_rows),
            notifications=tuple(self._decode_notification(row) for row in note_rows),
            bootstrap_purge_at=purge_at,
            bootstrap_purged=purged,
        )
        self._provisioning = provisioning
        self._purge = purge
        self._registrations = snapshot.registrations
        self._rows = {
            id(note): (note, row[0])
            for note, row in zip(snapshot.notifications, note_rows, strict=True)
        }
        self._time_offset = 0.0
        return snapshot

    def load_firmware(self) -> dict[str, Any] | None:
        """The stored firmware record (None if there is none); a damaged one is CorruptStore.

        Unlike the engine's state, a bad firmware record does not move the
        store aside: the caller reports it and the next :meth:`save_firmware`
        replaces it.
        """
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'firmware'").fetchone()
        except sqlite3.Error as exc:
            raise _read_error(exc, self.path) from exc
        if row is None:
            return None
        try:
            record = json.loads(row[0])
        except (TypeError, ValueError) as exc:
            raise CorruptStore(f"store {self.path}: firmware record is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise CorruptStore(f"store {self.path}: firmware record is not a mapping")
        return record

    def save_firmware(self, record: dict[str, Any] | None) -> None:
        """Replace the firmware record in one transaction (None deletes it).

        Durable when this returns (``synchronous=FULL``): a caller that made
        the partial image durable first can rely on the saved offset.
        """
        with self._transaction():
            self._db.execute("DELETE FROM meta WHERE key = 'firmware'")
            if record is not None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('firmware', ?)", (json.dumps(record, sort_keys=True),)
                )

    def _decode_provisioning(self, text: str) -> dict[str, Any]:
        """The stored accounts, checked as a Bootstrap-Finish would check them."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise StorageError("stored provisioning is not a mapping")
            Provisioning.from_dict(data).accounts()
        except (ValueError, StorageError, BootstrapError, ConfigError) as exc:
            raise InvalidStoredCredentials(f"store {self.path}: unusable accounts: {exc}") from exc
        return data

    def _decode_purge(self, text: str | None) -> tuple[float | None, bool]:
        """The ``bootstrap_purge`` row: ``{"at": time}`` or ``{"purged": true}``."""
        if text is None:
            return None, False
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if data == {"purged": True}:
            return None, True
        at = data.get("at") if isinstance(data, dict) and len(data) == 1 else None
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise CorruptStore(f"store {self.path}: bootstrap_purge row {text!r} is malformed")
        return float(at), False

    def _decode_registration(self, row: tuple[Any, ...]) -> RegistrationRecord:
        ssid, uri, location, registered_at, lifetime, version = row
        try:
            parts = json.loads(location)
        except ValueError:
            parts = None
        if not (
            isinstance(ssid, int)
            and isinstance(uri, str)
            and isinstance(parts, list)
            and all(isinstance(p, str) for p in parts)
            and isinstance(registered_at, float | int)
            and isinstance(lifetime, int)
            and version in ("1.0", "1.1")
        ):
            raise CorruptStore(f"store {self.path}: bad registration row for ssid {ssid!r}")
        return RegistrationRecord(ssid, uri, tuple(parts), float(registered_at), lifetime, version)

    def _decode_notification(self, row: tuple[Any, ...]) -> Notification:
        seq, ssid, token, path, data, created = row
        if not (
            isinstance(ssid, int)
            and isinstance(token, bytes)
            and isinstance(path, str)
            and isinstance(data, bytes)
            and isinstance(created, float | int)
        ):
            raise CorruptStore(f"store {self.path}: bad notification row {seq}")
        try:
            message = decode(data)
        except CoapDecodeError as exc:
            raise CorruptStore(f"store {self.path}: notification row {seq}: {exc}") from exc
        return Notification(ssid, token, path, message, float(created))

    # ------------------------------------------------------------------ writing
    def save(self, snapshot: Snapshot, time_offset: float = 0.0) -> None:
        """Make ``snapshot`` the stored state in one transaction (times + ``time_offset``).

        On :class:`StoreWriteError` the store still holds the previous state
        and the next save rewrites whatever differs from it.
        """
        offset_changed = time_offset != self._time_offset
        provisioning = (
            None
            if snapshot.provisioning is None
            else json.dumps(snapshot.provisioning, sort_keys=True)
        )
        purge = _purge_row(snapshot, time_offset)
        keep, new_rows = self._notification_diff(snapshot.notifications, offset_changed)
        with self._transaction():
            if provisioning != self._provisioning:
                self._db.execute("DELETE FROM meta WHERE key = 'provisioning'")
                if provisioning is not None:
                    self._db.execute("INSERT INTO meta VALUES ('provisioning', ?)", (provisioning,))
            if purge != self._purge:
                self._db.execute("DELETE FROM meta WHERE key = 'bootstrap_purge'")
                if purge is not None:
                    self._db.execute("INSERT INTO meta VALUES ('bootstrap_purge', ?)", (purge,))
            if snapshot.registrations != self._registrations or offset_changed:
                self._db.execute("DELETE FROM registrations")
                self._db.executemany(
                    "INSERT INTO registrations VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            r.ssid,
                            r.uri,
                            json.dumps(list(r.location)),
                            r.registered_at + time_offset,
                            r.lifetime,
                            r.lwm2m_version,
                        )
                        for r in snapshot.registrations
                    ],
                )
            gone = [(seq,) for key, (_, seq) in self._rows.items() if key not in keep]
            self._db.executemany("DELETE FROM notifications WHERE seq = ?", gone)
            written: dict[int, tuple[Notification, int]] = {}
            for note in new_rows:
                cursor = self._db.execute(
                    "INSERT INTO notifications (ssid, token, path, message, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        note.ssid,
                        note.token,
                        note.path,
                        encode(note.message),
                        note.created + time_offset,
                    ),
                )
                assert cursor.lastrowid is not None
                written[id(note)] = (note, cursor.lastrowid)
        self._provisioning = provisioning
        self._purge = purge
        self._registrations = snapshot.registrations
        self._rows = {key: self._rows[key] for key in keep} | written
        self._time_offset = time_offset

    def _notification_diff(
        self, notes: tuple[Notification, ...], rewrite: bool
    ) -> tuple[set[int], list[Notification]]:
        """Rows to keep (by ``id``) and notifications to insert, preserving per-server order.

        Kept rows must be in stored order and come before every new one of the
        same server (the engine appends at the end and delivers from the
        front); otherwise every row is rewritten.
        """
        if not rewrite:
            keep: set[int] = set()
            new: list[Notification] = []
            last_seq: dict[int, int] = {}
            has_new: set[int] = set()
            for note in notes:
                entry = self._rows.get(id(note))
                if entry is None or entry[0] is not note:
                    new.append(note)
                    has_new.add(note.ssid)
                    continue
                seq = entry[1]
                if note.ssid in has_new or seq <= last_seq.get(note.ssid, -1):
                    break
                last_seq[note.ssid] = seq
                keep.add(id(note))
            else:
                return keep, new
        return set(), list(notes)

    def clear(self) -> None:
        """Factory reset of an open store: every row goes, in one transaction."""
        with self._transaction():
            for table in ("meta", "registrations", "notifications"):
                self._db.execute(f"DELETE FROM {table}")
        self._provisioning = None
        self._purge = None
        self._registrations = ()
        self._rows = {}


def _purge_row(snapshot: Snapshot, time_offset: float) -> str | None:
    """The ``bootstrap_purge`` meta row for ``snapshot`` (its deadline on the stored clock)."""
    if snapshot.bootstrap_purged:
        return json.dumps({"purged": True})
    if snapshot.bootstrap_purge_at is not None:
        return json.dumps({"at": snapshot.bootstrap_purge_at + time_offset})
    return None


def _files(path: Path) -> list[Path]:
    return [p for p in (path, *(Path(f"{path}{s}") for s in SIDECARS)) if p.exists()]


def move_aside(path: str | os.PathLike[str]) -> Path:
    """Rename a bad store and its sidecar files to ``<path>.corrupt-<n>``; never deletes."""
    path = Path(path)
    n = 1
    while any(Path(f"{path}.corrupt-{n}{s}").exists() for s in ("", *SIDECARS)):
        n += 1
    target = Path(f"{path}.corrupt-{n}")
    for file in _files(path):
        os.replace(file, str(target) + file.name[len(path.name) :])
    return target


def open_store(
    path: str | os.PathLike[str],
) -> tuple[Store | None, Snapshot, list[StoreReadError]]:
    """Open the client's store the way the runtimes do, never raising.

    Returns the store (None when it cannot be used at all), the state to
    restore (empty: factory configuration) and the errors to report. A
    corrupt store is moved aside (see :func:`move_aside`) and replaced by an
    empty one; an unreadable one (permissions, I/O) is left where it is and
    the client runs without persistence.
    """
    errors: list[StoreReadError] = []
    try:
        ensure_directory(path)
        store = Store(path)
        try:
            return store, store.load(), errors
        except StorageError:
            store.close()
            raise
    except CorruptStore as exc:
        try:
            target = move_aside(path)
        except OSError as move_exc:
            errors.append(exc)
            errors.append(StoreReadError(f"cannot move bad store {path} aside: {move_exc}"))
            return None, Snapshot(), errors
        errors.append(
            type(exc)(f"{exc}; moved to {target}, starting from the factory configuration")
        )
    except StoreReadError as exc:
        return None, Snapshot(), [exc]
    try:
        return Store(path), Snapshot(), errors
    except StoreReadError as exc:
        return None, Snapshot(), [*errors, exc]


class NotAStore(ConfigError):
    """A path given to :func:`factory_reset` is not an aiolwm2m store: it is left alone."""


#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Offset of ``PRAGMA application_id`` in the 100-byte database header (big-endian).
_APPLICATION_ID_OFFSET = 68


def _application_id(path: Path) -> int | None:
    """The file's ``application_id``: from SQLite (which reads the WAL too), else its header.

    None when the file is not an SQLite database at all. A crash can leave a
    new store's header page in ``-wal`` only, hence SQLite first; a damaged
    file SQLite refuses still names its owner in the header.
    """
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise StoreReadError(f"cannot read {path}: {exc.strerror}") from exc
    if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
        return None
    in_header = int.from_bytes(header[_APPLICATION_ID_OFFSET : _APPLICATION_ID_OFFSET + 4], "big")
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
        try:
            app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return in_header
    return APPLICATION_ID if APPLICATION_ID in (app_id, in_header) else app_id


def factory_reset(path: str | os.PathLike[str]) -> str:
    """Clear the store at ``path`` back to the factory configuration; says what it did.

    Only a file that is recognisably ours — an SQLite database whose
    ``application_id`` is :data:`APPLICATION_ID` — is touched: a readable
    store is emptied in one transaction (safe even if a crash interrupts it);
    a damaged one is moved aside like the client does at start (never
    deleted). Anything else — a typo'd path to a config file, another
    program's database — raises :class:`NotAStore` and is left as it was.
    """
    path = Path(path)
    if not path.exists():
        return f"{path}: no stored state (already factory configuration)"
    if path.is_dir():
        raise NotAStore(f"{path} is a directory, not an aiolwm2m store: left alone")
    app_id = _application_id(path)
    if app_id is None:
        raise NotAStore(f"{path} is not an aiolwm2m store (not an SQLite database): left alone")
    if app_id != APPLICATION_ID:
        raise NotAStore(
            f"{path} is an SQLite database of another program (application_id "
            f"0x{app_id:08x}, ours is 0x{APPLICATION_ID:08x}): left alone"
        )
    try:
        store = Store(path)
    except CorruptStore as exc:
        try:
            target = move_aside(path)
        except OSError as move_exc:
            raise StoreWriteError(f"cannot move damaged store {path} aside: {move_exc}") from exc
        return f"{path}: damaged store moved to {target}; the next start creates a fresh one"
    try:
        store.clear()
    finally:
        store.close()
    return f"{path}: stored state cleared"


def ensure_directory(path: str | os.PathLike[str]) -> None:
    """Create the store's directory if it is missing (a fresh device's first start).

    Raises :class:`StoreReadError` when it cannot be created: without it the
    client would silently run with no persistence at all.
    """
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreReadError(f"cannot create the directory {parent}: {exc.strerror}") from exc
