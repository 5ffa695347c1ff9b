"""aiolwm2m: an asyncio LwM2M client that recovers on its own from every kind of failure.

Everything a program needs is importable from here::

    from aiolwm2m import Client, ClientConfig, ServerAccount, events

    async with Client(ClientConfig("dev-1", servers=(ServerAccount("coap://host"),))) as c:
        await c.wait_for(events.Registered, 30)

The names load on first use (PEP 562), so ``import aiolwm2m`` (and the
``aiolwm2m`` command's ``--help``) stays cheap and never loads the TLS stack:
DTLS is imported only when a ``coaps://`` link opens. Deeper modules
(``aiolwm2m.client.engine``, ``aiolwm2m.coap``, ``aiolwm2m.testbed``…) are for
advanced uses and tests; what is exported here is the supported surface.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiolwm2m.accounts import RetrySettings, ServerAccount
    from aiolwm2m.client import events
    from aiolwm2m.client.config import ClientConfig, RegistrationConfig, load_config
    from aiolwm2m.client.events import ErrorCode, Event
    from aiolwm2m.client.operations import default_objects
    from aiolwm2m.client.states import ServerState
    from aiolwm2m.errors import (
        ConfigError,
        DecodeError,
        EncodeError,
        InternalError,
        Lwm2mError,
        NotAllowedError,
        StorageError,
    )
    from aiolwm2m.lwm2m.model import InvalidValueError
    from aiolwm2m.lwm2m.path import Path
    from aiolwm2m.lwm2m.tree import ExecuteArguments, Instance
    from aiolwm2m.runtime.aio import Client
    from aiolwm2m.runtime.sim import SimClient, SimNetwork

__version__ = "0.1.0"

#: Where each exported name lives (loaded by :func:`__getattr__` on first use).
_LAZY = {
    "Client": "aiolwm2m.runtime.aio",
    "ClientConfig": "aiolwm2m.client.config",
    "ConfigError": "aiolwm2m.errors",
    "DecodeError": "aiolwm2m.errors",
    "EncodeError": "aiolwm2m.errors",
    "ErrorCode": "aiolwm2m.client.events",
    "Event": "aiolwm2m.client.events",
    "ExecuteArguments": "aiolwm2m.lwm2m.tree",
    "Instance": "aiolwm2m.lwm2m.tree",
    "InternalError": "aiolwm2m.errors",
    "InvalidValueError": "aiolwm2m.lwm2m.model",
    "Lwm2mError": "aiolwm2m.errors",
    "NotAllowedError": "aiolwm2m.errors",
    "Path": "aiolwm2m.lwm2m.path",
    "RegistrationConfig": "aiolwm2m.client.config",
    "RetrySettings": "aiolwm2m.accounts",
    "ServerAccount": "aiolwm2m.accounts",
    "ServerState": "aiolwm2m.client.states",
    "SimClient": "aiolwm2m.runtime.sim",
    "SimNetwork": "aiolwm2m.runtime.sim",
    "StorageError": "aiolwm2m.errors",
    "default_objects": "aiolwm2m.client.operations",
    "load_config": "aiolwm2m.client.config",
}

__all__ = [
    "Client",
    "ClientConfig",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "ErrorCode",
    "Event",
    "ExecuteArguments",
    "Instance",
    "InternalError",
    "InvalidValueError",
    "Lwm2mError",
    "NotAllowedError",
    "Path",
    "RegistrationConfig",
    "RetrySettings",
    "ServerAccount",
    "ServerState",
    "SimClient",
    "SimNetwork",
    "StorageError",
    "__version__",
    "default_objects",
    "events",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name == "events":  # the module itself: ``events.Registered``
        value: Any = importlib.import_module("aiolwm2m.client.events")
    elif (module := _LAZY.get(name)) is not None:
        value = getattr(importlib.import_module(module), name)
    else:
        raise AttributeError(f"module 'aiolwm2m' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
