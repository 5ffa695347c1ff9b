"""The object tree as every operation sees it: Access Control and the servers' attributes.

Each operation module works on one :class:`Model` instead of reaching into
the handler, so the checks a server's request passes (hidden objects, the
rights of Access Control) are written once. Internal to
:mod:`aiolwm2m.client.operations`.
"""

from __future__ import annotations

from aiolwm2m.client.operations._answers import Reply
from aiolwm2m.coap.message import Code
from aiolwm2m.lwm2m.attributes import Attributes
from aiolwm2m.lwm2m.objects import AccessControl, Right
from aiolwm2m.lwm2m.objects.server import DEFAULT_PMAX, DEFAULT_PMIN, SERVER_OBJECT
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.tree import ObjectTree

__all__ = ["HIDDEN_OBJECTS", "Model"]

#: Objects never exposed to LwM2M servers (Security, OSCORE): answered 4.04.
HIDDEN_OBJECTS = frozenset({0, 21})


class Model:
    """The tree, its Access Control, and the attributes each server wrote (by ssid)."""

    __slots__ = ("_attributes", "access", "tree")

    def __init__(self, tree: ObjectTree, access: AccessControl) -> None:
        self.tree = tree
        self.access = access
        self._attributes: dict[int, dict[Path, Attributes]] = {}

    def require(self, ssid: int, path: Path, right: Right) -> None:
        """Answer 4.01 unless server ``ssid`` holds ``right`` on the instance of ``path``."""
        access = self.access
        if not access.enabled:  # one server, every right: asked for every notification
            return
        ids = path.ids
        if len(ids) < 2:
            return
        if not access.allowed(ssid, ids[0], ids[1], right):
            raise Reply(Code.UNAUTHORIZED, f"server {ssid} lacks {right.name} on {path}")

    def visible_instances(self, ssid: int, object_id: int) -> list[int]:
        node = self.tree.node(object_id)
        return [
            iid
            for iid in sorted(node.instances)
            if self.access.allowed(ssid, object_id, iid, Right.READ)
        ]

    def stored_attributes(self, ssid: int) -> dict[Path, Attributes]:
        """The attributes server ``ssid`` wrote (Write-Attributes), by path; kept per server."""
        stored = self._attributes.get(ssid)
        if stored is None:
            stored = self._attributes[ssid] = {}
        return stored

    def forget_attributes(self, below: Path) -> None:
        """A deleted instance takes every server's attributes on it and below with it."""
        for stored in self._attributes.values():
            for path in [p for p in stored if below.contains(p)]:
                del stored[path]

    def server_value(self, ssid: int, resource_id: int) -> object:
        """A resource of the server's /1 instance (None if absent)."""
        node = self.tree.objects.get(SERVER_OBJECT)
        for inst in node.instances.values() if node is not None else ():
            if inst.values.get(0) == ssid:
                return inst.values.get(resource_id)
        return None

    def default_periods(self, ssid: int) -> tuple[int | None, int | None]:
        """Default Minimum/Maximum Period from the server's /1 instance."""
        pmin = self.server_value(ssid, DEFAULT_PMIN)
        pmax = self.server_value(ssid, DEFAULT_PMAX)
        return (
            pmin if isinstance(pmin, int) else None,
            pmax if isinstance(pmax, int) and pmax > 0 else None,
        )
