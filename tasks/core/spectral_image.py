"""Read a multi- or hyperspectral raster with its band centre wavelengths, drop unusable bands.

Wavelengths, first source that has them: ``--wavelengths FILE`` (one centre per band, in nm or
µm) > GDAL band metadata ``wavelength``/``wavelength_units`` (what the ENVI driver exposes from
the header, and what a GeoTIFF may carry) > Sentinel-2 band names in the band descriptions
(``B02``, ...; :data:`S2_CENTRES_NM`). Bands dropped, each group with one log line: the ENVI
``bbl`` bad-band list, bands with no valid pixel, and bands inside the water-vapour absorption
windows (:data:`ABSORPTION_WINDOWS_NM`). SPECIAL needs at least :data:`MIN_BANDS` left.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from terrawatch.errors import InputError, InputNotFoundError
from terrawatch.tasks.core.image_io import _open_quietly, _source_profile

logger = logging.getLogger(__name__)

S2_CENTRES_NM = {
    "B01": 443.0,
    "B02": 490.0,
    "B03": 560.0,
    "B04": 665.0,
    "B05": 705.0,
    "B06": 740.0,
    "B07": 783.0,
    "B08": 842.0,
    "B8A": 865.0,
    "B09": 945.0,
    "B10": 1375.0,
    "B11": 1610.0,
    "B12": 2190.0,
}
"""Sentinel-2 MSI band centres (nm), as STAC ``eo:bands`` of the L2A collections give them."""
ABSORPTION_WINDOWS_NM = ((1340.0, 1460.0), (1790.0, 1960.0), (2450.0, 1e9))
"""Atmospheric water-vapour absorption (and the noisy end past 2450 nm): no surface signal."""
MIN_BANDS = 4


@dataclass(frozen=True, eq=False)
class SpectralImage:
    """The usable bands of a raster, sorted by wavelength, with its georeference."""

    spectra: np.ndarray
    """``float32 [bands, H, W]`` in the file's units; 0 where not valid."""
    wavelengths_nm: tuple[float, ...]
    valid: np.ndarray
    """``bool [H, W]``: every kept band finite and not nodata."""
    profile: dict
    band_indexes: tuple[int, ...]
    """1-based source bands kept, in the order of :attr:`spectra`."""


def read_wavelength_file(path: str | Path) -> list[float]:
    """Centre wavelengths, one per line (or comma-separated); µm when all are below 30."""
    name = os.fspath(path)
    if not Path(name).is_file():
        raise InputNotFoundError(
            f"--wavelengths file {name!r} does not exist; give a text file with one band "
            "centre wavelength (nm) per line"
        )
    tokens = [t for t in re.split(r"[\s,;]+", Path(name).read_text()) if t]
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise InputError(
            f"--wavelengths file {name!r} must hold numbers only (nm or µm), one per band"
        ) from None
    return _to_nm(values, "micrometers" if values and max(values) < 30 else "nanometers")


def read_spectral_image(
    path: str | Path, wavelengths_nm: Sequence[float] | None = None
) -> SpectralImage:
    """The usable bands of ``path`` with their centre wavelengths (module docstring)."""
    name = os.fspath(path)
    if not Path(name).exists():
        raise InputNotFoundError(f"image file {name!r} does not exist; check the path")
    try:
        with _open_quietly(name) as src:
            centres = _wavelengths(src, wavelengths_nm, name)
            keep = _usable_bands(src, centres)
            data = src.read([i + 1 for i in keep]).astype(np.float32)
            nodata = [src.nodatavals[i] for i in keep]
            profile = _source_profile(src)
    except RasterioError as err:
        raise InputError(f"{name!r} is not a readable raster ({err})") from err
    valid_bands = np.isfinite(data)
    for k, value in enumerate(nodata):
        if value is not None and not np.isnan(value):
            valid_bands[k] &= data[k] != value
    empty = [keep[k] + 1 for k in range(len(keep)) if not valid_bands[k].any()]
    if empty:
        logger.info("dropped bands with no valid pixel: %s", empty)
    filled = [k for k in range(len(keep)) if valid_bands[k].any()]
    data, valid_bands = data[filled], valid_bands[filled]
    keep = [keep[k] for k in filled]
    if len(keep) < MIN_BANDS:
        raise InputError(
            f"{name!r} has {len(keep)} usable bands after dropping bad, empty and "
            f"water-vapour bands; SPECIAL needs at least {MIN_BANDS}"
        )
    valid = valid_bands.all(axis=0)
    data[:, ~valid] = 0.0
    order = np.argsort([centres[i] for i in keep], kind="stable")
    return SpectralImage(
        spectra=data[order],
        wavelengths_nm=tuple(float(centres[keep[k]]) for k in order),
        valid=valid,
        profile=profile,
        band_indexes=tuple(keep[k] + 1 for k in order),
    )


