"""Single-image raster I/O: read an RGB image in 0..1, write label GeoTIFFs and preview PNGs."""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from terrawatch.errors import InputError, InputNotFoundError
from terrawatch.tasks.core.map_frame import MapFrame
from terrawatch.tasks.core.render import (
    as_label_array,
    class_colors,
    color_rgb255,
    label_histogram,
    quicklook_png,
)

Stretch = Literal["auto", "dtype", "percentile", "reflectance"]
"""How raw pixel values become 0..1 (see :func:`read_rgb_image`)."""

STRETCHES: tuple[str, ...] = ("auto", "dtype", "percentile", "reflectance")

PERCENTILES = (2.0, 98.0)
"""Per-band low/high percentiles of the ``"percentile"`` stretch, over valid pixels."""

REFLECTANCE_SCALE = 10000.0
"""Sentinel-2 L2A digital numbers per unit reflectance (``"reflectance"`` stretch)."""

REFLECTANCE_WHITE = 0.3
"""Reflectance shown as full brightness by the ``"reflectance"`` stretch."""

BAND_ALIASES: dict[str, tuple[str, ...]] = {
    "red": ("red", "b04", "b4"),
    "green": ("green", "b03", "b3"),
    "blue": ("blue", "b02", "b2"),
}
"""Band descriptions (lower case) read as red, green and blue (plain and Sentinel-2 names)."""

PILLOW_DRIVERS = frozenset({"PNG", "JPEG"})
"""Drivers whose pixels Pillow decodes, as it rejects truncated files (GDAL's PNG driver does
not); images above Pillow's decompression-bomb limit, or that Pillow decodes to another band
layout or dtype, are read with GDAL."""

_PERCENTILE_SAMPLES = 1_000_000  # pixels per band used to estimate the percentiles
_TILE = 256


@dataclass(frozen=True, eq=False)
class RasterImage:
    """An RGB image ready for a segmentation model, with the georeference of its source."""

    rgb: np.ndarray
    """``float32 [3, H, W]`` in 0..1 (0 where not valid)."""
    valid: np.ndarray
    """``bool [H, W]``: False where any chosen band is nodata/NaN or the alpha/mask is 0."""
    profile: dict
    """rasterio profile of the source; ``crs``/``transform`` are None without a georeference;
    a ``gcps`` entry ``(gcps, crs)`` is added for GCP-referenced rasters (e.g. Sentinel-1 GRD)."""
    bands: tuple[int, int, int]
    """1-based source band indexes used as R, G, B."""


def read_rgb_image(
    path: str | Path, bands: Sequence[int] | None = None, stretch: Stretch = "auto"
) -> RasterImage:
    """Read any rasterio-readable raster (GeoTIFF, PNG, JPEG, ...) as an RGB image in 0..1.

    Band choice, first rule that applies: explicit ``bands`` (1-based; one index is replicated
    to grey) > colour interpretation red/green/blue > band descriptions in
    :data:`BAND_ALIASES` ("red", "B04", ...) > a single non-alpha band, replicated > bands
    1, 2, 3 of a 3- or 4-band raster. Anything else needs ``bands``.

    Stretch to 0..1: ``"dtype"`` divides integers by their type's maximum (uint8 /255) and
    clips floats; ``"percentile"`` maps the per-band 2nd..98th percentile of valid pixels
    (estimated on at most 1 Mpixel) to 0..1, a constant band to 0; ``"reflectance"`` is for
    Sentinel-2 L2A DN: ``DN / 10000 / 0.3`` clipped (apply any BOA offset beforehand);
    ``"auto"`` uses ``"dtype"`` for uint8 and for floats already within 0..1, else
    ``"percentile"``.

    Args:
        path: Local raster file.
        bands: 1-based band indexes for R, G, B (or one index for grey).
        stretch: One of :data:`STRETCHES`.

    Returns:
        The image, its valid-pixel mask, the source profile and the bands used.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not a readable raster, ``bands`` is out of range, the RGB
            bands cannot be told apart, or ``stretch`` is unknown.

    Example:
        >>> image = read_rgb_image("scene.tif", bands=(4, 3, 2), stretch="reflectance")
    """
    if stretch not in STRETCHES:
        raise ValueError(f"stretch must be one of {STRETCHES!r}, got {stretch!r}")
    name = os.fspath(path)
    if not Path(name).exists():
        raise InputNotFoundError(f"image file {name!r} does not exist; check the path")
    try:
        with _open_quietly(name) as src:
            chosen = _choose_bands(src, bands, name)
            pixels = _read_pixels(src, name, chosen)
            bands_rgb, valid = _rgb_bands(src, pixels, chosen)
            rgb = _to_unit_rgb(bands_rgb, valid, stretch)
            profile = _source_profile(src)
    except (RasterioError, OSError) as err:
        raise InputError(
            f"{name!r} is not a readable raster ({err}); check that the file is complete and "
            "in a format GDAL reads (GeoTIFF, PNG, JPEG, ...)"
        ) from err
    return RasterImage(rgb=rgb, valid=valid, profile=profile, bands=chosen)


