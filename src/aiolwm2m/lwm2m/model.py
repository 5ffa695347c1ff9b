"""Object/resource definitions and the typed values resources hold.

Every content format converts between bytes and the same small set of Python
types (:data:`Value`), and every conversion rule for a resource type lives here
in :func:`coerce`, so the formats cannot drift apart on what "an Unsigned
Integer" or "a Time" accepts.

Python type per LwM2M data type:

========== ====================================================================
String     ``str``
Integer    ``int`` (signed 64-bit)
Unsigned   ``int`` (0 .. 2**64-1)
Float      ``float``
Boolean    ``bool``
Opaque     ``bytes``
Time       ``datetime`` (timezone-aware, UTC, whole seconds; int seconds on the wire)
Objlnk     :class:`ObjLnk`
Corelnk    ``str`` (link-format text)
none       no value (executable resources)
========== ====================================================================
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from types import MappingProxyType

from aiolwm2m.errors import Lwm2mError

from .path import MAX_ID, Path

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "UINT64_MAX",
    "InvalidValueError",
    "ObjLnk",
    "ObjectDef",
    "Operations",
    "ResourceDef",
    "ResourceType",
    "TypeLookup",
    "Value",
    "ValueRange",
    "coerce",
    "infer_type",
    "object_types",
    "seconds_to_time",
    "time_to_seconds",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class InvalidValueError(Lwm2mError, ValueError):
    """A value does not fit the resource type (or its declared range).

    Not a :class:`~aiolwm2m.errors.DecodeError`: the value may come from the
    application as well as from a peer. Decoders translate it into their own
    format error so callers still see exactly one error class per decoder.
    """


class ResourceType(Enum):
    """LwM2M resource data types (Core spec Appendix C)."""

    STRING = "string"
    INTEGER = "integer"
    UNSIGNED = "unsigned"
    FLOAT = "float"
    BOOLEAN = "boolean"
    OPAQUE = "opaque"
    TIME = "time"
    OBJLNK = "objlnk"
    CORELNK = "corelnk"
    NONE = "none"

    # Members are singletons compared by identity, so the identity hash is a
    # correct one; Enum's own hashes the name in Python, and a resource type is
    # looked up in a dict for every value checked (each value set, read, notified).
    __hash__ = object.__hash__

    @property
    def is_numeric(self) -> bool:
        """Types the gt/lt/st notification attributes may be attached to."""
        return self in (ResourceType.INTEGER, ResourceType.UNSIGNED, ResourceType.FLOAT)


class Operations(Enum):
    """Operations a resource allows, as written in DDF files."""

    NONE = ""
    R = "R"
    W = "W"
    RW = "RW"
    E = "E"

    @property
    def readable(self) -> bool:
        return self in _READABLE

    @property
    def writable(self) -> bool:
        return self in _WRITABLE

    @property
    def executable(self) -> bool:
        return self is Operations.E


# Asked on every read and write: constant tuples, not two enum lookups per call.
_READABLE = (Operations.R, Operations.RW)
_WRITABLE = (Operations.W, Operations.RW)


@dataclass(frozen=True, slots=True)
class ObjLnk:
    """Object link value ``object_id:instance_id``; ``65535:65535`` is the null link."""

    object_id: int
    instance_id: int

    def __post_init__(self) -> None:
        for name in ("object_id", "instance_id"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_ID:
                raise InvalidValueError(f"ObjLnk {name} must be an int 0..{MAX_ID}: {value!r}")

    @classmethod
    def parse(cls, text: str) -> ObjLnk:
        """Parse the ``"3:0"`` text form used by text/plain, SenML ``vlo`` and JSON."""
        match = _OBJLNK.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidValueError(f"invalid object link: {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def is_null(self) -> bool:
        return self.object_id == MAX_ID and self.instance_id == MAX_ID

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"


_OBJLNK = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")

#: Every Python type a resource value may have (see module docstring).
Value = str | int | float | bool | bytes | ObjLnk | datetime

#: How decoders learn a resource's type: the formats that are not self-describing
#: (TLV, text/plain) need it, and self-describing ones use it to tell Time from
#: Integer. ``ObjectRegistry.type_of`` fits; ``None`` means "unknown resource".
TypeLookup = Callable[[Path], ResourceType | None]


def object_types(types: TypeLookup | None, object_id: int) -> Mapping[int, ResourceType] | None:
    """Every resource type of one object when ``types`` can give them at once, else None.

    A registry's lookup (``ObjectRegistry.type_of``) can; decoding a whole
    instance then costs one lookup instead of one call per value. Any other
    :data:`TypeLookup` is simply called per path.
    """
    of_object = getattr(types, "of_object", None)
    if of_object is None:
        return None
    table: Mapping[int, ResourceType] | None = of_object(object_id)
    return table if table is not None else _NO_TYPES


_NO_TYPES: Mapping[int, ResourceType] = MappingProxyType({})


def time_to_seconds(value: datetime) -> int:
    """Seconds since the Unix epoch; naive datetimes are refused as ambiguous."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValueError("Time values must be timezone-aware datetimes")
    return math.floor(value.timestamp())


