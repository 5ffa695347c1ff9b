"""Notification attributes (LwM2M 1.1.1 section 5.1.2): parsing, validation, inheritance.

Write-Attributes arrives as CoAP Uri-Query options (``pmin=10``, ``gt=20.5``,
``pmax`` alone to remove it), Discover reports them as link parameters, and
the observe scheduler needs the *effective* set for a path. All three are
pure functions over the immutable :class:`Attributes` value, so the engine
only has to store one ``{Path: Attributes}`` mapping per server.

Rules enforced (spec and draft-ietf-core-dynlink):

* pmin, pmax, epmin, epmax are non-negative integers (seconds);
  gt, lt, st are plain decimal numbers (:mod:`.decimal_text`), st non-negative;
* gt/lt/st only on resources or resource instances, and only numeric ones;
* pmin <= pmax, epmin <= epmax, lt < gt, lt + 2*st < gt within one level;
* effective values inherit object -> instance -> resource -> resource instance
  (most specific wins), with the server's Default Minimum/Maximum Period
  (Server object resources 2 and 3) when no level sets pmin/pmax.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from aiolwm2m.errors import DecodeError

from .decimal_text import parse_decimal
from .model import ResourceType
from .path import Path, PathLevel

__all__ = [
    "NOTIFICATION_ATTRIBUTES",
    "READ_ONLY_ATTRIBUTES",
    "AttributeUpdate",
    "Attributes",
    "InvalidAttributesError",
    "effective_attributes",
    "inherited_attributes",
    "parse_query",
    "write_attributes",
]

NOTIFICATION_ATTRIBUTES: tuple[str, ...] = ("pmin", "pmax", "gt", "lt", "st", "epmin", "epmax")
_INTEGER_ATTRIBUTES = frozenset({"pmin", "pmax", "epmin", "epmax"})
_VALUE_ATTRIBUTES = frozenset({"gt", "lt", "st"})
#: Attributes a client reports in Discover but a server may not write.
READ_ONLY_ATTRIBUTES = frozenset({"dim", "ver", "ssid", "uri", "lwm2m"})

_UNSIGNED_TEXT = re.compile(r"[0-9]{1,10}")


class InvalidAttributesError(DecodeError):
    """A Write-Attributes request is malformed or breaks the attribute rules (4.00)."""


@dataclass(frozen=True, slots=True)
class Attributes:
    """Notification attributes set at one level (or the effective result)."""

    pmin: int | None = None
    pmax: int | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None
    epmin: int | None = None
    epmax: int | None = None

    def items(self) -> list[tuple[str, int | float]]:
        """The attributes that are set, in canonical order."""
        out: list[tuple[str, int | float]] = []
        for name in NOTIFICATION_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None:
                out.append((name, value))
        return out

    def __bool__(self) -> bool:
        return bool(self.items())

    def as_dict(self) -> dict[str, int | float]:
        """For Discover link parameters (see ``linkformat.discover_links``)."""
        return dict(self.items())

    def to_query(self) -> list[str]:
        """Uri-Query option values that would write these attributes."""
        from .linkformat import format_value  # local: linkformat is a heavier module

        return [f"{name}={format_value(value)}" for name, value in self.items()]

    def overlay(self, other: Attributes) -> Attributes:
        """``other``'s set attributes on top of ours (inheritance step)."""
        return Attributes(
            pmin=self.pmin if other.pmin is None else other.pmin,
            pmax=self.pmax if other.pmax is None else other.pmax,
            gt=self.gt if other.gt is None else other.gt,
            lt=self.lt if other.lt is None else other.lt,
            st=self.st if other.st is None else other.st,
            epmin=self.epmin if other.epmin is None else other.epmin,
            epmax=self.epmax if other.epmax is None else other.epmax,
        )

    def validate(self) -> None:
        """Check the combination rules; raise :class:`InvalidAttributesError`."""
        for name in _INTEGER_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise InvalidAttributesError(f"{name} must be a non-negative integer: {value!r}")
        for name in _VALUE_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise InvalidAttributesError(f"{name} must be a number: {value!r}")
        if self.st is not None and self.st < 0:
            raise InvalidAttributesError("st must not be negative")
        if self.pmin is not None and self.pmax is not None and self.pmin > self.pmax:
            raise InvalidAttributesError(f"pmin ({self.pmin}) must not exceed pmax ({self.pmax})")
        if self.epmin is not None and self.epmax is not None and self.epmin > self.epmax:
            raise InvalidAttributesError(
                f"epmin ({self.epmin}) must not exceed epmax ({self.epmax})"
            )
        if self.lt is not None and self.gt is not None:
            if not self.lt < self.gt:
                raise InvalidAttributesError(f"lt ({self.lt}) must be less than gt ({self.gt})")
            if self.st is not None and not self.lt + 2 * self.st < self.gt:
                raise InvalidAttributesError("lt + 2*st must be less than gt")


@dataclass(frozen=True, slots=True)
class AttributeUpdate:
    """A parsed Write-Attributes request: values to set and names to remove."""

    values: Attributes = Attributes()
    cleared: frozenset[str] = frozenset()

    def apply(self, current: Attributes) -> Attributes:
        """``current`` with removals then assignments applied (not yet validated)."""
        cleared = replace(current, **dict.fromkeys(self.cleared))
        return cleared.overlay(self.values)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.values.items()) | self.cleared


