"""Write a small file whole or not at all, on local disk and on any fsspec filesystem.

A reader (a STAC client, ``terrawatch catalog``, a second run) must never see half a document.
How that is reached depends on the storage:

- local disk (a path or a ``file://`` URL): a temporary sibling, renamed into place
  (``os.replace`` is atomic within a filesystem);
- object stores (S3, GCS, Azure Blob/ADLS, fsspec's memory store): one PUT of the whole body.
  An object store publishes an object only when its upload completes (a multipart upload too),
  and a reader sees the old object or the new one, never a mix, so a temporary key and a copy
  would add two requests, and a stray temporary object after a crash, for nothing;
- any other filesystem (SFTP, FTP, WebDAV, HDFS, ...), whose writes may be visible while they
  happen: a temporary key beside the target, then a move onto it (a rename where the server
  has one), and the temporary key removed if anything fails.

Temporary names end in ``.tmp``, so folder walkers looking for ``.json`` never pick them up.
Keeping a *set* of files consistent (a STAC Collection and its Items) is the writer's order:
see :func:`tasks.core.cube_stac.describe_cube`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

ATOMIC_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"})
"""fsspec protocols whose single PUT of a body is atomic (see the module docstring)."""


def write_whole(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (a local path or an fsspec URL), whole or not at all.

    Missing parent folders are created. On failure the previous file, if any, is unchanged.
    """
    fs, fs_path = fsspec.core.url_to_fs(path)
    put_whole(fs, fs_path, data)


def put_whole(fs: fsspec.AbstractFileSystem, fs_path: str, data: bytes) -> None:
    """:func:`write_whole` on a filesystem instance and a path within it."""
    parent = os.path.dirname(fs_path)
    if isinstance(fs, LocalFileSystem):
        Path(parent).mkdir(parents=True, exist_ok=True)
        tmp = f"{fs_path}.{uuid.uuid4().hex}.tmp"
        try:
            Path(tmp).write_bytes(data)
            os.replace(tmp, fs_path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    fs.makedirs(parent, exist_ok=True)
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & ATOMIC_PUT_PROTOCOLS:
        fs.pipe_file(fs_path, data)
        return
    tmp = f"{fs_path}.{uuid.uuid4().hex}.tmp"
    try:
        fs.pipe_file(tmp, data)
        fs.mv(tmp, fs_path)
    finally:
        if fs.exists(tmp):
            fs.rm_file(tmp)
