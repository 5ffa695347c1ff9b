"""Write (replace, partial update), Write-Composite and Execute (Core §5.4.3, §5.4.5).

Writes are all-or-nothing: every record is decoded and validated, and each
instance's own rules are checked, before any value is written. Internal to
:mod:`aiolwm2m.client.operations`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from aiolwm2m.client.operations._answers import Reply, Result, call, maybe_later
from aiolwm2m.client.operations._model import Model
from aiolwm2m.client.operations._reading import COMPOSITE_FORMATS
from aiolwm2m.coap.message import Code, Message
from aiolwm2m.lwm2m.formats import VALUE_FORMATS, decode
from aiolwm2m.lwm2m.model import ObjectDef, ResourceDef
from aiolwm2m.lwm2m.objects import Right
from aiolwm2m.lwm2m.path import Path, PathLevel
from aiolwm2m.lwm2m.tree import (
    NotFoundError,
    ResourceValue,
    is_awaitable,
    parse_execute_arguments,
)
from aiolwm2m.lwm2m.values import Record, empty_resources

__all__ = ["Writer", "require_mandatory"]


class Writer:
    """Changes resource values on a server's request; also what Create writes with."""

    __slots__ = ("_model",)

    def __init__(self, model: Model) -> None:
        self._model = model

    def write(self, ssid: int, request: Message, path: Path, *, replace: bool) -> Result:
        if path.level < PathLevel.INSTANCE or (not replace and path.is_resource_instance):
            raise Reply(Code.METHOD_NOT_ALLOWED, f"Write is not allowed on {path}")
        assert path.object_id is not None and path.instance_id is not None
        tree = self._model.tree
        tree.instance(path.object_id, path.instance_id)
        if path.resource_id is not None:
            tree.resource_def(path)
        self._model.require(ssid, path, Right.WRITE)
        records = self.decode_payload(request, path)
        empty = empty_resources(records)
        if not records and not empty:
            raise Reply(Code.BAD_REQUEST, "Write without values")
        merge = not replace or path.is_resource_instance
        changes = self._prepare_writes(ssid, records, merge=merge, empty=empty)
        if replace and path.is_instance:
            definition = tree.node(path.object_id).definition
            require_mandatory(definition, path, changes, "Write replace")
            self._clear_unwritten(path, {rpath.resource_id for rpath, _ in changes})
        return self.apply_writes(changes, Code.CHANGED)

    def write_composite(self, ssid: int, request: Message, path: Path) -> Result:
        if not path.is_root:
            raise Reply(Code.METHOD_NOT_ALLOWED, "iPATCH is only defined on the root path")
        cf = request.content_format
        if cf not in COMPOSITE_FORMATS:
            raise Reply(Code.UNSUPPORTED_CONTENT_FORMAT, f"Write-Composite in format {cf}")
        records = decode(cf, request.payload, Path(), self._model.tree.type_of)
        if not records:
            raise Reply(Code.BAD_REQUEST, "Write-Composite without values")
        changes = self._prepare_writes(ssid, records, merge=True)
        return self.apply_writes(changes, Code.CHANGED)

    def _clear_unwritten(self, path: Path, written: set[int | None]) -> None:
        """Replace of an instance: writable resources not in the payload go away.

        The Write replaces the instance with what the server sent (Core 1.1.1
        §6.3.3, Write operation). Only optional ones can be missing here: a
        replace without a mandatory writable resource was refused
        (:func:`require_mandatory`), and read-only resources belong to the client.
        """
        assert path.object_id is not None and path.instance_id is not None
        tree = self._model.tree
        inst = tree.instance(path.object_id, path.instance_id)
        definition = tree.node(path.object_id).definition
        for rid in sorted(set(inst.resource_ids()) - written):
            rdef = definition.resource(rid)
            if rdef is None or not rdef.operations.writable:
                continue
            call(inst.remove, rid)
            tree.mark_changed(path.child(rid))

    def decode_payload(self, request: Message, path: Path) -> list[Record]:
        """The records of a Write or Create body, each at or below ``path``."""
        cf = request.content_format
        if cf is None:
            raise Reply(Code.BAD_REQUEST, "Content-Format option missing")
        if cf not in VALUE_FORMATS:
            raise Reply(Code.UNSUPPORTED_CONTENT_FORMAT, f"content format {cf} carries no values")
        records = decode(cf, request.payload, path, self._model.tree.type_of)
        for record in records:
            if not path.contains(record.path):
                raise Reply(Code.BAD_REQUEST, f"{record.path} is not below {path}")
        return records

    def _prepare_writes(
        self,
        ssid: int,
        records: Iterable[Record],
        *,
        merge: bool,
        empty: Iterable[Path] = (),
    ) -> list[tuple[Path, ResourceValue]]:
        """Validate every record first (all-or-nothing): ``[(resource path, new value)]``.

        Multiple resources are replaced by the written instances unless
        ``merge`` (partial update, composite, resource-instance writes); those
        in ``empty``, sent with no instance, are replaced by none (a merge adds
        none and keeps them as they are).
        """
        tree = self._model.tree
        out: list[tuple[Path, ResourceValue]] = []
        by_instance: dict[tuple[int, int], dict[int, ResourceValue]] = {}
        for rpath, raw in self._grouped(ssid, records, empty).items():
            value = tree.validate(rpath, raw)
            assert rpath.object_id is not None and rpath.instance_id is not None
            assert rpath.resource_id is not None
            if merge and isinstance(value, dict):
                current = tree.instance(rpath.object_id, rpath.instance_id).values.get(
                    rpath.resource_id
                )
                if isinstance(current, dict):
                    value = {**current, **value}
            out.append((rpath, value))
            by_instance.setdefault((rpath.object_id, rpath.instance_id), {})[rpath.resource_id] = (
                value
            )
        for (oid, iid), values in by_instance.items():
            call(tree.instance(oid, iid).check, values)  # the instance's own rules
        return out

    def _grouped(
        self, ssid: int, records: Iterable[Record], empty: Iterable[Path]
    ) -> dict[Path, dict[int, object] | object]:
        """The written raw values by resource path (resource instances gathered in a dict,
        empty for the multiple resources in ``empty``), after the checks that need no
        value: existence, Access Control, writability."""
        grouped: dict[Path, dict[int, object] | object] = {}
        for rpath in empty:
            if not self._writable(ssid, rpath).multiple:
                raise NotFoundError(f"{rpath} is single-instance")
            grouped[rpath] = {}
        for record in records:
            rpath = Path.of(*record.path.ids[:3])
            rdef = self._writable(ssid, rpath)
            if record.path.resource_instance_id is not None:
                if not rdef.multiple:
                    raise NotFoundError(f"{rpath} is single-instance")
                slot = grouped.setdefault(rpath, {})
                assert isinstance(slot, dict)
                slot[record.path.resource_instance_id] = record.value
            elif rdef.multiple:
                raise Reply(Code.BAD_REQUEST, f"{rpath} is multiple: write resource instances")
            else:
                grouped[rpath] = record.value
        return grouped

    def _writable(self, ssid: int, rpath: Path) -> ResourceDef:
        """The definition of resource ``rpath`` once it exists and this server may write it."""
        assert rpath.object_id is not None and rpath.instance_id is not None
        tree = self._model.tree
        tree.instance(rpath.object_id, rpath.instance_id)
        rdef = tree.resource_def(rpath)
        self._model.require(ssid, rpath, Right.WRITE)
        if not rdef.operations.writable:
            raise Reply(Code.METHOD_NOT_ALLOWED, f"{rpath} is not writable")
        return rdef

    def apply_writes(self, changes: Sequence[tuple[Path, ResourceValue]], code: Code) -> Result:
        """Write validated values; answer ``code`` once every (async) write hook is done."""
        pending: list[Awaitable[Any]] = []
        tree = self._model.tree
        for rpath, value in changes:
            assert rpath.object_id is not None and rpath.instance_id is not None
            assert rpath.resource_id is not None
            inst = tree.instance(rpath.object_id, rpath.instance_id)
            rid = rpath.resource_id
            result = call(inst.write, rid, value)
            if is_awaitable(result):
                pending.append(result)
            tree.mark_changed(rpath)
        return maybe_later([(Path(), a) for a in pending], lambda _: Message(code=code))

    def execute(self, ssid: int, request: Message, path: Path) -> Result:
        assert path.object_id is not None and path.instance_id is not None
        assert path.resource_id is not None
        tree = self._model.tree
        inst = tree.instance(path.object_id, path.instance_id)
        rdef = tree.resource_def(path)
        if not rdef.operations.executable:
            raise Reply(Code.METHOD_NOT_ALLOWED, f"{path} is not executable")
        if path.resource_id not in inst.resource_ids():
            raise NotFoundError(f"{path} does not exist")
        self._model.require(ssid, path, Right.EXECUTE)
        try:
            text = request.payload.decode("ascii")
        except UnicodeDecodeError as exc:
            raise Reply(Code.BAD_REQUEST, "execute arguments must be ASCII") from exc
        arguments = parse_execute_arguments(text)
        rid = path.resource_id
        result = call(inst.execute, rid, arguments)
        pending = [(path, result)] if is_awaitable(result) else []
        return maybe_later(pending, lambda _: Message(code=Code.CHANGED))


def require_mandatory(
    definition: ObjectDef,
    instance: Path,
    values: Sequence[tuple[Path, ResourceValue]],
    operation: str,
) -> None:
    """4.00 unless ``values`` give every mandatory writable resource of ``instance``.

    Both a Create and a Write replace of an instance (Core 1.1.1 §6.3.3) leave
    an instance that holds only what the server sent in its writable
    resources. The server, not the client, chooses those values, so one
    without a mandatory resource would be an instance no Read could answer
    in full: the DM&SE response codes answer a Create whose "Mandatory
    Resources are not specified" with 4.00 Bad Request, and a replace is
    refused the same way (as Leshan's client does), before anything is
    written. Mandatory read-only resources are the client's own to fill in (a
    factory's new instance, the existing one's values), so their absence from
    the payload is no error.
    """
    given = {rpath.resource_id for rpath, _ in values}
    missing = [
        rid
        for rid, rdef in sorted(definition.resources.items())
        if rdef.mandatory and rdef.operations.writable and rid not in given
    ]
    if missing:
        names = ", ".join(str(instance.child(rid)) for rid in missing)
        raise Reply(Code.BAD_REQUEST, f"{operation} does not specify the mandatory {names}")
