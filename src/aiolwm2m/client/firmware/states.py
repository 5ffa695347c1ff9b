"""The Firmware Update (/5) and Manifest (/10252) state machines as transition tables.

Each machine is data, in the manner of h11's ``_state.py``: a table maps
``(state, trigger)`` to the next state and to the result code the transition
sets. Nothing else moves a machine, so what a diagram shows (``docs/firmware.md``
is drawn from these tables by ``scripts/draw_firmware_states.py``) is what runs.

A trigger that has no entry for the current state is refused and changes
nothing: triggers that come from a server operation raise the LwM2M error the
specification names for it (:data:`OBJECT5_REFUSAL`), so the operations layer
answers 4.05 Method Not Allowed or 4.00 Bad Request; internal triggers that do
not fit are a bug of ours and raise :class:`LocalStateError`.

Sources: Object 5 v1.2 in the OMA registry (``oma-registry/5.xml``: State 0–3,
Update Result 0–11, Cancel's 4.05 "if the device is in the process of
installing the firmware or has already completed installation"), LwM2M Core
1.1.1 E.6 (Execute Update only in Downloaded) and, where the texts are silent,
what Anjay 3.x answers: a non-empty Package URI written outside Idle is 4.00, a
Package written while Downloading/Downloaded must be the one-byte reset
(anything else 4.00), anything written while Updating is 4.05. The Manifest
object's State 0–8 and Manifest Result 0–19 are ``oma-registry/10252.xml``
verbatim.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, TypeVar

from aiolwm2m.lwm2m.model import InvalidValueError
from aiolwm2m.lwm2m.tree import OperationNotAllowedError

__all__ = [
    "MANIFEST_REFUSAL",
    "MANIFEST_TRANSITIONS",
    "OBJECT5_REFUSAL",
    "OBJECT5_TRANSITIONS",
    "FirmwareState",
    "LocalStateError",
    "Machine",
    "ManifestResult",
    "ManifestState",
    "ManifestTrigger",
    "NotAllowedInState",
    "RefusedInState",
    "Transition",
    "Trigger",
    "UpdateResult",
]


class FirmwareState(enum.IntEnum):
    """/5/0/3 State."""

    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class UpdateResult(enum.IntEnum):
    """/5/0/5 Update Result (10 and 11 are LwM2M 1.1 additions)."""

    INITIAL = 0
    SUCCESS = 1
    NOT_ENOUGH_STORAGE = 2
    OUT_OF_MEMORY = 3
    CONNECTION_LOST = 4
    INTEGRITY_FAILURE = 5
    UNSUPPORTED_PACKAGE_TYPE = 6
    INVALID_URI = 7
    UPDATE_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9
    CANCELLED = 10
    DEFERRED = 11


class ManifestState(enum.IntEnum):
    """/10252/0/2 State, numbered as the registry's enumeration."""

    UNINITIALISED = 0
    IDLE = 1
    PROCESSING_MANIFEST = 2
    AWAITING_DOWNLOAD_APPROVAL = 3
    DOWNLOADING = 4
    DOWNLOADED = 5
    AWAITING_APPLICATION_APPROVAL = 6
    UPDATING = 7
    REBOOTING = 8


class ManifestResult(enum.IntEnum):
    """/10252/0/3 Manifest Result, numbered as the registry's enumeration."""

    UNINITIALISED = 0
    SUCCESS = 1
    MANIFEST_TIMEOUT = 2
    MANIFEST_NOT_FOUND = 3
    MANIFEST_INTEGRITY_FAILED = 4
    MANIFEST_REJECTED = 5
    MANIFEST_CERTIFICATE_NOT_FOUND = 6
    MANIFEST_SIGNATURE_FAILED = 7
    DEPENDENT_MANIFEST_NOT_FOUND = 8
    NOT_ENOUGH_STORAGE = 9
    OUT_OF_MEMORY = 10
    CONNECTION_LOST = 11
    ASSET_INTEGRITY_FAILED = 12
    UNSUPPORTED_ASSET_TYPE = 13
    INVALID_ASSET_URI = 14
    DOWNLOAD_TIMED_OUT = 15
    UNSUPPORTED_DELTA_FORMAT = 16
    UNSUPPORTED_ENCRYPTION_FORMAT = 17
    UPDATED = 18
    UPDATED_AFTER_RECOVERY = 19


