"""Firmware update, sans-IO: Object 5 and Object 10252 state machines, downloads, manifests.

The runtime side (fetchers, package storage, the asyncio glue) is
``aiolwm2m.runtime.firmware``; the objects are ``aiolwm2m.lwm2m.objects.firmware``.
"""

from __future__ import annotations

from .download import (
    DEFAULT_FAILURE_RULES,
    DownloadMachine,
    DownloadPolicy,
    FailureKind,
    FailureRule,
    ResourceChangedPolicy,
    RetrySchedule,
)
from .events import FirmwareProgress, FirmwareRetry, FirmwareStateChanged
from .manifest import Manifest, ManifestError, ManifestVerifier, key_id, sign_manifest
from .settings import SUPPORTED_SCHEMES, FirmwareSettings, parse_firmware_table
from .states import (
    FirmwareState,
    ManifestResult,
    ManifestState,
    NotAllowedInState,
    RefusedInState,
    UpdateResult,
)
from .update import FirmwareUpdate, InstallOutcome, Origin

__all__ = [
    "DEFAULT_FAILURE_RULES",
    "SUPPORTED_SCHEMES",
    "DownloadMachine",
    "DownloadPolicy",
    "FailureKind",
    "FailureRule",
    "FirmwareProgress",
    "FirmwareRetry",
    "FirmwareSettings",
    "FirmwareState",
    "FirmwareStateChanged",
    "FirmwareUpdate",
    "InstallOutcome",
    "Manifest",
    "ManifestError",
    "ManifestResult",
    "ManifestState",
    "ManifestVerifier",
    "NotAllowedInState",
    "Origin",
    "RefusedInState",
    "ResourceChangedPolicy",
    "RetrySchedule",
    "UpdateResult",
    "key_id",
    "parse_firmware_table",
    "sign_manifest",
]
