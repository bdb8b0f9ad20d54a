"""Reference water products read through the run's STAC catalog, OR-ed into ``reference_water``.

The SAR reference stack sees the water of the last ``--reference-days``; a multi-year product
adds the normal water a short window misses (a seasonal lake that happened to be dry, a river
that was narrow). Each product of :data:`PRODUCTS` that the catalog holds over the AOI is read
on the flood grid (nearest: class codes and percentages stay as they are) and its water pixels
become reference water, so water there after the event is not called flooded:

- JRC Global Surface Water (Pekel et al. 2016, Nature 540), collection ``jrc-gsw``, asset
  ``occurrence``: percent of the 1984-2021 Landsat observations that saw water; water where
  at least :data:`GSW_OCCURRENCE_MIN` percent, water in most observations (the rule the
  Copernicus GFM reference mask and UNOSAT's permanent water follow in spirit);
- ESA WorldCover (Zanaga et al. 2021/2022), collection ``esa-worldcover``, asset ``map``: class
  :data:`WORLDCOVER_WATER` (permanent water bodies).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from terrawatch.errors import InputError, NoScenesError
from terrawatch.tasks.core.catalog import search_items
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.flood.raster_read import first_valid_on_grid

logger = logging.getLogger(__name__)

GSW_OCCURRENCE_MIN = 50.0
"""JRC GSW occurrence (percent) from which a pixel is normal water: water in most observations."""
WORLDCOVER_WATER = 80
"""ESA WorldCover class 80: permanent water bodies."""
PRODUCT_WINDOW = ("1900-01-01", "2100-12-31")
"""Reference products are multi-year: any date matches."""


@dataclass(frozen=True)
class Product:
    """How one reference product marks water."""

    collection: str
    """STAC collection id (Planetary Computer's)."""
    asset: str
    """Asset key of the raster."""
    rule: str
    """``"min"``: water where value >= ``value``; ``"equals"``: where value == ``value``."""
    value: float
    """The threshold or class."""
    valid_max: float | None = None
    """Largest valid value (GSW: 100 percent; its 255 marks no data)."""

    def water(self, values: np.ndarray) -> np.ndarray:
        """Where the product says water (False where it has no data)."""
        with np.errstate(invalid="ignore"):
            if self.valid_max is not None:
                values = np.where(values <= self.valid_max, values, np.nan)
            if self.rule == "min":
                return np.isfinite(values) & (values >= self.value)
            return values == self.value

    def describe(self) -> str:
        """The rule in words, for the provenance and the report."""
        op = ">=" if self.rule == "min" else "=="
        return f"{self.collection} {self.asset} {op} {self.value:g}"


PRODUCTS: tuple[Product, ...] = (
    Product("jrc-gsw", "occurrence", "min", GSW_OCCURRENCE_MIN, valid_max=100.0),
    Product("esa-worldcover", "map", "equals", WORLDCOVER_WATER),
)
"""Reference water products looked for in the run's catalog."""


@dataclass(frozen=True)
class ReferenceLayer:
    """One product found over the AOI: references only."""

    product: Product
    """The product and its water rule."""
    items: tuple[str, ...]
    """Ids of its items over the AOI."""
    hrefs: tuple[str, ...]
    """Hrefs of their rasters, mosaicked in this order."""

    def to_attrs(self) -> dict[str, Any]:
        """JSON form for the cube's provenance."""
        return {"product": self.product.collection, "rule": self.product.describe(),
                "items": list(self.items)}  # fmt: skip


def search_reference_products(catalog: str, aoi: Any) -> tuple[ReferenceLayer, ...]:
    """Every product of :data:`PRODUCTS` the catalog holds over the AOI (none: empty, logged)."""
    found = []
    for product in PRODUCTS:
        try:
            result = search_items(catalog, aoi, *PRODUCT_WINDOW, [product.collection], None, None)
        except (NoScenesError, InputError) as err:  # no such collection, or none over the AOI
            logger.debug("no %s reference water: %s", product.collection, err)
            continue
        except Exception as err:  # an optional layer: the flood map goes on without it
            logger.warning("search for %s failed, run goes on without it: %s",
                           product.collection, err)  # fmt: skip
            continue
        items = [i for i in result.items if product.asset in i.get("assets", {})]
        if items:
            hrefs = tuple(str(i["assets"][product.asset]["href"]) for i in items)
            found.append(ReferenceLayer(product, tuple(str(i["id"]) for i in items), hrefs))
    if not found:
        logger.info(
            "no reference water product in the catalog (%s): reference_water comes from the "
            "SAR reference scenes alone",
            ", ".join(p.collection for p in PRODUCTS),
        )
    return tuple(found)


def product_water(
    layers: tuple[ReferenceLayer, ...], grid: GridSpec, window: tuple[slice, slice] | None
) -> np.ndarray:
    """Where any product says water over a window of the flood grid."""
    shape = grid.geobox[window].shape.yx if window is not None else grid.shape
    water = np.zeros(shape, bool)
    for layer in layers:
        values = first_valid_on_grid(layer.hrefs, grid, window, Resampling.nearest)
        water |= layer.product.water(values)
    return water
