"""Discover and Write-Attributes: what a server learns of the tree and the attributes
it stores on it (Core §5.4.2, §5.4.4, §7.3).

Attributes are kept per server in the :class:`Model`; :meth:`Discovery.attributes`
gives the observer the effective ones (the server's /1 default periods
filled in). Internal to :mod:`aiolwm2m.client.operations`.
"""

from __future__ import annotations

from aiolwm2m.client.observe import Observer
from aiolwm2m.client.operations._answers import Reply, Result, discard
from aiolwm2m.client.operations._model import Model
from aiolwm2m.coap.message import Code, Message, OptionNumber, encode_uint
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.attributes import (
    Attributes,
    effective_attributes,
    inherited_attributes,
    parse_query,
    write_attributes,
)
from aiolwm2m.lwm2m.formats import ContentFormat
from aiolwm2m.lwm2m.objects import Right
from aiolwm2m.lwm2m.path import Path, PathLevel
from aiolwm2m.lwm2m.tree import Instance, is_awaitable

__all__ = ["Discovery"]


class Discovery:
    """Answers Discover and Write-Attributes; tells the observer when attributes change."""

    __slots__ = ("_model", "_observer")

    def __init__(self, model: Model, observer: Observer) -> None:
        self._model = model
        self._observer = observer

    def attributes(self, ssid: int, path: Path) -> Attributes:
        pmin, pmax = self._model.default_periods(ssid)
        stored = self._model.stored_attributes(ssid)
        return effective_attributes(path, stored, default_pmin=pmin, default_pmax=pmax)

    def discover(self, ssid: int, path: Path) -> Result:
        if path.is_root:
            raise Reply(Code.METHOD_NOT_ALLOWED, "Discover of the root path")
        model = self._model
        model.tree.check_exists(path)
        assert path.object_id is not None
        stored = model.stored_attributes(ssid)
        node = model.tree.node(path.object_id)
        entries: list[tuple[Path, dict[str, object]]] = []

        def attrs(p: Path, **extra: object) -> dict[str, object]:
            # The link of the resource (instance) a Discover targets shows what it
            # inherits too; every other link only what is attached to it.
            found = (
                inherited_attributes(p, stored)
                if p == path and p.level >= PathLevel.RESOURCE
                else stored.get(p)
            )
            return {**extra, **(found.as_dict() if found else {})}

        if path.is_object:
            version = node.definition.version
            entries.append((path, attrs(path, ver=version if version != "1.0" else None)))
            instance_ids = model.visible_instances(ssid, path.object_id)
        else:
            model.require(ssid, path, Right.READ)  # Discover needs the Read right (Core §7.3)
            instance_ids = [path.instance_id] if path.instance_id is not None else []
        for iid in instance_ids:
            ipath = Path.of(path.object_id, iid)
            inst = node.instances[iid]
            if path.level <= PathLevel.INSTANCE:
                entries.append((ipath, attrs(ipath)))
                rids = sorted(r for r in inst.resource_ids() if node.definition.resource(r))
            else:
                assert path.resource_id is not None
                rids = [path.resource_id]
            for rid in rids:
                rpath = ipath.child(rid)
                if path.is_resource_instance:
                    entries.append((path, attrs(path)))
                    continue
                riids = self._instance_ids(inst, rpath)
                entries.append((rpath, attrs(rpath, dim=len(riids) if riids is not None else None)))
                if path.level is PathLevel.RESOURCE and riids:
                    entries.extend((rpath.child(r), attrs(rpath.child(r))) for r in riids)
        payload = linkformat.encode(linkformat.discover_links(entries))
        msg = Message(code=Code.CONTENT, payload=payload)
        msg.add(OptionNumber.CONTENT_FORMAT, encode_uint(ContentFormat.LINK_FORMAT))
        return msg

    def _instance_ids(self, inst: Instance, rpath: Path) -> list[int] | None:
        """Resource instance ids of a multiple resource (None for single ones)."""
        if not self._model.tree.resource_def(rpath).multiple:
            return None
        assert rpath.resource_id is not None
        value: object = inst.values.get(rpath.resource_id)
        try:
            read = inst.read(rpath.resource_id)  # hooks and host-backed values too
        except Exception:
            return None
        if is_awaitable(read):
            discard(read)
        else:
            value = read
        return sorted(value) if isinstance(value, dict) else []

    def write_attributes(self, ssid: int, request: Message, path: Path, now: float) -> Result:
        if path.is_root:
            raise Reply(Code.METHOD_NOT_ALLOWED, "attributes cannot be written on the root")
        model = self._model
        model.tree.check_exists(path)
        model.require(ssid, path, Right.READ)
        resource = model.tree.resource_def(path) if path.level >= PathLevel.RESOURCE else None
        if resource is not None and not resource.operations.readable:
            # Every notification attribute applies to readable resources only (Core
            # §5.1.2, Table 5.1.2-2): an Execute resource cannot be observed, so
            # attributes on it would be stored, and shown by Discover, for nothing.
            raise Reply(Code.METHOD_NOT_ALLOWED, f"{path} is not readable: no attributes")
        update = parse_query(request.uri_query)
        stored = model.stored_attributes(ssid)
        rtype = model.tree.type_of(path) if path.level >= PathLevel.RESOURCE else None
        result = write_attributes(stored.get(path, Attributes()), update, path, rtype)
        if result:
            stored[path] = result
        else:
            stored.pop(path, None)
        self._observer.attributes_changed(ssid, now)
        return Message(code=Code.CHANGED)
