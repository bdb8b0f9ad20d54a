"""PyTorch models of terrawatch: tensors in, tensors out; no Prefect, Dask, STAC or Zarr here."""

from __future__ import annotations

from terrawatch.models.segearth import SegEarthOV, SegEarthSettings

__all__ = ["SegEarthOV", "SegEarthSettings"]
