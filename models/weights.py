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

from terrawatch.errors import WeightsNotFoundError

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
    """open_clip model name when open_clip's own download mechanism fetches it."""


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

    Raises:
        WeightsNotFoundError: the file is missing and could not be downloaded.
    """
    entry = get_entry(name)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights file {str(path)!r} given for {entry.name} does not exist; "
                f"pass the path of {entry.filename} ({entry.size}), downloadable from {entry.url}"
            )
        return path
    local = weights_dir() / entry.filename
    if local.is_file():
        return local
    if is_offline():
        raise WeightsNotFoundError(
            _missing_message(entry, local, "downloads are off (offline mode)")
        )
    try:
        return _download(entry)
    except Exception as err:  # any network/HTTP/checksum failure: one clear message
        raise WeightsNotFoundError(
            _missing_message(entry, local, f"download failed: {err}")
        ) from err


def _missing_message(entry: WeightsEntry, local: Path, why: str) -> str:
    return (
        f"{entry.description}: weights file {entry.filename} ({entry.size}) not found at "
        f"{local} and {why}. To fix: on a machine with internet run "
        f"`terrawatch weights fetch {entry.name}` (or download {entry.url}) and copy the file to "
        f"{local}, or set {WEIGHTS_DIR_ENV} to a folder holding {entry.filename}, or pass its path "
        f"explicitly."
    )


def _download(entry: WeightsEntry) -> Path:
    """Fetch through open_clip's own mechanism (CLIP) or torch.hub (other checkpoints)."""
    target_dir = weights_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s (%s) into %s", entry.filename, entry.size, target_dir)
    if entry.open_clip_model is not None:
        from open_clip.pretrained import download_pretrained_from_url

        return Path(download_pretrained_from_url(entry.url, cache_dir=str(target_dir)))
    import torch.hub

    target = target_dir / entry.filename
    partial = target.with_suffix(target.suffix + ".partial")
    torch.hub.download_url_to_file(entry.url, str(partial), progress=True)
    if entry.sha256_prefix and not file_sha256(partial).startswith(entry.sha256_prefix):
        partial.unlink()
        raise RuntimeError(f"checksum mismatch for {entry.url}")
    partial.replace(target)
    return target


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
