"""Signed update manifests: COSE_Sign1 (RFC 9052, ES256) over a CBOR map. Pure code.

The server writes a manifest to /10252/0/1; it tells the device which asset
to fetch and how to recognise it. Our format (documented in
``docs/firmware.md``, made by ``aiolwm2m manifest create``)::

    COSE_Sign1 = #6.18([ protected: bstr .cbor {1: -7, 4: kid},  ; alg ES256, key id
                         unprotected: {},
                         payload: bstr .cbor Manifest,
                         signature: bstr (64 bytes, r || s) ])
    Manifest = { 1: uint,   ; manifest sequence number, must grow (no rollback)
                 2: bstr,   ; vendor id (16-byte UUID)
                 3: bstr,   ; class id (16-byte UUID)
                 4: tstr,   ; asset URI (coap, coaps, http, https)
                 5: uint,   ; asset size in bytes
                 6: bstr,   ; SHA-256 of the asset (32 bytes)
                 7: tstr,   ; asset version (reported as PkgVersion)
                 ? 8: bool, ; true: install only on Manual Trigger (/10252/0/9)
                 ? 9: tstr } ; package name (PkgName)

Why no COSE library: one algorithm and one structure are ~60 lines on top of
``cbor2`` and ``cryptography`` (both already dependencies), while pycose would
add a dependency chain for features the device must refuse anyway.

Every refusal is a :class:`ManifestError` carrying the Manifest Result the
registry names for it: 4 malformed, 6 unknown key id, 7 bad signature or
algorithm, 5 not for this device (vendor/class) or not newer than the
installed one, 14 an asset URI we cannot fetch.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from aiolwm2m.errors import Lwm2mError

from .settings import SUPPORTED_SCHEMES
from .states import ManifestResult

__all__ = [
    "COSE_ALG_ES256",
    "MAX_MANIFEST_SIZE",
    "Manifest",
    "ManifestError",
    "ManifestVerifier",
    "key_id",
    "sign_manifest",
]

COSE_SIGN1_TAG = 18
COSE_ALG_ES256 = -7
_ALG, _KID = 1, 4
#: Larger manifests are refused before parsing (they cannot be ours).
MAX_MANIFEST_SIZE = 4096


class ManifestError(Lwm2mError):
    """A manifest was refused; :attr:`result` is the Manifest Result to report."""

    def __init__(self, result: ManifestResult, detail: str) -> None:
        super().__init__(detail)
        self.result = result


@dataclass(frozen=True)
class Manifest:
    """The verified content of a manifest (see the module docstring for the keys)."""

    sequence: int
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    uri: str
    size: int
    digest: bytes
    version: str
    manual_trigger: bool = False
    name: str | None = None

    def to_map(self) -> dict[int, Any]:
        out: dict[int, Any] = {
            1: self.sequence,
            2: self.vendor_id.bytes,
            3: self.class_id.bytes,
            4: self.uri,
            5: self.size,
            6: self.digest,
            7: self.version,
        }
        if self.manual_trigger:
            out[8] = True
        if self.name is not None:
            out[9] = self.name
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the persistent firmware record."""
        return {
            "sequence": self.sequence,
            "vendor_id": str(self.vendor_id),
            "class_id": str(self.class_id),
            "uri": self.uri,
            "size": self.size,
            "digest": self.digest.hex(),
            "version": self.version,
            "manual_trigger": self.manual_trigger,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            sequence=int(data["sequence"]),
            vendor_id=uuid.UUID(data["vendor_id"]),
            class_id=uuid.UUID(data["class_id"]),
            uri=str(data["uri"]),
            size=int(data["size"]),
            digest=bytes.fromhex(data["digest"]),
            version=str(data["version"]),
            manual_trigger=bool(data["manual_trigger"]),
            name=data["name"],
        )

    @classmethod
    def from_map(cls, data: object) -> Manifest:
        """Strict decoding: unknown keys, wrong types or sizes are integrity failures."""
        bad = ManifestResult.MANIFEST_INTEGRITY_FAILED
        if not isinstance(data, Mapping) or not all(isinstance(k, int) for k in data):
            raise ManifestError(bad, "manifest payload is not a map with integer keys")
        unknown = set(data) - set(range(1, 10))
        if unknown:
            raise ManifestError(bad, f"manifest has unknown keys {sorted(unknown)}")
        try:
            sequence, vendor, klass = data[1], data[2], data[3]
            uri, size, digest, version = data[4], data[5], data[6], data[7]
        except KeyError as exc:
            raise ManifestError(bad, f"manifest lacks key {exc.args[0]}") from None
        manual, name = data.get(8, False), data.get(9)
        checks = (
            isinstance(sequence, int) and not isinstance(sequence, bool) and sequence >= 0,
            isinstance(vendor, bytes) and len(vendor) == 16,
            isinstance(klass, bytes) and len(klass) == 16,
            isinstance(uri, str) and 0 < len(uri.encode()) <= 255,
            isinstance(size, int) and not isinstance(size, bool) and size >= 0,
            isinstance(digest, bytes) and len(digest) == 32,
            isinstance(version, str) and len(version.encode()) <= 255,
            isinstance(manual, bool),
            name is None or (isinstance(name, str) and len(name.encode()) <= 255),
        )
        if not all(checks):
            raise ManifestError(bad, "manifest field of the wrong type or size")
        return cls(
            sequence=sequence,
            vendor_id=uuid.UUID(bytes=vendor),
            class_id=uuid.UUID(bytes=klass),
            uri=uri,
            size=size,
            digest=digest,
            version=version,
            manual_trigger=manual,
            name=name,
        )