def write_label_geotiff(
    path: str | Path,
    labels: np.ndarray,
    class_names: Sequence[str],
    source_profile: dict,
    colors: Sequence[str] | None = None,
    nodata: int = 255,
) -> None:
    """Write a class-id map as a tiled, deflate-compressed uint8 GeoTIFF with a colour table.

    The file carries the source CRS and transform (or its GCPs); a source without a
    georeference gives a file without one (pixel coordinates). Class names go into GDAL
    metadata as ``class_names`` (JSON list) and ``CLASS_<i>=name``, colours as
    ``class_colors``; band 1 is described as "landcover". The file is written beside
    ``path`` and renamed into place, so a failure leaves an existing ``path`` untouched.

    Args:
        path: Output ``.tif`` path; its directory must exist.
        labels: Class ids ``[H, W]``, same shape as the source; ``nodata`` where unknown.
        class_names: Class names in label order (ids ``0..len-1``).
        source_profile: ``RasterImage.profile`` of the segmented image.
        colors: One colour per class; default :func:`tasks.core.render.class_colors`.
        nodata: Label value of no-data pixels (transparent in the colour table).

    Raises:
        ValueError: ``labels`` has the wrong shape or dtype, or ids without a class name;
            ``colors`` or ``nodata`` does not fit ``class_names``.
        FileNotFoundError: The output directory does not exist.
    """
    labels, colors = _check_label_inputs(labels, class_names, source_profile, colors, nodata)
    profile = _label_profile(labels.shape, source_profile, nodata)
    with _replace_on_success(Path(path)) as tmp, _open_quietly(tmp, "w", **profile) as dst:
        dst.write(labels, 1)
        _write_band_metadata(dst, class_names, colors, nodata)


def write_preview_png(
    path: str | Path,
    labels: np.ndarray,
    class_names: Sequence[str],
    colors: Sequence[str] | None = None,
    rgb: np.ndarray | None = None,
    title: str | None = None,
    max_size: int = 1024,
    profile: dict | None = None,
) -> None:
    """Write :func:`tasks.core.render.quicklook_png` of ``labels`` to ``path`` (atomically).

    Args:
        path: Output ``.png`` path; its directory must exist.
        labels: Class ids ``[H, W]``; 255 for no data.
        class_names: Class names in label order (legend text).
        colors: One colour per class; default :func:`tasks.core.render.class_colors`.
        rgb: Optional ``RasterImage.rgb`` shown beside the labels.
        title: Optional title.
        max_size: Longest side of each panel, in pixels.
        profile: ``RasterImage.profile`` of the source: a georeferenced north-up one gives
            the picture coordinates, a scale bar and its CRS under the title.
    """
    frame = map_frame_of(profile or {}, labels.shape)
    if frame is not None:
        title = f"{title}\n{frame.crs_text}" if title else frame.crs_text
    png = quicklook_png(
        labels, class_names, colors=colors, rgb=rgb, title=title, max_size=max_size, frame=frame
    )
    with _replace_on_success(Path(path)) as tmp:
        tmp.write_bytes(png)


@contextmanager
def _open_quietly(path: str | Path, mode: str = "r", **profile: Any) -> Iterator[Any]:
    """``rasterio.open`` without the warning that a PNG or JPEG has no georeference.

    Sidecar files (an ENVI ``.hdr``, a ``.pgw`` world file, ``.aux.xml``) are looked for even
    where odc-stac left its remote-read environment active in this process: its
    ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` hides them, and an ENVI file then fails to open.
    """
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="FALSE"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path, mode, **profile)
        with dataset:
            yield dataset


def _choose_bands(src: Any, bands: Sequence[int] | None, name: str) -> tuple[int, int, int]:
    """Pick the R, G, B band indexes by the documented order of rules."""
    if bands is not None:
        return _explicit_bands(bands, src.count, name)
    interp = list(src.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in wanted):
        return tuple(interp.index(c) + 1 for c in wanted)  # type: ignore[return-value]
    described = [(d or "").strip().lower() for d in src.descriptions]
    found = [
        next((i + 1 for i, d in enumerate(described) if d in BAND_ALIASES[c]), None)
        for c in BAND_ALIASES
    ]
    if None not in found:
        return tuple(found)  # type: ignore[return-value]
    data_bands = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha]
    if len(data_bands) == 1:
        return (data_bands[0],) * 3  # type: ignore[return-value]
    if src.count in (3, 4):
        return (1, 2, 3)
    raise InputError(
        f"cannot tell the red, green and blue bands of {name!r}: {src.count} bands, colour "
        f"interpretation {[c.name for c in interp]!r}, descriptions {list(src.descriptions)!r}; "
        "pass bands=(red, green, blue) as 1-based indexes"
    )


