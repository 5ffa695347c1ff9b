"""Seeing the wire: taps on every datagram and link of a client, and the ``-vv`` message trace.

A :class:`WireTap` is told about every CoAP datagram a driver sends or
receives (plaintext, before DTLS / after it), every link that opens and every
one that fails to. The driver always feeds :func:`trace`, which logs one line
per message on the ``aiolwm2m.trace`` logger — and decodes nothing unless that
logger is enabled for DEBUG (``aiolwm2m -vv``), so the trace costs one level
check per datagram otherwise. Metrics (:mod:`aiolwm2m.runtime.metrics`) are
another tap.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiolwm2m.client.engine import LinkFailure
from aiolwm2m.coap.message import (
    Block,
    CoapDecodeError,
    Code,
    Message,
    OptionNumber,
    code_str,
    decode,
    is_request,
)
from aiolwm2m.lwm2m.formats import ContentFormat

__all__ = ["TRACE_LOGGER", "WireTap", "describe", "trace", "trace_link"]

TRACE_LOGGER = "aiolwm2m.trace"
log = logging.getLogger(TRACE_LOGGER)

#: Payload bytes shown in a trace line (the size is always given).
PAYLOAD_PREVIEW = 48


class WireTap(Protocol):
    """Receives a copy of what a client's links carry; must not raise or block."""

    def datagram(self, link: int, outgoing: bool, data: bytes, now: float) -> None: ...

    def link_up(self, link: int, secure: bool, now: float) -> None: ...

    def link_failed(self, link: int, failure: LinkFailure, now: float) -> None: ...


def _option(number: int, value: bytes) -> str | None:
    """One option as text; None for those :func:`describe` shows elsewhere (paths, queries)."""
    if number in (OptionNumber.URI_PATH, OptionNumber.URI_QUERY, OptionNumber.LOCATION_PATH):
        return None
    try:
        name = OptionNumber(number).name.lower().replace("_", "-")
    except ValueError:
        return f"opt{number}={value.hex()}"
    if number in (OptionNumber.BLOCK1, OptionNumber.BLOCK2):
        block = Block.decode(value)
        return f"{name}={block.num}/{int(block.more)}/{block.size}"
    if number in (OptionNumber.CONTENT_FORMAT, OptionNumber.ACCEPT):
        cf = int.from_bytes(value, "big")
        try:
            return f"{name}={ContentFormat(cf).name.lower().replace('_', '-')}"
        except ValueError:
            return f"{name}={cf}"
    if number == OptionNumber.ETAG or number == OptionNumber.IF_MATCH:
        return f"{name}={value.hex()}"
    if number in (OptionNumber.URI_HOST, OptionNumber.PROXY_URI, OptionNumber.PROXY_SCHEME):
        return f"{name}={value.decode('utf-8', 'replace')}"
    return f"{name}={int.from_bytes(value, 'big')}"


def _payload(payload: bytes) -> str:
    if not payload:
        return ""
    head = payload[:PAYLOAD_PREVIEW]
    try:
        text = head.decode("utf-8")
        shown = repr(text) if text.isprintable() else head.hex()
    except UnicodeDecodeError:
        shown = head.hex()
    more = "…" if len(payload) > PAYLOAD_PREVIEW else ""
    return f" {len(payload)} B {shown}{more}"


def _code(code: int) -> str:
    """Requests by method (``POST``), responses by number (``2.05``), 0.00 as ``EMPTY``."""
    if code == 0:
        return "EMPTY"
    if is_request(code):
        try:
            return Code(code).name
        except ValueError:
            return code_str(code)
    return code_str(code)


def describe(msg: Message) -> str:
    """One line: type, code, MID, token, path?query, options, payload size and start."""
    target = ""
    if msg.uri_path or msg.has(OptionNumber.URI_PATH):
        target = "/" + "/".join(msg.uri_path)
    if msg.uri_query:
        target += "?" + "&".join(msg.uri_query)
    if msg.location_path:
        target += " location=/" + "/".join(msg.location_path)
    options = [text for n, v in msg.options if (text := _option(n, v)) is not None]
    parts = [
        msg.type.name,
        _code(msg.code),
        f"mid={msg.mid}",
        f"token={msg.token.hex() or '-'}",
    ]
    if target:
        parts.append(target.strip())
    parts += options
    return " ".join(parts) + _payload(msg.payload)


def trace(where: int | tuple[str, int], outgoing: bool, data: bytes) -> None:
    """Log one datagram (DEBUG, ``aiolwm2m.trace``): ``->`` sent, ``<-`` received.

    ``where`` is a client's link id, or a server's peer address.
    """
    if not log.isEnabledFor(logging.DEBUG):
        return
    arrow = "->" if outgoing else "<-"
    try:
        text = describe(decode(data))
    except CoapDecodeError as exc:
        text = f"undecodable {len(data)} B ({exc})"
    name = f"link {where}" if isinstance(where, int) else f"peer {where[0]}:{where[1]}"
    log.debug("%s %s %s", name, arrow, text)


def trace_link(link: int, event: str) -> None:
    """A link opening or failing, in the same trace."""
    log.debug("link %d %s", link, event)
