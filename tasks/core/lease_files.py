"""Storage of the writer leases (:mod:`tasks.core.writer_lease`): one folder of small files.

Exclusive create is the primitive a lease rests on: ``os.link`` of a complete temporary file on
local and network file systems, a conditional ``PutObject`` (``If-None-Match: *``) through s3fs
on S3 APIs, and elsewhere fsspec's exists-then-write followed by a read-back (not atomic; see
:data:`CONDITIONAL_PROTOCOLS`). Listing caches are dropped before every read: a lease must be
read as it is now.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Any

LEASE_SUFFIX = ".terrawatch-lease"
"""Folder of the lease, beside the store: ``<store>.terrawatch-lease/``."""
SETTLE_SECONDS = 1.0
"""Read-back delay after a create on a filesystem without conditional writes."""


class LeaseFiles:
    """The lease folder of one store: exclusive create, replace, read, list generations."""

    def __init__(self, store: str) -> None:
        from fsspec.core import url_to_fs
        from fsspec.implementations.local import LocalFileSystem

        self.fs, root = url_to_fs(str(store).rstrip("/") + LEASE_SUFFIX)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/")
        self.url = str(store).rstrip("/") + LEASE_SUFFIX

    def path(self, generation: int) -> str:
        return f"{self.root}/{generation:012d}.json"

    def create(self, generation: int, data: bytes) -> None:
        """Create the generation's file with ``data``; FileExistsError if it exists."""
        path = self.path(generation)
        if self.local:
            try:
                os.makedirs(self.root, exist_ok=True)
            except FileExistsError as error:  # a file in the way: not "taken by another run"
                raise NotADirectoryError(str(error)) from error
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, path)  # fails if the name exists: atomic create of a full file
            finally:
                os.unlink(tmp)
            return
        self.fs.pipe_file(path, data, mode="create")
        if not has_conditional_writes(self.fs):
            time.sleep(SETTLE_SECONDS)
            if self.read(generation) != data:
                raise FileExistsError(path)

    def replace(self, generation: int, data: bytes) -> None:
        path = self.path(generation)
        if self.local:
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def read(self, generation: int) -> bytes | None:
        self.fs.invalidate_cache(self.root)
        try:
            return self.fs.cat_file(self.path(generation))
        except FileNotFoundError:
            return None

    def exists(self, generation: int) -> bool:
        self.fs.invalidate_cache(self.root)
        return self.fs.exists(self.path(generation))

    def generations(self) -> list[int]:
        self.fs.invalidate_cache(self.root)
        try:
            names = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        stems = (str(n).rstrip("/").rsplit("/", 1)[-1] for n in names)
        return sorted(int(s[:-5]) for s in stems if s.endswith(".json") and s[:-5].isdigit())

    def remove(self, generation: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(generation))


CONDITIONAL_PROTOCOLS = frozenset({"s3", "s3a", "memory"})
"""fsspec protocols whose ``pipe_file(mode="create")`` is an atomic create-if-absent: s3fs's
conditional ``PutObject``, and the in-process memory filesystem (one dict, one interpreter)."""


def has_conditional_writes(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return bool(CONDITIONAL_PROTOCOLS.intersection(protocols))
