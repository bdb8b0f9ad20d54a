"""A local store checked before a run: a Zarr store or a new folder, and writable.

Without these checks a folder of other files failed deep inside xarray with ``FileExistsError``
and a read-only store with a permission error from a worker, each after the search and the
cluster start and behind hundreds of lines of tracebacks. Standard library only.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from terrawatch.errors import InputError

ZARR_MARKERS = ("zarr.json", ".zgroup", ".zattrs", ".zmetadata")
"""Files at the root of a Zarr store (format 3, format 2)."""


def check_store_folder(path: Path, existing: Path, named: str) -> None:
    """Refuse a store folder that holds no Zarr store but other files, or cannot be written.

    Args:
        path: The store's local path.
        existing: ``path`` or its nearest existing parent (a folder).
        named: How the message names it: the flag and the text the user typed.

    Raises:
        InputError: a folder of other files, or no permission to write (read-only too).
    """
    if path.is_dir():
        try:
            entries = {entry.name for entry in os.scandir(path)}
        except OSError as err:
            raise InputError(
                f"{named} cannot be read ({err.strerror}); fix its permissions or give another "
                "store path"
            ) from err
        if entries and not entries & set(ZARR_MARKERS):
            shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
            raise InputError(
                f"{named} is a folder of other files ({shown}), not a Zarr store; give a new "
                "path (it is created) or an existing terrawatch cube"
            )
    try:
        probe = tempfile.NamedTemporaryFile(dir=existing, prefix=".terrawatch-write-test-")
        probe.close()
    except OSError as err:
        read_only = err.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        why = "is read-only" if read_only else f"cannot be written ({err.strerror})"
        where = "" if existing == path else f" (its folder {str(existing)!r} {why})"
        raise InputError(
            f"{named} {why if not where else 'cannot be created'}{where}; give a store path you "
            "can write to, or make it writable (e.g. chmod -R u+w)"
        ) from err
