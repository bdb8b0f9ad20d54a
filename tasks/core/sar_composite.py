"""SAR composite of one grid window and the options that make it (polarisations, speckle)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from terrawatch.errors import InputError
from terrawatch.tasks.core.composite import best_pixel_composite
from terrawatch.tasks.core.defaults import SAR_COMPOSITE, SAR_SPECKLE, SAR_SPECKLE_WINDOW
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.sar import (
    CO_POL,
    CROSS_POL,
    POLARIZATIONS,
    SAR_COMPOSITES,
    SarSummary,
    load_sar,
    sar_composite,
)
from terrawatch.tasks.core.speckle import check_speckle


def read_sar_composite(
    items: tuple[dict, ...],
    grid: GridSpec,
    window: tuple[slice, slice],
    options: SarOptions,
    loader: str = "odc",
    latest_first: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """SAR composite ``[3, h, w]`` in 0..1 and validity ``[h, w]`` of a grid window.

    Per pixel the first valid acquisition day in time order wins, or in reverse time order with
    ``latest_first``: the pre-event side uses the latest image before the event, the post-event
    side the earliest after it, so both stay as close to the event as the data allow.
    """
    subgrid = GridSpec.from_geobox(grid.geobox[window])
    ds = load_sar(
        list(items),
        subgrid,
        options.polarizations or ("vv",),
        loader=loader,  # type: ignore[arg-type]
        speckle=options.speckle,  # type: ignore[arg-type]
        window=options.speckle_window,
        chunks=None,  # eager: no dask graph for one tile, no threads beside the worker's own
    )
    rgb = sar_composite(ds, options.composite)
    if latest_first:
        rgb = rgb.isel(time=slice(None, None, -1))
    composite = best_pixel_composite(rgb)
    return composite["rgb"].values.astype(np.float32), composite["valid"].values.astype(bool)


@dataclass(frozen=True)
class SarOptions:
    """How each side's SAR composite is made (see :func:`tasks.core.sar.load_sar`)."""

    polarizations: tuple[str, ...] | None = None
    """Loaded polarisations; None: what ``composite`` needs, from the scenes."""
    speckle: str | None = SAR_SPECKLE
    """``lee``, ``refined_lee`` or None."""
    speckle_window: int = SAR_SPECKLE_WINDOW
    """Speckle filter window in pixels."""
    composite: str = SAR_COMPOSITE
    """``grey`` (co-pol in 3 channels, what AlignEarth was shown on), ``dual`` or a pol name."""

    def __post_init__(self) -> None:
        if self.speckle is not None:
            check_speckle(self.speckle, self.speckle_window)
        if self.composite not in (*SAR_COMPOSITES, *POLARIZATIONS):
            raise InputError(
                f"composite must be one of {SAR_COMPOSITES} or a polarisation "
                f"{POLARIZATIONS}, got {self.composite!r}"
            )
        pols = self.polarizations
        if pols is not None:
            pols = tuple(str(p).lower() for p in pols) if not isinstance(pols, str) else ()
            if not pols or len(set(pols)) != len(pols) or not set(pols) <= set(POLARIZATIONS):
                raise InputError(
                    f"polarizations must be None or distinct names from {POLARIZATIONS}, got "
                    f"{self.polarizations!r}"
                )
            object.__setattr__(self, "polarizations", pols)

    def resolved(self, summary: SarSummary) -> SarOptions:
        """These options with the polarisations to load picked from the scenes' set."""
        if self.polarizations is not None:
            return self
        available = summary.polarizations
        co = next((p for p in CO_POL if p in available), None)
        cross = next((p for p in CROSS_POL if p in available), None)
        if self.composite in POLARIZATIONS:
            pols: tuple[str, ...] = (self.composite,)
        elif self.composite == "dual" and co and cross:
            pols = (co, cross)
        else:
            pols = (co or available[0],)
        return dataclasses.replace(self, polarizations=pols)
