"""The output grid: one JSON-friendly value that every pixel-producing step shares."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from odc.geo import CRS
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.geom import BoundingBox

from terrawatch.errors import InputError


@dataclass(frozen=True)
class GridSpec:
    """A north-up pixel grid in a projected CRS.

    Only this value (never an array) crosses task boundaries; each worker rebuilds its own
    lazy view from it.
    """

    crs: str
    """CRS as an authority string, e.g. ``"EPSG:32629"``."""
    resolution: float
    """Pixel size in CRS units (metres for UTM); square pixels."""
    left: float
    """Western edge in CRS units."""
    bottom: float
    """Southern edge in CRS units."""
    right: float
    """Eastern edge in CRS units."""
    top: float
    """Northern edge in CRS units."""

    def __post_init__(self) -> None:
        if not self.resolution > 0:
            raise InputError(
                f"resolution must be > 0 (CRS units per pixel), got {self.resolution!r}"
            )
        if not (self.right > self.left and self.top > self.bottom):
            raise InputError(
                f"grid bounds must have left < right and bottom < top, got "
                f"({self.left}, {self.bottom}, {self.right}, {self.top})"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.geobox.shape.yx

    @property
    def geobox(self) -> GeoBox:
        """The odc-geo GeoBox of this grid (pixel edges snapped to the resolution)."""
        bbox = BoundingBox(self.left, self.bottom, self.right, self.top, crs=CRS(self.crs))
        return GeoBox.from_bbox(bbox, resolution=self.resolution, tight=True)

    def tiles(self, chunk: int) -> GeoboxTiles:
        """The grid cut into ``chunk`` x ``chunk`` pixel tiles (the Zarr chunking)."""
        return GeoboxTiles(self.geobox, (chunk, chunk))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (round-trips through :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    @classmethod
    def from_geobox(cls, geobox: GeoBox) -> GridSpec:
        """Describe an existing north-up GeoBox."""
        res = geobox.resolution
        if not math.isclose(abs(res.x), abs(res.y)):
            raise InputError(f"only square pixels are supported, got resolution {res}")
        left, bottom, right, top = geobox.extent.boundingbox
        return cls(str(geobox.crs), abs(res.x), left, bottom, right, top)
