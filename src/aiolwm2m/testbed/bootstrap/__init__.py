"""Testbed LwM2M Bootstrap-Server: configuration, sans-IO core and asyncio server.

Configured from a TOML file (see ``aiolwm2m/examples/bootstrap.toml`` and
``docs/bootstrap.md``): per endpoint name (and a default) the LwM2M Server
accounts to provision. On a Bootstrap-Request (``POST /bs?ep=…``) it answers
2.04 and then, one request at a time, like common Bootstrap-Servers do:

1. Bootstrap-Discover ``/0`` (Accept 40) to learn which Security instance is
   the client's own Bootstrap-Server account, so new instances never overwrite
   it (``discover = false`` skips it and numbers instances from
   ``first_instance_id``);
2. Bootstrap-Delete ``/0`` and ``/1`` (the client keeps its bootstrap account);
3. Bootstrap-Write of each Security (``/0/x``) and Server (``/1/x``) instance,
   in TLV, or in the format the client's ``pct`` asks for (SenML CBOR/JSON,
   LwM2M CBOR), or the configured ``content_format``;
4. Bootstrap-Finish (``POST /bs``).

Every step is logged as a :class:`~aiolwm2m.testbed.peers.ServerEvent`. A
failed step (error code, timeout) ends the session ("bootstrap_failed"); the
client's Finish answer ends it as "bootstrapped" or "finish_rejected".

Fault rules answer the Bootstrap-Request with a chosen code and diagnostic
payload (e.g. 4.00 "device quota reached"), drop it, or reset it — what the
client's recovery tests need. :meth:`BootstrapCore.push` starts the same
sequence at a client address without a Bootstrap-Request (server-initiated
bootstrap).

The package is split as it is read: :mod:`.config` (the TOML file and what
it provisions), :mod:`.core` (the sans-IO :class:`BootstrapCore`) and
:mod:`.servers` (the asyncio :class:`BootstrapServer`; the simulated one is
:class:`aiolwm2m.testbed.sim.SimBootstrapServer`).
"""

from aiolwm2m.testbed.bootstrap.config import (
    SERVER_RESOURCES,
    WRITE_FORMATS,
    BootstrapConfig,
    BootstrapFault,
    ProvisionedServer,
    load_bootstrap_config,
)
from aiolwm2m.testbed.bootstrap.core import BootstrapCore, BootstrapStep
from aiolwm2m.testbed.bootstrap.servers import BootstrapServer

__all__ = [
    "SERVER_RESOURCES",
    "WRITE_FORMATS",
    "BootstrapConfig",
    "BootstrapCore",
    "BootstrapFault",
    "BootstrapServer",
    "BootstrapStep",
    "ProvisionedServer",
    "load_bootstrap_config",
]
