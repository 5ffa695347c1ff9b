"""The state machines alone: no engine, no bytes (in the manner of h11's test_state.py).

Every move the engine makes goes through ``next_server_state`` /
``next_bootstrap_phase``; here the tables are driven directly, legal and
illegal moves alike, and checked for the properties the engine relies on.
"""

from __future__ import annotations

import importlib.util
from collections import deque
from pathlib import Path

import pytest

from aiolwm2m.client.states import (
    BOOTSTRAP_ANYWHERE,
    BOOTSTRAP_TRANSITIONS,
    SERVER_ANYWHERE,
    SERVER_TRANSITIONS,
    BootstrapPhase,
    BootstrapTrigger,
    IllegalTransition,
    ServerState,
    Trigger,
    next_bootstrap_phase,
    next_server_state,
)
from aiolwm2m.errors import InternalError

S, T = ServerState, Trigger
P, B = BootstrapPhase, BootstrapTrigger

PUBLIC_SERVER_STATES = {
    "idle",
    "connecting",
    "registering",
    "registered",
    "deregistering",
    "backoff",
    "suspended",
    "failed",
    "bootstrapping",
    "offline",
}


def walk(state: ServerState, *triggers: Trigger) -> list[ServerState]:
    seen = [state]
    for trigger in triggers:
        state = next_server_state(state, trigger)
        seen.append(state)
    return seen


def test_a_registration_lifecycle_with_queue_mode() -> None:
    assert walk(
        S.IDLE,
        T.START,
        T.LINK_UP,
        T.REGISTER_OK,
        T.SLEEP,
        T.WAKE,
        T.RESUMED,
        T.DEREGISTER,
        T.DEREGISTERED,
    ) == [
        S.IDLE,
        S.CONNECTING,
        S.REGISTERING,
        S.REGISTERED,
        S.ASLEEP,
        S.WAKING,
        S.REGISTERED,
        S.DEREGISTERING,
        S.IDLE,
    ]


def test_recovery_moves() -> None:
    # Initial Registration Delay, a 4.29 before Register, then the §4 retry procedure.
    assert walk(
        S.IDLE, T.DELAY, T.START, T.LINK_UP, T.WAIT_MAX_AGE, T.REGISTER, T.ABORT_REGISTRATION
    )[1:] == [S.DELAYED, S.CONNECTING, S.REGISTERING, S.REGISTER_WAIT, S.REGISTERING, S.BACKOFF]
    # Fall back to Register: on the open link when registered, reopening it when connecting.
    assert next_server_state(S.REGISTERED, T.FALLBACK_REGISTER) is S.REGISTERING
    assert next_server_state(S.CONNECTING, T.FALLBACK_REGISTER) is S.CONNECTING
    assert next_server_state(S.REGISTERING, T.RETRY_HANDSHAKE) is S.CONNECTING
    # Spec §10: a new link resumes an unexpired registration with an Update; a
    # refusal falls back to Register on that link; a stale DTLS session is redone.
    assert walk(S.FAILED, T.START, T.RESUME, T.RESUMED)[1:] == [
        S.CONNECTING,
        S.RESUMING,
        S.REGISTERED,
    ]
    assert S.RESUMING.public is S.REGISTERING
    assert next_server_state(S.RESUMING, T.FALLBACK_REGISTER) is S.REGISTERING
    assert next_server_state(S.REGISTERED, T.RETRY_HANDSHAKE) is S.CONNECTING
    # A queue-mode wake-up whose link fails can run the retry procedure, then resume.
    assert walk(S.WAKING, T.ABORT_REGISTRATION, T.START, T.RESUMED)[1:] == [
        S.BACKOFF,
        S.CONNECTING,
        S.REGISTERED,
    ]


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        (S.IDLE, T.REGISTER_OK),
        (S.IDLE, T.LINK_UP),
        (S.ASLEEP, T.SLEEP),
        (S.ASLEEP, T.DEREGISTER),  # asleep: wake first, De-register on the new link
        (S.REGISTERED, T.WAKE),
        (S.REGISTERED, T.LINK_UP),
        (S.DEREGISTERING, T.REGISTER_OK),
        (S.BACKOFF, T.LINK_UP),
        (S.FAILED, T.RESUMED),
        (S.RESUMING, T.SLEEP),  # queue mode sleeps only once the registration is resumed
        (S.REGISTERED, T.RESUME),
        (S.BOOTSTRAPPING, T.LINK_UP),
        (S.CONNECTING, T.REGISTER_OK),
        (S.REGISTERING, T.DEREGISTERED),
        (S.IDLE, T.BOOTSTRAP_FAILED),
    ],
)
def test_illegal_moves_raise_an_internal_error(state: ServerState, trigger: Trigger) -> None:
    with pytest.raises(IllegalTransition) as raised:
        next_server_state(state, trigger)
    assert isinstance(raised.value, InternalError)
    assert state.value in str(raised.value) and trigger.value in str(raised.value)


