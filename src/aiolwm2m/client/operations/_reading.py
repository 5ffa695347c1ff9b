"""Read, Read-Composite and the Observe (Cancel) that rides on them (Core §5.4.1, §5.5).

:class:`Reader` also collects the values of observe sampling and of Send,
so a notification, a Send and a Read of the same path carry the same
records. Internal to :mod:`aiolwm2m.client.operations`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiolwm2m.client.observe import Observation, Observer
from aiolwm2m.client.operations._answers import (
    HookFailed,
    Reply,
    Result,
    call,
    content,
    discard,
    maybe_later,
    resolved,
)
from aiolwm2m.client.operations._blockwise import Transfers
from aiolwm2m.client.operations._model import HIDDEN_OBJECTS, Model
from aiolwm2m.coap.message import Code, Message
from aiolwm2m.lwm2m.formats import (
    VALUE_FORMATS,
    ContentFormat,
    FormatEncodeError,
    UnsupportedFormatError,
    encode,
    senml_cbor,
    senml_json,
)
from aiolwm2m.lwm2m.formats.text import encode_value
from aiolwm2m.lwm2m.model import InvalidValueError, ResourceDef
from aiolwm2m.lwm2m.objects import Right
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.tree import Instance, NotFoundError, ResourceValue, is_awaitable
from aiolwm2m.lwm2m.values import Record, joined_records, make_record

__all__ = ["AWAITING", "COMPOSITE_FORMATS", "AwaitHook", "Fresh", "Reader", "hook_answer"]

#: The formats that carry values of several paths (composite operations).
COMPOSITE_FORMATS = frozenset(
    {ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR}
)


#: Async read hooks awaited for observation samples: resource path -> the hook's
#: answer, :data:`AWAITING` until it came, :data:`STORED` if it failed.
Fresh = Mapping[Path, Any]
AWAITING = object()
STORED = object()
_TEXT = ContentFormat.TEXT
_NOT_ASKED = object()


class AwaitHook(Exception):
    """Internal: an observation sample met an async read hook (``awaitable``, or None
    when it is already being awaited); the sample waits for it (``SamplePending``)."""

    def __init__(self, path: Path, awaitable: Any) -> None:
        super().__init__(str(path))
        self.path = path
        self.awaitable = awaitable


async def hook_answer(fresh: dict[Path, Any], path: Path, awaitable: Awaitable[Any]) -> None:
    """Await an observed resource's read hook; keep its answer in ``fresh`` (the job's body).

    A hook that fails (or cannot finish: the simulated runtime closes it)
    leaves :data:`STORED`: the notification carries the stored value, as
    before async sampling.
    """
    value: Any = STORED
    try:
        value = await awaitable
    except Exception:
        value = STORED
    finally:
        fresh[path] = value


class Reader:
    """Answers reads; starts and cancels the observations a read asks for."""

    __slots__ = ("_cancelled", "_model", "_observer", "_transfers")

    def __init__(
        self,
        model: Model,
        observer: Observer,
        transfers: Transfers,
        cancelled: Callable[[int, bytes], None],
    ) -> None:
        self._model = model
        self._observer = observer
        self._transfers = transfers
        #: Told of each observation a server cancelled (the engine drops what it still holds).
        self._cancelled = cancelled

    def collect(
        self, ssid: int, path: Path, *, sync: bool = False, fresh: Fresh | None = None
    ) -> list[tuple[Path, Any]]:
        """``(resource path, value or awaitable)`` for everything a Read of ``path`` returns.

        ``sync`` (a Send) replaces an async hook's answer by the stored value;
        with ``fresh`` (observe sampling) an async hook's answer is awaited
        instead: :class:`AwaitHook` until it is in ``fresh``.
        """
        tree = self._model.tree
        ids = path.ids
        if len(ids) == 3:  # one resource (a value's Read): no lists
            inst = self._readable(ssid, path)[0]
            value = _read_value(inst, ids[2], sync, path, fresh)
            return [] if value is None else [(path, value)]
        if not ids:
            raise Reply(Code.METHOD_NOT_ALLOWED, "Read of the root path; use Read-Composite")
        found, rdef = tree.lookup(path)
        if found is None:  # an object: every instance this server may read
            targets = [
                (Path._trusted((ids[0], iid)), tree.instance(ids[0], iid))
                for iid in self._model.visible_instances(ssid, ids[0])
            ]
        else:
            self._model.require(ssid, path, Right.READ)
            targets = [(path, found)]
        out: list[tuple[Path, Any]] = []
        for target, inst in targets:
            if rdef is None:
                target_ids = target.ids
                rids = tree.readable_resources(target_ids[0], target_ids[1])
                strict = False
            else:
                if not rdef.operations.readable:
                    raise Reply(Code.METHOD_NOT_ALLOWED, f"{target} is not readable")
                rids = [ids[2]]
                strict = True
            for rid in rids:
                try:
                    rpath = target if strict else target.child(rid)
                    value = _read_value(inst, rid, sync, rpath, fresh)
                except NotFoundError:
                    if strict:
                        raise
                    continue
                if value is not None:
                    out.append((rpath, value))
        return out

    def collect_composite(
        self, ssid: int, path: Path, *, sync: bool = False, fresh: Fresh | None = None
    ) -> list[tuple[Path, Any]]:
        """:meth:`collect` for one path of a Read- or Observe-Composite, where the root
        path names every object (Core §6.3.8): everything this server may read."""
        if not path.is_root:
            return self.collect(ssid, path, sync=sync, fresh=fresh)
        out: list[tuple[Path, Any]] = []
        for object_id in sorted(self._model.tree.objects):
            if object_id not in HIDDEN_OBJECTS:
                out.extend(self.collect(ssid, Path.of(object_id), sync=sync, fresh=fresh))
        return out

    def sample(
        self, ssid: int, path: Path, fresh: Fresh, content_format: int
    ) -> tuple[bytes, list[Record]]:
        """The payload (in ``content_format``) and the records of a notification of the
        one observed ``path``: ``(encode(...), records(...))``, see :meth:`records`.

        One resource (nearly every observation) skips the lists in between and
        the second definition lookup: this runs for every notification. A
        plain :class:`Instance`'s stored value without a read hook skips the
        Read's presence and hook steps (the stored value answers them), but is
        still checked against its type: ``Instance.values`` is a public dict an
        application may have assigned into behind the tree's back, and a value
        of the wrong type must end the observation, never reach the server.
        One such value in text/plain is its text itself: the one record is at
        ``path``, all that text/plain's encode checks, so encode_value makes
        the payload without the format dispatch and the record check.
        """
        ids = path.ids
        if len(ids) == 3:
            inst, rdef = self._model.tree.resource(path)
            rid = ids[2]
            if not fresh and type(inst) is Instance and rid not in inst.on_read:
                stored = inst.values.get(rid)
                if stored is not None:  # present: what lookup() checks first holds
                    self._may_read(ssid, path, rdef)
                    if rdef.single_value:  # one value: its check and record without _records
                        try:
                            checked = rdef.validate(stored)
                        except InvalidValueError as exc:
                            raise _invalid(path, exc) from exc
                        records = [make_record(Record, (path, checked, None))]
                        # == is True for False too, which encode() refuses: not a bool.
                        if content_format == _TEXT and type(content_format) is not bool:
                            return encode_value(checked), records
                    else:
                        records = self._records(path, stored, rdef)
                    return encode(content_format, records, path), records
        records = self.records(ssid, path, fresh)
        return encode(content_format, records, path), records

    def records(self, ssid: int, path: Path, fresh: Fresh) -> list[Record]:
        """The records a notification of ``path`` carries: ``finish_read(collect_composite(...))``
        with ``sync`` and ``fresh``, see :meth:`collect`."""
        ids = path.ids
        if len(ids) != 3:
            return self.finish_read(self.collect_composite(ssid, path, sync=True, fresh=fresh))
        inst, rdef = self._readable(ssid, path)
        value = _read_value(inst, ids[2], True, path, fresh)
        return [] if value is None else self._records(path, value, rdef)

    def _readable(self, ssid: int, path: Path) -> tuple[Instance, ResourceDef]:
        """The instance and definition of the one resource at ``path``, once it exists
        and this server may read it (4.04, 4.01 or 4.05 otherwise)."""
        inst, rdef = self._model.tree.lookup(path)
        assert inst is not None and rdef is not None
        self._may_read(ssid, path, rdef)
        return inst, rdef

    def _may_read(self, ssid: int, path: Path, rdef: ResourceDef) -> None:
        """4.01 unless this server may read ``path``, then 4.05 unless it is readable."""
        model = self._model
        if model.access.enabled:  # else every right (one server): no require() call
            model.require(ssid, path, Right.READ)
        if not rdef.readable:
            raise Reply(Code.METHOD_NOT_ALLOWED, f"{path} is not readable")

    def finish_read(self, collected: Sequence[tuple[Path, Any]]) -> list[Record]:
        """The records of collected values, each checked against its resource's type,
        and the multiple resources that hold no instance
        (:meth:`~aiolwm2m.lwm2m.tree.ObjectTree.to_records`)."""
        return joined_records(self._records(path, value) for path, value in collected)

    def _records(self, path: Path, value: Any, rdef: ResourceDef | None = None) -> list[Record]:
        """The records of one collected value, checked against its resource's type
        (``rdef``, when the caller already has it)."""
        tree = self._model.tree
        one = len(path.ids) == 3
        resource_path = path if one else path.parent
        try:
            if rdef is None:
                rdef = tree.resource_def(resource_path)
            checked: ResourceValue
            if one and rdef.single_value:  # one value: no select
                checked = rdef.validate(value)
            else:
                checked = tree.select(path, tree.coerce(resource_path, rdef, value))
        except InvalidValueError as exc:
            raise _invalid(resource_path, exc) from exc
        return tree.to_records(path, checked)

    def read(
        self, ssid: int, request: Message, path: Path, observe: int | None, now: float
    ) -> Result:
        if observe == 0:  # the first answer waits for async hooks, as a Read's does

            def observe_finish(values: list[Any]) -> Message:
                records = self.finish_read(resolved(collected, values))
                cf = _response_format(request, path, records)
                payload = _encode(cf, records, path)
                obs = Observation(ssid, request.token, (path,), cf)
                self._transfers.observed(ssid, request)
                seq = self._observer.add(obs, now, records=records)
                return content(payload, cf, observe=seq)

            collected = self.collect(ssid, path)
            return maybe_later(collected, observe_finish)
        if observe == 1:
            self.cancel(ssid, request.token)
        collected = self.collect(ssid, path)

        def finish(values: list[Any]) -> Message:
            records = self.finish_read(resolved(collected, values))
            cf = _response_format(request, path, records)
            return content(_encode(cf, records, path), cf)

        return maybe_later(collected, finish)

    def read_composite(
        self, ssid: int, request: Message, path: Path, observe: int | None, now: float
    ) -> Result:
        if not path.is_root:
            raise Reply(Code.METHOD_NOT_ALLOWED, "FETCH is only defined on the root path")
        paths = _composite_paths(request)
        accept = request.accept if request.accept is not None else request.content_format
        if accept not in COMPOSITE_FORMATS:
            raise Reply(Code.NOT_ACCEPTABLE, f"composite answers cannot use format {accept}")
        assert accept is not None
        collected, found = self._collect_found(ssid, paths)
        if observe == 1:
            self.cancel(ssid, request.token)

        def finish(values: list[Any]) -> Message:
            records = self.finish_read(resolved(collected, values))
            payload = _encode(accept, records, Path())
            if observe != 0:
                return content(payload, accept)
            # Observe-Composite: registered once the values are in (async hooks awaited).
            obs = Observation(ssid, request.token, tuple(found), accept)
            seq = self._observer.add(obs, now, records=records)
            self._transfers.observed(ssid, request)
            return content(payload, accept, observe=seq)

        return maybe_later(collected, finish)

    def cancel(self, ssid: int, token: bytes) -> None:
        """Cancel-Observe: the observation ends here, and in the engine (see ``_cancelled``)."""
        if self._observer.remove(ssid, token):
            self._cancelled(ssid, token)

    def _collect_found(
        self, ssid: int, paths: Sequence[Path]
    ) -> tuple[list[tuple[Path, Any]], list[Path]]:
        """The values of the composite ``paths`` this server may read, and those paths.

        Paths that do not exist, are hidden, unreadable or refused by Access
        Control are left out; 4.04 when none is left.
        """
        collected: list[tuple[Path, Any]] = []
        found: list[Path] = []
        for target in paths:
            if target.object_id in HIDDEN_OBJECTS or not self._model.tree.exists(target):
                continue
            try:
                collected.extend(self.collect_composite(ssid, target))
            except Reply as exc:
                if exc.code not in (Code.UNAUTHORIZED, Code.METHOD_NOT_ALLOWED):
                    raise
                continue
            found.append(target)
        if not found:
            raise Reply(Code.NOT_FOUND, "none of the requested paths exists")
        return collected, found


def _invalid(resource_path: Path, exc: InvalidValueError) -> HookFailed:
    """A collected or stored value that fails its resource's type or range check."""
    return HookFailed(f"{resource_path} holds an invalid value: {exc}")


