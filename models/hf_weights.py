"""Hugging Face model directories (SAM, DINOv2): explicit path, weights directory, pinned download.

Resolved like :mod:`models.weights` resolves single files: an explicit directory, else
``$TERRAWATCH_WEIGHTS_DIR/<name>/``, else ``huggingface_hub.snapshot_download`` of the pinned
revision into that folder (skipped offline). Random weights are never a fallback: a missing
model raises one :class:`~models.weights.WeightsNotFoundError` saying how to fetch it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from terrawatch.errors import WeightsNotFoundError
from terrawatch.models.weights import file_sha256, is_offline, weights_dir
from terrawatch.models.weights_check import (
    MissingWeights,
    check_weights_file,
    fetch_hint,
    note_missing,
)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
DOWNLOAD_PATTERNS = ("*.json", WEIGHTS_FILE)
"""Only the configs and the safetensors weights: the repos also hold a pytorch_model.bin copy."""


@dataclass(frozen=True)
class HfModelEntry:
    """One published Hugging Face model: repository, pinned revision, what it is."""

    name: str
    """Registry key and folder name inside the weights directory, e.g. ``"sam-vit-huge"``."""
    repo_id: str
    """Hugging Face repository, e.g. ``"facebook/sam-vit-huge"``."""
    revision: str
    """Commit of the repository the download is pinned to."""
    size: str
    """Approximate download size, for messages."""
    description: str
    """What the model is, with licence and paper."""


HF_REGISTRY: dict[str, HfModelEntry] = {
    entry.name: entry
    for entry in (
        HfModelEntry(
            name="sam-vit-huge",
            repo_id="facebook/sam-vit-huge",
            revision="87aecf0df4ce6b30cd7de76e87673c49644bdf67",
            size="about 2.6 GB",
            description=(
                "Segment Anything ViT-H, the transformers port of the reference's "
                "sam_vit_h_4b8939.pth (Kirillov et al. 2023; Apache-2.0)"
            ),
        ),
        HfModelEntry(
            name="dinov2-base",
            repo_id="facebook/dinov2-base",
            revision="f9e44c814b77203eaa57a6bdbbd535f21ede1415",
            size="about 350 MB",
            description="DINOv2 ViT-B/14 (Oquab et al. 2023; Apache-2.0)",
        ),
    )
}


def get_hf_entry(name: str) -> HfModelEntry:
    """Look up a Hugging Face registry entry by name."""
    try:
        return HF_REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {sorted(HF_REGISTRY)}") from None


def is_model_dir(path: Path) -> bool:
    """True when ``path`` holds a transformers model (``config.json`` + ``model.safetensors``)."""
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def resolve_hf_model(name: str, explicit: str | Path | None = None) -> Path:
    """Directory of registry model ``name``: explicit path, weights directory, then a download.

    Raises:
        WeightsNotFoundError: the model is missing and cannot be downloaded (offline or failed).
    """
    entry = get_hf_entry(name)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not is_model_dir(path):
            raise WeightsNotFoundError(
                f"model directory {str(path)!r} given for {entry.name} does not hold "
                f"{CONFIG_FILE} and {WEIGHTS_FILE}; pass a directory written by "
                f"save_pretrained / downloaded from {entry.repo_id} ({_how_to_fetch(entry, path)})"
            )
        check_model_dir(path, f"pass a complete copy of {entry.repo_id}")
        return path
    local = weights_dir() / entry.name
    if is_model_dir(local):
        check_model_dir(local, fetch_hint(entry.name, local))
        return local
    if is_offline():
        why = "downloads are off (offline mode)"
        if note_missing(MissingWeights(entry.name, f"{entry.name}/", entry.size, local, why)):
            return local
        raise WeightsNotFoundError(_missing_message(entry, local, "downloads are off (offline)"))
    try:
        return fetch(name)
    except WeightsNotFoundError as err:
        why = f"the download failed ({' '.join(str(err.__cause__ or 'no model files').split())})"
        if note_missing(MissingWeights(entry.name, f"{entry.name}/", entry.size, local, why)):
            return local
        raise
    except Exception as err:  # any network/HTTP failure: one clear message
        why = f"the download failed ({' '.join(str(err).split())})"
        if note_missing(MissingWeights(entry.name, f"{entry.name}/", entry.size, local, why)):
            return local
        raise WeightsNotFoundError(
            _missing_message(entry, local, f"download failed: {err}")
        ) from err


def check_model_dir(path: Path, fix: str) -> None:
    """A model folder's weights are whole and its config is JSON.

    Raises:
        WeightsCorruptError: a truncated weights file or an unreadable config.
    """
    import json

    from terrawatch.errors import WeightsCorruptError

    check_weights_file(path / WEIGHTS_FILE, fix)
    try:
        json.loads((path / CONFIG_FILE).read_text())
    except (ValueError, OSError) as err:
        raise WeightsCorruptError(
            f"{path / CONFIG_FILE} is not readable JSON ({err}). To fix: {fix}"
        ) from err


def fetch(name: str) -> Path:
    """Download registry model ``name`` at its pinned revision into the weights directory.

    Idempotent: files already there are not downloaded again; offline, a complete folder is
    returned as it is.

    Raises:
        WeightsNotFoundError: offline, or the download did not produce the weights file.
    """
    entry = get_hf_entry(name)
    local = weights_dir() / entry.name
    if is_offline():
        if is_model_dir(local):
            return local
        raise WeightsNotFoundError(_missing_message(entry, local, "downloads are off (offline)"))
    from huggingface_hub import snapshot_download

    logger.info("downloading %s@%s (%s) into %s", entry.repo_id, entry.revision, entry.size, local)
    local.mkdir(parents=True, exist_ok=True)
    snapshot_download(
        entry.repo_id,
        revision=entry.revision,
        local_dir=local,
        allow_patterns=list(DOWNLOAD_PATTERNS),
    )
    if not is_model_dir(local):
        raise WeightsNotFoundError(
            _missing_message(entry, local, f"the download holds no {CONFIG_FILE}/{WEIGHTS_FILE}")
        )
    return local


def model_sha256(directory: str | Path) -> str:
    """SHA-256 of the directory's ``model.safetensors`` (memoised), for provenance."""
    return file_sha256(Path(directory) / WEIGHTS_FILE)


def _how_to_fetch(entry: HfModelEntry, local: Path) -> str:
    command = (
        f"download {entry.repo_id} --revision {entry.revision} --include '*.json' "
        f"--include {WEIGHTS_FILE} --local-dir {local}"
    )
    return (
        f"on a machine with internet run `terrawatch weights fetch {entry.name}`, or "
        f"`hf {command}` (`huggingface-cli {command}` with huggingface_hub < 1.0)"
    )


def _missing_message(entry: HfModelEntry, local: Path, why: str) -> str:
    return (
        f"{entry.description}: model directory {local} (Hugging Face {entry.repo_id}, "
        f"{entry.size}) not found and {why}. To fix: {_how_to_fetch(entry, local)} and copy the "
        f"folder to {local}, or set TERRAWATCH_WEIGHTS_DIR to a folder holding {entry.name}/, or "
        f"pass the directory explicitly; run `terrawatch doctor` for a full check."
    )