def key_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """8-byte key id: the start of SHA-256 over the key's SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()[:8]


def _loads(data: bytes, what: str) -> Any:
    """CBOR-decode ``data``; anything undecodable is an integrity failure naming ``what``."""
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise ManifestError(
            ManifestResult.MANIFEST_INTEGRITY_FAILED, f"{what} is not CBOR: {exc}"
        ) from None


def _sign1(data: bytes) -> tuple[bytes, Mapping[Any, Any], bytes, bytes]:
    """The four fields of the tagged COSE_Sign1 ``data`` holds (RFC 9052 §4.2)."""
    bad = ManifestResult.MANIFEST_INTEGRITY_FAILED
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestError(bad, f"manifest of {len(data)} bytes exceeds {MAX_MANIFEST_SIZE}")
    outer = _loads(data, "manifest")
    if not (
        isinstance(outer, cbor2.CBORTag)
        and outer.tag == COSE_SIGN1_TAG
        and isinstance(outer.value, list | tuple)  # cbor2 6 decodes tagged arrays as tuples
        and len(outer.value) == 4
    ):
        raise ManifestError(bad, "manifest is not a tagged COSE_Sign1")
    protected, unprotected, payload, signature = outer.value
    if not (
        isinstance(protected, bytes)
        and isinstance(unprotected, Mapping)
        and isinstance(payload, bytes)
        and isinstance(signature, bytes)
    ):
        raise ManifestError(bad, "COSE_Sign1 fields of the wrong type")
    return protected, unprotected, payload, signature


def _protected_header(protected: bytes) -> Mapping[Any, Any]:
    """The protected header map; only ES256 is accepted."""
    headers = _loads(protected, "protected header") if protected else {}
    if not isinstance(headers, Mapping):
        raise ManifestError(
            ManifestResult.MANIFEST_INTEGRITY_FAILED, "protected header is not a map"
        )
    if headers.get(_ALG) != COSE_ALG_ES256:
        raise ManifestError(
            ManifestResult.MANIFEST_SIGNATURE_FAILED,
            f"signature algorithm {headers.get(_ALG)!r} is not ES256 (-7)",
        )
    return headers


def _check_signature(
    key: ec.EllipticCurvePublicKey, protected: bytes, payload: bytes, signature: bytes
) -> None:
    """ES256 over the COSE Sig_structure; the raw r||s signature is 64 bytes."""
    if len(signature) != 64:
        raise ManifestError(
            ManifestResult.MANIFEST_SIGNATURE_FAILED, "ES256 signature must be 64 bytes"
        )
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, _to_be_signed(protected, payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ManifestError(
            ManifestResult.MANIFEST_SIGNATURE_FAILED, "manifest signature does not verify"
        ) from None


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 §4.4 Sig_structure for COSE_Sign1 with empty external AAD."""
    return bytes(cbor2.dumps(["Signature1", protected, b"", payload]))


