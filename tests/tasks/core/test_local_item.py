"""`terrawatch catalog add`: STAC Items from real local GeoTIFFs, written to a catalog folder."""

from __future__ import annotations

import datetime as dtm
import json
import logging
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation.stac_validator import JsonSchemaSTACValidator
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from shapely.geometry import Polygon, shape

from terrawatch.errors import InputError
from terrawatch.tasks.core.catalog import search_items
from terrawatch.tasks.core.local_item import add_local_item, make_local_item
from tests.conftest import shared_data

S2_DIR = ("cogs", "sentinel-2-l2a", "S2A_29RKH_20200219_0_L2A")
GRD_VV = (
    "cogs/sentinel-1-grd/GRD/2018/7/16/IW/DV/"
    "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B/measurement/iw-vv.tiff"
)


@pytest.fixture(scope="module")
def koeln() -> Path:
    return shared_data("optical", "oem_koeln_50.tif")


@pytest.fixture(scope="module")
def koeln_item(koeln: Path) -> dict:
    return make_local_item(koeln)


def _write_tiff(path: Path, count: int, dtype: str = "uint16", **profile) -> Path:
    """A tiny 8x8 GeoTIFF in EPSG:32632 (10 m pixels)."""
    tags = profile.pop("tags", {})
    with rasterio.open(
        path, "w", driver="GTiff", width=8, height=8, count=count, dtype=dtype,
        crs="EPSG:32632", transform=from_origin(500_000, 5_600_000, 10, 10), **profile,
    ) as dst:  # fmt: skip
        dst.write(np.ones((count, 8, 8), dtype=dtype))
        dst.update_tags(**tags)
    return path


def _common_names(item: dict) -> list[str | None]:
    return [band.get("common_name") for band in item["assets"]["image"]["eo:bands"]]


# -------------------------------------------------------------------------------- Köln RGB


def test_koeln_footprint_is_the_raster_extent_in_lon_lat(koeln_item: dict):
    to_lonlat = Transformer.from_crs("EPSG:25832", "EPSG:4326", always_xy=True)
    corners = [(346000, 5647500), (346500, 5647500), (346500, 5648000), (346000, 5648000)]
    expected = Polygon([to_lonlat.transform(x, y) for x, y in corners])

    footprint = shape(koeln_item["geometry"])

    assert footprint.symmetric_difference(expected).area < 1e-4 * expected.area
    assert koeln_item["bbox"] == pytest.approx(list(expected.bounds), abs=1e-6)


def test_koeln_projection_properties(koeln_item: dict):
    props = koeln_item["properties"]

    assert props["proj:code"] == "EPSG:25832"
    assert props["proj:epsg"] == 25832
    assert props["proj:shape"] == [1000, 1000]
    assert props["proj:transform"] == [0.5, 0.0, 346000.0, 0.0, -0.5, 5648000.0]
    assert props["gsd"] == 0.5


def test_koeln_image_asset_is_rgb_uint8_geotiff(koeln_item: dict, koeln: Path):
    asset = koeln_item["assets"]["image"]

    assert asset["href"] == str(koeln.absolute())
    assert asset["type"] == "image/tiff; application=geotiff"  # stripped, no overviews
    assert asset["roles"] == ["data"]
    assert _common_names(koeln_item) == ["red", "green", "blue"]
    assert asset["raster:bands"] == [{"data_type": "uint8", "spatial_resolution": 0.5}] * 3


def test_koeln_datetime_falls_back_to_file_mtime(koeln_item: dict, koeln: Path):
    mtime = dtm.datetime.fromtimestamp(koeln.stat().st_mtime, tz=dtm.UTC)

    assert dtm.datetime.fromisoformat(koeln_item["properties"]["datetime"]) == mtime


