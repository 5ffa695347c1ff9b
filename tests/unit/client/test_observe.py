"""Observe scheduler (client/observe.py) on a plain float clock with an in-test sampler."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.engine import Notification
from aiolwm2m.client.observe import (
    SEQUENCE_MODULUS,
    InvalidObservationError,
    Observation,
    ObservedPathGone,
    Observer,
    ObserveSettings,
)
from aiolwm2m.client.operations import default_objects
from aiolwm2m.coap.message import Code, MessageType, OptionNumber, encode_uint
from aiolwm2m.errors import ConfigError
from aiolwm2m.lwm2m.attributes import Attributes, effective_attributes, parse_query
from aiolwm2m.lwm2m.model import Value
from aiolwm2m.lwm2m.path import Path
from aiolwm2m.lwm2m.tree import Instance
from aiolwm2m.lwm2m.values import Record
from aiolwm2m.runtime.sim import SimClient, SimNetwork
from aiolwm2m.testbed.operations import (
    OperationRequest,
    OperationResult,
    observe_request,
    write_attributes_request,
)
from aiolwm2m.testbed.sim import SimServer

TEMP = Path.of(3303, 0, 5700)
TEXT = 0


class FakeSampler:
    """Values in a dict, attributes per server resolved by the real inheritance rules."""

    def __init__(self) -> None:
        self.values: dict[Path, Value] = {}
        self.stored: dict[int, dict[Path, Attributes]] = {}
        self.default_pmin: int | None = None
        self.default_pmax: int | None = None
        self.samples = 0

    def sample(
        self, ssid: int, paths: Sequence[Path], content_format: int
    ) -> tuple[bytes, list[Record]]:
        self.samples += 1
        records: list[Record] = []
        for path in paths:
            if path.is_resource and path in self.values:  # fast path for big tests
                found = [Record(path, self.values[path])]
            else:
                found = [Record(p, v) for p, v in self.values.items() if path.contains(p)]
            found.sort(key=lambda r: r.path)
            if not found:
                raise ObservedPathGone(str(path))
            records += found
        return ";".join(f"{r.path}={r.value}" for r in records).encode(), records

    def attributes(self, ssid: int, path: Path) -> Attributes:
        return effective_attributes(
            path,
            self.stored.get(ssid, {}),
            default_pmin=self.default_pmin,
            default_pmax=self.default_pmax,
        )

    def write_attributes(self, ssid: int, path: Path, attrs: Attributes) -> None:
        self.stored.setdefault(ssid, {})[path] = attrs


class Harness:
    """An observer, its sampler, and every notification with the time it was taken."""

    def __init__(self, observe_settings: ObserveSettings | None = None) -> None:
        self.sampler = FakeSampler()
        self.observer = Observer(self.sampler, observe_settings)
        self.now = 0.0
        self.sent: list[Notification] = []

    def observe(
        self, *paths: Path, ssid: int = 1, token: bytes = b"\x01", attrs: Attributes | None = None
    ) -> int:
        if attrs is not None:
            self.sampler.write_attributes(ssid, paths[0], attrs)
        return self.observer.add(Observation(ssid, token, paths, TEXT), self.now)

    def run_until(self, until: float) -> None:
        """Fire every timer up to ``until`` at its exact time, like the virtual clock."""
        while (deadline := self.observer.next_timer()) is not None and deadline <= until:
            assert deadline >= self.now, "a timer in the past was left pending"
            self.now = deadline
            self.observer.handle_timer(deadline)
            self.collect()
        self.now = until
        self.collect()

    def set(self, path: Path, value: Value, at: float) -> None:
        self.run_until(at)
        self.sampler.values[path] = value
        self.observer.values_changed([path], at)
        self.collect()

    def collect(self) -> None:
        self.sent += self.observer.take_notifications(self.now)

    def times(self) -> list[float]:
        return [n.created for n in self.sent]

    def payloads(self) -> list[str]:
        return [n.message.payload.decode() for n in self.sent]


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.sampler.values[TEMP] = 10.0
    return harness


# ---------------------------------------------------------------------- message shape


def test_notification_message_is_a_complete_205(h: Harness) -> None:
    assert h.observe(TEMP, token=b"\xaa\xbb") == 1  # not 0: see ObserveSettings
    h.set(TEMP, 11.5, at=3.0)
    [note] = h.sent
    msg = note.message
    assert msg.code == Code.CONTENT
    assert msg.type == MessageType.NON
    assert msg.token == b"\xaa\xbb" == note.token
    assert msg.observe == 2
    assert msg.content_format == TEXT
    assert msg.payload == b"/3303/0/5700=11.5"
    assert (note.ssid, note.path, note.created) == (1, "/3303/0/5700", 3.0)


def test_without_attributes_every_change_notifies_at_once(h: Harness) -> None:
    h.observe(TEMP)
    for t, v in [(1.0, 11.0), (1.0, 12.0), (5.0, 13.0)]:
        h.set(TEMP, v, at=t)
    assert h.times() == [1.0, 1.0, 5.0]
    assert h.observer.next_timer() is None


def test_plain_change_reads_the_value_only_when_notifying(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(pmin=10))
    samples = h.sampler.samples
    for t in (1.0, 2.0, 3.0):
        h.set(TEMP, t, at=t)
    assert h.sampler.samples == samples
    h.run_until(10.0)
    assert h.payloads() == ["/3303/0/5700=3.0"]
    assert h.sampler.samples == samples + 1


# ---------------------------------------------------------------------- pmin / pmax


def test_pmin_suppresses_and_sends_the_latest_value_when_it_expires(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(pmin=10))
    h.set(TEMP, 11.0, at=2.0)
    h.set(TEMP, 12.0, at=4.0)
    assert h.sent == []
    assert h.observer.next_timer() == 10.0
    h.run_until(10.0)
    assert h.times() == [10.0]
    assert h.payloads() == ["/3303/0/5700=12.0"]
    h.set(TEMP, 13.0, at=25.0)  # pmin long over: immediate
    h.set(TEMP, 14.0, at=26.0)  # within pmin of the last one: waits until 35
    h.run_until(100.0)
    assert h.times() == [10.0, 25.0, 35.0]


def test_pmax_forces_notifications_without_change(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(pmax=30))
    assert h.observer.next_timer() == 30.0
    h.run_until(65.0)
    assert h.times() == [30.0, 60.0]
    h.set(TEMP, 11.0, at=70.0)  # a change restarts the pmax period
    h.run_until(120.0)
    assert h.times() == [30.0, 60.0, 70.0, 100.0]


@pytest.mark.parametrize(("pmin", "pmax"), [(10, 10), (0, 0), (5, 0)])
def test_pmax_not_greater_than_pmin_is_ignored(h: Harness, pmin: int, pmax: int) -> None:
    h.observe(TEMP, attrs=Attributes(pmin=pmin, pmax=pmax))
    assert h.observer.next_timer() is None
    h.run_until(1000.0)
    assert h.sent == []


def test_server_default_periods_apply_when_no_level_sets_them(h: Harness) -> None:
    h.sampler.default_pmin, h.sampler.default_pmax = 5, 60
    h.observe(TEMP)
    h.set(TEMP, 11.0, at=1.0)
    h.run_until(70.0)
    assert h.times() == [5.0, 65.0]


# ---------------------------------------------------------------------- thresholds


def test_gt_notifies_on_crossing_in_both_directions(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(gt=20.0))
    for t, v in enumerate([15.0, 18.0, 25.0, 30.0, 20.0, 19.0, 21.0], start=1):
        h.set(TEMP, v, at=float(t))
    # 18->25 crosses up, 30->20 crosses down (20 is not > 20), 19->21 up again.
    assert h.times() == [3.0, 5.0, 7.0]


def test_lt_notifies_on_crossing_in_both_directions(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(lt=0.0))
    for t, v in enumerate([5.0, -1.0, -5.0, 0.0, 3.0, -0.5], start=1):
        h.set(TEMP, v, at=float(t))
    assert h.times() == [2.0, 4.0, 6.0]


def test_gt_and_lt_together_fire_on_either(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(lt=0.0, gt=30.0))
    for t, v in enumerate([10.0, 35.0, 20.0, -2.0, 15.0], start=1):
        h.set(TEMP, v, at=float(t))
    assert h.times() == [2.0, 3.0, 4.0, 5.0]


def test_negative_thresholds_from_a_query_notify_on_crossing(h: Harness) -> None:
    # Core §5.1.2: gt and lt are Floats, so a server may set them below zero.
    h.observe(TEMP, attrs=parse_query("gt=-2.5&lt=-100000000000000000000").values)
    for t, v in enumerate([-1.0, -3.0, -2.5, -2.0, -2e20, -1e19], start=1):
        h.set(TEMP, v, at=float(t))
    # 10 -> -1 stays above gt, -1 -> -3 crosses it down, -2.5 is not > -2.5,
    # -2.5 -> -2 up again; -2e20 falls below lt and -1e19 rises back over it.
    assert h.times() == [2.0, 4.0, 5.0, 6.0]


def test_st_measures_from_the_last_notified_value(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(st=5.0))  # baseline 10
    for t, v in enumerate([12.0, 14.0, 15.5, 17.0, 20.4, 20.5, 10.0], start=1):
        h.set(TEMP, v, at=float(t))
    # 15.5 (5.5 from 10), then 20.5 (5.0 from 15.5), then 10 (10.5 from 20.5).
    assert h.payloads() == [f"/3303/0/5700={v}" for v in (15.5, 20.5, 10.0)]


def test_threshold_event_during_pmin_latches_until_pmin_ends(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(pmin=10, gt=20.0))
    h.set(TEMP, 25.0, at=1.0)
    h.set(TEMP, 15.0, at=2.0)  # back below: the crossing still has to be reported
    h.run_until(20.0)
    assert h.times() == [10.0]
    assert h.payloads() == ["/3303/0/5700=15.0"]


def test_thresholds_on_a_non_numeric_value_fall_back_to_any_change(h: Harness) -> None:
    path = Path.of(3, 0, 0)
    h.sampler.values[path] = "ACME"
    h.observe(path, attrs=Attributes(gt=1.0))
    h.set(path, "Other", at=1.0)
    assert h.times() == [1.0]


# ---------------------------------------------------------------------- evaluation periods


def test_epmin_delays_the_evaluation_of_reported_changes(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(epmin=5, gt=20.0))
    samples = h.sampler.samples
    h.set(TEMP, 25.0, at=1.0)
    assert h.sampler.samples == samples  # no sample before epmin
    assert h.observer.next_timer() == 5.0
    h.run_until(5.0)
    assert h.times() == [5.0]
    h.set(TEMP, 15.0, at=6.0)  # evaluated at 5 + 5
    h.run_until(20.0)
    assert h.times() == [5.0, 10.0]


def test_epmax_samples_periodically_and_catches_silent_changes(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(epmax=10))
    samples = h.sampler.samples
    h.run_until(10.0)
    assert h.sent == [] and h.sampler.samples == samples + 1  # sampled, unchanged
    h.sampler.values[TEMP] = 99.0  # no value_changed: a sensor read on demand
    h.run_until(25.0)
    assert h.times() == [20.0]
    assert h.payloads() == ["/3303/0/5700=99.0"]


def test_epmax_with_thresholds_only_notifies_on_threshold_events(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(epmax=10, gt=50.0))
    h.sampler.values[TEMP] = 40.0
    h.run_until(15.0)
    assert h.sent == []
    h.sampler.values[TEMP] = 60.0
    h.run_until(25.0)
    assert h.times() == [20.0]


def test_epmax_not_greater_than_epmin_is_ignored(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(epmin=10, epmax=10))
    assert h.observer.next_timer() is None


# ------------------------------------------------------------ inheritance, Write-Attributes


def test_object_level_attributes_apply_to_a_resource_unless_overridden(h: Harness) -> None:
    h.sampler.write_attributes(1, Path.of(3303), Attributes(pmin=10, pmax=100))
    h.observe(TEMP)
    h.set(TEMP, 11.0, at=1.0)
    h.run_until(10.0)
    assert h.times() == [10.0]
    assert h.observer.next_timer() == 110.0  # pmax inherited too
    h.sampler.write_attributes(1, TEMP, Attributes(pmin=0))
    h.observer.attributes_changed(1, 20.0)
    h.set(TEMP, 12.0, at=21.0)
    h.set(TEMP, 13.0, at=22.0)
    assert h.times() == [10.0, 21.0, 22.0]
    assert h.observer.next_timer() == 122.0


def test_attributes_are_per_server(h: Harness) -> None:
    h.sampler.write_attributes(2, TEMP, Attributes(pmin=50))
    h.observe(TEMP, ssid=1)
    h.observe(TEMP, ssid=2)
    h.set(TEMP, 11.0, at=1.0)
    h.run_until(100.0)
    assert [(n.ssid, n.created) for n in h.sent] == [(1, 1.0), (2, 50.0)]


def test_attributes_changed_reschedules(h: Harness) -> None:
    h.observe(TEMP)
    assert h.observer.next_timer() is None
    h.sampler.write_attributes(1, TEMP, Attributes(pmax=20))
    h.observer.attributes_changed(1, 5.0)
    assert h.observer.next_timer() == 20.0  # measured from the last notification (t=0)
    h.sampler.write_attributes(1, TEMP, Attributes(pmax=3))
    h.observer.attributes_changed(1, 5.0)  # already overdue: sent now
    h.collect()
    assert h.times() == [5.0]
    assert h.observer.next_timer() == 8.0


def test_attributes_changed_adding_thresholds_takes_a_new_baseline(h: Harness) -> None:
    h.observe(TEMP)
    h.sampler.values[TEMP] = 25.0  # changed silently before the thresholds arrive
    h.sampler.write_attributes(1, TEMP, Attributes(gt=20.0))
    h.observer.attributes_changed(1, 1.0)
    h.set(TEMP, 26.0, at=2.0)  # 25 -> 26 does not cross 20
    assert h.sent == []
    h.set(TEMP, 19.0, at=3.0)
    assert h.times() == [3.0]


def test_attributes_changed_keeps_the_st_reference_of_untouched_paths(h: Harness) -> None:
    other = Path.of(3303, 1, 5700)
    h.sampler.values[other] = 0.0
    h.sampler.write_attributes(1, TEMP, Attributes(st=5.0))
    h.observe(TEMP, other)  # TEMP notified as 10
    h.sampler.values[TEMP] = 14.0  # silently: not evaluated
    h.sampler.write_attributes(1, other, Attributes(gt=1.0))
    h.observer.attributes_changed(1, 1.0)  # re-baselines ``other`` only
    h.set(TEMP, 15.0, at=2.0)  # 5 from the value last sent, not from 14
    assert h.times() == [2.0]


def test_attributes_changed_for_another_server_changes_nothing(h: Harness) -> None:
    h.observe(TEMP)
    h.sampler.write_attributes(2, TEMP, Attributes(pmax=5))
    h.observer.attributes_changed(2, 1.0)
    assert h.observer.next_timer() is None


# ---------------------------------------------------------------------- sequence numbers, CON/NON


def test_sequence_numbers_increase_and_wrap_at_24_bits() -> None:
    h = Harness(ObserveSettings(initial_sequence=SEQUENCE_MODULUS - 2))
    h.sampler.values[TEMP] = 1.0
    assert h.observe(TEMP) == SEQUENCE_MODULUS - 2
    for t in (1.0, 2.0, 3.0):
        h.set(TEMP, t, at=t)
    assert [n.message.observe for n in h.sent] == [SEQUENCE_MODULUS - 1, 0, 1]


@pytest.mark.parametrize("first", [0, 254, 65534, SEQUENCE_MODULUS - 2])
def test_observe_option_is_the_minimal_uint_at_every_length(first: int) -> None:
    """The Observe bytes are encode_uint's (no leading zero byte, 0 is empty) across
    each change of length: the observer builds them without calling it."""
    h = Harness(ObserveSettings(initial_sequence=first))
    h.sampler.values[TEMP] = 1.0
    h.observe(TEMP)
    for t in (1.0, 2.0):
        h.set(TEMP, t, at=t)
    raw = [n.message.get_first(OptionNumber.OBSERVE) for n in h.sent]
    expected = [(first + i) % SEQUENCE_MODULUS for i in (1, 2)]
    assert raw == [encode_uint(v) for v in expected]


def test_sequence_never_goes_back_for_a_replaced_or_reused_token(h: Harness) -> None:
    assert h.observe(TEMP) == 1
    h.set(TEMP, 1.0, at=1.0)
    assert h.observe(TEMP) == 3  # same ssid and token: replaced, not restarted
    assert len(h.observer) == 1
    assert h.observer.remove(1, b"\x01")
    assert h.observe(TEMP) == 4  # the token re-used after a cancel
    assert h.observe(TEMP, token=b"\x02") == 5


def test_a_con_notification_at_least_every_24_hours(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(pmax=3600))
    h.run_until(2 * 86400.0)
    con = [n.created for n in h.sent if n.message.type == MessageType.CON]
    assert len(h.sent) == 48
    assert con == [86400.0, 2 * 86400.0]


def test_confirmable_setting_makes_every_notification_con() -> None:
    h = Harness(ObserveSettings(confirmable=True))
    h.sampler.values[TEMP] = 1.0
    h.observe(TEMP)
    h.set(TEMP, 2.0, at=1.0)
    h.set(TEMP, 3.0, at=2.0)
    assert [n.message.type for n in h.sent] == [MessageType.CON, MessageType.CON]


@pytest.mark.parametrize(
    "kwargs", [{"max_non_interval": 0}, {"initial_sequence": -1}, {"initial_sequence": 1 << 24}]
)
def test_bad_settings_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ObserveSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("token", "paths"), [(b"\x01", ()), (b"123456789", (TEMP,))])
def test_bad_observations_are_rejected(token: bytes, paths: tuple[Path, ...]) -> None:
    with pytest.raises(InvalidObservationError):
        Observation(1, token, paths, TEXT)


# ---------------------------------------------------------------------- ending observations


def test_path_gone_sends_404_without_observe_and_ends_the_observation(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(pmax=10))
    del h.sampler.values[TEMP]
    h.run_until(100.0)
    [note] = h.sent
    assert note.message.code == Code.NOT_FOUND
    assert not note.message.has(OptionNumber.OBSERVE)
    assert note.message.type == MessageType.CON
    assert note.created == 10.0
    assert len(h.observer) == 0
    assert h.observer.next_timer() is None


def test_path_gone_while_notifying_a_change(h: Harness) -> None:
    h.observe(TEMP)
    del h.sampler.values[TEMP]
    h.observer.values_changed([TEMP], 1.0)
    h.collect()
    assert [n.message.code for n in h.sent] == [Code.NOT_FOUND]
    assert h.observer.remove(1, b"\x01") is False


def test_path_gone_at_registration_registers_nothing(h: Harness) -> None:
    with pytest.raises(ObservedPathGone):
        h.observe(Path.of(3303, 1))
    assert len(h.observer) == 0


def test_remove_ends_one_observation(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(pmax=10))
    h.observe(TEMP, token=b"\x02", attrs=Attributes(pmax=10))
    assert h.observer.remove(1, b"\x01") is True
    assert h.observer.remove(1, b"\x01") is False
    h.run_until(10.0)
    assert [n.token for n in h.sent] == [b"\x02"]


def test_drop_ends_every_observation_of_a_server_and_its_unsent_notifications(
    h: Harness,
) -> None:
    h.observe(TEMP, ssid=1)
    h.observe(TEMP, ssid=1, token=b"\x02")
    h.observe(TEMP, ssid=2)
    h.sampler.values[TEMP] = 11.0
    h.observer.values_changed([TEMP], 1.0)  # notifications produced, not yet taken
    h.observer.drop(1)
    h.collect()
    assert [n.ssid for n in h.sent] == [2]
    assert [o.ssid for o in h.observer.observations()] == [2]


# ---------------------------------------------------------------------- which changes count


def test_value_changed_reaches_observations_above_and_below_the_path(h: Harness) -> None:
    name = Path.of(3, 0, 0)
    other_instance = Path.of(3303, 1, 5700)
    h.sampler.values.update({name: "ACME", other_instance: 1.0})
    h.observe(Path.of(3303, 0), token=b"inst")  # parent of the changed resource
    h.observe(Path.of(3303), token=b"obj")
    h.observe(TEMP, token=b"res")
    h.observe(other_instance, token=b"other")
    h.observe(name, token=b"name")
    h.observe(Path(), token=b"root")
    h.set(TEMP, 12.0, at=1.0)
    assert sorted(n.token for n in h.sent) == [b"inst", b"obj", b"res", b"root"]
    h.sent.clear()
    # A whole instance changed (e.g. replaced by Write): its resources' observations react.
    h.sampler.values[other_instance] = 2.0
    h.observer.values_changed([Path.of(3303, 1)], 2.0)
    h.collect()
    assert sorted(n.token for n in h.sent) == [b"obj", b"other", b"root"]
    h.sent.clear()
    h.observer.values_changed([Path()], 3.0)
    h.collect()
    assert len(h.sent) == 6


def test_object_and_root_observations_are_reached_after_others_end(h: Harness) -> None:
    # The observer counts the observations of an object or the root (a resource
    # change looks for them only while there are some): ending, replacing or
    # dropping some must leave the others reachable, and none when all ended.
    h.observe(Path.of(3303), token=b"obj")
    h.observe(Path(), token=b"root")
    h.observe(Path.of(3303), token=b"obj")  # replaced: counted once
    h.observe(Path.of(3303), ssid=2, token=b"server2")
    h.observe(TEMP, token=b"res")
    assert h.observer.remove(1, b"root")
    h.observer.drop(2)
    h.set(TEMP, 12.0, at=1.0)
    assert sorted(n.token for n in h.sent) == [b"obj", b"res"]
    h.sent.clear()
    assert h.observer.remove(1, b"obj")
    h.set(TEMP, 13.0, at=2.0)
    assert [n.token for n in h.sent] == [b"res"]
    h.sent.clear()
    h.observe(Path(), token=b"root2")
    h.set(TEMP, 14.0, at=3.0)
    assert sorted(n.token for n in h.sent) == [b"res", b"root2"]


def test_a_composite_reacts_once_to_changes_of_several_of_its_paths(h: Harness) -> None:
    name = Path.of(3, 0, 0)
    h.sampler.values[name] = "ACME"
    h.observe(TEMP, name, token=b"both")
    h.observe(Path.of(3303, 0), token=b"inst")
    h.observer.values_changed([TEMP, name, Path.of(3, 0, 1)], 1.0)
    h.collect()
    assert [n.token for n in h.sent] == [b"both", b"inst"]  # once each, in key order
    h.sent.clear()
    h.observer.values_changed([Path.of(3, 1, 0)], 2.0)  # neither path
    h.collect()
    assert h.sent == []


def test_composite_notifies_when_any_path_rule_fires(h: Harness) -> None:
    battery = Path.of(3, 0, 9)
    h.sampler.values[battery] = 80
    h.sampler.write_attributes(1, TEMP, Attributes(gt=20.0))
    h.observe(TEMP, battery)
    h.set(TEMP, 15.0, at=1.0)  # below gt: no event
    assert h.sent == []
    h.set(battery, 79, at=2.0)  # no thresholds there: any change
    h.set(TEMP, 21.0, at=3.0)  # crosses gt
    assert h.times() == [2.0, 3.0]
    assert h.sent[0].path == "/3303/0/5700,/3/0/9"
    assert h.payloads()[1] == "/3303/0/5700=21.0;/3/0/9=79"


def test_composite_uses_each_paths_pmin_and_the_smallest_pmax(h: Harness) -> None:
    battery = Path.of(3, 0, 9)
    h.sampler.values[battery] = 80
    h.sampler.write_attributes(1, TEMP, Attributes(pmin=10, pmax=100))
    h.sampler.write_attributes(1, battery, Attributes(pmin=2, pmax=50))
    h.observe(TEMP, battery)
    assert h.observer.next_timer() == 50.0
    h.set(TEMP, 11.0, at=1.0)  # temperature's pmin: not before 10
    h.set(battery, 70, at=5.0)  # battery's pmin is over: sent now, with both values
    h.set(TEMP, 12.0, at=6.0)  # 5 + temperature's pmin
    h.run_until(20.0)
    assert h.times() == [5.0, 15.0]
    assert h.payloads()[0] == "/3303/0/5700=11.0;/3/0/9=70"


# ---------------------------------------------------------------------- many observations


def test_many_observations_fire_in_deadline_order() -> None:
    h = Harness()
    count = 500
    pmaxes: dict[bytes, int] = {}
    for i in range(count):
        path = Path.of(3303, i, 5700)
        h.sampler.values[path] = float(i)
        token = i.to_bytes(2, "big")
        pmaxes[token] = (i * 7919) % count + 1  # a permutation of 1..count
        h.observe(path, token=token, attrs=Attributes(pmax=pmaxes[token]))
    assert h.observer.next_timer() == 1.0
    h.run_until(float(count))
    assert h.times() == sorted(h.times())
    by_token: dict[bytes, list[float]] = {}
    for note in h.sent:
        by_token.setdefault(note.token, []).append(note.created)
    for token, pmax in pmaxes.items():
        assert by_token[token] == [float(k * pmax) for k in range(1, count // pmax + 1)]


def test_frequent_reschedules_keep_the_timer_heap_bounded(h: Harness) -> None:
    h.observe(TEMP, attrs=Attributes(pmax=100_000))
    h.observe(TEMP, token=b"\x02", attrs=Attributes(pmax=50_000))
    for t in range(1, 2001):  # each change moves both pmax deadlines
        h.set(TEMP, float(t), at=float(t))
    assert len(h.sent) == 4000
    assert len(h.observer._heap) <= 2 * 2 + 65
    assert h.observer.next_timer() == 2000.0 + 50_000


# ---------------------------------------------------------------------- properties

_steps = st.lists(st.tuples(st.integers(0, 40), st.integers(-50, 50)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    pmin=st.integers(0, 30),
    pmax=st.integers(0, 90),
    epmin=st.none() | st.integers(0, 10),
    gt=st.none() | st.integers(-20, 20),
    steps=_steps,
)
def test_property_pmin_and_pmax_bound_the_gaps(
    pmin: int, pmax: int, epmin: int | None, gt: int | None, steps: list[tuple[int, int]]
) -> None:
    h = Harness()
    h.sampler.values[TEMP] = 0.0
    attrs = Attributes(pmin=pmin, pmax=pmax, epmin=epmin, gt=None if gt is None else float(gt))
    h.observe(TEMP, attrs=attrs)
    t = 0.0
    for delay, value in steps:
        t += delay
        h.set(TEMP, float(value), at=t)
    h.run_until(t + 200.0)
    times = [0.0, *h.times()]  # the first response counts
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= pmin for gap in gaps)
    if pmax > pmin:
        assert all(gap <= pmax for gap in gaps)
        assert t + 200.0 - times[-1] <= pmax
    if gt is None and epmin is None and pmax <= pmin:
        # Any change notifies, no sooner than pmin and no later than needed.
        changes = [sum(d for d, _ in steps[: i + 1]) for i in range(len(steps))]
        for change in changes:
            assert any(change <= sent <= change + pmin for sent in h.times())


@settings(max_examples=150, deadline=None)
@given(
    gt=st.integers(-10, 10),
    values=st.lists(st.integers(-20, 20), min_size=1, max_size=30),
)
def test_property_gt_notifies_exactly_on_crossings(gt: int, values: list[int]) -> None:
    h = Harness()
    h.sampler.values[TEMP] = 0.0
    h.observe(TEMP, attrs=Attributes(gt=float(gt)))
    for t, value in enumerate(values, start=1):
        h.set(TEMP, float(value), at=float(t))
    previous = [0, *values]
    expected = [
        float(t)
        for t, (a, b) in enumerate(zip(previous, values, strict=False), start=1)
        if (a > gt) != (b > gt)
    ]
    assert h.times() == expected


_PATHS = (TEMP, Path.of(3303, 1, 5700), Path.of(3303, 0), Path.of(3303))
_op = st.one_of(
    st.tuples(st.just("change"), st.integers(0, 1), st.integers(-30, 30)),
    st.tuples(st.just("silent"), st.integers(0, 1), st.integers(-30, 30)),
    st.tuples(st.just("wait"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("attrs"), st.integers(0, 3), st.integers(0, 20)),
    st.tuples(st.just("observe"), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(st.just("remove"), st.integers(0, 2), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_op, max_size=40))
def test_property_timers_and_sequences_stay_consistent(ops: list[tuple[str, int, int]]) -> None:
    h = Harness()
    h.sampler.values.update({TEMP: 0.0, Path.of(3303, 1, 5700): 0.0})
    last_seq: dict[bytes, int] = {}
    checked = 0

    def check_new_notifications() -> None:
        nonlocal checked
        for note in h.sent[checked:]:
            if note.message.code == Code.CONTENT:
                seq = note.message.observe
                assert seq is not None and seq > last_seq[note.token]
                last_seq[note.token] = seq
        checked = len(h.sent)
        assert h.times() == sorted(h.times())

    for kind, a, b in ops:
        if kind == "change":
            h.set(_PATHS[a], float(b), at=h.now + 1)
        elif kind == "silent":
            h.sampler.values[_PATHS[a]] = float(b)
        elif kind == "wait":
            h.run_until(h.now + a)
        elif kind == "attrs":
            gt = float(b) if _PATHS[a].is_resource else None
            attrs = Attributes(pmin=b % 7, pmax=b + 3, epmax=b % 5 + 1, gt=gt)
            h.sampler.write_attributes(1, _PATHS[a], attrs)
            h.observer.attributes_changed(1, h.now)
        elif kind == "observe":
            check_new_notifications()
            token = bytes([b])
            seq = h.observer.add(Observation(1, token, (_PATHS[a],), TEXT), h.now)
            assert token not in last_seq or seq > last_seq[token]
            last_seq[token] = seq
        else:
            h.observer.remove(1, bytes([a]))
        h.collect()
        check_new_notifications()
        deadline = h.observer.next_timer()
        assert deadline is None or deadline > h.now
        assert len(h.observer._heap) <= 2 * len(h.observer) + 65
    h.run_until(h.now + 100)
    check_new_notifications()


# ---------------------------------------------------------------------- end to end, virtual clock


class SimDevice:
    """A client with a 3303 temperature sensor and the testbed server, on the virtual clock."""

    def __init__(self) -> None:
        self.net = SimNetwork()
        self.server = SimServer(self.net)
        self.server.start()
        account = ServerAccount(self.server.uri, 1, lifetime=86400)
        config = ClientConfig(endpoint="dev-1", servers=(account,))
        self.objects = default_objects(config)
        self.objects.tree.add_object(3303, factory=lambda iid: Instance())
        self.objects.tree.add_instance(3303, 0, Instance({5700: 20.0, 5701: "Cel"}))
        self.client = SimClient(self.net, config, self.objects, rng=random.Random(1))
        self.client.start()
        self.events: list[tuple[float, int, OperationResult]] = []
        self.net.clock.run_for(5.0)
        assert self.client.engine.registered()

    @property
    def now(self) -> float:
        return self.net.clock.now

    def operation(self, request: OperationRequest) -> tuple[float, OperationResult]:
        """Send, and step the clock only until its answer arrives: (arrival time, answer)."""
        key = self.server.start_operation("dev-1", request)
        clock = self.net.clock
        while clock.step():
            self._collect()
            for i, (_, event_key, _) in enumerate(self.events):
                if event_key == key:
                    when, _, result = self.events.pop(i)
                    return when, result
        raise AssertionError("no answer")

    def run_until(self, until: float) -> None:
        """Step the clock, noting when each notification reaches the server."""
        clock = self.net.clock
        while (t := clock.next_time()) is not None and t <= until:
            clock.step()
            self._collect()
        clock.run_until(until)

    def _collect(self) -> None:
        while (event := self.server.core.next_response()) is not None:
            assert event.operation is not None, event.result
            self.events.append((self.net.clock.now, event.key, event.operation))

    def notes(self, since: float) -> list[tuple[float, bytes]]:
        """Notifications so far: (arrival time - ``since``, payload); forgets them."""
        out = [(round(t - since, 6), result.payload) for t, _, result in self.events]
        self.events.clear()
        return out

    def set_temperature(self, value: float, at: float) -> None:
        self.run_until(at)
        self.objects.tree.set("/3303/0/5700", value)  # the tree wakes the client itself


def test_end_to_end_pmin_pmax_inheritance_and_gt_on_the_virtual_clock() -> None:
    dev = SimDevice()
    # Object-level pmin/pmax, inherited by the observed resource.
    _, written = dev.operation(write_attributes_request("/3303", {"pmin": 10, "pmax": 60}))
    assert written.code == Code.CHANGED
    start, first = dev.operation(observe_request("/3303/0/5700", 0))
    assert (first.code, first.payload) == (Code.CONTENT, b"20.0")
    dev.set_temperature(21.0, at=start + 1)  # pmin suppresses until start + 10
    dev.run_until(start + 75)
    assert dev.notes(start) == [(10.0, b"21.0"), (70.0, b"21.0")]  # then pmax forces one
    # gt on the resource itself: only crossings count; pmin is still the object's.
    _, written = dev.operation(write_attributes_request("/3303/0/5700", {"gt": 30}))
    assert written.code == Code.CHANGED
    dev.set_temperature(29.0, at=start + 76)
    dev.set_temperature(31.0, at=start + 77)  # crosses: sent when pmin ends (70 + 10)
    dev.run_until(start + 100)
    assert dev.notes(start) == [(80.0, b"31.0")]
