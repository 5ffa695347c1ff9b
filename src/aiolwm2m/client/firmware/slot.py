"""The package slot's job: where the package comes from and how far it got.

One :class:`Job` at a time fills the slot (a push, a pull or a
manifest-driven pull); this module also checks a Package URI and turns a job
into its part of the persisted record and back. The coordinator in
``update.py`` decides when a job starts and ends.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .download import DownloadMachine, DownloadPolicy
from .manifest import Manifest
from .states import UpdateResult

__all__ = ["Job", "Origin", "job_record", "restore_job", "uri_problem"]


class Origin(enum.Enum):
    PUSH = "push"
    PULL = "pull"
    MANIFEST = "manifest"


@dataclass
class Job:
    origin: Origin
    uri: str | None
    download: DownloadMachine | None = None
    manifest: Manifest | None = None
    received: int = 0  # push: bytes stored so far
    deadline: float | None = None  # push: fails if no block arrives before this
    checkpoint: int = 0  # offset made durable (what a restart resumes from)
    name: str | None = None
    version: str | None = None


def uri_problem(uri: str, protocols: tuple[str, ...]) -> tuple[UpdateResult, str] | None:
    """Why a Package URI cannot be fetched (result code and detail), or None."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        return UpdateResult.INVALID_URI, f"malformed URI {uri!r}: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in protocols:
        return UpdateResult.UNSUPPORTED_PROTOCOL, f"unsupported URI scheme {scheme!r}"
    if not parts.hostname:
        return UpdateResult.INVALID_URI, f"URI {uri!r} has no host"
    return None


def job_record(job: Job | None) -> dict[str, Any] | None:
    """The job's part of the record: the saved offset, never what is not yet durable."""
    if job is None:
        return None
    download = job.download
    return {
        "origin": job.origin.value,
        "uri": job.uri,
        "name": job.name,
        "version": job.version,
        "offset": job.checkpoint,
        "validator": download.validator if download is not None else None,
        "total": download.total if download is not None else None,
        "resumes": download.resumes if download is not None else 0,
        "manifest": job.manifest.to_json() if job.manifest is not None else None,
    }


def restore_job(
    data: dict[str, Any] | None, policy: DownloadPolicy, rng: random.Random
) -> Job | None:
    """A job from :func:`job_record`; a pull's download resumes from the saved offset."""
    if data is None:
        return None
    origin = Origin(data["origin"])
    manifest = None if data["manifest"] is None else Manifest.from_json(data["manifest"])
    job = Job(origin, data["uri"], manifest=manifest, checkpoint=int(data["offset"]))
    job.name, job.version = data["name"], data["version"]
    if origin is not Origin.PUSH:
        job.download = DownloadMachine(
            policy,
            rng,
            offset=job.checkpoint,
            validator=data["validator"],
            total=data["total"],
            resumes=int(data["resumes"]),
        )
    return job
