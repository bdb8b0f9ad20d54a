"""SAR backscatter in dB per acquisition day over a grid window: what the threshold member reads.

The model members read a best-pixel composite scaled for the encoder
(:func:`tasks.core.sar_composite.read_sar_composite`); the threshold member needs every scene on
its own, in dB, so that each scene gets its own threshold and the reference stack its per-pixel
statistics. The scenes are read with :func:`tasks.core.sar.load_sar` (same loader, speckle filter
and solar-day grouping as the composites) and their 0..1 display scaling undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.sar import CO_POL, CROSS_POL, DB_RANGES, SarSummary, load_sar
from terrawatch.tasks.core.sar_composite import SarOptions


@dataclass(frozen=True)
class DbStack:
    """dB per polarisation and acquisition day over one window."""

    db: dict[str, np.ndarray]
    """Polarisation -> float32 ``[time, h, w]`` dB, NaN where no data (clipped to DB_RANGES)."""
    keys: tuple[str, ...]
    """Per time step, the ids of the items fused into it, comma-joined (a scene's key)."""
    times: np.ndarray
    """``datetime64[ns]`` acquisition time per time step."""

    @property
    def co(self) -> np.ndarray:
        """The co-polarised stack (VV, else HH, else the first)."""
        return self.db[next((p for p in CO_POL if p in self.db), next(iter(self.db)))]


def threshold_polarizations(summary: SarSummary) -> tuple[str, ...]:
    """The co-pol and, when the scenes have one, the cross-pol: what the threshold member uses."""
    co = next((p for p in CO_POL if p in summary.polarizations), None)
    cross = next((p for p in CROSS_POL if p in summary.polarizations), None)
    return tuple(p for p in (co or summary.polarizations[0], cross) if p)


def read_db_stack(
    items: tuple[dict, ...],
    grid: GridSpec,
    window: tuple[slice, slice] | None,
    options: SarOptions,
    pols: tuple[str, ...],
    loader: str = "odc",
) -> DbStack:
    """The scenes of ``items`` over ``window`` of ``grid`` (None: all of it), eagerly, in dB."""
    subgrid = GridSpec.from_geobox(grid.geobox[window]) if window is not None else grid
    ds = load_sar(
        list(items),
        subgrid,
        pols,
        loader=loader,  # type: ignore[arg-type]
        speckle=options.speckle,  # type: ignore[arg-type]
        window=options.speckle_window,
        chunks=None,
    )
    db = {}
    for pol in pols:
        low, high = DB_RANGES[pol]
        db[pol] = (ds[pol].values * np.float32(high - low) + np.float32(low)).astype(np.float32)
    return DbStack(db, tuple(ds.attrs["stac_item_ids"]), ds.time.values.astype("datetime64[ns]"))
