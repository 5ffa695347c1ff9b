from __future__ import annotations

import contextlib
from pathlib import Path as FsPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiolwm2m.lwm2m.ddf import (
    BUILTIN_FILES,
    DdfError,
    ObjectRegistry,
    builtin_definition,
    load_builtin,
    load_ddf,
)
from aiolwm2m.lwm2m.model import Operations, ResourceType
from aiolwm2m.lwm2m.path import Path

DEFINITIONS = FsPath(__file__).parents[3] / "src" / "aiolwm2m" / "lwm2m" / "definitions"


@pytest.mark.parametrize("filename", BUILTIN_FILES)
def test_every_shipped_file_loads(filename: str) -> None:
    definition = builtin_definition(filename)
    assert definition.resources
    assert definition.urn.startswith("urn:oma:lwm2m:")
    # Same result from the file path (user-facing API) as from package data.
    (from_path,) = load_ddf(DEFINITIONS / filename)
    assert from_path == definition


def test_shipped_files_match_directory() -> None:
    assert sorted(p.name for p in DEFINITIONS.glob("*.xml")) == sorted(BUILTIN_FILES)


@pytest.mark.parametrize(
    ("filename", "object_id", "version", "count"),
    [
        ("0-1_1.xml", 0, "1.1", 18),
        ("0.xml", 0, "1.2", 31),
        ("1-1_1.xml", 1, "1.1", 24),
        ("1.xml", 1, "1.2", 28),
        ("2.xml", 2, "1.1", 4),
        ("3.xml", 3, "1.2", 23),
        ("4.xml", 4, "1.3", 14),
        ("5.xml", 5, "1.2", 14),
        ("3303.xml", 3303, "1.1", 12),
        ("10252.xml", 10252, "1.0", 9),
    ],
)
def test_shipped_file_contents(filename: str, object_id: int, version: str, count: int) -> None:
    definition = builtin_definition(filename)
    assert (definition.id, definition.version, len(definition.resources)) == (
        object_id,
        version,
        count,
    )


def test_builtin_registry_defaults_to_lwm2m_1_1_objects() -> None:
    registry = load_builtin()
    assert [d.id for d in registry] == [0, 1, 2, 3, 4, 5, 3303, 10252]
    assert registry[0].version == "1.1" and registry[1].version == "1.1"
    device = registry[3]
    assert device.name == "Device" and not device.multiple and device.mandatory
    reboot = device.resources[4]
    assert reboot.type is ResourceType.NONE and reboot.operations is Operations.E
    power = device.resources[6]
    assert (
        power.multiple and power.type is ResourceType.INTEGER and power.range_enumeration == "0..7"
    )
    assert registry.type_of(Path(3, 0, 13)) is ResourceType.TIME
    assert registry.type_of(Path(3, 0, 6, 1)) is ResourceType.INTEGER
    assert registry.type_of(Path(3, 0)) is None
    assert registry.type_of(Path(9999, 0, 1)) is None
    assert registry[1].resources[12].type is ResourceType.TIME
    assert registry[1].resources[13].type is ResourceType.UNSIGNED
    # Security resources are not accessible to servers: empty <Operations>.
    assert registry[0].resources[0].operations is Operations.NONE
    assert registry[3303].resources[5700].type is ResourceType.FLOAT
    assert registry[10252].resources[1].range_enumeration == ""  # whitespace-only element


def test_registry_add_and_user_files(tmp_path: FsPath) -> None:
    registry = load_builtin()
    custom = tmp_path / "custom.xml"
    custom.write_bytes(_doc(_object(32769, _item(1, "Level", "Float", ops="RW"))))
    (loaded,) = registry.load(custom)
    assert loaded.id == 32769 and registry.type_of(Path(32769, 0, 1)) is ResourceType.FLOAT
    with pytest.raises(ValueError):
        registry.add(loaded, replace=False)
    assert 32769 not in ObjectRegistry() and len(registry.copy()) == len(registry)


def _item(rid: int, name: str, rtype: str, ops: str = "R", multiple: str = "Single") -> str:
    return (
        f'<Item ID="{rid}"><Name>{name}</Name><Operations>{ops}</Operations>'
        f"<MultipleInstances>{multiple}</MultipleInstances><Mandatory>Optional</Mandatory>"
        f"<Type>{rtype}</Type><RangeEnumeration></RangeEnumeration><Units></Units>"
        f"<Description>d</Description></Item>"
    )


def _object(oid: int, *items: str) -> str:
    return (
        f'<Object ObjectType="MODefinition"><Name>Custom</Name><Description1>x</Description1>'
        f"<ObjectID>{oid}</ObjectID><ObjectURN>urn:oma:lwm2m:x:{oid}</ObjectURN>"
        f"<MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory>"
        f"<Resources>{''.join(items)}</Resources><Description2></Description2></Object>"
    )


def _doc(*objects: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?><LWM2M>{"".join(objects)}</LWM2M>'.encode()


def test_multiple_objects_and_defaults() -> None:
    defs = load_ddf(
        _doc(_object(40000, _item(0, "A", "Corelnk")), _object(40001, _item(0, "B", "Objlnk")))
    )
    assert [d.id for d in defs] == [40000, 40001]
    assert defs[0].version == "1.0" and defs[0].multiple
    assert defs[0].resources[0].type is ResourceType.CORELNK


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"<LWM2M>",
        b"<NotLwM2M/>",
        b"<LWM2M></LWM2M>",
        _doc(_object(40000, _item(0, "A", "Strng"))),
        _doc(_object(40000, _item(0, "A", "String", ops="X"))),
        _doc(_object(40000, _item(0, "A", "String", multiple="Many"))),
        _doc(_object(40000, _item(0, "A", "String"), _item(0, "B", "String"))),
        _doc(_object(40000, _item(70000, "A", "String"))),
        _doc(_object(70000, _item(0, "A", "String"))),
        _doc(_object(40000).replace("<Resources></Resources>", "")),
        # Entity expansion ("billion laughs") must be refused, not expanded.
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
        b"<LWM2M>&b;</LWM2M>",
        b'<?xml version="1.0"?><!DOCTYPE l SYSTEM "http://example.invalid/x.dtd"><LWM2M/>',
    ],
)
def test_invalid_documents(document: bytes) -> None:
    with pytest.raises(DdfError):
        load_ddf(document)


def test_missing_file() -> None:
    with pytest.raises(DdfError):
        load_ddf("/nonexistent/definitely-not-here.xml")
    with pytest.raises(DdfError):
        builtin_definition("999.xml")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_ddf_error(data: bytes) -> None:
    with contextlib.suppress(DdfError):
        load_ddf(data)


@settings(max_examples=200)
@given(st.data())
def test_mutated_shipped_file_raises_only_ddf_error(data: st.DataObject) -> None:
    original = (DEFINITIONS / "3.xml").read_bytes()
    position = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=4))
    mutated = original[:position] + replacement + original[position + 1 :]
    with contextlib.suppress(DdfError):
        load_ddf(mutated)


def test_unknown_declared_encoding() -> None:
    with pytest.raises(DdfError):
        load_ddf(b'<?xml version="1.0" encoding="TF-8"?><LWM2M/>')
