"""``aiolwm2m manifest keygen|create|verify``: make and check signed update manifests.

What a vendor's manifest tool does for the Manifest object (/10252/0/1): a
P-256 signing key, a COSE_Sign1 (ES256) manifest naming the asset's URI, size,
SHA-256 and version, and the device's own verification of it (the same code
the client runs, ``client/firmware/manifest.py``). The format is in
docs/firmware.md.

Exit codes: 0 done / manifest accepted, 1 manifest refused (the Manifest
Result the device would report is printed), 2 bad arguments or unreadable files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aiolwm2m.cli.output import emit
from aiolwm2m.client.firmware import (
    Manifest,
    ManifestError,
    ManifestResult,
    ManifestVerifier,
    sign_manifest,
)
from aiolwm2m.errors import ConfigError
from aiolwm2m.runtime.firmware import load_manifest_keys

__all__ = [
    "add_parser",
    "run_create",
    "run_keygen",
    "run_verify",
]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("manifest", help="make and check signed firmware manifests (/10252)")
    verbs = p.add_subparsers(dest="verb", required=True)

    keygen = verbs.add_parser("keygen", help="a new P-256 signing key and its public key (PEM)")
    keygen.add_argument("--key", required=True, help="private key file to write (mode 0600)")
    keygen.add_argument("--public", required=True, help="public key file to write")
    keygen.set_defaults(func=run_keygen)

    create = verbs.add_parser("create", help="sign a manifest for an image")
    create.add_argument("--key", required=True, help="private key (PEM) from keygen")
    create.add_argument("--image", required=True, help="the asset: size and SHA-256 come from it")
    create.add_argument("--uri", required=True, help="where the device fetches the asset")
    create.add_argument("--version", required=True, help="asset version (reported as PkgVersion)")
    create.add_argument("--sequence", type=int, required=True, help="must grow with each update")
    create.add_argument("--vendor", required=True, type=_uuid, help="vendor id (UUID)")
    create.add_argument("--class", dest="class_id", required=True, type=_uuid, help="class id")
    create.add_argument("--name", help="package name (PkgName)")
    create.add_argument(
        "--manual-trigger", action="store_true", help="install only on Execute /10252/0/9"
    )
    create.add_argument("--out", required=True, help="manifest file to write (binary COSE)")
    create.set_defaults(func=run_create)

    verify = verbs.add_parser("verify", help="check a manifest as the device would")
    verify.add_argument("manifest", help="manifest file (binary COSE)")
    verify.add_argument(
        "--public", action="append", required=True, help="trusted public key (repeatable)"
    )
    verify.add_argument("--vendor", type=_uuid, help="the device's vendor id")
    verify.add_argument("--class", dest="class_id", type=_uuid, help="the device's class id")
    verify.add_argument("--installed-sequence", type=int, help="sequence of the installed manifest")
    verify.add_argument("--image", help="also check this asset's size and SHA-256")
    verify.set_defaults(func=run_verify)


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _write(path: str, data: bytes, *, secret: bool = False) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc


def _digest(path: str) -> tuple[int, bytes]:
    sha = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as image:
            while block := image.read(1 << 16):
                sha.update(block)
                size += len(block)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return size, sha.digest()


def run_keygen(args: argparse.Namespace) -> int:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(args.key, private, secret=True)
    _write(args.public, public)
    emit(f"wrote {args.key} (private: keep it secret) and {args.public} (for manifest_keys)")
    return 0


def run_create(args: argparse.Namespace) -> int:
    try:
        key = serialization.load_pem_private_key(_read(args.key), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{args.key} is not a PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{args.key} is not a P-256 key (ES256 needs one)")
    if args.sequence < 0:
        raise ConfigError("--sequence must be >= 0")
    size, digest = _digest(args.image)
    manifest = Manifest(
        sequence=args.sequence,
        vendor_id=args.vendor,
        class_id=args.class_id,
        uri=args.uri,
        size=size,
        digest=digest,
        version=args.version,
        manual_trigger=args.manual_trigger,
        name=args.name,
    )
    try:
        Manifest.from_map(manifest.to_map())  # the device's own field checks, before signing
    except ManifestError as exc:
        raise ConfigError(f"the device would refuse this manifest: {exc}") from exc
    data = sign_manifest(manifest, key)
    _write(args.out, data)
    emit(json.dumps({"written": args.out, "bytes": len(data), **manifest.to_json()}))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    keys = load_manifest_keys(tuple(args.public))
    verifier = ManifestVerifier.from_public_keys(
        keys, vendor_id=args.vendor, class_id=args.class_id
    )
    data = _read(args.manifest)
    try:
        manifest = verifier.verify(data, args.installed_sequence)
    except ManifestError as exc:
        refused = {"accepted": False, "manifest_result": int(exc.result), "reason": str(exc)}
        emit(json.dumps(refused))
        return 1
    out: dict[str, Any] = {"accepted": True, **manifest.to_json()}
    if args.image is not None:
        size, digest = _digest(args.image)
        out["image_matches"] = size == manifest.size and digest == manifest.digest
        if not out["image_matches"]:
            out["manifest_result"] = int(ManifestResult.ASSET_INTEGRITY_FAILED)
            emit(json.dumps(out))
            return 1
    emit(json.dumps(out))
    return 0
