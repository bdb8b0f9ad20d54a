"""Weights registry and resolution: explicit path, then the weights directory, then a download.

Random weights are never a fallback: when no file can be found or fetched, one
:class:`WeightsNotFoundError` names the file, its size and how to get it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from terrawatch.errors import WeightsCorruptError, WeightsNotFoundError
from terrawatch.models.weights_check import (
    MissingWeights,
    check_weights_file,
    fetch_hint,
    note_missing,
)

logger = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "TERRAWATCH_WEIGHTS_DIR"
OFFLINE_ENV = "TERRAWATCH_OFFLINE"


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint: where it comes from and what it is."""

    name: str
    """Registry key, e.g. ``"ViT-B-16"``."""
    filename: str
    """File name inside the weights directory."""
    url: str
    """Download URL pinned to a revision."""
    sha256_prefix: str
    """Expected SHA-256 (prefix) of the file; empty when the publisher gives none."""
    size: str
    """Approximate size, for the error message."""
    description: str
    """What the file is, with licence and paper."""
    open_clip_model: str | None = None
    """open_clip model name of the architecture; the file itself is fetched by ``_download``."""


_OPENAI = "https://openaipublic.azureedge.net/clip/models"

REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in (
        WeightsEntry(
            name="ViT-B-16",
            filename="ViT-B-16.pt",
            url=f"{_OPENAI}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
            sha256_prefix="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
            size="about 335 MiB",
            description="OpenAI CLIP ViT-B/16 (MIT licence; Radford et al. 2021)",
            open_clip_model="ViT-B-16",
        ),
        WeightsEntry(
            name="ViT-B-32",
            filename="ViT-B-32.pt",
            url=f"{_OPENAI}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
            sha256_prefix="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            size="about 338 MiB",
            description="OpenAI CLIP ViT-B/32 (MIT licence; Radford et al. 2021)",
            open_clip_model="ViT-B-32",
        ),
        WeightsEntry(
            name="ViT-L-14",
            filename="ViT-L-14.pt",
            url=f"{_OPENAI}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
            sha256_prefix="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
            size="about 890 MiB",
            description="OpenAI CLIP ViT-L/14 (MIT licence; Radford et al. 2021)",
            open_clip_model="ViT-L-14",
        ),
        WeightsEntry(
            name="simfeatup-jbu-one-million-aid",
            filename="xclip_jbu_one_million_aid.ckpt",
            # The checkpoint ships inside the SegEarth-OV git repository (commit 3e22a969).
            url=(
                "https://github.com/likyoo/SegEarth-OV/raw/3e22a969b32c/"
                "simfeatup_dev/weights/xclip_jbu_one_million_aid.ckpt"
            ),
            sha256_prefix="",
            size="a few MiB (about 1.2 MB of parameters)",
            description=(
                "SimFeatUp JBUOne upsampler for CLIP ViT-B/16 trained on Million-AID "
                "(SegEarth-OV, Li et al. CVPR 2025; Apache-2.0)"
            ),
        ),
        WeightsEntry(
            name="AlignEarth-SAR-ViT-B-16",
            filename="AlignEarth-SAR-ViT-B-16.pt",
            # HuggingFace likyoo/AlignEarth-SAR-ViT-B-16 (README of earth-insights/SegEarth-OV-2,
            # commit eb0c52b1). The file name comes from that README and the repo's configs; the
            # publisher gives no checksum, and size and file name on the hub are UNVERIFIED.
            url=(
                "https://huggingface.co/likyoo/AlignEarth-SAR-ViT-B-16/resolve/main/"
                "AlignEarth-SAR-ViT-B-16.pt"
            ),
            sha256_prefix="",
            size="size unverified, a full CLIP ViT-B/16: roughly 300-600 MiB",
            description=(
                "AlignEarth SAR image encoder: CLIP ViT-B/16 distilled from optical CLIP on "
                "optical-SAR pairs, saved as a full open_clip CLIP model (SegEarth-OV-2, Li et al. "
                "2025, arXiv 2508.18067; file name and size UNVERIFIED)"
            ),
        ),
    )
}


