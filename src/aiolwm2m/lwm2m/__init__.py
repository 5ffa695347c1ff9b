"""LwM2M data model and content formats (sans-IO: bytes in, records out).

Typical use by the engine::

    from aiolwm2m.lwm2m import ContentFormat, Path, decode, encode, load_builtin

    registry = load_builtin()
    records = decode(ContentFormat.TLV, payload, Path.parse("/1/0"), registry.type_of)
    body = encode(ContentFormat.SENML_JSON, records, Path.parse("/1/0"))
"""

from __future__ import annotations

from .attributes import (
    Attributes,
    AttributeUpdate,
    InvalidAttributesError,
    effective_attributes,
    inherited_attributes,
    parse_query,
    write_attributes,
)
from .ddf import DdfError, ObjectRegistry, builtin_definition, load_builtin, load_ddf
from .formats import (
    ContentFormat,
    ContentFormatError,
    FormatEncodeError,
    UnsupportedFormatError,
    decode,
    encode,
)
from .linkformat import Link, LinkFormatError
from .model import (
    InvalidValueError,
    ObjectDef,
    ObjLnk,
    Operations,
    ResourceDef,
    ResourceType,
    TypeLookup,
    Value,
    coerce,
)
from .path import Path, PathError, PathLevel
from .values import Record, records_from_mapping, records_to_dict

__all__ = [
    "AttributeUpdate",
    "Attributes",
    "ContentFormat",
    "ContentFormatError",
    "DdfError",
    "FormatEncodeError",
    "InvalidAttributesError",
    "InvalidValueError",
    "Link",
    "LinkFormatError",
    "ObjLnk",
    "ObjectDef",
    "ObjectRegistry",
    "Operations",
    "Path",
    "PathError",
    "PathLevel",
    "Record",
    "ResourceDef",
    "ResourceType",
    "TypeLookup",
    "UnsupportedFormatError",
    "Value",
    "builtin_definition",
    "coerce",
    "decode",
    "effective_attributes",
    "encode",
    "inherited_attributes",
    "load_builtin",
    "load_ddf",
    "parse_query",
    "records_from_mapping",
    "records_to_dict",
    "write_attributes",
]
