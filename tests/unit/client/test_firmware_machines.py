"""Firmware state tables and the download machine, on a virtual clock (``now`` passed in)."""

from __future__ import annotations

import random

import pytest

from aiolwm2m.client.firmware.download import (
    DEFAULT_FAILURE_RULES,
    Checkpoint,
    DownloadFailed,
    DownloadFinished,
    DownloadMachine,
    DownloadPhase,
    DownloadPolicy,
    FailureKind,
    Fetch,
    ResourceChangedPolicy,
    Restart,
    RetrySchedule,
    RetryWait,
    StopFetch,
)
from aiolwm2m.client.firmware.states import (
    MANIFEST_REFUSAL,
    MANIFEST_TRANSITIONS,
    OBJECT5_REFUSAL,
    OBJECT5_TRANSITIONS,
    FirmwareState,
    LocalStateError,
    Machine,
    ManifestResult,
    ManifestState,
    ManifestTrigger,
    NotAllowedInState,
    RefusedInState,
    Trigger,
    UpdateResult,
)
from aiolwm2m.errors import ConfigError

SERVER_TRIGGERS = {
    Trigger.PUSH_STARTED,
    Trigger.URI_WRITTEN,
    Trigger.RESET,
    Trigger.UPDATE,
    Trigger.CANCEL,
}


def object5(state: FirmwareState) -> Machine[FirmwareState, Trigger, UpdateResult]:
    return Machine(OBJECT5_TRANSITIONS, OBJECT5_REFUSAL, state, UpdateResult.CONNECTION_LOST)


# -- Object 5 table ----------------------------------------------------------------


@pytest.mark.parametrize(("state", "trigger"), sorted(OBJECT5_TRANSITIONS, key=str))
def test_every_object5_transition_goes_where_the_table_says(
    state: FirmwareState, trigger: Trigger
) -> None:
    machine = object5(state)
    transition = OBJECT5_TRANSITIONS[(state, trigger)]
    for result in transition.results or (None,):
        machine = object5(state)
        old, new = machine.fire(trigger, result)
        assert (old, new) == (state, transition.target)
        expected = result if result is not None else UpdateResult.CONNECTION_LOST
        assert machine.result == expected


EXPECTED_REFUSALS = {
    # (state, server trigger): LwM2M error class; every other missing pair is a bug of ours
    (FirmwareState.IDLE, Trigger.UPDATE): NotAllowedInState,
    (FirmwareState.IDLE, Trigger.CANCEL): NotAllowedInState,
    (FirmwareState.DOWNLOADING, Trigger.URI_WRITTEN): RefusedInState,
    (FirmwareState.DOWNLOADING, Trigger.PUSH_STARTED): RefusedInState,
    (FirmwareState.DOWNLOADING, Trigger.UPDATE): NotAllowedInState,
    (FirmwareState.DOWNLOADED, Trigger.URI_WRITTEN): RefusedInState,
    (FirmwareState.DOWNLOADED, Trigger.PUSH_STARTED): RefusedInState,
    (FirmwareState.UPDATING, Trigger.URI_WRITTEN): NotAllowedInState,
    (FirmwareState.UPDATING, Trigger.PUSH_STARTED): NotAllowedInState,
    (FirmwareState.UPDATING, Trigger.RESET): NotAllowedInState,
    (FirmwareState.UPDATING, Trigger.UPDATE): NotAllowedInState,
    (FirmwareState.UPDATING, Trigger.CANCEL): NotAllowedInState,
}


@pytest.mark.parametrize("state", list(FirmwareState))
@pytest.mark.parametrize("trigger", sorted(SERVER_TRIGGERS, key=str))
def test_illegal_server_operations_get_the_named_error_and_change_nothing(
    state: FirmwareState, trigger: Trigger
) -> None:
    machine = object5(state)
    expected = EXPECTED_REFUSALS.get((state, trigger))
    if expected is None:
        assert machine.allowed(trigger)
        return
    with pytest.raises(expected):
        machine.fire(trigger)
    assert machine.state is state
    assert machine.result is UpdateResult.CONNECTION_LOST


def test_refusal_classes_map_to_4_05_and_4_00() -> None:
    from aiolwm2m.client.operations._answers import error_code as _error_code
    from aiolwm2m.coap.message import Code

    assert _error_code(NotAllowedInState("x")) == Code.METHOD_NOT_ALLOWED
    assert _error_code(RefusedInState("x")) == Code.BAD_REQUEST


def test_internal_trigger_in_the_wrong_state_is_our_bug() -> None:
    with pytest.raises(LocalStateError):
        object5(FirmwareState.IDLE).fire(Trigger.DOWNLOADED)
    with pytest.raises(LocalStateError, match="cannot set result"):
        object5(FirmwareState.DOWNLOADING).fire(Trigger.DOWNLOAD_FAILED, UpdateResult.SUCCESS)


