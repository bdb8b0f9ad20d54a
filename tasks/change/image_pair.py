"""Change between two plain images, without a catalog: what ``segment`` is for one image.

Both images are read as ``segment`` reads one (any raster GDAL reads, stretched to RGB 0..1)
and must have the same size; the result carries the first image's georeference where it has
one. Detection runs the flow's own tile path (:func:`~terrawatch.tasks.change.tile.detect_arrays`
on the detector a :class:`~terrawatch.tasks.change.tile.ChangeSpec` builds), so a pair of images
and a tile of a change cube give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from terrawatch.errors import InputError
from terrawatch.tasks.change.tile import ChangeSpec, detect_arrays, worker_detector
from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.core.image_io import (
    RasterImage,
    _label_profile,
    _open_quietly,
    _replace_on_success,
    read_rgb_image,
)

BANDS = ("changed", "class_from", "class_to")
"""The bands of the change GeoTIFF: 1 changed (0/1, 255 no data), 2 and 3 the class at each
image where changed (255 elsewhere)."""


@dataclass(frozen=True)
class PairChange:
    """The change between two images, on the first image's grid."""

    changed: np.ndarray
    """uint8 ``[H, W]``: 1 changed, 0 not, 255 where either image has no data."""
    class_from: np.ndarray
    """uint8 ``[H, W]``: class in the first image where changed, else 255."""
    class_to: np.ndarray
    """uint8 ``[H, W]``: class in the second image where changed, else 255."""
    first: RasterImage
    second: RasterImage


def read_pair(first: str | Path, second: str | Path) -> tuple[RasterImage, RasterImage]:
    """Both images, checked to be the same size (the pixels are compared one to one).

    Raises:
        InputError: a missing or unreadable image, or images of different sizes.
    """
    one, two = read_rgb_image(first), read_rgb_image(second)
    if one.rgb.shape != two.rgb.shape:
        (h1, w1), (h2, w2) = one.rgb.shape[1:], two.rgb.shape[1:]
        raise InputError(
            f"IMAGE1 {str(first)!r} is {w1}x{h1} pixels but IMAGE2 {str(second)!r} is "
            f"{w2}x{h2}; give two images of the same size and area (e.g. resample one with "
            "`gdalwarp -ts WIDTH HEIGHT`), or put both in a catalog and use --aoi"
        )
    return one, two


def detect_pair(spec: ChangeSpec, first: RasterImage, second: RasterImage) -> PairChange:
    """Detect change between the two images with the detector ``spec`` builds."""
    valid = first.valid & second.valid
    changed, class_from, class_to = detect_arrays(
        worker_detector(spec), first.rgb, second.rgb, valid
    )
    return PairChange(changed, class_from, class_to, first, second)


def write_change_geotiff(path: str | Path, change: PairChange, class_names: list[str]) -> None:
    """Three uint8 bands (:data:`BANDS`) with the first image's georeference and the class names.

    Written beside ``path`` and renamed into place: a failure leaves an existing file as it was.
    """
    profile = _label_profile(change.changed.shape, change.first.profile, NODATA)
    profile["count"] = len(BANDS)
    with _replace_on_success(Path(path)) as tmp, _open_quietly(tmp, "w", **profile) as dst:
        for index, band in enumerate((change.changed, change.class_from, change.class_to), 1):
            dst.write(band, index)
        dst.update_tags(
            class_names=_json(class_names),
            **{f"CLASS_{i}": name for i, name in enumerate(class_names)},
        )
        for index, name in enumerate(BANDS, 1):
            dst.set_band_description(index, name)


def _json(values: list[str]) -> str:
    import json

    return json.dumps(values, ensure_ascii=False)
