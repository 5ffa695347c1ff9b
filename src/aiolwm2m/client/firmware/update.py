"""The firmware update coordinator: Object 5, Object 10252 and one download, sans-IO.

:class:`FirmwareUpdate` owns the truth the two objects show (states, result
codes, URI, package name/version, manifest fields) and the single package
slot both objects drive: a push (Block1 Write of /5/0/0), a pull (a Package
URI) or a manifest-driven pull (a signed manifest in /10252/0/1, which moves
Object 5 through the same states so a plain LwM2M server follows it too).

It takes server operations and runtime reports with the current time
(``now``, the runtime's monotonic clock) and returns :class:`RuntimeAction`
values for the runtime to carry out in order (open/flush/verify/reset the
package storage, start/stop a fetch, install, persist), events, and one timer
(:meth:`next_timer`). It never touches a file, socket or clock.

Persistence is a JSON-ready dict (:meth:`record` / :meth:`restore`): state,
results, the download's checkpointed offset and validator, and an install
outcome waiting to be reported after a reboot. A pull download found in
progress at restore resumes from its checkpoint; a push cannot (the server
must push again) and ends with result 4; an install interrupted without an
outcome ends with result 8.
"""

from __future__ import annotations

from typing import Any

# The runtime actions were defined here before the split and are still
# imported from here (__all__): most of them this module only re-exports.
from .actions import (
    FlushCheckpoint,
    Install,
    InstallOutcome,
    OpenPackage,
    Persist,
    ResetPackage,
    RuntimeAction,
    StartFetch,
    StopDownload,
    VerifyPackage,
)
from .coordinator import Coordinator
from .download import DownloadPhase, FailureKind
from .events import FirmwareProgress
from .manifest import ManifestError
from .slot import Job, Origin, job_record, restore_job, uri_problem
from .states import (
    FirmwareState,
    ManifestResult,
    ManifestState,
    ManifestTrigger,
    NotAllowedInState,
    RefusedInState,
    Trigger,
    UpdateResult,
)

__all__ = [
    "RECORD_VERSION",
    "FirmwareUpdate",
    "FlushCheckpoint",
    "Install",
    "InstallOutcome",
    "OpenPackage",
    "Origin",
    "Persist",
    "ResetPackage",
    "RuntimeAction",
    "StartFetch",
    "StopDownload",
    "VerifyPackage",
]

RECORD_VERSION = 1


