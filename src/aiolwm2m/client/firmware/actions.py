"""What the firmware coordinator asks of the runtime, in order, and what the installer reports.

The runtime carries out each :data:`RuntimeAction` and answers through the
methods of :class:`~aiolwm2m.client.firmware.update.FirmwareUpdate` they name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FlushCheckpoint",
    "Install",
    "InstallOutcome",
    "OpenPackage",
    "Persist",
    "ResetPackage",
    "RuntimeAction",
    "StartFetch",
    "StopDownload",
    "VerifyPackage",
]


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
