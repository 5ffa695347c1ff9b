"""Sans-IO Bootstrap interface of the client: the Security (/0) and Server (/1)
instances as data, and the answers to a Bootstrap-Server's operations.

Why a separate data copy instead of the application's object tree: bootstrap
rewrites the very accounts the engine is connected with, and a bootstrap that
fails half-way (a Finish that never comes, a Finish whose configuration is
inconsistent) must leave the device exactly as it was. So the engine hands a
*copy* of its :class:`Provisioning` to a :class:`BootstrapHandler`, the
Bootstrap-Server edits the copy, and only a successful Bootstrap-Finish
replaces the engine's provisioning and server set ("nothing half-written").

Operations (LwM2M Core TS 1.1.1 §5.2.7 and §6.1.7):

* Bootstrap-Write (PUT) on ``/0``, ``/1``, their instances and resources. An
  object- or instance-level write *replaces* each instance it carries (stale
  credentials of a rewritten account cannot survive); a resource-level write
  sets that one resource. Writes to any other object are answered 2.04 and
  ignored: this client provisions only accounts (documented in
  ``docs/bootstrap.md``).
* Bootstrap-Read (GET) on ``/1`` or ``/1/x`` (LwM2M 1.1 allows /1 and /2; this
  client has no Access Control object, so ``/2`` is 4.04); anything else 4.00.
* Bootstrap-Discover (GET, Accept 40) on ``/`` or ``/oid``: link-format that
  starts with ``</>;lwm2m=`` and the enabler version the client is configured
  for, the one its Register announces (for ``/oid`` too), ``ssid``/``uri`` on
  Security instances and ``ssid`` on Server instances (Core 1.1.1 §6.1.7.3).
* Bootstrap-Delete (DELETE) on ``/``, ``/0``, ``/1``, ``/0/x``, ``/1/x``. The
  Bootstrap-Server's own Security instance (resource 1 true) is never deleted:
  wider deletes skip it, a delete of exactly that instance is 4.00. The
  application's objects are left alone (2.02); an object the client lacks
  is 4.00.
* Bootstrap-Finish (POST ``/bs``): :meth:`Provisioning.accounts` checks the
  result, a rewritten Bootstrap-Server account included; an inconsistent
  configuration is answered 4.06 Not Acceptable with a plain-text diagnostic
  payload.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aiolwm2m.accounts import (
    InvalidParameters,
    RetrySettings,
    SecurityMode,
    ServerAccount,
    check_security,
    parse_server_uri,
    place_instances,
)
from aiolwm2m.client.config import ClientConfig, RegistrationConfig
from aiolwm2m.coap.message import CoapDecodeError, Code, Message, OptionNumber, encode_uint
from aiolwm2m.errors import ConfigError, Lwm2mError, StorageError
from aiolwm2m.lwm2m import (
    ContentFormat,
    ContentFormatError,
    FormatEncodeError,
    ObjLnk,
    Path,
    PathError,
    Record,
    UnsupportedFormatError,
    Value,
    decode,
    encode,
    linkformat,
    load_builtin,
)
from aiolwm2m.lwm2m.linkformat import Link, ObjectEntry

SECURITY = 0
SERVER = 1
ACCESS_CONTROL = 2

#: Security object resources used here (OMA object 0).
SEC_URI, SEC_BOOTSTRAP, SEC_MODE, SEC_IDENTITY, SEC_SERVER_KEY, SEC_SECRET = 0, 1, 2, 3, 4, 5
SEC_SSID, SEC_HOLD_OFF, SEC_BS_ACCOUNT_TIMEOUT = 10, 11, 12
#: Server object resources used here (OMA object 1).
SRV_SSID, SRV_LIFETIME, SRV_PMIN, SRV_PMAX, SRV_STORING, SRV_BINDING = 0, 1, 2, 3, 6, 7
SRV_DISABLE_TIMEOUT = 5
SRV_PRIORITY, SRV_INITIAL_DELAY, SRV_FAILURE_BLOCK = 13, 14, 15
SRV_BS_ON_FAILURE, SRV_RETRY_COUNT, SRV_RETRY_TIMER = 16, 17, 18
SRV_SEQ_DELAY, SRV_SEQ_RETRY_COUNT = 19, 20

#: Short server id given to the Bootstrap-Server account when /0/x/10 has none:
#: the account needs one to be a :class:`ServerAccount`; nothing routes on it.
BOOTSTRAP_ACCOUNT_SSID = 65534

#: Format of Bootstrap-Read answers when the request has no Accept option.
DEFAULT_READ_FORMAT = ContentFormat.TLV

ResourceValue = Value | dict[int, Value]
Instance = dict[int, ResourceValue]


class BootstrapError(Lwm2mError):
    """Base of the bootstrap interface's typed errors."""