def test_manifest_table_follows_the_registry_enumeration() -> None:
    assert [s.value for s in ManifestState] == list(range(9))
    assert [r.value for r in ManifestResult] == list(range(20))
    assert ManifestResult(19).name == "UPDATED_AFTER_RECOVERY"
    assert [r.value for r in UpdateResult] == list(range(12))
    machine = Machine(
        MANIFEST_TRANSITIONS, MANIFEST_REFUSAL, ManifestState.DOWNLOADING, ManifestResult(0)
    )
    with pytest.raises(NotAllowedInState):
        machine.fire(ManifestTrigger.MANIFEST_WRITTEN)
    with pytest.raises(NotAllowedInState):
        machine.fire(ManifestTrigger.MANUAL_TRIGGER)
    assert machine.state is ManifestState.DOWNLOADING


@pytest.mark.parametrize(("state", "trigger"), sorted(MANIFEST_TRANSITIONS, key=str))
def test_every_manifest_transition_goes_where_the_table_says(
    state: ManifestState, trigger: ManifestTrigger
) -> None:
    transition = MANIFEST_TRANSITIONS[(state, trigger)]
    for result in transition.results or (None,):
        machine = Machine(MANIFEST_TRANSITIONS, MANIFEST_REFUSAL, state, ManifestResult(3))
        assert machine.fire(trigger, result) == (state, transition.target)
        assert machine.result == (result if result is not None else ManifestResult(3))


# -- the download machine -------------------------------------------------------------

NO_JITTER = RetrySchedule(first_delay=2.0, multiplier=2.0, max_delay=20.0, jitter=0.0)


def machine(**policy: object) -> DownloadMachine:
    settings: dict[str, object] = {"schedule": NO_JITTER, **policy}
    return DownloadMachine(DownloadPolicy(**settings), random.Random(1))  # type: ignore[arg-type]


def test_first_fetch_then_progress_with_checkpoints() -> None:
    m = machine(checkpoint_bytes=4096)
    m.start(0.0)
    assert m.take_actions() == [Fetch(0, None)]
    m.received(1024, 0.1, validator="e1", total=10_000)
    assert m.take_actions() == []
    m.received(4096, 0.2)
    assert m.take_actions() == [Checkpoint(4096)]
    m.received(10_000, 0.3)
    m.completed(0.4)
    assert m.take_actions() == [Checkpoint(10_000), DownloadFinished(10_000)]
    assert m.phase is DownloadPhase.FINISHED
    assert (m.validator, m.total, m.resumes) == ("e1", 10_000, 0)


def test_transient_failures_back_off_exponentially_and_resume_from_the_last_good_byte() -> None:
    m = machine()
    m.start(0.0)
    m.take_actions()
    m.received(3000, 1.0, validator="e1")
    now = 1.0
    delays = []
    for _ in range(5):
        m.failed(FailureKind.TIMEOUT, now, "no answer")
        (wait,) = m.take_actions()
        assert isinstance(wait, RetryWait)
        delays.append(wait.delay)
        assert m.next_timer() == now + wait.delay
        now += wait.delay
        m.handle_timer(now)
        assert m.take_actions() == [Fetch(3000, "e1")]
    assert delays == [2.0, 4.0, 8.0, 16.0, 20.0]  # capped at max_delay
    assert m.resumes == 5


def test_a_good_block_resets_the_retry_count() -> None:
    m = machine(schedule=RetrySchedule(jitter=0.0, max_retries=2))
    m.start(0.0)
    now = 0.0
    for block in range(1, 6):  # far more failures than max_retries, each followed by progress
        m.failed(FailureKind.NETWORK, now)
        (wait,) = [a for a in m.take_actions() if isinstance(a, RetryWait)]
        assert wait.attempt == 1
        now += wait.delay
        m.handle_timer(now)
        m.received(block * 1024, now)
    assert m.phase is DownloadPhase.FETCHING


def test_jitter_stays_in_its_band_and_differs_per_draw() -> None:
    schedule = RetrySchedule(first_delay=10.0, jitter=0.25)
    rng = random.Random(3)
    draws = [schedule.delay(1, rng) for _ in range(200)]
    assert all(7.5 <= d <= 12.5 for d in draws)
    assert len(set(draws)) > 100


