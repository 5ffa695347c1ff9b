"""Access Control (/2) and its enforcement (LwM2M 1.1.1 Core §7.3).

With a single server account the spec gives that server full rights and the
object need not exist, so :class:`AccessControl` is only *enabled* when more
than one server is configured. Then every operation on an object instance is
checked against the Access Control instance that targets it:

* no Access Control instance for the target: no rights;
* the server's own ACL entry (resource instance id = its Short Server ID)
  decides if present;
* else the Access Control Owner (resource 3) has every right but Create;
* else the default entry (resource instance 0) applies, if any.

Create is checked on the instance that targets ``object id : 65535``; a
server that creates an instance becomes the owner of a new Access Control
instance for it (no ACL entries: the owner's implicit full rights). Servers
may read Access Control instances; only an instance's owner may change or
delete it. Refusals are answered 4.01 Unauthorized by the operations layer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ..model import Value
from ..path import MAX_ID
from ..tree import Instance, ObjectTree

__all__ = ["ACCESS_CONTROL_OBJECT", "AccessControl", "Right"]

ACCESS_CONTROL_OBJECT = 2
OBJECT_ID = 0
INSTANCE_ID = 1
ACL = 2
OWNER = 3


class Right(enum.IntFlag):
    """ACL bits (the ACL resource description in the Access Control DDF)."""

    NONE = 0
    READ = 1  # Read, Observe, Discover, Write-Attributes
    WRITE = 2
    EXECUTE = 4
    DELETE = 8
    CREATE = 16


OWNER_RIGHTS = Right.READ | Right.WRITE | Right.EXECUTE | Right.DELETE


class AccessControl:
    """Keeps /2 instances in ``tree`` and answers "may server ``ssid`` do this?"."""

    def __init__(self, tree: ObjectTree, *, enabled: bool) -> None:
        self.tree = tree
        self.enabled = enabled
        if enabled:
            tree.add_object(ACCESS_CONTROL_OBJECT)

    def grant(
        self, object_id: int, instance_id: int, owner: int, acl: Mapping[int, int] | None = None
    ) -> None:
        """Create or replace the Access Control instance for ``/object_id/instance_id``.

        ``instance_id`` 65535 targets Create on the object; ``acl`` maps Short
        Server IDs (0: everyone else) to :class:`Right` bits.
        """
        if not self.enabled:
            return
        values: dict[int, Value | dict[int, Value]] = {
            OBJECT_ID: object_id,
            INSTANCE_ID: instance_id,
            ACL: {ssid: int(bits) for ssid, bits in (acl or {}).items()},
            OWNER: owner,
        }
        existing = self._find(object_id, instance_id)
        if existing is not None:
            for rid, value in values.items():
                existing.set(rid, value)
            return
        self.tree.add_instance(ACCESS_CONTROL_OBJECT, None, Instance(values))

    def rights(self, ssid: int, object_id: int, instance_id: int) -> Right:
        """Rights of server ``ssid`` on an instance (``instance_id`` 65535: on Create)."""
        if not self.enabled:
            return OWNER_RIGHTS | Right.CREATE
        if object_id == ACCESS_CONTROL_OBJECT:
            return self._rights_on_access_control(ssid, instance_id)
        inst = self._find(object_id, instance_id)
        if inst is None:
            return Right.NONE
        acl = inst.values.get(ACL)
        entries = acl if isinstance(acl, dict) else {}
        own = entries.get(ssid)
        if isinstance(own, int):
            return Right(own & 0x1F)
        if inst.values.get(OWNER) == ssid:
            return OWNER_RIGHTS
        default = entries.get(0)
        return Right(default & 0x1F) if isinstance(default, int) else Right.NONE

    def allowed(self, ssid: int, object_id: int, instance_id: int, right: Right) -> bool:
        if not self.enabled:  # one server: every right (asked on every read and notification)
            return True
        return right in self.rights(ssid, object_id, instance_id)

    def created(self, ssid: int, object_id: int, instance_id: int) -> None:
        """A server created an instance: it owns the new Access Control instance."""
        if object_id != ACCESS_CONTROL_OBJECT:
            self.grant(object_id, instance_id, ssid)

    def deleted(self, object_id: int, instance_id: int) -> None:
        """An instance is gone: so is the Access Control instance targeting it."""
        if not self.enabled or object_id == ACCESS_CONTROL_OBJECT:
            return
        node = self.tree.node(ACCESS_CONTROL_OBJECT)
        for iid, inst in list(node.instances.items()):
            if inst.values.get(OBJECT_ID) == object_id and inst.values.get(INSTANCE_ID) == (
                instance_id
            ):
                self.tree.remove_instance(ACCESS_CONTROL_OBJECT, iid)

    def _rights_on_access_control(self, ssid: int, instance_id: int) -> Right:
        node = self.tree.objects.get(ACCESS_CONTROL_OBJECT)
        inst = node.instances.get(instance_id) if node is not None else None
        if inst is not None and inst.values.get(OWNER) == ssid:
            return OWNER_RIGHTS
        return Right.READ

    def _find(self, object_id: int, instance_id: int) -> Instance | None:
        node = self.tree.objects.get(ACCESS_CONTROL_OBJECT)
        if node is None:
            return None
        for inst in node.instances.values():
            if inst.values.get(OBJECT_ID) == object_id and inst.values.get(INSTANCE_ID) == (
                instance_id
            ):
                return inst
        return None


#: Instance id that makes an Access Control instance govern Create on its object.
CREATE_TARGET = MAX_ID
