"""LwM2M paths: ``/object/instance/resource/resource-instance``.

A path is the one identifier every layer agrees on (CoAP Uri-Path, SenML names,
link-format targets, attribute storage), so it is a small immutable value that
validates itself on construction: once a :class:`Path` exists, no caller has to
re-check id ranges or "holes" such as a resource without an instance.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from aiolwm2m.errors import DecodeError

__all__ = ["MAX_ID", "Path", "PathError", "PathLevel"]

#: Largest value of any LwM2M identifier (16-bit unsigned).
MAX_ID = 65535

# Five decimal digits at most: bounds the work int() does on hostile input and
# still admits every 16-bit value (leading zeros beyond that are not accepted).
_SEGMENT = re.compile(r"[0-9]{1,5}")


class PathError(DecodeError):
    """A path string, segment list or id tuple is not a valid LwM2M path."""


class PathLevel(IntEnum):
    """Depth of a path; used where rules differ per level (attributes, TLV nesting)."""

    ROOT = 0
    OBJECT = 1
    INSTANCE = 2
    RESOURCE = 3
    RESOURCE_INSTANCE = 4


_LEVELS = tuple(PathLevel)


@functools.total_ordering
@dataclass(frozen=True, slots=True)
class Path:
    """An LwM2M path; trailing components may be ``None`` but never a middle one.

    Ordering sorts a parent before its children and siblings numerically, which
    is the order servers and the spec examples expect in payloads.

    Object instance id 65535 is rejected: the spec reserves it (it is the
    "no instance" half of a null object link), so it can never address data.
    """

    object_id: int | None = None
    instance_id: int | None = None
    resource_id: int | None = None
    resource_instance_id: int | None = None

    def __post_init__(self) -> None:
        ids = (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)
        seen_none = False
        for position, value in enumerate(ids):
            if value is None:
                seen_none = True
                continue
            if seen_none:
                raise PathError(f"path has a gap before component {position}: {ids}")
            # bool is an int subclass; True as an id is always a caller bug.
            if type(value) is not int:
                raise PathError(f"path component {position} is not an int: {value!r}")
            if not 0 <= value <= MAX_ID:
                raise PathError(f"path component {position} out of range 0..{MAX_ID}: {value}")
        if self.instance_id == MAX_ID:
            raise PathError("object instance id 65535 is reserved")

    # -- construction -------------------------------------------------------

    @classmethod
    def of(cls, *ids: int) -> Path:
        """Build from positional ids: ``Path.of(3, 0, 1)``."""
        if len(ids) > 4:
            raise PathError(f"a path has at most 4 components, got {len(ids)}")
        return cls(*ids)

    @classmethod
    def parse(cls, text: str) -> Path:
        """Parse ``"/3/0/1"``; ``"/"`` and ``""`` are the root path.

        Only a leading slash is accepted (no trailing slash, no empty segment):
        the names we parse come from peers, and being strict here is what makes
        ``/3//0`` an error instead of silently meaning ``/3/0``.
        """
        if not isinstance(text, str):
            raise PathError(f"path must be a str, got {type(text).__name__}")
        if text in ("", "/"):
            return cls()
        if not text.startswith("/"):
            raise PathError(f"path must start with '/': {text!r}")
        return cls.from_segments(text[1:].split("/"))

    @classmethod
    def from_segments(cls, segments: Sequence[str]) -> Path:
        """Build from CoAP Uri-Path option values, e.g. ``["3", "0", "1"]``.

        A single empty segment is treated as the root because some CoAP stacks
        send one empty Uri-Path option for ``/``.
        """
        if len(segments) == 1 and segments[0] == "":
            return cls()
        if len(segments) > 4:
            raise PathError(f"a path has at most 4 components, got {len(segments)}")
        ids: list[int] = []
        for segment in segments:
            if not isinstance(segment, str) or _SEGMENT.fullmatch(segment) is None:
                raise PathError(f"invalid path segment: {segment!r}")
            ids.append(int(segment))
        return cls.of(*ids)

    # -- inspection ---------------------------------------------------------

    @property
    def ids(self) -> tuple[int, ...]:
        """The present components, outermost first."""
        # Unrolled: this runs for every record a decoder produces.
        if self.object_id is None:
            return ()
        if self.instance_id is None:
            return (self.object_id,)
        if self.resource_id is None:
            return (self.object_id, self.instance_id)
        if self.resource_instance_id is None:
            return (self.object_id, self.instance_id, self.resource_id)
        return (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)

    @property
    def level(self) -> PathLevel:
        return _LEVELS[len(self.ids)]

    @property
    def is_root(self) -> bool:
        return self.object_id is None

    @property
    def is_object(self) -> bool:
        return self.level is PathLevel.OBJECT

    @property
    def is_instance(self) -> bool:
        return self.level is PathLevel.INSTANCE

    @property
    def is_resource(self) -> bool:
        return self.level is PathLevel.RESOURCE

    @property
    def is_resource_instance(self) -> bool:
        return self.level is PathLevel.RESOURCE_INSTANCE

    def segments(self) -> tuple[str, ...]:
        """Uri-Path option values for this path (empty for the root)."""
        return tuple(str(i) for i in self.ids)

    def __str__(self) -> str:
        if self.is_root:
            return "/"
        return "/" + "/".join(self.segments())

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"

    # -- navigation ---------------------------------------------------------

    @property
    def parent(self) -> Path:
        """The enclosing path; the root is its own parent."""
        ids = self.ids
        return Path.of(*ids[:-1]) if ids else self

    def child(self, child_id: int) -> Path:
        """This path extended by one component."""
        ids = self.ids
        if len(ids) == 4:
            raise PathError(f"{self} has no children")
        return Path.of(*ids, child_id)

    def ancestors(self) -> Iterable[Path]:
        """Root first, down to (and including) this path."""
        ids = self.ids
        for depth in range(len(ids) + 1):
            yield Path.of(*ids[:depth])

    def contains(self, other: Path) -> bool:
        """True if ``other`` is this path or lies below it (root contains all)."""
        mine = self.ids
        return other.ids[: len(mine)] == mine

    def relative_to(self, base: Path) -> tuple[int, ...]:
        """Components of this path below ``base``; raises if not contained."""
        if not base.contains(self):
            raise PathError(f"{self} is not below {base}")
        return self.ids[len(base.ids) :]

    # -- ordering -----------------------------------------------------------

    def _sort_key(self) -> tuple[int, ...]:
        return self.ids

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return self._sort_key() < other._sort_key()
