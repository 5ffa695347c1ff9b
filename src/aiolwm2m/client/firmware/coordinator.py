"""The machinery under :class:`~aiolwm2m.client.firmware.update.FirmwareUpdate`.

:class:`Coordinator` holds the state of Objects 5 and 10252 (their two
machines, the values they show, the package slot's job) and what both the
server operations and the runtime reports build on: a transition with its
event and persistence, starting and ending a job, the download's actions
turned into runtime actions, an installation and its outcome, and the
settling of a restored record. ``update.py`` adds the public operations.
"""

from __future__ import annotations

import random
from typing import Any

from aiolwm2m.client.events import Event

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
from .download import (
    Checkpoint,
    DownloadFailed,
    DownloadFinished,
    DownloadMachine,
    Fetch,
    Restart,
    RetryWait,
    StopFetch,
)
from .events import FirmwareProgress, FirmwareRetry, FirmwareStateChanged
from .manifest import ManifestVerifier
from .settings import FirmwareSettings
from .slot import Job, Origin
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
    Trigger,
    UpdateResult,
)
from .values import FirmwareValues

__all__ = ["Coordinator"]


class Coordinator:
    """State and shared steps of the firmware coordinator; see the module docstring."""

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
        #: What Objects 5 and 10252 show besides the machines' states and results.
        self.values = FirmwareValues()
        self._job: Job | None = None
        self._pending: InstallOutcome | None = None  # installed, reported after the reboot
        self._defer_until: float | None = None
        self._actions: list[RuntimeAction] = []
        self._events: list[Event] = []
        self.version = 0  # bumps on every change of a value the objects show

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

    def _install_failed_or_done(self, outcome: InstallOutcome, now: float) -> None:
        if outcome.success:
            self._succeeded(outcome, now)
            return
        detail = outcome.detail or ("deferral not allowed" if outcome.deferred else "")
        self.values.report(detail)
        self._fire(Trigger.UPDATE_FAILED, now, UpdateResult.UPDATE_FAILED, detail or None)
        if self.mf.state is ManifestState.UPDATING:
            self._fire_manifest(
                ManifestTrigger.UPDATE_FAILED, now, ManifestResult.UNSUPPORTED_ASSET_TYPE, detail
            )

    def _settle_install(
        self, pending: dict[str, Any] | None, boot_outcome: InstallOutcome | None, now: float
    ) -> None:
        """Restored while installing: report the outcome the record or the installer
        left, or an installation interrupted without one (result 8)."""
        if pending is not None:
            outcome = InstallOutcome(True, pending["version"], detail=pending["detail"])
            self._succeeded(outcome, now)
        elif boot_outcome is not None:
            self._install_failed_or_done(boot_outcome, now)
        else:
            detail = "interrupted while installing"
            self.values.report(detail)
            self._fire(Trigger.UPDATE_FAILED, now, UpdateResult.UPDATE_FAILED, detail)
            if self.mf.state in (ManifestState.UPDATING, ManifestState.REBOOTING):
                self._fire_manifest(
                    ManifestTrigger.UPDATE_FAILED,
                    now,
                    ManifestResult.UNSUPPORTED_ASSET_TYPE,
                    detail,
                )

    def _settle_download(self, now: float) -> None:
        """Restored while downloading: a pull resumes from its checkpoint, a push
        cannot (result 4: the server must push again)."""
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

    def _begin_pull(self, job: Job, now: float) -> None:
        job.download = DownloadMachine(self.settings.download, self._rng)
        self._job = job
        self.values.progress = 0
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
        if offset == self.values.progress:
            return
        self.values.progress = offset
        self._events.append(FirmwareProgress(now, offset, total))
        self._changed()

    def _download_failed(
        self, result: UpdateResult, manifest_result: ManifestResult, detail: str, now: float
    ) -> None:
        self._end_job(now)
        self._fire(Trigger.DOWNLOAD_FAILED, now, result, detail)
        if self.mf.state is ManifestState.DOWNLOADING:
            self.values.report(detail)
            self._fire_manifest(ManifestTrigger.DOWNLOAD_FAILED, now, manifest_result, detail)
        elif self.mf.state is ManifestState.DOWNLOADED:
            self.values.report(detail)
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
            self.values.pkg_version = outcome.version
        recovered = job is not None and job.download is not None and job.download.resumes > 0
        manifest = job.manifest if job is not None else None
        self._job = None
        self._actions.append(ResetPackage())
        self._fire(Trigger.UPDATE_SUCCEEDED, now, detail=outcome.detail or None)
        if self.mf.state in (ManifestState.UPDATING, ManifestState.REBOOTING):
            if manifest is not None:
                self.values.asset_hash = manifest.digest
                self.values.installed_sequence = manifest.sequence
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
            self.values.last_change = int(now + self.wall_offset)
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
