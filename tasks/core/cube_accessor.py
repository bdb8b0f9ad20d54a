"""The analyst's accessor: ``cube.tw`` on any terrawatch cube opened with xarray.

Registered on ``xarray.Dataset`` as ``tw`` when xarray is imported after (or before)
``import terrawatch``; it also makes ``.rio`` work (rioxarray is imported on first use of
``.rio``, as it costs seconds). Everything works on the cube as opened, CF-decoded or not, and
reads one chunk at a time::

    import terrawatch, xarray as xr
    cube = xr.open_zarr("cologne.zarr", decode_coords="all")
    cube.tw.classes                     # value, name, synonyms, colour
    cube.tw.mask("river")               # boolean (time, y, x); synonyms resolve
    cube.tw.probability("water")        # percent (time, y, x), from landcover --probabilities
    cube.tw.areas()                     # tidy: time, class, value, pixels, area_km2
    cube.tw.transitions("2024-06-01", "2024-07-01")   # from x to km² matrix
    cube.tw.plot()                      # the cube's palette and a legend
    cube.tw.to_cog("lc.tif"); cube.tw.to_polygons("lc.gpkg", simplify=10)

Areas are pixel counts times the pixel area of the cube's projected CRS (metres, or the CRS's
unit converted to metres), so they are exact for the grid.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from terrawatch.errors import InputError

if TYPE_CHECKING:
    import geopandas as gpd
    from matplotlib.axes import Axes

    from terrawatch.tasks.core.export_source import ExportLayer

ACCESSOR = "tw"
"""The accessor's name: ``cube.tw``."""


