"""Where a picture lies on Earth: extent, CRS, axis units and a scale bar of a quicklook.

A quicklook without coordinates cannot be compared with a map or shown to a colleague; this
value carries what :func:`tasks.core.render.render_panels` needs to draw a coordinate frame in
the cube's CRS units (or degrees), a scale bar in metres or kilometres and the CRS in the title.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyproj

from terrawatch.tasks.core.grid import GridSpec

_METRES_PER_DEGREE = 111_320.0
"""Length of one degree of longitude at the equator (and, roughly, of latitude)."""


@dataclass(frozen=True)
class MapFrame:
    """Extent and CRS of a picture of a grid."""

    left: float
    """Western edge, CRS units."""
    bottom: float
    """Southern edge, CRS units."""
    right: float
    """Eastern edge, CRS units."""
    top: float
    """Northern edge, CRS units."""
    crs: str
    """CRS as written in the cube, e.g. ``"EPSG:32632"``."""
    crs_name: str
    """Its name, e.g. ``"WGS 84 / UTM zone 32N"``."""
    geographic: bool
    """Degrees of longitude and latitude, else projected units."""
    metres_per_unit: float
    """Length of one CRS unit on the ground (at the centre for degrees)."""
    unit: str
    """The axis unit, e.g. ``"m"``, ``"US survey foot"``, ``"°"``."""

    @classmethod
    def from_grid(cls, grid: GridSpec) -> MapFrame:
        """The frame of ``grid`` (its bounds, CRS and units)."""
        return cls.from_bounds(grid.crs, grid.left, grid.bottom, grid.right, grid.top)

    @classmethod
    def from_bounds(
        cls, crs_text: str, left: float, bottom: float, right: float, top: float
    ) -> MapFrame:
        """The frame of a north-up extent in ``crs_text`` (any form pyproj reads)."""
        crs = pyproj.CRS.from_user_input(crs_text)
        if crs.is_geographic:
            lat = math.radians((bottom + top) / 2)
            per_unit, unit = _METRES_PER_DEGREE * max(math.cos(lat), 1e-6), "°"
        else:
            axis = crs.axis_info[0]
            per_unit = axis.unit_conversion_factor
            unit = "m" if axis.unit_name in ("metre", "meter") else axis.unit_name
        epsg = crs.to_epsg()
        code = f"EPSG:{epsg}" if epsg else crs.name
        return cls(
            left, bottom, right, top, code, crs.name, crs.is_geographic, per_unit, unit
        )  # fmt: skip

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)`` as ``imshow(extent=...)`` takes it."""
        return self.left, self.right, self.bottom, self.top

    @property
    def axis_labels(self) -> tuple[str, str]:
        """Labels of the x and y axes."""
        if self.geographic:
            return "longitude (°)", "latitude (°)"
        return f"easting ({self.unit})", f"northing ({self.unit})"

    def tick_label(self, value: float) -> str:
        """A coordinate as people read it: ``6.935°`` or ``351 000`` (thin grouping)."""
        if self.geographic:
            span = self.right - self.left
            decimals = max(0, min(6, 1 - math.floor(math.log10(span / 4)))) if span > 0 else 3
            return f"{value:.{decimals}f}°"
        return f"{value:,.0f}".replace(",", "\u2009")

    def scale_bar(self, fraction: float = 0.25) -> tuple[float, str]:
        """A round ground length near ``fraction`` of the width: (length in CRS units, label)."""
        width_m = (self.right - self.left) * self.metres_per_unit
        target = max(width_m * fraction, 1e-3)
        magnitude = 10 ** math.floor(math.log10(target))
        metres = max(m * magnitude for m in (1, 2, 5) if m * magnitude <= target)
        label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
        return metres / self.metres_per_unit, label

    @property
    def crs_text(self) -> str:
        """``EPSG:32632 (WGS 84 / UTM zone 32N)`` for titles."""
        return f"{self.crs} ({self.crs_name})" if self.crs_name != self.crs else self.crs