def test_koeln_item_validates_and_reads_through_pystac_extensions(koeln_item: dict):
    JsonSchemaSTACValidator().validate_core(koeln_item, pystac.STACObjectType.ITEM, "1.1.0")
    item = pystac.Item.from_dict(koeln_item)
    asset = item.assets["image"]

    assert ProjectionExtension.ext(item).code == "EPSG:25832"
    assert [b.common_name for b in EOExtension.ext(asset).bands] == ["red", "green", "blue"]
    assert [b.data_type for b in RasterExtension.ext(asset).bands] == ["uint8"] * 3
    assert item.collection_id == "local"


def test_koeln_item_loads_with_odc_stac(koeln_item: dict, koeln: Path):
    import odc.stac

    item = pystac.Item.from_dict(make_local_item(koeln, datetime="2024-05-01"))
    data = odc.stac.load([item], bands=["red", "blue"]).isel(time=0)

    with rasterio.open(koeln) as src:
        assert np.array_equal(data["red"].values, src.read(1))
        assert np.array_equal(data["blue"].values, src.read(3))


# ----------------------------------------------------------------------- other real rasters


def test_sentinel2_band_cog_is_flagged_cloud_optimized():
    item = make_local_item(shared_data(*S2_DIR, "B04.tif"))
    asset = item["assets"]["image"]

    assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert asset["eo:bands"] == [{"name": "band1"}]
    assert asset["raster:bands"] == [
        {"data_type": "uint16", "spatial_resolution": 100.0, "nodata": 0}
    ]
    assert item["properties"]["proj:code"] == "EPSG:32629"


def test_sentinel2_true_colour_cog_gets_rgb_names_from_colour_interpretation():
    item = make_local_item(shared_data(*S2_DIR, "TCI.tif"))

    assert _common_names(item) == ["red", "green", "blue"]
    assert item["id"] == "TCI"


def test_sentinel1_grd_without_crs_is_refused_naming_the_file():
    with pytest.raises(InputError, match=r"iw-vv\.tiff' has no CRS \(only 210 GCPs.*gdalwarp"):
        make_local_item(shared_data(GRD_VV))


