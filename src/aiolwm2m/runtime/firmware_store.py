"""The default firmware package handler: a directory on disk, an install command.

The hooks the firmware runtime calls (any application may pass its own object
with the same async methods, see :class:`PackageHandler`):

``open(offset, uri)`` → bytes it really holds (≤ offset; 0 empties it),
``write(chunk)``, ``flush()`` (durable up to now), ``verify(size, digest)``,
``install(may_defer)`` → :class:`~aiolwm2m.client.firmware.InstallOutcome`,
``reset()``, and ``boot_outcome()`` (synchronous, called once when the runner
is built): how an installation that restarted the device ended, or None.

:class:`DirectoryPackageStore` keeps ``package.part`` while downloading and a
running SHA-256; on reopen at an offset it truncates the file there and hashes
the kept prefix again from disk (hashlib states cannot be saved, and reading
local bytes is what "never fetch a saved byte twice" allows). ``max_bytes``
is a storage quota: a package that would exceed it fails with "not enough
storage" (result 2) like a full disk (``ENOSPC``/``EDQUOT``) does.

The install command gets the package path as its last argument; exit status 0
is success, and its last line of standard output (if any) is the new version.
An installer that restarts the device (and so the client) before it can exit
writes its verdict first to the file named by the environment variable
``AIOLWM2M_FIRMWARE_RESULT`` (``install-result`` in the directory): a line
``ok [VERSION]`` or ``fail [REASON]``. The next start reads it
(:meth:`DirectoryPackageStore.boot_outcome`) and reports result 1 and the new
PkgVersion (or 8 and the reason) before the first Register; without the file
an installation cut short ends with result 8.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
from pathlib import Path
from typing import Any, Protocol

from aiolwm2m.client.firmware import FailureKind, InstallOutcome
from aiolwm2m.errors import Lwm2mError

__all__ = ["RESULT_ENV", "DirectoryPackageStore", "PackageError", "PackageHandler"]

#: Environment variable naming the file an installer that restarts the device writes.
RESULT_ENV = "AIOLWM2M_FIRMWARE_RESULT"

_CHUNK = 1 << 16


class PackageError(Lwm2mError):
    """A package hook failed; ``kind`` says how the download ends (storage, integrity…)."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class PackageHandler(Protocol):
    async def open(self, offset: int, uri: str | None) -> int: ...

    async def write(self, chunk: bytes) -> None: ...

    async def flush(self) -> None: ...

    async def verify(self, size: int | None, digest: bytes | None) -> None: ...

    async def install(self, may_defer: bool) -> InstallOutcome: ...

    def boot_outcome(self) -> InstallOutcome | None: ...

    async def reset(self) -> None: ...


def _storage_error(exc: OSError) -> PackageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return PackageError(FailureKind.STORAGE, f"no space for the package: {exc}")
    return PackageError(FailureKind.STORAGE, f"package storage failed: {exc}")


class DirectoryPackageStore:
    """See the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        install_command: tuple[str, ...] = (),
        install_timeout: float = 600.0,
        max_bytes: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.install_command = install_command
        self.install_timeout = install_timeout
        self.max_bytes = max_bytes
        self.part = self.directory / "package.part"
        self.result_file = self.directory / "install-result"
        self.record_path = self.directory / "state.json"
        self._file: Any = None
        self._hash = hashlib.sha256()
        self._size = 0

    # -- package ----------------------------------------------------------------------
    async def open(self, offset: int, uri: str | None) -> int:
        self._close()
        try:
            self._file = open(self.part, "r+b" if self.part.exists() else "w+b")  # noqa: SIM115
            held = min(offset, os.fstat(self._file.fileno()).st_size)
            self._file.truncate(held)
            self._file.seek(0)
            self._hash = hashlib.sha256()
            remaining = held
            while remaining:
                block = self._file.read(min(_CHUNK, remaining))
                if not block:
                    break
                self._hash.update(block)
                remaining -= len(block)
            self._size = held - remaining
            self._file.seek(self._size)
        except OSError as exc:
            raise _storage_error(exc) from exc
        return self._size

    async def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise PackageError(FailureKind.STORAGE, "package is not open")
        if self.max_bytes is not None and self._size + len(chunk) > self.max_bytes:
            raise PackageError(
                FailureKind.STORAGE, f"package exceeds the {self.max_bytes}-byte storage quota"
            )
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise _storage_error(exc) from exc
        self._hash.update(chunk)
        self._size += len(chunk)

    async def flush(self) -> None:
        if self._file is None:
            return
        file = self._file
        try:
            file.flush()
            await asyncio.to_thread(os.fsync, file.fileno())
        except OSError as exc:
            raise _storage_error(exc) from exc

    async def verify(self, size: int | None, digest: bytes | None) -> None:
        await self.flush()
        if size is not None and size != self._size:
            raise PackageError(
                FailureKind.INTEGRITY, f"package has {self._size} bytes, expected {size}"
            )
        if digest is not None and digest != self._hash.digest():
            raise PackageError(FailureKind.INTEGRITY, "package SHA-256 does not match")

    @property
    def digest(self) -> bytes:
        return self._hash.digest()

    async def install(self, may_defer: bool) -> InstallOutcome:
        self._close()
        if not self.install_command:
            return InstallOutcome(True, detail="no install command configured")
        env = {**os.environ, RESULT_ENV: str(self.result_file)}
        try:
            self.result_file.unlink(missing_ok=True)  # a verdict of an older installation
            proc = await asyncio.create_subprocess_exec(
                *self.install_command,
                str(self.part),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        except OSError as exc:
            return InstallOutcome(False, detail=f"cannot run installer: {exc}")
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), self.install_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return InstallOutcome(False, detail=f"installer timed out ({self.install_timeout:g} s)")
        lines = output.decode("utf-8", "replace").strip().splitlines()
        if proc.returncode != 0:
            tail = lines[-1] if lines else ""
            return InstallOutcome(False, detail=f"installer exit status {proc.returncode} {tail}")
        version = lines[-1].strip()[:255] if lines else None
        return InstallOutcome(True, version=version or None)

    def boot_outcome(self) -> InstallOutcome | None:
        """The verdict an installer left before restarting the device (see the module doc)."""
        try:
            text = self.result_file.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return InstallOutcome(False, detail=f"install result unreadable: {exc}")
        verdict, _, rest = text.partition(" ")
        rest = rest.strip()[:255]
        if verdict == "ok":
            return InstallOutcome(True, version=rest or None, detail="reported after restart")
        return InstallOutcome(False, detail=rest or f"installer reported {text[:64]!r}")

    async def reset(self) -> None:
        self._close()
        with contextlib.suppress(OSError):  # a stale verdict: install() removes it anyway
            self.result_file.unlink(missing_ok=True)
        self._hash = hashlib.sha256()
        self._size = 0
        try:
            self.part.unlink(missing_ok=True)
        except OSError as exc:
            raise _storage_error(exc) from exc

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
