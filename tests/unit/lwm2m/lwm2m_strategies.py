"""Hypothesis strategies for LwM2M records, shared by the format tests.

Records are generated from a random *schema* (resource id -> type, single or
multiple) so a consistent type lookup exists for the formats that need one.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from aiolwm2m.lwm2m.model import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    ObjLnk,
    ResourceType,
    Value,
    seconds_to_time,
)
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record

VALUE_TYPES = [t for t in ResourceType if t is not ResourceType.NONE]

# datetime's calendar (years 1..9999) bounds Time values.
MIN_TIME = -62135596800
MAX_TIME = 253402300799


def values(rtype: ResourceType, *, finite: bool = True) -> st.SearchStrategy[Value]:
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return st.text(max_size=40)
    if rtype is ResourceType.INTEGER:
        return st.integers(INT64_MIN, INT64_MAX)
    if rtype is ResourceType.UNSIGNED:
        return st.integers(0, UINT64_MAX)
    if rtype is ResourceType.FLOAT:
        return st.floats(allow_nan=False, allow_infinity=not finite)
    if rtype is ResourceType.BOOLEAN:
        return st.booleans()
    if rtype is ResourceType.OPAQUE:
        return st.binary(max_size=40)
    if rtype is ResourceType.TIME:
        return st.integers(MIN_TIME, MAX_TIME).map(seconds_to_time)
    if rtype is ResourceType.OBJLNK:
        return st.builds(ObjLnk, st.integers(0, 65535), st.integers(0, 65535))
    raise AssertionError(rtype)


@dataclass(frozen=True)
class Schema:
    """resource id -> (type, multiple), for one object id."""

    object_id: int
    resources: dict[int, tuple[ResourceType, bool]]

    def type_of(self, path: Path) -> ResourceType | None:
        if path.object_id != self.object_id or path.resource_id is None:
            return None
        entry = self.resources.get(path.resource_id)
        return entry[0] if entry else None


ids = st.integers(0, 65535)
instance_ids = st.integers(0, 65534)


@st.composite
def schemas(draw: st.DrawFn, types: list[ResourceType] | None = None) -> Schema:
    object_id = draw(ids)
    resource_ids = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    pool = types or VALUE_TYPES
    resources = {rid: (draw(st.sampled_from(pool)), draw(st.booleans())) for rid in resource_ids}
    return Schema(object_id, resources)


@st.composite
def instance_records(
    draw: st.DrawFn, schema: Schema, instance_id: int, *, finite: bool = True
) -> list[Record]:
    """Records of one object instance, grouped per resource (TLV order)."""
    out: list[Record] = []
    chosen = draw(
        st.lists(st.sampled_from(sorted(schema.resources)), min_size=1, max_size=5, unique=True)
    )
    for rid in chosen:
        rtype, multiple = schema.resources[rid]
        path = Path.of(schema.object_id, instance_id, rid)
        if multiple:
            for riid in draw(st.lists(ids, min_size=1, max_size=4, unique=True)):
                out.append(Record(path.child(riid), draw(values(rtype, finite=finite))))
        else:
            out.append(Record(path, draw(values(rtype, finite=finite))))
    return out


@st.composite
def object_records(draw: st.DrawFn, *, finite: bool = True) -> tuple[Schema, Path, list[Record]]:
    """(schema, base object path, records of several instances)."""
    schema = draw(schemas())
    records: list[Record] = []
    for iid in draw(st.lists(instance_ids, min_size=1, max_size=3, unique=True)):
        records.extend(draw(instance_records(schema, iid, finite=finite)))
    return schema, Path.of(schema.object_id), records


@st.composite
def based_records(draw: st.DrawFn, *, finite: bool = True) -> tuple[Schema, Path, list[Record]]:
    """Records below a base path of any level from object to resource instance."""
    schema, base, records = draw(object_records(finite=finite))
    depth = draw(st.integers(1, 4))
    if depth == 1:
        return schema, base, records
    target = draw(st.sampled_from(records)).path
    base = Path.of(*target.ids[:depth]) if depth <= target.level else target
    return schema, base, [r for r in records if base.contains(r.path)]


def with_times(records: list[Record]) -> st.SearchStrategy[list[Record]]:
    times = st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(0, 2**40)
    return st.lists(times, min_size=len(records), max_size=len(records)).map(
        lambda ts: [
            Record(r.path, r.value, None if t is None else float(t))
            for r, t in zip(records, ts, strict=True)
        ]
    )
