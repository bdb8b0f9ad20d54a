"""Asset access: a STAC asset's href as rasterio opens it (SAS tokens kept fresh), and a cheap
readability check."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import rasterio
import rasterio.errors
from rasterio.windows import Window

from terrawatch.errors import InputError, InputNotFoundError
from terrawatch.tasks.core.bands import item_label

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
"""A scheme prefix (``https://``, ``s3://``, ...); any other href must be an absolute path."""

SAS_RENEW_MARGIN = timedelta(minutes=10)
"""Renew a SAS token that expires within this time: a read that starts just before expiry
may still be fetching blocks after it, and a retried tile comes later still."""

_AZURE_BLOB_HOST = ".blob.core.windows.net"


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
    return fresh_href(href)


def fresh_href(href: str, now: datetime | None = None) -> str:
    """``href``, re-signed when its Azure SAS token has expired or expires soon.

    Planetary Computer items are signed when they are searched (``planetary_computer.
    sign_inplace`` as pystac-client's modifier) with a token that expires (its ``se``
    parameter; 45 minutes to an hour later). A regional run reads its tiles long after the search,
    and every read after the expiry would fail with HTTP 403. So every read resolves its href
    here: a token that expires within :data:`SAS_RENEW_MARGIN` is replaced by the one
    ``planetary_computer.sign`` gives for the bare URL (it caches one token per storage
    container and fetches a new one when less than a minute is left; it leaves an href that
    already has a token alone, hence the bare URL). Anything else (no token, a token valid
    for longer, other hosts, local paths) is returned as it is, without a network call.

    Raises:
        ValueError: the token service could not be reached (names the href and the fix).
    """
    parts = urlsplit(href)
    if not parts.netloc.endswith(_AZURE_BLOB_HOST):
        return href
    expiry = _sas_expiry(parts.query)
    current = now or datetime.now(UTC)
    if expiry is None or expiry - current > SAS_RENEW_MARGIN:
        return href
    import planetary_computer
    import requests

    bare = urlunsplit(parts._replace(query=""))  # the query of a signed href is its token
    try:
        return planetary_computer.sign(bare)
    except requests.RequestException as err:
        raise ValueError(
            f"the SAS token of {bare!r} expired at {expiry.isoformat()} and could not be "
            f"renewed from the Planetary Computer token service: {err}. Check the network, "
            "then rerun the flow: written tiles are kept."
        ) from err


def _sas_expiry(query: str) -> datetime | None:
    """The ``se`` (signed expiry) time of a SAS query string; None if it has no readable one."""
    fields = parse_qs(query)
    if "sig" not in fields or "se" not in fields:
        return None
    try:
        expiry = datetime.fromisoformat(fields["se"][0])
    except ValueError:
        return None
    return expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)


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
        raise InputNotFoundError(f"asset file {href!r} does not exist; fix the item's href")
    try:
        with rasterio.open(href) as src:
            if src.count < index:
                raise InputError(f"{href!r} has {src.count} band(s); band {index} was asked for")
            if src.crs is None:
                raise InputError(
                    f"{href!r} has no CRS (radar geometry with GCPs?); use a map-projected product"
                )
            src.read(index, window=last_block(src, index))
    except rasterio.errors.RasterioIOError as err:
        if "404" in str(err) or "No such file" in str(err):
            raise InputNotFoundError(f"asset {href!r} not found: {err}") from err
        raise InputError(
            f"asset {href!r} is not a readable raster (corrupt or truncated?): {err}"
        ) from err
