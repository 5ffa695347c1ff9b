"""LwM2M Send (1.1): POST /dp with SenML, one ``send_finished`` event per Send.

A Send is reported, never recovered: the failure table's Send column says
``none`` for every row, so a failed Send leaves the registration alone and the
application decides (spec §3 has no Send column).
"""

from __future__ import annotations

from aiolwm2m.client import events as ev
from aiolwm2m.client.engine._channel import Failed, classify
from aiolwm2m.client.engine._shared import ServerSession, Shared
from aiolwm2m.client.policy import Failure, RequestKind
from aiolwm2m.client.states import ServerState
from aiolwm2m.coap.layer import ExchangeResult
from aiolwm2m.coap.message import Code, Message, MessageType, code_str, make_options

__all__ = ["Sending"]


class Sending:
    __slots__ = ("_next_id", "s")

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        self._next_id = 1

    def send(self, srv: ServerSession, payload: bytes, content_format: int, now: float) -> int:
        """Send now, after waking a sleeping queue-mode link, or fail with ``not_registered``."""
        send_id = self._next_id
        self._next_id += 1
        if srv.state is ServerState.ASLEEP:
            srv.queued_sends.append((send_id, payload, content_format))
            self.s.registration.wake(srv, RequestKind.UPDATE, now)
        elif srv.state is not ServerState.REGISTERED or srv.channel.layer is None:
            self.s.send_failed(srv, send_id, ev.ErrorCode.NOT_REGISTERED, now)
        else:
            self.send_now(srv, send_id, payload, content_format, now)
        return send_id

    def send_now(
        self, srv: ServerSession, send_id: int, payload: bytes, content_format: int, now: float
    ) -> None:
        layer = srv.channel.layer
        assert layer is not None
        msg = Message(
            type=MessageType.CON,
            code=Code.POST,
            options=make_options(path=["dp"], content_format=content_format),
            payload=payload,
        )
        try:
            key = layer.send_request(msg, now)
        except (MemoryError, ValueError) as exc:
            # Spec §6 "memory / message build failure", as for every other request.
            detail = f"could not build the send request: {exc!r}"
            code = ev.ErrorCode.MEMORY
            self.s.recovery.send_failed(srv, send_id, Failure.INTERNAL, code, now, detail=detail)
            return
        srv.channel.sends[key] = send_id
        self.s.links.flush(srv, now)

    def finished(
        self, srv: ServerSession, send_id: int, result: ExchangeResult, now: float
    ) -> None:
        outcome = classify(result, secure=srv.channel.secure)
        if not isinstance(outcome, Failed):
            self.s.emit(ev.SendFinished(now, srv.ssid, send_id, True, code_str(outcome.code)))
            return
        if outcome.response is None:
            self.s.recovery.send_failed(srv, send_id, outcome.failure, outcome.code, now)
            return
        # Every error answer to a Send is a CoAP error (its 4.29 too: no wait is kept).
        code = ev.ErrorCode.COAP_ERROR
        self.s.recovery.send_failed(
            srv, send_id, Failure.COAP_ERROR, code, now, outcome.coap_code, outcome.diagnostic
        )