def seconds_to_time(seconds: int) -> datetime:
    """UTC datetime for Unix seconds; out-of-calendar values are invalid values."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidValueError(f"time value out of range: {seconds}") from exc


def infer_type(value: object) -> ResourceType:
    """The resource type a Python value naturally encodes as (schema-less encoding).

    Integers above ``INT64_MAX`` can only be Unsigned; all other ints encode
    as Integer, whose wire form every format also accepts for Unsigned.
    """
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, int):
        if value > INT64_MAX:
            return ResourceType.UNSIGNED
        return ResourceType.INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, str):
        return ResourceType.STRING
    if isinstance(value, bytes | bytearray | memoryview):
        return ResourceType.OPAQUE
    if isinstance(value, ObjLnk):
        return ResourceType.OBJLNK
    if isinstance(value, datetime):
        return ResourceType.TIME
    raise InvalidValueError(f"not a resource value type: {type(value).__name__}")


def _integral(value: object, what: str) -> int:
    """Accept ints and integral floats: JSON/CBOR peers send ``5.0`` for 5."""
    if isinstance(value, bool):
        raise InvalidValueError(f"{what} expected, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise InvalidValueError(f"{what} expected, got {value!r}")


# One coercer per resource type, each settling the canonical value (nearly every
# value) first. A ResourceDef keeps its type's coercer (ResourceDef.validate), so
# a value set or written costs one call, not a dispatch on the type per value.


def _to_string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise InvalidValueError(f"string expected, got {type(value).__name__}")


def _to_corelnk(value: object) -> str:
    if isinstance(value, str):
        return value
    raise InvalidValueError(f"corelnk expected, got {type(value).__name__}")


def _to_integer(value: object) -> int:
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return value
    number = _integral(value, "integer")
    if not INT64_MIN <= number <= INT64_MAX:
        raise InvalidValueError(f"integer out of 64-bit range: {number}")
    return number


def _to_unsigned(value: object) -> int:
    if type(value) is int and 0 <= value <= UINT64_MAX:
        return value
    number = _integral(value, "unsigned integer")
    if not 0 <= number <= UINT64_MAX:
        raise InvalidValueError(f"unsigned integer out of range: {number}")
    return number


_INF = math.inf
_NEG_INF = -math.inf


def _to_float(value: object) -> float:
    # Chained comparisons are False for NaN: a finite float passes without a call.
    if type(value) is float and _NEG_INF < value < _INF:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValueError(f"float expected, got {value!r}")
    try:
        number = float(value)
    except OverflowError as exc:
        raise InvalidValueError(f"float out of range: {value!r}") from exc
    if not math.isfinite(number):
        # text/plain, SenML JSON and OMA JSON cannot carry NaN or infinity, and
        # the server picks the format: a value stored here would fail a Read in
        # those (4.06) and stop every notification of it. Refused at the source
        # instead: the application's set() raises, a server's Write gets 4.00.
        raise InvalidValueError(f"float must be finite, got {value!r}")
    return number


def _to_boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidValueError(f"boolean expected, got {value!r}")


def _to_opaque(value: object) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidValueError(f"opaque expected, got {type(value).__name__}")


def _to_time(value: object) -> datetime:
    if isinstance(value, datetime):
        return seconds_to_time(time_to_seconds(value))
    seconds = _integral(value, "time")
    if not INT64_MIN <= seconds <= INT64_MAX:
        raise InvalidValueError(f"time out of 64-bit range: {seconds}")
    return seconds_to_time(seconds)


def _to_objlnk(value: object) -> ObjLnk:
    if isinstance(value, ObjLnk):
        return value
    if isinstance(value, str):
        return ObjLnk.parse(value)
    raise InvalidValueError(f"object link expected, got {value!r}")


def _no_value(value: object) -> Value:
    raise InvalidValueError("resources of type 'none' (executable) carry no value")


_COERCERS: dict[ResourceType, Callable[[object], Value]] = {
    ResourceType.STRING: _to_string,
    ResourceType.CORELNK: _to_corelnk,
    ResourceType.INTEGER: _to_integer,
    ResourceType.UNSIGNED: _to_unsigned,
    ResourceType.FLOAT: _to_float,
    ResourceType.BOOLEAN: _to_boolean,
    ResourceType.OPAQUE: _to_opaque,
    ResourceType.TIME: _to_time,
    ResourceType.OBJLNK: _to_objlnk,
    ResourceType.NONE: _no_value,
}


def coerce(value: object, rtype: ResourceType) -> Value:
    """Convert ``value`` to the canonical Python type for ``rtype`` or raise.

    Lenient only where the conversion is lossless and peers are known to
    differ (integral floats for integers, ints for floats, int seconds or
    ``"1:2"`` strings for Time/Objlnk); everything else is an error.
    """
    return _COERCERS.get(rtype, _no_value)(value)


# -- ranges -------------------------------------------------------------------

_RANGE = re.compile(r"\s*(-?[0-9]+(?:\.[0-9]+)?)\s*\.\.\s*(-?[0-9]+(?:\.[0-9]+)?)\s*(bytes)?\s*")
_LIST = re.compile(r"\s*-?[0-9]+(?:\s*,\s*-?[0-9]+)*\s*")


@dataclass(frozen=True, slots=True)
class ValueRange:
    """The machine-checkable part of a DDF ``RangeEnumeration``.

    For numeric types it bounds the value, for String/Opaque the length in
    bytes (how the registry uses e.g. ``0..255`` on a URI or ``6`` on a key).
    Free-text enumerations are kept only as text and never checked.
    """

    low: float | None = None
    high: float | None = None
    allowed: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> ValueRange | None:
        match = _RANGE.fullmatch(text)
        if match:
            low, high = float(match.group(1)), float(match.group(2))
            return cls(low=min(low, high), high=max(low, high))
        if _LIST.fullmatch(text):
            return cls(allowed=frozenset(int(part) for part in text.split(",")))
        return None

    def check(self, value: Value, rtype: ResourceType) -> None:
        """Raise :class:`InvalidValueError` if ``value`` is outside the range."""
        measured: float
        if rtype in (ResourceType.STRING, ResourceType.CORELNK) and isinstance(value, str):
            measured = len(value.encode("utf-8"))
        elif rtype is ResourceType.OPAQUE and isinstance(value, bytes):
            measured = len(value)
        elif rtype.is_numeric and isinstance(value, int | float) and not isinstance(value, bool):
            measured = value
        else:
            return
        if self.allowed and measured not in self.allowed:
            raise InvalidValueError(f"{measured} not in {sorted(self.allowed)}")
        if self.low is not None and measured < self.low:
            raise InvalidValueError(f"{measured} below {self.low}")
        if self.high is not None and measured > self.high:
            raise InvalidValueError(f"{measured} above {self.high}")


@functools.lru_cache(maxsize=512)
def _value_range(text: str) -> ValueRange | None:
    """Parsed once per distinct text: the registry defines many resources with the same."""
    return ValueRange.parse(text)


# -- definitions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceDef:
    """One resource of an object definition."""

    id: int
    name: str
    type: ResourceType
    operations: Operations = Operations.R
    multiple: bool = False
    mandatory: bool = False
    range_enumeration: str = ""
    units: str = ""
    description: str = ""
    # Derived once from the fields above: asked for every value set, read or notified.
    #: The machine-checkable part of ``range_enumeration`` (None: nothing to check).
    value_range: ValueRange | None = field(init=False, repr=False, compare=False)
    #: Whether a Read may return this resource (``operations`` is R or RW).
    readable: bool = field(init=False, repr=False, compare=False)
    #: ``validate(value)``: ``value`` coerced to this resource's type (see :func:`coerce`)
    #: and checked against the declared range, or :class:`InvalidValueError`. A
    #: function chosen once for the type and range, as every value set or
    #: written is checked: the type's coercer itself when there is no range.
    validate: Callable[[object], Value] = field(init=False, repr=False, compare=False)
    #: Whether the resource holds one value (single-instance, not executable): a
    #: 3-component path's value is then checked by :attr:`validate` alone.
    single_value: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = self.range_enumeration
        value_range = _value_range(text) if text else None
        coercer = _COERCERS.get(self.type, _no_value)
        validate = coercer if value_range is None else _InRange(coercer, value_range, self.type)
        object.__setattr__(self, "value_range", value_range)
        object.__setattr__(self, "readable", self.operations.readable)
        object.__setattr__(self, "validate", validate)
        single = not self.multiple and self.type is not ResourceType.NONE
        object.__setattr__(self, "single_value", single)


@dataclass(frozen=True, slots=True)
class _InRange:
    """:attr:`ResourceDef.validate` of a resource with a declared range."""

    coercer: Callable[[object], Value]
    value_range: ValueRange
    rtype: ResourceType

    def __call__(self, value: object) -> Value:
        coerced = self.coercer(value)
        self.value_range.check(coerced, self.rtype)
        return coerced


@dataclass(frozen=True, slots=True)
class ObjectDef:
    """An object definition (what one DDF ``<Object>`` element describes)."""

    id: int
    name: str
    resources: Mapping[int, ResourceDef] = field(default_factory=dict)
    version: str = "1.0"
    urn: str = ""
    multiple: bool = False
    mandatory: bool = False
    lwm2m_version: str = "1.0"
    description: str = ""
    #: ``{resource id: type}``, for decoders that look a whole instance up at once.
    types: Mapping[int, ResourceType] = field(init=False, repr=False, compare=False)
    #: The plain dict :attr:`resources` is a read-only view of, for the tree's
    #: lookups (every value set and notified; a mapping proxy's ``get`` costs
    #: nearly twice a dict's). Shared by every tree of the process: never edited.
    table: dict[int, ResourceDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Freeze the mapping so a shared definition cannot be edited behind
        # the registry's back.
        table = dict(self.resources)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "resources", MappingProxyType(table))
        types = {rid: resource.type for rid, resource in self.resources.items()}
        object.__setattr__(self, "types", MappingProxyType(types))

    def resource(self, resource_id: int) -> ResourceDef | None:
        return self.resources.get(resource_id)