class FirmwareUpdate(Coordinator):
    """Sans-IO coordinator of Objects 5 and 10252; see the module docstring."""

    # ------------------------------------------------------------------ the objects
    def object5_values(self) -> dict[int, Any]:
        """/5/0 resource values (optional ones only when known)."""
        return self.values.object5(self.fw.state, self.fw.result, self.settings.protocols)

    def manifest_values(self) -> dict[int, Any]:
        """/10252/0 resource values."""
        return self.values.manifest(self.mf.state, self.mf.result)

    # ------------------------------------------------------------------ lifecycle
    def start(self, now: float) -> None:
        """The client came up (after :meth:`restore`, if any)."""
        if self.mf.state is ManifestState.UNINITIALISED:
            self._fire_manifest(ManifestTrigger.START, now)

    # ------------------------------------------------------------------ server operations
    def write_uri(self, uri: str, now: float) -> None:
        """Write /5/0/1: empty resets (cancelling a download), otherwise a pull starts."""
        if uri == "":
            self.reset(now)
            return
        self.fw.check(Trigger.URI_WRITTEN)
        problem = uri_problem(uri, self.settings.protocols)
        if problem is not None:
            result, detail = problem
            self._fire(Trigger.URI_REJECTED, now, result, detail)
            raise RefusedInState(detail)
        self.values.uri = uri
        self._fire(Trigger.URI_WRITTEN, now)
        self._begin_pull(Job(Origin.PULL, uri), now)

    def push_started(self, now: float) -> None:
        """First block (or the whole value) of a Write to /5/0/0 arrived."""
        self.fw.check(Trigger.PUSH_STARTED)
        self.values.uri = ""
        self._fire(Trigger.PUSH_STARTED, now)
        self._job = Job(Origin.PUSH, None, deadline=now + self.settings.push_timeout)
        self._actions += [ResetPackage(), OpenPackage(0, None)]

    def push_continues(self, offset: int, now: float) -> None:
        """A later block of the push; it must continue the bytes stored so far."""
        job = self._job
        pushing = job is not None and job.origin is Origin.PUSH
        if job is None or not pushing or self.fw.state is not FirmwareState.DOWNLOADING:
            raise RefusedInState("no package push in progress")
        if offset != job.received:
            raise RefusedInState(f"push block at {offset}, {job.received} bytes stored")
        job.deadline = now + self.settings.push_timeout

    def push_stored(self, offset: int, now: float, *, last: bool) -> None:
        """The push's bytes up to ``offset`` are stored; ``last``: the package is complete."""
        job = self._job
        if job is None or job.origin is not Origin.PUSH:
            return
        job.received = offset
        if last:
            job.deadline = None
            self._events.append(FirmwareProgress(now, offset, offset))
            self._actions.append(VerifyPackage(None, None))

    def reset(self, now: float) -> None:
        """Empty Package URI or Package: back to Idle, result 0, the package discarded."""
        self.fw.check(Trigger.RESET)
        self._end_job(now)
        self.values.uri = ""
        self._fire(Trigger.RESET, now)
        self._reset_manifest(now)

    def cancel(self, now: float) -> None:
        """Execute /5/0/10: result 10 and Idle, unless installing (4.05)."""
        self.fw.check(Trigger.CANCEL)
        self._end_job(now)
        self._fire(Trigger.CANCEL, now)
        self._reset_manifest(now)

    def execute_update(self, now: float) -> None:
        """Execute /5/0/2: only in Downloaded (else 4.05)."""
        self.fw.check(Trigger.UPDATE)
        self._defer_until = None
        if self.mf.state is ManifestState.AWAITING_APPLICATION_APPROVAL:
            self._fire_manifest(ManifestTrigger.MANUAL_TRIGGER, now)
        self._install(now, may_defer=self.values.max_defer > 0)

    def manual_trigger(self, now: float) -> None:
        """Execute /10252/0/9: install a manifest's asset that waits for it (else 4.05)."""
        self.mf.check(ManifestTrigger.MANUAL_TRIGGER)
        self._fire_manifest(ManifestTrigger.MANUAL_TRIGGER, now)
        self._install(now, may_defer=False)

    def write_manifest(self, data: bytes, now: float) -> None:
        """Write /10252/0/1: verify, then download the asset it names.

        The Write succeeds even for a refused manifest: the refusal is the
        Manifest Result (and its reason the Payload Result), as the object
        defines. An empty write drops a manifest update that has not started
        installing.
        """
        if not data:
            self.mf.check(ManifestTrigger.RESET)
            self.reset(now)
            return
        self.mf.check(ManifestTrigger.MANIFEST_WRITTEN)
        if self.fw.state is not FirmwareState.IDLE:
            raise NotAllowedInState("a firmware update is in progress on /5")
        self.values.payload_result = b""
        self._fire_manifest(ManifestTrigger.MANIFEST_WRITTEN, now)
        try:
            if self.verifier is None:
                raise ManifestError(
                    ManifestResult.MANIFEST_CERTIFICATE_NOT_FOUND, "no manifest keys configured"
                )
            manifest = self.verifier.verify(data, self.values.installed_sequence)
            problem = uri_problem(manifest.uri, self.settings.protocols)
            if problem is not None:
                raise ManifestError(ManifestResult.INVALID_ASSET_URI, problem[1])
        except ManifestError as exc:
            self.values.report(str(exc))
            self._fire_manifest(ManifestTrigger.MANIFEST_REJECTED, now, exc.result, str(exc))
            return
        self.values.manifest_version = manifest.sequence
        self.values.progress = 0
        self._fire_manifest(ManifestTrigger.MANIFEST_ACCEPTED, now)
        self.values.uri = manifest.uri
        self._fire(Trigger.URI_WRITTEN, now)
        job = Job(Origin.MANIFEST, manifest.uri, manifest=manifest)
        job.name, job.version = manifest.name, manifest.version
        self._begin_pull(job, now)

    def set_values(self, now: float, **values: Any) -> None:
        """Server writes of plain settings: severity, max_defer, auto_update, campaign_id."""
        for key, value in values.items():
            if key not in ("severity", "max_defer", "auto_update", "campaign_id"):
                raise KeyError(key)
            setattr(self.values, key, value)
        self._changed()

    # ------------------------------------------------------------------ runtime reports
    def package_opened(self, offset: int, now: float) -> None:
        """The storage is open and holds ``offset`` bytes; a pull (re)starts from there."""
        job = self._job
        if job is None or job.download is None:
            return
        download = job.download
        if download.offset != offset:
            download.offset = min(download.offset, offset)
            job.checkpoint = download.offset
        if download.phase is DownloadPhase.CREATED:
            download.start(now, resumed=download.offset > 0)
            self._drain_download(now)

    def fetch_progress(
        self, offset: int, now: float, *, validator: str | None = None, total: int | None = None
    ) -> None:
        job = self._job
        if job is not None and job.download is not None:
            job.download.received(offset, now, validator=validator, total=total)
            self._drain_download(now)

    def checkpoint_flushed(self, offset: int, now: float) -> None:
        """The package storage made the bytes up to ``offset`` durable: save that offset.

        This is the only place the saved offset grows, so the persisted record
        never claims more than what survived a crash. A late report from
        before a restart of the download (offset beyond the data) is ignored.
        """
        job = self._job
        if job is None or job.download is None or offset > job.download.offset:
            return
        if offset > job.checkpoint:
            job.checkpoint = offset
            self._persist()

    def fetch_complete(self, now: float) -> None:
        job = self._job
        if job is not None and job.download is not None:
            job.download.completed(now)
            self._drain_download(now)

    def fetch_failed(self, kind: FailureKind, now: float, detail: str = "") -> None:
        job = self._job
        if job is not None and job.download is not None:
            job.download.failed(kind, now, detail)
            self._drain_download(now)

    def package_failed(self, kind: FailureKind, now: float, detail: str = "") -> None:
        """The storage or the check of the package failed: the download ends with ``kind``."""
        job = self._job
        if job is None or self.fw.state is not FirmwareState.DOWNLOADING:
            return
        if job.download is not None:
            job.download.cancel(now)
            self._drain_download(now)
        rule = self.settings.download.rule(kind)
        self._download_failed(rule.result, rule.manifest_result, f"{kind.value}: {detail}", now)

    def package_verified(
        self, now: float, *, name: str | None = None, version: str | None = None
    ) -> None:
        """The package is complete and passed its checks."""
        job = self._job
        if job is None or self.fw.state is not FirmwareState.DOWNLOADING:
            return
        job.deadline = None
        if job.download is not None:
            job.checkpoint = job.download.offset  # verify() made the whole package durable
        self.values.pkg_name = job.name if job.name is not None else name
        self.values.pkg_version = job.version if job.version is not None else version
        self._fire(Trigger.DOWNLOADED, now)
        if job.origin is Origin.MANIFEST:
            self._fire_manifest(ManifestTrigger.DOWNLOADED, now)
            assert job.manifest is not None
            if job.manifest.manual_trigger:
                self._fire_manifest(ManifestTrigger.AWAIT_TRIGGER, now)
                return
            self._fire_manifest(ManifestTrigger.INSTALL, now)
            self._install(now, may_defer=False)
        elif self.values.auto_update:
            self._install(now, may_defer=self.values.max_defer > 0)

    def install_finished(self, outcome: InstallOutcome, now: float) -> None:
        if self.fw.state is not FirmwareState.UPDATING:
            return
        if outcome.deferred and self.values.max_defer > 0:
            self._defer_until = now + self.values.max_defer
            self._fire(Trigger.DEFERRED, now, detail=outcome.detail or None)
            if self.mf.state is ManifestState.UPDATING:
                self._fire_manifest(ManifestTrigger.AWAIT_TRIGGER, now)
            return
        if outcome.success and outcome.reboot:
            self._pending = outcome
            if self.mf.state is ManifestState.UPDATING:
                self._fire_manifest(ManifestTrigger.REBOOT, now)
            self._persist()
            return
        self._install_failed_or_done(outcome, now)

    def pause(self, now: float) -> None:
        """Offline mode or queue-mode sleep: stop fetching until :meth:`resume`."""
        job = self._job
        if job is not None and job.download is not None:
            job.download.pause(now)
            self._drain_download(now)

    def resume(self, now: float) -> None:
        job = self._job
        if job is not None and job.download is not None:
            job.download.resume(now)
            self._drain_download(now)

    def handle_timer(self, now: float) -> None:
        job = self._job
        if job is not None and job.deadline is not None and now >= job.deadline:
            job.deadline = None
            detail = f"no push block for {self.settings.push_timeout:g} s"
            self._end_job(now)
            self._fire(Trigger.DOWNLOAD_FAILED, now, UpdateResult.CONNECTION_LOST, detail)
            return
        if job is not None and job.download is not None:
            job.download.handle_timer(now)
            self._drain_download(now)
        if self._defer_until is not None and now >= self._defer_until:
            self._defer_until = None
            if self.fw.allowed(Trigger.UPDATE):
                if self.mf.state is ManifestState.AWAITING_APPLICATION_APPROVAL:
                    self._fire_manifest(ManifestTrigger.MANUAL_TRIGGER, now)
                self._install(now, may_defer=False)

    # ------------------------------------------------------------------ persistence
    def record(self) -> dict[str, Any]:
        """Everything a restart needs, JSON-ready."""
        pending = self._pending
        return {
            "v": RECORD_VERSION,
            "state": int(self.fw.state),
            "result": int(self.fw.result),
            **self.values.object5_record(),
            "mf_state": int(self.mf.state),
            "mf_result": int(self.mf.result),
            **self.values.manifest_record(),
            "job": job_record(self._job),
            "pending": None
            if pending is None
            else {"version": pending.version, "detail": pending.detail},
        }

    def restore(
        self, record: dict[str, Any], now: float, boot_outcome: InstallOutcome | None = None
    ) -> None:
        """Take up where a previous run stopped (before :meth:`start`).

        ``boot_outcome``: what an installer that restarted the device left
        behind (the runtime's package handler knows); it settles an
        installation the record shows in progress.
        """
        if record.get("v") != RECORD_VERSION:
            raise ValueError(f"firmware record version {record.get('v')!r} is not {RECORD_VERSION}")
        self.fw.state = FirmwareState(record["state"])
        self.fw.result = UpdateResult(record["result"])
        self.mf.state = ManifestState(record["mf_state"])
        self.mf.result = ManifestResult(record["mf_result"])
        self.values.load(record)
        self._job = restore_job(record["job"], self.settings.download, self._rng)
        pending = record["pending"]
        self._changed()
        if self.fw.state is FirmwareState.UPDATING:
            self._settle_install(pending, boot_outcome, now)
        elif self.fw.state is FirmwareState.DOWNLOADING:
            self._settle_download(now)
        if self.mf.state is ManifestState.PROCESSING_MANIFEST:
            self.mf.state = ManifestState.IDLE
