"""Server object (/1) instances built from the client's server accounts.

Each :class:`~aiolwm2m.accounts.ServerAccount` is one /1 instance whose
resources mirror the account. A server that writes Lifetime, Default
Minimum/Maximum Period, Disable Timeout, Notification Storing or Binding
changes the account:
the instance keeps the updated :class:`ServerAccount` in :attr:`account` and
reports it through ``on_account_changed``; Registration Update Trigger
(/1/x/8), Disable (/1/x/4) and Bootstrap-Request Trigger (/1/x/9) go to
``on_update_trigger`` / ``on_disable`` / ``on_bootstrap_request``; without the
last (no Bootstrap-Server account) /1/x/9 answers 4.05, and so does a callback
that refuses with :class:`OperationNotAllowedError`.
The client wires those callbacks to the engine (an Update carrying the new
lifetime, disabling the server; the Bootstrap-Request Trigger refused while the
engine has no Bootstrap-Server account), so this module stays free of engine state.

The Security object (/0) is never built here: it holds keys and is visible
to the bootstrap server only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from aiolwm2m.accounts import ServerAccount

from ..model import Value
from ..tree import (
    ExecuteArguments,
    Instance,
    MaybeAwaitable,
    OperationNotAllowedError,
    ResourceValue,
)

__all__ = ["SERVER_OBJECT", "ServerInstance"]

SERVER_OBJECT = 1
SHORT_SERVER_ID = 0
LIFETIME = 1
DEFAULT_PMIN = 2
DEFAULT_PMAX = 3
DISABLE = 4
DISABLE_TIMEOUT = 5
NOTIFICATION_STORING = 6
BINDING = 7
UPDATE_TRIGGER = 8
BOOTSTRAP_REQUEST_TRIGGER = 9
#: Why /1/x/9 is refused (4.05), whether no callback was given or the client's refuses.
NO_BOOTSTRAP_ACCOUNT = "no Bootstrap-Server account to bootstrap from"
MUTE_SEND = 23

#: Disable Timeout when the server never wrote one (the DDF's default, 1 day).
DEFAULT_DISABLE_TIMEOUT = 86400

_ACCOUNT_FIELDS = {
    LIFETIME: "lifetime",
    DEFAULT_PMIN: "default_pmin",
    DEFAULT_PMAX: "default_pmax",
    NOTIFICATION_STORING: "notification_storing",
    BINDING: "binding",
    DISABLE_TIMEOUT: "disable_timeout",
}


#: What an optional account resource a Write replace leaves out falls back to.
_DEFAULTS: dict[int, int] = {
    DEFAULT_PMIN: 0,
    DEFAULT_PMAX: 0,
    DISABLE_TIMEOUT: DEFAULT_DISABLE_TIMEOUT,
}


class ServerInstance(Instance):
    """/1/x for one account; writes update :attr:`account` and call back."""

    def __init__(
        self,
        account: ServerAccount,
        *,
        on_account_changed: Callable[[ServerAccount], None] | None = None,
        on_update_trigger: Callable[[int], None] | None = None,
        on_disable: Callable[[int, float], None] | None = None,
        on_bootstrap_request: Callable[[int], None] | None = None,
    ) -> None:
        self.account = account
        self._on_account_changed = on_account_changed
        self._on_update_trigger = on_update_trigger
        self._on_disable = on_disable
        self._on_bootstrap_request = on_bootstrap_request
        values: dict[int, Value | dict[int, Value]] = {
            SHORT_SERVER_ID: account.short_server_id,
            LIFETIME: account.lifetime,
            DEFAULT_PMIN: account.default_pmin,
            DISABLE_TIMEOUT: account.disable_timeout,
            NOTIFICATION_STORING: account.notification_storing,
            BINDING: account.binding,
        }
        if account.default_pmax > 0:
            values[DEFAULT_PMAX] = account.default_pmax
        super().__init__(
            values,
            on_execute={
                DISABLE: self._disable,
                UPDATE_TRIGGER: self._update,
                BOOTSTRAP_REQUEST_TRIGGER: self._bootstrap_request,
            },
        )

    def check(self, values: Mapping[int, ResourceValue]) -> None:
        """The account's own rules for every value of one Write, before any is applied.

        A Write of lifetime and an unknown binding is refused whole (4.00): the
        lifetime must not change either.
        """
        self._updated(values)

    def _updated(self, values: Mapping[int, ResourceValue]) -> ServerAccount:
        """The account with ``values`` written; ServerAccount raises ConfigError (4.00)."""
        changes: dict[str, Any] = {
            _ACCOUNT_FIELDS[rid]: value for rid, value in values.items() if rid in _ACCOUNT_FIELDS
        }
        return replace(self.account, **changes) if changes else self.account

    def write(self, resource_id: int, value: ResourceValue) -> MaybeAwaitable[None]:
        """Validate against the account's own rules first (binding, lifetime ≥ 1)."""
        if resource_id in _ACCOUNT_FIELDS:
            # ServerAccount.__post_init__ raises ConfigError (a ValueError) on bad values,
            # which the operations layer answers with 4.00 before anything changed.
            updated = self._updated({resource_id: value})
            super().write(resource_id, value)
            self.account = updated
            if self._on_account_changed is not None:
                self._on_account_changed(updated)
            return None
        return super().write(resource_id, value)

    def remove(self, resource_id: int) -> None:
        """A Write replace left out an optional resource: the account takes its default."""
        super().remove(resource_id)
        default = _DEFAULTS.get(resource_id)
        if default is not None:
            changes: dict[str, Any] = {_ACCOUNT_FIELDS[resource_id]: default}
            self.account = replace(self.account, **changes)
            if self._on_account_changed is not None:
                self._on_account_changed(self.account)

    def _update(self, arguments: ExecuteArguments) -> None:
        if self._on_update_trigger is not None:
            self._on_update_trigger(self.account.short_server_id)

    def _disable(self, arguments: ExecuteArguments) -> None:
        """The engine answers, de-registers and stays off for /1/x/5 (see ``on_disable``)."""
        if self._on_disable is not None:
            self._on_disable(self.account.short_server_id, float(self.account.disable_timeout))

    def _bootstrap_request(self, arguments: ExecuteArguments) -> None:
        """Client-initiated bootstrap on request; 4.05 when there is no Bootstrap-Server."""
        if self._on_bootstrap_request is None:
            raise OperationNotAllowedError(NO_BOOTSTRAP_ACCOUNT)
        self._on_bootstrap_request(self.account.short_server_id)
