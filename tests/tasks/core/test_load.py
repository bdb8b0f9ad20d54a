"""Tests for tasks.core.load and tasks.core.bands on real Sentinel-2 COGs and a real aerial
GeoTIFF."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr
from pyproj import Transformer
from rasterio.transform import from_origin

from terrawatch.errors import InputError
from terrawatch.tasks.core.bands import SCL_INVALID, reflectance_scaling, resolve_band
from terrawatch.tasks.core.composite import best_pixel_composite, rgb_array, rgb_composite
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.load import check_readable, load_bands, read_window
from terrawatch.tasks.core.output_grid import default_resolution, grid_for_aoi
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
STAC = DATA / "stac"
S2_ITEM = STAC / "earthsearch-v1_sentinel-2-l2a_S2A_29RKH_20200219_0_L2A.LOCAL-DERIVED.item.json"
S2_COGS = DATA / "cogs" / "sentinel-2-l2a" / "S2A_29RKH_20200219_0_L2A"
KOELN = DATA / "optical" / "oem_koeln_50.tif"

pytestmark = pytest.mark.skipif(
    not (S2_ITEM.is_file() and KOELN.is_file()),
    reason=f"shared test data not found under {DATA} (see shared/data/PROVENANCE*.md)",
)

# A 10 x 10 km window of tile 29RKH on the source pixel grid (origin 199980, 2800020) where
# the SCL band holds thin cirrus (10) and medium/high-probability cloud (8, 9) beside class 5.
CLOUDY = GridSpec("EPSG:32629", 100.0, 284980.0, 2785020.0, 294980.0, 2795020.0)
LOCAL_GRID = GridSpec("EPSG:25832", 0.5, 346000.0, 5647500.0, 346500.0, 5648000.0)


def _s2_item() -> dict:
    """The LOCAL-DERIVED item with its relative hrefs made absolute."""
    item = json.loads(S2_ITEM.read_text())
    for asset in item["assets"].values():
        asset["href"] = str((S2_ITEM.parent / asset["href"]).resolve())
    return item


def _local_item(path: Path = KOELN) -> dict:
    """A minimal `terrawatch catalog add`-style item: one 3-band asset, proj on the item."""
    to_lonlat = Transformer.from_crs("EPSG:25832", "EPSG:4326", always_xy=True)
    west, south, east, north = to_lonlat.transform_bounds(346000, 5647500, 346500, 5648000)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        ],
        "id": "oem_koeln_50",
        "collection": "local",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [west, south, east, north],
        "properties": {
            "datetime": "2020-06-01T10:00:00Z",
            "proj:code": "EPSG:25832",
            "proj:epsg": 25832,
            "proj:shape": [1000, 1000],
            "proj:transform": [0.5, 0.0, 346000.0, 0.0, -0.5, 5648000.0],
        },
        "assets": {
            "image": {
                "href": str(path),
                "type": "image/tiff; application=geotiff",
                "roles": ["data"],
                "eo:bands": [{"name": n, "common_name": n} for n in ("red", "green", "blue")],
            }
        },
        "links": [],
    }


def _clear_copy(item_id: str, when: str) -> dict:
    """The S2 item as another, cloud-free acquisition: no SCL, red scaled 2e-4 to tell apart."""
    item = _s2_item()
    item["id"] = item_id
    item["properties"]["datetime"] = when
    item["assets"]["red"]["raster:bands"][0]["scale"] = 0.0002
    del item["assets"]["scl"]
    return item


def _raw(name: str, grid: GridSpec, factor: int = 1) -> np.ndarray:
    """Raw DN of one S2 COG over ``grid`` (source pixels repeated ``factor`` times)."""
    with rasterio.open(S2_COGS / name) as src:
        window = rasterio.windows.from_bounds(
            grid.left, grid.bottom, grid.right, grid.top, transform=src.transform
        )
        data = src.read(1, window=window.round_offsets().round_lengths())
    return np.repeat(np.repeat(data, factor, axis=0), factor, axis=1)


# --- the lazy cube ---------------------------------------------------------------------------


def test_load_bands_is_lazy_on_exactly_the_grid() -> None:
    ds = load_bands([_s2_item()], CLOUDY, ("red", "green", "blue"), chunks=64)

    assert ds.odc.geobox == CLOUDY.geobox
    assert ds.odc.crs == "EPSG:32629"
    assert "spatial_ref" in ds.coords
    for name in ("red", "green", "blue"):
        assert ds[name].dims == ("time", "y", "x")
        assert ds[name].dtype == np.float32
        assert isinstance(ds[name].data, da.Array)
        assert ds[name].chunks == ((1,), *CLOUDY.tiles(64).chunks)


def test_load_bands_opens_no_file_until_computed(tmp_path: Path) -> None:
    item = _s2_item()
    for asset in item["assets"].values():
        asset["href"] = str(tmp_path / "gone" / Path(asset["href"]).name)

    ds = load_bands([item], CLOUDY, ("red",))  # builds the graph without touching a file

    with pytest.raises(rasterio.errors.RasterioIOError, match=r"gone/(B04|SCL)\.tif"):
        ds.red.compute()


def test_values_are_reflectance_and_clouds_are_nan() -> None:
    red = load_bands([_s2_item()], CLOUDY, ("red",)).red.compute().values[0]

    scl = _raw("SCL.tif", CLOUDY, factor=2)
    cloudy = np.isin(scl, sorted(SCL_INVALID))
    expected = _raw("B04.tif", CLOUDY).astype(np.float32) * np.float32(1e-4)
    assert cloudy.any() and (~cloudy).any()
    np.testing.assert_array_equal(np.isnan(red), cloudy)
    np.testing.assert_allclose(red[~cloudy], expected[~cloudy], rtol=1e-6)


def test_scl_masks_every_band_and_keeps_thin_cirrus_out() -> None:
    ds = load_bands([_s2_item()], CLOUDY, ("red", "nir", "scl")).compute()

    scl_raw = _raw("SCL.tif", CLOUDY, factor=2)
    assert 10 in scl_raw
    for name in ("red", "nir", "scl"):
        assert np.isnan(ds[name].values[0][scl_raw == 10]).all()
    assert set(np.unique(ds.scl.values[~np.isnan(ds.scl.values)])) == {5.0}


def test_odc_and_stackstac_agree() -> None:
    bands = ("red", "green", "blue", "scl")
    odc = load_bands([_s2_item()], CLOUDY, bands, loader="odc").compute()
    sst = load_bands([_s2_item()], CLOUDY, bands, loader="stackstac").compute()

    assert sst.odc.geobox == odc.odc.geobox
    for name in bands:
        a, b = odc[name].values, sst[name].values
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, equal_nan=True)


@pytest.mark.parametrize("loader", ["odc", "stackstac"])
def test_nodata_becomes_nan(tmp_path: Path, loader: str) -> None:
    data = np.full((1, 40, 40), 2000, dtype=np.uint16)
    data[0, :10, :10] = 0
    path = tmp_path / "dn.tif"
    profile = dict(driver="GTiff", width=40, height=40, count=1, dtype="uint16", crs="EPSG:32629")
    with rasterio.open(
        path, "w", transform=from_origin(284980, 2795020, 100, 100), **profile
    ) as dst:
        dst.write(data)
    item = _s2_item()
    item["assets"]["red"]["href"] = str(path)
    item["assets"]["red"]["proj:shape"] = [40, 40]
    item["assets"]["red"]["proj:transform"] = [100.0, 0.0, 284980.0, 0.0, -100.0, 2795020.0]
    del item["assets"]["scl"]
    grid = GridSpec("EPSG:32629", 100.0, 284980.0, 2791020.0, 288980.0, 2795020.0)

    red = load_bands([item], grid, ("red",), loader=loader).red.values[0]

    assert np.isnan(red[:10, :10]).all()
    np.testing.assert_allclose(red[10:, 10:], 0.2)


@pytest.mark.parametrize("loader", ["odc", "stackstac"])
def test_same_solar_day_items_fuse_first_valid_after_own_scaling(loader: str) -> None:
    cloudy_item = _s2_item()
    clear_item = _clear_copy("clear-copy", "2020-02-19T11:35:00Z")

    first = load_bands([cloudy_item, clear_item], CLOUDY, ("red",), loader=loader).compute()
    second = load_bands([clear_item, cloudy_item], CLOUDY, ("red",), loader=loader).compute()

    dn = _raw("B04.tif", CLOUDY).astype(np.float32)
    cloudy = np.isin(_raw("SCL.tif", CLOUDY, factor=2), sorted(SCL_INVALID))
    assert first.sizes["time"] == 1
    assert first.attrs["stac_item_ids"] == ["S2A_29RKH_20200219_0_L2A,clear-copy"]
    np.testing.assert_allclose(
        first.red.values[0], np.where(cloudy, dn * 2e-4, dn * 1e-4), rtol=1e-6
    )
    np.testing.assert_allclose(second.red.values[0], dn * 2e-4, rtol=1e-6)


@pytest.mark.parametrize("loader", ["odc", "stackstac"])
def test_item_outside_the_grid_gives_an_empty_step(loader: str) -> None:
    far = GridSpec("EPSG:32629", 100.0, 600000.0, 2790000.0, 601000.0, 2791000.0)

    ds = load_bands([_s2_item()], far, ("red", "scl"), loader=loader, chunks=8)

    assert ds.red.chunks == ((1,), *far.tiles(8).chunks)
    assert ds.red.isnull().all()


def test_items_with_different_band_names_load_together() -> None:
    pc_style = _s2_item()
    pc_style["id"] = "pc-style"
    pc_style["assets"] = {
        "B04": pc_style["assets"]["red"],
        "SCL": pc_style["assets"]["scl"],
    }

    ds = load_bands([_s2_item(), pc_style], CLOUDY, ("red", "scl"), groupby="id").compute()

    assert ds.sizes["time"] == 2
    np.testing.assert_array_equal(ds.red.values[0], ds.red.values[1])


def test_groupby_id_keeps_items_apart() -> None:
    other = _s2_item()
    other["id"] = "later"
    other["properties"]["datetime"] = "2020-02-24T11:34:25Z"

    ds = load_bands([other, _s2_item()], CLOUDY, ("red",), groupby="id")

    assert ds.sizes["time"] == 2
    assert ds.attrs["stac_item_ids"] == ["S2A_29RKH_20200219_0_L2A", "later"]
    assert (np.diff(ds.time.values) > np.timedelta64(0)).all()


# --- RGB for the model -----------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [1024, None])
@pytest.mark.parametrize("loader", ["odc", "stackstac"])
def test_local_rgb_is_raw_pixels_over_255(loader: str, chunks: int | None) -> None:
    rgb = rgb_composite(load_bands([_local_item()], LOCAL_GRID, loader=loader, chunks=chunks))

    with rasterio.open(KOELN) as src:
        raw = src.read()
    assert rgb.dims == ("time", "band", "y", "x")
    assert list(rgb.band.values) == ["red", "green", "blue"]
    assert rgb.dtype == np.float32
    if chunks is None:
        assert isinstance(rgb.data, np.ndarray)
    else:
        assert rgb.chunks[1] == (3,)
    np.testing.assert_allclose(rgb.values[0], raw / 255.0, atol=1e-6)


@pytest.mark.parametrize("chunks", [16, None])
def test_multiband_asset_nodata_and_band_order(tmp_path: Path, chunks: int | None) -> None:
    # bands differ per position (no band read twice or swapped); band 2's nodata pixels
    # make the whole pixel invalid, as with separate single-band assets
    data = np.stack([np.full((40, 40), v, np.uint8) for v in (10, 20, 30, 40)])
    data[1, :5, :5] = 0
    path = tmp_path / "rgbn.tif"
    profile = dict(driver="GTiff", width=40, height=40, count=4, dtype="uint8", nodata=0)
    with rasterio.open(
        path, "w", crs="EPSG:25832", transform=from_origin(346000, 5648000, 0.5, 0.5), **profile
    ) as dst:
        dst.write(data)
    item = _local_item(path)
    item["properties"]["proj:shape"] = [40, 40]
    item["assets"]["image"]["eo:bands"] = [
        {"name": n, "common_name": n} for n in ("blue", "green", "red", "nir")
    ]
    grid = GridSpec("EPSG:25832", 0.5, 346000.0, 5647980.0, 346020.0, 5648000.0)

    ds = load_bands([item], grid, ("red", "green", "blue"), chunks=chunks).compute()

    for band, value in (("red", 30), ("green", 20), ("blue", 10)):
        values = ds[band].values[0]
        assert np.isnan(values[:5, :5]).all()
        np.testing.assert_allclose(values[5:, 5:], value / 255.0, rtol=1e-6)


@pytest.mark.parametrize("loader", ["odc", "stackstac"])
def test_eager_load_equals_the_lazy_cube(loader: str) -> None:
    clear = _s2_item()
    clear["id"] = "clear-copy"
    del clear["assets"]["scl"]
    bands = ("red", "green", "blue")

    lazy = load_bands([_s2_item(), clear], CLOUDY, bands, loader=loader, chunks=32)
    eager = load_bands([_s2_item(), clear], CLOUDY, bands, loader=loader, chunks=None)

    assert all(isinstance(eager[band].data, np.ndarray) for band in bands)
    xr.testing.assert_identical(eager, lazy.compute())


def test_reflectance_rgb_uses_fixed_stretch() -> None:
    ds = load_bands([_s2_item()], CLOUDY, ("red", "green", "blue"))

    rgb = rgb_composite(ds).compute()
    wide = rgb_composite(ds, stretch=(0.0, 1.0)).compute()

    red = ds.red.values
    expected = np.clip(red / 0.3, 0, 1)
    np.testing.assert_allclose(rgb.sel(band="red").values, expected, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(wide.sel(band="red").values, red, rtol=1e-6, equal_nan=True)
    assert np.nanmax(rgb.values) <= 1.0 and np.nanmin(rgb.values) >= 0.0


def test_rgb_composite_rejects_inverted_stretch() -> None:
    ds = load_bands([_s2_item()], CLOUDY, ("red", "green", "blue"))
    with pytest.raises(InputError, match=r"stretch must be \(low, high\)"):
        rgb_composite(ds, stretch=(0.3, 0.0))


def test_best_pixel_takes_first_valid_step_in_time_order() -> None:
    nan = np.nan
    steps = np.array(
        [
            [[[nan, 0.1], [nan, nan]]] * 3,
            [[[0.5, 0.6], [nan, nan]]] * 3,
            [[[0.9, 0.9], [0.7, nan]]] * 3,
        ],
        dtype=np.float32,
    )
    steps[2, 1, 1, 0] = nan  # step 2 is invalid at (1, 0) in one band only
    rgb = xr.DataArray(steps, dims=("time", "band", "y", "x"), coords={"band": ["r", "g", "b"]})

    best = best_pixel_composite(rgb)

    np.testing.assert_array_equal(best.valid.values, [[True, True], [False, False]])
    np.testing.assert_array_equal(best.source_index.values, [[1, 0], [-1, -1]])
    np.testing.assert_allclose(best.rgb.values[0], [[0.5, 0.1], [nan, nan]])
    assert best.rgb.dims == ("band", "y", "x")


# --- one tile's eager read ----------------------------------------------------------------------


@pytest.mark.parametrize("loader", ["odc", "stackstac"])
def test_tile_read_equals_the_composite_of_the_cube(loader: str) -> None:
    # the tiles' numpy path gives what the xarray composite of the cube gives, NaN included
    bands = ("red", "green", "blue")

    read = read_window([_s2_item()], CLOUDY, bands, loader=loader)
    rgb = rgb_array(read.bands, read.display_range)

    cube = load_bands([_s2_item()], CLOUDY, bands, loader=loader, chunks=None)
    expected = best_pixel_composite(rgb_composite(cube))
    assert rgb.dtype == np.float32 and rgb.shape == (3, *CLOUDY.shape)
    assert read.valid.dtype == bool and 0 < read.valid.sum() < read.valid.size  # SCL masked
    np.testing.assert_array_equal(read.valid, expected.valid.values)
    np.testing.assert_array_equal(rgb, expected.rgb.values)


def test_tile_read_takes_items_in_priority_order_not_time_order() -> None:
    # the plan lists the least cloudy item first; it wins even when it is the later date
    cloudy_item = _s2_item()
    later_clear = _clear_copy("later-clear", "2020-02-24T11:34:25Z")

    clear_first = read_window([later_clear, cloudy_item], CLOUDY, ("red",))
    cloudy_first = read_window([cloudy_item, later_clear], CLOUDY, ("red",))

    dn = _raw("B04.tif", CLOUDY).astype(np.float32)
    cloudy = np.isin(_raw("SCL.tif", CLOUDY, factor=2), sorted(SCL_INVALID))
    np.testing.assert_allclose(clear_first.bands["red"], dn * 2e-4, rtol=1e-6)
    np.testing.assert_allclose(
        cloudy_first.bands["red"], np.where(cloudy, dn * 2e-4, dn * 1e-4), rtol=1e-6
    )
    assert clear_first.valid.all() and cloudy_first.valid.all()


def test_rgb_array_stretches_clips_and_keeps_nan() -> None:
    red = np.array([[0.15, 0.6], [np.nan, -0.1]], np.float32)
    bands = {"red": red, "green": red * 0, "blue": red * 0}

    rgb = rgb_array(bands, (0.0, 0.3))

    np.testing.assert_allclose(rgb[0], [[0.5, 1.0], [np.nan, 0.0]])
    assert rgb.dtype == np.float32
    with pytest.raises(InputError, match="bands lacks"):
        rgb_array({"red": red}, (0.0, 0.3))


# --- grids and resolutions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bbox", "crs"),
    [
        ((6.80, 50.95, 6.82, 50.97), "EPSG:32632"),  # Köln
        ((-11.5, 24.7, -11.3, 24.9), "EPSG:32629"),  # tile 29RKH
        ((27.0, -14.5, 27.2, -14.3), "EPSG:32735"),  # tile 35MNM, southern hemisphere
    ],
)
def test_grid_for_aoi_picks_utm_zone_of_centre(bbox: tuple, crs: str) -> None:
    assert grid_for_aoi(bbox, 10.0).crs == crs


def test_grid_for_aoi_snaps_outward_to_resolution() -> None:
    bbox = (6.8106, 50.9558, 6.8178, 50.9604)
    grid = grid_for_aoi(bbox, 20.0)

    to_utm = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    left, bottom, right, top = to_utm.transform_bounds(*bbox, densify_pts=21)
    for edge in (grid.left, grid.bottom, grid.right, grid.top):
        assert edge % 20.0 == 0
    assert grid.left <= left < grid.left + 20 and grid.right - 20 < right <= grid.right
    assert grid.bottom <= bottom < grid.bottom + 20 and grid.top - 20 < top <= grid.top
    assert grid.shape == ((grid.top - grid.bottom) / 20, (grid.right - grid.left) / 20)


def test_grid_for_aoi_honours_explicit_crs() -> None:
    grid = grid_for_aoi((6.80, 50.95, 6.82, 50.97), 0.5, crs="EPSG:25832")
    assert grid.crs == "EPSG:25832"


@pytest.mark.parametrize(
    ("bbox", "resolution", "match"),
    [
        ((6.82, 50.95, 6.80, 50.97), 10.0, "west < east"),
        ((6.80, 50.95, 6.80, 50.97), 10.0, "west < east"),
        ((6.80, 50.97, 6.82, 50.95), 10.0, "south < north"),
        ((6.80, 50.95, 6.82), 10.0, r"\(west, south, east, north\)"),
        ((6.80, 50.95, 6.82, 50.97), 0.0, "resolution must be a number > 0"),
        ((6.80, 50.95, 6.82, 50.97), -10.0, "resolution must be a number > 0"),
    ],
)
def test_grid_for_aoi_rejects_bad_input(bbox: tuple, resolution: float, match: str) -> None:
    with pytest.raises(InputError, match=match):
        grid_for_aoi(bbox, resolution)


@pytest.mark.parametrize("collection", ["sentinel-2-l2a", "sentinel-2-c1-l2a"])
def test_default_resolution_of_sentinel2_is_10m(collection: str) -> None:
    assert default_resolution(collection) == 10.0


def test_default_resolution_of_local_imagery_is_native() -> None:
    assert default_resolution("local", _local_item()) == 0.5


def test_default_resolution_needs_an_item_for_unknown_collections() -> None:
    with pytest.raises(InputError, match="no default resolution for collection 'local'"):
        default_resolution("local")


# --- band names and scaling from real item metadata --------------------------------------------


def _first(name: str) -> dict:
    data = json.loads((STAC / name).read_text())
    return data["features"][0] if isinstance(data, dict) else data[0]


def test_band_aliases_resolve_per_provider() -> None:
    pc = _first("pc_sentinel-2-l2a_4items.json")
    c1 = _first("earthsearch-v1_sentinel-2-c1-l2a_10items.itemcollection.json")

    assert resolve_band(pc, "red").asset == "B04"
    assert resolve_band(pc, "scl").asset == "SCL"
    assert resolve_band(c1, "red").asset == "red"
    assert resolve_band(_s2_item(), "nir").asset == "nir"
    assert resolve_band(_local_item(), "blue").odc_name == "image.3"


@pytest.mark.parametrize(
    ("item", "asset", "expected"),
    [
        (lambda: _s2_item(), "red", (1e-4, 0.0)),  # baseline 02.14, raster:bands
        (lambda: _first("earthsearch-v1_sentinel-2-c1-l2a_10items.itemcollection.json"), "red",
         (1e-4, -0.1)),  # C1: raster:bands scale/offset
        (lambda: _first("pc_sentinel-2-l2a_4items.json"), "B04", (1e-4, -0.1)),  # baseline 05.10
        (lambda: _s2_item(), "scl", (1.0, 0.0)),  # categorical
        (lambda: _local_item(), "image.2", (1 / 255, 0.0)),  # uint8 read from the header
    ],
)  # fmt: skip
def test_reflectance_scaling(item, asset: str, expected: tuple[float, float]) -> None:
    assert reflectance_scaling(item(), asset) == pytest.approx(expected)


def test_reflectance_scaling_trusts_earthsearch_boa_offset_applied() -> None:
    item = _s2_item()
    item["properties"]["s2:processing_baseline"] = "04.00"
    assert reflectance_scaling(item, "red") == pytest.approx((1e-4, 0.0))  # raster:bands offset 0
    item["assets"]["red"]["raster:bands"][0]["offset"] = -0.1
    item["properties"]["earthsearch:boa_offset_applied"] = True
    assert reflectance_scaling(item, "red") == pytest.approx((1e-4, 0.0))


def test_reflectance_scaling_applies_boa_offset_from_baseline() -> None:
    item = _first("pc_sentinel-2-l2a_4items.json")
    item["properties"]["s2:processing_baseline"] = "03.01"
    assert reflectance_scaling(item, "B04") == pytest.approx((1e-4, 0.0))


# --- validation ------------------------------------------------------------------------------


def test_load_bands_rejects_empty_item_list() -> None:
    with pytest.raises(InputError, match="items must be a non-empty list"):
        load_bands([], CLOUDY)


def test_missing_band_names_item_band_and_assets() -> None:
    with pytest.raises(InputError, match=r"'oem_koeln_50'.*band 'nir'.*\['image'\]"):
        load_bands([_local_item()], LOCAL_GRID, ("red", "nir"))


def test_relative_href_is_rejected() -> None:
    item = _s2_item()
    item["assets"]["red"]["href"] = "B04.tif"
    with pytest.raises(InputError, match="hrefs must be absolute"):
        load_bands([item], CLOUDY, ("red",))


def test_unknown_loader_is_rejected() -> None:
    with pytest.raises(InputError, match="loader must be 'odc' or 'stackstac'"):
        load_bands([_s2_item()], CLOUDY, loader="gdal")  # type: ignore[arg-type]


def test_check_readable_accepts_good_assets() -> None:
    check_readable([_s2_item(), _local_item()], ("red", "green", "blue"))


def test_check_readable_names_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "B04.tif"
    item = _s2_item()
    item["assets"]["red"]["href"] = str(missing)
    with pytest.raises(FileNotFoundError, match=f"'{missing}' does not exist"):
        check_readable([item], ("red", "green"))


def test_check_readable_names_truncated_cog(tmp_path: Path) -> None:
    truncated = tmp_path / "B04.tif"
    truncated.write_bytes((S2_COGS / "B04.tif").read_bytes()[:300_000])
    item = _s2_item()
    item["assets"]["red"]["href"] = str(truncated)
    with pytest.raises(ValueError, match=f"'{truncated}' is not a readable raster"):
        check_readable([item], ("red",))


def test_check_readable_names_file_that_is_not_a_tiff(tmp_path: Path) -> None:
    junk = tmp_path / "image.tif"
    junk.write_text("not a GeoTIFF")
    with pytest.raises(ValueError, match=f"'{junk}' is not a readable raster"):
        check_readable([_local_item(junk)])