@pytest.mark.parametrize("kind", list(FailureKind))
def test_every_failure_kind_ends_with_its_rule_once_retries_are_used_up(kind: FailureKind) -> None:
    if kind is FailureKind.RESOURCE_CHANGED:
        m = machine(on_resource_changed=ResourceChangedPolicy.FAIL)
    else:
        m = machine(schedule=RetrySchedule(jitter=0.0, max_retries=3))
    m.start(0.0)
    m.take_actions()
    now = 0.0
    retries = 0
    while True:
        m.failed(kind, now, "boom")
        actions = m.take_actions()
        if isinstance(actions[-1], DownloadFailed):
            break
        (wait,) = actions
        assert isinstance(wait, RetryWait)
        retries += 1
        now = wait.delay + now
        m.handle_timer(now)
        m.take_actions()
    failed = actions[-1]
    assert failed.rule == DEFAULT_FAILURE_RULES[kind]
    assert retries == (3 if DEFAULT_FAILURE_RULES[kind].retry else 0)
    assert m.phase is DownloadPhase.FAILED and m.next_timer() is None


def test_result_mapping_follows_anjay() -> None:
    rules = DEFAULT_FAILURE_RULES
    assert rules[FailureKind.DNS].result is UpdateResult.INVALID_URI
    assert rules[FailureKind.NOT_FOUND].result is UpdateResult.INVALID_URI
    assert rules[FailureKind.STORAGE].result is UpdateResult.NOT_ENOUGH_STORAGE
    assert rules[FailureKind.OUT_OF_MEMORY].result is UpdateResult.OUT_OF_MEMORY
    assert rules[FailureKind.INTEGRITY].result is UpdateResult.INTEGRITY_FAILURE
    assert rules[FailureKind.UNSUPPORTED_PROTOCOL].result is UpdateResult.UNSUPPORTED_PROTOCOL
    assert rules[FailureKind.TIMEOUT].manifest_result is ManifestResult.DOWNLOAD_TIMED_OUT
    assert rules[FailureKind.NETWORK].manifest_result is ManifestResult.CONNECTION_LOST
    transient = {k for k, r in rules.items() if r.retry}
    assert transient == {
        FailureKind.TIMEOUT,
        FailureKind.NETWORK,
        FailureKind.SESSION_LOST,
        FailureKind.SERVER_ERROR,
        FailureKind.PROTOCOL,
    }


def test_changed_resource_restarts_from_zero_a_bounded_number_of_times() -> None:
    m = machine(max_restarts=2)
    m.start(0.0)
    m.take_actions()
    m.received(5000, 1.0, validator="old")
    for _ in range(2):
        m.failed(FailureKind.RESOURCE_CHANGED, 2.0, "ETag differs")
        assert m.take_actions() == [Restart(), Fetch(0, None)]
        assert (m.offset, m.validator) == (0, None)
    m.failed(FailureKind.RESOURCE_CHANGED, 3.0)
    (failed,) = m.take_actions()
    assert isinstance(failed, DownloadFailed) and failed.rule.result is UpdateResult.CONNECTION_LOST


def test_overall_deadline_counts_unpaused_time_only() -> None:
    m = machine(schedule=RetrySchedule(jitter=0.0, deadline=100.0))
    m.start(0.0)
    m.take_actions()
    m.pause(50.0)
    assert m.take_actions() == [StopFetch()]
    assert m.next_timer() is None
    m.resume(1000.0)  # 950 s offline do not count
    assert m.take_actions() == [Fetch(0, None)]
    assert m.next_timer() == 1050.0
    m.handle_timer(1049.0)
    assert m.take_actions() == []
    m.handle_timer(1050.0)
    actions = m.take_actions()
    assert actions[0] == StopFetch()
    assert isinstance(actions[1], DownloadFailed) and actions[1].kind is FailureKind.DEADLINE
    assert actions[1].rule.manifest_result is ManifestResult.DOWNLOAD_TIMED_OUT


def test_no_retry_starts_past_the_deadline() -> None:
    m = machine(schedule=RetrySchedule(jitter=0.0, deadline=10.0))
    m.start(0.0)
    m.take_actions()
    m.failed(FailureKind.TIMEOUT, 12.0)
    (failed,) = m.take_actions()
    assert isinstance(failed, DownloadFailed) and failed.kind is FailureKind.DEADLINE


def test_pause_while_backing_off_cancels_the_retry_and_resume_fetches_at_once() -> None:
    m = machine()
    m.start(0.0)
    m.received(2048, 0.5)
    m.failed(FailureKind.SESSION_LOST, 1.0)
    m.take_actions()
    m.pause(1.5)
    assert m.take_actions() == [] and m.next_timer() is None
    m.resume(100.0)
    assert m.take_actions() == [Fetch(2048, None)]
    assert m.resumes == 1


def test_policy_is_checked() -> None:
    with pytest.raises(ConfigError, match="no rule"):
        DownloadPolicy(rules={FailureKind.TIMEOUT: DEFAULT_FAILURE_RULES[FailureKind.TIMEOUT]})
    with pytest.raises(ConfigError):
        RetrySchedule(first_delay=0)
    with pytest.raises(ConfigError):
        RetrySchedule(jitter=1.0)
