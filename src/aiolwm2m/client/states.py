"""The client's state machines as data: one per server, one for the bootstrap phase.

Every state a server can be in is a :class:`ServerState`, including those the
application never sees by name: waiting for the Initial Registration Delay,
waiting out a Max-Age before a Register, resuming a registration with an
Update over a new link, asleep in queue mode, waking from it. Each hidden
state reports the public state it refines (:attr:`ServerState.public`), so
``state_changed`` events name only the ten public states, as they always did.

A move happens only through :func:`next_server_state`: a named
:class:`Trigger` looked up in :data:`SERVER_TRANSITIONS` (moves from one
state) or :data:`SERVER_ANYWHERE` (moves possible from every state, such as
Disable or the end of a bootstrap that replaced the server). A trigger the
tables do not allow in the current state is a bug in the engine and raises
:class:`IllegalTransition`, never a silent move. The bootstrap phase has the
same three pieces. ``scripts/draw_states.py`` draws ``docs/state-machine.md``
from these dicts, so the picture cannot drift from the code.

What the tables do not say is *when* a trigger fires: the failure table
(:mod:`aiolwm2m.client.policy`) picks the recovery action whose trigger is
fired, and the engine fires the protocol ones (link up, Register answered…).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from aiolwm2m.errors import InternalError

__all__ = [
    "BOOTSTRAP_ANYWHERE",
    "BOOTSTRAP_TRANSITIONS",
    "SERVER_ANYWHERE",
    "SERVER_TRANSITIONS",
    "BootstrapPhase",
    "BootstrapTrigger",
    "IllegalTransition",
    "ServerState",
    "Trigger",
    "next_bootstrap_phase",
    "next_server_state",
]


StateT = TypeVar("StateT", bound=enum.Enum)
TriggerT = TypeVar("TriggerT", bound=enum.Enum)


class IllegalTransition(InternalError):
    """The engine fired a trigger its state machine does not allow: an engine bug."""


class ServerState(enum.StrEnum):
    """Where one server's registration stands; see the module docstring."""

    IDLE = "idle"  # not started, or stopped after De-register
    DELAYED = "delayed"  # hidden (idle): waiting for the Initial Registration Delay (/1/x/14)
    CONNECTING = "connecting"  # waiting for the runtime to open the link
    WAKING = "waking"  # hidden (connecting): queue mode reopens the link to resume
    REGISTERING = "registering"
    REGISTER_WAIT = "register_wait"  # hidden (registering): a Max-Age before Register
    # hidden (registering): a new link resumes the registration with an Update (spec §10)
    RESUMING = "resuming"
    REGISTERED = "registered"
    ASLEEP = "asleep"  # hidden (registered): queue mode closed the idle link
    DEREGISTERING = "deregistering"
    DISABLING = "disabling"  # hidden (deregistering): Disable executed: De-register, then off
    BACKOFF = "backoff"  # waiting in the §4 retry procedure
    SUSPENDED = "suspended"  # disabled: off until enabled or its timeout
    FAILED = "failed"  # gave up / aborted; only the outer loop or the app revives it
    BOOTSTRAPPING = "bootstrapping"
    OFFLINE = "offline"  # enter_offline(): no socket, notifications stored, until exit_offline()

    @property
    def public(self) -> ServerState:
        """The state the application sees (``state()``, ``state_changed``)."""
        return _PUBLIC_SERVER.get(self, self)


_PUBLIC_SERVER = {
    ServerState.DELAYED: ServerState.IDLE,
    ServerState.WAKING: ServerState.CONNECTING,
    ServerState.REGISTER_WAIT: ServerState.REGISTERING,
    ServerState.RESUMING: ServerState.REGISTERING,
    ServerState.ASLEEP: ServerState.REGISTERED,
    ServerState.DISABLING: ServerState.DEREGISTERING,
}


class Trigger(enum.Enum):
    """Named inputs of the server state machine."""

    START = "start"  # open the link: first start, a retry, a revival
    DELAY = "delay"  # start after the Initial Registration Delay
    LINK_UP = "link_up"  # the link is open: Register
    RESUME = "resume"  # the link is open, the registration unexpired: Update first
    RESUMED = "resumed"  # the server still holds the registration (queue wake, Update 2.04)
    REGISTER = "register"  # Register again on the same link (4.12 fallback, Max-Age, 1.1 Q)
    REGISTER_OK = "register_ok"
    SLEEP = "sleep"  # queue mode: the link was idle for MAX_TRANSMIT_WAIT
    WAKE = "wake"  # queue mode: something to send
    DEREGISTER = "deregister"
    DEREGISTERED = "deregistered"  # answered, failed or given up: the session ends
    # failure-table actions (client/policy.py Action) that move the server
    FALLBACK_REGISTER = "fallback_register"
    RETRY_HANDSHAKE = "retry_handshake"
    ABORT_REGISTRATION = "abort_registration"
    WAIT_MAX_AGE = "wait_max_age"
    BOOTSTRAP = "bootstrap"  # (B) holds: wait for client-initiated bootstrap
    ABORT_ALL = "abort_all"
    GIVE_UP = "give_up"  # (B) does not hold, or the retry procedure is exhausted
    # the application, the bootstrap flow and configuration
    INVALID = "invalid"  # bad URI, endpoint or credentials: no retry until reconfigured
    DISABLE = "disable"
    DISABLE_EXECUTED = "disable_executed"  # Server /1/x/4: De-register, then suspended
    OFFLINE = "offline"
    CLOSE = "close"
    BOOTSTRAP_FAILED = "bootstrap_failed"
    BOOTSTRAP_FINISHED = "bootstrap_finished"  # the server set was replaced