def _split(query: str | Sequence[str]) -> Iterable[str]:
    parts = [query] if isinstance(query, str) else list(query)
    for part in parts:
        if not isinstance(part, str):
            raise InvalidAttributesError(f"query parameter must be a str: {part!r}")
        yield from (piece for piece in part.split("&") if piece)


def parse_query(query: str | Sequence[str]) -> AttributeUpdate:
    """Parse ``"pmin=10&gt=20.5"`` or Uri-Query option values ``["pmin=10", "gt="]``.

    A name without a value (``pmax``) or with an empty one (``gt=``) removes
    the attribute. Unknown, read-only and repeated names are errors because
    the spec answers them with 4.00 rather than ignoring them.
    """
    values: dict[str, int | float] = {}
    cleared: set[str] = set()
    for piece in _split(query):
        name, sep, text = piece.partition("=")
        if name in READ_ONLY_ATTRIBUTES:
            raise InvalidAttributesError(f"attribute {name!r} is read-only")
        if name not in NOTIFICATION_ATTRIBUTES:
            raise InvalidAttributesError(f"unknown attribute {name[:20]!r}")
        if name in values or name in cleared:
            raise InvalidAttributesError(f"attribute {name!r} given twice")
        if not sep or text == "":
            cleared.add(name)
            continue
        if name in _INTEGER_ATTRIBUTES:
            if _UNSIGNED_TEXT.fullmatch(text) is None:
                raise InvalidAttributesError(
                    f"{name} must be a non-negative integer: {text[:20]!r}"
                )
            values[name] = int(text)
        else:
            try:
                number = parse_decimal(text)
            except ValueError as exc:
                raise InvalidAttributesError(f"{name}: {exc}") from None
            if name == "st" and number < 0:
                raise InvalidAttributesError("st must not be negative")
            values[name] = number
    return AttributeUpdate(Attributes(**values), frozenset(cleared))  # type: ignore[arg-type]


def write_attributes(
    current: Attributes,
    update: AttributeUpdate,
    path: Path,
    resource_type: ResourceType | None = None,
) -> Attributes:
    """The attributes stored at ``path`` after a Write-Attributes request.

    ``resource_type`` (when ``path`` is a resource or resource instance and
    its definition is known) rejects gt/lt/st on non-numeric resources. The
    *result* is validated, so ``pmin=20`` on a level that already has
    ``pmax=10`` is refused just like sending both at once.
    """
    if path.level is PathLevel.ROOT:
        raise InvalidAttributesError("attributes cannot be written on the root path")
    value_names = {name for name, _ in update.values.items()} & _VALUE_ATTRIBUTES
    if value_names:
        if path.level < PathLevel.RESOURCE:
            raise InvalidAttributesError(
                f"{sorted(value_names)} apply to resources only, not {path}"
            )
        if resource_type is not None and not resource_type.is_numeric:
            raise InvalidAttributesError(
                f"{sorted(value_names)} apply to numeric resources; {path} is {resource_type.value}"
            )
    result = update.apply(current)
    result.validate()
    return result


def inherited_attributes(path: Path, stored: Mapping[Path, Attributes]) -> Attributes:
    """The attributes attached to ``path`` and inherited from the levels above it.

    Levels are overlaid from the object down to ``path`` itself, so the closest
    level wins per attribute (Core 1.1.1 §5.1.1); gt, lt and st belong to
    resources and are not inherited from an object or instance. What a
    Discover of a resource shows, as Wakaama's and Zephyr's clients do, and
    what :func:`effective_attributes` completes with the server's defaults.
    """
    result = Attributes()
    for ancestor in path.ancestors():
        if ancestor.is_root:
            continue
        level_attrs = stored.get(ancestor)
        if level_attrs is None:
            continue
        if ancestor.level < PathLevel.RESOURCE:
            level_attrs = replace(level_attrs, gt=None, lt=None, st=None)
        result = result.overlay(level_attrs)
    return result


def effective_attributes(
    path: Path,
    stored: Mapping[Path, Attributes],
    *,
    default_pmin: int | None = None,
    default_pmax: int | None = None,
) -> Attributes:
    """The attributes that govern notifications for ``path``.

    The :func:`inherited_attributes` of ``path``; then unset pmin falls back
    to the server's Default Minimum Period (resource 1/x/2, 0 when absent)
    and unset pmax to its Default Maximum Period (1/x/3, none when absent).
    A pmax (epmax) smaller than the effective pmin (epmin) can arise from
    different levels; it is dropped because the minimum is the rate limit
    the server asked for, and honouring both is impossible.
    """
    result = inherited_attributes(path, stored)
    if result.pmin is None:
        result = replace(result, pmin=default_pmin if default_pmin is not None else 0)
    if result.pmax is None and default_pmax is not None:
        result = replace(result, pmax=default_pmax)
    assert result.pmin is not None
    if result.pmax is not None and result.pmax < result.pmin:
        result = replace(result, pmax=None)
    if result.epmin is not None and result.epmax is not None and result.epmax < result.epmin:
        result = replace(result, epmax=None)
    return result
