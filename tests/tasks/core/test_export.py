"""Exports of cube layers on real Zarr stores: COG (rio-cogeo validation, mode overviews,
colour table), class polygons merged across chunk seams, building outlines and road graphs."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import zarr
from rasterio.features import rasterize, sieve
from rio_cogeo.cogeo import cog_validate
from scipy import ndimage
from skimage.measure import label
from skimage.morphology import skeletonize

from terrawatch.errors import InputError, OutputExistsError
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.change.cube import CHANGE_CUBE, ChangeStep
from terrawatch.tasks.core import export_polygons
from terrawatch.tasks.core.cube_store import prepare_step, write_cube_tile
from terrawatch.tasks.core.cube_types import NODATA, CubeKind, TimeStep
from terrawatch.tasks.core.export import VectorOptions, export_layer
from terrawatch.tasks.core.export_buildings import building_outlines
from terrawatch.tasks.core.export_polygons import polygonize
from terrawatch.tasks.core.export_roads import road_centerlines, skeleton_pixels
from terrawatch.tasks.core.export_source import open_layer
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.flood.cube import FLOOD_CUBE, FloodStep, flooded_mask
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE

CHUNK = 64
RES = 2.0
GRID = GridSpec("EPSG:32632", RES, 350_000.0, 5_640_000.0, 350_400.0, 5_640_360.0)  # 180 x 200
CLASSES = parse_class_names(["background", "building,house", "road,street", "water,river"])
STEP = TimeStep("2024-06-01", "2024-06-30", ("a",))


def _write_cube(
    path: Path, kind: CubeKind, step: TimeStep, arrays: dict[str, np.ndarray], grid=GRID
) -> str:
    """A finished one-step cube of ``kind`` holding ``arrays`` (full grid, stored form)."""
    store = str(path)
    plan = prepare_step(store, grid, CLASSES, step, {"run_id": "r"}, CHUNK, kind)
    height, width = grid.shape
    for row in range(0, height, CHUNK):
        for col in range(0, width, CHUNK):
            tile = {
                v.name: arrays[v.name][row : row + CHUNK, col : col + CHUNK] for v in kind.inputs
            }
            tile_index = (row // CHUNK, col // CHUNK)
            write_cube_tile(store, kind, plan.time_index, tile_index, tile, CHUNK)
    return store


def classes_of(store: str) -> list[dict]:
    """The cube's class table: names, values and the palette's colours."""
    return zarr.open_group(store, mode="r").attrs["classes"]


def _landcover_cube(path: Path, labels: np.ndarray, grid: GridSpec = GRID) -> str:
    confidence = np.where(labels == NODATA, NODATA, 80).astype(np.uint8)
    arrays = {"landcover": labels, "confidence": confidence}
    return _write_cube(path, LANDCOVER_CUBE, STEP, arrays, grid)


def _blobs(seed: int = 0) -> np.ndarray:
    """Smooth random regions of every class, a no-data strip, and a ring straddling seams."""
    rng = np.random.default_rng(seed)
    labels = ndimage.median_filter(rng.integers(0, 4, GRID.shape).astype(np.uint8), 9)
    labels[:, :3] = NODATA
    labels[40:90, 40:90] = 3  # a water ring around an island, centred on the seam corner (64, 64)
    labels[55:75, 55:75] = 0
    return labels


def test_cog_is_valid_with_mode_overviews_colour_table_and_class_names(tmp_path: Path) -> None:
    labels = np.zeros(GRID.shape, np.uint8)
    labels[:, 100:] = 3
    labels[0::2, 0::2] = 1  # one pixel in four: nearest would pick it, mode must not
    store = _landcover_cube(tmp_path / "cube.zarr", labels)
    out = tmp_path / "landcover.tif"
    export_layer(open_layer(store), out)
    from terrawatch.tasks.core.export_cog import export_cog

    small = export_cog(open_layer(store), tmp_path / "small_blocks.tif", blocksize=64)
    for path in (out, small):
        valid, errors, warnings = cog_validate(str(path))
        assert valid and not errors and not warnings, (errors, warnings)
    with rasterio.open(small) as src:
        assert src.overviews(1) == [2, 4]
        assert src.nodata == NODATA
        assert src.tags()["OVERVIEW_RESAMPLING"] == "MODE"
        assert src.tags()["CLASS_3"] == "water" and src.descriptions == ("landcover",)
        water = next(c["color"] for c in classes_of(store) if c["value"] == 3).lstrip("#")
        assert src.colormap(1)[3][:3] == tuple(int(water[i : i + 2], 16) for i in (0, 2, 4))
        assert src.colormap(1)[NODATA][3] == 0
        np.testing.assert_array_equal(src.read(1), labels)
        assert src.crs.to_epsg() == 32632 and src.transform.a == RES
    with rasterio.open(small, OVERVIEW_LEVEL=0) as level:
        half = level.read(1)
    np.testing.assert_array_equal(half[:, :50], 0)  # mode of {1, 0, 0, 0}
    np.testing.assert_array_equal(half[:, 50:], 3)


@pytest.mark.parametrize("batch", [None, 7], ids=["one-batch", "cleaned-in-batches-of-7"])
def test_polygon_union_equals_the_class_raster_and_no_polygon_is_cut_at_a_seam(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int | None
) -> None:
    if batch:  # the memory bound: polygons cleaned a batch at a time stay a valid coverage
        monkeypatch.setattr(export_polygons, "CLEAN_BATCH", batch)
    labels = _blobs()
    store = _landcover_cube(tmp_path / "cube.zarr", labels)
    frame = polygonize(open_layer(store))
    layer = open_layer(store)
    burned = rasterize(
        zip(frame.geometry, frame["value"], strict=True),
        out_shape=GRID.shape,
        transform=layer.transform,
        fill=NODATA,
        dtype="uint8",
    )
    np.testing.assert_array_equal(burned, labels)
    assert frame.geometry.is_valid.all()
    assert shapely.coverage_is_valid(frame.geometry.values)
    for value in range(4):  # one polygon per connected region: none is split at a chunk seam
        regions = label(labels == value, connectivity=1)
        mine = frame[frame["value"] == value]
        assert len(mine) == regions.max()
        pixels = np.sort(np.bincount(regions.ravel())[1:])
        np.testing.assert_array_equal(np.sort(mine["area_m2"].values / RES**2), pixels)
    assert (frame.geom_type == "Polygon").all()
    ring = frame[(frame["value"] == 3) & frame.intersects(shapely.Point(_xy(layer, 45, 45)))]
    assert len(ring) == 1 and len(ring.geometry.iloc[0].interiors) == 1  # the hole is kept
    assert (frame["confidence"] == 80).all() and set(frame["class"]) <= set(CLASSES.names)


def _xy(layer, row: float, col: float) -> tuple[float, float]:
    return layer.transform * (col + 0.5, row + 0.5)


def test_simplified_polygons_keep_their_topology_and_stay_within_a_pixel(tmp_path: Path) -> None:
    labels = _blobs(1)
    layer = open_layer(_landcover_cube(tmp_path / "cube.zarr", labels))
    raw = polygonize(layer)
    frame = polygonize(layer, simplify=RES)
    assert len(frame) == len(raw)
    assert shapely.coverage_is_valid(frame.geometry.values)  # no overlaps between neighbours
    gaps = shapely.union_all(raw.geometry.values).symmetric_difference(
        shapely.union_all(frame.geometry.values)
    )
    assert gaps.area < 1.0  # the coverage's outline moves only at its own boundary, no slivers
    assert frame["area_m2"].sum() == pytest.approx(raw["area_m2"].sum(), rel=0.01)
    assert sum(shapely.get_num_coordinates(frame.geometry.values)) < sum(
        shapely.get_num_coordinates(raw.geometry.values)
    )
    burned = rasterize(
        zip(frame.geometry, frame["value"], strict=True),
        GRID.shape,
        transform=layer.transform,
        fill=NODATA,
    )
    edges = ndimage.morphological_gradient(labels, size=3) > 0
    assert not np.any((burned != labels) & ~ndimage.binary_dilation(edges))
    big = polygonize(layer, simplify=RES, min_area=200.0)
    assert (big["area_m2"] >= 200.0).all() and len(big) < len(frame)


def _speckled(seed: int = 2) -> np.ndarray:
    """Blobs sprinkled with one-pixel specks of every class, on every chunk seam too."""
    rng = np.random.default_rng(seed)
    labels = _blobs(seed)
    speck = rng.random(GRID.shape) < 0.02
    labels[speck] = rng.integers(0, 4, int(speck.sum()))
    labels[:, :3] = NODATA
    labels[104, 1] = 1  # an island in no data: nothing to join, so it is dropped
    return labels


def test_min_area_absorbs_small_regions_into_neighbours_without_gaps(tmp_path: Path) -> None:
    labels = _speckled()
    layer = open_layer(_landcover_cube(tmp_path / "cube.zarr", labels))
    threshold = 20  # pixels: the halo reaches past the 64-pixel chunks' seams
    frame = polygonize(layer, min_area=threshold * RES**2)
    burned = rasterize(
        zip(frame.geometry, frame["value"], strict=True),
        out_shape=GRID.shape,
        transform=layer.transform,
        fill=NODATA,
        dtype="uint8",
    )
    island = np.zeros(GRID.shape, bool)
    island[104, 1] = True
    np.testing.assert_array_equal(burned == NODATA, (labels == NODATA) | island)  # no gap
    assert shapely.coverage_is_valid(frame.geometry.values)
    assert (frame["area_m2"] >= threshold * RES**2).all()
    assert len(frame) < len(polygonize(layer)) / 5
    for value in range(4):  # still one polygon per region of the sieved raster
        assert (frame["value"] == value).sum() == label(burned == value, connectivity=1).max()
    valid = labels != NODATA
    whole = np.where(valid, sieve(labels, threshold, mask=valid, connectivity=4), labels)
    assert np.mean(burned != whole) < 0.005  # as GDAL's sieve of the whole raster, chunk-wise


def test_streamed_files_hold_the_same_polygons_in_many_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = _blobs()
    layer = open_layer(_landcover_cube(tmp_path / "cube.zarr", labels))
    expected = polygonize(layer)  # one batch
    monkeypatch.setattr(export_polygons, "CLEAN_BATCH", 7)
    assert len(list(export_polygons.polygon_batches(layer))) > 3
    vertices = sum(shapely.get_num_coordinates(expected.geometry.values))
    for suffix in ("parquet", "gpkg", "geojson"):
        path, count = export_layer(layer, tmp_path / f"c.{suffix}")
        back = gpd.read_parquet(path) if suffix == "parquet" else gpd.read_file(path)
        assert count == len(back) == len(expected)
        assert back.crs.to_epsg() == (4326 if suffix == "geojson" else 32632)
        if suffix == "geojson":  # WGS 84, coordinates rounded to 7 decimals (RFC 7946)
            assert back.to_crs(32632).area.sum() == pytest.approx(expected.area.sum())
            continue
        np.testing.assert_array_equal(np.sort(back["area_m2"]), np.sort(expected["area_m2"]))
        assert shapely.coverage_is_valid(back.geometry.values)
        # shared edges cleaned as in one batch: no pixel-corner vertices left at batch borders
        assert sum(shapely.get_num_coordinates(back.geometry.values)) <= 1.02 * vertices
        burned = rasterize(
            zip(back.geometry, back["value"], strict=True),
            out_shape=GRID.shape,
            transform=layer.transform,
            fill=NODATA,
            dtype="uint8",
        )
        np.testing.assert_array_equal(burned, labels)
    nothing = np.full(GRID.shape, NODATA, np.uint8)
    empty = open_layer(_landcover_cube(tmp_path / "empty.zarr", nothing))
    path, count = export_layer(empty, tmp_path / "empty.parquet")
    assert count == 0 and len(gpd.read_parquet(path)) == 0


def _road_grid() -> np.ndarray:
    labels = np.zeros((400, 400), np.uint8)
    for p in (60, 200, 340):
        labels[p - 3 : p + 4, :] = 2
        labels[:, p - 3 : p + 4] = 2
    labels[120:123, 200:208] = 2  # a 5 px whisker off a road: a spur to prune
    return labels


def test_road_grid_gives_its_junctions_and_block_lengths(tmp_path: Path) -> None:
    grid = GridSpec("EPSG:32632", RES, 350_000.0, 5_640_000.0, 350_800, 5_640_800)  # 400 x 400
    layer = open_layer(_landcover_cube(tmp_path / "cube.zarr", _road_grid(), grid))
    lines = road_centerlines(layer)
    ends = lines[["start_node", "start_degree"]].values.tolist()
    ends += lines[["end_node", "end_degree"]].values.tolist()
    degree = dict(map(tuple, ends))
    assert sum(d >= 3 for d in degree.values()) == 9
    assert sum(d == 1 for d in degree.values()) == 12  # roads leave the grid: 12 ends
    blocks = lines[(lines["start_degree"] == 4) & (lines["end_degree"] == 4)]
    assert len(blocks) == 12
    np.testing.assert_allclose(blocks["length_m"], 140 * RES, rtol=0.02)
    assert (lines.geom_type == "LineString").all() and lines.crs.to_epsg() == 32632
    unpruned = road_centerlines(layer, min_spur=0.0)
    assert len(unpruned) == len(lines) + 2  # the whisker, and the road it split in two


def test_road_skeleton_by_chunk_is_the_skeleton_of_the_whole_step(tmp_path: Path) -> None:
    roads = _road_grid()
    rr, cc = np.mgrid[:400, :400]
    roads[np.abs(rr - cc) <= 4] = 2  # a diagonal avenue crossing chunk corners and seams
    grid = GridSpec("EPSG:32632", RES, 350_000.0, 5_640_000.0, 350_800, 5_640_800)
    for name, labels, g in (("grid", roads, grid), ("blobs", _blobs(3), GRID)):
        layer = open_layer(_landcover_cube(tmp_path / f"{name}.zarr", labels, g))
        assert layer.chunk_shape == (CHUNK, CHUNK)
        rows, cols = skeleton_pixels(layer, 2)
        whole = np.zeros(labels.shape, bool)
        whole[rows, cols] = True
        assert rows.size == whole.sum()  # no pixel kept by two chunks
        np.testing.assert_array_equal(whole, skeletonize(labels == 2))


def test_building_outlines_are_regularised(tmp_path: Path) -> None:
    labels = np.zeros(GRID.shape, np.uint8)
    labels[60:90, 50:80] = 1  # a square across the seam at row/col 64
    labels[100:140, 120:135] = 1  # an L-shaped building
    labels[125:140, 135:170] = 1
    blob = np.hypot(*np.mgrid[-12:13, -12:13]) <= 12  # a round silo: no rectangle
    labels[20:45, 120:145][blob] = 1
    layer = open_layer(_landcover_cube(tmp_path / "cube.zarr", labels))
    frame = building_outlines(layer)
    assert len(frame) == 3 and (frame["class"] == "building").all()
    assert frame.geometry.is_valid.all()

    def at(row: int, col: int) -> gpd.GeoSeries:
        return frame[frame.contains(shapely.Point(_xy(layer, row, col)))].iloc[0]

    square, l_shape, silo = at(75, 65), at(110, 127), at(32, 132)
    assert square["shape"] == "rectangle" and square["area_m2"] == pytest.approx(900 * RES**2)
    assert square.geometry.equals(shapely.box(*square.geometry.bounds))
    assert l_shape["shape"] == "simplified" and shapely.get_num_coordinates(l_shape.geometry) == 7
    assert l_shape["area_m2"] == pytest.approx((40 * 15 + 15 * 35) * RES**2)
    assert silo["shape"] == "simplified"
    assert shapely.get_num_coordinates(silo.geometry) < 0.5 * 4 * 25  # walls, not pixel steps
    assert silo["area_m2"] == pytest.approx(blob.sum() * RES**2, rel=0.05)


def test_export_writes_each_vector_format_and_refuses_to_overwrite(tmp_path: Path) -> None:
    layer = open_layer(_landcover_cube(tmp_path / "cube.zarr", _blobs()))
    expected = polygonize(layer)
    for suffix in ("parquet", "gpkg", "geojson"):
        out = tmp_path / f"classes.{suffix}"
        path, count = export_layer(layer, out, options=VectorOptions())
        back = gpd.read_file(path) if suffix != "parquet" else gpd.read_parquet(path)
        assert count == len(back) == len(expected)
        assert set(back.columns) >= {"class", "value", "area_m2", "confidence", "geometry"}
        assert back.crs.to_epsg() == (4326 if suffix == "geojson" else 32632)
    before = (tmp_path / "classes.gpkg").read_bytes()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_layer(layer, tmp_path / "classes.gpkg")
    assert (tmp_path / "classes.gpkg").read_bytes() == before
    with pytest.raises(InputError, match=r"--to .*unknown format '\.shp'"):
        export_layer(layer, tmp_path / "classes.shp")
    with pytest.raises(InputError, match="--objects roads writes vectors"):
        export_layer(layer, tmp_path / "roads.tif", objects="roads")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "classes.geojson", "classes.gpkg", "classes.parquet", "cube.zarr"
    ]  # fmt: skip


def test_layer_choice_errors_name_the_flag(tmp_path: Path) -> None:
    store = _landcover_cube(tmp_path / "cube.zarr", _blobs())
    with pytest.raises(InputError, match=r"--time '2023-01-01' .* \['2024-06-01'\]"):
        open_layer(store, time="2023-01-01")
    with pytest.raises(InputError, match=r"--var 'confidence' .* \['landcover'\]"):
        open_layer(store, var="confidence")
    layer = open_layer(store, time="2024-06-01")
    assert layer.value_of("House", "--objects") == 1 and layer.value_of("river", "--x") == 3
    with pytest.raises(InputError, match="has no class 'forest'"):
        layer.value_of("forest", "--objects buildings")


def _flood_arrays() -> dict[str, np.ndarray]:
    """Normal water in columns 20..59, water after the event in 20..119: flooded 60..119."""
    arrays = {}
    for side, stop in (("pre", 60), ("post", 120)):
        water = np.zeros(GRID.shape, np.uint8)
        water[:, 20:stop] = 1
        arrays[f"water_{side}"], arrays[f"source_{side}"] = water, np.ones(GRID.shape, np.uint8)
    arrays["observed_water"], arrays["reference_water"] = arrays["water_post"], arrays["water_pre"]
    arrays["exclusion"] = np.zeros(GRID.shape, np.uint8)
    arrays["likelihood"] = np.where(arrays["water_post"] == 1, 90, 10).astype(np.uint8)
    arrays["source"] = np.ones(GRID.shape, np.uint8)  # the threshold member saw every pixel
    arrays["observed_at"] = np.full(GRID.shape, 1_715_644_800, np.int64)  # 2024-05-14
    flooded = flooded_mask(arrays["reference_water"], arrays["observed_water"], arrays["exclusion"])
    return {**arrays, "flooded": flooded}


def _change_arrays() -> dict[str, np.ndarray]:
    changed = np.zeros(GRID.shape, np.uint8)
    changed[50:100, 50:150] = 1
    class_from = np.where(changed == 1, 0, NODATA).astype(np.uint8)
    class_to = np.where(changed == 1, 1, NODATA).astype(np.uint8)
    class_to[50:100, 120:150] = 3
    return {"changed": changed, "class_from": class_from, "class_to": class_to}


@pytest.mark.parametrize("kind", ["change", "flood"])
def test_change_and_flood_cubes_export_a_variable(tmp_path: Path, kind: str) -> None:
    if kind == "flood":
        pre = TimeStep("2024-05-01", "2024-05-09", ("pre",))
        step, arrays = FloodStep("2024-05-10", "2024-05-16", ("post",), pre), _flood_arrays()
        cube, var, value = FLOOD_CUBE, "flooded", 1
    else:
        before = TimeStep("2023-06-01", "2023-06-28", ("t1",))
        step, arrays = ChangeStep.of(before, STEP), _change_arrays()
        cube, var, value = CHANGE_CUBE, "changed", 1
    store = _write_cube(tmp_path / "cube.zarr", cube, step, arrays)
    layer = open_layer(store, var)
    path, _ = export_layer(layer, tmp_path / f"{var}.tif")
    assert cog_validate(str(path))[0]
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), arrays[var])
    frame = polygonize(layer, [value])
    assert frame.geometry.area.sum() == pytest.approx((arrays[var] == value).sum() * RES**2)
    if kind == "change":  # vectors of a change cube: changed regions with from/to classes
        with pytest.raises(InputError, match="--var transitions is a vector layer"):
            open_layer(store, "transitions")
        out, count = export_layer(open_layer(store, vectors=True), tmp_path / "changes.gpkg")
        changes = gpd.read_file(out)
        assert count == len(changes) == 2  # the block is cut in two by a class change
        assert sorted(changes["to_class"]) == ["building", "water"]
        assert set(changes["from_class"]) == {"background"}
        assert changes["class"].tolist()[0] == "background → building"
        assert changes["area_m2"].sum() == pytest.approx(50 * 100 * RES**2)