_S = ServerState
_T = Trigger

#: The request-carrying states: where a request can fail and the failure
#: table's action moves the server (custom tables may pick any action).
_ACTING = (
    _S.CONNECTING,
    _S.WAKING,
    _S.REGISTERING,
    _S.REGISTER_WAIT,
    _S.RESUMING,
    _S.REGISTERED,
)


def _acting(state: ServerState) -> dict[Trigger, ServerState]:
    """The failure-table actions possible while ``state`` carries requests."""
    link_open = state in (_S.REGISTERING, _S.REGISTER_WAIT, _S.RESUMING, _S.REGISTERED)
    return {
        # With the link open the Register goes out on it, else the link reopens first.
        _T.FALLBACK_REGISTER: _S.REGISTERING if link_open else _S.CONNECTING,
        _T.RETRY_HANDSHAKE: _S.CONNECTING,
        _T.ABORT_REGISTRATION: _S.BACKOFF,
    }


#: Moves from one state: {state: {trigger: next state}}.
SERVER_TRANSITIONS: Mapping[ServerState, Mapping[Trigger, ServerState]] = {
    _S.IDLE: {_T.START: _S.CONNECTING, _T.DELAY: _S.DELAYED},
    _S.DELAYED: {_T.START: _S.CONNECTING},
    _S.CONNECTING: {
        **_acting(_S.CONNECTING),
        _T.LINK_UP: _S.REGISTERING,
        _T.RESUME: _S.RESUMING,
        _T.RESUMED: _S.REGISTERED,
    },
    # Woken to register again (queue mode switched under 1.1), or to resume.
    _S.WAKING: {**_acting(_S.WAKING), _T.LINK_UP: _S.REGISTERING, _T.RESUMED: _S.REGISTERED},
    _S.REGISTERING: {
        **_acting(_S.REGISTERING),
        _T.REGISTER: _S.REGISTERING,
        _T.WAIT_MAX_AGE: _S.REGISTER_WAIT,
        _T.REGISTER_OK: _S.REGISTERED,
    },
    _S.REGISTER_WAIT: {**_acting(_S.REGISTER_WAIT), _T.REGISTER: _S.REGISTERING},
    # A Max-Age (4.29, 5.03) to the resuming Update is waited out here too.
    _S.RESUMING: {**_acting(_S.RESUMING), _T.RESUMED: _S.REGISTERED},
    _S.REGISTERED: {
        **_acting(_S.REGISTERED),
        _T.REGISTER: _S.REGISTERING,  # a change only Register carries (1.1 Queue Mode)
        _T.SLEEP: _S.ASLEEP,
        _T.DEREGISTER: _S.DEREGISTERING,
        _T.DISABLE_EXECUTED: _S.DISABLING,
    },
    _S.ASLEEP: {_T.WAKE: _S.WAKING},
    _S.DEREGISTERING: {_T.DEREGISTERED: _S.IDLE},
    # Core, Server /1/x/4: answered, de-registered, disconnected, off for /1/x/5.
    _S.DISABLING: {_T.DEREGISTERED: _S.SUSPENDED},
    _S.BACKOFF: {_T.START: _S.CONNECTING},
    _S.SUSPENDED: {_T.START: _S.CONNECTING, _T.DELAY: _S.SUSPENDED},
    _S.FAILED: {_T.START: _S.CONNECTING, _T.DELAY: _S.FAILED},
    # A server still waiting for its registration turn (/1/x/13) when it was
    # stopped is started when the turn comes (a delay keeps the stopped state).
    _S.BOOTSTRAPPING: {
        _T.BOOTSTRAP_FAILED: _S.FAILED,
        _T.START: _S.CONNECTING,
        _T.DELAY: _S.BOOTSTRAPPING,
    },
    _S.OFFLINE: {_T.START: _S.CONNECTING, _T.DELAY: _S.OFFLINE},
}

#: Moves possible from every state (stops): {trigger: next state}.
SERVER_ANYWHERE: Mapping[Trigger, ServerState] = {
    _T.BOOTSTRAP: _S.BOOTSTRAPPING,
    _T.ABORT_ALL: _S.FAILED,
    _T.GIVE_UP: _S.FAILED,
    _T.INVALID: _S.FAILED,
    _T.DISABLE: _S.SUSPENDED,
    _T.OFFLINE: _S.OFFLINE,
    _T.CLOSE: _S.IDLE,
    _T.BOOTSTRAP_FINISHED: _S.IDLE,
}


