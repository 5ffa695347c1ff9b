"""How an operation ends: an answer now, an answer after async hooks, or an error answer.

Every operation module returns a :data:`Result`; errors are raised as the
typed exceptions of the layers below (or :class:`Reply` with a chosen code)
and turned into a response once, by :func:`error`. Internal to
:mod:`aiolwm2m.client.operations`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiolwm2m.client.observe import InvalidObservationError
from aiolwm2m.coap.message import CoapDecodeError, Code, Message, OptionNumber, encode_uint
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m.attributes import InvalidAttributesError
from aiolwm2m.lwm2m.formats import ContentFormatError, UnsupportedFormatError
from aiolwm2m.lwm2m.model import InvalidValueError
from aiolwm2m.lwm2m.path import Path, PathError
from aiolwm2m.lwm2m.tree import (
    BadArgumentsError,
    NotFoundError,
    OperationNotAllowedError,
    is_awaitable,
)

__all__ = [
    "HANDLED",
    "Deferred",
    "HookFailed",
    "Reply",
    "Result",
    "call",
    "content",
    "discard",
    "error",
    "error_code",
    "later",
    "maybe_later",
    "resolved",
]


class Reply(Exception):
    """Stop handling and answer ``code`` (with a diagnostic payload)."""

    def __init__(self, code: Code, detail: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class HookFailed(Exception):
    """An application hook raised; answered 5.00."""


@dataclass
class Deferred:
    """Awaitables from hooks plus the synchronous step that builds the answer."""

    awaitables: list[Awaitable[Any]]
    finish: Callable[[list[Any]], Message]


Result = Message | Deferred


def error_code(exc: Exception) -> Code:
    """HTTP-like mapping of the typed errors to LwM2M response codes."""
    if isinstance(exc, Reply):
        return exc.code
    if isinstance(exc, NotFoundError | PathError):
        return Code.NOT_FOUND
    if isinstance(exc, OperationNotAllowedError):
        return Code.METHOD_NOT_ALLOWED
    if isinstance(exc, UnsupportedFormatError):
        return Code.UNSUPPORTED_CONTENT_FORMAT
    if isinstance(
        exc,
        ContentFormatError
        | InvalidValueError
        | InvalidAttributesError
        | BadArgumentsError
        | CoapDecodeError
        | ConfigError
        | InvalidObservationError,
    ):
        return Code.BAD_REQUEST
    return Code.INTERNAL_SERVER_ERROR


def error(exc: Exception) -> Message:
    code = error_code(exc)
    detail = str(exc) if code != Code.INTERNAL_SERVER_ERROR else "internal error"
    return Message(code=code, payload=detail[:120].encode("utf-8", "replace"))


#: The exceptions answered with an error code instead of propagating.
HANDLED = (
    Reply,
    HookFailed,
    NotFoundError,
    PathError,
    OperationNotAllowedError,
    ContentFormatError,
    InvalidValueError,
    InvalidAttributesError,
    BadArgumentsError,
    CoapDecodeError,
    ConfigError,
    InvalidObservationError,
)


def call(hook: Callable[..., Any], *args: Any) -> Any:
    """Run an application hook; anything it raises except a value refusal is a 5.00."""
    try:
        return hook(*args)
    except (InvalidValueError, ConfigError, NotFoundError, OperationNotAllowedError):
        raise
    except Exception as exc:
        raise HookFailed(repr(exc)) from exc


def content(payload: bytes, content_format: int, observe: int | None = None) -> Message:
    msg = Message(code=Code.CONTENT, payload=payload)
    if observe is not None:
        msg.add(OptionNumber.OBSERVE, encode_uint(observe))
    msg.add(OptionNumber.CONTENT_FORMAT, encode_uint(content_format))
    return msg


def maybe_later(
    collected: Sequence[tuple[Path, Any]], finish: Callable[[list[Any]], Message]
) -> Result:
    """The answer now if no value is awaitable, else a :class:`Deferred` for the runtime."""
    awaitables = [value for _, value in collected if is_awaitable(value)]
    if not awaitables:
        return finish([value for _, value in collected])
    values = [value for _, value in collected]

    def finish_all(results: list[Any]) -> Message:
        done = iter(results)
        return finish([next(done) if is_awaitable(v) else v for v in values])

    return Deferred(awaitables, finish_all)


async def later(deferred: Deferred) -> Message:
    """Await the hooks, then build the answer; never raises (errors are answers)."""
    results: list[Any] = []
    remaining = list(deferred.awaitables)
    try:
        while remaining:
            awaitable = remaining.pop(0)
            try:
                results.append(await awaitable)
            except HANDLED:
                raise
            except (InvalidValueError, ConfigError):
                raise
            except Exception as exc:
                raise HookFailed(repr(exc)) from exc
        return deferred.finish(results)
    except HANDLED as exc:
        for leftover in remaining:
            discard(leftover)
        return error(exc)


def resolved(collected: Sequence[tuple[Path, Any]], values: list[Any]) -> list[tuple[Path, Any]]:
    return [(path, value) for (path, _), value in zip(collected, values, strict=True)]


def discard(awaitable: object) -> None:
    """Close a coroutine that will never be awaited (no "never awaited" warning)."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()
