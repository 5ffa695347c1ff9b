"""The runtime object tree: validation, hooks, change tracking, execute arguments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aiolwm2m.lwm2m import InvalidValueError, Path
from aiolwm2m.lwm2m.tree import (
    BadArgumentsError,
    Instance,
    NotFoundError,
    ObjectTree,
    OperationNotAllowedError,
    parse_execute_arguments,
)


@pytest.fixture
def tree() -> ObjectTree:
    t = ObjectTree()
    t.add_instance(3303, 0, Instance({5700: 20.0, 5701: "Cel"}))
    return t


def test_values_are_validated_on_add_and_set(tree: ObjectTree) -> None:
    with pytest.raises(InvalidValueError):
        tree.add_instance(3303, 1, Instance({5700: "hot"}))
    assert not tree.exists(Path.parse("/3303/1"))
    tree.set("/3303/0/5700", 21)  # an int is a lossless Float
    assert tree.get(Path.parse("/3303/0/5700")) == 21.0
    with pytest.raises(InvalidValueError):
        tree.set("/3303/0/5700", "x")
    with pytest.raises(NotFoundError):
        tree.set("/3303/0/9999", 1)
    with pytest.raises(NotFoundError):
        tree.set("/3303/7/5700", 1.0)


def test_time_values_are_whole_utc_seconds(tree: ObjectTree) -> None:
    tree.add_instance(3, 0, Instance({13: datetime(2030, 1, 1, 0, 0, 0, 900, tzinfo=UTC)}))
    assert tree.get(Path.parse("/3/0/13")) == datetime(2030, 1, 1, tzinfo=UTC)


def test_multiple_resources(tree: ObjectTree) -> None:
    tree.add_instance(4, 0, Instance({0: 41, 1: {0: 41}, 2: 0, 4: {0: "a"}}))
    tree.set("/4/0/4/3", "b")
    assert tree.get(Path.parse("/4/0/4")) == {0: "a", 3: "b"}
    assert tree.get(Path.parse("/4/0/4/3")) == "b"
    with pytest.raises(InvalidValueError):
        tree.set("/4/0/4", "not a dict")
    with pytest.raises(NotFoundError):
        tree.set("/4/0/0/1", 41)  # single-instance resource


def test_changes_are_recorded_once_in_order(tree: ObjectTree) -> None:
    tree.take_changes()
    woken: list[int] = []
    tree.set_listener(lambda: woken.append(1))
    inst = tree.instance(3303, 0)
    inst.set(5700, 1.0)
    tree.set("/3303/0/5701", "K")
    inst.set(5700, 2.0)
    tree.mark_changed("/3303/0/5700")
    assert tree.take_changes() == [Path.parse("/3303/0/5700"), Path.parse("/3303/0/5701")]
    assert tree.take_changes() == []
    assert len(woken) == 4


def test_structure_and_instances(tree: ObjectTree) -> None:
    assert tree.take_structure_changed() is True
    assert tree.take_structure_changed() is False
    added = tree.add_instance(3303)
    assert added.path == Path.parse("/3303/1")
    assert tree.instance_ids() == {3303: [0, 1]}
    assert tree.versions() == {3303: "1.1"}
    tree.remove_instance(3303, 1)
    assert tree.take_structure_changed() is True
    with pytest.raises(OperationNotAllowedError):
        tree.add_instance(3303, 0)
    tree.add_instance(3, 0)
    with pytest.raises(OperationNotAllowedError):
        tree.add_instance(3, 1)  # Device is single-instance
    with pytest.raises(NotFoundError):
        tree.add_object(42424)


def test_read_hooks_and_subclass(tree: ObjectTree) -> None:
    class Sensor(Instance):
        def resource_ids(self) -> set[int]:
            return {5700, 5601}

        def read(self, resource_id: int) -> float:
            return {5700: 3.5, 5601: 1.0}[resource_id]

    tree.add_instance(3303, 5, Sensor())
    assert tree.get(Path.parse("/3303/5/5700")) == 3.5
    assert tree.readable_resources(3303, 5) == [5601, 5700]
    inst = tree.instance(3303, 0)
    inst.on_read[5700] = lambda: 9.0
    assert tree.get(Path.parse("/3303/0/5700")) == 9.0

    async def later() -> float:
        return 1.0

    inst.on_read[5700] = later
    with pytest.raises(OperationNotAllowedError):
        tree.get(Path.parse("/3303/0/5700"))  # async hooks only through Read


def test_exists(tree: ObjectTree) -> None:
    assert tree.exists(Path())
    assert tree.exists(Path.parse("/3303/0/5700"))
    assert not tree.exists(Path.parse("/3303/0/5750"))  # defined, no value
    assert not tree.exists(Path.parse("/3303/0/5700/0"))
    assert not tree.exists(Path.parse("/1"))


def test_user_ddf(tree: ObjectTree) -> None:
    ddf = b"""<?xml version="1.0" encoding="utf-8"?>
<LWM2M><Object ObjectType="MODefinition"><Name>Pump</Name><ObjectID>32769</ObjectID>
<ObjectVersion>1.0</ObjectVersion><MultipleInstances>Multiple</MultipleInstances>
<Mandatory>Optional</Mandatory><Resources>
<Item ID="0"><Name>Speed</Name><Operations>RW</Operations><MultipleInstances>Single
</MultipleInstances><Mandatory>Mandatory</Mandatory><Type>Integer</Type>
<RangeEnumeration>0..100</RangeEnumeration><Units></Units><Description></Description></Item>
</Resources></Object></LWM2M>"""
    (definition,) = tree.load_ddf(ddf)
    assert definition.id == 32769
    tree.add_instance(32769, 0, Instance({0: 50}))
    with pytest.raises(InvalidValueError):
        tree.set("/32769/0/0", 101)  # outside the declared range


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("5", {5: None}),
        ("2='10',3", {2: "10", 3: None}),
        ("0='',9='a b=c'", {0: "", 9: "a b=c"}),
        # CHAR includes "," (%x28-5B): a value may hold commas (Core 1.1.1 §6.3.5).
        ("0='a,b'", {0: "a,b"}),
        ("2,0='coap://h/p?x=1,2',3", {2: None, 0: "coap://h/p?x=1,2", 3: None}),
    ],
)
def test_execute_arguments(text: str, expected: dict[int, str | None]) -> None:
    assert parse_execute_arguments(text) == expected


@pytest.mark.parametrize(
    "text", ["a", "10", "1=2", "1='x", "1,1", ",", "1='a'b'", " 1", "1,", "1='a,b", "1='a'2"]
)
def test_execute_arguments_rejected(text: str) -> None:
    with pytest.raises(BadArgumentsError):
        parse_execute_arguments(text)


def test_trees_share_their_definitions_resource_tables(tree: ObjectTree) -> None:
    """A fleet builds thousands of trees: the resource table each object node looks
    definitions up in is the definition's own, never a copy per tree (a copy cost
    ~3 KB per device), and the definition's public view reads the same dict."""
    other = ObjectTree()
    other.add_instance(3303, 0, Instance({5700: 1.0}))
    node, twin = tree.objects[3303], other.objects[3303]
    assert node.resources is twin.resources is node.definition.table
    assert dict(node.definition.resources) == node.resources