class LocalStateError(RuntimeError):
    """An internal trigger arrived in a state that cannot take it (a bug, not a peer error)."""


class NotAllowedInState(OperationNotAllowedError):
    """A server operation the current state forbids: answered 4.05 Method Not Allowed."""


class RefusedInState(InvalidValueError):
    """A server write the current state refuses as a bad request: answered 4.00."""


class Trigger(enum.Enum):
    """What can move the Firmware Update object's machine."""

    # from a server operation
    PUSH_STARTED = "push_started"  # first block of a Write to /5/0/0
    URI_WRITTEN = "uri_written"  # a non-empty Package URI
    URI_REJECTED = "uri_rejected"  # a Package URI we cannot fetch: result 9 or 7, state kept
    RESET = "reset"  # empty Package URI, or a Package of one NUL byte / empty
    UPDATE = "update"  # Execute /5/0/2
    CANCEL = "cancel"  # Execute /5/0/10
    # from the client itself
    DOWNLOADED = "downloaded"  # package complete and stored (push or pull)
    DOWNLOAD_FAILED = "download_failed"
    DEFERRED = "deferred"  # the application postponed the installation
    UPDATE_SUCCEEDED = "update_succeeded"
    UPDATE_FAILED = "update_failed"  # the image is kept: Update may be executed again
    UPDATE_ABORTED = "update_aborted"  # the image is unusable (integrity, type) or lost


class ManifestTrigger(enum.Enum):
    """What can move the Manifest object's machine."""

    START = "start"  # the client came up
    MANIFEST_WRITTEN = "manifest_written"  # Write /10252/0/1 (server)
    MANIFEST_REJECTED = "manifest_rejected"
    MANIFEST_ACCEPTED = "manifest_accepted"
    DOWNLOAD_FAILED = "download_failed"
    DOWNLOADED = "downloaded"
    ASSET_REJECTED = "asset_rejected"
    AWAIT_TRIGGER = "await_trigger"  # the manifest asks for Manual Trigger
    INSTALL = "install"
    MANUAL_TRIGGER = "manual_trigger"  # Execute /10252/0/9 (server)
    REBOOT = "reboot"  # the installer restarts the device to finish
    UPDATE_SUCCEEDED = "update_succeeded"
    UPDATE_FAILED = "update_failed"
    RESET = "reset"  # an empty manifest written, or Object 5 reset / cancelled the update


S = TypeVar("S", bound=enum.IntEnum)
T = TypeVar("T", bound=enum.Enum)
R = TypeVar("R", bound=enum.IntEnum)


@dataclass(frozen=True)
class Transition(Generic[S, R]):
    """Where a trigger leads and which result codes it may set.

    ``results`` lists the codes the transition may leave in the result
    resource; the first one is the default when the caller gives none. An
    empty tuple keeps the current result.
    """

    target: S
    results: tuple[R, ...] = ()


_F, _U = FirmwareState, UpdateResult
_RESULTS_ON_DOWNLOAD_FAILURE = (
    _U.CONNECTION_LOST,
    _U.NOT_ENOUGH_STORAGE,
    _U.OUT_OF_MEMORY,
    _U.INTEGRITY_FAILURE,
    _U.UNSUPPORTED_PACKAGE_TYPE,
    _U.INVALID_URI,
    _U.UNSUPPORTED_PROTOCOL,
)