def test_truncated_file_is_refused_naming_the_file(tmp_path: Path):
    data = shared_data(*S2_DIR, "B02.tif").read_bytes()
    broken = tmp_path / "truncated.tif"
    broken.write_bytes(data[: len(data) // 2])

    with pytest.raises(InputError, match=r"truncated\.tif' is broken \(truncated or corrupt\)"):
        make_local_item(broken)


def test_non_raster_file_is_refused_naming_the_file(tmp_path: Path):
    junk = tmp_path / "notes.tif"
    junk.write_text("not an image")

    with pytest.raises(InputError, match=r"notes\.tif' is not a readable raster"):
        make_local_item(junk)


def test_missing_file_raises_file_not_found(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"nope\.tif' does not exist"):
        make_local_item(tmp_path / "nope.tif")


# -------------------------------------------------------------------- bands, dates, ids


def test_four_band_raster_is_red_green_blue_nir(tmp_path: Path):
    item = make_local_item(_write_tiff(tmp_path / "rgbn.tif", 4))

    assert _common_names(item) == ["red", "green", "blue", "nir"]


def test_alpha_band_from_colour_interpretation_is_not_nir(tmp_path: Path):
    path = _write_tiff(tmp_path / "rgba.tif", 4, "uint8", photometric="RGB", alpha="YES")
    with rasterio.open(path) as src:
        assert src.colorinterp[3] == ColorInterp.alpha

    item = make_local_item(path)

    assert _common_names(item) == ["red", "green", "blue", None]
    assert item["assets"]["image"]["eo:bands"][3]["name"] == "alpha"


def test_other_band_counts_are_numbered(tmp_path: Path):
    item = make_local_item(_write_tiff(tmp_path / "two.tif", 2))

    assert [b["name"] for b in item["assets"]["image"]["eo:bands"]] == ["band1", "band2"]
    assert _common_names(item) == [None, None]


def test_float_nodata_nan_is_written_as_string(tmp_path: Path):
    item = make_local_item(_write_tiff(tmp_path / "f.tif", 1, "float32", nodata=float("nan")))

    assert item["assets"]["image"]["raster:bands"][0]["nodata"] == "nan"
    json.dumps(item, allow_nan=False)


def test_datetime_comes_from_the_tiff_tag(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = _write_tiff(tmp_path / "tagged.tif", 1, tags={"TIFFTAG_DATETIME": "2021:05:04 10:11:12"})

    with caplog.at_level(logging.INFO, logger="terrawatch.tasks.core.local_item"):
        item = make_local_item(path)

    assert item["properties"]["datetime"] == "2021-05-04T10:11:12Z"
    assert "taken from TIFFTAG_DATETIME" in caplog.text


def test_datetime_argument_wins_over_the_tiff_tag(tmp_path: Path):
    path = _write_tiff(tmp_path / "tagged.tif", 1, tags={"TIFFTAG_DATETIME": "2021:05:04 10:11:12"})

    item = make_local_item(path, datetime="2024-05-01")

    assert item["properties"]["datetime"] == "2024-05-01T00:00:00Z"


def test_bad_datetime_argument_is_refused(koeln: Path):
    with pytest.raises(InputError, match=r"datetime='May 1st' is not ISO 8601"):
        make_local_item(koeln, datetime="May 1st")


def test_item_id_is_sanitised_from_the_file_stem(tmp_path: Path):
    item = make_local_item(_write_tiff(tmp_path / "my scene (1).tif", 1))

    assert item["id"] == "my_scene_1"


def test_bad_item_id_is_refused(koeln: Path):
    with pytest.raises(InputError, match=r"item_id='../x' must start with a letter or digit"):
        make_local_item(koeln, item_id="../x")


# ------------------------------------------------------------------------ add_local_item


def test_add_writes_item_json_named_by_id(koeln: Path, tmp_path: Path):
    path = add_local_item(koeln, tmp_path / "cat", datetime="2024-05-01")

    assert path == tmp_path / "cat" / "oem_koeln_50.json"
    assert json.loads(path.read_text()) == make_local_item(koeln, datetime="2024-05-01")
    collection = pystac.Collection.from_file(str(tmp_path / "cat" / "local.collection.json"))
    assert collection.extent.temporal.intervals[0][0] == dtm.datetime(2024, 5, 1, tzinfo=dtm.UTC)


def test_add_refuses_to_replace_an_existing_item(koeln: Path, tmp_path: Path):
    add_local_item(koeln, tmp_path, datetime="2024-05-01")

    with pytest.raises(FileExistsError, match=r"'oem_koeln_50' already exists.*overwrite=True"):
        add_local_item(koeln, tmp_path, datetime="2024-06-01")


def test_add_with_overwrite_replaces_the_item(koeln: Path, tmp_path: Path):
    add_local_item(koeln, tmp_path, datetime="2024-05-01")

    path = add_local_item(koeln, tmp_path, datetime="2024-06-01", overwrite=True)

    assert json.loads(path.read_text())["properties"]["datetime"] == "2024-06-01T00:00:00Z"


def test_add_refuses_an_id_already_defined_in_another_file(koeln: Path, tmp_path: Path):
    item = make_local_item(koeln)
    (tmp_path / "bundle.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": [item]})
    )

    with pytest.raises(FileExistsError, match=r"'oem_koeln_50' is already in '.*bundle\.json'"):
        add_local_item(koeln, tmp_path, overwrite=True)


def test_added_koeln_item_is_found_by_the_local_search(koeln: Path, tmp_path: Path):
    add_local_item(koeln, tmp_path, datetime="2024-05-01T10:00:00Z")
    add_local_item(shared_data(*S2_DIR, "TCI.tif"), tmp_path, datetime="2024-05-01")

    result = search_items(str(tmp_path), "6.80,50.95,6.82,50.97", "2024-05-01", "2024-05-01")

    assert result.ids == ("oem_koeln_50",)
    assert result.items[0]["assets"]["image"]["href"] == str(koeln.absolute())
    assert result.dropped == (("TCI", "outside AOI (bbox [-11.9792, 24.2963, -10.8745, 25.3046])"),)
