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
from enum import IntEnum

from aiolwm2m.errors import DecodeError

__all__ = ["MAX_ID", "Path", "PathError", "PathLevel", "interned_path"]

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


# Paths by their text (SenML names), their Uri-Path segments and their ids: a
# peer names the same few paths again and again, and a Path is immutable, so
# the regex, int() and validation run once per distinct name and equal paths
# made inside the library are one object. Bounded: a hostile peer naming
# endless paths only ever costs this many entries.
_PARSED: dict[object, Path] = {}
_PARSED_LIMIT = 4096


@functools.total_ordering
class Path:
    """An LwM2M path; trailing components may be ``None`` but never a middle one.

    Ordering sorts a parent before its children and siblings numerically, which
    is the order servers and the spec examples expect in payloads.

    Object instance id 65535 is rejected: the spec reserves it (it is the
    "no instance" half of a null object link), so it can never address data.

    The components are kept as one tuple (:attr:`ids`), which is what equality,
    hashing, ordering and containment compare; paths are immutable, hashable
    and shared freely (decoders hand out the same object for the same name).
    """

    __slots__ = ("_text", "ids")
    ids: tuple[int, ...]
    _text: str | None

    def __init__(
        self,
        object_id: int | None = None,
        instance_id: int | None = None,
        resource_id: int | None = None,
        resource_instance_id: int | None = None,
    ) -> None:
        given = (object_id, instance_id, resource_id, resource_instance_id)
        ids: list[int] = []
        for position, value in enumerate(given):
            if value is None:
                if any(later is not None for later in given[position + 1 :]):
                    raise PathError(f"path has a gap before component {position + 1}: {given}")
                break
            # bool is an int subclass; True as an id is always a caller bug.
            if type(value) is not int:
                raise PathError(f"path component {position} is not an int: {value!r}")
            if not 0 <= value <= MAX_ID:
                raise PathError(f"path component {position} out of range 0..{MAX_ID}: {value}")
            ids.append(value)
        if instance_id == MAX_ID:
            raise PathError("object instance id 65535 is reserved")
        object.__setattr__(self, "ids", tuple(ids))
        object.__setattr__(self, "_text", None)

    @classmethod
    def _trusted(cls, ids: tuple[int, ...]) -> Path:
        """The path of ids already known to be valid (no checks: internal use only)."""
        path = _PARSED.get(ids)
        if path is None:
            path = object.__new__(cls)
            object.__setattr__(path, "ids", ids)
            object.__setattr__(path, "_text", None)
            _remember(ids, path)
        return path

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Path is immutable (cannot set {name})")

    def __reduce__(self) -> tuple[type[Path], tuple[int, ...]]:
        return (Path, self.ids)

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
        found = _PARSED.get(text)
        if found is not None:
            return found
        if text in ("", "/"):
            return cls()
        if not text.startswith("/"):
            raise PathError(f"path must start with '/': {text!r}")
        return _remember(text, cls.from_segments(text[1:].split("/")))

    @classmethod
    def from_segments(cls, segments: Sequence[str]) -> Path:
        """Build from CoAP Uri-Path option values, e.g. ``["3", "0", "1"]``.

        A single empty segment is treated as the root because some CoAP stacks
        send one empty Uri-Path option for ``/``.
        """
        key = tuple(segments)
        try:
            found = _PARSED.get(key)
        except TypeError:  # an unhashable segment: refused below like any non-string
            found = None
        if found is not None:
            return found
        if len(segments) == 1 and segments[0] == "":
            return cls()
        if len(segments) > 4:
            raise PathError(f"a path has at most 4 components, got {len(segments)}")
        ids: list[int] = []
        for segment in segments:
            if not isinstance(segment, str) or _SEGMENT.fullmatch(segment) is None:
                raise PathError(f"invalid path segment: {segment!r}")
            ids.append(int(segment))
        return _remember(key, cls.of(*ids))

    # -- inspection ---------------------------------------------------------

    @property
    def object_id(self) -> int | None:
        ids = self.ids
        return ids[0] if ids else None

    @property
    def instance_id(self) -> int | None:
        ids = self.ids
        return ids[1] if len(ids) > 1 else None

    @property
    def resource_id(self) -> int | None:
        ids = self.ids
        return ids[2] if len(ids) > 2 else None

    @property
    def resource_instance_id(self) -> int | None:
        ids = self.ids
        return ids[3] if len(ids) > 3 else None

    @property
    def level(self) -> PathLevel:
        return _LEVELS[len(self.ids)]

    @property
    def is_root(self) -> bool:
        return not self.ids

    @property
    def is_object(self) -> bool:
        return len(self.ids) == 1

    @property
    def is_instance(self) -> bool:
        return len(self.ids) == 2

    @property
    def is_resource(self) -> bool:
        return len(self.ids) == 3

    @property
    def is_resource_instance(self) -> bool:
        return len(self.ids) == 4

    def segments(self) -> tuple[str, ...]:
        """Uri-Path option values for this path (empty for the root)."""
        return tuple(map(str, self.ids))

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = "/" + "/".join(map(str, self.ids))
            object.__setattr__(self, "_text", text)
        return text

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Path):
            return self.ids == other.ids
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.ids)

    # -- navigation ---------------------------------------------------------

    @property
    def parent(self) -> Path:
        """The enclosing path; the root is its own parent."""
        ids = self.ids
        return Path._trusted(ids[:-1]) if ids else self

    def child(self, child_id: int) -> Path:
        """This path extended by one component."""
        ids = self.ids
        if len(ids) == 4:
            raise PathError(f"{self} has no children")
        if type(child_id) is not int or not 0 <= child_id <= MAX_ID:
            raise PathError(f"path component {len(ids)} out of range 0..{MAX_ID}: {child_id!r}")
        if len(ids) == 1 and child_id == MAX_ID:
            raise PathError("object instance id 65535 is reserved")
        return Path._trusted((*ids, child_id))

    def ancestors(self) -> Iterable[Path]:
        """Root first, down to (and including) this path."""
        ids = self.ids
        for depth in range(len(ids) + 1):
            yield Path._trusted(ids[:depth])

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

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return self.ids < other.ids


#: The interned path for an ids tuple made by the library, or None (not yet seen).
interned_path = _PARSED.get


def _remember(key: object, path: Path) -> Path:
    if len(_PARSED) >= _PARSED_LIMIT:
        _PARSED.clear()
    _PARSED[key] = path
    return path
