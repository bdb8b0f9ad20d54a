"""Training chips for AlignEarth: date pairing, aligned cutting, validity, dataset and reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.transform import from_origin

from terrawatch.errors import InputError, NoScenesError, StoreMismatchError
from terrawatch.tasks.alignearth.chips import ChipRequest, cut_chips, pair_scenes, plan_chips
from terrawatch.tasks.alignearth.dataset import (
    ChipDataset,
    find_chip_dataset,
    heldout_mask,
    write_chip_dataset,
)
from terrawatch.tasks.core.catalog import search_items
from terrawatch.tasks.core.local_item import add_local_item
from terrawatch.tasks.core.output_grid import grid_for_aoi
from terrawatch.tasks.core.sar_composite import SarOptions

CRS = "EPSG:32632"
ORIGIN = (400_000.0, 5_600_000.0)  # left, top of every synthetic scene (7.6 E, 50.5 N)
RES = 10.0
BLOCK = 160.0  # metres: the pattern's blocks


# --- synthetic scenes (also used by the flow tests) -------------------------------------------


def lonlat_box(left: float, bottom: float, right: float, top: float) -> list[float]:
    """A UTM box (EPSG:32632) as lon/lat bounds."""
    to_lonlat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    return list(to_lonlat.transform_bounds(left, bottom, right, top))


def scene_aoi(size_m: float, inset: float = 100.0) -> str:
    """``W,S,E,N`` of a box ``inset`` metres inside a scene of ``size_m`` metres a side."""
    left, top = ORIGIN
    box = lonlat_box(left + inset, top - size_m + inset, left + size_m - inset, top - inset)
    return ",".join(f"{v:.7f}" for v in box)


def write_optical(catalog: Path, item_id: str, when: str, rgb: np.ndarray) -> Path:
    """An 8-bit RGB GeoTIFF (0 = nodata) at ORIGIN, 10 m, added as a local catalog item."""
    _, height, width = rgb.shape
    path = catalog.parent / "cogs" / f"{item_id}.tif"
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="COG", dtype="uint8", count=3, height=height, width=width, crs=CRS,
                   transform=from_origin(*ORIGIN, RES, RES), nodata=0, blocksize=128)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb)
    return add_local_item(path, catalog, datetime=when, item_id=item_id)


def write_sar(
    catalog: Path, item_id: str, when: str, vv_db: np.ndarray, res: float = RES,
    orbit: str = "descending",
) -> Path:  # fmt: skip
    """A Planetary Computer-like ``sentinel-1-rtc`` item on local float32 COGs (NaN: nodata)."""
    height, width = vv_db.shape
    left, top = ORIGIN
    assets = {}
    for pol, offset in (("vv", 0.0), ("vh", -7.0)):
        linear = np.where(np.isnan(vv_db), -32768.0, 10 ** ((vv_db + offset) / 10)).astype("f4")
        path = catalog.parent / "cogs" / f"{item_id}-{pol}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        profile = dict(driver="COG", dtype="float32", count=1, height=height, width=width,
                       crs=CRS, transform=from_origin(left, top, res, res), nodata=-32768.0,
                       blocksize=128)  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(linear, 1)
        assets[pol] = {"href": str(path), "roles": ["data"],
                       "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "raster:bands": [{"nodata": -32768, "data_type": "float32"}]}  # fmt: skip
    bounds = (left, top - height * res, left + width * res, top)
    west, south, east, north = lonlat_box(*bounds)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id,
        "collection": "sentinel-1-rtc", "links": [], "assets": assets,
        "geometry": {"type": "Polygon", "coordinates": [ring]}, "bbox": [west, south, east, north],
        "properties": {
            "datetime": when, "sat:orbit_state": orbit, "sar:polarizations": ["VV", "VH"],
            "sar:looks_equivalent_number": 4.4, "proj:epsg": 32632, "proj:shape": [height, width],
            "proj:transform": [res, 0.0, left, 0.0, -res, top], "proj:bbox": list(bounds),
        },
    }  # fmt: skip
    path = catalog / f"{item_id}.json"
    catalog.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(item))
    return path


def block_ids(size_m: float, res: float) -> np.ndarray:
    """Pattern block id (0..) of each pixel centre of a ``res`` grid at ORIGIN."""
    n = round(size_m / res)
    centres = (np.arange(n) + 0.5) * res
    blocks = (centres // BLOCK).astype(int)
    return blocks[:, None] * 100 + blocks[None, :]  # row block * 100 + col block


def optical_of(ids: np.ndarray) -> np.ndarray:
    """8-bit RGB that encodes the block id (never 0)."""
    rows, cols = ids // 100, ids % 100
    return np.stack([10 + 20 * rows, 10 + 20 * cols, np.full_like(ids, 99)]).astype(np.uint8)


def sar_db_of(ids: np.ndarray) -> np.ndarray:
    """VV dB that encodes the block id: -24 + row block + 12 x (col block odd)."""
    return (-24.0 + ids // 100 + 12.0 * (ids % 100 % 2)).astype(np.float32)


# --- pairing ----------------------------------------------------------------------------------


def _item(item_id: str, when: str, orbit: str | None = None) -> dict:
    props = {"datetime": when, **({"sat:orbit_state": orbit} if orbit else {})}
    return {"id": item_id, "bbox": [7.5, 50.4, 7.7, 50.6], "properties": props, "assets": {}}


def test_each_optical_day_pairs_with_the_nearest_pass_within_the_tolerance():
    optical = [_item("o1", "2024-06-01T10:30:00Z"), _item("o2", "2024-06-11T10:30:00Z"),
               _item("o3", "2024-06-25T10:30:00Z")]  # fmt: skip
    sar = [_item("s1", "2024-06-02T05:50:00Z", "descending"),
           _item("s2", "2024-06-09T17:20:00Z", "ascending"),
           _item("s3", "2024-06-12T05:50:00Z", "descending"),
           _item("s4", "2024-06-29T05:50:00Z", "descending")]  # fmt: skip
    pairs = pair_scenes(optical, sar, max_days=3)
    assert [([i["id"] for i in p.optical], [i["id"] for i in p.sar]) for p in pairs] == [
        (["o1"], ["s1"]),
        (["o2"], ["s3"]),  # 0.8 days after, nearer than s2 1.7 days before
    ]
    assert pairs[0].gap_days == pytest.approx(19.3333 / 24, abs=1e-3)


def test_passes_of_both_orbits_on_one_day_are_separate_acquisitions():
    optical = [_item("o1", "2024-06-01T16:00:00Z")]
    sar = [_item("desc", "2024-06-01T05:50:00Z", "descending"),
           _item("asc", "2024-06-01T17:20:00Z", "ascending")]  # fmt: skip
    (pair,) = pair_scenes(optical, sar, max_days=1)
    assert [i["id"] for i in pair.sar] == ["asc"]


def test_no_pair_within_the_tolerance_names_the_closest_dates():
    optical = [_item("o1", "2024-06-01T10:30:00Z")]
    sar = [_item("s1", "2024-06-06T10:30:00Z", "descending")]
    with pytest.raises(NoScenesError, match=r"no optical/SAR pair within max_days=3.*5\.00 days"):
        pair_scenes(optical, sar, max_days=3)


def test_negative_tolerance_is_refused():
    with pytest.raises(InputError, match="max_days must be a number >= 0"):
        pair_scenes([], [], max_days=-1)


def test_request_widens_the_sar_search_by_the_tolerance():
    request = ChipRequest.build(
        "7.5,50.4,7.7,50.6", "2024-06-01", "2024-06-30", "planetary-computer", max_days=2.5
    )
    assert request.sar_window() == ("2024-05-29", "2024-07-03")
    assert request.sar_collections == ("sentinel-1-rtc",)


def test_bad_chip_option_is_refused_with_its_name():
    with pytest.raises(InputError, match=r"min_valid must be in \(0, 1\], got 1\.5"):
        ChipRequest.build("7.5,50.4,7.7,50.6", "2024-06-01", "2024-06-30", "earth-search",
                          min_valid=1.5)  # fmt: skip


# --- cutting ----------------------------------------------------------------------------------

SIZE_M = 1920.0  # scenes 192 x 192 px at 10 m
CHIP = 32


def _build(catalog: Path, dataset: Path, **options) -> tuple:
    """Search the local catalog, plan, cut every job, write; returns (plan, dataset reader)."""
    params = dict(max_days=3, chip=CHIP, stride=CHIP, min_valid=0.9, holdout=0.2,
                  sar=SarOptions(speckle=None), max_cloud=None)  # fmt: skip
    request = ChipRequest.build(scene_aoi(SIZE_M), "2024-06-01", "2024-06-30", str(catalog),
                                ["local"], ["sentinel-1-rtc"], **{**params, **options})  # fmt: skip
    optical = search_items(request.catalog, request.aoi, request.start, request.end, ["local"])
    sar = search_items(request.catalog, request.aoi, *request.sar_window(), ["sentinel-1-rtc"])
    plan = plan_chips(optical, sar, request, str(dataset))
    parts = [cut_chips(job) for job in plan.jobs]
    write_chip_dataset(plan, parts)
    return plan, ChipDataset(dataset)


def _aoi_grid():
    bbox = [float(v) for v in scene_aoi(SIZE_M).split(",")]
    return grid_for_aoi(bbox, RES)


@pytest.fixture(scope="module")
def pattern_catalog(tmp_path_factory) -> Path:
    """One optical day and one SAR pass (20 m pixels, 1 day later) of the same block pattern."""
    catalog = tmp_path_factory.mktemp("pattern") / "catalog"
    write_optical(catalog, "opt-0601", "2024-06-01T10:30:00Z", optical_of(block_ids(SIZE_M, RES)))
    write_sar(catalog, "sar-0602", "2024-06-02T05:50:00Z", sar_db_of(block_ids(SIZE_M, 20.0)),
              res=20.0)  # fmt: skip
    return catalog


@pytest.fixture(scope="module")
def pattern_chips(pattern_catalog, tmp_path_factory):
    return _build(pattern_catalog, tmp_path_factory.mktemp("pattern-chips") / "chips.zarr")


def test_chips_of_both_sensors_show_the_same_place(pattern_chips):
    plan, data = pattern_chips
    ids = block_ids(SIZE_M, RES)
    grid = plan.grid
    row0, col0 = round((ORIGIN[1] - grid.top) / RES), round((grid.left - ORIGIN[0]) / RES)
    optical, sar = data.read(np.arange(len(data)))
    for index in range(len(data)):
        info = data.chip_info(index)
        r, c = row0 + info["row"], col0 + info["col"]
        expected = ids[r : r + CHIP, c : c + CHIP]
        assert np.array_equal(optical[index], optical_of(expected))
        level = np.round(255 * (sar_db_of(expected) + 25) / 25)
        assert np.abs(sar[index].astype(int) - level[None]).max() <= 1


def test_chips_tile_the_grid_from_its_origin(pattern_chips):
    plan, data = pattern_chips
    positions = sorted(
        (data.chip_info(i)["row"], data.chip_info(i)["col"]) for i in range(len(data))
    )
    side = plan.grid.shape[0] // CHIP
    assert positions == [(r * CHIP, c * CHIP) for r in range(side) for c in range(side)]


def test_chip_metadata_names_items_dates_bbox_and_crs(pattern_chips):
    plan, data = pattern_chips
    info = data.chip_info(0)
    assert info["optical_items"] == ["opt-0601"] and info["sar_items"] == ["sar-0602"]
    assert info["optical_time"].startswith("2024-06-01") and info["crs"] == CRS
    left, bottom, right, top = info["bbox"]
    assert right - left == top - bottom == CHIP * RES
    assert left == plan.grid.left + info["col"] * RES


def test_manifest_records_request_periods_tolerance_and_counts(pattern_chips):
    _, data = pattern_chips
    manifest = data.manifest
    assert manifest["request"]["start"] == "2024-06-01" and manifest["request"]["max_days"] == 3
    counts = manifest["counts"]
    assert counts["chips"] == len(data) == counts["train"] + counts["heldout"]
    assert counts["skipped_invalid"] == 0 and counts["pairs"] == 1
    assert manifest["pairs"][0]["gap_days"] == pytest.approx(19.33 / 24, abs=1e-3)


def test_chips_valid_on_too_little_of_either_sensor_are_skipped(tmp_path):
    grid = _aoi_grid()
    row0, col0 = round((ORIGIN[1] - grid.top) / RES), round((grid.left - ORIGIN[0]) / RES)
    ids = block_ids(SIZE_M, RES)
    rgb, vv = optical_of(ids), sar_db_of(ids)
    rgb[:, row0 : row0 + 16, col0 : col0 + CHIP] = 0  # chip (0, 0): half nodata in optical
    vv[row0 : row0 + 2, col0 + CHIP : col0 + 2 * CHIP] = np.nan  # chip (0, 1): 6 % in SAR
    vv[row0 : row0 + 8, col0 + 2 * CHIP : col0 + 3 * CHIP] = np.nan  # chip (0, 2): 25 % in SAR
    catalog = tmp_path / "catalog"
    write_optical(catalog, "opt", "2024-06-01T10:30:00Z", rgb)
    write_sar(catalog, "sar", "2024-06-02T05:50:00Z", vv)
    _, data = _build(catalog, tmp_path / "chips.zarr")
    kept = {(data.chip_info(i)["row"], data.chip_info(i)["col"]): i for i in range(len(data))}
    assert (0, 0) not in kept and (0, 2 * CHIP) not in kept and (0, CHIP) in kept
    assert data.manifest["counts"]["skipped_invalid"] == 2
    optical, sar = data.read(np.array([kept[(0, CHIP)]]))
    assert (optical[0, :, :2] == 0).all() and (sar[0, :, :2] == 0).all()  # invalid in both
    assert (optical[0, :, 2:] > 0).all()


def test_no_pair_in_the_catalog_is_a_clear_error(tmp_path):
    catalog = tmp_path / "catalog"
    ids = block_ids(SIZE_M, RES)
    write_optical(catalog, "opt", "2024-06-01T10:30:00Z", optical_of(ids))
    write_sar(catalog, "sar", "2024-06-08T05:50:00Z", sar_db_of(ids))
    with pytest.raises(NoScenesError, match="no optical/SAR pair within max_days=3"):
        _build(catalog, tmp_path / "chips.zarr")


def test_an_aoi_smaller_than_a_chip_is_refused(pattern_catalog, tmp_path):
    with pytest.raises(InputError, match="smaller than chip=512"):
        _build(pattern_catalog, tmp_path / "chips.zarr", chip=512, stride=512)


# --- dataset and reader -----------------------------------------------------------------------


def test_an_existing_dataset_of_the_same_request_is_found(pattern_chips):
    plan, data = pattern_chips
    assert find_chip_dataset(data.path, plan.request)["fingerprint"] == data.manifest["fingerprint"]


def test_an_existing_dataset_of_another_request_is_refused(pattern_chips):
    plan, data = pattern_chips
    other = ChipRequest(**{**plan.request.__dict__, "max_days": 5.0})
    with pytest.raises(StoreMismatchError, match=r"another request \(max_days: 3 there, 5\.0 now"):
        find_chip_dataset(data.path, other)


def test_held_out_split_is_by_location_and_deterministic(pattern_chips):
    _, data = pattern_chips
    again = ChipDataset(data.path)
    assert np.array_equal(data.heldout, again.heldout) and len(data.heldout) > 0
    held = {tuple(data.chip_info(i)["bbox"]) for i in data.heldout}
    train = {tuple(data.chip_info(i)["bbox"]) for i in data.train}
    assert not held & train


def test_held_out_fraction_counts_locations_and_every_date_at_them():
    bbox = np.array([[0, 0, 1, 1], [5, 0, 6, 1], [0, 0, 1, 1], [5, 0, 6, 1]], float)
    mask = heldout_mask(bbox, CRS, 0.5)
    assert mask.sum() == 2 and mask[0] == mask[2] and mask[1] == mask[3]


def test_batches_are_seeded_permutations_without_repeats(pattern_chips):
    _, data = pattern_chips
    steps = data.steps_per_epoch(4)
    epoch = np.concatenate([data.batch_indices(s, 4, seed=7) for s in range(steps)])
    assert len(set(epoch.tolist())) == len(epoch) == steps * 4
    assert set(epoch.tolist()) <= set(data.train.tolist())
    assert np.array_equal(
        data.batch_indices(3, 4, seed=7), ChipDataset(data.path).batch_indices(3, 4, seed=7)
    )
    assert not np.array_equal(data.batch_indices(0, 4, seed=7), data.batch_indices(0, 4, seed=8))


def test_batches_resume_at_a_step_with_the_same_chips(pattern_chips):
    _, data = pattern_chips
    full = [(s, o.copy()) for s, o, _ in data.batches(4, seed=1, start=0, stop=5)]
    resumed = [(s, o) for s, o, _ in data.batches(4, seed=1, start=3, stop=5)]
    assert [s for s, _ in resumed] == [3, 4]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(full[3:], resumed, strict=True))


def test_reading_from_zarr_and_from_memory_agree(pattern_chips):
    _, data = pattern_chips
    on_disk = ChipDataset(data.path, in_memory_bytes=0)
    indices = np.array([5, 1, 3])
    for a, b in zip(on_disk.read(indices), data.read(indices), strict=True):
        assert np.array_equal(a, b)


def test_a_batch_larger_than_the_training_chips_is_refused(pattern_chips):
    _, data = pattern_chips
    with pytest.raises(InputError, match="batch_size must be >= 2 and at most the"):
        data.steps_per_epoch(len(data.train) + 1)


def test_a_folder_that_is_not_a_chip_dataset_is_refused(pattern_chips, tmp_path):
    plan, _ = pattern_chips
    (tmp_path / "chips.zarr").mkdir()
    with pytest.raises(StoreMismatchError, match="is not a chip dataset"):
        find_chip_dataset(str(tmp_path / "chips.zarr"), plan.request)


def test_a_chip_job_whose_part_exists_is_not_redone(pattern_catalog, tmp_path):
    request = ChipRequest.build(scene_aoi(SIZE_M), "2024-06-01", "2024-06-30", str(pattern_catalog),
                                ["local"], ["sentinel-1-rtc"], chip=CHIP, stride=CHIP)  # fmt: skip
    optical = search_items(request.catalog, request.aoi, request.start, request.end, ["local"])
    sar = search_items(request.catalog, request.aoi, *request.sar_window(), ["sentinel-1-rtc"])
    job = plan_chips(optical, sar, request, str(tmp_path / "chips.zarr")).jobs[0]
    first, again = cut_chips(job), cut_chips(job)
    assert again.kept == first.kept > 0 and again.seconds == 0.0 < first.seconds
