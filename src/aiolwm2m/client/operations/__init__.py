"""Server-initiated LwM2M operations on the client's object tree (the engine's ``ObjectTree``).

:class:`OperationHandler` maps a CoAP request to an LwM2M operation (LwM2M 1.1.1
Transport §6.4 / Core §5.4):

============================  =====================================================
GET                           Read; Accept 40: Discover; Observe 0/1: (Cancel) Observe
PUT with payload              Write (replace)
PUT with Uri-Query only       Write-Attributes
POST /oid                     Create (2.01, Location-Path of the new instance)
POST /oid/iid                 Write (partial update)
POST /oid/iid/rid             Execute (E resource) or partial update of a multiple one
DELETE /oid/iid               Delete
FETCH /                       Read-Composite; Observe 0/1: (Cancel) Observe-Composite
iPATCH /                      Write-Composite
============================  =====================================================

Errors are answered, never raised: 4.00 bad payload/arguments/attributes,
4.01 refused by Access Control, 4.04 no such path (or a hidden object: the
Security object is never exposed), 4.05 operation not allowed on the target,
4.06 no acceptable format, 4.15 unsupported Content-Format, 5.00 when an
application hook raises (a hook may raise
:class:`~aiolwm2m.lwm2m.model.InvalidValueError` to refuse a written value:
4.00).

**Async hooks.** Any application hook may return an awaitable. The request
is then not answered at once: :meth:`OperationHandler.handle_request` returns None
(the engine keeps the request for a later ``engine.respond``) and queues a
:class:`Job`. The runtime collects jobs with :meth:`OperationHandler.take_jobs`,
awaits ``job.coroutine`` (which never raises: errors become the response)
and passes its result to ``engine.respond(job.ssid, job.request, response,
now)``. This keeps this module sans-IO: it never touches an event loop.
An observed resource with an async read hook is awaited the same way: the
sample raises :class:`~aiolwm2m.client.observe.SamplePending` and queues a
request-less job for the hook; once it answered, the observation runs again
with that answer, so a notification never carries a stale stored value (an
Observe's or Observe-Composite's first answer waits like a Read's; a Send
uses the stored value).

**Block-wise transfers** (RFC 7959, :class:`BlockwiseSettings`). A Read,
Discover or Read-Composite answer larger than the block size (the request's
Block2 size if it names one, else ``block_size``) goes out in Block2 slices
with an ETag; the representation is kept per (server, request) for
``lifetime`` seconds (at most ``max_representations`` of them), so the
following GETs with Block2 NUM > 0 get slices of the same bytes. A request
with Block1 is assembled first (2.31 Continue per block, 4.08 on a gap, 4.13
above ``max_body``) and then handled as one request; its final answer echoes
Block1. The exception is an Opaque Block1 Write to a resource whose instance
is a :class:`~aiolwm2m.lwm2m.tree.BlockSink` (a firmware Package): each block
is handed over as it comes, so the body is never held in memory. A large
notification carries the first block and is continued the same way (RFC
7959 §2.6).

Server object executes and writes that concern the engine (Registration
Update Trigger, Disable, a new lifetime) and instance creation/deletion are
likewise queued as :data:`ClientAction` values for :meth:`take_actions`.

**Layout.** :class:`OperationHandler` (``_handler.py``) is the façade; each
part answers one group of operations: ``_reading.py`` (Read, Read-Composite,
Observe), ``_writing.py`` (Write, Write-Composite, Execute),
``_instances.py`` (Create, Delete), ``_discovery.py`` (Discover,
Write-Attributes), ``_blockwise.py`` (RFC 7959). ``_model.py`` holds the
Access Control checks they share, ``_answers.py`` how an operation ends
(error codes, deferred answers). Only the names below are public.
"""

from aiolwm2m.client.operations._blockwise import BlockwiseSettings
from aiolwm2m.client.operations._defaults import default_objects
from aiolwm2m.client.operations._handler import OperationHandler
from aiolwm2m.client.operations._types import (
    ClientAction,
    DataModelRuntime,
    DisableServer,
    Job,
    ObjectsChanged,
    RequestBootstrap,
    SendError,
    TriggerUpdate,
)

__all__ = [
    "BlockwiseSettings",
    "ClientAction",
    "DataModelRuntime",
    "DisableServer",
    "Job",
    "ObjectsChanged",
    "OperationHandler",
    "RequestBootstrap",
    "SendError",
    "TriggerUpdate",
    "default_objects",
]
