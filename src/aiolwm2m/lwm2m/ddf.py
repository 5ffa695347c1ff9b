"""Load object definitions from OMA DDF XML files, and the registry that holds them.

DDF files come from users and third parties, so they are parsed with
defusedxml (no entity expansion, no DTDs, no external fetches) and every
problem surfaces as one :class:`DdfError` naming the element at fault.

The package ships the definitions of objects 0-5, 3303 and 10252 in
``lwm2m/definitions``; :func:`load_builtin` uses the LwM2M 1.1 versions of the
Security (0) and Server (1) objects by default because this client speaks
LwM2M 1.1.1, and keeps the 1.2 files available by explicit choice.

Files are loaded as written. Note that the registry's ``1-1_1.xml`` leaves
``<Operations>`` empty for Server resources 13-20 (1.2 marks them R/RW), so
they load as :attr:`Operations.NONE`; an engine that gates server access on
operations will refuse those reads unless the application overrides them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from aiolwm2m.errors import DecodeError

from .model import ObjectDef, Operations, ResourceDef, ResourceType
from .path import MAX_ID, Path

__all__ = [
    "BUILTIN_FILES",
    "DEFAULT_BUILTIN_FILES",
    "DdfError",
    "ObjectRegistry",
    "ResourceTypes",
    "builtin_definition",
    "load_builtin",
    "load_ddf",
]


class DdfError(DecodeError):
    """A DDF document is not well-formed XML or not a valid object definition."""


_TYPES = {
    "string": ResourceType.STRING,
    "integer": ResourceType.INTEGER,
    "unsigned integer": ResourceType.UNSIGNED,
    "float": ResourceType.FLOAT,
    "boolean": ResourceType.BOOLEAN,
    "opaque": ResourceType.OPAQUE,
    "time": ResourceType.TIME,
    "objlnk": ResourceType.OBJLNK,
    "corelnk": ResourceType.CORELNK,
    "": ResourceType.NONE,
    "none": ResourceType.NONE,
}

_OPERATIONS = {op.value: op for op in Operations}


def _text(element: Any, tag: str, *, required: bool = True) -> str:
    """Element text with whitespace collapsed (registry files indent freely),
    except descriptions whose line breaks carry enumerations."""
    child = element.find(tag)
    if child is None:
        if required:
            raise DdfError(f"missing <{tag}>")
        return ""
    text = child.text or ""
    if tag.startswith("Description"):
        return text.strip()
    return " ".join(text.split())


def _int(text: str, what: str, upper: int = MAX_ID) -> int:
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit() or len(stripped) > 5:
        raise DdfError(f"{what} is not an integer: {text!r}")
    value = int(stripped)
    if value > upper:
        raise DdfError(f"{what} out of range: {value}")
    return value


def _choice(text: str, what: str, true_word: str, false_word: str) -> bool:
    lowered = text.strip().lower()
    if lowered == true_word.lower():
        return True
    if lowered == false_word.lower():
        return False
    raise DdfError(f"{what} must be {true_word!r} or {false_word!r}, got {text!r}")


def _resource(item: Any, object_id: int) -> ResourceDef:
    raw_id = item.get("ID")
    if raw_id is None:
        raise DdfError(f"object {object_id}: resource <Item> without ID attribute")
    resource_id = _int(raw_id, f"object {object_id} resource ID")
    where = f"object {object_id} resource {resource_id}"
    try:
        raw_type = _text(item, "Type", required=False).lower()
        rtype = _TYPES.get(raw_type)
        if rtype is None:
            raise DdfError(f"unknown <Type> {raw_type!r}")
        raw_ops = _text(item, "Operations", required=False).upper()
        operations = _OPERATIONS.get(raw_ops)
        if operations is None:
            raise DdfError(f"unknown <Operations> {raw_ops!r}")
        return ResourceDef(
            id=resource_id,
            name=_text(item, "Name"),
            type=rtype,
            operations=operations,
            multiple=_choice(
                _text(item, "MultipleInstances"), "MultipleInstances", "Multiple", "Single"
            ),
            mandatory=_choice(_text(item, "Mandatory"), "Mandatory", "Mandatory", "Optional"),
            range_enumeration=_text(item, "RangeEnumeration", required=False),
            units=_text(item, "Units", required=False),
            description=_text(item, "Description", required=False),
        )
    except DdfError as exc:
        raise DdfError(f"{where}: {exc}") from None


def _object(element: Any) -> ObjectDef:
    object_id = _int(_text(element, "ObjectID"), "ObjectID")
    try:
        resources_element = element.find("Resources")
        if resources_element is None:
            raise DdfError("missing <Resources>")
        resources_by_id: dict[int, ResourceDef] = {}
        for item in resources_element.findall("Item"):
            resource = _resource(item, object_id)
            if resource.id in resources_by_id:
                raise DdfError(f"duplicate resource ID {resource.id}")
            resources_by_id[resource.id] = resource
        version = _text(element, "ObjectVersion", required=False) or "1.0"
        urn = _text(element, "ObjectURN", required=False)
        return ObjectDef(
            id=object_id,
            name=_text(element, "Name"),
            resources=resources_by_id,
            version=version,
            urn=urn,
            multiple=_choice(
                _text(element, "MultipleInstances"), "MultipleInstances", "Multiple", "Single"
            ),
            mandatory=_choice(_text(element, "Mandatory"), "Mandatory", "Mandatory", "Optional"),
            lwm2m_version=_text(element, "LWM2MVersion", required=False) or "1.0",
            description=_text(element, "Description1", required=False),
        )
    except DdfError as exc:
        raise DdfError(f"object {object_id}: {exc}") from None


def load_ddf(source: bytes | str | os.PathLike[str]) -> list[ObjectDef]:
    """Parse a DDF document (``bytes``) or file (path) into object definitions.

    A ``str`` is a file path, not XML text: DDF files declare their encoding in
    the XML prolog, which only holds for bytes.
    """
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise DdfError(f"cannot read {os.fspath(source)!r}: {exc}") from exc
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        # LookupError: an unknown encoding named in the XML declaration.
        raise DdfError(f"invalid DDF XML: {exc}") from exc
    if root.tag != "LWM2M":
        raise DdfError(f"root element must be <LWM2M>, got <{root.tag}>")
    objects = [_object(element) for element in root.findall("Object")]
    if not objects:
        raise DdfError("no <Object> element")
    return objects


class ResourceTypes:
    """A registry's :data:`~aiolwm2m.lwm2m.model.TypeLookup`, with a shortcut.

    Called with a path it gives that resource's type, like any type lookup;
    :meth:`of_object` gives every resource type of an object at once, which
    decoders use to type a whole instance with one lookup instead of one per
    value.
    """

    __slots__ = ("_objects",)

    def __init__(self, objects: Mapping[int, ObjectDef]) -> None:
        self._objects = objects

    def __call__(self, path: Path) -> ResourceType | None:
        ids = path.ids  # decoders ask once per value: no detours
        if len(ids) < 3:
            return None
        definition = self._objects.get(ids[0])
        if definition is None:
            return None
        return definition.types.get(ids[2])

    def of_object(self, object_id: int) -> Mapping[int, ResourceType] | None:
        """``{resource id: type}`` of object ``object_id`` (None if unknown)."""
        definition = self._objects.get(object_id)
        return definition.types if definition is not None else None


class ObjectRegistry:
    """The object definitions a client knows, one version per object id.

    Its :attr:`type_of` is the :data:`~aiolwm2m.lwm2m.model.TypeLookup` the
    decoders take, so the registry is the single source of resource types.
    """

    def __init__(self, objects: Mapping[int, ObjectDef] | None = None) -> None:
        self._objects: dict[int, ObjectDef] = dict(objects or {})
        #: Resource type by path (a :class:`ResourceTypes` over this registry).
        self.type_of = ResourceTypes(self._objects)

    def add(self, definition: ObjectDef, *, replace: bool = True) -> None:
        """Register ``definition``; ``replace=False`` refuses to shadow one."""
        if not replace and definition.id in self._objects:
            raise ValueError(f"object {definition.id} is already defined")
        self._objects[definition.id] = definition

    def load(
        self, source: bytes | str | os.PathLike[str], *, replace: bool = True
    ) -> list[ObjectDef]:
        """Load a user DDF file or document into the registry."""
        definitions = load_ddf(source)
        for definition in definitions:
            self.add(definition, replace=replace)
        return definitions

    def get(self, object_id: int) -> ObjectDef | None:
        return self._objects.get(object_id)

    def __getitem__(self, object_id: int) -> ObjectDef:
        return self._objects[object_id]

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._objects

    def __iter__(self) -> Iterator[ObjectDef]:
        return iter(sorted(self._objects.values(), key=lambda d: d.id))

    def __len__(self) -> int:
        return len(self._objects)

    def resource(self, object_id: int, resource_id: int) -> ResourceDef | None:
        definition = self._objects.get(object_id)
        return definition.resource(resource_id) if definition is not None else None

    def copy(self) -> ObjectRegistry:
        return ObjectRegistry(self._objects)


#: Every definition file shipped in ``aiolwm2m/lwm2m/definitions``.
BUILTIN_FILES: tuple[str, ...] = (
    "0-1_1.xml",
    "0.xml",
    "1-1_1.xml",
    "1.xml",
    "2.xml",
    "3.xml",
    "4.xml",
    "5.xml",
    "3303.xml",
    "10252.xml",
)

#: The files :func:`load_builtin` uses: LwM2M 1.1 Security/Server objects.
DEFAULT_BUILTIN_FILES: tuple[str, ...] = (
    "0-1_1.xml",
    "1-1_1.xml",
    "2.xml",
    "3.xml",
    "4.xml",
    "5.xml",
    "3303.xml",
    "10252.xml",
)


def builtin_definition(filename: str) -> ObjectDef:
    """One shipped definition by file name, e.g. ``builtin_definition("1.xml")``.

    Parsed once per process: definitions are immutable, so every client (and
    every registry) shares the same objects instead of re-reading the XML.
    """
    if filename not in BUILTIN_FILES:
        raise DdfError(f"no shipped definition file {filename!r}")
    return _parsed_builtin(filename)


@functools.cache
def _parsed_builtin(filename: str) -> ObjectDef:
    data = (resources.files("aiolwm2m.lwm2m") / "definitions" / filename).read_bytes()
    (definition,) = load_ddf(data)
    return definition


def load_builtin(files: tuple[str, ...] = DEFAULT_BUILTIN_FILES) -> ObjectRegistry:
    """A fresh registry with the shipped definitions (callers may add their own).

    The registry is the caller's; the definitions in it are shared, parsed once.
    """
    registry = ObjectRegistry()
    for filename in files:
        registry.add(builtin_definition(filename))
    return registry
