"""``aiolwm2m certs``: a throw-away test PKI for certificate mode (security mode 2).

``certs init DIR`` writes a CA and a server certificate valid for 127.0.0.1,
localhost and ::1; ``certs device DIR NAME`` mints a device certificate (CN =
the endpoint name) from that CA, ``--expired`` one whose validity already
ended. Keys are written unencrypted (mode 0600): test material only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aiolwm2m.cli.common import positive_number
from aiolwm2m.cli.output import emit
from aiolwm2m.dtls.certs import write_device_certificate, write_test_pki
from aiolwm2m.errors import ConfigError

__all__ = ["add_parser", "run_device", "run_init"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("certs", help="generate a test CA, server and device certificates")
    certs = p.add_subparsers(dest="certs_command", required=True)
    init = certs.add_parser("init", help="create DIR/ca.pem, DIR/server.pem and their keys")
    init.add_argument("directory")
    init.add_argument(
        "--days", type=positive_number, default=825, help="server certificate validity"
    )
    init.add_argument(
        "--host",
        action="append",
        help="name or IP the server certificate is valid for (repeatable; "
        "default 127.0.0.1, localhost, ::1)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA (device certificates it signed stop verifying)",
    )
    init.set_defaults(func=run_init)
    device = certs.add_parser("device", help="create DIR/NAME.pem and DIR/NAME.key.pem")
    device.add_argument("directory")
    device.add_argument("name", help="endpoint client name (the certificate's CN)")
    device.add_argument("--days", type=positive_number, default=825)
    device.add_argument(
        "--expired", action="store_true", help="a certificate that expired a month ago"
    )
    device.set_defaults(func=run_device)


def _writable_directory(directory: str) -> Path:
    """The output folder, created if missing; a ConfigError naming it when it cannot be."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"DIRECTORY {directory}: cannot create it: {exc.strerror}") from exc
    return out


def run_init(args: argparse.Namespace) -> int:
    hosts = args.host or ["127.0.0.1", "localhost", "::1"]
    out = _writable_directory(args.directory)
    if (out / "ca.pem").exists() and not args.force:
        raise ConfigError(
            f"DIRECTORY {args.directory} already holds a CA (ca.pem): replacing it makes the "
            "device certificates it signed stop verifying; pass --force to replace it"
        )
    try:
        pki = write_test_pki(out, [], days=args.days, server_hosts=hosts)
    except OSError as exc:
        raise ConfigError(f"DIRECTORY {args.directory}: cannot write: {exc}") from exc
    emit(f"CA:     {pki.ca_pem_path}")
    emit(f"server: {pki.server_cert_path} (key {pki.server_key_path})")
    emit(
        "run:    aiolwm2m server "
        f"--cert {pki.server_cert_path} --key {pki.server_key_path} --ca {pki.ca_pem_path}"
    )
    return 0


def run_device(args: argparse.Namespace) -> int:
    try:
        cert, key = write_device_certificate(
            args.directory, args.name, days=args.days, expired=args.expired
        )
    except OSError as exc:
        raise ConfigError(f"DIRECTORY {args.directory}: cannot write: {exc}") from exc
    emit(f"device: {cert} (key {key})" + (" EXPIRED" if args.expired else ""))
    emit("client config ([[server]] table):")
    emit(f'  certificate = "{cert}"')
    emit(f'  private_key = "{key}"')
    emit(f'  server_certificate = "{cert.parent / "server.pem"}"')
    return 0