def _read_value(inst: Instance, rid: int, sync: bool, path: Path, fresh: Fresh | None) -> Any:
    """What a Read of resource ``rid`` (at ``path``) gives (NotFoundError if it has no value).

    ``sync`` (a Send) replaces an async hook's answer by the stored value,
    None when there is none; with ``fresh`` (observe sampling) the hook's
    awaited answer is used, :class:`AwaitHook` while there is none yet.
    """
    if fresh:  # hooks are being awaited (an empty mapping: none, the usual case)
        known = fresh.get(path, _NOT_ASKED)
        if known is AWAITING:
            raise AwaitHook(path, None)
        if known is not _NOT_ASKED:
            return inst.values.get(rid) if known is STORED else known
    value = call(inst.read, rid)
    if fresh is not None and is_awaitable(value):
        raise AwaitHook(path, value)
    if sync and is_awaitable(value):
        discard(value)
        return inst.values.get(rid)
    return value


def _response_format(request: Message, path: Path, records: Sequence[Record]) -> int:
    accept = request.accept
    if accept is not None:
        if accept not in VALUE_FORMATS:
            raise Reply(Code.NOT_ACCEPTABLE, f"cannot answer in content format {accept}")
        return accept
    if len(records) == 1 and records[0].path == path:
        if isinstance(records[0].value, bytes):
            return ContentFormat.OPAQUE
        return ContentFormat.TEXT
    return ContentFormat.TLV


def _encode(content_format: int, records: Sequence[Record], base: Path) -> bytes:
    try:
        return encode(content_format, records, base)
    except (FormatEncodeError, UnsupportedFormatError) as exc:
        raise Reply(Code.NOT_ACCEPTABLE, str(exc)) from exc


def _composite_paths(request: Message) -> list[Path]:
    cf = request.content_format
    if cf in (ContentFormat.SENML_JSON,):
        return senml_json.decode_paths(request.payload)
    if cf in (ContentFormat.SENML_CBOR,):
        return senml_cbor.decode_paths(request.payload)
    raise Reply(Code.UNSUPPORTED_CONTENT_FORMAT, f"Read-Composite in content format {cf}")