def _explicit_bands(bands: Sequence[int], count: int, name: str) -> tuple[int, int, int]:
    """Validate user-given 1-based band indexes (3, or 1 replicated to grey)."""
    chosen = tuple(int(b) for b in bands)
    if len(chosen) not in (1, 3):
        raise InputError(f"bands must hold 3 indexes (R, G, B) or 1 (grey), got {bands!r}")
    if any(not 1 <= b <= count for b in chosen):
        raise InputError(
            f"bands={chosen!r} is out of range: {name!r} has {count} band(s), valid indexes "
            f"are 1..{count} (1-based)"
        )
    return chosen * 3 if len(chosen) == 1 else chosen  # type: ignore[return-value]


def _alpha_band(src: Any) -> int | None:
    """1-based index of the alpha band, if the colour interpretation names one."""
    interp = list(src.colorinterp)
    return interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None


def _read_pixels(src: Any, name: str, chosen: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Read the chosen bands (and alpha) as ``{band index: [H, W] array}``."""
    alpha = _alpha_band(src)
    indexes = sorted(set(chosen) | ({alpha} if alpha else set()))
    limit = Image.MAX_IMAGE_PIXELS
    if src.driver in PILLOW_DRIVERS and (limit is None or src.width * src.height <= limit):
        with Image.open(name) as image:
            image.load()  # raises OSError on truncated files
            array = np.asarray(image)
        stack = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
        if stack.shape[0] == src.count and stack.dtype == np.dtype(src.dtypes[0]):
            return {i: stack[i - 1] for i in indexes}
    stack = src.read(indexes)
    return {i: stack[k] for k, i in enumerate(indexes)}


def _valid_mask(src: Any, pixels: dict[int, np.ndarray], chosen: tuple[int, ...]) -> np.ndarray:
    """False where a chosen band is nodata or not finite, or the alpha/internal mask is 0."""
    valid = np.ones(pixels[chosen[0]].shape, dtype=bool)
    for index in set(chosen):
        band, nodata = pixels[index], src.nodatavals[index - 1]
        if band.dtype.kind == "f":
            valid &= np.isfinite(band)
        if nodata is not None and not np.isnan(nodata):
            valid &= band != nodata
    alpha = _alpha_band(src)
    if alpha is not None:
        valid &= pixels[alpha] != 0
    elif MaskFlags.per_dataset in src.mask_flag_enums[chosen[0] - 1]:
        valid &= src.dataset_mask() != 0
    return valid


def _rgb_bands(
    src: Any, pixels: dict[int, np.ndarray], chosen: tuple[int, ...]
) -> tuple[list[np.ndarray], np.ndarray]:
    """The three colour bands and the valid mask; a palette band is expanded via its colours."""
    valid = _valid_mask(src, pixels, chosen)
    if len(set(chosen)) > 1 or src.colorinterp[chosen[0] - 1] != ColorInterp.palette:
        return [pixels[i] for i in chosen], valid
    table = np.zeros((256, 4), dtype=np.uint8)
    for value, rgba in src.colormap(chosen[0]).items():
        table[value] = rgba
    rgba = table[pixels[chosen[0]].astype(np.uint8)]
    return [rgba[..., k] for k in range(3)], valid & (rgba[..., 3] != 0)


def _to_unit_rgb(bands: list[np.ndarray], valid: np.ndarray, stretch: str) -> np.ndarray:
    """Stack the colour bands as float32 ``[3, H, W]`` in 0..1, 0 where not valid."""
    mode = stretch if stretch != "auto" else _auto_stretch(bands, valid)
    rgb = np.stack([_stretch_band(b, valid, mode) for b in bands])
    rgb[:, ~valid] = 0.0
    return rgb


def _auto_stretch(bands: list[np.ndarray], valid: np.ndarray) -> str:
    """``"dtype"`` for uint8 and for floats already within 0..1, else ``"percentile"``."""
    dtype = bands[0].dtype
    if dtype == np.uint8:
        return "dtype"
    if dtype.kind == "f" and valid.any():
        if all(0.0 <= b[valid].min() and b[valid].max() <= 1.0 for b in bands):
            return "dtype"
    return "percentile"


def _stretch_band(band: np.ndarray, valid: np.ndarray, mode: str) -> np.ndarray:
    """Scale one band to float32 0..1 by ``mode`` (see :func:`read_rgb_image`)."""
    values = band.astype(np.float32)
    if mode == "dtype" and band.dtype.kind in "ui":
        values /= np.float32(np.iinfo(band.dtype).max)
    elif mode == "reflectance":
        values /= np.float32(REFLECTANCE_SCALE * REFLECTANCE_WHITE)
    elif mode == "percentile":
        step = max(1, int(np.ceil(np.sqrt(band.size / _PERCENTILE_SAMPLES))))
        sample = values[::step, ::step][valid[::step, ::step]]
        low, high = np.percentile(sample, PERCENTILES) if sample.size else (0.0, 0.0)
        if high <= low:
            return np.zeros(band.shape, dtype=np.float32)
        values = (values - np.float32(low)) / np.float32(high - low)
    return np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0, out=values)


def map_frame_of(profile: dict, shape: tuple[int, ...]) -> MapFrame | None:
    """The frame of a raster of ``shape`` with ``profile``; None without a north-up georeference."""
    crs, transform = profile.get("crs"), profile.get("transform")
    if crs is None or transform is None or transform.b or transform.d or transform.e >= 0:
        return None
    left, top = transform.c, transform.f
    right, bottom = left + transform.a * shape[1], top + transform.e * shape[0]
    return MapFrame.from_bounds(crs.to_wkt(), left, bottom, right, top)


def _source_profile(src: Any) -> dict:
    """The source profile with ``crs``/``transform`` None when it has no georeference."""
    profile = dict(src.profile)
    if src.crs is None and src.transform == Affine.identity():
        profile["crs"], profile["transform"] = None, None
    gcps, gcp_crs = src.gcps
    if gcps:
        profile["gcps"] = (list(gcps), gcp_crs)
    return profile


def _check_label_inputs(
    labels: np.ndarray,
    class_names: Sequence[str],
    source_profile: dict,
    colors: Sequence[str] | None,
    nodata: int,
) -> tuple[np.ndarray, list[str]]:
    """Validate a label map against its class list and source grid before writing anything."""
    if not 0 <= nodata <= 255 or nodata < len(class_names):
        raise ValueError(
            f"nodata={nodata!r} must lie in {len(class_names)}..255 (above the class ids "
            f"0..{len(class_names) - 1}); keep the default 255 or pass fewer classes"
        )
    labels = as_label_array(labels)
    expected = (source_profile.get("height"), source_profile.get("width"))
    if None not in expected and labels.shape != expected:
        raise ValueError(
            f"labels shape {labels.shape!r} differs from the source image (height, width) "
            f"{expected!r}; write the labels of this image, uncropped"
        )
    unknown = np.flatnonzero(label_histogram(labels)[len(class_names) :])
    unknown = unknown[unknown + len(class_names) != nodata] + len(class_names)
    if unknown.size:
        raise ValueError(
            f"labels hold class id(s) {unknown.tolist()!r} but class_names has "
            f"{len(class_names)} entries; pass every class name the model was given"
        )
    colors = list(colors) if colors is not None else class_colors(class_names)
    if len(colors) != len(class_names):
        raise ValueError(
            f"colors has {len(colors)} entries but class_names has {len(class_names)}; "
            "pass one colour per class or colors=None"
        )
    return labels, colors


def _label_profile(shape: tuple[int, int], source_profile: dict, nodata: int) -> dict:
    """GTiff creation profile: uint8, 1 band, tiled + deflate, the source georeference."""
    profile: dict[str, Any] = {
        "driver": "GTiff", "dtype": "uint8", "count": 1, "height": shape[0],
        "width": shape[1], "nodata": nodata, "tiled": True, "blockxsize": _TILE,
        "blockysize": _TILE, "compress": "deflate",
    }  # fmt: skip
    crs, transform = source_profile.get("crs"), source_profile.get("transform")
    if transform is not None:
        profile.update(crs=crs, transform=transform)
    elif source_profile.get("gcps"):
        profile["gcps"], profile["crs"] = source_profile["gcps"]
    return profile


def _write_band_metadata(
    dst: Any, class_names: Sequence[str], colors: list[str], nodata: int
) -> None:
    """Colour table, class-name tags and band description of a label GeoTIFF."""
    table = {i: (*color_rgb255(c, f"colors[{i}]").tolist(), 255) for i, c in enumerate(colors)}
    table[nodata] = (0, 0, 0, 0)
    dst.write_colormap(1, table)
    names = [str(n) for n in class_names]
    dst.update_tags(
        class_names=json.dumps(names, ensure_ascii=False),  # exact names, readable in gdalinfo
        class_colors=json.dumps(colors),
        **{f"CLASS_{i}": n for i, n in enumerate(names)},
    )
    dst.set_band_description(1, "landcover")


@contextmanager
def _replace_on_success(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if no error occurs."""
    if not path.parent.is_dir():
        raise InputNotFoundError(
            f"output directory {str(path.parent)!r} of {str(path)!r} does not exist; "
            "create it first"
        )
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".aux.xml")):
            leftover.unlink(missing_ok=True)
