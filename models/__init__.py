"""PyTorch models of terrawatch: tensors in, tensors out; no Prefect, Dask, STAC or Zarr here.

The package itself imports nothing heavy (its names load on first use), so the light modules
(:mod:`terrawatch.models.classes`) serve the command line without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = ["SegEarthOV", "SegEarthSettings"]

if TYPE_CHECKING:
    from terrawatch.models.segearth import SegEarthOV
    from terrawatch.models.settings import SegEarthSettings


_HOMES = {
    "SegEarthOV": "terrawatch.models.segearth",
    "SegEarthSettings": "terrawatch.models.settings",
}


def __getattr__(name: str) -> Any:
    """Import a name's module when the name is first used (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'terrawatch.models' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
