"""Sans-IO LwM2M client engine: registration lifecycle and the recovery rules.

The engine owns one link per server (a connected UDP socket, or a DTLS
session over one) and one to the Bootstrap-Server. It never opens sockets
itself: it asks the runtime to with :class:`OpenLink`, and the runtime
answers with :meth:`ClientEngine.link_up` or :meth:`ClientEngine.link_failed`
(DNS, ICMP, handshake). Datagrams, ICMP errors and timer expiries are fed in
with the current time; link actions, application events and the next timer
deadline come out.

Only :class:`ClientEngine` and the types of its contract are exported; the
modules named with a leading underscore are its parts (see ``_engine.py``).
"""

from aiolwm2m.client.engine._engine import ClientEngine
from aiolwm2m.client.engine._types import (
    BOOTSTRAP_LINK,
    CloseLink,
    DataModel,
    LinkAction,
    LinkFailure,
    Notification,
    OpenLink,
    RegistrationRecord,
    SendDatagram,
    Snapshot,
)
from aiolwm2m.client.states import BootstrapPhase, ServerState

__all__ = [
    "BOOTSTRAP_LINK",
    "BootstrapPhase",
    "ClientEngine",
    "CloseLink",
    "DataModel",
    "LinkAction",
    "LinkFailure",
    "Notification",
    "OpenLink",
    "RegistrationRecord",
    "SendDatagram",
    "ServerState",
    "Snapshot",
]