class InconsistentConfiguration(BootstrapError):
    """Bootstrap-Finish found an unusable configuration; the message is the diagnostic."""


@cache
def _types() -> Any:
    return load_builtin().type_of


def _as_int(value: ResourceValue | None, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InconsistentConfiguration(f"{what} must be an integer, got {value!r}")
    return value


def _as_bool(value: ResourceValue | None, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    raise InconsistentConfiguration(f"expected a boolean, got {value!r}")


def _as_bytes(value: ResourceValue | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise InconsistentConfiguration(f"expected opaque bytes, got {value!r}")


@dataclass
class Provisioning:
    """Security and Server object instances: ``{iid: {rid: value}}`` per object.

    A multiple-instance resource is stored as ``{riid: value}``. This is the
    client's account configuration in the form the Bootstrap interface edits
    and persistent storage keeps (:meth:`to_dict` / :meth:`from_dict`).
    """

    security: dict[int, Instance] = field(default_factory=dict)
    server: dict[int, Instance] = field(default_factory=dict)

    # -- factory state ---------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ClientConfig) -> Provisioning:
        """Instances for the accounts of a configuration file (the factory state)."""
        return cls.from_accounts(config.servers, config.bootstrap)

    @classmethod
    def from_accounts(
        cls, servers: tuple[ServerAccount, ...], bootstrap: ServerAccount | None
    ) -> Provisioning:
        """Security/Server instance pairs for ``servers``, then the Bootstrap-Server's.

        Each account keeps the instance ids a bootstrap wrote it under
        (:func:`~aiolwm2m.accounts.place_instances` numbers the others).
        """
        prov = cls()
        with_bootstrap = (*servers, *(() if bootstrap is None else (bootstrap,)))
        security_ids = place_instances([a.security_instance for a in with_bootstrap])
        server_ids = place_instances([a.server_instance for a in servers])
        pairs = zip(servers, security_ids[: len(servers)], server_ids, strict=True)
        for account, sec_iid, srv_iid in pairs:
            prov.security[sec_iid] = _security_instance(account, bootstrap=False)
            prov.server[srv_iid] = _server_instance(account)
        if bootstrap is not None:
            prov.security[security_ids[-1]] = _security_instance(bootstrap, bootstrap=True)
        return prov

    def copy(self) -> Provisioning:
        return copy.deepcopy(self)

    def objects(self) -> dict[int, dict[int, Instance]]:
        return {SECURITY: self.security, SERVER: self.server}

    # -- views -------------------------------------------------------------------------
    def bootstrap_instance(self) -> tuple[int, Instance] | None:
        for iid in sorted(self.security):
            inst = self.security[iid]
            if _as_bool(inst.get(SEC_BOOTSTRAP), False):
                return iid, inst
        return None

    def bootstrap_account(self) -> ServerAccount | None:
        """The Bootstrap-Server account, or None if there is none or it is unusable."""
        found = self.bootstrap_instance()
        if found is None:
            return None
        try:
            return _account_from(found[1], None, bootstrap=True, security_instance=found[0])
        except (InconsistentConfiguration, ConfigError):
            return None

    def accounts(self, *, before: Provisioning | None = None) -> list[ServerAccount]:
        """The LwM2M Server accounts; the Bootstrap-Finish consistency check.

        Every Server instance needs a Security instance whose Short Server ID
        (/0/x/10) matches its /1/x/0, with a valid ``coap``/``coaps`` URI whose
        scheme agrees with the Security Mode, and credentials the mode needs.
        There must be at least one such account, and at most one
        Bootstrap-Server account, usable if the bootstrap rewrote it (see
        :meth:`_check_bootstrap`; ``before`` is the provisioning a bootstrap
        started from, which Finish passes). Raises
        :class:`InconsistentConfiguration` saying what is wrong.
        """
        bs_iid = self._check_bootstrap(before)
        by_ssid: dict[int, tuple[int, Instance]] = {}
        for iid, sec in sorted(self.security.items()):
            if iid == bs_iid:
                continue
            if SEC_SSID not in sec:
                raise InconsistentConfiguration(f"/0/{iid} has no Short Server ID (/0/{iid}/10)")
            ssid = _as_int(sec[SEC_SSID], f"/0/{iid}/10")
            if ssid in by_ssid:
                raise InconsistentConfiguration(f"two Security instances have ssid {ssid}")
            by_ssid[ssid] = (iid, sec)
        accounts: list[ServerAccount] = []
        seen: set[int] = set()
        for iid, srv in sorted(self.server.items()):
            if SRV_SSID not in srv:
                raise InconsistentConfiguration(f"/1/{iid} has no Short Server ID (/1/{iid}/0)")
            ssid = _as_int(srv[SRV_SSID], f"/1/{iid}/0")
            if ssid in seen:
                raise InconsistentConfiguration(f"two Server instances have ssid {ssid}")
            seen.add(ssid)
            if ssid not in by_ssid:
                raise InconsistentConfiguration(
                    f"/1/{iid} (ssid {ssid}) has no Security instance with /0/x/10 = {ssid}"
                )
            sec_iid, sec = by_ssid[ssid]
            accounts.append(
                _account_from(
                    sec, srv, bootstrap=False, security_instance=sec_iid, server_instance=iid
                )
            )
        if not accounts:
            raise InconsistentConfiguration("no LwM2M Server account (Server + Security instance)")
        return accounts

    def _check_bootstrap(self, before: Provisioning | None) -> int | None:
        """The Bootstrap-Server account's instance id, once it passed the Finish checks.

        At most one: a Bootstrap-Server replacing its account must have the
        previous one gone by Finish, else the answer is 4.06 and the previous
        account stays the only one active (Core 1.1.1 §5.2, Client Initiated
        Bootstrap, step 3); which of two would be kept is not for the client
        to guess. One the bootstrap rewrote (it differs from ``before``'s)
        must make a usable account (URI, Security Mode and its credentials,
        Client Hold Off Time /0/x/11 and Account Timeout /0/x/12 integers
        >= 0), else Finish would answer
        2.04 while the engine, unable to use the rewrite, quietly kept the
        previous account, and the Bootstrap-Server would believe a
        replacement that never happened (Core 1.1.1, Bootstrap and
        Configuration Consistency: an inconsistency is reported in the answer
        to Finish). One left as it was is the configured account, which may
        hold what /0 cannot say (certificate files): it is not checked again.
        """
        bootstrap_iids = [
            iid
            for iid, sec in sorted(self.security.items())
            if _as_bool(sec.get(SEC_BOOTSTRAP), False)
        ]
        if len(bootstrap_iids) > 1:
            listed = ", ".join(f"/0/{iid}" for iid in bootstrap_iids)
            raise InconsistentConfiguration(f"more than one Bootstrap-Server account: {listed}")
        if not bootstrap_iids:
            return None
        (iid,) = bootstrap_iids
        previous = None if before is None else before.bootstrap_instance()
        if before is None or (previous is not None and previous[1] == self.security[iid]):
            return iid
        try:
            _account_from(self.security[iid], None, bootstrap=True, security_instance=iid)
        except InconsistentConfiguration as exc:
            raise InconsistentConfiguration(f"Bootstrap-Server account /0/{iid}: {exc}") from exc
        return iid

    # -- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: ``{"0": {iid: {rid: [tag, value]}}, "1": …}``."""
        return {
            str(oid): {
                str(iid): {str(rid): _dump_resource(v) for rid, v in sorted(inst.items())}
                for iid, inst in sorted(instances.items())
            }
            for oid, instances in self.objects().items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provisioning:
        """Inverse of :meth:`to_dict`; malformed input raises :class:`StorageError`."""
        prov = cls()
        try:
            for oid, target in ((SECURITY, prov.security), (SERVER, prov.server)):
                for iid, inst in dict(data.get(str(oid), {})).items():
                    target[int(iid)] = {
                        int(rid): _load_resource(raw) for rid, raw in dict(inst).items()
                    }
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise StorageError(f"stored provisioning is malformed: {exc}") from exc
        return prov


# -- conversions -----------------------------------------------------------------------------


def _security_instance(account: ServerAccount, *, bootstrap: bool) -> Instance:
    inst: Instance = {
        SEC_URI: account.uri,
        SEC_BOOTSTRAP: bootstrap,
        SEC_MODE: account.effective_security_mode.value,
        SEC_IDENTITY: account.psk_identity or b"",
        SEC_SERVER_KEY: b"",
        SEC_SECRET: account.psk_key or b"",
    }
    if bootstrap:
        inst[SEC_HOLD_OFF] = int(account.client_hold_off_time)
        if account.bootstrap_account_timeout:  # 0 is "not instantiated": infinite
            inst[SEC_BS_ACCOUNT_TIMEOUT] = account.bootstrap_account_timeout
    else:
        inst[SEC_SSID] = account.short_server_id
    return inst


def _server_instance(account: ServerAccount) -> Instance:
    r = account.retry
    inst: Instance = {
        SRV_SSID: account.short_server_id,
        SRV_LIFETIME: account.lifetime,
        SRV_PMIN: account.default_pmin,
        SRV_PMAX: account.default_pmax,
        SRV_DISABLE_TIMEOUT: account.disable_timeout,
        SRV_STORING: account.notification_storing,
        SRV_BINDING: account.binding,
        SRV_INITIAL_DELAY: int(account.initial_registration_delay),
        SRV_FAILURE_BLOCK: account.registration_failure_block,
        SRV_BS_ON_FAILURE: r.bootstrap_on_registration_failure,
        SRV_RETRY_COUNT: r.communication_retry_count,
        SRV_RETRY_TIMER: int(r.communication_retry_timer),
        SRV_SEQ_DELAY: int(r.communication_sequence_delay_timer),
        SRV_SEQ_RETRY_COUNT: r.communication_sequence_retry_count,
    }
    if account.registration_priority is not None:
        inst[SRV_PRIORITY] = account.registration_priority
    return inst


def _account_from(
    sec: Instance,
    srv: Instance | None,
    *,
    bootstrap: bool,
    security_instance: int,
    server_instance: int | None = None,
) -> ServerAccount:
    """A :class:`ServerAccount` from a Security (+ Server) instance, checked for coherence.

    The account remembers both instance ids, so the client keeps using the ids
    the Bootstrap-Server chose (Register payload, /1/x requests, storage).
    """
    uri = sec.get(SEC_URI)
    if not isinstance(uri, str):
        raise InconsistentConfiguration("a Security instance has no LwM2M Server URI (/0/x/0)")
    try:
        parsed = parse_server_uri(uri)
    except InvalidParameters as exc:
        raise InconsistentConfiguration(str(exc)) from exc
    try:
        mode = SecurityMode(_as_int(sec.get(SEC_MODE), f"security mode of {uri}"))
    except ValueError:
        raise InconsistentConfiguration(
            f"security mode {sec.get(SEC_MODE)!r} of {uri} is not supported"
        ) from None
    identity = _as_bytes(sec.get(SEC_IDENTITY))
    secret = _as_bytes(sec.get(SEC_SECRET))
    if mode in (SecurityMode.RPK, SecurityMode.CERTIFICATE):
        raise InconsistentConfiguration(
            f"{mode.name} credentials provisioned in-band are not supported (account {uri})"
        )
    kwargs: dict[str, Any] = {
        "uri": uri,
        "security_mode": mode,
        "psk_identity": identity or None,
        "psk_key": secret or None,
        "security_instance": security_instance,
        "server_instance": server_instance,
    }
    if bootstrap:
        raw_ssid = sec.get(SEC_SSID)
        ssid_ok = isinstance(raw_ssid, int) and not isinstance(raw_ssid, bool)
        kwargs["short_server_id"] = raw_ssid if ssid_ok else BOOTSTRAP_ACCOUNT_SSID
        hold_off = sec.get(SEC_HOLD_OFF)
        if hold_off is not None:  # ServerAccount refuses a negative one
            kwargs["client_hold_off_time"] = float(_as_int(hold_off, "/0/x/11"))
        timeout = sec.get(SEC_BS_ACCOUNT_TIMEOUT)
        if timeout is not None:
            kwargs["bootstrap_account_timeout"] = _as_int(timeout, "/0/x/12")
    else:
        assert srv is not None
        kwargs.update(_server_settings(srv))
    try:
        account = ServerAccount(**kwargs)
        check_security(account, parsed)  # mode vs scheme, credentials the mode needs
    except ConfigError as exc:
        raise InconsistentConfiguration(f"account {uri}: {exc}") from exc
    return account


def _server_settings(srv: Instance) -> dict[str, Any]:
    def num(rid: int, default: int) -> int:
        value = srv.get(rid)
        return default if value is None else _as_int(value, f"/1/x/{rid}")

    defaults = RetrySettings()
    binding = srv.get(SRV_BINDING, "U")
    if not isinstance(binding, str):
        raise InconsistentConfiguration(f"binding must be a string, got {binding!r}")
    out: dict[str, Any] = {
        "short_server_id": _as_int(srv.get(SRV_SSID), "/1/x/0"),
        "lifetime": num(SRV_LIFETIME, 86_400),
        "binding": binding,
        "default_pmin": num(SRV_PMIN, 0),
        "default_pmax": num(SRV_PMAX, 0),
        "disable_timeout": num(SRV_DISABLE_TIMEOUT, 86_400),
        "notification_storing": _as_bool(srv.get(SRV_STORING), True),
        "initial_registration_delay": float(num(SRV_INITIAL_DELAY, 0)),
        "registration_failure_block": _as_bool(srv.get(SRV_FAILURE_BLOCK), False),
    }
    if SRV_PRIORITY in srv:
        out["registration_priority"] = num(SRV_PRIORITY, 0)
    try:
        out["retry"] = RetrySettings(
            bootstrap_on_registration_failure=_as_bool(
                srv.get(SRV_BS_ON_FAILURE), defaults.bootstrap_on_registration_failure
            ),
            communication_retry_count=num(SRV_RETRY_COUNT, defaults.communication_retry_count),
            communication_retry_timer=float(
                num(SRV_RETRY_TIMER, int(defaults.communication_retry_timer))
            ),
            communication_sequence_delay_timer=float(
                num(SRV_SEQ_DELAY, int(defaults.communication_sequence_delay_timer))
            ),
            communication_sequence_retry_count=num(
                SRV_SEQ_RETRY_COUNT, defaults.communication_sequence_retry_count
            ),
        )
    except ConfigError as exc:
        raise InconsistentConfiguration(str(exc)) from exc
    return out


_TAGS: dict[type, str] = {bool: "b", int: "i", float: "f", str: "s", bytes: "x"}


def _dump_value(value: Value) -> list[Any]:
    if isinstance(value, bytes):
        return ["x", value.hex()]
    if isinstance(value, ObjLnk):
        return ["o", str(value)]
    if isinstance(value, datetime):
        return ["t", value.timestamp()]
    return [_TAGS[type(value)], value]


def _load_value(raw: Any) -> Value:
    tag, value = raw
    if tag == "x":
        return bytes.fromhex(value)
    if tag == "o":
        return ObjLnk.parse(value)
    if tag == "t":
        return datetime.fromtimestamp(float(value), UTC)
    if tag == "f" and type(value) in (int, float):
        return float(value)
    if {"b": bool, "i": int, "s": str}.get(tag) is not type(value):
        raise ValueError(f"value {value!r} is not of kind {tag!r}")
    assert isinstance(value, bool | int | str)
    return value


def _dump_resource(value: ResourceValue) -> list[Any]:
    if isinstance(value, dict):
        return ["m", {str(riid): _dump_value(v) for riid, v in sorted(value.items())}]
    return _dump_value(value)


def _load_resource(raw: Any) -> ResourceValue:
    if raw[0] == "m":
        return {int(riid): _load_value(v) for riid, v in dict(raw[1]).items()}
    return _load_value(raw)


# -- the Bootstrap interface --------------------------------------------------------------


class Operation(enum.Enum):
    WRITE = "write"
    READ = "read"
    DISCOVER = "discover"
    DELETE = "delete"
    FINISH = "finish"
    OTHER = "other"


@dataclass
class BootstrapReply:
    """What the engine does with one Bootstrap-Server request.

    ``accounts`` is set only by a successful Bootstrap-Finish: the new server
    set; the engine then commits :attr:`BootstrapHandler.provisioning`.
    """

    operation: Operation
    path: str
    response: Message
    accounts: list[ServerAccount] | None = None


def _reply(
    op: Operation, path: str, code: Code, payload: bytes = b"", cf: int | None = None
) -> BootstrapReply:
    msg = Message(code=code, payload=payload)
    if cf is not None:
        msg.add(OptionNumber.CONTENT_FORMAT, encode_uint(cf))
    return BootstrapReply(op, path, msg)


class BootstrapHandler:
    """Answers Bootstrap-Server requests against a working copy of the provisioning.

    Never raises on what the server sends: every malformed request becomes a
    4.xx answer. ``lwm2m_version`` is the enabler version Discover announces:
    the engine passes the configured one, which Register announces too, so the
    Bootstrap-Server and the LwM2M Server are told the same version.
    """

    def __init__(
        self,
        provisioning: Provisioning,
        other_objects: Mapping[int, ObjectEntry] | None = None,
        *,
        lwm2m_version: str = RegistrationConfig.lwm2m_version,
    ) -> None:
        self.provisioning = provisioning.copy()
        self.started_from = provisioning.copy()  # what Finish tells rewritten from kept
        self.lwm2m_version = lwm2m_version
        self.other_objects = {
            oid: e for oid, e in (other_objects or {}).items() if oid not in (SECURITY, SERVER)
        }

    def handle(self, request: Message) -> BootstrapReply:
        try:
            segments = request.uri_path
        except CoapDecodeError:
            return _reply(Operation.OTHER, "?", Code.BAD_REQUEST)
        if request.code == Code.POST and segments == ["bs"]:
            return self._finish()
        try:
            path = Path.from_segments(segments)
        except PathError:
            return _reply(Operation.OTHER, "/" + "/".join(segments), Code.NOT_FOUND)
        try:
            if request.code == Code.PUT:
                return self._write(path, request)
            if request.code == Code.GET:
                if request.accept == ContentFormat.LINK_FORMAT:
                    return self._discover(path)
                return self._read(path, request.accept)
            if request.code == Code.DELETE:
                return self._delete(path)
        except CoapDecodeError:
            return _reply(Operation.OTHER, str(path), Code.BAD_REQUEST)
        return _reply(Operation.OTHER, str(path), Code.METHOD_NOT_ALLOWED)

    # -- operations ----------------------------------------------------------------------
    def _write(self, path: Path, request: Message) -> BootstrapReply:
        op, where = Operation.WRITE, str(path)
        if path.is_root or path.is_resource_instance:
            return _reply(op, where, Code.METHOD_NOT_ALLOWED)
        target = self.provisioning.objects().get(path.object_id or 0)
        if path.object_id not in (SECURITY, SERVER) or target is None:
            return _reply(op, where, Code.CHANGED)  # other objects: accepted and ignored
        cf = request.content_format
        if cf is None:
            return _reply(op, where, Code.BAD_REQUEST, b"missing Content-Format")
        try:
            records = decode(cf, request.payload, path, _types())
        except ContentFormatError as exc:
            unsupported = isinstance(exc, UnsupportedFormatError)
            code = Code.UNSUPPORTED_CONTENT_FORMAT if unsupported else Code.BAD_REQUEST
            return _reply(op, where, code, str(exc).encode()[:200])
        _apply_write(target, path, records)
        return _reply(op, where, Code.CHANGED)

    def _read(self, path: Path, accept: int | None) -> BootstrapReply:
        op, where = Operation.READ, str(path)
        if path.object_id == ACCESS_CONTROL and path.level <= 2:
            return _reply(op, where, Code.NOT_FOUND)
        if path.object_id != SERVER or path.level > 2:
            return _reply(op, where, Code.BAD_REQUEST, b"Bootstrap-Read is for /1 and /2 only")
        instances = self.provisioning.server
        if path.instance_id is not None and path.instance_id not in instances:
            return _reply(op, where, Code.NOT_FOUND)
        records = [r for r in _records(SERVER, instances) if path.contains(r.path)]
        fmt = DEFAULT_READ_FORMAT if accept is None else accept
        try:
            payload = encode(fmt, records, path)
        except (ContentFormatError, FormatEncodeError):
            return _reply(op, where, Code.NOT_ACCEPTABLE)
        return _reply(op, where, Code.CONTENT, payload, fmt)

    def _discover(self, path: Path) -> BootstrapReply:
        op, where = Operation.DISCOVER, str(path)
        if path.level > 1:
            return _reply(op, where, Code.BAD_REQUEST, b"Bootstrap-Discover is for / or /oid")
        # The enabler version heads every answer, for / and for /oid alike
        # (Core 1.1.1 §6.1.7.3: its Discover /0 example starts with </>;lwm2m=1.1),
        # and it is the version the client supports, so a 1.0 client says 1.0.
        links: list[Link] = [Link("/", (("lwm2m", self.lwm2m_version),))]
        wanted = None if path.is_root else path.object_id
        # An object without instances (/1 after a Delete of /) is still listed,
        # as </1>: the client supports it (§6.1.7.3 lists </5>,</4> so).
        if wanted in (None, SECURITY):
            security = self.provisioning.security
            links.extend(
                Link(f"/0/{i}", _security_attributes(security[i])) for i in sorted(security)
            )
            if not security:
                links.append(Link("/0"))
        if wanted in (None, SERVER):
            for iid, srv in sorted(self.provisioning.server.items()):
                ssid = srv.get(SRV_SSID)
                links.append(Link(f"/1/{iid}", (("ssid", str(ssid)),) if ssid is not None else ()))
            if not self.provisioning.server:
                links.append(Link("/1"))
        for oid, entry in sorted(self.other_objects.items()):
            if wanted not in (None, oid):
                continue
            if entry.version is not None and entry.version != "1.0":
                links.append(Link(f"/{oid}", (("ver", entry.version),)))
            elif not entry.instances:
                links.append(Link(f"/{oid}"))
            links.extend(Link(f"/{oid}/{iid}") for iid in sorted(entry.instances))
        if wanted is not None and len(links) == 1 and wanted not in (SECURITY, SERVER):
            return _reply(op, where, Code.NOT_FOUND)
        return _reply(op, where, Code.CONTENT, linkformat.encode(links), ContentFormat.LINK_FORMAT)

    def _delete(self, path: Path) -> BootstrapReply:
        op, where = Operation.DELETE, str(path)
        if path.level > 2:
            return _reply(op, where, Code.BAD_REQUEST, b"Bootstrap-Delete is for /, /oid, /oid/iid")
        known = (SECURITY, SERVER, *self.other_objects)
        if not path.is_root and path.object_id not in known:
            # Bootstrap-Delete targets objects the client supports (Core 1.1.1
            # §6.1.7.6); its only error is 4.00 "Bad or unknown URI provided"
            # (no 4.04 in the Bootstrap interface; Leshan's client answers so).
            return _reply(op, where, Code.BAD_REQUEST, b"no such object on this client")
        bs = self.provisioning.bootstrap_instance()
        bs_iid = bs[0] if bs else None
        if path.is_root or path.object_id == SECURITY:
            doomed = [
                iid
                for iid in self.provisioning.security
                if iid != bs_iid and path.contains(Path.of(SECURITY, iid))
            ]
            if path.instance_id is not None and path.instance_id == bs_iid:
                return _reply(op, where, Code.BAD_REQUEST, b"the Bootstrap-Server account stays")
            for iid in doomed:
                del self.provisioning.security[iid]
        if path.is_root or path.object_id == SERVER:
            for iid in [i for i in self.provisioning.server if path.contains(Path.of(SERVER, i))]:
                del self.provisioning.server[iid]
        # An instance that is not there is deleted all the same: Delete is the
        # server's clean-up before it writes and the spec names no error for it
        # (Anjay answers 2.02; Leshan 4.00, Wakaama 4.04: no common practice).
        return _reply(op, where, Code.DELETED)

    def _finish(self) -> BootstrapReply:
        try:
            accounts = self.provisioning.accounts(before=self.started_from)
        except InconsistentConfiguration as exc:
            return _reply(
                Operation.FINISH, "/bs", Code.NOT_ACCEPTABLE, str(exc).encode(), ContentFormat.TEXT
            )
        reply = _reply(Operation.FINISH, "/bs", Code.CHANGED)
        reply.accounts = accounts
        return reply


def _security_attributes(sec: Instance) -> tuple[tuple[str, str | None], ...]:
    if _as_bool(sec.get(SEC_BOOTSTRAP), False):
        return ()
    attrs: list[tuple[str, str | None]] = []
    if isinstance(sec.get(SEC_SSID), int):
        attrs.append(("ssid", str(sec[SEC_SSID])))
    if isinstance(sec.get(SEC_URI), str):
        attrs.append(("uri", str(sec[SEC_URI])))
    return tuple(attrs)


def _records(oid: int, instances: Mapping[int, Instance]) -> list[Record]:
    out: list[Record] = []
    for iid, inst in sorted(instances.items()):
        for rid, value in sorted(inst.items()):
            if isinstance(value, dict):
                out.extend(
                    Record(Path.of(oid, iid, rid, riid), v) for riid, v in sorted(value.items())
                )
            else:
                out.append(Record(Path.of(oid, iid, rid), value))
    return out


def _apply_write(target: dict[int, Instance], path: Path, records: list[Record]) -> None:
    """Object/instance writes replace each written instance; resource writes set it."""
    if path.level <= 2:
        written = {r.path.instance_id for r in records}
        if path.instance_id is not None:
            written.add(path.instance_id)
        for iid in written:
            assert iid is not None
            target[iid] = {}
    elif path.instance_id is not None:
        inst = target.setdefault(path.instance_id, {})
        assert path.resource_id is not None
        inst.pop(path.resource_id, None)
    for record in records:
        iid, rid, riid = (
            record.path.instance_id,
            record.path.resource_id,
            record.path.resource_instance_id,
        )
        assert iid is not None and rid is not None
        inst = target.setdefault(iid, {})
        if riid is None:
            inst[rid] = record.value
        else:
            multi = inst.get(rid)
            if not isinstance(multi, dict):
                multi = inst[rid] = {}
            multi[riid] = record.value


__all__ = [
    "BootstrapError",
    "BootstrapHandler",
    "BootstrapReply",
    "InconsistentConfiguration",
    "Operation",
    "Provisioning",
]
