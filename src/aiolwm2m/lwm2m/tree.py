"""The client's object tree at runtime: objects, instances, resources and their values.

Definitions (types, operations, single/multiple) come from an
:class:`~aiolwm2m.lwm2m.ddf.ObjectRegistry`; values are held by
:class:`Instance` objects. An application exposes data in one of two idioms:

* **values and callbacks** — ``Instance({5700: 21.5}, on_read={5700: sensor.read},
  on_execute={5605: reset})``;
* **a subclass** overriding :meth:`Instance.read`, :meth:`Instance.write`,
  :meth:`Instance.execute` (and :meth:`Instance.resource_ids` if it computes
  which resources exist).

Any hook may be a plain function or return an awaitable (``async def``): the
tree never awaits anything itself (it is sans-IO); it returns the awaitable to
:mod:`aiolwm2m.client.operations`, which hands the request to the runtime as a
job and answers when the job finishes (see ``OperationHandler.take_jobs``).

Values are validated against the definition on the way in (``tree.set`` and
server writes alike), so every value a content format encodes is already of
the canonical Python type :mod:`aiolwm2m.lwm2m.model` documents. Every change
made through :meth:`ObjectTree.set` (or :meth:`Instance.set` on an attached
instance) is recorded so the observe engine can notify it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Protocol, TypeAlias, TypeVar, cast, runtime_checkable

from aiolwm2m.errors import Lwm2mError

from .ddf import ObjectRegistry, ResourceTypes, load_builtin
from .model import InvalidValueError, ObjectDef, Operations, ResourceDef, Value
from .path import MAX_ID, Path
from .values import Record, Records, make_record

__all__ = [
    "BlockSink",
    "ExecuteArguments",
    "Instance",
    "MaybeAwaitable",
    "NotFoundError",
    "ObjectNode",
    "ObjectTree",
    "OperationNotAllowedError",
    "ResourceValue",
    "TreeError",
    "parse_execute_arguments",
]

T = TypeVar("T")

#: What a hook returns: the result, or an awaitable of it (``async def`` hooks).
MaybeAwaitable: TypeAlias = T | Awaitable[T]

#: A resource's content: one value, or ``{resource instance id: value}`` for
#: multiple-instance resources.
ResourceValue: TypeAlias = Value | dict[int, Value]

#: Parsed Execute arguments (LwM2M Core §5.4.5): ``{digit: value or None}``.
ExecuteArguments: TypeAlias = dict[int, str | None]

ReadHook = Callable[[], MaybeAwaitable[ResourceValue]]
WriteHook = Callable[[ResourceValue], MaybeAwaitable[None]]
ExecuteHook = Callable[[ExecuteArguments], MaybeAwaitable[None]]
InstanceFactory = Callable[[int], "Instance"]


class TreeError(Lwm2mError):
    """Base of the errors the tree raises for a request it cannot carry out."""


class NotFoundError(TreeError):
    """The path names no object, instance or resource of the tree (4.04)."""


class OperationNotAllowedError(TreeError):
    """The operation is not allowed on that target, e.g. reading an E resource (4.05)."""


class BadArgumentsError(TreeError):
    """Execute arguments do not follow the Core §5.4.5 syntax (4.00)."""


# arg = DIGIT [ "=" "'" *CHAR "'" ], CHAR excluding the quote (a comma is a CHAR);
# args separated by ",".
_ARGUMENT = re.compile(r"([0-9])(?:='([!#-&(-\[\]-~ ]*)')?")


@runtime_checkable
class BlockSink(Protocol):
    """An instance that takes a resource's Block1 Write block by block.

    For values too large to hold in memory (a firmware Package): the
    operations layer hands each Opaque block over in order instead of
    assembling the body, and answers 2.31 Continue only once the block is
    taken (so a slow store slows the sender down).
    """

    def streams(self, resource_id: int) -> bool: ...

    def write_block(
        self, resource_id: int, offset: int, data: bytes, more: bool
    ) -> MaybeAwaitable[None]: ...


def parse_execute_arguments(text: str) -> ExecuteArguments:
    """Parse ``2='10',3`` into ``{2: "10", 3: None}``; an empty payload is no argument.

    Scanned argument by argument, not split on ",": the grammar's CHAR
    includes the comma (Core 1.1.1 §6.3.5), so ``0='a,b'`` is one argument.
    """
    if text == "":
        return {}
    out: ExecuteArguments = {}
    pos = 0
    while True:
        match = _ARGUMENT.match(text, pos)
        if match is None:
            raise BadArgumentsError(f"invalid execute argument {text[pos : pos + 20]!r}")
        digit = int(match.group(1))
        if digit in out:
            raise BadArgumentsError(f"execute argument {digit} given twice")
        out[digit] = match.group(2)
        pos = match.end()
        if pos == len(text):
            return out
        if text[pos] != ",":
            raise BadArgumentsError(f"invalid execute argument {text[match.start() : pos + 20]!r}")
        pos += 1


def is_awaitable(value: object) -> bool:
    """True for what an ``async def`` hook (or any awaitable-returning hook) gave back."""
    # Values of the plain types are settled without inspect (this runs per value read).
    return type(value) not in _PLAIN and inspect.isawaitable(value)


_PLAIN = frozenset({str, int, float, bool, bytes, dict, datetime, type(None)})


class Instance:
    """One object instance: stored values plus optional per-resource hooks.

    ``values`` maps resource ids to a value (single resources) or a
    ``{riid: value}`` dict (multiple resources). Hooks take precedence over
    stored values: ``on_read[rid]()`` produces the value of ``rid`` on every
    server read; ``on_write[rid](value)`` is called after validation with the
    new value (the value is stored too, so a later read without a read hook
    sees it); ``on_execute[rid](args)`` runs an executable resource.

    Subclasses may override :meth:`read`, :meth:`write`, :meth:`execute` and
    :meth:`resource_ids` instead. Values are validated by the tree, not here,
    because the instance does not know its definition until it is attached.
    """

    def __init__(
        self,
        values: Mapping[int, Value | Mapping[int, Value]] | None = None,
        *,
        on_read: Mapping[int, ReadHook] | None = None,
        on_write: Mapping[int, WriteHook] | None = None,
        on_execute: Mapping[int, ExecuteHook] | None = None,
    ) -> None:
        self.values: dict[int, ResourceValue] = {
            rid: dict(v) if isinstance(v, Mapping) else v for rid, v in (values or {}).items()
        }
        self.on_read = dict(on_read or {})
        self.on_write = dict(on_write or {})
        self.on_execute = dict(on_execute or {})
        self._tree: ObjectTree | None = None
        self._path: Path | None = None

    # -- what the application may override -------------------------------------------
    def resource_ids(self) -> Iterable[int]:
        """Resources this instance has (stored values, read hooks, executables)."""
        return set(self.values) | set(self.on_read) | set(self.on_execute)

    def read(self, resource_id: int) -> MaybeAwaitable[ResourceValue]:
        hook = self.on_read.get(resource_id)
        if hook is not None:
            return hook()
        try:
            return self.values[resource_id]
        except KeyError:
            raise NotFoundError(f"resource {resource_id} has no value") from None

    def write(self, resource_id: int, value: ResourceValue) -> MaybeAwaitable[None]:
        self.values[resource_id] = value
        hook = self.on_write.get(resource_id)
        return hook(value) if hook is not None else None

    def check(self, values: Mapping[int, ResourceValue]) -> None:
        """Refuse a Write as a whole before any of it is applied (raise, e.g. ConfigError).

        The server's Write is all-or-nothing: types are checked by the tree,
        rules that belong to the instance (a Server account's binding) here.
        """

    def execute(self, resource_id: int, arguments: ExecuteArguments) -> MaybeAwaitable[None]:
        hook = self.on_execute.get(resource_id)
        if hook is None:
            raise NotFoundError(f"resource {resource_id} has no execute handler")
        return hook(arguments)

    def remove(self, resource_id: int) -> None:
        """Drop an optional resource (Write replace clears it)."""
        self.values.pop(resource_id, None)

    # -- helpers for the application --------------------------------------------------
    def set(self, resource_id: int, value: Value | Mapping[int, Value]) -> None:
        """Set a value from the application; notifies observers once attached to a tree."""
        if self._tree is None or self._path is None:
            self.values[resource_id] = dict(value) if isinstance(value, Mapping) else value
            return
        self._tree.set(self._path.child(resource_id), value)

    @property
    def path(self) -> Path | None:
        """``/oid/iid`` once attached to a tree."""
        return self._path

    def _attach(self, tree: ObjectTree, path: Path) -> None:
        self._tree = tree
        self._path = path


class ObjectNode:
    """An object of the tree: its definition, instances and how to create new ones."""

    __slots__ = ("definition", "deletable", "factory", "instances", "resources")

    def __init__(
        self,
        definition: ObjectDef,
        *,
        factory: InstanceFactory | None = None,
        deletable: bool | None = None,
    ) -> None:
        self.definition = definition
        #: ``definition.table``, one attribute nearer: :meth:`ObjectTree.resource`
        #: looks a definition up for every value set and notified. Shared with
        #: every tree of the process, not a copy per device.
        self.resources: dict[int, ResourceDef] = definition.table
        self.instances: dict[int, Instance] = {}
        #: Builds an empty instance for a server's Create; None refuses Create (4.05).
        self.factory = factory
        #: Whether a server may Delete instances (default: when it may Create them).
        self.deletable = factory is not None if deletable is None else deletable

    @property
    def id(self) -> int:
        return self.definition.id

    def free_instance_id(self) -> int:
        iid = 0
        while iid in self.instances:
            iid += 1
        if iid >= MAX_ID:
            raise OperationNotAllowedError(f"object {self.id} has no free instance id")
        return iid


class ObjectTree:
    """Objects and instances the client exposes; the single owner of their values.

    Sans-IO: no clock, no IO. Changes are collected and drained with
    :meth:`take_changes` by whoever runs observations; a ``listener`` (set by
    the client runtime through :meth:`set_listener`) is told that something
    changed so it can collect promptly.
    """

    def __init__(self, registry: ObjectRegistry | None = None) -> None:
        self.registry = registry if registry is not None else load_builtin()
        self.objects: dict[int, ObjectNode] = {}
        self._changes: list[Path] = []
        self._structure_changed = False
        #: Grows whenever objects or instances are added or removed (caches key on it).
        self.structure_version = 0
        self._listener: Callable[[], None] | None = None

    # -- building ------------------------------------------------------------------------
    def add_object(
        self,
        object_id: int,
        *,
        factory: InstanceFactory | None = None,
        deletable: bool | None = None,
        definition: ObjectDef | None = None,
    ) -> ObjectNode:
        """Expose object ``object_id`` (its definition must be in the registry or given)."""
        if definition is not None:
            self.registry.add(definition)
        found = self.registry.get(object_id)
        if found is None:
            raise NotFoundError(f"no definition for object {object_id}; load its DDF first")
        node = self.objects.get(object_id)
        if node is None:
            node = self.objects[object_id] = ObjectNode(found, factory=factory, deletable=deletable)
            self._structure_changed = True
            self.structure_version += 1
        return node

    def add_instance(
        self, object_id: int, instance_id: int | None = None, instance: Instance | None = None
    ) -> Instance:
        """Attach ``instance`` (default: an empty :class:`Instance`) as ``/oid/iid``.

        Stored values are validated against the definition now, so a wrong
        type shows up at start-up and not on the first server read.
        """
        node = self.objects.get(object_id) or self.add_object(object_id)
        iid = node.free_instance_id() if instance_id is None else instance_id
        path = Path._trusted(Path.of(object_id, iid).ids)  # checked, then the shared one
        if iid in node.instances:
            raise OperationNotAllowedError(f"{path} already exists")
        if not node.definition.multiple and node.instances:
            raise OperationNotAllowedError(f"object {object_id} is single-instance")
        inst = instance if instance is not None else Instance()
        for rid, value in list(inst.values.items()):
            inst.values[rid] = self.validate(path.child(rid), value)
        inst._attach(self, path)
        node.instances[iid] = inst
        self._structure_changed = True
        self.structure_version += 1
        self._changed(path)
        return inst

    def remove_instance(self, object_id: int, instance_id: int) -> Instance:
        node = self._node(object_id)
        try:
            inst = node.instances.pop(instance_id)
        except KeyError:
            raise NotFoundError(f"/{object_id}/{instance_id} does not exist") from None
        inst._tree = None  # later inst.set() calls only update the detached instance
        self._structure_changed = True
        self.structure_version += 1
        return inst

    def load_ddf(self, source: bytes | str) -> list[ObjectDef]:
        """Load user object definitions (a DDF path or document) into the registry."""
        return self.registry.load(source)

    # -- queries -------------------------------------------------------------------------
    def instance_ids(self) -> dict[int, list[int]]:
        """``{object id: sorted instance ids}`` for Register/Update."""
        return {oid: sorted(node.instances) for oid, node in sorted(self.objects.items())}

    def versions(self) -> dict[int, str]:
        return {oid: node.definition.version for oid, node in self.objects.items()}

    def node(self, object_id: int) -> ObjectNode:
        return self._node(object_id)

    def instance(self, object_id: int, instance_id: int) -> Instance:
        node = self.objects.get(object_id)
        inst = node.instances.get(instance_id) if node is not None else None
        if inst is None:
            raise self._no_instance(object_id, instance_id)
        return inst

    def resource_def(self, path: Path) -> ResourceDef:
        """Definition of the resource at a resource or resource-instance path."""
        ids = path.ids  # on every read and write: the ids once, no properties
        if len(ids) < 3:
            raise NotFoundError(f"{path} is not a resource path")
        found = self._node(ids[0]).resources.get(ids[2])
        if found is None:
            raise _no_resource(ids)
        return found

    def resource(self, path: Path) -> tuple[Instance, ResourceDef]:
        """The instance and definition of the resource at a resource (or resource-instance)
        path, whether or not it holds a value (:meth:`lookup` checks that too).

        One walk down the dicts for :meth:`set`, :meth:`lookup` and observation
        sampling, which run for every value set and notified, instead of
        :meth:`instance` then :meth:`resource_def` walking to the object twice.
        The errors are theirs, in their order: object, instance, then resource.
        Subscripts, not ``dict.get``: a missing key is an error anyway, and three
        method calls twice per notification cost more than the (free) try.
        """
        ids = path.ids
        try:
            node = self.objects[ids[0]]
            inst = node.instances[ids[1]]
        except KeyError:
            raise self._no_instance(ids[0], ids[1]) from None
        try:
            return inst, node.resources[ids[2]]
        except KeyError:
            raise _no_resource(ids) from None

    @property
    def type_of(self) -> ResourceTypes:
        """The :data:`~aiolwm2m.lwm2m.model.TypeLookup` for decoding requests (the registry's)."""
        return self.registry.type_of

    def exists(self, path: Path) -> bool:
        """True if ``path`` names something present (a resource needs a value or hook)."""
        try:
            self.check_exists(path)
        except TreeError:
            return False
        return True

    def check_exists(self, path: Path) -> None:
        """Raise :class:`NotFoundError` unless ``path`` exists in the tree."""
        self.lookup(path)

    def lookup(self, path: Path) -> tuple[Instance | None, ResourceDef | None]:
        """The instance and resource definition ``path`` names (None above those levels).

        Raises :class:`NotFoundError` unless the path exists, like
        :meth:`check_exists`: readers get what they need from one walk.
        """
        ids = path.ids
        depth = len(ids)
        if depth < 3:  # a resource (a notification's usual path) is asked first
            if depth == 2:
                return self.instance(ids[0], ids[1]), None
            if depth == 1:
                self._node(ids[0])
            return None, None
        inst, rdef = self.resource(path)
        rid = ids[2]
        if type(inst) is Instance:  # its resource_ids() would build three sets to ask
            present = rid in inst.values or rid in inst.on_read or rid in inst.on_execute
        else:
            present = rid in inst.resource_ids()
        if not present:
            raise NotFoundError(f"{path} does not exist")
        if depth == 4:
            value = inst.values.get(rid)
            if rid in inst.on_read or not isinstance(value, dict):
                # Hooked multiple resources are checked when read.
                if not rdef.multiple:
                    raise NotFoundError(f"{path}: resource is single-instance")
            elif ids[3] not in value:
                raise NotFoundError(f"{path} does not exist")
        return inst, rdef

    def readable_resources(self, object_id: int, instance_id: int) -> list[int]:
        """Resource ids of an instance that a Read returns (R or RW), sorted."""
        inst = self.instance(object_id, instance_id)
        definition = self._node(object_id).definition
        out = []
        for rid in inst.resource_ids():
            rdef = definition.resource(rid)
            if rdef is not None and rdef.operations.readable:
                out.append(rid)
        return sorted(out)

    # -- values --------------------------------------------------------------------------
    def validate(self, path: Path, value: object) -> ResourceValue:
        """Coerce a value for a resource (a dict of them for multiple resources) or raise.

        Raises :class:`~aiolwm2m.lwm2m.model.InvalidValueError` for a wrong
        type/range and :class:`NotFoundError` for an unknown resource.
        """
        return self.coerce(path, self.resource_def(path), value)

    def coerce(self, path: Path, rdef: ResourceDef, value: object) -> ResourceValue:
        """:meth:`validate` with the resource's definition ``rdef`` already looked up."""
        if rdef.single_value and len(path.ids) == 3:  # one value: the usual case
            return rdef.validate(value)
        if len(path.ids) == 4:
            if not rdef.multiple:
                raise NotFoundError(f"{path}: resource is single-instance")
            return rdef.validate(value)
        if rdef.multiple:
            if not isinstance(value, Mapping):
                raise InvalidValueError(f"{path} is a multiple resource: give {{riid: value}}")
            return {_riid(k): rdef.validate(v) for k, v in value.items()}
        raise InvalidValueError(f"{path} is executable and holds no value")

    def get(self, path: Path) -> ResourceValue:
        """Current value of a resource / resource instance (stored or from a sync read hook)."""
        ids = path.ids
        if len(ids) < 3:
            raise NotFoundError(f"{path} is not a resource path")
        value = self.instance(ids[0], ids[1]).read(ids[2])
        if is_awaitable(value):
            _close(value)
            raise OperationNotAllowedError(f"{path} has an async read hook; use a Read")
        return self.select(path, cast(ResourceValue, value))

    def select(self, path: Path, value: ResourceValue) -> ResourceValue:
        """The part of a resource's value a resource-instance path names."""
        if len(path.ids) < 4:
            return value
        if not isinstance(value, dict) or path.resource_instance_id not in value:
            raise NotFoundError(f"{path} does not exist")
        return value[path.resource_instance_id]

    def set(self, path: Path | str, value: Value | Mapping[int, Value]) -> None:
        """Set a resource (instance) value from the application and record the change.

        The resource is created if the instance did not have it yet. Writing
        a resource instance of a multiple resource adds or replaces just it.
        """
        path = Path.parse(path) if isinstance(path, str) else path
        ids = path.ids
        depth = len(ids)
        if depth < 3:
            raise NotFoundError(f"{path} is not a resource path")
        inst, rdef = self.resource(path)
        if rdef.single_value and depth == 3:  # nearly every set: coerce()'s first case
            inst.values[ids[2]] = rdef.validate(value)
        else:
            checked = self.coerce(path, rdef, value)
            if depth == 4:
                current = inst.values.get(ids[2])
                merged = dict(current) if isinstance(current, dict) else {}
                merged[ids[3]] = cast(Value, checked)
                inst.values[ids[2]] = merged
            else:
                inst.values[ids[2]] = checked
        # What _changed() does, without its call: every value the application sets.
        self._changes.append(path)
        listener = self._listener
        if listener is not None:
            listener()

    def mark_changed(self, path: Path | str) -> None:
        """A hooked value changed outside the tree: notify observers of ``path``."""
        self._changed(Path.parse(path) if isinstance(path, str) else path)

    def take_changes(self) -> list[Path]:
        """Paths changed since the last call (in order, duplicates removed)."""
        changes = self._changes
        if len(changes) < 2:  # nothing or one change: the usual answer to a poll
            self._changes = []
            return changes
        self._changes = []
        return list(dict.fromkeys(changes))

    def take_structure_changed(self) -> bool:
        """True once after instances or objects were added or removed."""
        changed, self._structure_changed = self._structure_changed, False
        return changed

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Called (without arguments) after every recorded change."""
        self._listener = listener

    # -- records -------------------------------------------------------------------------
    @staticmethod
    def to_records(path: Path, value: ResourceValue) -> list[Record]:
        """Records of one resource's value (one per instance for multiple resources).

        ``value`` is one :meth:`validate` or :meth:`coerce` returned: its types
        are checked, so the records are built without checking them again
        (this runs for every value read and notified). A multiple resource
        with no instance has no record and is named in
        :attr:`~aiolwm2m.lwm2m.values.Records.empty`, for the formats that
        send it (TLV, LwM2M CBOR).
        """
        if isinstance(value, dict):
            if not value:
                return Records(empty=(path,))
            items = sorted(value.items())
            return [make_record(Record, (path.child(riid), v, None)) for riid, v in items]
        return [make_record(Record, (path, value, None))]

    # -- internals -----------------------------------------------------------------------
    def _node(self, object_id: int) -> ObjectNode:
        node = self.objects.get(object_id)
        if node is None:
            raise NotFoundError(f"object {object_id} does not exist")
        return node

    def _no_instance(self, object_id: int, instance_id: int) -> NotFoundError:
        """The 4.04 for a missing ``/oid/iid``: the object's own when it is missing too."""
        self._node(object_id)
        return NotFoundError(f"/{object_id}/{instance_id} does not exist")

    def _changed(self, path: Path) -> None:
        self._changes.append(path)
        if self._listener is not None:
            self._listener()


def _no_resource(ids: tuple[int, ...]) -> NotFoundError:
    return NotFoundError(f"object {ids[0]} defines no resource {ids[2]}")


def _riid(key: object) -> int:
    if type(key) is not int or not 0 <= key <= MAX_ID:
        raise InvalidValueError(f"resource instance id must be an int 0..{MAX_ID}: {key!r}")
    return key


def _close(awaitable: object) -> None:
    """Discard an awaitable we will not run (a coroutine would warn "never awaited")."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def ensure_operations(rdef: ResourceDef, wanted: Operations) -> None:
    """Raise :class:`OperationNotAllowedError` unless ``rdef`` allows ``wanted`` (R, W or E)."""
    ops = rdef.operations
    allowed = {
        Operations.R: ops.readable,
        Operations.W: ops.writable,
        Operations.E: ops.executable,
    }[wanted]
    if not allowed:
        raise OperationNotAllowedError(
            f"resource {rdef.id} ({rdef.name}) does not allow {wanted.value}"
        )