#: Object 5: ``(state, trigger) -> Transition``.
OBJECT5_TRANSITIONS: Mapping[tuple[FirmwareState, Trigger], Transition[FirmwareState, UpdateResult]]
OBJECT5_TRANSITIONS = MappingProxyType(
    {
        (_F.IDLE, Trigger.PUSH_STARTED): Transition(_F.DOWNLOADING, (_U.INITIAL,)),
        (_F.IDLE, Trigger.URI_WRITTEN): Transition(_F.DOWNLOADING, (_U.INITIAL,)),
        (_F.IDLE, Trigger.URI_REJECTED): Transition(
            _F.IDLE, (_U.UNSUPPORTED_PROTOCOL, _U.INVALID_URI)
        ),
        (_F.IDLE, Trigger.RESET): Transition(_F.IDLE, (_U.INITIAL,)),
        (_F.DOWNLOADING, Trigger.RESET): Transition(_F.IDLE, (_U.INITIAL,)),
        (_F.DOWNLOADED, Trigger.RESET): Transition(_F.IDLE, (_U.INITIAL,)),
        (_F.DOWNLOADING, Trigger.CANCEL): Transition(_F.IDLE, (_U.CANCELLED,)),
        (_F.DOWNLOADED, Trigger.CANCEL): Transition(_F.IDLE, (_U.CANCELLED,)),
        (_F.DOWNLOADING, Trigger.DOWNLOADED): Transition(_F.DOWNLOADED, (_U.INITIAL,)),
        (_F.DOWNLOADING, Trigger.DOWNLOAD_FAILED): Transition(
            _F.IDLE, _RESULTS_ON_DOWNLOAD_FAILURE
        ),
        (_F.DOWNLOADED, Trigger.UPDATE): Transition(_F.UPDATING, (_U.INITIAL,)),
        (_F.DOWNLOADED, Trigger.DEFERRED): Transition(_F.DOWNLOADED, (_U.DEFERRED,)),
        (_F.UPDATING, Trigger.DEFERRED): Transition(_F.DOWNLOADED, (_U.DEFERRED,)),
        (_F.UPDATING, Trigger.UPDATE_SUCCEEDED): Transition(_F.IDLE, (_U.SUCCESS,)),
        (_F.UPDATING, Trigger.UPDATE_FAILED): Transition(
            _F.DOWNLOADED, (_U.UPDATE_FAILED, _U.NOT_ENOUGH_STORAGE, _U.OUT_OF_MEMORY)
        ),
        (_F.UPDATING, Trigger.UPDATE_ABORTED): Transition(
            _F.IDLE, (_U.UPDATE_FAILED, _U.INTEGRITY_FAILURE, _U.UNSUPPORTED_PACKAGE_TYPE)
        ),
    }
)

#: The error a server operation gets when its trigger does not fit the state:
#: ``(state, trigger)`` first, then ``(None, trigger)`` for every other state.
OBJECT5_REFUSAL: Mapping[tuple[FirmwareState | None, Trigger], type[Exception]]
OBJECT5_REFUSAL = MappingProxyType(
    {
        (_F.UPDATING, Trigger.PUSH_STARTED): NotAllowedInState,
        (_F.UPDATING, Trigger.URI_WRITTEN): NotAllowedInState,
        (None, Trigger.PUSH_STARTED): RefusedInState,
        (None, Trigger.URI_WRITTEN): RefusedInState,
        (None, Trigger.RESET): NotAllowedInState,
        (None, Trigger.UPDATE): NotAllowedInState,
        (None, Trigger.CANCEL): NotAllowedInState,
    }
)

_M, _MR, _MT = ManifestState, ManifestResult, ManifestTrigger
_MANIFEST_REJECTIONS = (
    _MR.MANIFEST_INTEGRITY_FAILED,
    _MR.MANIFEST_REJECTED,
    _MR.MANIFEST_CERTIFICATE_NOT_FOUND,
    _MR.MANIFEST_SIGNATURE_FAILED,
    _MR.DEPENDENT_MANIFEST_NOT_FOUND,
    _MR.UNSUPPORTED_ASSET_TYPE,
    _MR.INVALID_ASSET_URI,
    _MR.UNSUPPORTED_DELTA_FORMAT,
    _MR.UNSUPPORTED_ENCRYPTION_FORMAT,
)
_DOWNLOAD_FAILURES = (
    _MR.CONNECTION_LOST,
    _MR.DOWNLOAD_TIMED_OUT,
    _MR.NOT_ENOUGH_STORAGE,
    _MR.OUT_OF_MEMORY,
    _MR.INVALID_ASSET_URI,
    _MR.ASSET_INTEGRITY_FAILED,
)
_DONE = (_MR.UPDATED, _MR.UPDATED_AFTER_RECOVERY)
# Installation failures have no code of their own in the registry's 0–19: the
# installer refusing the asset is reported as 13 "unsupported asset type" and
# its output goes to Payload Result (/10252/0/4); see docs/firmware.md.
_INSTALL_FAILURES = (_MR.UNSUPPORTED_ASSET_TYPE, _MR.ASSET_INTEGRITY_FAILED)

