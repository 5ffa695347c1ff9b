"""The smallest object tree a client can register with: fixed objects and instances.

Not the client's data model (that is :mod:`aiolwm2m.client.operations`): kept
as a base for test doubles that script their own answers (the testbed's
scenario runner). It answers every server-initiated operation with 4.04 but
lists its objects correctly in Register/Update. The Security object (0) is never listed
(LwM2M Core §6.2.1: it is not exposed to servers).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiolwm2m.client.engine import Notification
from aiolwm2m.coap.message import Code, Message

SECURITY_OBJECT = 0


class BasicObjects:
    def __init__(
        self, instances: Mapping[int, list[int]], versions: Mapping[int, str] | None = None
    ):
        self.instances = {oid: sorted(ids) for oid, ids in instances.items()}
        self.versions = dict(versions or {})

    def registration_payload(self, lwm2m_version: str) -> bytes:
        links = ['</>;rt="oma.lwm2m"']
        for oid in sorted(self.instances):
            if oid == SECURITY_OBJECT:
                continue
            ids = self.instances[oid]
            ver = self.versions.get(oid)
            if ver is not None or not ids:
                links.append(f"</{oid}>" + (f";ver={ver}" if ver else ""))
            links.extend(f"</{oid}/{iid}>" for iid in ids)
        return ",".join(links).encode()

    def handle_request(self, ssid: int, request: Message, now: float) -> Message:
        return Message(code=Code.NOT_FOUND)

    def drop_observations(self, ssid: int) -> None:
        return None

    def cancel_observation(self, ssid: int, token: bytes, reason: str) -> None:
        return None

    def take_notifications(self, now: float) -> list[Notification]:
        return []

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None

