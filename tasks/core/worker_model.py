"""The segmenter a worker process loads once and keeps: its spec, cache and inference."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from terrawatch.errors import InputError
from terrawatch.models.classes import ClassNames, parse_class_names
from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.settings import DEFAULT_BACKBONE
from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.worker_process import (
    dask_worker,
    freeze_loaded_objects,
    tune_worker_process,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """Which segmenter a worker loads; small and hashable, so it keys the per-process cache."""

    classes: ClassNames
    """The class list (entries such as ``("water", "tree,forest")`` are parsed into one)."""
    backbone: str = DEFAULT_BACKBONE
    """CLIP backbone name."""
    weights: str | None = None
    """Explicit CLIP checkpoint path (else weights dir / download)."""
    upsampler: str = "simfeatup"
    """``simfeatup`` or ``bilinear``."""
    upsampler_weights: str | None = None
    """Explicit SimFeatUp checkpoint path."""
    settings: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    """Extra :class:`~models.segearth.SegEarthSettings` as (name, value) pairs."""
    sensor: str = "optical"
    """``optical`` (OpenAI CLIP) or ``sar`` (AlignEarth SAR encoder); see ``from_pretrained``."""
    factory: str | None = None
    """Plug-in segmenter as ``"package.module:callable"``; None builds SegEarth-OV.

    ``callable(spec, device)`` returns an object with SegEarth-OV's inference API
    (``set_classes``, ``classes``, ``predict``, ``predict_logits``, ``provenance``); the tile
    tasks then use it unchanged. For users' own segmenters, and for test doubles of the model.
    Worker processes must be able to import the module.
    """
    device: str | None = None
    """Torch device; None: CUDA where the worker has a GPU (or the process one), else CPU."""
    trust_checkpoint: bool = False
    """Load checkpoints that pickle Python objects (can run their code); see ``from_pretrained``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", parse_class_names(self.classes))

    def load(self, device: str | None = None) -> SegEarthOV:
        """Build the model (native resolution: no long-side resize) and set its classes."""
        if self.factory is not None:
            model = self._factory_callable()(self, device)
        else:
            model = SegEarthOV.from_pretrained(
                self.backbone,
                weights=self.weights,
                upsampler=self.upsampler,
                device=device,
                upsampler_weights=self.upsampler_weights,
                sensor=self.sensor,
                trust_checkpoint=self.trust_checkpoint,
                **dict(self.settings),
            )
            model.with_settings(resize_long_side=None)
        model.set_classes(self.classes)
        return model

    def _factory_callable(self) -> Any:
        """The callable named by :attr:`factory`."""
        import importlib

        module, _, name = str(self.factory).partition(":")
        if not module or not name:
            raise InputError(
                f"factory must be 'package.module:callable', got {self.factory!r}; e.g. "
                "'my_models.water:build'"
            )
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise InputError(
                f"factory {self.factory!r} cannot be imported ({err}); put its module on the "
                "PYTHONPATH of the flow and of every Dask worker"
            ) from err


_MODELS: dict[ModelSpec, SegEarthOV] = {}


_MODELS_LOCK = threading.Lock()


def worker_model(spec: ModelSpec) -> SegEarthOV:
    """The model of ``spec`` for this process, loaded on first use and then reused."""
    with _MODELS_LOCK:
        if spec not in _MODELS:
            tune_worker_process()
            started = time.perf_counter()
            _MODELS[spec] = spec.load(spec.device or _worker_device())
            logger.info("loaded %s in %.1f s", spec.backbone, time.perf_counter() - started)
            freeze_loaded_objects()
        return _MODELS[spec]


def _worker_device() -> str | None:
    """CUDA when this worker advertises a GPU resource (or has one), else CPU."""
    worker = dask_worker()
    if worker is not None and worker.state.total_resources.get("GPU", 0) < 1:
        return "cpu"
    return None


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``[1, 3, h, w]`` in 0..1 of an RGB ``[3, h, w]`` (no data read as 0) for ``predict``."""
    return torch.from_numpy(np.nan_to_num(rgb, nan=0.0)).clamp_(0, 1)[None]


def segment_array(
    model: SegEarthOV, rgb: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (uint8, 255 outside ``valid``) and confidence (NaN outside) of one image."""
    labels, confidence = model.predict(image_tensor(rgb))
    labels = labels[0].cpu().numpy()
    confidence = confidence[0].float().cpu().numpy()
    labels[~valid] = NODATA
    confidence[~valid] = np.nan
    return labels, confidence
