"""Weight files checked before a run, and every missing one of a command named at once.

A truncated or damaged checkpoint used to surface as a long torch traceback on a worker, after
the search and the cluster start; and a site without internet learnt of its missing files one
per attempt. Here a file is checked where it is found (cheaply, without torch: its archive
structure and the CRC of every member, memoised per file version), and inside
:func:`all_missing_weights` a missing file is noted instead of raised, so one
:class:`~terrawatch.errors.WeightsNotFoundError` lists them all with one
``terrawatch weights fetch A B`` command. Only the standard library is imported.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from terrawatch.errors import WeightsCorruptError, WeightsNotFoundError

ZIP_MAGIC = b"PK\x03\x04"
"""How a zip archive starts: ``torch.save`` (since torch 1.6), TorchScript and Lightning files."""


@dataclass(frozen=True)
class MissingWeights:
    """A checkpoint that is neither on disk nor downloadable."""

    name: str
    """Registry name (what ``terrawatch weights fetch`` takes)."""
    filename: str
    """File or folder name inside the weights directory."""
    size: str
    """Approximate size, for the message."""
    local: Path
    """Where it was looked for."""
    why: str
    """Why it could not be fetched (offline, or the download error)."""


_NOTED: ContextVar[list[MissingWeights] | None] = ContextVar("missing_weights", default=None)


@contextmanager
def all_missing_weights() -> Iterator[None]:
    """Resolve several checkpoints and report every missing one in one error at the end.

    Nested uses join the outermost one. Within it, the resolvers call :func:`note_missing`
    and go on; an exception raised inside passes through unchanged.

    Raises:
        WeightsNotFoundError: one or more checkpoints are missing (all listed).
    """
    if _NOTED.get() is not None:
        yield
        return
    token = _NOTED.set([])
    try:
        yield
        missing = _NOTED.get() or []
    finally:
        _NOTED.reset(token)
    if missing:
        raise WeightsNotFoundError(missing_message(missing))


def note_missing(missing: MissingWeights) -> bool:
    """Note a missing checkpoint inside :func:`all_missing_weights`; False outside (raise it)."""
    noted = _NOTED.get()
    if noted is None:
        return False
    if missing not in noted:
        noted.append(missing)
    return True


def missing_message(missing: list[MissingWeights]) -> str:
    """One message for all missing checkpoints, with one command that fetches them all."""
    files = ", ".join(f"{m.filename} ({m.size})" for m in missing)
    folders = sorted({str(m.local.parent) for m in missing})
    names = " ".join(m.name for m in missing)
    plural = "s" if len(missing) > 1 else ""
    return (
        f"missing weight{plural}: {files} not in {', '.join(folders)} and {missing[0].why}. "
        f"To fix: on a machine with internet run `terrawatch weights fetch {names}` and copy "
        f"the weights folder's contents to {folders[0]} (or set TERRAWATCH_WEIGHTS_DIR to the "
        f"folder holding them)"
    )


_CHECKED: dict[tuple[str, int, int], str | None] = {}


def check_weights_file(path: str | Path, fix: str) -> None:
    """Refuse a checkpoint file that is empty, truncated or damaged, before torch reads it.

    Zip archives (``torch.save``, TorchScript, Lightning) must be complete and every member must
    match its CRC; ``.safetensors`` files must hold every tensor their header declares. Older
    pickle files cannot be checked without loading them and pass. Memoised per
    (path, size, mtime): each process reads a file once.

    Args:
        path: The checkpoint file.
        fix: What the user does about a bad file (the message's end).

    Raises:
        WeightsCorruptError: the file is not usable; the message names it and the fix.
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = weights_file_problem(path)
    problem = _CHECKED[key]
    if problem is not None:
        raise WeightsCorruptError(
            f"weights file {path} ({stat.st_size} bytes) is corrupt: {problem}. To fix: {fix}"
        )


def weights_file_problem(path: Path) -> str | None:
    """What is wrong with a checkpoint file, or None when it looks whole."""
    size = path.stat().st_size
    if size == 0:
        return "it is empty"
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(ZIP_MAGIC):
        return _zip_problem(path, size)
    if path.suffix == ".safetensors":
        return _safetensors_problem(path, size)
    return None


def _zip_problem(path: Path, size: int) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.header_offset + info.compress_size > size:
                    return f"truncated (member {info.filename} ends past the file's end)"
                if info.CRC == 0 and info.file_size:
                    continue  # saved without checksums (torch's compute_crc32=False)
                with archive.open(info) as member:  # zipfile checks the CRC at the end
                    while member.read(1 << 20):
                        pass
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        reason = str(err) or type(err).__name__
        if "central directory" in reason or "not a zip file" in reason.lower():
            return "truncated (its archive directory is missing)"
        return f"damaged ({reason})"
    return None


def _safetensors_problem(path: Path, size: int) -> str | None:
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            return "truncated (no header)"
        (length,) = struct.unpack("<Q", raw)
        if 8 + length > size:
            return "truncated (inside its header)"
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            return "damaged (its header is not JSON)"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    if 8 + length + max(ends, default=0) > size:
        return "truncated (tensor data missing)"
    return None


def fetch_hint(name: str, local: Path) -> str:
    """The fix for a bad file of registry entry ``name``."""
    return f"delete {local} and run `terrawatch weights fetch {name}` (or copy a good copy there)"
