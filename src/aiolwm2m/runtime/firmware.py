"""asyncio side of firmware update: runs the sans-IO coordinator for one :class:`Client`.

:class:`FirmwareRunner` adds /5/0 and /10252/0 to the client's data model
(build it before ``client.start()`` so the Register lists them, and so a
restored record — e.g. result 1 and the new PkgVersion after an install that
rebooted — is in place before the first Register), takes the server's
operations (it is the objects' ``FirmwareControl``), carries out the
coordinator's actions in order with one lock around the package handler,
runs the fetch as a task per attempt, sets the coordinator's timer and
reports its events through the client's event stream.

The firmware record (states, results, the download's saved offset and ETag)
lives in the client's store (``[storage] path``, ``runtime/storage.py``); the
offset saved there never exceeds the bytes the package handler made durable
(``flush()`` returns before the coordinator saves it), so a crash at any point
resumes from bytes that are really on disk. Without a store the download still
resumes after network failures but not after a restart of the process.

Offline mode pauses a download and leaving it resumes it; so does queue-mode
sleep (``[firmware] queue_mode_pause``) until the next Update or Register.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aiolwm2m.client import events as ev
from aiolwm2m.client.firmware import (
    FirmwareUpdate,
    InstallOutcome,
    ManifestVerifier,
)
from aiolwm2m.client.firmware.update import (
    FlushCheckpoint,
    Install,
    OpenPackage,
    Persist,
    ResetPackage,
    StartFetch,
    StopDownload,
    VerifyPackage,
)
from aiolwm2m.client.operations import OperationHandler
from aiolwm2m.client.states import ServerState
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m.objects.firmware import (
    FIRMWARE_OBJECT,
    MANIFEST_OBJECT,
    FirmwareInstance,
    ManifestInstance,
)
from aiolwm2m.runtime.aio import Client
from aiolwm2m.runtime.clock import loop_deadline, loop_now
from aiolwm2m.runtime.download import FetchError, available_schemes, fetch
from aiolwm2m.runtime.firmware_store import DirectoryPackageStore, PackageError, PackageHandler
from aiolwm2m.runtime.storage import CorruptStore, StoreReadError, StoreWriteError

__all__ = ["FirmwareRunner", "load_manifest_keys"]

log = logging.getLogger("aiolwm2m.firmware")


def load_manifest_keys(paths: tuple[str, ...]) -> list[ec.EllipticCurvePublicKey]:
    """PEM public keys (P-256) from ``[firmware] manifest_keys``; bad ones are a ConfigError."""
    keys = []
    for path in paths:
        try:
            key = serialization.load_pem_public_key(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[firmware] manifest key {path}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise ConfigError(f"[firmware] manifest key {path} is not a P-256 public key")
        keys.append(key)
    return keys


class FirmwareRunner:
    """See the module docstring. Construct inside the running event loop."""

    def __init__(
        self,
        client: Client,
        handler: PackageHandler | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        # /5/0/8 lists only what this installation can fetch (HTTP needs aiohttp).
        settings = client.config.firmware
        settings = dataclasses.replace(settings, protocols=available_schemes(settings.protocols))
        if handler is None:
            if settings.directory is None:
                raise ConfigError("[firmware] directory is required for the default handler")
            handler = DirectoryPackageStore(
                settings.directory,
                install_command=settings.install_command,
                install_timeout=settings.install_timeout,
                max_bytes=settings.max_package_bytes,
            )
        if not isinstance(client.objects, OperationHandler):
            raise ConfigError("firmware update needs the client's default data model")
        self.client = client
        self.handler = handler
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self._rng = rng or random.Random()
        verifier = ManifestVerifier.from_public_keys(
            load_manifest_keys(settings.manifest_keys),
            vendor_id=settings.vendor_id,
            class_id=settings.class_id,
        )
        self._verifier = verifier
        self.update = self._coordinator()
        self._lock = asyncio.Lock()
        self._fetch: asyncio.Task[None] | None = None
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._shown = -1
        #: Errors found while restoring, reported by the first run of the actions.
        self._errors: list[ev.Error] = []
        now = self._now()
        self._restore(now)
        self.update.start(now)
        tree = client.objects.tree
        self.object5 = FirmwareInstance(self, self.update.object5_values())
        self.manifest = ManifestInstance(self, {})
        tree.add_instance(FIRMWARE_OBJECT, 0, self.object5)
        tree.add_instance(MANIFEST_OBJECT, 0, self.manifest)
        self._show()
        client.subscribe(self._on_client_event)
        self._kick()

    def _now(self) -> float:
        """The client's clock (:mod:`aiolwm2m.runtime.clock`), so its events and ours agree."""
        return loop_now(self._loop)

    def _coordinator(self) -> FirmwareUpdate:
        return FirmwareUpdate(
            self.settings,
            self._rng,
            verifier=self._verifier,
            wall_offset=time.time() - self._now(),
        )

    def _restore(self, now: float) -> None:
        """Take up the record of the client's store; a bad one is an ``error`` event.

        A record that cannot be read or used is reported with the store's
        read-failure code (spec §6 "failed to read credentials": storage read
        failed or corrupt) and the firmware objects start from Idle; the
        client keeps running and the next save replaces the bad record.
        """
        store = self.client.store
        if store is None:
            return
        try:
            record = store.load_firmware()
            if record is not None:
                self.update.restore(record, now, self.handler.boot_outcome())
        except StoreReadError as exc:
            self._report(now, exc.code, f"firmware record unreadable, starting from Idle: {exc}")
        except (KeyError, ValueError, TypeError) as exc:
            # A partly applied record must not linger: start from a fresh coordinator.
            self.update = self._coordinator()
            detail = f"firmware record unusable, starting from Idle: {exc!r}"
            self._report(now, CorruptStore.code, detail)

    def _report(self, now: float, code: ev.ErrorCode, detail: str) -> None:
        log.error("%s", detail)
        self._errors.append(ev.Error(now, code, detail=detail))

    # ------------------------------------------------------------------ FirmwareControl
    def write_uri(self, uri: str) -> None:
        try:
            self.update.write_uri(uri, self._now())
        finally:
            self._kick()  # a refusal may still have set a result (e.g. 9)

    async def write_package(self, data: bytes) -> None:
        if data in (b"", b"\x00"):
            self.update.reset(self._now())
            self._kick()
            return
        await self.write_package_block(0, data, False)

    async def write_package_block(self, offset: int, data: bytes, more: bool) -> None:
        async with self._lock:
            now = self._now()
            if offset == 0:
                self.update.push_started(now)
            else:
                self.update.push_continues(offset, now)
            await self._run_actions()
            try:
                await self.handler.write(data)
            except PackageError as exc:
                self.update.package_failed(exc.kind, self._now(), str(exc))
                await self._run_actions()
                raise
            self.update.push_stored(offset + len(data), self._now(), last=not more)
            await self._run_actions()

    def execute_update(self) -> None:
        try:
            self.update.execute_update(self._now())
        finally:
            self._kick()  # a refusal may still have set a result (e.g. 9)

    def cancel(self) -> None:
        try:
            self.update.cancel(self._now())
        finally:
            self._kick()  # a refusal may still have set a result (e.g. 9)

    def write_manifest(self, data: bytes) -> None:
        try:
            self.update.write_manifest(data, self._now())
        finally:
            self._kick()  # a refusal may still have set a result (e.g. 9)

    def manual_trigger(self) -> None:
        try:
            self.update.manual_trigger(self._now())
        finally:
            self._kick()  # a refusal may still have set a result (e.g. 9)

    def set_value(self, name: str, value: object) -> None:
        self.update.set_values(self._now(), **{name: value})
        self._kick()

    # ------------------------------------------------------------------ application API
    def pause(self) -> None:
        self.update.pause(self._now())
        self._kick()

    def resume(self) -> None:
        self.update.resume(self._now())
        self._kick()

    async def close(self) -> None:
        """Stop the fetch and the timer (the record on disk stays for the next start)."""
        if self._timer is not None:
            self._timer.cancel()
        for task in [*self._tasks, *([self._fetch] if self._fetch else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ plumbing
    def _kick(self) -> None:
        """Carry out pending actions soon (never inside the caller's stack)."""
        self._spawn(self._locked_run())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _locked_run(self) -> None:
        async with self._lock:
            await self._run_actions()

    async def _run_actions(self) -> None:
        """Execute the coordinator's actions in order (the lock is held)."""
        update, handler = self.update, self.handler
        while actions := update.take_actions():
            for action in actions:
                now = self._now()
                try:
                    if isinstance(action, OpenPackage):
                        held = await handler.open(action.offset, action.uri)
                        update.package_opened(held, self._now())
                    elif isinstance(action, StartFetch):
                        self._start_fetch(action)
                    elif isinstance(action, StopDownload):
                        self._stop_fetch()
                    elif isinstance(action, FlushCheckpoint):
                        await handler.flush()
                        update.checkpoint_flushed(action.offset, self._now())
                    elif isinstance(action, VerifyPackage):
                        await handler.verify(action.size, action.digest)
                        update.package_verified(self._now())
                    elif isinstance(action, ResetPackage):
                        await handler.reset()
                    elif isinstance(action, Install):
                        self._spawn(self._install(action.may_defer))
                    elif isinstance(action, Persist):
                        self._save()
                except PackageError as exc:
                    update.package_failed(exc.kind, now, str(exc))
                except StoreWriteError as exc:
                    # The previous record stays (the transaction rolled back): a
                    # restart resumes from an older offset, never a wrong one.
                    self._report(now, exc.code, f"firmware record not saved: {exc}")
        errors, self._errors = self._errors, []
        for event in [*errors, *update.take_events()]:
            self.client.emit(event)
        self._show()
        self._arm_timer()

    def _save(self) -> None:
        store = self.client.store
        if store is not None:
            store.save_firmware(self.update.record())

    def _show(self) -> None:
        if self._shown != self.update.version:
            self._shown = self.update.version
            self.object5.show(self.update.object5_values())
            self.manifest.show(self.update.manifest_values())

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.update.next_timer()
        if when is not None:
            self._timer = self._loop.call_at(loop_deadline(when), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.update.handle_timer(self._now())
        self._kick()

    async def _install(self, may_defer: bool) -> None:
        try:
            outcome = await self.handler.install(may_defer)
        except Exception as exc:  # an application installer must not kill the client
            log.exception("firmware install hook failed")
            outcome = InstallOutcome(False, detail=f"install hook raised {exc!r}")
        async with self._lock:
            self.update.install_finished(outcome, self._now())
            await self._run_actions()

    def _start_fetch(self, action: StartFetch) -> None:
        self._stop_fetch()
        self._generation += 1
        self._fetch = self._loop.create_task(self._run_fetch(self._generation, action))

    def _stop_fetch(self) -> None:
        self._generation += 1
        if self._fetch is not None and self._fetch is not asyncio.current_task():
            self._fetch.cancel()
        self._fetch = None

    async def _run_fetch(self, generation: int, action: StartFetch) -> None:
        update = self.update

        async def on_chunk(offset: int, data: bytes, validator: str, total: int | None) -> None:
            async with self._lock:
                if generation != self._generation:
                    raise asyncio.CancelledError
                try:
                    await self.handler.write(data)
                except PackageError as exc:
                    update.package_failed(exc.kind, self._now(), str(exc))
                    await self._run_actions()
                    raise asyncio.CancelledError from exc
                update.fetch_progress(
                    offset + len(data), self._now(), validator=validator, total=total
                )
                await self._run_actions()
                if generation != self._generation:
                    raise asyncio.CancelledError

        try:
            await fetch(
                action.uri,
                action.offset,
                action.validator,
                on_chunk,
                self.settings,
                params=self.client.config.coap,
                timing=self.client.config.dtls,
                rng=self._rng,
            )
        except asyncio.CancelledError:
            return
        except FetchError as exc:
            async with self._lock:
                if generation == self._generation:
                    update.fetch_failed(exc.kind, self._now(), str(exc))
                    await self._run_actions()
            return
        async with self._lock:
            if generation == self._generation:
                update.fetch_complete(self._now())
                await self._run_actions()

    def _on_client_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.StateChanged):
            if event.new is ServerState.OFFLINE:
                self.pause()
            elif event.old is ServerState.OFFLINE:
                self.resume()
        elif isinstance(event, ev.QueueModeSleep) and self.settings.queue_mode_pause:
            self.pause()
        elif isinstance(event, ev.UpdateSent | ev.Registering):
            self.resume()