@pytest.mark.parametrize("state", list(ServerState))
@pytest.mark.parametrize("trigger", list(SERVER_ANYWHERE))
def test_stops_are_allowed_from_every_state(state: ServerState, trigger: Trigger) -> None:
    assert next_server_state(state, trigger) is SERVER_ANYWHERE[trigger]


def test_every_state_has_a_row_and_only_states_are_targets() -> None:
    assert set(SERVER_TRANSITIONS) == set(ServerState)
    targets = {t for moves in SERVER_TRANSITIONS.values() for t in moves.values()}
    assert targets | set(SERVER_ANYWHERE.values()) <= set(ServerState)
    # No trigger is both a per-state move and a move from anywhere (which would win?).
    assert not {t for moves in SERVER_TRANSITIONS.values() for t in moves} & set(SERVER_ANYWHERE)


def test_hidden_states_report_their_public_name() -> None:
    assert {s.public.value for s in ServerState} == PUBLIC_SERVER_STATES
    hidden = {s for s in ServerState if s.public is not s}
    assert hidden == {S.DELAYED, S.WAKING, S.REGISTER_WAIT, S.RESUMING, S.ASLEEP, S.DISABLING}
    assert all(s.public.public is s.public for s in ServerState)
    assert {p.public for p in BootstrapPhase} == set(BootstrapPhase) - {
        P.LEAVING,
        P.RECONNECTING,
        P.REQUEST_WAIT,
    }


def _reachable(start: ServerState) -> set[ServerState]:
    seen = {start}
    todo = deque([start])
    while todo:
        state = todo.popleft()
        for target in [*SERVER_TRANSITIONS[state].values(), *SERVER_ANYWHERE.values()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_state_is_reachable_and_can_register_again() -> None:
    assert _reachable(S.IDLE) == set(ServerState)
    # No dead end: from every state the server can get registered again
    # (stopped states through the outer loop or the application's revival).
    for state in ServerState:
        assert S.REGISTERED in _reachable(state), state


def test_bootstrap_phases() -> None:
    phase = P.IDLE
    for trigger, expected in [
        (B.BEGIN, P.CONNECTING),
        (B.LINK_UP, P.HOLD_OFF),
        (B.REQUEST, P.REQUESTING),
        (B.WAIT_MAX_AGE, P.REQUEST_WAIT),
        (B.REQUEST, P.REQUESTING),
        (B.RETRY_HANDSHAKE, P.RECONNECTING),
        (B.LINK_UP, P.REQUESTING),
        (B.ACCEPTED, P.PROVISIONING),
        (B.OPERATION, P.PROVISIONING),
        (B.FINISHED, P.IDLE),
    ]:
        phase = next_bootstrap_phase(phase, trigger)
        assert phase is expected, trigger
    # Server-initiated bootstrap: operations during the hold-off.
    assert next_bootstrap_phase(P.HOLD_OFF, B.OPERATION) is P.PROVISIONING
    assert next_bootstrap_phase(P.FAILED, B.RECONNECT) is P.IDLE
    for phase in BootstrapPhase:
        for trigger, target in BOOTSTRAP_ANYWHERE.items():
            assert next_bootstrap_phase(phase, trigger) is target
    assert set(BOOTSTRAP_TRANSITIONS) == set(BootstrapPhase)


@pytest.mark.parametrize(
    ("phase", "trigger"),
    [
        (P.IDLE, B.LINK_UP),
        (P.CONNECTING, B.REQUEST),
        (P.HOLD_OFF, B.ACCEPTED),
        (P.PROVISIONING, B.REQUEST),
        (P.FAILED, B.BEGIN),  # the outer loop's reconnect comes first
        (P.REQUESTING, B.FINISHED),
    ],
)
def test_illegal_bootstrap_moves_raise(phase: BootstrapPhase, trigger: BootstrapTrigger) -> None:
    with pytest.raises(IllegalTransition):
        next_bootstrap_phase(phase, trigger)


def test_the_committed_diagram_is_generated_from_these_tables() -> None:
    script = Path(__file__).resolve().parents[3] / "scripts" / "draw_states.py"
    spec = importlib.util.spec_from_file_location("draw_states", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = module.OUTPUT.read_text()
    assert committed == module.render(), (
        "docs/state-machine.md is stale: run scripts/draw_states.py"
    )
