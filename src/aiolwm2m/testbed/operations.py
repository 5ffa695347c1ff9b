"""Server side of the LwM2M device-management operations (sans-IO).

Each builder returns an :class:`OperationRequest`: the CoAP request exactly as
the LwM2M 1.1.1 Transport binding (section 6.3/6.4) lays it out, plus what is
needed to read the answer (the path the payload is relative to). The answer
is turned into an :class:`OperationResult` by :func:`decode_result`.

Why results and not exceptions for 4.xx/5.xx: the testbed exists to provoke
and check error answers (4.04 for a bad path, 4.15 for an unsupported
format…), so an error code is data a test asserts on. Only a missing answer
(timeout, RST, network error) is exceptional: :class:`TransportError`.

Mapping of operations to CoAP (LwM2M 1.1.1 Transport, table 6.4.3 and 6.3):

=========================  ======  =========================================
Read                        GET     Accept: requested format (optional)
Discover                    GET     Accept: 40 (link-format)
Write (replace)             PUT     Content-Format, payload
Write (partial update)      POST    Content-Format, payload
Write-Attributes            PUT     Uri-Query ``pmin=10`` (``pmax`` alone: remove)
Execute                     POST    optional text/plain arguments
Create                      POST    on the object, Content-Format, payload
Delete                      DELETE
Read-Composite              FETCH   on ``/``, SenML path list, Accept
Write-Composite             iPATCH  on ``/``, SenML / LwM2M CBOR values
Observe (-Composite)        GET / FETCH with Observe=0
Cancel Observe (active)     the same request with Observe=1 and the same token
=========================  ======  =========================================
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiolwm2m.coap.layer import Outcome
from aiolwm2m.coap.message import (
    Code,
    Message,
    OptionNumber,
    code_str,
    encode_uint,
    is_success,
)
from aiolwm2m.errors import DecodeError, Lwm2mError
from aiolwm2m.lwm2m import formats, linkformat
from aiolwm2m.lwm2m.formats import ContentFormat, senml_cbor, senml_json
from aiolwm2m.lwm2m.linkformat import Link
from aiolwm2m.lwm2m.model import ObjLnk, TypeLookup, Value
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.values import Record, records_to_dict

__all__ = [
    "FORMAT_NAMES",
    "Op",
    "OperationError",
    "OperationRequest",
    "OperationResult",
    "TransportError",
    "UnknownEndpointError",
    "cancel_observe_request",
    "create_request",
    "decode_result",
    "delete_request",
    "discover_request",
    "execute_request",
    "format_number",
    "jsonable",
    "observe_composite_request",
    "observe_request",
    "read_composite_request",
    "read_request",
    "write_attributes_request",
    "write_composite_request",
    "write_request",
]


class Op(enum.Enum):
    READ = "read"
    DISCOVER = "discover"
    WRITE = "write"
    WRITE_ATTRIBUTES = "write-attributes"
    EXECUTE = "execute"
    CREATE = "create"
    DELETE = "delete"
    READ_COMPOSITE = "read-composite"
    WRITE_COMPOSITE = "write-composite"
    OBSERVE = "observe"
    OBSERVE_COMPOSITE = "observe-composite"
    CANCEL_OBSERVE = "cancel-observe"

    @property
    def observes(self) -> bool:
        """The request opens an observation (its exchange stays open for notifications)."""
        return self in (Op.OBSERVE, Op.OBSERVE_COMPOSITE)


#: Short names for content formats (CLI arguments and readable output).
FORMAT_NAMES: dict[str, ContentFormat] = {
    "text": ContentFormat.TEXT,
    "link": ContentFormat.LINK_FORMAT,
    "opaque": ContentFormat.OPAQUE,
    "senml-json": ContentFormat.SENML_JSON,
    "senml-cbor": ContentFormat.SENML_CBOR,
    "tlv": ContentFormat.TLV,
    "oma-json": ContentFormat.OMA_JSON,
    "lwm2m-cbor": ContentFormat.LWM2M_CBOR,
}
_NAME_OF: dict[int, str] = {int(number): name for name, number in FORMAT_NAMES.items()}

# Formats a Read-Composite / Observe-Composite path list can be written in.
_PATH_LIST_FORMATS = {
    ContentFormat.SENML_JSON: senml_json.encode_paths,
    ContentFormat.SENML_CBOR: senml_cbor.encode_paths,
}


class OperationError(Lwm2mError, ValueError):
    """The operation cannot be expressed as asked (bad path, unencodable values…)."""


class UnknownEndpointError(OperationError, KeyError):
    """No client is registered under that endpoint name (also a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class TransportError(Lwm2mError):
    """The request got no answer: timeout, RST from the client, or a network error."""

    def __init__(self, op: Op, outcome: Outcome | None, detail: str = "") -> None:
        self.op = op
        self.outcome = outcome
        what = outcome.value if outcome is not None else "no answer"
        super().__init__(f"{op.value}: {what}{': ' + detail if detail else ''}")


def format_number(name_or_number: str | int) -> int:
    """Content-Format number from a short name (``tlv``), a number or a numeric string."""
    if isinstance(name_or_number, int):
        return name_or_number
    key = name_or_number.strip().lower()
    if key in FORMAT_NAMES:
        return int(FORMAT_NAMES[key])
    if key.isdigit():
        return int(key)
    raise OperationError(
        f"unknown content format {name_or_number!r} (one of {', '.join(FORMAT_NAMES)} or a number)"
    )


def _format_name(number: int | None) -> str:
    if number is None:
        return "-"
    return _NAME_OF.get(number, str(number))


@dataclass(frozen=True)
class OperationRequest:
    """A request ready for :meth:`ServerCore.start_operation` and how to read its answer."""

    op: Op
    message: Message
    base: Path = field(default_factory=Path)
    paths: tuple[Path, ...] = ()  # the composite operations' paths (for display)

    @property
    def target(self) -> str:
        """What the operation addresses, for logs: one path or the composite list."""
        if self.paths:
            return " ".join(str(p) for p in self.paths)
        return str(self.base)


@dataclass
class OperationResult:
    """The client's answer, decoded.

    ``records`` holds the values of a successful Read / Read-Composite /
    notification; ``links`` those of a Discover; ``location`` the instance a
    Create made. ``decode_error`` is set when the answer's payload could not
    be decoded (the client sent something malformed) — the code is still
    reported as received.
    """

    op: Op
    code: int
    content_format: int | None = None
    payload: bytes = b""
    records: list[Record] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    location: Path | None = None
    observe: int | None = None
    decode_error: str | None = None

    @property
    def ok(self) -> bool:
        return is_success(self.code) and self.decode_error is None

    @property
    def code_text(self) -> str:
        """Dotted code with its name, e.g. ``4.04 Not Found``."""
        try:
            name = Code(self.code).name.replace("_", " ").title()
        except ValueError:
            name = ""
        return f"{code_str(self.code)} {name}".rstrip()

    @property
    def values(self) -> dict[Path, Value]:
        """``{path: value}`` of the decoded records (last wins for repeated paths)."""
        return records_to_dict(self.records)

    def value(self, path: Path | str) -> Value:
        """The value at one path; ``KeyError`` if the answer did not carry it."""
        return self.values[_path(path)]

    def lines(self) -> list[str]:
        """A readable rendering: a summary line, then one line per value or link."""
        head = f"{self.op.value} -> {self.code_text}"
        if self.content_format is not None:
            head += f" [{_format_name(self.content_format)}, {len(self.payload)} B]"
        if self.location is not None:
            head += f" location={self.location}"
        if self.observe is not None:
            head += f" observe={self.observe}"
        out = [head]
        if self.decode_error is not None:
            out.append(f"  undecodable answer: {self.decode_error}")
        for record in self.records:
            stamp = f" @{record.time:g}" if record.time is not None else ""
            out.append(f"  {record.path} = {_show(record.value)}{stamp}")
        for link in self.links:
            out.append(f"  {linkformat.encode([link]).decode()}")
        if (
            not self.records
            and not self.links
            and self.payload
            and self.content_format is None
            and not is_success(self.code)
        ):
            out.append(f"  diagnostic: {self.payload.decode('utf-8', 'replace')}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (bytes as hex, times as ISO text) for ``--json`` output."""
        data: dict[str, Any] = {"op": self.op.value, "code": code_str(self.code)}
        if self.content_format is not None:
            data["format"] = _format_name(self.content_format)
        if self.records:
            data["values"] = {
                str(r.path): jsonable(r.value) for r in self.records if r.time is None
            }
            timed = [r for r in self.records if r.time is not None]
            if timed:
                data["series"] = [[str(r.path), jsonable(r.value), r.time] for r in timed]
        if self.links:
            data["links"] = [linkformat.encode([link]).decode() for link in self.links]
        if self.location is not None:
            data["location"] = str(self.location)
        if self.observe is not None:
            data["observe"] = self.observe
        if self.decode_error is not None:
            data["decode_error"] = self.decode_error
        return data


def _show(value: Value) -> str:
    if isinstance(value, bytes):
        return f"0x{value.hex()}" if value else "0x (empty)"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def jsonable(value: Value) -> Any:
    """A value as JSON can carry it: opaque as hex, times as ISO 8601, links as text."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, ObjLnk):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return value.isoformat()


# -- request builders -------------------------------------------------------------------


def _path(path: Path | str) -> Path:
    if isinstance(path, Path):
        return path
    try:
        return Path.parse(path)
    except DecodeError as exc:
        raise OperationError(str(exc)) from None


def _request(code: Code, path: Path) -> Message:
    msg = Message(code=code)
    for segment in path.segments():
        msg.add(OptionNumber.URI_PATH, segment.encode())
    return msg


def _set_uint(msg: Message, option: OptionNumber, value: int | None) -> None:
    if value is not None:
        msg.add(option, encode_uint(int(value)))


def _encode(fmt: int, records: Sequence[Record], base: Path) -> bytes:
    try:
        return formats.encode(fmt, records, base)
    except Lwm2mError as exc:  # FormatEncodeError, UnsupportedFormatError
        raise OperationError(f"cannot encode as {_format_name(fmt)}: {exc}") from None


def _records(
    base: Path, values: Mapping[Path | str, Value] | Sequence[Record] | Value
) -> list[Record]:
    """Records from a mapping ``{path: value}``, a record list, or one value for ``base``."""
    if isinstance(values, Mapping):
        pairs = [(_path(p), v) for p, v in values.items()]
        try:
            return [Record(p, v) for p, v in sorted(pairs, key=lambda pv: pv[0])]
        except Lwm2mError as exc:
            raise OperationError(str(exc)) from None
    if isinstance(values, Sequence) and not isinstance(values, str | bytes):
        if not all(isinstance(r, Record) for r in values):
            raise OperationError("a value list must hold Record objects")
        return list(values)
    try:
        return [Record(base, values)]
    except Lwm2mError as exc:
        raise OperationError(str(exc)) from None


def read_request(path: Path | str, fmt: int | None = None) -> OperationRequest:
    base = _path(path)
    msg = _request(Code.GET, base)
    _set_uint(msg, OptionNumber.ACCEPT, fmt)
    return OperationRequest(Op.READ, msg, base)


def discover_request(path: Path | str) -> OperationRequest:
    base = _path(path)
    msg = _request(Code.GET, base)
    _set_uint(msg, OptionNumber.ACCEPT, ContentFormat.LINK_FORMAT)
    return OperationRequest(Op.DISCOVER, msg, base)


def write_request(
    path: Path | str,
    values: Mapping[Path | str, Value] | Sequence[Record] | Value,
    fmt: int = ContentFormat.TLV,
    *,
    replace: bool = True,
) -> OperationRequest:
    """Write (replace: PUT) or Partial Update (POST) ``values`` below ``path``.

    ``values`` is one value for a resource path, ``{path: value}`` or records.
    An empty mapping is allowed: replacing a multiple resource with nothing.
    """
    base = _path(path)
    if base.level < 2:
        raise OperationError(f"Write addresses an instance or resource, not {base}")
    records = _records(base, values)
    msg = _request(Code.PUT if replace else Code.POST, base)
    _set_uint(msg, OptionNumber.CONTENT_FORMAT, fmt)
    msg.payload = _encode(fmt, records, base)
    return OperationRequest(Op.WRITE, msg, base)


def write_attributes_request(
    path: Path | str, attrs: Mapping[str, int | float | str | None]
) -> OperationRequest:
    """Write-Attributes: each attribute as a Uri-Query; ``None`` removes it (``?pmax``).

    Values are sent as given, without validation, so tests can provoke 4.00.
    """
    base = _path(path)
    if not attrs:
        raise OperationError("Write-Attributes needs at least one attribute")
    msg = _request(Code.PUT, base)
    for name, value in attrs.items():
        query = name if value is None else f"{name}={linkformat.format_value(value)}"
        msg.add(OptionNumber.URI_QUERY, query.encode())
    return OperationRequest(Op.WRITE_ATTRIBUTES, msg, base)


def execute_request(path: Path | str, args: str | bytes | None = None) -> OperationRequest:
    """Execute with optional arguments (``0='ab',1``: LwM2M 1.1.1 Core 5.4.5)."""
    base = _path(path)
    if base.level != 3:
        raise OperationError(f"Execute addresses a resource, not {base}")
    msg = _request(Code.POST, base)
    if args:
        msg.payload = args.encode() if isinstance(args, str) else bytes(args)
        _set_uint(msg, OptionNumber.CONTENT_FORMAT, ContentFormat.TEXT)
    return OperationRequest(Op.EXECUTE, msg, base)


def create_request(
    object_id: int,
    values: Mapping[Path | str | int, Value] | Sequence[Record],
    fmt: int = ContentFormat.TLV,
    *,
    instance_id: int | None = None,
) -> OperationRequest:
    """Create an instance of ``object_id``; int keys of ``values`` are resource ids.

    Without ``instance_id`` the client picks one (TLV only: the payload is then
    the bare resource TLVs, the only format that can leave the id out).
    """
    obj = _path(f"/{object_id}") if isinstance(object_id, int) else _path(object_id)
    if obj.level != 1:
        raise OperationError(f"Create addresses an object, not {obj}")
    iid = 0 if instance_id is None else instance_id
    if instance_id is None and fmt not in (ContentFormat.TLV, ContentFormat.LEGACY_TLV):
        raise OperationError("Create without an instance id needs TLV")
    inst = obj.child(iid)
    if isinstance(values, Mapping):
        mapping: dict[Path | str, Value] = {
            (inst.child(k) if isinstance(k, int) else k): v for k, v in values.items()
        }
        records = _records(inst, mapping)
    else:
        records = _records(inst, values)
    for record in records:
        if not inst.contains(record.path):
            raise OperationError(f"{record.path} is not in the new instance {inst}")
    msg = _request(Code.POST, obj)
    _set_uint(msg, OptionNumber.CONTENT_FORMAT, fmt)
    msg.payload = _encode(fmt, records, inst if instance_id is None else obj)
    return OperationRequest(Op.CREATE, msg, obj)


def delete_request(path: Path | str) -> OperationRequest:
    base = _path(path)
    return OperationRequest(Op.DELETE, _request(Code.DELETE, base), base)


def _path_list(paths: Iterable[Path | str], request_fmt: int) -> tuple[tuple[Path, ...], bytes]:
    parsed = tuple(_path(p) for p in paths)
    if not parsed:
        raise OperationError("a composite operation needs at least one path")
    try:
        encoder = _PATH_LIST_FORMATS[ContentFormat(request_fmt)]
    except (ValueError, KeyError):
        raise OperationError(
            f"a path list is sent as senml-json or senml-cbor, not {_format_name(request_fmt)}"
        ) from None
    return parsed, encoder(parsed)


def read_composite_request(
    paths: Iterable[Path | str],
    fmt: int = ContentFormat.SENML_CBOR,
    *,
    request_fmt: int | None = None,
) -> OperationRequest:
    """FETCH on ``/``: the paths in SenML (``request_fmt``, default ``fmt`` or CBOR)."""
    return _composite(Op.READ_COMPOSITE, paths, fmt, request_fmt, observe=None)


def observe_composite_request(
    paths: Iterable[Path | str],
    fmt: int = ContentFormat.SENML_CBOR,
    *,
    request_fmt: int | None = None,
) -> OperationRequest:
    return _composite(Op.OBSERVE_COMPOSITE, paths, fmt, request_fmt, observe=0)


def _composite(
    op: Op, paths: Iterable[Path | str], fmt: int, request_fmt: int | None, observe: int | None
) -> OperationRequest:
    if request_fmt is None:
        request_fmt = fmt if fmt in _PATH_LIST_FORMATS else ContentFormat.SENML_CBOR
    parsed, body = _path_list(paths, request_fmt)
    msg = Message(code=Code.FETCH)
    _set_uint(msg, OptionNumber.OBSERVE, observe)
    _set_uint(msg, OptionNumber.CONTENT_FORMAT, request_fmt)
    _set_uint(msg, OptionNumber.ACCEPT, fmt)
    msg.payload = body
    return OperationRequest(op, msg, Path(), parsed)


def write_composite_request(
    values: Mapping[Path | str, Value] | Sequence[Record], fmt: int = ContentFormat.SENML_CBOR
) -> OperationRequest:
    """iPATCH on ``/`` with full paths (SenML JSON/CBOR or LwM2M CBOR)."""
    records = _records(Path(), values)
    if not records:
        raise OperationError("Write-Composite needs at least one value")
    msg = Message(code=Code.IPATCH)
    _set_uint(msg, OptionNumber.CONTENT_FORMAT, fmt)
    msg.payload = _encode(fmt, records, Path())
    return OperationRequest(
        Op.WRITE_COMPOSITE, msg, Path(), tuple(dict.fromkeys(r.path for r in records))
    )


def observe_request(path: Path | str, fmt: int | None = None) -> OperationRequest:
    base = _path(path)
    msg = _request(Code.GET, base)
    _set_uint(msg, OptionNumber.OBSERVE, 0)
    _set_uint(msg, OptionNumber.ACCEPT, fmt)
    return OperationRequest(Op.OBSERVE, msg, base)


def cancel_observe_request(observation: OperationRequest) -> OperationRequest:
    """The active cancel: the observation's request again, Observe=1, same token."""
    if not observation.op.observes:
        raise OperationError(f"{observation.op.value} is not an observation")
    src = observation.message
    msg = Message(
        type=src.type,
        code=src.code,
        token=src.token,
        options=[o for o in src.options if o[0] != OptionNumber.OBSERVE],
        payload=src.payload,
    )
    msg.add(OptionNumber.OBSERVE, encode_uint(1))
    return OperationRequest(Op.CANCEL_OBSERVE, msg, observation.base, observation.paths)


# -- answers ------------------------------------------------------------------------------


def decode_result(
    request: OperationRequest,
    response: Message,
    types: TypeLookup | None = None,
    payload: bytes | None = None,
) -> OperationResult:
    """Decode the client's answer; ``payload`` overrides the response's (Block2 reassembly).

    Never raises on what the client sent: an undecodable payload or option is
    reported in :attr:`OperationResult.decode_error`.
    """
    body = response.payload if payload is None else payload
    result = OperationResult(request.op, response.code, payload=body)
    try:
        result.content_format = response.content_format
        result.observe = response.observe
        if request.op is Op.CREATE and response.code == Code.CREATED:
            location = response.location_path
            if location:
                result.location = Path.from_segments(location)
    except DecodeError as exc:  # CoapDecodeError (option encoding), PathError (location)
        result.decode_error = str(exc)
        return result
    if not is_success(response.code) or not body:
        return result
    fmt = result.content_format
    try:
        if fmt == ContentFormat.LINK_FORMAT:
            result.links = linkformat.decode(body)
        elif request.op in (
            Op.READ,
            Op.OBSERVE,
            Op.READ_COMPOSITE,
            Op.OBSERVE_COMPOSITE,
            Op.CANCEL_OBSERVE,
        ):
            if fmt is None:
                raise formats.UnsupportedFormatError("answer without Content-Format")
            result.records = formats.decode(fmt, body, request.base, types)
    except DecodeError as exc:
        result.decode_error = f"{type(exc).__name__}: {exc}"
    return result
