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

import enum
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiolwm2m.client.events import Event
from aiolwm2m.lwm2m.model import seconds_to_time

from .download import (
    Checkpoint,
    DownloadFailed,
    DownloadFinished,
    DownloadMachine,
    DownloadPhase,
    FailureKind,
    Fetch,
    Restart,
    RetryWait,
    StopFetch,
)
from .events import FirmwareProgress, FirmwareRetry, FirmwareStateChanged
from .manifest import Manifest, ManifestError, ManifestVerifier
from .settings import SUPPORTED_SCHEMES, FirmwareSettings
from .states import (
    MANIFEST_REFUSAL,
    MANIFEST_TRANSITIONS,
    OBJECT5_REFUSAL,
    OBJECT5_TRANSITIONS,
    FirmwareState,
    Machine,
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


class Origin(enum.Enum):
    PUSH = "push"
    PULL = "pull"
    MANIFEST = "manifest"


# -- what the runtime does for us, in order ----------------------------------------


@dataclass(frozen=True)
class OpenPackage:
    """Open the package storage for writing at ``offset`` (0: empty it first).

    The runtime answers :meth:`FirmwareUpdate.package_opened` with the offset
    the storage really holds (never more than asked), or ``package_failed``.
    """

    offset: int
    uri: str | None


@dataclass(frozen=True)
class StartFetch:
    """Fetch ``uri`` from ``offset``; the representation must still match ``validator``."""

    uri: str
    offset: int
    validator: str | None


@dataclass(frozen=True)
class StopDownload:
    """Abandon the fetch in progress; its later reports are ignored."""


@dataclass(frozen=True)
class FlushCheckpoint:
    """Make the stored bytes up to ``offset`` durable, then report
    :meth:`FirmwareUpdate.checkpoint_flushed` (which saves the offset)."""

    offset: int


@dataclass(frozen=True)
class VerifyPackage:
    """Close the package and check it (size and SHA-256 when known).

    Answer: :meth:`FirmwareUpdate.package_verified` or ``package_failed``
    with INTEGRITY / UNSUPPORTED_PACKAGE / STORAGE.
    """

    size: int | None
    digest: bytes | None


@dataclass(frozen=True)
class ResetPackage:
    """Discard the stored package (partial or complete)."""


@dataclass(frozen=True)
class Install:
    """Run the installer on the stored package; answer with ``install_finished``."""

    may_defer: bool


@dataclass(frozen=True)
class Persist:
    """Store :meth:`FirmwareUpdate.record` crash-safely."""


RuntimeAction = (
    OpenPackage
    | StartFetch
    | StopDownload
    | FlushCheckpoint
    | VerifyPackage
    | ResetPackage
    | Install
    | Persist
)


@dataclass(frozen=True)
class InstallOutcome:
    """What the installer reports.

    ``reboot``: the new firmware runs only after a restart; the outcome is
    persisted and reported (result 1, Manifest Result 18/19, the new
    PkgVersion) by the next start. ``deferred``: the user postponed it
    (result 11; installed automatically after Maximum Defer Period).
    """

    success: bool
    version: str | None = None
    reboot: bool = False
    deferred: bool = False
    detail: str = ""


@dataclass
class _Job:
    origin: Origin
    uri: str | None
    download: DownloadMachine | None = None
    manifest: Manifest | None = None
    received: int = 0  # push: bytes stored so far
    deadline: float | None = None  # push: fails if no block arrives before this
    checkpoint: int = 0  # offset made durable (what a restart resumes from)
    name: str | None = None
    version: str | None = None


_PROTOCOL_IDS = {scheme: index for index, scheme in enumerate(SUPPORTED_SCHEMES)}


class FirmwareUpdate:
    """Sans-IO coordinator of Objects 5 and 10252; see the module docstring."""

    def __init__(
        self,
        settings: FirmwareSettings,
        rng: random.Random,
        *,
        verifier: ManifestVerifier | None = None,
        wall_offset: float = 0.0,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        #: wall-clock seconds minus the runtime clock, for Last State Change Time.
        self.wall_offset = wall_offset
        self._rng = rng
        self.fw: Machine[FirmwareState, Trigger, UpdateResult] = Machine(
            OBJECT5_TRANSITIONS, OBJECT5_REFUSAL, FirmwareState.IDLE, UpdateResult.INITIAL
        )
        self.mf: Machine[ManifestState, ManifestTrigger, ManifestResult] = Machine(
            MANIFEST_TRANSITIONS,
            MANIFEST_REFUSAL,
            ManifestState.UNINITIALISED,
            ManifestResult.UNINITIALISED,
        )
        # Object 5 values the client owns or the server wrote.
        self.uri = ""
        self.pkg_name: str | None = None
        self.pkg_version: str | None = None
        self.last_change: int | None = None
        self.severity = 1
        self.max_defer = 0
        self.auto_update = False
        # Object 10252 values.
        self.payload_result = b""
        self.asset_hash = b""
        self.manifest_version = 0
        self.progress = 0
        self.campaign_id = ""
        self.installed_sequence: int | None = None
        self._job: _Job | None = None
        self._pending: InstallOutcome | None = None  # installed, reported after the reboot
        self._defer_until: float | None = None
        self._actions: list[RuntimeAction] = []
        self._events: list[Event] = []
        self.version = 0  # bumps on every change of a value the objects show

    # ------------------------------------------------------------------ outputs
    def take_actions(self) -> list[RuntimeAction]:
        out, self._actions = self._actions, []
        return out

    def take_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        times: list[float] = []
        job = self._job
        if job is not None:
            if job.download is not None and (t := job.download.next_timer()) is not None:
                times.append(t)
            if job.deadline is not None:
                times.append(job.deadline)
        if self._defer_until is not None:
            times.append(self._defer_until)
        return min(times) if times else None

    @property
    def origin(self) -> Origin | None:
        return self._job.origin if self._job is not None else None

    def object5_values(self) -> dict[int, Any]:
        """/5/0 resource values (optional ones only when known)."""
        values: dict[int, Any] = {
            1: self.uri,
            3: int(self.fw.state),
            5: int(self.fw.result),
            8: {i: _PROTOCOL_IDS[p] for i, p in enumerate(self.settings.protocols)},
            9: 2,  # push and pull
            11: self.severity,
            13: self.max_defer,
            14: self.auto_update,
        }
        if self.pkg_name is not None:
            values[6] = self.pkg_name
        if self.pkg_version is not None:
            values[7] = self.pkg_version
        if self.last_change is not None:
            values[12] = seconds_to_time(self.last_change)
        return values

    def manifest_values(self) -> dict[int, Any]:
        """/10252/0 resource values."""
        return {
            2: int(self.mf.state),
            3: int(self.mf.result),
            4: self.payload_result,
            5: self.asset_hash,
            6: self.manifest_version,
            7: self.progress,
            8: self.campaign_id,
        }

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
        problem = self._uri_problem(uri)
        if problem is not None:
            result, detail = problem
            self._fire(Trigger.URI_REJECTED, now, result, detail)
            raise RefusedInState(detail)
        self.uri = uri
        self._fire(Trigger.URI_WRITTEN, now)
        self._begin_pull(_Job(Origin.PULL, uri), now)

    def push_started(self, now: float) -> None:
        """First block (or the whole value) of a Write to /5/0/0 arrived."""
        self.fw.check(Trigger.PUSH_STARTED)
        self.uri = ""
        self._fire(Trigger.PUSH_STARTED, now)
        self._job = _Job(Origin.PUSH, None, deadline=now + self.settings.push_timeout)
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
        self.uri = ""
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
        self._install(now, may_defer=self.max_defer > 0)

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
        self.payload_result = b""
        self._fire_manifest(ManifestTrigger.MANIFEST_WRITTEN, now)
        try:
            if self.verifier is None:
                raise ManifestError(
                    ManifestResult.MANIFEST_CERTIFICATE_NOT_FOUND, "no manifest keys configured"
                )
            manifest = self.verifier.verify(data, self.installed_sequence)
            problem = self._uri_problem(manifest.uri)
            if problem is not None:
                raise ManifestError(ManifestResult.INVALID_ASSET_URI, problem[1])
        except ManifestError as exc:
            self.payload_result = str(exc).encode()[:255]
            self._fire_manifest(ManifestTrigger.MANIFEST_REJECTED, now, exc.result, str(exc))
            return
        self.manifest_version = manifest.sequence
        self.progress = 0
        self._fire_manifest(ManifestTrigger.MANIFEST_ACCEPTED, now)
        self.uri = manifest.uri
        self._fire(Trigger.URI_WRITTEN, now)
        job = _Job(Origin.MANIFEST, manifest.uri, manifest=manifest)
        job.name, job.version = manifest.name, manifest.version
        self._begin_pull(job, now)

    def set_values(self, now: float, **values: Any) -> None:
        """Server writes of plain settings: severity, max_defer, auto_update, campaign_id."""
        for key, value in values.items():
            if key not in ("severity", "max_defer", "auto_update", "campaign_id"):
                raise KeyError(key)
            setattr(self, key, value)
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
        self.pkg_name = job.name if job.name is not None else name
        self.pkg_version = job.version if job.version is not None else version
        self._fire(Trigger.DOWNLOADED, now)
        if job.origin is Origin.MANIFEST:
            self._fire_manifest(ManifestTrigger.DOWNLOADED, now)
            assert job.manifest is not None
            if job.manifest.manual_trigger:
                self._fire_manifest(ManifestTrigger.AWAIT_TRIGGER, now)
                return
            self._fire_manifest(ManifestTrigger.INSTALL, now)
            self._install(now, may_defer=False)
        elif self.auto_update:
            self._install(now, may_defer=self.max_defer > 0)

    def install_finished(self, outcome: InstallOutcome, now: float) -> None:
        if self.fw.state is not FirmwareState.UPDATING:
            return
        if outcome.deferred and self.max_defer > 0:
            self._defer_until = now + self.max_defer
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

    def _install_failed_or_done(self, outcome: InstallOutcome, now: float) -> None:
        if outcome.success:
            self._succeeded(outcome, now)
            return
        detail = outcome.detail or ("deferral not allowed" if outcome.deferred else "")
        self.payload_result = detail.encode()[:255]
        self._fire(Trigger.UPDATE_FAILED, now, UpdateResult.UPDATE_FAILED, detail or None)
        if self.mf.state is ManifestState.UPDATING:
            self._fire_manifest(
                ManifestTrigger.UPDATE_FAILED, now, ManifestResult.UNSUPPORTED_ASSET_TYPE, detail
            )

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
        job = self._job
        job_record: dict[str, Any] | None = None
        if job is not None:
            download = job.download
            job_record = {
                "origin": job.origin.value,
                "uri": job.uri,
                "name": job.name,
                "version": job.version,
                "offset": job.checkpoint,
                "validator": download.validator if download is not None else None,
                "total": download.total if download is not None else None,
                "resumes": download.resumes if download is not None else 0,
                "manifest": job.manifest.to_json() if job.manifest is not None else None,
            }
        pending = self._pending
        return {
            "v": RECORD_VERSION,
            "state": int(self.fw.state),
            "result": int(self.fw.result),
            "uri": self.uri,
            "pkg_name": self.pkg_name,
            "pkg_version": self.pkg_version,
            "last_change": self.last_change,
            "severity": self.severity,
            "max_defer": self.max_defer,
            "auto_update": self.auto_update,
            "mf_state": int(self.mf.state),
            "mf_result": int(self.mf.result),
            "payload_result": self.payload_result.hex(),
            "asset_hash": self.asset_hash.hex(),
            "manifest_version": self.manifest_version,
            "campaign_id": self.campaign_id,
            "installed_sequence": self.installed_sequence,
            "job": job_record,
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
        self.uri = str(record["uri"])
        self.pkg_name, self.pkg_version = record["pkg_name"], record["pkg_version"]
        self.last_change = record["last_change"]
        self.severity = int(record["severity"])
        self.max_defer = int(record["max_defer"])
        self.auto_update = bool(record["auto_update"])
        self.payload_result = bytes.fromhex(record["payload_result"])
        self.asset_hash = bytes.fromhex(record["asset_hash"])
        self.manifest_version = int(record["manifest_version"])
        self.campaign_id = str(record["campaign_id"])
        self.installed_sequence = record["installed_sequence"]
        self._job = self._restore_job(record["job"])
        pending = record["pending"]
        self._changed()
        state = self.fw.state
        if state is FirmwareState.UPDATING and pending is not None:
            outcome = InstallOutcome(True, pending["version"], detail=pending["detail"])
            self._succeeded(outcome, now)
        elif state is FirmwareState.UPDATING and boot_outcome is not None:
            self._install_failed_or_done(boot_outcome, now)
        elif state is FirmwareState.UPDATING:
            detail = "interrupted while installing"
            self.payload_result = detail.encode()
            self._fire(Trigger.UPDATE_FAILED, now, UpdateResult.UPDATE_FAILED, detail)
            if self.mf.state in (ManifestState.UPDATING, ManifestState.REBOOTING):
                self._fire_manifest(
                    ManifestTrigger.UPDATE_FAILED,
                    now,
                    ManifestResult.UNSUPPORTED_ASSET_TYPE,
                    detail,
                )
        elif state is FirmwareState.DOWNLOADING:
            job = self._job
            if job is None or job.download is None:
                self._end_job(now)
                self._fire(
                    Trigger.DOWNLOAD_FAILED, now, UpdateResult.CONNECTION_LOST, "push interrupted"
                )
                if self.mf.state is ManifestState.DOWNLOADING:
                    self._fire_manifest(
                        ManifestTrigger.DOWNLOAD_FAILED, now, ManifestResult.CONNECTION_LOST
                    )
            else:
                self._actions.append(OpenPackage(job.checkpoint, job.uri))
        if self.mf.state is ManifestState.PROCESSING_MANIFEST:
            self.mf.state = ManifestState.IDLE

    def _restore_job(self, data: dict[str, Any] | None) -> _Job | None:
        if data is None:
            return None
        origin = Origin(data["origin"])
        manifest = None if data["manifest"] is None else Manifest.from_json(data["manifest"])
        job = _Job(origin, data["uri"], manifest=manifest, checkpoint=int(data["offset"]))
        job.name, job.version = data["name"], data["version"]
        if origin is not Origin.PUSH:
            job.download = DownloadMachine(
                self.settings.download,
                self._rng,
                offset=job.checkpoint,
                validator=data["validator"],
                total=data["total"],
                resumes=int(data["resumes"]),
            )
        return job

    # ------------------------------------------------------------------ internals
    def _uri_problem(self, uri: str) -> tuple[UpdateResult, str] | None:
        try:
            parts = urlsplit(uri)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError as exc:
            return UpdateResult.INVALID_URI, f"malformed URI {uri!r}: {exc}"
        scheme = parts.scheme.lower()
        if scheme not in self.settings.protocols:
            return UpdateResult.UNSUPPORTED_PROTOCOL, f"unsupported URI scheme {scheme!r}"
        if not parts.hostname:
            return UpdateResult.INVALID_URI, f"URI {uri!r} has no host"
        return None

    def _begin_pull(self, job: _Job, now: float) -> None:
        job.download = DownloadMachine(self.settings.download, self._rng)
        self._job = job
        self.progress = 0
        self._actions += [ResetPackage(), OpenPackage(0, job.uri)]
        self._persist()

    def _drain_download(self, now: float) -> None:
        job = self._job
        if job is None or job.download is None:
            return
        for action in job.download.take_actions():
            if isinstance(action, Fetch):
                assert job.uri is not None
                self._actions.append(StartFetch(job.uri, action.offset, action.validator))
            elif isinstance(action, StopFetch):
                self._actions.append(StopDownload())
            elif isinstance(action, Restart):
                job.checkpoint = 0
                self._actions += [StopDownload(), ResetPackage(), OpenPackage(0, job.uri)]
                self._persist()
            elif isinstance(action, Checkpoint):
                # The saved offset moves only in checkpoint_flushed(), once the
                # bytes are durable: a restart never trusts bytes a crash lost.
                self._progress(action.offset, job.download.total, now)
                self._actions.append(FlushCheckpoint(action.offset))
            elif isinstance(action, RetryWait):
                self._events.append(
                    FirmwareRetry(
                        now,
                        round(action.delay, 3),
                        action.attempt,
                        action.offset,
                        action.kind.value,
                        action.detail or None,
                    )
                )
            elif isinstance(action, DownloadFinished):
                self._progress(action.offset, job.download.total, now)
                size = job.manifest.size if job.manifest is not None else job.download.total
                digest = job.manifest.digest if job.manifest is not None else None
                self._actions.append(VerifyPackage(size, digest))
            elif isinstance(action, DownloadFailed):
                rule = action.rule
                detail = action.kind.value
                if action.detail:
                    detail += f": {action.detail}"
                self._download_failed(rule.result, rule.manifest_result, detail, now)

    def _progress(self, offset: int, total: int | None, now: float) -> None:
        if offset == self.progress:
            return
        self.progress = offset
        self._events.append(FirmwareProgress(now, offset, total))
        self._changed()

    def _download_failed(
        self, result: UpdateResult, manifest_result: ManifestResult, detail: str, now: float
    ) -> None:
        self._end_job(now)
        self._fire(Trigger.DOWNLOAD_FAILED, now, result, detail)
        if self.mf.state is ManifestState.DOWNLOADING:
            self.payload_result = detail.encode()[:255]
            self._fire_manifest(ManifestTrigger.DOWNLOAD_FAILED, now, manifest_result, detail)
        elif self.mf.state is ManifestState.DOWNLOADED:
            self.payload_result = detail.encode()[:255]
            asset_result = (
                ManifestResult.ASSET_INTEGRITY_FAILED
                if result is UpdateResult.INTEGRITY_FAILURE
                else ManifestResult.UNSUPPORTED_ASSET_TYPE
            )
            self._fire_manifest(ManifestTrigger.ASSET_REJECTED, now, asset_result, detail)

    def _install(self, now: float, *, may_defer: bool) -> None:
        self._fire(Trigger.UPDATE, now)
        self._actions.append(Install(may_defer))

    def _succeeded(self, outcome: InstallOutcome, now: float) -> None:
        job = self._job
        self._pending = None
        if outcome.version is not None:
            self.pkg_version = outcome.version
        recovered = job is not None and job.download is not None and job.download.resumes > 0
        manifest = job.manifest if job is not None else None
        self._job = None
        self._actions.append(ResetPackage())
        self._fire(Trigger.UPDATE_SUCCEEDED, now, detail=outcome.detail or None)
        if self.mf.state in (ManifestState.UPDATING, ManifestState.REBOOTING):
            if manifest is not None:
                self.asset_hash = manifest.digest
                self.installed_sequence = manifest.sequence
            result = ManifestResult.UPDATED_AFTER_RECOVERY if recovered else ManifestResult.UPDATED
            self._fire_manifest(ManifestTrigger.UPDATE_SUCCEEDED, now, result)

    def _end_job(self, now: float) -> None:
        """Stop whatever the slot is doing and discard the package."""
        job, self._job = self._job, None
        self._defer_until = None
        if job is not None and job.download is not None:
            job.download.cancel(now)
            if job.download.take_actions():
                self._actions.append(StopDownload())
        if job is not None:
            self._actions.append(ResetPackage())

    def _reset_manifest(self, now: float) -> None:
        if self.mf.allowed(ManifestTrigger.RESET):
            self._fire_manifest(ManifestTrigger.RESET, now)

    def _fire(
        self,
        trigger: Trigger,
        now: float,
        result: UpdateResult | None = None,
        detail: str | None = None,
    ) -> None:
        old, new = self.fw.fire(trigger, result)
        if old is not new:
            self.last_change = int(now + self.wall_offset)
        code = int(self.fw.result)
        self._events.append(
            FirmwareStateChanged(now, 5, old.name.lower(), new.name.lower(), code, detail)
        )
        self._persist()

    def _fire_manifest(
        self,
        trigger: ManifestTrigger,
        now: float,
        result: ManifestResult | None = None,
        detail: str | None = None,
    ) -> None:
        old, new = self.mf.fire(trigger, result)
        self._events.append(
            FirmwareStateChanged(
                now, 10252, old.name.lower(), new.name.lower(), int(self.mf.result), detail
            )
        )
        self._persist()

    def _persist(self) -> None:
        self._changed()
        if not self._actions or not isinstance(self._actions[-1], Persist):
            self._actions.append(Persist())

    def _changed(self) -> None:
        self.version += 1
