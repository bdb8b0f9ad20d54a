"""A georeferenced copy of an image that has none (a scan, a PNG export, a drone mosaic).

The pipeline reads pixels through rasterio/odc-stac, which place them by the file's own CRS and
transform; an item's metadata alone cannot give them one. So ``catalog add --crs --bounds``
writes a GeoTIFF copy with the given CRS and extent (as ``gdal_translate -a_srs -a_ullr``
does) and catalogs that copy.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from terrawatch.errors import InputError, OutputExistsError


def parse_bounds(text: str) -> tuple[float, float, float, float]:
    """``W,S,E,N`` of ``--bounds`` as four numbers, west < east and south < north.

    Raises:
        InputError: not four numbers, or an empty or inverted box.
    """
    try:
        west, south, east, north = (float(value) for value in text.split(","))
    except ValueError:
        raise InputError(
            f"--bounds {text!r} must be 4 numbers W,S,E,N in the units of --crs"
        ) from None
    if not (west < east and south < north):
        raise InputError(f"--bounds {text!r} is empty or inverted: need W < E and S < N")
    return west, south, east, north


def georeferenced_copy(
    image: str | Path, crs: str, bounds: str, folder: str | Path, overwrite: bool = False
) -> Path:
    """Write ``<folder>/<stem>.tif``: the image's pixels with ``crs`` and ``bounds``.

    Raises:
        InputError: a bad CRS or bounds, an image that has a georeference already, or an
            unreadable image; OutputExistsError: the copy exists (without ``overwrite``).
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError
    from rasterio.transform import from_bounds

    box = parse_bounds(bounds)
    try:
        target_crs = CRS.from_user_input(crs)
    except CRSError as err:
        raise InputError(f"--crs {crs!r} is not a CRS ({err}); give e.g. EPSG:25832") from err
    source = Path(image).expanduser()
    if not source.is_file():
        raise InputError(f"image {str(source)!r} does not exist; check the path")
    target = Path(folder).expanduser() / f"{source.stem}.tif"
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"{str(target)!r} exists; pass --overwrite to replace it and its item"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(source) as src:
                if src.crs is not None:
                    raise InputError(
                        f"image {str(source)!r} has a CRS already ({src.crs}); drop --crs and "
                        "--bounds"
                    )
                profile = {**src.profile, "driver": "GTiff", "crs": target_crs,
                           "transform": from_bounds(*box, src.width, src.height)}  # fmt: skip
                pixels = src.read()
    except RasterioError as err:
        raise InputError(f"image {str(source)!r} is not a readable raster ({err})") from err
    for key in ("photometric", "compress") if profile.get("count", 1) not in (3, 4) else ():
        profile.pop(key, None)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with rasterio.open(partial, "w", **profile) as dst:
        dst.write(pixels)
    partial.replace(target)
    return target