def weights_dir() -> Path:
    """The local weights directory (``$TERRAWATCH_WEIGHTS_DIR``, else the user cache)."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "terrawatch" / "weights"


def is_offline() -> bool:
    """True when downloads are switched off (``TERRAWATCH_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    flags = (os.environ.get(OFFLINE_ENV, ""), os.environ.get("HF_HUB_OFFLINE", ""))
    return any(flag.strip().lower() in {"1", "true", "yes", "on"} for flag in flags)


def get_entry(name: str) -> WeightsEntry:
    """Look up a registry entry by name."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; available: {sorted(REGISTRY)}") from None


def resolve_weights(name: str, explicit: str | Path | None = None) -> Path:
    """Find the file of registry entry ``name``.

    Order: ``explicit`` path; ``<weights_dir>/<filename>``; a download into the weights
    directory (skipped when offline).

    A file found is checked first (:func:`~terrawatch.models.weights_check.check_weights_file`).
    Inside :func:`~terrawatch.models.weights_check.all_missing_weights` a missing file is noted
    (and its would-be path returned) so that one error names every missing file.

    Raises:
        WeightsNotFoundError: the file is missing and could not be downloaded.
        WeightsCorruptError: the file is truncated or damaged, or the downloaded file does not
            have the registry's checksum.
    """
    entry = get_entry(name)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights file {str(path)!r} given for {entry.name} does not exist; "
                f"pass the path of {entry.filename} ({entry.size}), downloadable from {entry.url}"
            )
        check_weights_file(path, f"pass a complete copy of {entry.filename} ({entry.size})")
        return path
    local = weights_dir() / entry.filename
    if local.is_file():
        check_weights_file(local, fetch_hint(entry.name, local))
        return local
    if is_offline():
        why = "downloads are off (offline mode)"
        if note_missing(MissingWeights(entry.name, entry.filename, entry.size, local, why)):
            return local
        raise WeightsNotFoundError(_missing_message(entry, local, why))
    try:
        return _download(entry)
    except WeightsCorruptError:
        raise
    except Exception as err:  # any network/HTTP/checksum failure: one clear message
        why = f"the download failed ({' '.join(str(err).split())})"
        if note_missing(MissingWeights(entry.name, entry.filename, entry.size, local, why)):
            return local
        raise WeightsNotFoundError(
            _missing_message(entry, local, f"download failed: {err}")
        ) from err


def _missing_message(entry: WeightsEntry, local: Path, why: str) -> str:
    return (
        f"{entry.description}: weights file {entry.filename} ({entry.size}) not found at "
        f"{local} and {why}. To fix: on a machine with internet run "
        f"`terrawatch weights fetch {entry.name}` (or download {entry.url}) and copy the file to "
        f"{local}, or set {WEIGHTS_DIR_ENV} to a folder holding {entry.filename}, or pass its path "
        f"explicitly; run `terrawatch doctor` for a full check."
    )


def _download(entry: WeightsEntry) -> Path:
    """Fetch ``entry.url`` into ``<weights_dir>/<filename>``, resuming an interrupted download.

    The bytes go to ``<filename>.partial`` beside the final file; only a complete file whose
    SHA-256 matches the registry is renamed (atomically) to the final name, so a crash or a cut
    connection never leaves a half file that later runs would take for the checkpoint. A
    ``.partial`` left by an interrupted run is continued with an HTTP ``Range`` request (or
    restarted when the server ignores ranges).

    Raises:
        WeightsCorruptError: the complete file does not have the registry's checksum (deleted).
        OSError: the connection failed or closed early (``.partial`` kept for the next try).
    """
    target_dir = weights_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / entry.filename
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    logger.info("downloading %s (%s) into %s", entry.filename, entry.size, target_dir)
    _fetch_resuming(entry.url, partial)
    digest = file_sha256(partial)
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        size = partial.stat().st_size
        partial.unlink()
        raise WeightsCorruptError(
            f"{entry.description}: the download of {entry.filename} from {entry.url} is corrupt: "
            f"expected SHA-256 {entry.sha256_prefix}, got {digest} ({size} bytes). The file was "
            f"deleted (nothing was written to {target}). To retry: run "
            f"`terrawatch weights fetch {entry.name}` again; if it fails the same way, download "
            f"{entry.url} yourself, check its SHA-256, and copy it to {target}."
        )
    partial.replace(target)
    return target


PARTIAL_SUFFIX = ".partial"
"""Suffix of a download in progress, kept beside the final file so a later run can resume it."""
_TIMEOUT_S = 60.0
_BLOCK = 1 << 20


def _fetch_resuming(url: str, partial: Path) -> None:
    """Complete ``partial`` from ``url``: continue it with ``Range: bytes=N-`` when it has bytes.

    A ``206`` whose ``Content-Range`` starts at ``N`` is appended; a ``200`` (ranges ignored)
    restarts the file; ``416`` means ``partial`` is already whole (the checksum decides).

    Raises:
        OSError: network errors, HTTP errors, or a body shorter than its ``Content-Length``.
    """
    import urllib.error
    import urllib.request

    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "terrawatch"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            return
        raise
    with response:
        resumed = response.status == 206
        if resumed and not (response.headers.get("Content-Range") or "").startswith(
            f"bytes {have}-"
        ):
            raise OSError(f"server answered {url} with an unexpected Content-Range")
        if resumed:
            logger.info("resuming %s at byte %d", partial.name, have)
        length = response.headers.get("Content-Length")
        written = 0
        with partial.open("ab" if resumed else "wb") as out:
            while block := response.read(_BLOCK):
                out.write(block)
                written += len(block)
    # urllib returns b"" instead of raising when the server closes the connection early.
    if length is not None and written != int(length):
        raise OSError(
            f"connection closed after {written} of {length} bytes of {url}; the bytes received "
            f"are kept in {partial} and the next try resumes from there"
        )


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, memoised per (path, size, mtime) so a worker hashes each file once."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]
