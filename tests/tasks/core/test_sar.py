"""Tests for tasks.core.sar and tasks.core.speckle: PC RTC items on synthetic COGs, real GRD with
GCPs."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import shapely
import shapely.geometry
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from rasterio.transform import Affine
from scipy.ndimage import uniform_filter

from terrawatch.errors import InputError
from terrawatch.tasks.core.bands import resolve_band
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.output_grid import grid_for_aoi
from terrawatch.tasks.core.sar import (
    GRD_BETA_NOUGHT,
    check_sar_items,
    check_sar_readable,
    grd_item_from_product_info,
    is_radar_geometry,
    load_sar,
    sar_composite,
    select_orbit,
    warp_with_gcps,
)
from terrawatch.tasks.core.speckle import lee, refined_lee, speckle_filter
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
RTC_ITEMS = DATA / "stac" / "pc_sentinel-1-rtc_4items.json"
GRD = DATA / "cogs" / "sentinel-1-grd" / "GRD"
GRD_IW = GRD / "2018/7/16/IW/DV/S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B"
GRD_S1 = GRD / "2023/8/9/S1/DV/S1A_S1_GRDH_1SDV_20230809T020729_20230809T020754_049792_05FCE6_1175"
GRD_NO_FILES = (
    GRD / "2023/7/26/IW/DV/S1A_IW_GRDH_1SDV_20230726T183302_20230726T183327_049598_05F6CA_31E7"
)

pytestmark = pytest.mark.skipif(
    not (RTC_ITEMS.is_file() and (GRD_IW / "measurement" / "iw-vv.tiff").is_file()),
    reason=f"shared test data not found under {DATA} (see shared/data/PROVENANCE-stac.md)",
)

SHRINK = 100  # synthetic COGs: 1000 m pixels instead of 10 m, same origin and extent
NODATA = -32768.0
# row 0 of item 0: linear gamma0 probes (dB 0, -10, -20, -30, -40, +3), then invalid ones
PROBE_VV = [1.0, 0.1, 0.01, 1e-3, 1e-4, 2.0, NODATA, 0.0, np.nan, 0.1]
PROBE_VH = [0.1, 0.01, 1e-3, 1e-4, 1e-5, 1.0, 0.01, 0.01, 0.01, NODATA]
# item 0 = slice 30 of the datatake; its top-left 10 x 1 pixels of the shrunk COG
PROBE_GRID = GridSpec("EPSG:32633", 1000.0, 373180.0, 3423680.0, 383180.0, 3424680.0)
# inside the overlap of items 0 and 1 (x 388450..648440, y 3378400..3424680)
OVERLAP_GRID = GridSpec("EPSG:32633", 1000.0, 400000.0, 3390000.0, 420000.0, 3410000.0)
HOLE = (slice(20, 30), slice(30, 40))  # rows/cols of item 0's COG set to nodata in VV


# --- fixtures ---------------------------------------------------------------------------------


def _write_cog(path: Path, data: np.ndarray, transform: Affine, crs: str = "EPSG:32633") -> None:
    profile = {
        "driver": "COG",
        "dtype": "float32",
        "count": 1,
        "height": data.shape[0],
        "width": data.shape[1],
        "crs": crs,
        "transform": transform,
        "nodata": NODATA,
        "blocksize": 64,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32), 1)


def _rtc_pixels(index: int, pol: str, shape: tuple[int, int]) -> np.ndarray:
    """Item ``index``: constant gamma0 (VV 0.1 (index+1), VH a tenth of it); item 0 has probes."""
    level = 0.1 * (index + 1) * (1.0 if pol == "vv" else 0.1)
    data = np.full(shape, level, dtype=np.float32)
    if index == 0:
        data[0, : len(PROBE_VV)] = PROBE_VV if pol == "vv" else PROBE_VH
        if pol == "vv":
            data[HOLE] = NODATA
    return data


@pytest.fixture(scope="module")
def rtc_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Remote href -> local synthetic COG on the item's own grid, shrunk SHRINK times."""
    folder = tmp_path_factory.mktemp("rtc")
    files = {}
    for index, item in enumerate(json.loads(RTC_ITEMS.read_text())):
        props = item["properties"]
        height, width = (-(-n // SHRINK) for n in props["proj:shape"])
        res, _, left, _, _, top = props["proj:transform"][:6]
        transform = Affine(res * SHRINK, 0.0, left, 0.0, -res * SHRINK, top)
        for pol in ("vv", "vh"):
            path = folder / f"item{index}-{pol}.tif"
            _write_cog(path, _rtc_pixels(index, pol, (height, width)), transform)
            files[item["assets"][pol]["href"]] = path
    return files


def _shrunk(item: dict) -> dict:
    """The item with proj:shape/transform of the shrunk COGs (same origin, SHRINK x pixels)."""
    item = copy.deepcopy(item)
    props = item["properties"]
    props["proj:shape"] = [-(-n // SHRINK) for n in props["proj:shape"]]
    transform = list(props["proj:transform"])
    transform[0], transform[4] = transform[0] * SHRINK, transform[4] * SHRINK
    props["proj:transform"] = transform
    return item


@pytest.fixture
def rtc_items(rtc_files: dict[str, Path]) -> list[dict]:
    """The 4 PC RTC items, proj fields shrunk, vv/vh hrefs redirected to the local COGs."""
    items = [_shrunk(item) for item in json.loads(RTC_ITEMS.read_text())]
    for item in items:
        for pol in ("vv", "vh"):
            item["assets"][pol]["href"] = str(rtc_files[item["assets"][pol]["href"]])
    return items


def _grd_file(path: Path, bands: list[np.ndarray], source: Path = GRD_IW) -> Path:
    """A GeoTIFF in radar geometry (no CRS, no transform) with the real IW fixture's GCPs."""
    with rasterio.open(source / "measurement" / "iw-vv.tiff") as src:
        gcps, gcp_crs = src.gcps
    height, width = bands[0].shape
    with warnings.catch_warnings():  # not georeferenced until the GCPs are set
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", dtype="uint16", count=len(bands), height=height, width=width
        ) as dst:
            for index, band in enumerate(bands, start=1):
                dst.write(band.astype(np.uint16), index)
            dst.gcps = (gcps, gcp_crs)
    return path


def _iw_shape() -> tuple[int, int]:
    with rasterio.open(GRD_IW / "measurement" / "iw-vv.tiff") as src:
        return src.height, src.width


def _grid_around(lon: float, lat: float, crs: str, half: float, res: float) -> GridSpec:
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    x0, y0 = round(x / res) * res, round(y / res) * res
    return GridSpec(crs, res, x0 - half, y0 - half, x0 + half, y0 + half)


# --- RTC: values, nodata, mosaics --------------------------------------------------------------


@pytest.mark.parametrize("loader", ["odc", "stackstac"])
def test_rtc_gamma0_becomes_db_scaled_to_0_1(rtc_items: list[dict], loader: str) -> None:
    ds = load_sar(rtc_items[:1], PROBE_GRID, loader=loader).compute()

    vv, vh, ratio = (ds[name].values[0, 0] for name in ("vv", "vh", "vv_vh_ratio"))
    # VV (dB + 25) / 25, VH (dB + 32) / 27, ratio (VV - VH dB) / 15, all clipped to 0..1
    np.testing.assert_allclose(vv[:6], [1.0, 0.6, 0.2, 0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(vh[:6], [22 / 27, 12 / 27, 2 / 27, 0.0, 0.0, 1.0], atol=1e-6)
    expected_ratio = [2 / 3] * 5 + [10 * np.log10(2.0) / 15]
    np.testing.assert_allclose(ratio[:6], expected_ratio, atol=1e-6)
    assert ds["vv"].dtype == np.float32


def test_rtc_nodata_zero_and_nan_are_invalid_in_every_polarisation(rtc_items: list[dict]) -> None:
    ds = load_sar(rtc_items[:1], PROBE_GRID).compute()

    # col 6: VV -32768, col 7: VV 0, col 8: VV NaN, col 9: VH -32768 (VV valid)
    assert ds["valid"].values[0, 0].tolist() == [True] * 6 + [False] * 4
    for name in ("vv", "vh", "vv_vh_ratio"):
        assert np.isnan(ds[name].values[0, 0, 6:]).all()


def test_load_sar_is_lazy_on_exactly_the_grid(rtc_items: list[dict]) -> None:
    ds = load_sar(rtc_items[:2], OVERLAP_GRID, chunks=8)

    assert ds.odc.geobox == OVERLAP_GRID.geobox
    assert isinstance(ds["vv"].data, da.Array)
    assert ds["vv"].chunks == ((1,), *OVERLAP_GRID.tiles(8).chunks)
    assert ds.attrs["radiometry"] == "gamma0_rtc"
    assert ds.attrs["orbit_state"] == "descending"


@pytest.mark.parametrize("speckle", [None, "lee"])
def test_eager_load_gives_the_lazy_cube_in_numpy(
    rtc_items: list[dict], speckle: str | None
) -> None:
    # the flood tiles read eagerly; two items with a hole, filtered across chunk borders
    lazy = load_sar(rtc_items[:2], OVERLAP_GRID, speckle=speckle, window=5, chunks=7).compute()
    eager = load_sar(rtc_items[:2], OVERLAP_GRID, speckle=speckle, window=5, chunks=None)

    assert all(isinstance(eager[name].data, np.ndarray) for name in eager.data_vars)
    assert eager.attrs == lazy.attrs
    for name in lazy.data_vars:
        np.testing.assert_allclose(eager[name].values, lazy[name].values, rtol=1e-5)
        np.testing.assert_array_equal(np.isnan(eager[name].values), np.isnan(lazy[name].values))


def test_items_of_one_solar_day_fuse_first_valid_wins(rtc_items: list[dict]) -> None:
    ds = load_sar(rtc_items[:2], OVERLAP_GRID).compute()

    assert ds.sizes["time"] == 1
    assert ds.attrs["stac_item_ids"] == [f"{rtc_items[0]['id']},{rtc_items[1]['id']}"]
    vv = ds["vv"].values[0]
    # item 0 (VV 0.1 -> 0.6) wins; inside its VV hole item 1 (VV 0.2) fills both polarisations
    hole = np.zeros(vv.shape, bool)
    hole[5:15, 3:13] = True  # HOLE: rows 20..30, cols 30..40 of item 0 -> grid rows 5..14
    np.testing.assert_allclose(vv[~hole], 0.6, atol=1e-6)
    np.testing.assert_allclose(vv[hole], (10 * np.log10(0.2) + 25) / 25, atol=1e-6)
    np.testing.assert_allclose(ds["vh"].values[0][hole], (10 * np.log10(0.02) + 32) / 27, atol=1e-6)


def test_groupby_id_keeps_items_apart(rtc_items: list[dict]) -> None:
    ds = load_sar(rtc_items[:2], OVERLAP_GRID, groupby="id")

    assert ds.sizes["time"] == 2
    assert ds.attrs["stac_item_ids"] == [rtc_items[1]["id"], rtc_items[0]["id"]]  # time order


def test_patch_url_redirects_the_remote_hrefs(rtc_files: dict[str, Path]) -> None:
    items = [_shrunk(item) for item in json.loads(RTC_ITEMS.read_text())[:1]]

    ds = load_sar(items, PROBE_GRID, patch_url=lambda href: str(rtc_files[href])).compute()

    np.testing.assert_allclose(ds["vv"].values[0, 0, :3], [1.0, 0.6, 0.2], atol=1e-6)


def test_lee_on_load_keeps_a_constant_field_constant(rtc_items: list[dict]) -> None:
    ds = load_sar(rtc_items[1:2], OVERLAP_GRID, speckle="lee", window=5, chunks=7).compute()

    np.testing.assert_allclose(ds["vv"].values, (10 * np.log10(0.2) + 25) / 25, atol=1e-6)
    assert ds.attrs["speckle_filter"] == "lee 5x5 (linear power)"


# --- the composite for the encoder -------------------------------------------------------------


def test_default_composite_is_grey_vv_in_three_channels(rtc_items: list[dict]) -> None:
    ds = load_sar(rtc_items[:1], PROBE_GRID)

    rgb = sar_composite(ds).compute()

    assert rgb.dims == ("time", "band", "y", "x")
    assert rgb.attrs["channels"] == ["vv", "vv", "vv"]
    for band in range(3):
        np.testing.assert_array_equal(rgb.values[:, band], ds["vv"].values)


def test_dual_composite_is_vv_vh_ratio(rtc_items: list[dict]) -> None:
    ds = load_sar(rtc_items[:1], PROBE_GRID)

    rgb = sar_composite(ds, "dual").compute()

    assert rgb.attrs["channels"] == ["vv", "vh", "vv_vh_ratio"]
    np.testing.assert_array_equal(rgb.values[:, 2], ds["vv_vh_ratio"].values)


def test_dual_composite_needs_both_polarisations(rtc_items: list[dict]) -> None:
    ds = load_sar(rtc_items[:1], PROBE_GRID, polarizations=("vv",))

    with pytest.raises(InputError, match="'dual' needs a co-pol and a cross-pol"):
        sar_composite(ds, "dual")


# --- bad input ---------------------------------------------------------------------------------


def test_mixed_orbits_are_refused_naming_the_items(rtc_items: list[dict]) -> None:
    rtc_items[1]["properties"]["sat:orbit_state"] = "ascending"

    with pytest.raises(InputError, match=r"mix orbit directions.*ascending: '.*053498.*--orbit"):
        load_sar(rtc_items[:2], OVERLAP_GRID)


def test_mixed_polarisations_are_refused(rtc_items: list[dict]) -> None:
    rtc_items[0]["properties"]["sar:polarizations"] = ["VV"]

    with pytest.raises(InputError, match=r"mix polarisation sets.*\['vv'\]"):
        check_sar_items(rtc_items)


def test_polarisation_not_in_the_items_is_refused(rtc_items: list[dict]) -> None:
    with pytest.raises(InputError, match=r"polarizations \['hh'\] are not in the items"):
        load_sar(rtc_items[:1], PROBE_GRID, polarizations=("vv", "hh"))


@pytest.mark.parametrize("pols", ["vv", (), ("vv", "vv"), ("vv", "xx")])
def test_bad_polarizations_argument(rtc_items: list[dict], pols: object) -> None:
    with pytest.raises(InputError, match="polarizations must be a non-empty sequence"):
        load_sar(rtc_items[:1], PROBE_GRID, polarizations=pols)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"speckle": "median"}, "speckle must be None or one of"),
        ({"speckle": "lee", "window": 4}, "window must be an odd int"),
        ({"speckle": "refined_lee", "window": 5}, "window must be 7 for speckle='refined_lee'"),
        ({"grd": "maybe"}, "grd must be 'warp' or 'refuse'"),
    ],
)
def test_bad_options_are_refused(rtc_items: list[dict], options: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        load_sar(rtc_items[:1], PROBE_GRID, **options)


def test_select_orbit_keeps_one_direction(rtc_items: list[dict]) -> None:
    rtc_items[3]["properties"]["sat:orbit_state"] = "ascending"

    kept = select_orbit(rtc_items, "ascending")

    assert [item["id"] for item in kept] == [rtc_items[3]["id"]]


def test_readable_check_catches_a_projected_item_whose_file_has_no_crs(
    rtc_items: list[dict],
) -> None:
    rtc_items[0]["assets"]["vv"]["href"] = str(GRD_IW / "measurement" / "iw-vv.tiff")

    with pytest.raises(ValueError, match=r"has proj:\* metadata but its file .* has no CRS"):
        check_sar_readable(rtc_items[:1])


def test_readable_check_passes_on_rtc_items(rtc_items: list[dict]) -> None:
    check_sar_readable(rtc_items)


# --- GRD in radar geometry ---------------------------------------------------------------------


def test_grd_item_from_product_info_is_radar_geometry() -> None:
    item = grd_item_from_product_info(GRD_IW / "productInfo.json")

    assert sorted(item["assets"]) == ["vh", "vv"]
    assert resolve_band(item, "vv").asset == "vv"
    assert is_radar_geometry(item)
    # 00:40 UTC at 77 E is ~05:50 local solar time: a descending pass
    assert check_sar_items([item], ("vv", "vh")).orbit_state == "descending"


def test_readable_check_passes_on_grd_with_gcps() -> None:
    check_sar_readable([grd_item_from_product_info(GRD_IW)])


def test_grd_product_without_local_measurements_is_refused() -> None:
    with pytest.raises(FileNotFoundError, match=r"no measurement/\*\.tiff file beside"):
        grd_item_from_product_info(GRD_NO_FILES)


def test_grd_warped_with_gcps_covers_the_product_footprint() -> None:
    item = grd_item_from_product_info(GRD_IW)
    grid = grid_for_aoi((75.4, 9.0, 78.4, 11.4), 1000.0)

    ds = load_sar([item], grid).compute()

    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform
    footprint = shapely.transform(
        shapely.geometry.shape(item["geometry"]),
        lambda xy: np.column_stack(to_grid(xy[:, 0], xy[:, 1])),
    )
    inside = rasterize([footprint], out_shape=grid.shape, transform=grid.geobox.affine) == 1
    valid = ds["valid"].values[0]
    iou = (valid & inside).sum() / (valid | inside).sum()
    assert iou > 0.97
    assert ds.attrs["radiometry"] == "beta0_approx_uncalibrated_grd"


def test_gcp_warp_puts_each_source_pixel_where_its_gcp_says(tmp_path: Path) -> None:
    rows, cols = np.indices(_iw_shape())
    path = _grd_file(tmp_path / "index.tif", [cols + 1, rows + 1])
    with rasterio.open(path) as src:
        gcps = src.gcps[0]

    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32643", always_xy=True)
    for gcp in (gcps[24], gcps[115], gcps[185]):  # interior GCPs, spread along the swath
        x, y = to_utm.transform(gcp.x, gcp.y)  # centre of pixel (10, 10) of a 21 x 21 grid
        grid = GridSpec("EPSG:32643", 100.0, x - 1050, y - 1050, x + 1050, y + 1050)
        col = warp_with_gcps(str(path), grid, index=1).compute()[0, 10, 10]
        row = warp_with_gcps(str(path), grid, index=2).compute()[0, 10, 10]
        # source pixel (r, c) spans [r, r + 1) x [c, c + 1) and holds (r + 1, c + 1); GDAL's
        # approximate transformer may stray by its 0.125 px error threshold
        assert col - 1 - 0.125 <= gcp.col <= col + 0.125
        assert row - 1 - 0.125 <= gcp.row <= row + 0.125


def test_grd_dn_becomes_approximate_beta0(tmp_path: Path) -> None:
    shape = _iw_shape()
    item = grd_item_from_product_info(GRD_IW)
    item["assets"]["vv"]["href"] = str(_grd_file(tmp_path / "vv.tif", [np.full(shape, 237)]))
    item["assets"]["vh"]["href"] = str(_grd_file(tmp_path / "vh.tif", [np.full(shape, 75)]))
    grid = _grid_around(77.0, 10.2, "EPSG:32643", half=2000.0, res=1000.0)

    lazy = load_sar([item], grid).compute()
    eager = load_sar([item], grid, chunks=None)  # a flood tile's read

    db_vh = 20 * np.log10(75 / GRD_BETA_NOUGHT)  # beta0 = (DN / 237)^2
    for ds in (lazy, eager):
        np.testing.assert_allclose(ds["vv"].values, 1.0, atol=1e-6)  # 0 dB
        np.testing.assert_allclose(ds["vh"].values, (db_vh + 32) / 27, atol=1e-6)
    assert isinstance(eager["vv"].data, np.ndarray)


def test_grd_can_be_refused_by_name() -> None:
    item = grd_item_from_product_info(GRD_IW)
    grid = _grid_around(77.0, 10.2, "EPSG:32643", half=2000.0, res=1000.0)

    with pytest.raises(InputError, match=r"'S1A_IW_GRDH_1SDV_20180716T004042.*radar geometry"):
        load_sar([item], grid, grd="refuse")


def test_grd_file_without_gcps_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bare.tif"
    grid = _grid_around(77.0, 10.2, "EPSG:32643", half=2000.0, res=1000.0)

    with warnings.catch_warnings():  # the bare file is not georeferenced: that is the point
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", dtype="uint16", count=1, height=8, width=8
        ) as f:
            f.write(np.ones((8, 8), np.uint16), 1)
        with pytest.raises(ValueError, match="has no CRS and no GCPs"):
            warp_with_gcps(str(path), grid)


def test_rtc_and_grd_items_cannot_mix(rtc_items: list[dict]) -> None:
    grd = grd_item_from_product_info(GRD_IW)
    grd["properties"]["sat:orbit_state"] = "descending"

    with pytest.raises(InputError, match="mix map-projected RTC items and radar-geometry GRD"):
        check_sar_items([rtc_items[0], grd])


def test_stripmap_grd_with_one_polarisation_file_loads_that_one() -> None:
    item = grd_item_from_product_info(GRD_S1)
    grid = _grid_around(55.35, -4.7, "EPSG:32740", half=5000.0, res=1000.0)

    ds = load_sar([item], grid, polarizations=("vh",)).compute()

    assert list(item["assets"]) == ["vh"]
    assert ds["valid"].values.all()


# --- speckle filters ----------------------------------------------------------------------------

ENL = 4.4


def _speckle(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Unit-mean gamma speckle of a 4.4-look intensity image."""
    return np.random.default_rng(seed).gamma(ENL, 1.0 / ENL, shape).astype(np.float32)


@pytest.mark.parametrize("method", ["lee", "refined_lee"])
def test_filter_reduces_speckle_variance_and_keeps_the_mean(method: str) -> None:
    field = 0.1 * _speckle((128, 128))

    out = speckle_filter(field, method, 7, ENL)

    assert out.var() < field.var() / 10
    assert abs(out.mean() / field.mean() - 1) < 0.02


def test_lee_keeps_more_edge_contrast_than_a_box_mean() -> None:
    step = np.where(np.arange(128) < 64, 0.02, 0.2)[None, :] * _speckle((256, 128))
    box = uniform_filter(step, 7)

    out = lee(step, 7, ENL)

    contrast = out[:, 64].mean() / out[:, 63].mean()  # true contrast 10
    assert contrast > 3
    assert contrast > 2 * box[:, 64].mean() / box[:, 63].mean()


def test_refined_lee_keeps_the_edge_sharp() -> None:
    step = np.where(np.arange(128) < 64, 0.02, 0.2)[None, :] * _speckle((256, 128))

    out = refined_lee(step, ENL)

    np.testing.assert_allclose(out[:, 63].mean(), 0.02, rtol=0.5)
    np.testing.assert_allclose(out[:, 64].mean(), 0.2, rtol=0.15)


@pytest.mark.parametrize("method", ["lee", "refined_lee"])
def test_filter_is_the_same_whatever_the_chunking(method: str) -> None:
    field = 0.1 * _speckle((1, 96, 96))
    field[0, 30:40, 50:70] = np.nan
    field[0, :4] = np.nan

    whole = speckle_filter(field, method)
    chunked = speckle_filter(da.from_array(field, chunks=(1, 17, 23)), method).compute()

    np.testing.assert_allclose(chunked, whole, rtol=1e-5)
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(field))
