"""CoRE link-format (RFC 6690, content format 40) for Register and Discover.

Two consumers with different needs share one small codec:

* Register / Update payloads list objects, instances and object versions::

      </>;rt="oma.lwm2m";ct=110,</1/0>,</3>;ver=1.1,</3/0>

* Discover answers list paths with their attributes::

      </3/0>;pmin=10,</3/0/1>,</3/0/6>;dim=8,</3/0/7>;gt=50;lt=42.2

The decoder is a hand-written scanner rather than a ``split(",")`` because
quoted parameter values may contain commas, semicolons and escaped quotes.
It is deliberately lenient about blanks around separators (seen in the wild)
and strict about everything that would change the meaning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .decimal_text import plain_decimal
from .formats.errors import FormatEncodeError, LinkFormatError
from .path import Path, PathError

__all__ = [
    "Link",
    "LinkFormatError",
    "ObjectEntry",
    "Registration",
    "decode",
    "discover_links",
    "encode",
    "format_value",
    "parse_registration",
    "registration_links",
]

# RFC 6690 section 2: parmname and ptoken character sets.
_PARMNAME = re.compile(r"[A-Za-z0-9!#$&+\-.^_`|~]+")
_PTOKEN = re.compile(r"[A-Za-z0-9!#$%&'()*+\-./:<=>?@\[\]^_`{|}~]+")
_TARGET_FORBIDDEN = re.compile(r"[<>\"\s\x00-\x1f\x7f]")
# Parameters conventionally quoted even when their value is a ptoken. ``uri``
# (the LwM2M Server URI of a Security instance in a Bootstrap-Discover answer,
# Core 1.1.1 §6.1.7.3) is a string attribute: the spec's examples quote it and
# Bootstrap-Servers such as Leshan's parse it as a quoted-string only.
_ALWAYS_QUOTED = frozenset({"rt", "if", "rel", "rev", "title", "anchor", "uri"})
_BLANKS = " \t\r\n"

#: Objects the spec excludes from the Register object list (Security, OSCORE).
NOT_REGISTERED = frozenset({0, 21})


@dataclass(frozen=True, slots=True)
class Link:
    """One link-value: a target URI and its ordered parameters.

    A parameter value of ``None`` is a bare flag (``;obs``); parameters may
    repeat, which is why they are pairs and not a dict.
    """

    target: str
    params: tuple[tuple[str, str | None], ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first parameter called ``name``."""
        for key, value in self.params:
            if key == name:
                return value
        return default

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.params)

    def path(self, root: str = "") -> Path:
        """The LwM2M path of the target, after stripping an alternate root path."""
        target = self.target
        prefix = root.rstrip("/")
        if prefix:
            if target != prefix and not target.startswith(prefix + "/"):
                raise LinkFormatError(f"link {target!r} is not below the root path {root!r}")
            target = target[len(prefix) :] or "/"
        try:
            return Path.parse(target)
        except PathError as exc:
            raise LinkFormatError(f"link target is not an LwM2M path: {target!r}") from exc


def format_value(value: object) -> str:
    """Attribute values as LwM2M writes them: ints plain, integral floats without ``.0``.

    Other floats are plain decimals, never ``1e-05``: gt/lt/st are Float
    attributes written as decimal numbers (Core 1.1.1 §5.1.2).
    """
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatEncodeError(f"cannot format {value!r} as a link attribute")
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return plain_decimal(value)
    return str(value)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_link(link: Link) -> str:
    if _TARGET_FORBIDDEN.search(link.target):
        raise FormatEncodeError(f"invalid link target {link.target!r}")
    parts = [f"<{link.target}>"]
    for name, value in link.params:
        if _PARMNAME.fullmatch(name) is None:
            raise FormatEncodeError(f"invalid link parameter name {name!r}")
        if value is None:
            parts.append(f";{name}")
        elif name in _ALWAYS_QUOTED or _PTOKEN.fullmatch(value) is None:
            parts.append(f";{name}={_quote(value)}")
        else:
            parts.append(f";{name}={value}")
    return "".join(parts)


def encode(links: Iterable[Link]) -> bytes:
    """Serialise links; raises :class:`FormatEncodeError` for unwritable targets/names."""
    return ",".join(_format_link(link) for link in links).encode("utf-8")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _BLANKS:
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = self.peek() or "end of input"
            raise LinkFormatError(f"expected {char!r} at offset {self.pos}, found {found!r}")
        self.pos += 1

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise LinkFormatError(f"expected {what} at offset {self.pos}")
        self.pos = found.end()
        return found.group(0)

    def target(self) -> str:
        self.expect("<")
        end = self.text.find(">", self.pos)
        if end < 0:
            raise LinkFormatError("unterminated link target")
        target = self.text[self.pos : end]
        if _TARGET_FORBIDDEN.search(target):
            raise LinkFormatError(f"invalid character in link target {target[:40]!r}")
        self.pos = end + 1
        return target

    def quoted(self) -> str:
        self.expect('"')
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise LinkFormatError("unterminated quoted string")
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if self.pos >= len(self.text):
                    raise LinkFormatError("unterminated escape in quoted string")
                char = self.text[self.pos]
                self.pos += 1
            out.append(char)

    def param(self) -> tuple[str, str | None]:
        self.skip_blanks()
        name = self.match(_PARMNAME, "a parameter name")
        self.skip_blanks()
        if self.peek() != "=":
            return name, None
        self.pos += 1
        self.skip_blanks()
        if self.peek() == '"':
            return name, self.quoted()
        if self.peek() in ("", ",", ";") or self.peek() in _BLANKS:
            return name, ""
        return name, self.match(_PTOKEN, "a parameter value")


