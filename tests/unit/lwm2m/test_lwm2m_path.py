from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiolwm2m.errors import DecodeError
from aiolwm2m.lwm2m.path import Path, PathError, PathLevel


def test_parse_and_str() -> None:
    path = Path.parse("/3/0/1")
    assert path == Path(3, 0, 1)
    assert str(path) == "/3/0/1"
    assert path.level is PathLevel.RESOURCE
    assert path.segments() == ("3", "0", "1")
    assert str(Path()) == "/"
    assert Path.parse("/") == Path.parse("") == Path()


def test_from_segments() -> None:
    assert Path.from_segments(["3", "0", "1", "2"]) == Path(3, 0, 1, 2)
    assert Path.from_segments([]) == Path()
    assert Path.from_segments([""]) == Path()


@pytest.mark.parametrize(
    "text",
    [
        "3/0",
        "/3/",
        "/3//0",
        "/a",
        "/-1",
        "/65536",
        "/1/2/3/4/5",
        "/ 1",
        "/1_0",
        "/٣",
        "/+1",
        "/000001",
    ],
)
def test_invalid_strings(text: str) -> None:
    with pytest.raises(PathError):
        Path.parse(text)


def test_path_error_is_decode_error() -> None:
    assert issubclass(PathError, DecodeError)


def test_reserved_instance_id() -> None:
    with pytest.raises(PathError):
        Path(3, 65535)
    assert Path(65535).object_id == 65535
    assert Path(3, 0, 65535, 65535).resource_instance_id == 65535


def test_no_gaps_and_types() -> None:
    with pytest.raises(PathError):
        Path(3, None, 1)
    with pytest.raises(PathError):
        Path(True)  # type: ignore[arg-type]
    with pytest.raises(PathError):
        Path.of(1, 2, 3, 4, 5)


def test_contains_and_navigation() -> None:
    root, obj, inst, res = Path(), Path(3), Path(3, 0), Path(3, 0, 6)
    assert root.contains(res) and obj.contains(res) and res.contains(res)
    assert not res.contains(inst)
    assert not Path(3, 1).contains(res)
    assert not Path(30).contains(Path(3))
    assert res.parent == inst and root.parent == root
    assert inst.child(6) == res
    assert list(res.ancestors()) == [root, obj, inst, res]
    assert Path(3, 0, 6, 1).relative_to(inst) == (6, 1)
    with pytest.raises(PathError):
        Path(4).relative_to(inst)


def test_ordering() -> None:
    paths = [Path(3, 0, 10), Path(3, 0, 2), Path(3), Path(), Path(3, 0, 2, 1), Path(1, 0)]
    assert sorted(paths) == [
        Path(),
        Path(1, 0),
        Path(3),
        Path(3, 0, 2),
        Path(3, 0, 2, 1),
        Path(3, 0, 10),
    ]


paths = st.lists(st.integers(0, 65534), max_size=4).map(lambda ids: Path.of(*ids))


@given(paths)
def test_round_trips(path: Path) -> None:
    assert Path.parse(str(path)) == path
    assert Path.from_segments(list(path.segments())) == path
    assert hash(Path.parse(str(path))) == hash(path)


@given(st.text(max_size=30))
def test_parse_never_crashes(text: str) -> None:
    with contextlib.suppress(PathError):
        Path.parse(text)
