"""Once an observation ended, the client sends nothing more for it (RFC 7641 §3.6).

The production object tree, observe scheduler, engine and testbed server core
on the virtual clock; the server observes two resources. It then forgets one
observation (a passive cancel), so the next notification of it that reaches it
is Reset. The notifications of that observation the client has not sent yet
(queued in the message layer behind NSTART, or stored while it is not
registered) would each draw another Reset: they are dropped instead, counted
and reported once with their count, and the other observation goes on.
"""

from __future__ import annotations

from simkit import observed_values, sensor_device

from aiolwm2m.client import events as ev
from aiolwm2m.client.states import ServerState
from aiolwm2m.coap.message import Code, MessageType, decode
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.runtime.sim import SimNetwork
from aiolwm2m.testbed.core import Address
from aiolwm2m.testbed.operations import observe_request
from aiolwm2m.testbed.sim import SimServer

#: Value changes of the observation that ends while the server does not hear them.
SILENT = 4
ENDED, OTHER = "/3303/0/5700", "/3303/1/5700"
CANCELLED = ev.NotificationsDropped.OBSERVATION_CANCELLED


class Observed:
    """A client whose server observes ``ENDED`` and ``OTHER`` (two sensor instances)."""

    def __init__(self, *, confirmable: bool) -> None:
        self.net = net = SimNetwork(seed=4)
        self.server = server = SimServer(net)
        server.start()
        self.client, objects, self.ended = sensor_device(net, server, confirmable=confirmable)
        self.other = objects.tree.add_instance(3303, 1, Instance({5700: 0.0, 5701: "Cel"}))
        net.clock.run_for(1)
        net.trace = []
        self.keys = {}
        for path in (ENDED, OTHER):
            self.keys[path] = server.start_operation("dev-1", observe_request(path))
            net.clock.run_for(1)
        assert len(observed_values(server)) == 2
        self.tokens = {
            "/" + "/".join(msg.uri_path): msg.token
            for _t, src, _dst, data in net.trace
            if src == server.addr and (msg := decode(data)).code == Code.GET
        }
        self.dropped_before = self.client.engine.dropped_notifications(1)
        self.before = len(self.client.events)

    def forget_ended(self) -> None:
        """The server forgets the observation of ``ENDED``: its notifications get RST."""
        self.server.core.cancel_request(self.keys[ENDED], self.net.clock.now)

    def change(self, instance: Instance, value: float) -> None:
        instance.set(5700, value)
        self.client.poll()
        self.net.clock.run_for(1)

    def check_nothing_after_the_reset(self) -> list[ev.Event]:
        """One Reset, nothing of the ended observation after it; the client's events since."""
        trace, server = self.net.trace, self.server
        assert trace is not None
        resets = [t for t, src, _dst, d in trace if src == server.addr and d[0] >> 4 & 3 == 3]
        assert len(resets) == 1, "one Reset: nothing else of that observation reached the server"
        ended = [
            t
            for t, _src, dst, d in trace
            if dst == server.addr and t >= resets[0] and decode(d).token == self.tokens[ENDED]
        ]
        assert ended == [], "nothing of the ended observation after its Reset"
        events = self.client.events[self.before :]
        errors = [(e.code, e.request, e.action) for e in events if isinstance(e, ev.Error)]
        assert errors[-1:] == [(ev.ErrorCode.RESET, "notify", "cancel_observation")]
        assert errors.count(errors[-1]) == 1
        ended_once = [(e.ssid, e.path) for e in events if isinstance(e, ev.ObservationCancelled)]
        assert ended_once == [(1, ENDED)]
        return events


def dropped(events: list[ev.Event]) -> list[tuple[int, int, str]]:
    return [(e.ssid, e.count, e.reason) for e in events if isinstance(e, ev.NotificationsDropped)]


def test_notifications_queued_behind_a_reset_one_are_dropped_not_sent() -> None:
    """CON: the first is retransmitted while the server is deaf, the others queue
    behind it; its retransmission is Reset, and that ends the queue too."""
    sim = Observed(confirmable=True)
    net, client = sim.net, sim.client
    net.filters.append(lambda _src, dst, _data: dst != sim.server.addr)  # deaf
    for second in range(1, SILENT + 1):
        sim.change(sim.ended, float(second))
    sim.forget_ended()
    net.filters.clear()
    net.clock.run_for(10)  # the first notification's retransmission is Reset
    sim.ended.set(5700, 99.0)  # the ended observation produces nothing more
    sim.change(sim.other, 42.0)
    net.clock.run_for(4)

    events = sim.check_nothing_after_the_reset()
    queued = SILENT - 1  # all but the one retransmitted
    assert dropped(events) == [(1, queued, CANCELLED)]
    assert client.engine.dropped_notifications(1) == sim.dropped_before + queued
    assert observed_values(sim.server) == [b"42.0"], "the other observation notifies"
    assert net.trace is not None
    other = [decode(d) for _t, _s, dst, d in net.trace if dst == sim.server.addr]
    assert [m.type for m in other if m.token == sim.tokens[OTHER]][-1] is MessageType.CON


