"""The sans-IO firmware coordinator (Objects 5 and 10252) on a virtual clock.

A tiny fake runtime carries out the coordinator's actions the way the real
one does (open → package_opened, verify → package_verified) so every
transition and result code is driven through the public API.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from aiolwm2m.client.firmware import (
    DownloadPolicy,
    FailureKind,
    FirmwareSettings,
    FirmwareState,
    FirmwareUpdate,
    InstallOutcome,
    Manifest,
    ManifestResult,
    ManifestState,
    ManifestVerifier,
    NotAllowedInState,
    RefusedInState,
    RetrySchedule,
    UpdateResult,
    sign_manifest,
)
from aiolwm2m.client.firmware.events import FirmwareProgress, FirmwareRetry, FirmwareStateChanged
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

URI = "coap://images.example:5683/fw.bin"
VENDOR = uuid.UUID("11111111-2222-3333-4444-555555555555")
CLASS = uuid.UUID("66666666-7777-8888-9999-000000000000")
KEY = ec.generate_private_key(ec.SECP256R1())
IMAGE = bytes(range(256)) * 40  # 10 240 bytes


class Harness:
    """The coordinator plus a fake runtime that answers open/verify itself."""

    def __init__(self, fw: FirmwareUpdate | None = None, **settings: Any) -> None:
        schedule = RetrySchedule(jitter=0.0, max_retries=3, first_delay=1.0)
        policy = DownloadPolicy(schedule=schedule, checkpoint_bytes=4096)
        base: dict[str, Any] = {"download": policy}
        base.update(settings)
        verifier = ManifestVerifier.from_public_keys(
            [KEY.public_key()], vendor_id=VENDOR, class_id=CLASS
        )
        self.fw = fw or FirmwareUpdate(
            FirmwareSettings(**base), random.Random(5), verifier=verifier, wall_offset=1.7e9
        )
        self.now = 0.0
        self.actions: list[Any] = []
        self.events: list[Any] = []
        self.verify_fails: FailureKind | None = None
        self.flush_stalls = False  # a FlushCheckpoint that never completes (killed meanwhile)
        self.fw.start(self.now)
        self.pump()

    def pump(self) -> None:
        while True:
            actions = self.fw.take_actions()
            self.events += self.fw.take_events()
            if not actions:
                return
            for action in actions:
                self.actions.append(action)
                if isinstance(action, OpenPackage):
                    self.fw.package_opened(action.offset, self.now)
                elif isinstance(action, FlushCheckpoint) and not self.flush_stalls:
                    self.fw.checkpoint_flushed(action.offset, self.now)
                elif isinstance(action, VerifyPackage):
                    if self.verify_fails is not None:
                        self.fw.package_failed(self.verify_fails, self.now, "check")
                    else:
                        self.fw.package_verified(self.now, version="from-image")

    def take(self, kind: type) -> list[Any]:
        out = [a for a in self.actions if isinstance(a, kind)]
        self.actions = [a for a in self.actions if not isinstance(a, kind)]
        return out

    def call(self, method: str, *args: Any, **kwargs: Any) -> None:
        getattr(self.fw, method)(*args, self.now, **kwargs)
        self.pump()

    def at(self, t: float) -> None:
        self.now = t
        self.fw.handle_timer(t)
        self.pump()

    @property
    def state(self) -> tuple[FirmwareState, UpdateResult]:
        return self.fw.fw.state, self.fw.fw.result

    @property
    def manifest(self) -> tuple[ManifestState, ManifestResult]:
        return self.fw.mf.state, self.fw.mf.result

    def download(self, size: int = len(IMAGE), *, etag: str = "e1") -> None:
        """Serve the whole image to the fetch in progress."""
        (fetch,) = self.take(StartFetch)
        self.call("fetch_progress", size, validator=etag, total=size)
        self.call("fetch_complete")
        assert fetch.offset == 0

    def states(self, object_id: int = 5) -> list[str]:
        return [
            e.new
            for e in self.events
            if isinstance(e, FirmwareStateChanged) and e.object_id == object_id
        ]


def manifest_bytes(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "sequence": 3,
        "vendor_id": VENDOR,
        "class_id": CLASS,
        "uri": URI,
        "size": len(IMAGE),
        "digest": hashlib.sha256(IMAGE).digest(),
        "version": "2.0.1",
        "name": "gateway-fw",
    }
    fields.update(changes)
    return sign_manifest(Manifest(**fields), KEY)


# -- Object 5 pull ---------------------------------------------------------------------


def test_pull_download_verify_update_success() -> None:
    h = Harness()
    h.call("write_uri", URI)
    assert h.state == (FirmwareState.DOWNLOADING, UpdateResult.INITIAL)
    assert h.fw.object5_values()[1] == URI
    (fetch,) = h.take(StartFetch)
    assert fetch == StartFetch(URI, 0, None)
    h.call("fetch_progress", 5000, validator="e1", total=len(IMAGE))
    assert h.take(FlushCheckpoint) == [FlushCheckpoint(5000)]
    h.call("fetch_progress", len(IMAGE))
    h.call("fetch_complete")
    assert h.take(VerifyPackage) == [VerifyPackage(len(IMAGE), None)]
    assert h.state == (FirmwareState.DOWNLOADED, UpdateResult.INITIAL)
    assert h.fw.object5_values()[7] == "from-image"
    h.call("execute_update")
    assert h.state == (FirmwareState.UPDATING, UpdateResult.INITIAL)
    assert h.take(Install) == [Install(may_defer=False)]
    h.call("install_finished", InstallOutcome(True, version="2.0"))
    assert h.state == (FirmwareState.IDLE, UpdateResult.SUCCESS)
    assert h.fw.object5_values()[7] == "2.0"
    assert h.states() == ["downloading", "downloaded", "updating", "idle"]
    progress = [e for e in h.events if isinstance(e, FirmwareProgress)]
    assert [(p.bytes, p.total) for p in progress] == [(5000, 10240), (10240, 10240)]
    assert h.fw.object5_values()[12].timestamp() == pytest.approx(1.7e9, abs=1)
    assert h.take(ResetPackage)  # the installed image is discarded


def test_unsupported_scheme_is_4_00_with_result_9_and_stays_idle() -> None:
    h = Harness()
    with pytest.raises(RefusedInState, match="unsupported URI scheme"):
        h.call("write_uri", "ftp://example.org/fw.bin")
    assert h.state == (FirmwareState.IDLE, UpdateResult.UNSUPPORTED_PROTOCOL)
    with pytest.raises(RefusedInState, match="no host"):
        h.call("write_uri", "coap:///fw.bin")
    assert h.state == (FirmwareState.IDLE, UpdateResult.INVALID_URI)
    h2 = Harness(protocols=("coap",))
    with pytest.raises(RefusedInState):
        h2.call("write_uri", "https://example.org/fw.bin")
    assert h2.state == (FirmwareState.IDLE, UpdateResult.UNSUPPORTED_PROTOCOL)


def test_a_second_uri_while_downloading_is_4_00_and_changes_nothing() -> None:
    h = Harness()
    h.call("write_uri", URI)
    with pytest.raises(RefusedInState):
        h.call("write_uri", "coap://other/fw")
    assert h.state == (FirmwareState.DOWNLOADING, UpdateResult.INITIAL)
    assert h.fw.values.uri == URI


def test_empty_uri_cancels_the_download_and_resets() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    h.call("write_uri", "")
    assert h.state == (FirmwareState.IDLE, UpdateResult.INITIAL)
    assert h.take(StopDownload) and h.take(ResetPackage)
    assert h.fw.next_timer() is None


@pytest.mark.parametrize("downloaded", [False, True])
def test_cancel_gives_result_10(downloaded: bool) -> None:
    h = Harness()
    h.call("write_uri", URI)
    if downloaded:
        h.download()
    h.call("cancel")
    assert h.state == (FirmwareState.IDLE, UpdateResult.CANCELLED)


def test_cancel_and_update_refused_where_the_spec_says() -> None:
    h = Harness()
    with pytest.raises(NotAllowedInState):
        h.call("cancel")
    with pytest.raises(NotAllowedInState):
        h.call("execute_update")
    h.call("write_uri", URI)
    with pytest.raises(NotAllowedInState):
        h.call("execute_update")
    h.download()
    h.call("execute_update")
    for method, args in (("cancel", ()), ("write_uri", ("",)), ("write_uri", (URI,))):
        with pytest.raises(NotAllowedInState):
            h.call(method, *args)
    with pytest.raises(NotAllowedInState):
        h.call("push_started")
    assert h.state == (FirmwareState.UPDATING, UpdateResult.INITIAL)


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        (FailureKind.DNS, UpdateResult.INVALID_URI),
        (FailureKind.NOT_FOUND, UpdateResult.INVALID_URI),
        (FailureKind.REFUSED, UpdateResult.CONNECTION_LOST),
        (FailureKind.SECURE, UpdateResult.CONNECTION_LOST),
        (FailureKind.TIMEOUT, UpdateResult.CONNECTION_LOST),
        (FailureKind.NETWORK, UpdateResult.CONNECTION_LOST),
    ],
)
def test_fetch_failures_end_with_anjays_result(kind: FailureKind, result: UpdateResult) -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    for attempt in range(10):
        h.call("fetch_failed", kind, detail="boom")
        if h.state[0] is FirmwareState.IDLE:
            break
        retry = [e for e in h.events if isinstance(e, FirmwareRetry)][-1]
        assert retry.attempt == attempt + 1 and retry.reason == kind.value
        h.at(h.now + retry.delay)
        assert h.take(StartFetch) == [StartFetch(URI, 0, None)]
    assert h.state == (FirmwareState.IDLE, result)
    assert h.take(ResetPackage)


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        (FailureKind.STORAGE, UpdateResult.NOT_ENOUGH_STORAGE),
        (FailureKind.OUT_OF_MEMORY, UpdateResult.OUT_OF_MEMORY),
        (FailureKind.INTEGRITY, UpdateResult.INTEGRITY_FAILURE),
        (FailureKind.UNSUPPORTED_PACKAGE, UpdateResult.UNSUPPORTED_PACKAGE_TYPE),
    ],
)
def test_package_failures_end_with_their_result(kind: FailureKind, result: UpdateResult) -> None:
    h = Harness()
    h.verify_fails = kind
    h.call("write_uri", URI)
    h.download()
    assert h.state == (FirmwareState.IDLE, result)


def test_storage_failure_mid_download_stops_the_fetch() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    h.call("package_failed", FailureKind.STORAGE, detail="quota")
    assert h.state == (FirmwareState.IDLE, UpdateResult.NOT_ENOUGH_STORAGE)
    assert h.take(StopDownload)


def test_retry_resumes_from_the_checkpoint_offset_with_the_validator() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    h.call("fetch_progress", 6144, validator="etag-1", total=len(IMAGE))
    h.call("fetch_failed", FailureKind.TIMEOUT)
    (retry,) = [e for e in h.events if isinstance(e, FirmwareRetry)]
    assert (retry.delay, retry.offset) == (1.0, 6144)
    h.at(0.5)
    assert h.take(StartFetch) == []
    h.at(1.0)
    assert h.take(StartFetch) == [StartFetch(URI, 6144, "etag-1")]


def test_changed_resource_restarts_from_zero_or_fails_with_4() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    h.call("fetch_progress", 6144, validator="etag-1")
    h.actions.clear()
    h.call("fetch_failed", FailureKind.RESOURCE_CHANGED, detail="ETag differs")
    assert [type(a) for a in h.actions if not isinstance(a, Persist)] == [
        StopDownload,
        ResetPackage,
        OpenPackage,
        StartFetch,
    ]
    assert h.take(StartFetch) == [StartFetch(URI, 0, None)]
    from aiolwm2m.client.firmware import ResourceChangedPolicy

    failing = Harness(download=DownloadPolicy(on_resource_changed=ResourceChangedPolicy.FAIL))
    failing.call("write_uri", URI)
    failing.call("fetch_failed", FailureKind.RESOURCE_CHANGED, detail="ETag differs")
    assert failing.state == (FirmwareState.IDLE, UpdateResult.CONNECTION_LOST)


def test_install_failure_keeps_the_image_with_result_8() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.download()
    h.call("execute_update")
    h.call("install_finished", InstallOutcome(False, detail="exit status 3"))
    assert h.state == (FirmwareState.DOWNLOADED, UpdateResult.UPDATE_FAILED)
    h.call("execute_update")  # the server may try again
    assert h.state == (FirmwareState.UPDATING, UpdateResult.INITIAL)


def test_deferred_update_result_11_then_automatic_after_max_defer() -> None:
    h = Harness()
    h.fw.set_values(0.0, max_defer=60)
    h.call("write_uri", URI)
    h.download()
    h.call("execute_update")
    assert h.take(Install) == [Install(may_defer=True)]
    h.call("install_finished", InstallOutcome(False, deferred=True, detail="user said later"))
    assert h.state == (FirmwareState.DOWNLOADED, UpdateResult.DEFERRED)
    assert h.fw.next_timer() == 60.0
    h.at(60.0)
    assert h.state == (FirmwareState.UPDATING, UpdateResult.INITIAL)
    assert h.take(Install) == [Install(may_defer=False)]


def test_deferral_without_a_defer_period_is_a_failure() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.download()
    h.call("execute_update")
    h.call("install_finished", InstallOutcome(False, deferred=True))
    assert h.state == (FirmwareState.DOWNLOADED, UpdateResult.UPDATE_FAILED)


def test_automatic_upgrade_at_download() -> None:
    h = Harness()
    h.fw.set_values(0.0, auto_update=True)
    h.call("write_uri", URI)
    h.download()
    assert h.state == (FirmwareState.UPDATING, UpdateResult.INITIAL)


# -- push ------------------------------------------------------------------------------


def test_push_block_by_block_then_downloaded() -> None:
    h = Harness()
    h.call("push_started")
    assert h.state == (FirmwareState.DOWNLOADING, UpdateResult.INITIAL)
    assert h.take(OpenPackage) == [OpenPackage(0, None)]
    h.call("push_stored", 1024, last=False)
    h.call("push_continues", 1024)
    with pytest.raises(RefusedInState, match="push block at 4096"):
        h.call("push_continues", 4096)
    h.call("push_stored", 1500, last=True)
    assert h.take(VerifyPackage) == [VerifyPackage(None, None)]
    assert h.state == (FirmwareState.DOWNLOADED, UpdateResult.INITIAL)
    with pytest.raises(RefusedInState):
        h.call("push_started")  # only the one-byte reset is accepted now
    h.call("reset")
    assert h.state == (FirmwareState.IDLE, UpdateResult.INITIAL)


def test_a_push_that_stops_fails_with_result_4_after_push_timeout() -> None:
    h = Harness(push_timeout=30.0)
    h.call("push_started")
    h.call("push_stored", 1024, last=False)
    h.at(20.0)
    h.call("push_continues", 1024)  # a block re-arms the timeout
    h.at(49.0)
    assert h.state[0] is FirmwareState.DOWNLOADING
    h.at(50.0)
    assert h.state == (FirmwareState.IDLE, UpdateResult.CONNECTION_LOST)


# -- offline / pause ----------------------------------------------------------------


def test_pause_and_resume_continue_from_the_last_good_byte() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    h.call("fetch_progress", 2048, validator="e")
    h.call("pause")
    assert h.take(StopDownload)
    h.at(5000.0)
    assert h.take(StartFetch) == []
    h.call("resume")
    assert h.take(StartFetch) == [StartFetch(URI, 2048, "e")]


# -- persistence ----------------------------------------------------------------------


def restored(record: dict[str, Any], **settings: Any) -> Harness:
    h = Harness.__new__(Harness)
    schedule = RetrySchedule(jitter=0.0, max_retries=3, first_delay=1.0)
    policy = DownloadPolicy(schedule=schedule, checkpoint_bytes=4096)
    base: dict[str, Any] = {"download": policy}
    base.update(settings)
    verifier = ManifestVerifier.from_public_keys(
        [KEY.public_key()], vendor_id=VENDOR, class_id=CLASS
    )
    fw = FirmwareUpdate(FirmwareSettings(**base), random.Random(9), verifier=verifier)
    fw.restore(json.loads(json.dumps(record)), 100.0)
    h.__init__(fw)  # type: ignore[misc]
    return h


def test_restart_resumes_a_pull_from_the_checkpoint() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    h.call("fetch_progress", 4096, validator="etag-1", total=len(IMAGE))
    h.call("fetch_progress", 6000)  # not yet checkpointed: fetched again after a crash
    again = restored(h.fw.record())
    assert again.state == (FirmwareState.DOWNLOADING, UpdateResult.INITIAL)
    assert again.take(OpenPackage) == [OpenPackage(4096, URI)]
    assert again.take(StartFetch) == [StartFetch(URI, 4096, "etag-1")]


def test_the_saved_offset_never_exceeds_the_flushed_bytes() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    h.call("fetch_progress", 4096, validator="etag-1", total=len(IMAGE))
    assert h.fw.record()["job"]["offset"] == 4096
    h.flush_stalls = True  # the next checkpoint's fsync has not returned when the power goes
    h.call("fetch_progress", 8192)
    assert h.take(FlushCheckpoint)[-1] == FlushCheckpoint(8192)
    assert h.fw.record()["job"]["offset"] == 4096
    again = restored(h.fw.record())
    assert again.take(StartFetch) == [StartFetch(URI, 4096, "etag-1")]


def test_a_flush_report_from_before_a_restart_of_the_download_is_ignored() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.take(StartFetch)
    h.flush_stalls = True
    h.call("fetch_progress", 4096, validator="etag-1", total=len(IMAGE))
    h.call("fetch_failed", FailureKind.RESOURCE_CHANGED)  # restarts from 0
    h.call("checkpoint_flushed", 4096)  # the old flush completes late
    assert h.fw.record()["job"]["offset"] == 0


def test_restart_during_a_push_fails_it_with_result_4() -> None:
    h = Harness()
    h.call("push_started")
    again = restored(h.fw.record())
    assert again.state == (FirmwareState.IDLE, UpdateResult.CONNECTION_LOST)


def test_reboot_after_install_reports_success_and_version_on_the_next_start() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.download()
    h.call("execute_update")
    h.call("install_finished", InstallOutcome(True, version="3.1", reboot=True))
    assert h.state == (FirmwareState.UPDATING, UpdateResult.INITIAL)
    again = restored(h.fw.record())
    assert again.state == (FirmwareState.IDLE, UpdateResult.SUCCESS)
    assert again.fw.object5_values()[7] == "3.1"


def test_install_interrupted_without_outcome_reports_8() -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.download()
    h.call("execute_update")
    again = restored(h.fw.record())
    assert again.state == (FirmwareState.DOWNLOADED, UpdateResult.UPDATE_FAILED)


# -- manifests (Object 10252) ----------------------------------------------------------


def test_manifest_update_ends_with_18_and_moves_object_5_too() -> None:
    h = Harness()
    assert h.manifest == (ManifestState.IDLE, ManifestResult.UNINITIALISED)
    h.call("write_manifest", manifest_bytes())
    assert h.manifest == (ManifestState.DOWNLOADING, ManifestResult.UNINITIALISED)
    assert h.state == (FirmwareState.DOWNLOADING, UpdateResult.INITIAL)
    assert h.fw.manifest_values()[6] == 3
    h.download()
    assert h.take(VerifyPackage) == [VerifyPackage(len(IMAGE), hashlib.sha256(IMAGE).digest())]
    assert h.manifest[0] is ManifestState.UPDATING
    h.call("install_finished", InstallOutcome(True))
    assert h.manifest == (ManifestState.IDLE, ManifestResult.UPDATED)
    assert h.state == (FirmwareState.IDLE, UpdateResult.SUCCESS)
    values = h.fw.object5_values()
    assert (values[6], values[7]) == ("gateway-fw", "2.0.1")
    assert h.fw.manifest_values()[5] == hashlib.sha256(IMAGE).digest()
    assert h.states(10252) == [
        "idle",
        "processing_manifest",
        "downloading",
        "downloaded",
        "updating",
        "idle",
    ]


def test_manifest_update_after_a_resume_ends_with_19() -> None:
    h = Harness()
    h.call("write_manifest", manifest_bytes())
    h.take(StartFetch)
    h.call("fetch_progress", 4096, validator="e", total=len(IMAGE))
    h.call("fetch_failed", FailureKind.NETWORK)
    h.at(1.0)
    assert h.take(StartFetch) == [StartFetch(URI, 4096, "e")]
    h.call("fetch_progress", len(IMAGE))
    h.call("fetch_complete")
    h.call("install_finished", InstallOutcome(True))
    assert h.manifest == (ManifestState.IDLE, ManifestResult.UPDATED_AFTER_RECOVERY)


OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("data", "result"),
    [
        (b"\xa1\x01", ManifestResult.MANIFEST_INTEGRITY_FAILED),
        (b"not cbor at all \xff", ManifestResult.MANIFEST_INTEGRITY_FAILED),
        (
            sign_manifest(Manifest(3, VENDOR, CLASS, URI, 1, b"x" * 32, "1"), OTHER_KEY),
            ManifestResult.MANIFEST_CERTIFICATE_NOT_FOUND,
        ),
        (manifest_bytes()[:-1] + b"\x00", ManifestResult.MANIFEST_SIGNATURE_FAILED),
        (manifest_bytes(vendor_id=uuid.uuid4()), ManifestResult.MANIFEST_REJECTED),
        (manifest_bytes(class_id=uuid.uuid4()), ManifestResult.MANIFEST_REJECTED),
        (manifest_bytes(uri="ftp://x/y"), ManifestResult.INVALID_ASSET_URI),
    ],
)
def test_refused_manifests_report_their_result(data: bytes, result: ManifestResult) -> None:
    h = Harness()
    h.call("write_manifest", data)  # the Write itself succeeds
    assert h.manifest == (ManifestState.IDLE, result)
    assert h.state == (FirmwareState.IDLE, UpdateResult.INITIAL)
    assert h.fw.manifest_values()[4]  # Payload Result says why


def test_manifest_rollback_is_rejected() -> None:
    h = Harness()
    h.call("write_manifest", manifest_bytes(sequence=5))
    h.download()
    h.call("install_finished", InstallOutcome(True))
    h.call("write_manifest", manifest_bytes(sequence=5))
    assert h.manifest == (ManifestState.IDLE, ManifestResult.MANIFEST_REJECTED)


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        (FailureKind.TIMEOUT, ManifestResult.DOWNLOAD_TIMED_OUT),
        (FailureKind.NETWORK, ManifestResult.CONNECTION_LOST),
        (FailureKind.NOT_FOUND, ManifestResult.INVALID_ASSET_URI),
        (FailureKind.DNS, ManifestResult.INVALID_ASSET_URI),
    ],
)
def test_manifest_download_failures(kind: FailureKind, result: ManifestResult) -> None:
    h = Harness()
    h.call("write_manifest", manifest_bytes())
    h.take(StartFetch)
    for _ in range(10):
        h.call("fetch_failed", kind)
        if h.manifest[0] is ManifestState.IDLE:
            break
        h.at(h.fw.next_timer() or h.now)
    assert h.manifest == (ManifestState.IDLE, result)
    assert h.state[0] is FirmwareState.IDLE


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        (FailureKind.INTEGRITY, ManifestResult.ASSET_INTEGRITY_FAILED),
        (FailureKind.STORAGE, ManifestResult.NOT_ENOUGH_STORAGE),
        (FailureKind.OUT_OF_MEMORY, ManifestResult.OUT_OF_MEMORY),
    ],
)
def test_manifest_package_failures(kind: FailureKind, result: ManifestResult) -> None:
    h = Harness()
    h.verify_fails = kind
    h.call("write_manifest", manifest_bytes())
    h.download()
    assert h.manifest == (ManifestState.IDLE, result)


def test_manifest_install_failure_is_13_with_the_installer_output() -> None:
    h = Harness()
    h.call("write_manifest", manifest_bytes())
    h.download()
    h.call("install_finished", InstallOutcome(False, detail="flash write failed"))
    assert h.manifest == (ManifestState.IDLE, ManifestResult.UNSUPPORTED_ASSET_TYPE)
    assert h.fw.manifest_values()[4] == b"flash write failed"


def test_manual_trigger_waits_in_state_6() -> None:
    h = Harness()
    h.call("write_manifest", manifest_bytes(manual_trigger=True))
    h.download()
    assert h.manifest[0] is ManifestState.AWAITING_APPLICATION_APPROVAL
    assert h.state[0] is FirmwareState.DOWNLOADED
    assert h.take(Install) == []
    h.call("manual_trigger")
    assert h.manifest[0] is ManifestState.UPDATING
    assert h.take(Install) == [Install(may_defer=False)]
    with pytest.raises(NotAllowedInState):
        h.call("manual_trigger")


def test_manifest_reboot_then_next_start_reports_19() -> None:
    h = Harness()
    h.call("write_manifest", manifest_bytes())
    h.take(StartFetch)
    h.call("fetch_progress", 4096, validator="e", total=len(IMAGE))
    h.call("fetch_failed", FailureKind.TIMEOUT)
    h.at(1.0)
    h.call("fetch_progress", len(IMAGE))
    h.call("fetch_complete")
    h.call("install_finished", InstallOutcome(True, reboot=True))
    assert h.manifest[0] is ManifestState.REBOOTING
    again = restored(h.fw.record())
    assert again.manifest == (ManifestState.IDLE, ManifestResult.UPDATED_AFTER_RECOVERY)
    assert again.state == (FirmwareState.IDLE, UpdateResult.SUCCESS)


def test_manifest_refused_while_object_5_is_busy_and_without_keys() -> None:
    h = Harness()
    h.call("write_uri", URI)
    with pytest.raises(NotAllowedInState):
        h.call("write_manifest", manifest_bytes())
    keyless = FirmwareUpdate(FirmwareSettings(), random.Random(1))
    keyless.start(0.0)
    keyless.write_manifest(manifest_bytes(), 0.0)
    assert keyless.mf.result is ManifestResult.MANIFEST_CERTIFICATE_NOT_FOUND


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (InstallOutcome(True, version="4.0"), (FirmwareState.IDLE, UpdateResult.SUCCESS)),
        (
            InstallOutcome(False, detail="bad"),
            (FirmwareState.DOWNLOADED, UpdateResult.UPDATE_FAILED),
        ),
    ],
)
def test_an_installer_that_restarted_the_device_settles_it_by_its_verdict(
    outcome: InstallOutcome, expected: tuple[FirmwareState, UpdateResult]
) -> None:
    h = Harness()
    h.call("write_uri", URI)
    h.download()
    h.call("execute_update")
    fw = FirmwareUpdate(h.fw.settings, random.Random(1), wall_offset=1.7e9)
    fw.restore(json.loads(json.dumps(h.fw.record())), 100.0, outcome)
    again = Harness(fw)
    assert again.state == expected
    if outcome.success:
        assert again.fw.object5_values()[7] == "4.0"
