"""Create and Delete of object instances (Core §5.4.6, §5.4.7).

Access Control follows: a creating server owns the new instance, a deleted
instance's access entries and every server's attributes on it go too.
Internal to :mod:`aiolwm2m.client.operations`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from aiolwm2m.client.operations._answers import HookFailed, Reply, Result, call, maybe_later
from aiolwm2m.client.operations._model import Model
from aiolwm2m.client.operations._writing import Writer, require_mandatory
from aiolwm2m.coap.message import Code, Message, OptionNumber
from aiolwm2m.lwm2m.formats import ContentFormat, ContentFormatError
from aiolwm2m.lwm2m.model import ResourceType
from aiolwm2m.lwm2m.objects import Right
from aiolwm2m.lwm2m.objects.access_control import CREATE_TARGET
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.tree import Instance, ResourceValue
from aiolwm2m.lwm2m.values import Record, empty_resources

__all__ = ["Instances"]


class Instances:
    """Makes and removes instances on a server's request; writes through a :class:`Writer`."""

    __slots__ = ("_model", "_writer")

    def __init__(self, model: Model, writer: Writer) -> None:
        self._model = model
        self._writer = writer

    def create(self, ssid: int, request: Message, path: Path) -> Result:
        """Create one instance, or several when the payload names several (LwM2M 1.1).

        All-or-nothing: every instance id and value is checked before any
        instance is made. One new instance is answered with its Location-Path;
        several have none (the server chose their ids).
        """
        assert path.object_id is not None
        model = self._model
        node = model.tree.node(path.object_id)
        if node.factory is None:
            raise Reply(Code.METHOD_NOT_ALLOWED, f"object {path.object_id} takes no Create")
        if not model.access.allowed(ssid, path.object_id, CREATE_TARGET, Right.CREATE):
            raise Reply(Code.UNAUTHORIZED, f"server {ssid} may not create in {path}")
        records = self._decode_create(request, path, node.free_instance_id())
        empty = empty_resources(records)
        by_instance: dict[int, list[Record]] = {}
        for rpath in empty:
            assert rpath.instance_id is not None
            by_instance.setdefault(rpath.instance_id, [])
        for record in records:
            assert record.path.instance_id is not None
            by_instance.setdefault(record.path.instance_id, []).append(record)
        if not by_instance:
            by_instance[node.free_instance_id()] = []
        if len(by_instance) > 1 and not node.definition.multiple:
            raise Reply(Code.BAD_REQUEST, f"object {path.object_id} is single-instance")
        planned: list[tuple[int, list[tuple[Path, ResourceValue]]]] = []
        for iid, found in sorted(by_instance.items()):
            if iid in node.instances:
                raise Reply(Code.BAD_REQUEST, f"{path.child(iid)} already exists")
            checked = self._create_values(found, [p for p in empty if p.instance_id == iid])
            require_mandatory(node.definition, path.child(iid), checked, "Create")
            planned.append((iid, checked))
        pending: list[Awaitable[Any]] = []
        factory = node.factory
        for iid, checked in planned:
            inst = call(factory, iid)
            if not isinstance(inst, Instance):
                raise HookFailed(f"factory of object {path.object_id} returned {inst!r}")
            model.tree.add_instance(path.object_id, iid, inst)
            model.access.created(ssid, path.object_id, iid)
            result = self._writer.apply_writes(checked, Code.CREATED)
            if not isinstance(result, Message):
                pending.extend(result.awaitables)
        created = Message(code=Code.CREATED)
        if len(planned) == 1:
            for segment in path.child(planned[0][0]).segments():
                created.add(OptionNumber.LOCATION_PATH, segment.encode())
        return maybe_later([(Path(), a) for a in pending], lambda _: created)

    def _create_values(
        self, records: Sequence[Record], empty: Sequence[Path]
    ) -> list[tuple[Path, ResourceValue]]:
        """Validated ``(resource path, value)`` of one instance to create; the multiple
        resources in ``empty`` were sent with no instance and start with none."""
        tree = self._model.tree
        values: dict[Path, dict[int, object] | object] = {}
        for rpath in empty:
            if not tree.resource_def(rpath).multiple:
                raise Reply(Code.BAD_REQUEST, f"{rpath} is single-instance")
            values[rpath] = {}
        for record in records:
            rpath = Path.of(*record.path.ids[:3])
            rdef = tree.resource_def(rpath)
            if rdef.type is ResourceType.NONE:
                raise Reply(Code.BAD_REQUEST, f"{rpath} is executable")
            if record.path.resource_instance_id is not None:
                slot = values.setdefault(rpath, {})
                assert isinstance(slot, dict)
                slot[record.path.resource_instance_id] = record.value
            else:
                values[rpath] = record.value
        return [(rpath, tree.validate(rpath, raw)) for rpath, raw in values.items()]

    def _decode_create(self, request: Message, path: Path, new_id: int) -> list[Record]:
        try:
            return self._writer.decode_payload(request, path)
        except ContentFormatError:
            # LwM2M 1.0 style: resources without an instance wrapper.
            if request.content_format not in (ContentFormat.TLV, ContentFormat.LEGACY_TLV):
                raise
            return self._writer.decode_payload(request, path.child(new_id))

    def delete(self, ssid: int, path: Path) -> Result:
        if not path.is_instance:
            raise Reply(Code.METHOD_NOT_ALLOWED, f"Delete is not allowed on {path}")
        assert path.object_id is not None and path.instance_id is not None
        model = self._model
        node = model.tree.node(path.object_id)
        model.tree.instance(path.object_id, path.instance_id)
        if not node.deletable:
            raise Reply(Code.METHOD_NOT_ALLOWED, f"instances of {path.object_id} cannot be deleted")
        model.require(ssid, path, Right.DELETE)
        model.tree.remove_instance(path.object_id, path.instance_id)
        model.access.deleted(path.object_id, path.instance_id)
        model.forget_attributes(path)
        model.tree.mark_changed(path)
        return Message(code=Code.DELETED)
