"""Asset access: a STAC asset's href as rasterio opens it, and a cheap readability check."""

from __future__ import annotations

import re
from pathlib import Path

import rasterio
import rasterio.errors
from rasterio.windows import Window

from tasks._errors import InputError
from tasks.bands import item_label

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
"""A scheme prefix (``https://``, ``s3://``, ...); any other href must be an absolute path."""


def asset_href(item: dict, key: str) -> str:
    """The asset's href as rasterio opens it; relative hrefs are rejected."""
    href = str(item["assets"][key].get("href", ""))
    if href.startswith("file://"):
        href = href.removeprefix("file://")
    if not (URL.match(href) or Path(href).is_absolute()):
        raise InputError(
            f"asset {key!r} of {item_label(item)} has href {href!r}; hrefs must be absolute "
            "paths or URLs (resolve relative hrefs against the item file first)"
        )
    return href


def last_block(src: rasterio.DatasetReader, index: int) -> Window:
    """The last internal block of band ``index``: reading it proves the file is not truncated."""
    height, width = src.block_shapes[index - 1]
    row = (src.height - 1) // height * height
    col = (src.width - 1) // width * width
    return Window(col, row, min(width, src.width - col), min(height, src.height - row))


def check_asset(href: str, index: int) -> None:
    """Open ``href``, check its band count and CRS and read its last block; clear errors."""
    local = not URL.match(href) and not href.startswith("/vsi")
    if local and not Path(href).exists():
        raise FileNotFoundError(f"asset file {href!r} does not exist; fix the item's href")
    try:
        with rasterio.open(href) as src:
            if src.count < index:
                raise ValueError(f"{href!r} has {src.count} band(s); band {index} was asked for")
            if src.crs is None:
                raise ValueError(
                    f"{href!r} has no CRS (radar geometry with GCPs?); use a map-projected product"
                )
            src.read(index, window=last_block(src, index))
    except rasterio.errors.RasterioIOError as err:
        if "404" in str(err) or "No such file" in str(err):
            raise FileNotFoundError(f"asset {href!r} not found: {err}") from err
        raise ValueError(
            f"asset {href!r} is not a readable raster (corrupt or truncated?): {err}"
        ) from err
