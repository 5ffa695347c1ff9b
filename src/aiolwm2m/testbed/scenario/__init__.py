"""Scripted outage scenarios: testbed server + fault proxy + clients in one process.

A scenario is a TOML timeline (see ``docs/fault-injection.md`` and the files in
``aiolwm2m/scenarios/``)::

    [scenario]
    name = "blackhole"
    clients = 1
    duration = 60          # scenario seconds
    bound = 20             # optional: recovery bound after each fault window
    time_scale = 1.0       # real seconds per scenario second

    [client.server]        # config overrides, same keys as the client TOML
    lifetime = 10

    [notify]               # optional: a notification every `every` s
    every = 1.0

    [[step]]
    at = 10
    fault = "blackhole"
    duration = 30
    direction = "both"
    expect = ["error code=timeout"]

:class:`ScenarioRunner` starts the testbed server, a :class:`FaultProxy` in
front of it and the clients (real UDP on 127.0.0.1, ephemeral ports), applies
the steps at their times, records a timeline and judges it:

* after each fault window every client completes a Register or Update within
  the bound (declared, or derived from the client's own schedules);
* every ``expect`` pattern shows up in each client's events during the window;
* notifications arrive at the server in order, and every one produced that did
  not arrive is accounted for by the client (counted as dropped by its
  policy, ended by a Reset that cancelled its observation, or still stored
  at the end);
* no task raised an unhandled exception.

``time_scale`` shrinks every duration — the timeline *and* the client's
timers (CoAP ACK timeout, lifetime, reconnect and retry delays, Max-Age) — by
the same factor, so a 30-minute outage runs in seconds. It is a scaled model
of the real timing, not the real timing: the proportions are kept, while
fixed costs (event-loop latency, whole-second lifetimes and Max-Age values on
the wire) are not scaled.

The package follows that path: :mod:`.schema` (the file and the clients'
configuration), :mod:`.fixtures` (the notifying data model, the counting
server core, the resolver), :mod:`.runner` (one run) and :mod:`.judge` (its
verdict).
"""

from aiolwm2m.testbed.scenario.fixtures import (
    OBSERVED_PATH,
    Delivery,
    NotifyingObjects,
    ObservingCore,
    ScenarioResolver,
)
from aiolwm2m.testbed.scenario.judge import (
    ClientReport,
    Recovery,
    Verdict,
    fault_period,
    judge,
    recovery_bound,
)
from aiolwm2m.testbed.scenario.runner import ScenarioRunner, TimelineEntry, run_scenario
from aiolwm2m.testbed.scenario.schema import (
    SERVER_NAME,
    Expectation,
    NotifySpec,
    Scenario,
    Step,
    client_config,
    load_scenario,
)

__all__ = [
    "OBSERVED_PATH",
    "SERVER_NAME",
    "ClientReport",
    "Delivery",
    "Expectation",
    "NotifySpec",
    "NotifyingObjects",
    "ObservingCore",
    "Recovery",
    "Scenario",
    "ScenarioResolver",
    "ScenarioRunner",
    "Step",
    "TimelineEntry",
    "Verdict",
    "client_config",
    "fault_period",
    "judge",
    "load_scenario",
    "recovery_bound",
    "run_scenario",
]