def sign_manifest(manifest: Manifest, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The tagged COSE_Sign1 bytes of ``manifest`` signed with a P-256 key."""
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise ValueError("ES256 needs a P-256 (secp256r1) key")
    kid = key_id(private_key.public_key())
    protected = bytes(cbor2.dumps({_ALG: COSE_ALG_ES256, _KID: kid}, canonical=True))
    payload = bytes(cbor2.dumps(manifest.to_map(), canonical=True))
    der = private_key.sign(_to_be_signed(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return bytes(cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature])))


class ManifestVerifier:
    """Checks manifests against trusted keys and this device's vendor/class ids.

    ``installed_sequence`` is the sequence number of the last manifest this
    device accepted; a manifest must carry a larger one (anti-rollback).
    """

    def __init__(
        self,
        keys: Mapping[bytes, ec.EllipticCurvePublicKey],
        *,
        vendor_id: uuid.UUID | None = None,
        class_id: uuid.UUID | None = None,
    ) -> None:
        self.keys = dict(keys)
        self.vendor_id = vendor_id
        self.class_id = class_id

    @classmethod
    def from_public_keys(
        cls,
        keys: list[ec.EllipticCurvePublicKey],
        *,
        vendor_id: uuid.UUID | None = None,
        class_id: uuid.UUID | None = None,
    ) -> ManifestVerifier:
        return cls({key_id(k): k for k in keys}, vendor_id=vendor_id, class_id=class_id)

    def verify(self, data: bytes, installed_sequence: int | None = None) -> Manifest:
        """The manifest in ``data`` if it is authentic and meant for us; else ManifestError.

        The checks run in a fixed order (size, COSE_Sign1 shape, algorithm,
        key, signature, payload, then whether it applies to this device), so a
        manifest wrong in several ways always gets the same result code.
        """
        protected, unprotected, payload, signature = _sign1(data)
        key = self._signing_key(_protected_header(protected), unprotected)
        _check_signature(key, protected, payload, signature)
        manifest = Manifest.from_map(_loads(payload, "manifest payload"))
        self._check_applies(manifest, installed_sequence)
        return manifest

    def _signing_key(
        self, headers: Mapping[Any, Any], unprotected: Mapping[Any, Any]
    ) -> ec.EllipticCurvePublicKey:
        """The trusted key the manifest names (kid, protected header first)."""
        kid = headers.get(_KID, unprotected.get(_KID))
        key = self.keys.get(kid) if isinstance(kid, bytes) else None
        if key is None:
            shown = kid.hex() if isinstance(kid, bytes) else repr(kid)
            raise ManifestError(
                ManifestResult.MANIFEST_CERTIFICATE_NOT_FOUND, f"no trusted key with id {shown}"
            )
        return key

    def _check_applies(self, manifest: Manifest, installed_sequence: int | None) -> None:
        rejected = ManifestResult.MANIFEST_REJECTED
        if self.vendor_id is not None and manifest.vendor_id != self.vendor_id:
            raise ManifestError(rejected, f"vendor id {manifest.vendor_id} is not ours")
        if self.class_id is not None and manifest.class_id != self.class_id:
            raise ManifestError(rejected, f"class id {manifest.class_id} is not ours")
        if installed_sequence is not None and manifest.sequence <= installed_sequence:
            raise ManifestError(
                rejected,
                f"manifest sequence {manifest.sequence} is not newer than {installed_sequence}",
            )
        scheme = manifest.uri.partition(":")[0].lower()
        if scheme not in SUPPORTED_SCHEMES or "://" not in manifest.uri:
            raise ManifestError(
                ManifestResult.INVALID_ASSET_URI, f"asset URI {manifest.uri!r} is not fetchable"
            )