def next_server_state(state: ServerState, trigger: Trigger) -> ServerState:
    """Where ``trigger`` takes a server in ``state``; raises :class:`IllegalTransition`."""
    return _next("server", SERVER_TRANSITIONS, SERVER_ANYWHERE, state, trigger)


class BootstrapPhase(enum.StrEnum):
    """Progress of one client-initiated (or server-initiated) bootstrap."""

    IDLE = "idle"
    # hidden (idle): Bootstrap-Request Trigger (/1/x/9) executed: De-register first
    LEAVING = "leaving"
    CONNECTING = "connecting"  # waiting for the runtime to open the Bootstrap-Server link
    RECONNECTING = "reconnecting"  # hidden (connecting): a handshake retry; Request at once
    HOLD_OFF = "hold_off"  # link open: a server-initiated bootstrap may start; then Request
    REQUEST_WAIT = "request_wait"  # hidden (hold_off): a 4.29's Max-Age before the Request
    REQUESTING = "requesting"  # Bootstrap-Request sent
    PROVISIONING = "provisioning"  # taking Bootstrap-Server operations until Finish
    FAILED = "failed"  # this attempt failed: (B) does not hold until the outer loop retries

    @property
    def public(self) -> BootstrapPhase:
        """The phase ``bootstrap_phase()`` reports."""
        return _PUBLIC_BOOTSTRAP.get(self, self)


_PUBLIC_BOOTSTRAP = {
    BootstrapPhase.LEAVING: BootstrapPhase.IDLE,
    BootstrapPhase.RECONNECTING: BootstrapPhase.CONNECTING,
    BootstrapPhase.REQUEST_WAIT: BootstrapPhase.HOLD_OFF,
}


class BootstrapTrigger(enum.Enum):
    """Named inputs of the bootstrap state machine."""

    BEGIN = "begin"
    TRIGGERED = "triggered"  # a server executed /1/x/9: De-register from the servers, then begin
    LINK_UP = "link_up"
    REQUEST = "request"  # the hold-off (or a Max-Age) is over: Bootstrap-Request
    ACCEPTED = "accepted"  # 2.04 to the Request
    OPERATION = "operation"  # a Bootstrap-Server operation arrived
    FINISHED = "finished"  # Bootstrap-Finish accepted: registration takes over
    RETRY_HANDSHAKE = "retry_handshake"
    WAIT_MAX_AGE = "wait_max_age"
    FAIL = "fail"  # link failure, failure-table action, no Finish in time, bad account
    STOP = "stop"  # close(), enter_offline()
    RECONNECT = "reconnect"  # the outer loop tries the Bootstrap-Server again


_P = BootstrapPhase
_B = BootstrapTrigger

BOOTSTRAP_TRANSITIONS: Mapping[BootstrapPhase, Mapping[BootstrapTrigger, BootstrapPhase]] = {
    _P.IDLE: {_B.BEGIN: _P.CONNECTING, _B.TRIGGERED: _P.LEAVING},
    _P.LEAVING: {_B.BEGIN: _P.CONNECTING},
    _P.CONNECTING: {_B.LINK_UP: _P.HOLD_OFF},
    _P.RECONNECTING: {_B.LINK_UP: _P.REQUESTING},
    _P.HOLD_OFF: {_B.REQUEST: _P.REQUESTING, _B.OPERATION: _P.PROVISIONING},
    _P.REQUEST_WAIT: {_B.REQUEST: _P.REQUESTING, _B.OPERATION: _P.PROVISIONING},
    _P.REQUESTING: {
        _B.ACCEPTED: _P.PROVISIONING,
        _B.OPERATION: _P.PROVISIONING,
        _B.RETRY_HANDSHAKE: _P.RECONNECTING,
        _B.WAIT_MAX_AGE: _P.REQUEST_WAIT,
    },
    _P.PROVISIONING: {_B.OPERATION: _P.PROVISIONING, _B.FINISHED: _P.IDLE},
    _P.FAILED: {_B.RECONNECT: _P.IDLE, _B.TRIGGERED: _P.LEAVING},
}

BOOTSTRAP_ANYWHERE: Mapping[BootstrapTrigger, BootstrapPhase] = {
    _B.FAIL: _P.FAILED,
    _B.STOP: _P.IDLE,
}


def next_bootstrap_phase(phase: BootstrapPhase, trigger: BootstrapTrigger) -> BootstrapPhase:
    """Where ``trigger`` takes the bootstrap in ``phase``; raises :class:`IllegalTransition`."""
    return _next("bootstrap", BOOTSTRAP_TRANSITIONS, BOOTSTRAP_ANYWHERE, phase, trigger)


def _next(
    machine: str,
    transitions: Mapping[StateT, Mapping[TriggerT, StateT]],
    anywhere: Mapping[TriggerT, StateT],
    state: StateT,
    trigger: TriggerT,
) -> StateT:
    target = transitions[state].get(trigger) or anywhere.get(trigger)
    if target is None:
        raise IllegalTransition(f"{machine}: {trigger.value!r} is not allowed in {state.value!r}")
    return target
