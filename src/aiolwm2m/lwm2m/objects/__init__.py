"""Built-in objects: Server (1), Access Control (2), Device (3), Connectivity (4).

:func:`build_default_tree` assembles what every client exposes; applications
then add their own objects to the returned tree (see ``docs/data-model.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiolwm2m.accounts import ServerAccount, place_instances

from ..ddf import ObjectRegistry
from ..tree import ExecuteHook, ObjectTree
from .access_control import ACCESS_CONTROL_OBJECT, CREATE_TARGET, AccessControl, Right
from .connectivity import ConnectivityInstance
from .device import DeviceInfo, DeviceInstance
from .host import FixedHost, HostInfo
from .server import SERVER_OBJECT, ServerInstance

__all__ = [
    "ACCESS_CONTROL_OBJECT",
    "CREATE_TARGET",
    "AccessControl",
    "ConnectivityInstance",
    "DefaultObjects",
    "DeviceInfo",
    "DeviceInstance",
    "FixedHost",
    "HostInfo",
    "Right",
    "ServerCallbacks",
    "ServerInstance",
    "add_server_instances",
    "build_default_tree",
]

DEVICE_OBJECT = 3
CONNECTIVITY_OBJECT = 4


@dataclass
class ServerCallbacks:
    """Where Server object writes and executes go (the client wires them to its engine)."""

    account_changed: Callable[[ServerAccount], None] | None = None
    update_trigger: Callable[[int], None] | None = None
    disable: Callable[[int, float], None] | None = None
    # None: /1/x/9 answers 4.05 (no Bootstrap-Server account). The client's default
    # objects always set one; it refuses (OperationNotAllowedError, 4.05) while the
    # engine has no Bootstrap-Server account.
    bootstrap_request: Callable[[int], None] | None = None


@dataclass
class DefaultObjects:
    """The default tree and the access control guarding it."""

    tree: ObjectTree
    access: AccessControl


def add_server_instances(
    tree: ObjectTree,
    access: AccessControl,
    servers: Sequence[ServerAccount],
    callbacks: ServerCallbacks,
) -> None:
    """One /1 instance per account, under the id a bootstrap gave it, owned by its server.

    Accounts without an instance id (a configuration file) take the lowest free
    ids in order (:func:`~aiolwm2m.accounts.place_instances`), the same numbering
    the Security/Server instances of a bootstrap start from.
    """
    iids = place_instances([account.server_instance for account in servers])
    for account, iid in zip(servers, iids, strict=True):
        inst = ServerInstance(
            account,
            on_account_changed=callbacks.account_changed,
            on_update_trigger=callbacks.update_trigger,
            on_disable=callbacks.disable,
            on_bootstrap_request=callbacks.bootstrap_request,
        )
        tree.add_instance(SERVER_OBJECT, iid, inst)
        access.grant(SERVER_OBJECT, iid, account.short_server_id)


def build_default_tree(
    servers: Sequence[ServerAccount],
    *,
    registry: ObjectRegistry | None = None,
    device: DeviceInfo | None = None,
    host: HostInfo | None = None,
    on_reboot: ExecuteHook | None = None,
    on_factory_reset: ExecuteHook | None = None,
    callbacks: ServerCallbacks | None = None,
) -> DefaultObjects:
    """/1 per account, /3/0, /4/0, and /2 when more than one server is configured.

    Default access rights with several servers: each server owns its own /1
    instance (other servers get no access to it); the first configured server
    owns /3/0 and /4/0 and every other server may read (and observe) them.
    Call ``access.grant(...)`` to change that, and for your own objects.
    """
    tree = ObjectTree(registry)
    access = AccessControl(tree, enabled=len(servers) > 1)
    tree.add_object(SERVER_OBJECT)
    add_server_instances(tree, access, servers, callbacks or ServerCallbacks())
    tree.add_instance(
        DEVICE_OBJECT,
        0,
        DeviceInstance(device, host=host, on_reboot=on_reboot, on_factory_reset=on_factory_reset),
    )
    tree.add_instance(CONNECTIVITY_OBJECT, 0, ConnectivityInstance(host))
    if servers:
        primary = servers[0].short_server_id
        for object_id in (DEVICE_OBJECT, CONNECTIVITY_OBJECT):
            access.grant(object_id, 0, primary, {0: Right.READ})
    return DefaultObjects(tree, access)
