"""What arrives on a server's link, and how a server's link is stopped.

Datagrams go through the server's :class:`~._channel.Channel`; every
exchange that ends is routed here: a Send's outcome to ``_sending``, a
success to ``_registration``, anything else, classified, to ``_recovery``;
requests from the server go to the data model.
"""

from __future__ import annotations

from aiolwm2m.client import events as ev
from aiolwm2m.client.engine._channel import Failed, classify, wait_detail
from aiolwm2m.client.engine._shared import Scheduled, ServerSession, Shared, Step
from aiolwm2m.client.policy import Failure, RequestKind
from aiolwm2m.client.states import ServerState, Trigger
from aiolwm2m.coap.layer import ExchangeResult, IncomingRequest, Outcome
from aiolwm2m.coap.message import Code, Message

__all__ = ["ServerLinks"]

_REGISTERED = ServerState.REGISTERED


class ServerLinks:
    __slots__ = ("s",)

    def __init__(self, shared: Shared) -> None:
        self.s = shared

    def received(self, srv: ServerSession, data: bytes, now: float) -> None:
        layer = srv.channel.layer
        if layer is None or not srv.channel.open:
            return
        layer.receive(data, now)
        # Only a received datagram can be malformed (and then it is all it was:
        # it makes no event), so only this input checks, not every flush.
        if srv.channel.new_malformed():
            self.s.malformed(now, srv.ssid, "server")
        self.flush(srv, now)

    def unreachable(self, srv: ServerSession, now: float) -> None:
        """ICMP (port/host unreachable) on an open link."""
        channel = srv.channel
        if channel.layer is None:
            return
        non_notes = channel.only_non_notifications()
        if non_notes:
            # Nothing confirmable in flight: the ICMP answers the newest NON
            # notification, which no exchange would otherwise report. The server
            # is unreachable all the same (Notify column, network error).
            pending = channel.pop(non_notes[-1])
            assert pending is not None
            code = ev.ErrorCode.NETWORK_ERROR
            self.s.recovery.fail(srv, pending, Failure.NETWORK, code, now)
            self.flush(srv, now)
            return
        channel.layer.network_error(now)
        self.flush(srv, now)

    def flush(self, srv: ServerSession, now: float) -> bool:
        """Act on what the message layer reported, then hand its datagrams to the runtime.

        Returns whether that may have moved one of the engine's timers: an
        event was handled, or queue mode's sleep deadline was set again.
        """
        channel = srv.channel
        layer = channel.layer
        if layer is None:
            return False
        active = False  # an exchange ended or a request came: queue mode stays awake
        events = layer.events  # drained in place: no next_event() call when empty
        while events:
            active = True
            event = events.pop(0)
            if isinstance(event, ExchangeResult):
                self._result(srv, event, now)
            elif isinstance(event, IncomingRequest):
                self._request(srv, event, now)
            if channel.layer is not layer:  # the link was replaced while handling
                return True
        sent = channel.send_datagrams()
        queue_mode = (sent or active) and "Q" in srv.account.binding  # no property call
        if queue_mode and channel.open and srv.state is _REGISTERED:
            # Something was exchanged: queue mode sleeps MAX_TRANSMIT_WAIT after the last.
            srv.deadline = Scheduled(now + self.s.config.coap.max_transmit_wait, Step.SLEEP)
            return True
        return active

    def _request(self, srv: ServerSession, req: IncomingRequest, now: float) -> None:
        layer = srv.channel.layer
        assert layer is not None
        srv.channel.fresh = False  # the server holds the session
        if layer.refuse_unknown_critical(req, now):
            return
        try:
            response: Message | None = self.s.model.handle_request(srv.ssid, req.message, now)
        except Exception as exc:
            detail = f"request handler raised {exc!r}"
            self.s.emit(ev.Error(now, ev.ErrorCode.INTERNAL_ERROR, ssid=srv.ssid, detail=detail))
            response = Message(code=Code.INTERNAL_SERVER_ERROR)
        if response is None:
            srv.channel.deferred[(req.message.mid, req.message.token)] = req.key
        else:
            layer.respond(req.key, response, now)

    def _result(self, srv: ServerSession, result: ExchangeResult, now: float) -> None:
        channel = srv.channel
        send_id = channel.sends.pop(result.key, None)
        if send_id is not None:
            self.s.sending.finished(srv, send_id, result, now)
            return
        pending = channel.pop(result.key)
        channel.heard(pending, result.outcome, now)
        if pending is None:
            return
        if result.outcome is Outcome.ACKNOWLEDGED and pending.kind is RequestKind.NOTIFY:
            return
        outcome = classify(result, secure=channel.secure)
        if not isinstance(outcome, Failed):
            self.s.registration.succeeded(srv, pending.kind, outcome, now)
            return
        detail = outcome.diagnostic
        wait = outcome.retry_after(self.s.config.registration.max_retry_after)
        if wait is not None:
            # Spec §7: obeyed whatever the request: nothing goes to it before Max-Age.
            srv.rate_limited_until = now + wait
            detail = wait_detail(wait)
        self.s.recovery.fail(
            srv,
            pending,
            outcome.failure,
            outcome.code,
            now,
            coap_code=outcome.coap_code,
            detail=detail,
        )

    # ------------------------------------------------------------------ stopping
    def close(self, srv: ServerSession) -> None:
        """Close the link; confirmable notifications it never delivered are stored."""
        self.s.store.requeue_unacked(srv)
        srv.channel.close(opening=srv.public_state is ServerState.CONNECTING)

    def stop(self, srv: ServerSession, trigger: Trigger, now: float) -> None:
        """End everything ``srv`` had going (requests, sends, schedule, link), then move."""
        self.s.store.requeue_unacked(srv)
        for send_id, _payload, _cf in srv.queued_sends:
            self.s.send_failed(srv, send_id, ev.ErrorCode.NOT_REGISTERED, now)
        srv.queued_sends.clear()
        srv.channel.cancel_all(now)
        srv.next = srv.deadline = None
        srv.resume = None
        self.close(srv)
        self.s.move(srv, trigger, now)
