"""Tests for tasks/image_io.py: reading RGB rasters, writing label GeoTIFFs and preview PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

import terrawatch.tasks.core.image_io as image_io
from terrawatch.tasks.core.image_io import read_rgb_image, write_label_geotiff, write_preview_png
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
KOELN = DATA / "optical" / "oem_koeln_50.tif"
PAIR_T1 = DATA / "change" / "pair256_t1.png"
UTM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
CLASSES = ["background", "water", "building", "road"]


def _shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data {path} is absent (expected ../shared/data beside the repo)")
    return path


def _write_tif(path: Path, data: np.ndarray, **options) -> Path:
    """Write ``data [C, H, W]`` as a GeoTIFF; ``colorinterp``/``descriptions`` applied after."""
    interp = options.pop("colorinterp", None)
    descriptions = options.pop("descriptions", None)
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0])
    profile.update(dtype=data.dtype.name, crs="EPSG:32632", transform=UTM, **options)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if interp:
            dst.colorinterp = interp
        for i, text in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, text)
    return path


def _bands(count: int, shape=(8, 8), dtype=np.uint8) -> np.ndarray:
    """Band ``i`` (1-based) filled with the value ``10 * i`` so a test can tell bands apart."""
    return np.stack([np.full(shape, 10 * (i + 1), dtype=dtype) for i in range(count)])


def _koeln_labels() -> np.ndarray:
    labels = np.zeros((1000, 1000), np.uint8)
    labels[:, 250:] = 1
    labels[:, 500:] = 2
    labels[:, 750:] = 3
    labels[:10] = 255
    return labels


# --- read_rgb_image -------------------------------------------------------------------------


def test_read_geotiff_values_are_raw_over_255():
    image = read_rgb_image(_shared(KOELN))
    with rasterio.open(KOELN) as src:
        raw = src.read()
    assert image.rgb.dtype == np.float32
    np.testing.assert_array_equal(image.rgb, raw.astype(np.float32) / np.float32(255))


def test_read_geotiff_keeps_crs_and_transform():
    image = read_rgb_image(_shared(KOELN))
    assert image.profile["crs"].to_epsg() == 25832
    assert image.profile["transform"] == Affine(0.5, 0.0, 346000.0, 0.0, -0.5, 5648000.0)
    assert (image.profile["height"], image.profile["width"]) == (1000, 1000)


def test_read_geotiff_without_nodata_is_all_valid():
    image = read_rgb_image(_shared(KOELN))
    assert image.valid.shape == (1000, 1000) and image.valid.all()


def test_read_png_has_no_georeference():
    image = read_rgb_image(_shared(PAIR_T1))
    assert image.profile["crs"] is None and image.profile["transform"] is None
    assert image.bands == (1, 2, 3)


def test_read_png_values_match_pillow():
    image = read_rgb_image(_shared(PAIR_T1))
    expected = np.asarray(Image.open(PAIR_T1).convert("RGB")).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(image.rgb, expected, atol=1e-6)


def test_bands_from_colour_interpretation(tmp_path):
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    path = _write_tif(tmp_path / "bgrn.tif", _bands(4), colorinterp=interp)
    assert read_rgb_image(path).bands == (3, 2, 1)


def test_bands_from_sentinel2_descriptions(tmp_path):
    names = ["B01", "B02", "B03", "B04", "B08", "B11"]
    path = _write_tif(tmp_path / "s2.tif", _bands(6, dtype=np.uint16), descriptions=names)
    assert read_rgb_image(path).bands == (4, 3, 2)


def test_bands_from_colour_name_descriptions(tmp_path):
    names = ["nir", "Blue", "Green", "Red"]  # uint16: GDAL sets no RGB colour interpretation
    path = _write_tif(tmp_path / "nbgr.tif", _bands(4, dtype=np.uint16), descriptions=names)
    assert read_rgb_image(path).bands == (4, 3, 2)


def test_explicit_bands_win_over_descriptions(tmp_path):
    names = ["B01", "B02", "B03", "B04", "B08", "B11"]
    path = _write_tif(tmp_path / "s2.tif", _bands(6), descriptions=names)
    image = read_rgb_image(path, bands=[5, 4, 3])
    assert image.bands == (5, 4, 3)
    np.testing.assert_allclose(image.rgb[:, 0, 0], np.array([50, 40, 30]) / 255.0)


def test_four_bands_without_hints_use_the_first_three(tmp_path):
    path = _write_tif(tmp_path / "four.tif", _bands(4, dtype=np.uint16))  # grey interpretation
    assert read_rgb_image(path).bands == (1, 2, 3)


def test_single_band_is_replicated_to_grey(tmp_path):
    data = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    image = read_rgb_image(_write_tif(tmp_path / "grey.tif", data))
    assert image.bands == (1, 1, 1)
    np.testing.assert_array_equal(image.rgb, np.repeat(data / np.float32(255), 3, axis=0))


def test_alpha_zero_is_invalid(tmp_path):
    data = np.concatenate([_bands(3), np.full((1, 8, 8), 255, np.uint8)])
    data[3, :2] = 0
    path = _write_tif(tmp_path / "rgba.tif", data, photometric="RGB", alpha="YES")
    image = read_rgb_image(path)
    assert not image.valid[:2].any() and image.valid[2:].all()
    assert (image.rgb[:, :2] == 0).all()


def test_nodata_in_any_chosen_band_is_invalid(tmp_path):
    data = _bands(3, dtype=np.uint16)
    data[1, 0, 0] = 0
    image = read_rgb_image(_write_tif(tmp_path / "nd.tif", data, nodata=0))
    assert not image.valid[0, 0] and image.valid.sum() == 63


def test_float_nan_is_invalid(tmp_path):
    data = np.full((3, 4, 4), 0.5, np.float32)
    data[2, 3, 3] = np.nan
    image = read_rgb_image(_write_tif(tmp_path / "nan.tif", data))
    assert not image.valid[3, 3] and image.valid.sum() == 15


def test_auto_keeps_floats_within_unit_range(tmp_path):
    data = np.linspace(0.1, 0.9, 48, dtype=np.float32).reshape(3, 4, 4)
    image = read_rgb_image(_write_tif(tmp_path / "unit.tif", data))
    np.testing.assert_array_equal(image.rgb, data)


def test_auto_stretches_uint16_between_2nd_and_98th_percentile(tmp_path):
    # values 0..9999 once each: 2nd percentile 199.98, 98th 9799.02 (numpy linear method)
    data = np.arange(10000, dtype=np.uint16).reshape(1, 100, 100)
    image = read_rgb_image(_write_tif(tmp_path / "ramp.tif", data))
    assert image.rgb[0, 0, 0] == 0.0 and image.rgb[0, -1, -1] == 1.0
    assert image.rgb[0, 50, 0] == pytest.approx((5000 - 199.98) / (9799.02 - 199.98), abs=1e-5)


def test_reflectance_stretch_maps_dn_3000_to_white(tmp_path):
    data = np.array([[[0, 1500, 3000, 9000]]], dtype=np.uint16)
    image = read_rgb_image(_write_tif(tmp_path / "dn.tif", data), stretch="reflectance")
    np.testing.assert_allclose(image.rgb[0, 0], [0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_palette_png_is_expanded_through_its_colours(tmp_path):
    indexed = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    indexed.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    indexed.save(tmp_path / "palette.png")
    image = read_rgb_image(tmp_path / "palette.png")
    np.testing.assert_array_equal(image.rgb[:, 0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(image.rgb[:, 0, 1], [0.0, 0.0, 1.0])


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.tif.*does not exist"):
        read_rgb_image(tmp_path / "nope.tif")


def test_truncated_geotiff_is_not_a_readable_raster(tmp_path):
    full = _write_tif(tmp_path / "full.tif", _bands(3, shape=(64, 64))).read_bytes()
    (tmp_path / "cut.tif").write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=r"cut\.tif.*not a readable raster"):
        read_rgb_image(tmp_path / "cut.tif")


def test_truncated_png_is_not_a_readable_raster(tmp_path):
    full = _shared(PAIR_T1).read_bytes()
    (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=r"cut\.png.*not a readable raster"):
        read_rgb_image(tmp_path / "cut.png")


def test_band_out_of_range_names_the_band_count(tmp_path):
    path = _write_tif(tmp_path / "four.tif", _bands(4))
    with pytest.raises(ValueError, match=r"has 4 band\(s\), valid indexes are 1\.\.4"):
        read_rgb_image(path, bands=(5, 3, 2))


def test_unlabelled_six_bands_need_explicit_bands(tmp_path):
    path = _write_tif(tmp_path / "six.tif", _bands(6))
    with pytest.raises(ValueError, match=r"pass bands=\(red, green, blue\)"):
        read_rgb_image(path)


def test_unknown_stretch_is_rejected(tmp_path):
    path = _write_tif(tmp_path / "four.tif", _bands(4))
    with pytest.raises(ValueError, match=r"stretch must be one of .*'minmax'"):
        read_rgb_image(path, stretch="minmax")


# --- write_label_geotiff --------------------------------------------------------------------


@pytest.fixture(scope="module")
def koeln_profile() -> dict:
    return read_rgb_image(_shared(KOELN)).profile


@pytest.fixture
def koeln_labels_tif(tmp_path, koeln_profile) -> Path:
    path = tmp_path / "labels.tif"
    write_label_geotiff(path, _koeln_labels(), CLASSES, koeln_profile)
    return path


def test_label_geotiff_has_source_crs_and_transform(koeln_labels_tif, koeln_profile):
    with rasterio.open(koeln_labels_tif) as src:
        assert src.crs == koeln_profile["crs"]
        assert src.transform == koeln_profile["transform"]


def test_label_geotiff_is_uint8_with_nodata_255(koeln_labels_tif):
    with rasterio.open(koeln_labels_tif) as src:
        assert (src.count, src.dtypes[0], src.nodata) == (1, "uint8", 255)
        np.testing.assert_array_equal(src.read(1), _koeln_labels())


def test_label_geotiff_is_tiled_and_deflated(koeln_labels_tif):
    with rasterio.open(koeln_labels_tif) as src:
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name == "deflate"


def test_label_geotiff_colour_table_holds_class_colours(koeln_labels_tif):
    with rasterio.open(koeln_labels_tif) as src:
        table = src.colormap(1)
    # class_colors(CLASSES), by meaning: grey background, blue water, red building, grey road
    assert [table[i] for i in range(4)] == [
        (160, 160, 160, 255),
        (31, 101, 193, 255),
        (215, 25, 28, 255),
        (94, 94, 94, 255),
    ]
    assert table[255] == (0, 0, 0, 0)


def test_label_geotiff_stores_class_names(koeln_labels_tif):
    with rasterio.open(koeln_labels_tif) as src:
        tags, description = src.tags(), src.descriptions[0]
    assert json.loads(tags["class_names"]) == CLASSES
    assert [tags[f"CLASS_{i}"] for i in range(4)] == CLASSES
    assert description == "landcover"


def test_label_geotiff_uses_given_colours(tmp_path, koeln_profile):
    path = tmp_path / "labels.tif"
    colors = ["#000080", "#00ff00", "#ffffff", "#123456"]
    write_label_geotiff(path, _koeln_labels(), CLASSES, koeln_profile, colors=colors)
    with rasterio.open(path) as src:
        assert src.colormap(1)[3] == (0x12, 0x34, 0x56, 255)


def test_label_geotiff_of_png_source_has_no_crs(tmp_path):
    profile = read_rgb_image(_shared(PAIR_T1)).profile
    write_label_geotiff(tmp_path / "l.tif", np.zeros((256, 256), np.uint8), ["water"], profile)
    with pytest.warns(NotGeoreferencedWarning), rasterio.open(tmp_path / "l.tif") as src:
        assert src.crs is None


def test_wrong_label_shape_leaves_existing_file_untouched(koeln_labels_tif, koeln_profile):
    before = koeln_labels_tif.read_bytes()
    with pytest.raises(ValueError, match=r"labels shape \(999, 1000\) differs"):
        write_label_geotiff(
            koeln_labels_tif, np.zeros((999, 1000), np.uint8), CLASSES, koeln_profile
        )
    assert koeln_labels_tif.read_bytes() == before
    assert [p.name for p in koeln_labels_tif.parent.iterdir()] == ["labels.tif"]


def test_float_labels_are_rejected(tmp_path, koeln_profile):
    with pytest.raises(ValueError, match="2-D integer array"):
        write_label_geotiff(tmp_path / "l.tif", np.zeros((1000, 1000)), CLASSES, koeln_profile)
    assert not (tmp_path / "l.tif").exists()


def test_failure_while_writing_leaves_existing_file_untouched(
    koeln_labels_tif, koeln_profile, monkeypatch
):
    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    before = koeln_labels_tif.read_bytes()
    monkeypatch.setattr(image_io, "_write_band_metadata", disk_full)  # simulated I/O failure
    with pytest.raises(OSError, match="No space left"):
        write_label_geotiff(koeln_labels_tif, _koeln_labels(), CLASSES, koeln_profile)
    assert koeln_labels_tif.read_bytes() == before
    assert [p.name for p in koeln_labels_tif.parent.iterdir()] == ["labels.tif"]


def test_label_id_without_class_name_is_rejected(tmp_path, koeln_profile):
    with pytest.raises(ValueError, match=r"class id\(s\) \[3\] but class_names has 3"):
        write_label_geotiff(tmp_path / "l.tif", _koeln_labels(), CLASSES[:3], koeln_profile)


def test_nodata_colliding_with_a_class_id_is_rejected(tmp_path, koeln_profile):
    with pytest.raises(ValueError, match=r"nodata=2 must lie in 4\.\.255"):
        write_label_geotiff(tmp_path / "l.tif", _koeln_labels(), CLASSES, koeln_profile, nodata=2)


def test_missing_output_directory_is_named(tmp_path, koeln_profile):
    with pytest.raises(FileNotFoundError, match=r"output directory .*missing.* does not exist"):
        write_label_geotiff(tmp_path / "missing" / "l.tif", _koeln_labels(), CLASSES, koeln_profile)


# --- write_preview_png ----------------------------------------------------------------------


def test_preview_png_decodes_with_both_panels(tmp_path):
    labels = np.zeros((100, 100), np.uint8)
    rgb = np.full((3, 100, 100), 0.2, np.float32)
    write_preview_png(tmp_path / "p.png", labels, ["water"], rgb=rgb, title="test")
    with Image.open(tmp_path / "p.png") as png:
        assert png.format == "PNG"
        pixels = {tuple(p) for p in np.asarray(png.convert("RGB")).reshape(-1, 3)}
    assert (51, 51, 51) in pixels and (31, 101, 193) in pixels  # the image; blue water
