"""Multi/hyperspectral rasters: wavelengths from ENVI headers, S2 names or a file; bad bands."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from terrawatch.errors import InputError
from terrawatch.tasks.core.spectral_image import read_spectral_image, read_wavelength_file
from tests.conftest import shared_data

S2_STACK = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def write_s2_stack(path, size: int = 48) -> None:
    """Real Sentinel-2 L2A bands (10 m and 20 m) cropped on the 20 m grid, named B02..B12."""
    folder = shared_data("cogs", "sentinel-2-l2a", "S2A_29RKH_20200219_0_L2A")
    bands = []
    for name in S2_STACK:
        with rasterio.open(folder / f"{name}.tif") as src:
            factor = src.width // 549  # 10 m bands: read every other pixel
            window = rasterio.windows.Window(
                200 * factor, 200 * factor, size * factor, size * factor
            )
            bands.append(src.read(1, window=window, out_shape=(size, size)))
            crs = src.crs
    profile = dict(driver="GTiff", width=size, height=size, count=len(bands), dtype="uint16")
    with rasterio.open(
        path, "w", **profile, crs=crs, transform=from_origin(300000, 3300000, 200, 200)
    ) as dst:
        dst.write(np.stack(bands))
        dst.descriptions = S2_STACK


def _envi(tmp_path, wavelengths, bbl=None, empty_band=None):
    data = np.random.default_rng(0).random((len(wavelengths), 6, 8)).astype(np.float32)
    if empty_band is not None:
        data[empty_band] = np.nan
    path = tmp_path / "scene.img"
    profile = dict(driver="ENVI", width=8, height=6, count=len(wavelengths), dtype="float32")
    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="FALSE"),  # sidecars, whatever ran before
        rasterio.open(path, "w", **profile, transform=from_origin(0, 6, 1, 1)) as dst,
    ):
        dst.write(data)
    header = tmp_path / "scene.hdr"
    text = header.read_text() + "wavelength units = Micrometers\n"
    text += "wavelength = {" + ", ".join(str(w / 1000) for w in wavelengths) + "}\n"
    if bbl is not None:
        text += "bbl = {" + ", ".join(map(str, bbl)) + "}\n"
    header.write_text(text)
    return path, data


def test_envi_wavelengths_bad_bands_and_absorption_windows_are_handled(tmp_path, caplog):
    nm = [450, 550, 650, 750, 1400, 1650, 1850, 2200]
    path, data = _envi(tmp_path, nm, bbl=[1, 1, 1, 0, 1, 1, 1, 1], empty_band=7)
    with caplog.at_level(logging.INFO):
        image = read_spectral_image(path)
    assert image.wavelengths_nm == (450.0, 550.0, 650.0, 1650.0)
    assert image.band_indexes == (1, 2, 3, 6)
    np.testing.assert_array_equal(image.spectra[3], data[5])
    assert "flagged bad" in caplog.text and "water-vapour" in caplog.text
    assert "no valid pixel" in caplog.text


def test_sentinel2_band_names_give_the_wavelengths(tmp_path):
    path = tmp_path / "s2.tif"
    write_s2_stack(path)
    image = read_spectral_image(path)
    assert image.wavelengths_nm[:3] == (490.0, 560.0, 665.0)
    assert len(image.wavelengths_nm) == 10 and image.valid.all()


def test_a_wavelength_file_overrides_and_is_checked(tmp_path):
    path = tmp_path / "plain.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=5,
        dtype="float32",
        transform=from_origin(0, 4, 1, 1),
    ) as dst:
        dst.write(np.random.default_rng(0).random((5, 4, 4)).astype(np.float32))
    with pytest.raises(InputError, match="--wavelengths FILE"):
        read_spectral_image(path)
    listing = tmp_path / "wl.txt"
    listing.write_text("0.49\n0.56\n0.665\n0.842\n1.61\n")
    image = read_spectral_image(path, read_wavelength_file(listing))
    assert image.wavelengths_nm == (490.0, 560.0, 665.0, 842.0, 1610.0)
    with pytest.raises(InputError, match="gives 3 values"):
        read_spectral_image(path, [490, 560, 665])


def test_fewer_than_four_usable_bands_is_an_input_error(tmp_path):
    path, _ = _envi(tmp_path, [450, 550, 1400, 1900, 650])
    with pytest.raises(InputError, match="3 usable bands"):
        read_spectral_image(path)


def test_catalog_add_records_band_centre_wavelengths(tmp_path):
    from terrawatch.tasks.core.local_item import make_local_item

    path = tmp_path / "s2.tif"
    write_s2_stack(path)
    item = make_local_item(path, datetime="2020-02-19T11:00:00Z")
    bands = item["assets"]["image"]["eo:bands"]
    assert [b["name"] for b in bands] == list(S2_STACK)
    assert [b["center_wavelength"] for b in bands][:3] == [0.49, 0.56, 0.665]
    assert bands[-1]["center_wavelength"] == 2.19