def test_notifications_stored_for_an_observation_a_reset_ended_are_dropped() -> None:
    """NON: one is held up on the way; meanwhile the server forgot the registration
    and the client registers again on the same link, storing both observations'
    values. The held one arrives and is Reset: the values stored for its observation
    are dropped at once, the other's wait for the registration (which, being new,
    ends them in turn with their own ``notifications_dropped``)."""
    sim = Observed(confirmable=False)
    net, server, client = sim.net, sim.server, sim.client
    held: list[tuple[Address, Address, bytes]] = []

    def hold(src: Address, dst: Address, data: bytes) -> bool:
        if dst == server.addr and decode(data).token == sim.tokens[ENDED]:
            held.append((src, dst, data))
            return False
        return True

    def no_register(_src: Address, dst: Address, data: bytes) -> bool:
        msg = decode(data)
        return dst != server.addr or msg.code != Code.POST or msg.uri_path != ["rd"]

    net.filters += [hold, no_register]
    sim.change(sim.ended, 1.0)
    assert len(held) == 1
    sim.forget_ended()
    server.core.forget_registrations()
    client.trigger_update()  # 4.04, then a Register on the same link, lost
    net.clock.run_for(1)
    assert client.engine.server_state(1) is ServerState.REGISTERING
    for value in (2.0, 3.0):
        sim.ended.set(5700, value)
        sim.change(sim.other, value)
    stored = [n.token for n in client.engine.stored_notifications(1)]
    assert sorted(stored) == sorted([sim.tokens[ENDED], sim.tokens[OTHER]] * 2)

    net.filters.remove(hold)
    net.send(*held[0])  # the held notification reaches the server, which Resets it
    net.clock.run_for(0.5)
    events = sim.check_nothing_after_the_reset()
    assert dropped(events) == [(1, 2, CANCELLED)]
    assert [n.token for n in client.engine.stored_notifications(1)] == [sim.tokens[OTHER]] * 2
    assert client.engine.dropped_notifications(1) == sim.dropped_before + 2

    net.filters.clear()
    assert net.clock.run_until_true(lambda: client.engine.registered(), timeout=30)
    events = sim.check_nothing_after_the_reset()
    assert dropped(events)[1:] == [(1, 2, ev.NotificationsDropped.NEW_REGISTRATION)]


def test_a_cancel_observe_drops_the_notifications_not_yet_sent() -> None:
    """The server's own Cancel-Observe (GET with Observe 1) ends the observation as a
    Reset does: of its CON notifications queued behind the one in flight none is sent
    (the server no longer wants them); the one in flight runs to its end."""
    sim = Observed(confirmable=True)
    net, client, server = sim.net, sim.client, sim.server

    def notification_of_ended(data: bytes) -> bool:
        msg = decode(data)
        return msg.token == sim.tokens[ENDED] and msg.observe is not None

    net.filters.append(
        lambda _src, dst, data: dst != server.addr or not notification_of_ended(data)
    )
    for second in range(1, SILENT + 1):
        sim.change(sim.ended, float(second))
    assert net.trace is not None
    cancel_at = len(net.trace)
    server.core.cancel_observation(sim.keys[ENDED], net.clock.now)
    net.clock.run_for(1)
    net.filters.clear()
    net.clock.run_for(20)  # the one in flight is retransmitted, reaches the server, ends
    sim.change(sim.other, 42.0)

    sent_after = {
        decode(d).mid
        for _t, _src, dst, d in net.trace[cancel_at:]
        if dst == server.addr and notification_of_ended(d)
    }
    assert len(sent_after) == 1, "only the notification already in flight, retransmitted"
    events = client.events[sim.before :]
    queued = SILENT - 1
    assert dropped(events) == [(1, queued, CANCELLED)]
    assert client.engine.dropped_notifications(1) == sim.dropped_before + queued
    assert not [e for e in events if isinstance(e, ev.ObservationCancelled)], "the server asked"
    assert observed_values(server)[-1:] == [b"42.0"], "the other observation notifies"