def _wavelengths(src, given: Sequence[float] | None, name: str) -> list[float]:
    if given is not None:
        if len(given) != src.count:
            raise InputError(
                f"--wavelengths gives {len(given)} values but {name!r} has {src.count} bands; "
                "give one centre wavelength per band"
            )
        return [float(v) for v in given]
    from_tags = [src.tags(i + 1).get("wavelength") for i in range(src.count)]
    if all(v is not None for v in from_tags):
        units = src.tags(1).get("wavelength_units") or src.tags().get("wavelength_units", "")
        values = [float(v) for v in from_tags]
        if not units:
            units = "micrometers" if max(values) < 30 else "nanometers"
        return _to_nm(values, units)
    names = [(d or "").upper() for d in src.descriptions]
    s2 = [S2_CENTRES_NM.get(_s2_key(n)) for n in names]
    if all(v is not None for v in s2):
        return [float(v) for v in s2]
    raise InputError(
        f"{name!r} records no band centre wavelengths (no ENVI/GDAL 'wavelength' metadata, no "
        "Sentinel-2 band names); pass --wavelengths FILE with one centre (nm) per band"
    )


def band_wavelengths_nm(src: rasterio.io.DatasetReader) -> list[float | None]:
    """Per band: centre wavelength (nm) from GDAL ``wavelength`` metadata or an S2 band name."""
    units = src.tags(1).get("wavelength_units") or src.tags().get("wavelength_units", "")
    centres: list[float | None] = []
    for i in range(src.count):
        value = src.tags(i + 1).get("wavelength")
        name = _s2_key((src.descriptions[i] or "").upper())
        if value is not None:
            try:
                number = float(value)
            except ValueError:
                centres.append(None)
                continue
            unit = units or ("micrometers" if number < 30 else "nanometers")
            try:
                centres.append(_to_nm([number], unit)[0])
            except InputError:
                centres.append(None)
        else:
            centres.append(S2_CENTRES_NM.get(name))
    return centres


def _s2_key(name: str) -> str:
    match = re.fullmatch(r"B0?(\d{1,2}A?)", name.strip())
    if not match:
        return name
    digits = match.group(1)
    return "B8A" if digits == "8A" else f"B{int(digits):02d}"


def _to_nm(values: Sequence[float], units: str) -> list[float]:
    unit = units.strip().lower()
    if unit in {"micrometers", "micrometer", "microns", "micron", "um", "µm"}:
        return [v * 1000.0 for v in values]
    if unit in {"nanometers", "nanometer", "nm"}:
        return [float(v) for v in values]
    raise InputError(f"unknown wavelength units {units!r}; use nanometers or micrometers")


def _usable_bands(src: rasterio.io.DatasetReader, centres: list[float]) -> list[int]:
    """0-based bands not flagged bad (ENVI ``bbl``) and outside the absorption windows."""
    keep = list(range(src.count))
    bbl = src.tags(ns="ENVI").get("bbl")
    if bbl:
        flags = [float(v) for v in re.findall(r"[-+.\d]+", bbl)]
        bad = [i for i in keep if i < len(flags) and flags[i] == 0]
        if bad:
            logger.info("dropped bands flagged bad in the ENVI header: %s", [i + 1 for i in bad])
        keep = [i for i in keep if i not in bad]
    absorbed = [i for i in keep if any(lo <= centres[i] <= hi for lo, hi in ABSORPTION_WINDOWS_NM)]
    if absorbed:
        logger.info(
            "dropped bands in water-vapour absorption windows: %s",
            [f"{i + 1} ({centres[i]:.0f} nm)" for i in absorbed],
        )
    keep = [i for i in keep if i not in absorbed]
    duplicate = [i for k, i in enumerate(keep) if centres[i] in [centres[j] for j in keep[:k]]]
    if duplicate:
        raise InputError(
            f"bands {[i + 1 for i in duplicate]} repeat a centre wavelength; give distinct "
            "wavelengths with --wavelengths FILE"
        )
    return keep
