"""Notifications: sent while registered, stored while not (Server /1/x/6), flushed in order.

A notification the data model produces goes out at once when its server is
registered with nothing stored before it; otherwise it is stored (drop-oldest
beyond ``notification_store_limit``) or, with storing off, dropped and
counted. Confirmable notifications a closing link never delivered are stored
the same way, merged by creation time, so the server still gets every value in
order once the registration is resumed (spec §10) — or, when a new Register
replaced it, they are dropped with one ``notifications_dropped`` event. So
are those of an observation a Reset ended that were not sent yet, queued in
the message layer or stored: the server would only Reset each again.
"""

from __future__ import annotations

from aiolwm2m.client import events as ev
from aiolwm2m.client.engine._channel import NON_NOTIFICATIONS_TRACKED, Pending, new_pending
from aiolwm2m.client.engine._shared import ServerSession, Shared
from aiolwm2m.client.engine._types import Notification
from aiolwm2m.client.policy import Failure, RequestKind
from aiolwm2m.client.states import ServerState
from aiolwm2m.coap.message import MessageType

__all__ = ["NotificationStore"]

_ASLEEP, _REGISTERED = ServerState.ASLEEP, ServerState.REGISTERED
_NON, _NOTIFY = MessageType.NON, RequestKind.NOTIFY


class NotificationStore:
    __slots__ = ("s",)

    def __init__(self, shared: Shared) -> None:
        self.s = shared

    def notify(self, note: Notification, now: float) -> bool:
        """A notification from the data model: send, store or drop it.

        Returns whether that may have moved one of the engine's timers: only a
        NON notification sent on an awake link (the common case) never does.
        """
        srv = self.s.servers.get(note.ssid)
        if srv is None:
            return False
        state = srv.state
        if state is _ASLEEP:
            # Queue mode: not offline, just asleep: keep it (whatever /1/x/6 says)
            # and wake; it follows the Update, in order.
            self.keep(srv, note)
            self.s.registration.wake(srv, RequestKind.UPDATE, now)
            return True
        if state is _REGISTERED and srv.channel.layer is not None and not srv.stored:
            return self.send(srv, note, now)
        if srv.account.notification_storing:
            self._store(srv, note, now)
        else:
            srv.stored_dropped += 1
        return False

    def _store(self, srv: ServerSession, note: Notification, now: float) -> None:
        """Keep a notification for later, dropping the oldest beyond the configured limit."""
        if self.s.config.notification_store_limit == 0:
            srv.stored_dropped += 1
            return
        self.keep(srv, note)
        self.s.changed()
        self.s.emit(ev.NotificationStored(now, srv.ssid, note.path, len(srv.stored)))

    def keep(self, srv: ServerSession, note: Notification) -> None:
        srv.stored.append(note)
        excess = len(srv.stored) - self.s.config.notification_store_limit
        if excess > 0:
            del srv.stored[:excess]
            srv.stored_dropped += excess

    def flush(self, srv: ServerSession, now: float) -> None:
        """Deliver what was stored, oldest first, while the server stays registered."""
        count = len(srv.stored)
        while srv.stored and srv.public_state is ServerState.REGISTERED:
            self.send(srv, srv.stored.pop(0), now)
        if count:
            self.s.changed()
            self.s.emit(ev.NotificationsFlushed(now, srv.ssid, count - len(srv.stored)))

    def send(self, srv: ServerSession, note: Notification, now: float) -> bool:
        """Send one notification now; whether that may have moved one of the engine's timers.

        The channel's part is done here (no Channel method in between, one call less
        per notification): the layer encodes it once, a CON one then runs its
        retransmission timer; it is in flight for its outcome, a NON one only for a
        late Reset, the oldest beyond :data:`NON_NOTIFICATIONS_TRACKED` forgotten.
        """
        channel = srv.channel
        layer = channel.layer
        assert layer is not None
        message = note.message
        try:
            key = layer.send_message(message, now)  # encodes it, once
        except ValueError as exc:
            # A notification that cannot be encoded (e.g. a token over 8 bytes)
            # is an internal error of the data model: the Notify column decides.
            # Nothing was sent or recorded.
            pending = Pending(RequestKind.NOTIFY, False, note)
            detail = f"cannot encode notification: {exc}"
            self.s.recovery.fail(
                srv, pending, Failure.INTERNAL, ev.ErrorCode.MEMORY, now, detail=detail
            )
            return True
        inflight = channel.inflight
        inflight[key] = new_pending(Pending, (_NOTIFY, channel.fresh, note, None))
        if message.type is not _NON:
            self.s.links.flush(srv, now)
            return True
        non_keys = channel.non_keys  # kept exact by Channel.pop()/forget_*()
        non_keys.append(key)
        if len(non_keys) > NON_NOTIFICATIONS_TRACKED:
            del inflight[non_keys.pop(0)]  # forget the oldest NON one
        return self.s.links.flush(srv, now)

    def drop_session(self, srv: ServerSession, now: float) -> None:
        """A new registration: the server forgot our observations, what was stored for them ends.

        Reported once, with the count, so a drop is never silent.
        """
        self.s.model.drop_observations(srv.ssid)
        count = len(srv.stored)
        srv.stored_dropped += count
        srv.stored.clear()
        self.s.changed()
        reason = ev.NotificationsDropped.NEW_REGISTRATION
        self.s.emit(ev.NotificationsDropped(now, srv.ssid, count, reason))

    def drop_observation(self, srv: ServerSession, token: bytes, now: float) -> None:
        """An observation ended (a Reset, the failure table, the server's Cancel-Observe):
        what it still had to say is not sent.

        Its notifications still queued in the message layer and those stored
        are dropped, counted with the others and reported once with their
        count: each would only draw another Reset (RFC 7641 §3.6). One already
        transmitted runs to its end: the server may hold it, its ACK or Reset
        is still matched and counted, and with NSTART 1 the Reset that ended
        the observation was its only one outstanding.
        """
        count = srv.channel.withdraw_notifications(token, now)
        kept = [note for note in srv.stored if note.token != token]
        if len(kept) < len(srv.stored):
            count += len(srv.stored) - len(kept)
            srv.stored[:] = kept
            self.s.changed()
        if count:
            srv.stored_dropped += count
            reason = ev.NotificationsDropped.OBSERVATION_CANCELLED
            self.s.emit(ev.NotificationsDropped(now, srv.ssid, count, reason))

    def requeue_unacked(self, srv: ServerSession, *lost: Notification) -> None:
        """Keep confirmable notifications the closing link never delivered (storing on).

        Their server was unreachable, so by Server /1/x/6 they are stored like
        those produced offline: merged by creation time, so the server still
        gets every value in order after re-registration. NON ones are not
        tracked for delivery and are not kept.
        """
        unacked = [
            pending.notification
            for pending in srv.channel.forget_notifications()
            if pending.notification is not None
            and pending.notification.message.type == MessageType.CON
        ]
        notes = [*lost, *unacked]
        if not notes or not srv.account.notification_storing:
            return
        merged = sorted([*notes, *srv.stored], key=lambda n: n.created)
        srv.stored.clear()
        for note in merged:
            self.keep(srv, note)
        self.s.changed()
