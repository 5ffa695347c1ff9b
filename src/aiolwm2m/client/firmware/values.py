"""The values Objects 5 and 10252 show, and their part of the persisted record.

:class:`FirmwareValues` holds what the client owns or a server wrote (URI,
package name and version, settings, manifest fields); the coordinator in
``update.py`` changes them, and the objects read them through
:meth:`FirmwareValues.object5` and :meth:`FirmwareValues.manifest`. States
and results live in the coordinator's machines and are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiolwm2m.lwm2m.model import seconds_to_time

from .settings import SUPPORTED_SCHEMES
from .states import FirmwareState, ManifestResult, ManifestState, UpdateResult

__all__ = ["FirmwareValues"]

_PROTOCOL_IDS = {scheme: index for index, scheme in enumerate(SUPPORTED_SCHEMES)}


@dataclass
class FirmwareValues:
    """Object 5 values the client owns or the server wrote, then Object 10252's."""

    uri: str = ""
    pkg_name: str | None = None
    pkg_version: str | None = None
    last_change: int | None = None
    severity: int = 1
    max_defer: int = 0
    auto_update: bool = False
    payload_result: bytes = b""
    asset_hash: bytes = b""
    manifest_version: int = 0
    progress: int = 0
    campaign_id: str = ""
    installed_sequence: int | None = None

    def report(self, detail: str) -> None:
        """Show why the last step failed as Payload Result (/10252/0/4): the first
        255 bytes of ``detail`` (an installer's or a fetch's message may be long)."""
        self.payload_result = detail.encode()[:255]

    def object5(
        self, state: FirmwareState, result: UpdateResult, protocols: tuple[str, ...]
    ) -> dict[int, Any]:
        """/5/0 resource values (optional ones only when known)."""
        values: dict[int, Any] = {
            1: self.uri,
            3: int(state),
            5: int(result),
            8: {i: _PROTOCOL_IDS[p] for i, p in enumerate(protocols)},
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

    def manifest(self, state: ManifestState, result: ManifestResult) -> dict[int, Any]:
        """/10252/0 resource values."""
        return {
            2: int(state),
            3: int(result),
            4: self.payload_result,
            5: self.asset_hash,
            6: self.manifest_version,
            7: self.progress,
            8: self.campaign_id,
        }

    def object5_record(self) -> dict[str, Any]:
        """The Object 5 values of the persisted record, JSON-ready."""
        return {
            "uri": self.uri,
            "pkg_name": self.pkg_name,
            "pkg_version": self.pkg_version,
            "last_change": self.last_change,
            "severity": self.severity,
            "max_defer": self.max_defer,
            "auto_update": self.auto_update,
        }

    def manifest_record(self) -> dict[str, Any]:
        """The Object 10252 values of the persisted record (not Update Progress)."""
        return {
            "payload_result": self.payload_result.hex(),
            "asset_hash": self.asset_hash.hex(),
            "manifest_version": self.manifest_version,
            "campaign_id": self.campaign_id,
            "installed_sequence": self.installed_sequence,
        }

    def load(self, record: dict[str, Any]) -> None:
        """Take the values of a record made by the two methods above."""
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