def decode(payload: bytes | str) -> list[Link]:
    """Parse a link-format document; an empty payload is an empty list."""
    if isinstance(payload, str):
        text = payload
    else:
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LinkFormatError(f"link-format payload is not UTF-8: {exc}") from None
    scanner = _Scanner(text)
    links: list[Link] = []
    scanner.skip_blanks()
    if not scanner.peek():
        return links
    while True:
        scanner.skip_blanks()
        target = scanner.target()
        params: list[tuple[str, str | None]] = []
        scanner.skip_blanks()
        while scanner.peek() == ";":
            scanner.pos += 1
            params.append(scanner.param())
            scanner.skip_blanks()
        links.append(Link(target, tuple(params)))
        if not scanner.peek():
            return links
        scanner.expect(",")


# -- LwM2M registration -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """An object as announced at registration: its version and instance ids."""

    version: str | None = None
    instances: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Registration:
    """What a Register/Update object list says (server side / testbed view)."""

    root: str = ""
    content_formats: tuple[int, ...] = ()
    objects: Mapping[int, ObjectEntry] = field(default_factory=dict)


def registration_links(
    instances: Mapping[int, Iterable[int]],
    versions: Mapping[int, str] | None = None,
    *,
    content_formats: Sequence[int] = (),
    root: str = "",
) -> list[Link]:
    """The Register/Update object list (LwM2M 1.1.1 section 6.2.1).

    Security (0) and OSCORE (21) are left out as the spec requires. An object
    version other than 1.0 is announced on the object link (``</3>;ver=1.1``);
    an object with no instance and default version is still listed as ``</n>``
    so the server knows it may Create instances. The ``rt="oma.lwm2m"`` root
    link is emitted when there is an alternate root path or content formats
    to announce (multiple formats go space-separated in one quoted ``ct``).
    """
    versions = versions or {}
    prefix = root.rstrip("/")
    links: list[Link] = []
    if prefix or content_formats:
        root_params: list[tuple[str, str | None]] = [("rt", "oma.lwm2m")]
        if content_formats:
            root_params.append(("ct", " ".join(str(int(cf)) for cf in content_formats)))
        links.append(Link(prefix or "/", tuple(root_params)))
    for object_id in sorted(instances):
        if object_id in NOT_REGISTERED:
            continue
        instance_ids = sorted(set(instances[object_id]))
        version = versions.get(object_id)
        if version is not None and version != "1.0":
            links.append(Link(f"{prefix}/{object_id}", (("ver", version),)))
        elif not instance_ids:
            links.append(Link(f"{prefix}/{object_id}"))
        links.extend(Link(f"{prefix}/{object_id}/{iid}") for iid in instance_ids)
    return links


def parse_registration(links: Sequence[Link]) -> Registration:
    """Interpret a Register/Update payload (the inverse of :func:`registration_links`)."""
    root = ""
    content_formats: tuple[int, ...] = ()
    for link in links:
        if link.get("rt") == "oma.lwm2m":
            root = "" if link.target == "/" else link.target.rstrip("/")
            ct = link.get("ct")
            if ct:
                try:
                    content_formats = tuple(int(part) for part in ct.split())
                except ValueError:
                    raise LinkFormatError(f"invalid ct value {ct!r}") from None
    objects: dict[int, ObjectEntry] = {}
    for link in links:
        if link.get("rt") == "oma.lwm2m":
            continue
        path = link.path(root)
        if path.object_id is None or path.level > 2:
            raise LinkFormatError(f"registration lists {path}, not an object or instance")
        entry = objects.get(path.object_id, ObjectEntry())
        version = link.get("ver", entry.version)
        instances = entry.instances
        if path.instance_id is not None:
            instances = (*instances, path.instance_id)
        objects[path.object_id] = ObjectEntry(version, instances)
    return Registration(root, content_formats, objects)


# -- LwM2M discover -------------------------------------------------------------------


def discover_links(
    entries: Iterable[tuple[Path, Mapping[str, object]]], *, root: str = ""
) -> list[Link]:
    """Discover answer links: each path with its attributes (``dim``, ``ver``, ``pmin``...).

    Attribute values are formatted with :func:`format_value`; ``None`` values
    are skipped so callers can pass optional attributes straight through.
    """
    prefix = root.rstrip("/")
    links: list[Link] = []
    for path, attributes in entries:
        params = tuple(
            (name, format_value(value)) for name, value in attributes.items() if value is not None
        )
        links.append(Link(f"{prefix}{path}", params))
    return links
