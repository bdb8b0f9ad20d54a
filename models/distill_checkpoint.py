"""Checkpoints of AlignEarth distillation: inference-loadable student, training state, manifest.

Per step ``N`` a directory holds three files, written atomically, the manifest last (a
manifest therefore marks a complete checkpoint):

* ``step-000000N.pt``: ``{"state_dict": <full CLIP>, "activation", "name", "step"}``, the
  open_clip training-checkpoint layout. :func:`models.clip_backbone.load_clip` (and so
  ``SegEarthOV.from_pretrained(sensor="sar", weights=...)``) reads it and honours the recorded
  activation; open_clip's ``load_checkpoint`` reads it too but builds ``ViT-B-16`` with GELU,
  while a student distilled from OpenAI CLIP uses QuickGELU (use ``ViT-B-16-quickgelu`` there).
* ``step-000000N.train.pt``: AdamW state, ``log(1/τ)``, step and chip count, for resuming.
* ``step-000000N.json``: the manifest: data description, steps, loss history, settings,
  teacher hashes, student architecture and the checkpoint's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import open_clip
import torch
from torch import Tensor

from terrawatch.errors import StoreMismatchError
from terrawatch.models.clip_backbone import clip_activation
from terrawatch.models.weights import file_sha256

if TYPE_CHECKING:
    from terrawatch.models.distill import Distiller

logger = logging.getLogger(__name__)

FORMAT = "terrawatch-alignearth-distill/1"
_STEM = re.compile(r"^step-(\d+)\.json$")


def save(distiller: Distiller, directory: Path) -> Path:
    """Write the three files of the current step; returns the checkpoint path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"step-{distiller.step:07d}"
    model_path = stem.with_suffix(".pt")
    activation = clip_activation(distiller.clip)
    checkpoint = {
        "state_dict": distiller.student_state_dict(),
        "activation": activation,
        "name": "alignearth-sar-student",
        "step": distiller.step,
    }
    _atomic_torch_save(checkpoint, model_path)
    train_state = {
        "optimizer": distiller.optimizer.state_dict(),
        "log_scale": distiller.log_scale.item(),
        "step": distiller.step,
        "chips_seen": distiller.chips_seen,
    }
    _atomic_torch_save(train_state, stem.with_suffix(".train.pt"))
    manifest = _manifest(distiller, model_path, activation)
    _atomic_write(stem.with_suffix(".json"), json.dumps(manifest, indent=1))
    logger.info("saved distillation step %d to %s", distiller.step, model_path)
    return model_path


def _manifest(distiller: Distiller, model_path: Path, activation: str) -> dict[str, Any]:
    visual = distiller.student
    return {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": model_path.name,
        "checkpoint_sha256": file_sha256(model_path),
        "train_state": model_path.with_suffix(".train.pt").name,
        "step": distiller.step,
        "chips_seen": distiller.chips_seen,
        "temperature": distiller.temperature,
        "data": distiller.data,
        "settings": asdict(distiller.settings),
        "teacher": distiller.teacher_info,
        "student": {
            "activation": activation,
            "layers": len(visual.transformer.resblocks),
            "width": int(visual.conv1.out_channels),
            "patch_size": int(visual.conv1.kernel_size[0]),
            "embed_dim": int(visual.proj.shape[1]),
        },
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__},
        "losses": distiller.history,
    }


def latest_manifest(directory: Path) -> Path | None:
    """The manifest with the highest step in ``directory`` (None when there is none)."""
    found = [
        (int(m.group(1)), p) for p in directory.glob("step-*.json") if (m := _STEM.match(p.name))
    ]
    return max(found)[1] if found else None


def resume(distiller: Distiller, directory: Path) -> int:
    """Load student, optimizer, temperature, step and loss history of the newest checkpoint."""
    manifest_path = latest_manifest(directory) if directory.is_dir() else None
    if manifest_path is None:
        logger.info("no distillation checkpoint in %s; starting at step 0", directory)
        return 0
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise StoreMismatchError(
            f"{str(manifest_path)!r} is not a distillation manifest (format "
            f"{manifest.get('format')!r}, expected {FORMAT!r}); resume from a directory "
            f"written by Distiller.save"
        )
    model_path = directory / manifest["checkpoint"]
    state = torch.load(model_path, map_location="cpu", weights_only=True)["state_dict"]
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    check_architecture(visual, distiller.student.state_dict(), model_path)
    theirs = manifest["teacher"].get("visual_sha256")
    ours = distiller.teacher_info["visual_sha256"]
    if theirs != ours:
        raise StoreMismatchError(
            f"{str(model_path)!r} was distilled from teacher {theirs!r} (visual_sha256), but this "
            f"distiller's teacher is {ours!r}; resume with the same teacher weights "
            f"({manifest['teacher'].get('weights', 'unnamed')}) or use a new directory"
        )
    distiller.student.load_state_dict(visual)
    train = torch.load(directory / manifest["train_state"], map_location="cpu", weights_only=True)
    distiller.optimizer.load_state_dict(train["optimizer"])
    with torch.no_grad():
        distiller.log_scale.fill_(train["log_scale"])
    distiller.step, distiller.chips_seen = int(train["step"]), int(train["chips_seen"])
    distiller.history = list(manifest["losses"])
    _warn_changed_settings(manifest["settings"], asdict(distiller.settings))
    logger.info("resumed distillation from %s at step %d", model_path, distiller.step)
    return distiller.step


def check_architecture(
    state: dict[str, Tensor], expected: dict[str, Tensor], path: str | Path
) -> None:
    """Raise a ValueError naming the differences when ``state`` does not fit ``expected``."""
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        shown = "; ".join(problems[:4]) + (
            f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        )
        raise StoreMismatchError(
            f"student checkpoint {str(path)!r} does not have the teacher's image-tower "
            f"architecture ({shown}); resume with the teacher it was distilled from, or start "
            f"in a new directory"
        )


def state_sha256(state: dict[str, Tensor]) -> str:
    """SHA-256 over names, shapes and float32 bytes of a state dict (format independent)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().float().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _warn_changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> None:
    changed = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if changed:
        logger.warning("resuming with changed settings (saved, now): %s", changed)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def _atomic_write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