@xr.register_dataset_accessor(ACCESSOR)
class CubeAccessor:
    """Class table, masks, areas, transitions, plots and exports of a terrawatch cube."""

    def __init__(self, cube: xr.Dataset) -> None:
        self._cube = cube

    # --- the class table ---------------------------------------------------------------------

    @property
    def classes(self) -> pd.DataFrame:
        """The class table of the cube's class variable: value, name, synonyms, colour."""
        layer = self.layer()
        return pd.DataFrame(
            {
                "value": list(layer.values),
                "name": list(layer.names),
                "synonyms": [sorted(s) for s in layer.synonyms],
                "color": list(layer.colors),
            }
        )

    def layer(self, var: str | None = None, time: str = "latest") -> ExportLayer:
        """The export layer (one variable at one step) the other methods read."""
        from terrawatch.tasks.core.export_source import layer_of

        return layer_of(self._cube, self._name(), var, time)

    # --- masks, areas, transitions ---------------------------------------------------------

    def mask(self, name: str, var: str | None = None) -> xr.DataArray:
        """True where the class ``name`` (or one of its synonyms) is, on every time step."""
        layer = self.layer(var)
        value = layer.value_of(name, "mask()")
        return (self._cube[layer.var] == value).rename(f"{layer.var}_{layer.name_of(value)}")

    def areas(self, var: str | None = None) -> pd.DataFrame:
        """Area per class and time step in km², as a tidy table (one row per class and step)."""
        rows = []
        for time in self._times():
            layer = self.layer(var, time)
            counts = np.zeros(65536, np.int64)
            for window in layer.windows():
                counts += np.bincount(layer.read(window).ravel(), minlength=65536)[:65536]
            km2 = self._pixel_area_m2(layer) / 1e6
            for value, name in zip(layer.values, layer.names, strict=True):
                rows.append(
                    (pd.Timestamp(time), name, value, int(counts[value]), counts[value] * km2)
                )
        return pd.DataFrame(rows, columns=["time", "class", "value", "pixels", "area_km2"])

    def transitions(self, t0: str, t1: str, var: str | None = None) -> pd.DataFrame:
        """Area in km² that went from each class (rows, at ``t0``) to each class (columns, at
        ``t1``); pixels without data at either step are left out."""
        first, second = self.layer(var, t0), self.layer(var, t1)
        n = len(first.values)
        index = {v: i for i, v in enumerate(first.values)}
        lookup = np.full(256, n, np.int64)
        lookup[list(index)] = list(index.values())
        counts = np.zeros((n + 1) * (n + 1), np.int64)
        for window in first.windows():
            a = lookup[first.read(window).ravel()]
            b = lookup[second.read(window).ravel()]
            counts += np.bincount(a * (n + 1) + b, minlength=counts.size)
        matrix = counts.reshape(n + 1, n + 1)[:n, :n] * self._pixel_area_m2(first) / 1e6
        frame = pd.DataFrame(matrix, index=list(first.names), columns=list(first.names))
        frame.index.name, frame.columns.name = f"from {first.time}", f"to {second.time}"
        return frame

    def probability(self, name: str, var: str = "probability") -> xr.DataArray:
        """The per-class layer of class ``name`` (synonyms resolve), ``(time, y, x)``: with
        ``landcover --probabilities``, the class's probability in percent on every step."""
        from terrawatch.tasks.core.cube_types import CLASS_DIM
        from terrawatch.tasks.core.export_class_layers import per_class_vars

        if var not in per_class_vars(self._cube):
            raise InputError(
                f"{self._name()} has no per-class variable {var!r}; land-cover cubes have "
                "'probability' when made with landcover --probabilities"
            )
        value = self.layer().value_of(name, f"probability({name!r})")
        layer = self._cube[var].isel({CLASS_DIM: value})
        return layer.rename(f"{var}_{self.layer().name_of(value)}")

    # --- pictures and files -----------------------------------------------------------------

    def plot(self, time: str = "latest", var: str | None = None, ax: Axes | None = None) -> Axes:
        """The class map of one step in the cube's palette, with a legend (a strided read)."""
        import matplotlib.pyplot as plt
        from matplotlib.colors import BoundaryNorm, ListedColormap
        from matplotlib.patches import Patch

        from terrawatch.tasks.core.publish import quicklook_step

        layer = self.layer(var, time)
        step = quicklook_step(layer.shape)
        values = np.asarray(layer.data[::step, ::step].values)
        shown = np.ma.masked_equal(values, layer.nodata)
        bounds = [*(v - 0.5 for v in layer.values), layer.values[-1] + 0.5]
        cmap = ListedColormap(list(layer.colors))
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 6))
        t = layer.transform
        height, width = layer.shape
        extent = (t.c, t.c + t.a * width, t.f + t.e * height, t.f)
        ax.imshow(
            shown,
            cmap=cmap,
            norm=BoundaryNorm(bounds, cmap.N),
            extent=extent,
            interpolation="nearest",
        )
        handles = [Patch(color=c, label=n) for n, c in zip(layer.names, layer.colors, strict=True)]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        ax.set_title(f"{layer.var} {layer.time}")
        ax.set_xlabel(f"x ({layer.crs.to_string()})")
        return ax

    def to_cog(
        self,
        path: str | Path,
        var: str | None = None,
        time: str = "latest",
        overwrite: bool = False,
        classes: list[str] | None = None,
    ) -> Path:
        """Write one step as a styled Cloud-Optimized GeoTIFF (``terrawatch export --to X.tif``).

        A per-class ``var`` (``"probability"``) gives one band per class, or per name in
        ``classes``, as ``terrawatch export --var probability [--class NAME]`` does.
        """
        from terrawatch.tasks.core.export import export_layer
        from terrawatch.tasks.core.export_class_layers import (
            class_layers_of,
            export_class_layers_cog,
            per_class_vars,
        )
        from terrawatch.tasks.core.export_files import output_format

        if var in per_class_vars(self._cube):
            output_format(path, overwrite)
            layers = class_layers_of(self._cube, self._name(), var, time, classes)
            return export_class_layers_cog(layers, path)
        return export_layer(self.layer(var, time), path, overwrite=overwrite)[0]

    def to_polygons(
        self,
        path: str | Path | None = None,
        var: str | None = None,
        time: str = "latest",
        *,
        objects: str | None = None,
        simplify: float = 0.0,
        min_area: float = 0.0,
        min_spur: float | None = None,
        overwrite: bool = False,
    ) -> gpd.GeoDataFrame:
        """Polygons per class (or ``objects="buildings"``/``"roads"``) of one step; also written
        to ``path`` (.parquet, .gpkg, .geojson) when given, as ``terrawatch export`` does."""
        from terrawatch.tasks.core.export import VectorOptions, vectors
        from terrawatch.tasks.core.export_files import output_format, write_vectors

        layer = self.layer(var, time)
        options = VectorOptions(simplify=simplify, min_area=min_area, min_spur=min_spur)
        if path is not None and output_format(path, overwrite) != "vector":
            raise InputError(
                f"to_polygons writes vectors: give a .parquet, .gpkg or .geojson path, not {path!s}"
            )
        frame = vectors(layer, objects, options)  # type: ignore[arg-type]
        if path is not None:
            write_vectors(frame, path, objects or layer.var)
        return frame

    # --- helpers ---------------------------------------------------------------------------------

    def _name(self) -> str:
        return str(self._cube.encoding.get("source") or "the cube")

    def _times(self) -> list[str]:
        return [str(t) for t in np.datetime_as_string(self._cube["time"].values, unit="D")]

    @staticmethod
    def _pixel_area_m2(layer: ExportLayer) -> float:
        from terrawatch.tasks.core.export_source import metres_per_unit

        t = layer.transform
        return abs(t.a * t.e - t.b * t.d) * metres_per_unit(layer.crs) ** 2


class _LazyRio:
    """``.rio`` before rioxarray is imported: imports it (which registers the real accessor
    in place of this one) and hands over."""

    def __get__(self, obj: Any, owner: type) -> Any:
        for cls in (xr.Dataset, xr.DataArray):
            if isinstance(cls.__dict__.get("rio"), _LazyRio):
                delattr(cls, "rio")
        import rioxarray  # noqa: F401

        return owner.rio if obj is None else obj.rio


def _install_lazy_rio() -> None:
    if "rioxarray" in sys.modules:
        return
    for cls in (xr.Dataset, xr.DataArray):
        if "rio" not in cls.__dict__:
            cls.rio = _LazyRio()  # type: ignore[attr-defined]


_install_lazy_rio()