#: Object 10252: ``(state, trigger) -> Transition``.
MANIFEST_TRANSITIONS: Mapping[
    tuple[ManifestState, ManifestTrigger], Transition[ManifestState, ManifestResult]
]
MANIFEST_TRANSITIONS = MappingProxyType(
    {
        (_M.UNINITIALISED, _MT.START): Transition(_M.IDLE),
        (_M.IDLE, _MT.MANIFEST_WRITTEN): Transition(_M.PROCESSING_MANIFEST, (_MR.UNINITIALISED,)),
        (_M.PROCESSING_MANIFEST, _MT.MANIFEST_REJECTED): Transition(_M.IDLE, _MANIFEST_REJECTIONS),
        (_M.PROCESSING_MANIFEST, _MT.MANIFEST_ACCEPTED): Transition(_M.DOWNLOADING),
        (_M.DOWNLOADING, _MT.DOWNLOAD_FAILED): Transition(_M.IDLE, _DOWNLOAD_FAILURES),
        (_M.DOWNLOADING, _MT.DOWNLOADED): Transition(_M.DOWNLOADED),
        (_M.DOWNLOADING, _MT.RESET): Transition(_M.IDLE, (_MR.UNINITIALISED,)),
        (_M.DOWNLOADED, _MT.ASSET_REJECTED): Transition(
            _M.IDLE, (_MR.ASSET_INTEGRITY_FAILED, _MR.UNSUPPORTED_ASSET_TYPE)
        ),
        (_M.DOWNLOADED, _MT.AWAIT_TRIGGER): Transition(_M.AWAITING_APPLICATION_APPROVAL),
        (_M.DOWNLOADED, _MT.INSTALL): Transition(_M.UPDATING),
        (_M.AWAITING_APPLICATION_APPROVAL, _MT.MANUAL_TRIGGER): Transition(_M.UPDATING),
        (_M.AWAITING_APPLICATION_APPROVAL, _MT.RESET): Transition(_M.IDLE, (_MR.UNINITIALISED,)),
        (_M.UPDATING, _MT.AWAIT_TRIGGER): Transition(_M.AWAITING_APPLICATION_APPROVAL),
        (_M.UPDATING, _MT.REBOOT): Transition(_M.REBOOTING),
        (_M.UPDATING, _MT.UPDATE_SUCCEEDED): Transition(_M.IDLE, _DONE),
        (_M.UPDATING, _MT.UPDATE_FAILED): Transition(_M.IDLE, _INSTALL_FAILURES),
        (_M.REBOOTING, _MT.UPDATE_SUCCEEDED): Transition(_M.IDLE, _DONE),
        (_M.REBOOTING, _MT.UPDATE_FAILED): Transition(_M.IDLE, _INSTALL_FAILURES),
    }
)

#: Server operations on /10252 that a state cannot take.
MANIFEST_REFUSAL: Mapping[tuple[ManifestState | None, ManifestTrigger], type[Exception]]
MANIFEST_REFUSAL = MappingProxyType(
    {
        (None, ManifestTrigger.MANIFEST_WRITTEN): NotAllowedInState,
        (None, ManifestTrigger.MANUAL_TRIGGER): NotAllowedInState,
        (None, ManifestTrigger.RESET): NotAllowedInState,
    }
)


class Machine(Generic[S, T, R]):
    """A state and a result moved only through ``table``; see the module docstring."""

    def __init__(
        self,
        table: Mapping[tuple[S, T], Transition[S, R]],
        refusal: Mapping[tuple[S | None, T], type[Exception]],
        state: S,
        result: R,
    ) -> None:
        self.table = table
        self.refusal = refusal
        self.state = state
        self.result = result

    def allowed(self, trigger: T) -> bool:
        return (self.state, trigger) in self.table

    def check(self, trigger: T) -> Transition[S, R]:
        """The transition ``trigger`` would take, or the refusal for it (nothing moves)."""
        transition = self.table.get((self.state, trigger))
        if transition is not None:
            return transition
        what = f"{trigger.value} is not allowed in state {self.state.name.lower()}"
        error = self.refusal.get((self.state, trigger)) or self.refusal.get((None, trigger))
        if error is None:
            raise LocalStateError(what)
        raise error(what)

    def fire(self, trigger: T, result: R | None = None) -> tuple[S, S]:
        """Take the transition; returns ``(old, new)`` state. ``result`` must be one it allows."""
        transition = self.check(trigger)
        if result is None:
            if transition.results:
                self.result = transition.results[0]
        elif result in transition.results:
            self.result = result
        else:
            raise LocalStateError(
                f"{trigger.value} from {self.state.name.lower()} cannot set result {result!r}"
            )
        old, self.state = self.state, transition.target
        return old, self.state
