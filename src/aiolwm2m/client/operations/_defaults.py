"""The default data model of a client, wired to the handler's action queue.

Internal to :mod:`aiolwm2m.client.operations`, which re-exports
:func:`default_objects`.
"""

from __future__ import annotations

from aiolwm2m.accounts import ServerAccount
from aiolwm2m.client.config import ClientConfig
from aiolwm2m.client.observe import ObserveSettings
from aiolwm2m.client.operations._blockwise import BlockwiseSettings
from aiolwm2m.client.operations._handler import OperationHandler
from aiolwm2m.client.operations._types import (
    ClientAction,
    DisableServer,
    RequestBootstrap,
    TriggerUpdate,
)
from aiolwm2m.lwm2m.ddf import ObjectRegistry
from aiolwm2m.lwm2m.objects import DeviceInfo, HostInfo, ServerCallbacks, build_default_tree
from aiolwm2m.lwm2m.objects.server import NO_BOOTSTRAP_ACCOUNT
from aiolwm2m.lwm2m.tree import ExecuteHook, OperationNotAllowedError

__all__ = ["default_objects"]


def default_objects(
    config: ClientConfig,
    *,
    registry: ObjectRegistry | None = None,
    device: DeviceInfo | None = None,
    host: HostInfo | None = None,
    on_reboot: ExecuteHook | None = None,
    on_factory_reset: ExecuteHook | None = None,
    observe: ObserveSettings | None = None,
    blockwise: BlockwiseSettings | None = None,
) -> OperationHandler:
    """The client's default data model: Server (1), Access Control (2, only with more
    than one server), Device (3), Connectivity Monitoring (4).

    Add application objects to ``result.tree`` before starting the client (or
    later: the next Update carries the new object list). ``host`` is what /3
    and /4 report; without one the runtime attaches its own when the client is
    built (see :meth:`OperationHandler.attach_host`).
    """
    actions = _ActionQueue()
    callbacks = ServerCallbacks(
        account_changed=actions.account_changed,
        update_trigger=actions.update_trigger,
        disable=actions.disable,
        bootstrap_request=actions.bootstrap_request,
    )
    built = build_default_tree(
        config.servers,
        registry=registry,
        device=device,
        host=host,
        on_reboot=on_reboot,
        on_factory_reset=on_factory_reset,
        callbacks=callbacks,
    )
    ops = OperationHandler(built.tree, access=built.access, observe=observe, blockwise=blockwise)
    ops.server_callbacks = callbacks
    actions.handler = ops
    return ops


class _ActionQueue:
    """Server object callbacks turned into the handler's :data:`ClientAction` queue.

    One small object per client instead of three closures and a holder list.
    """

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: OperationHandler | None = None

    def _queue(self, action: ClientAction) -> None:
        assert self.handler is not None, "the handler is set as soon as it is built"
        self.handler.queue_action(action)

    def account_changed(self, account: ServerAccount) -> None:
        self._queue(TriggerUpdate(account.short_server_id, account))

    def update_trigger(self, ssid: int) -> None:
        self._queue(TriggerUpdate(ssid))

    def disable(self, ssid: int, timeout: float) -> None:
        self._queue(DisableServer(ssid, timeout))

    def bootstrap_request(self, ssid: int) -> None:
        """4.05 while the engine has no Bootstrap-Server account (none configured, or
        purged since): the request would start nothing, and the Execute says so."""
        assert self.handler is not None, "the handler is set as soon as it is built"
        if not self.handler.bootstrap_account_present():
            raise OperationNotAllowedError(NO_BOOTSTRAP_ACCOUNT)
        self._queue(RequestBootstrap(ssid))
