from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiolwm2m.dtls.policy import (
    FailureInfo,
    HandshakeFailure,
    HandshakeTiming,
    classify_alert,
    classify_handshake_alerts,
)
from aiolwm2m.errors import ConfigError


def test_rfc6347_defaults() -> None:
    t = HandshakeTiming()
    assert (t.initial_timeout, t.max_timeout) == (1.0, 60.0)
    # Doubling capped at the max; the last wait is the max itself (Mbed TLS 2.28).
    assert t.waits == (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
    assert t.retransmission_instants == (1.0, 3.0, 7.0, 15.0, 31.0, 63.0)
    assert t.ultimate_timeout == 123.0
    assert t.transmissions == 7


def test_short_timing_matches_measured_schedule() -> None:
    # Measured against a silent peer: ClientHellos at 0, 0.10, 0.31, 0.71 s,
    # timeout at 1.53 s (python-stack notes); the model is exact to the ms.
    t = HandshakeTiming(0.1, 0.8)
    assert t.waits == (0.1, 0.2, 0.4, 0.8)
    assert t.retransmission_instants == (0.1, 0.3, 0.7)
    assert t.ultimate_timeout == 1.5
    assert t.transmissions == 4


def test_max_not_a_power_of_two_multiple() -> None:
    t = HandshakeTiming(0.1, 0.5)
    assert t.waits == (0.1, 0.2, 0.4, 0.5)
    assert t.ultimate_timeout == 1.2


def test_initial_equals_max_means_no_retransmission() -> None:
    t = HandshakeTiming(2.0, 2.0)
    assert t.waits == (2.0,)
    assert t.retransmission_instants == ()
    assert t.ultimate_timeout == 2.0


@pytest.mark.parametrize(
    ("initial", "maximum"),
    [
        (0, 60),
        (-1, 60),
        (1, 0.5),
        (math.nan, 60),
        (1, math.inf),
        (0.0001, 1),  # below the 1 ms resolution
        (True, 60),
        ("1", 60),
        (1, 5_000_000),  # beyond uint32 milliseconds
    ],
)
def test_invalid_timing(initial: object, maximum: object) -> None:
    with pytest.raises(ConfigError):
        HandshakeTiming(initial, maximum)  # type: ignore[arg-type]


@given(
    st.integers(min_value=1, max_value=10_000),
    st.integers(min_value=1, max_value=2_000_000),
)
def test_schedule_properties(initial_ms: int, max_ms: int) -> None:
    if max_ms < initial_ms:
        max_ms = initial_ms
    t = HandshakeTiming(initial_ms / 1000, max_ms / 1000)
    waits = t.waits
    assert waits[0] == initial_ms / 1000
    assert waits[-1] == max_ms / 1000
    assert all(b == min(2 * a, waits[-1]) for a, b in itertools.pairwise(waits))
    assert len(t.retransmission_instants) == len(waits) - 1
    assert list(t.retransmission_instants) == sorted(t.retransmission_instants)
    assert math.isclose(t.ultimate_timeout, sum(waits))


@pytest.mark.parametrize(
    ("alert", "psk", "kind"),
    [
        (20, True, HandshakeFailure.BAD_PSK),
        (51, True, HandshakeFailure.BAD_PSK),
        (115, True, HandshakeFailure.UNKNOWN_PSK_IDENTITY),
        (40, True, HandshakeFailure.PEER_ALERT),
        (48, False, HandshakeFailure.CLIENT_CERT_REJECTED),
        (42, False, HandshakeFailure.CLIENT_CERT_REJECTED),
        (45, False, HandshakeFailure.CLIENT_CERT_REJECTED),
        (46, False, HandshakeFailure.CLIENT_CERT_REJECTED),
        (20, False, HandshakeFailure.PEER_ALERT),
        (70, False, HandshakeFailure.PEER_ALERT),
        (200, False, HandshakeFailure.PEER_ALERT),
    ],
)
def test_classify_alert(alert: int, psk: bool, kind: HandshakeFailure) -> None:
    assert classify_alert(alert, psk=psk) is kind


def test_credentials_rejected_split() -> None:
    retry = {
        HandshakeFailure.TIMEOUT,
        HandshakeFailure.NETWORK,
        HandshakeFailure.PEER_ALERT,
        HandshakeFailure.INTERNAL,
    }
    for kind in HandshakeFailure:
        assert kind.credentials_rejected is (kind not in retry)


def test_failure_info_text() -> None:
    assert str(FailureInfo(HandshakeFailure.BAD_PSK, 20, "x")) == (
        "bad_psk (alert 20 bad_record_mac): x"
    )
    assert str(FailureInfo(HandshakeFailure.PEER_ALERT, 199)) == "peer_alert (alert 199)"
    assert str(FailureInfo(HandshakeFailure.TIMEOUT)) == "timeout"


# -- classification from the alerts a handshake saw ---------------------------


@pytest.mark.parametrize(
    ("is_client", "psk", "received", "sent", "kind", "alert"),
    [
        (True, True, 20, None, HandshakeFailure.BAD_PSK, 20),
        (True, True, 115, None, HandshakeFailure.UNKNOWN_PSK_IDENTITY, 115),
        (True, False, 48, None, HandshakeFailure.CLIENT_CERT_REJECTED, 48),
        (True, False, 40, None, HandshakeFailure.PEER_ALERT, 40),
        (False, True, 20, None, HandshakeFailure.PEER_ALERT, 20),
        (False, True, None, 115, HandshakeFailure.UNKNOWN_PSK_IDENTITY, 115),
        (False, True, None, 20, HandshakeFailure.BAD_PSK, 20),
        (False, False, None, 20, HandshakeFailure.PEER_ALERT, 20),
        (False, False, None, 48, HandshakeFailure.CLIENT_CERT_REJECTED, 48),
        (False, False, None, 45, HandshakeFailure.CLIENT_CERT_REJECTED, 45),
        (False, False, None, 116, HandshakeFailure.CLIENT_CERT_REJECTED, 116),
        (True, True, None, 40, HandshakeFailure.PEER_ALERT, 40),
        (True, True, None, None, HandshakeFailure.INTERNAL, None),
        (False, False, None, None, HandshakeFailure.INTERNAL, None),
    ],
)
def test_classify_handshake_alerts(
    is_client: bool,
    psk: bool,
    received: int | None,
    sent: int | None,
    kind: HandshakeFailure,
    alert: int | None,
) -> None:
    info = classify_handshake_alerts(
        is_client=is_client, psk=psk, received=received, sent=sent, detail="d"
    )
    assert (info.kind, info.alert) == (kind, alert)
    assert info.detail.startswith("d")
