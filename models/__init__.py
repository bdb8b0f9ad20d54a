"""PyTorch models of terrawatch: tensors in, tensors out; no Prefect, Dask, STAC or Zarr here.

The package itself imports nothing heavy (its names load on first use), so the light modules
(:mod:`terrawatch.models.classes`) serve the command line without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = ["SegEarthOV", "SegEarthSettings"]

if TYPE_CHECKING:
    from terrawatch.models.segearth import SegEarthOV, SegEarthSettings


def __getattr__(name: str) -> Any:
    """Import :mod:`terrawatch.models.segearth` when one of its names is first used."""
    if name not in __all__:
        raise AttributeError(f"module 'terrawatch.models' has no attribute {name!r}")
    value = getattr(import_module("terrawatch.models.segearth"), name)
    globals()[name] = value
    return value
