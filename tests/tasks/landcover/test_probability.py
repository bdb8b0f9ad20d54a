"""Per-class probabilities in a real Zarr cube: encoding, layout, overviews, STAC, accessor and
export (``landcover --probabilities``; the flow: tests/flows/test_landcover_probabilities.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.flows.cli import main
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_overviews import has_overview, open_overview, write_overviews
from terrawatch.tasks.core.cube_stac import describe_cube
from terrawatch.tasks.core.cube_store import (
    nodata_tile,
    open_cube,
    prepare_step,
    write_cube_tile,
)
from terrawatch.tasks.core.cube_types import NODATA, TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE
from terrawatch.tasks.landcover.probability import (
    PROBABILITY_CUBE,
    check_probability_store,
    probability_percent,
)

GRID = GridSpec("EPSG:32632", 2.0, 350_000.0, 5_640_000.0, 350_640.0, 5_640_600.0)  # 300 x 320
CHUNK = 128
CLASSES = parse_class_names(["water,river", "tree,forest", "road"])
JUNE = TimeStep("2024-06-01", "2024-06-30", ("a",))


def _scores(seed: int = 0) -> np.ndarray:
    """Class scores as the segmenter gives them (synonym max-merged: not summing to 1)."""
    rng = np.random.default_rng(seed)
    scores = rng.dirichlet([1.0, 1.0, 1.0], GRID.shape).transpose(2, 0, 1) * 0.9
    scores[:, :, :10] = np.nan  # a strip without data
    return scores


def _write(store: str, scores: np.ndarray, step: TimeStep = JUNE) -> int:
    plan = prepare_step(store, GRID, CLASSES, step, {"run_id": "r"}, CHUNK, PROBABILITY_CUBE)
    for row, col in plan.todo:
        rows = slice(row * CHUNK, (row + 1) * CHUNK)
        cols = slice(col * CHUNK, (col + 1) * CHUNK)
        tile = scores[:, rows, cols]
        if (row, col) == (2, 2):  # the runner's tile without any valid input pixel
            arrays = nodata_tile(store, PROBABILITY_CUBE, tile.shape[1:])
        else:
            valid = np.isfinite(tile).all(axis=0)
            labels = np.where(valid, np.nan_to_num(tile).argmax(axis=0), NODATA).astype(np.uint8)
            confidence = np.where(valid, np.nan_to_num(tile).max(axis=0), np.nan)
            arrays = {"landcover": labels, "confidence": confidence, "probability": tile}
        write_cube_tile(store, PROBABILITY_CUBE, plan.time_index, (row, col), arrays, CHUNK)
    return plan.time_index


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = str(tmp_path_factory.mktemp("probability") / "lc.zarr")
    _write(store, _scores())
    assert write_overviews(store, 0) == [2]
    describe_cube(store)
    return store


def test_percent_sums_to_100_within_rounding_and_keeps_the_best_class() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((7, 50, 50))
    percent = probability_percent(scores)
    assert percent.dtype == np.uint8 and percent.max() <= 100
    assert np.abs(percent.sum(axis=0).astype(int) - 100).max() <= 7 / 2
    top2 = np.sort(scores / scores.sum(axis=0), axis=0)[-2:]
    clear = top2[1] - top2[0] > 0.01  # unambiguous: the best leads by more than a percent
    assert (percent.argmax(axis=0) == scores.argmax(axis=0))[clear].all()
    scores[:, 0, 0] = np.nan
    scores[:, 0, 1] = 0.0
    percent = probability_percent(scores)
    assert (percent[:, 0, :2] == NODATA).all()


def test_cube_stores_percent_per_class_and_step_with_a_class_coordinate(store: str) -> None:
    cube = open_cube(store, mask_and_scale=False)
    prob = cube["probability"]
    assert prob.dims == ("time", "class", "y", "x") and prob.dtype == np.uint8
    assert list(cube["class"].values) == ["water", "tree", "road"]  # the class table's names
    assert prob.encoding["chunks"] == (1, 1, CHUNK, CHUNK)
    assert prob.attrs["units"] == "percent" and prob.attrs["_FillValue"] == NODATA
    values, labels = prob.values[0], cube["landcover"].values[0]
    valid = labels != NODATA
    assert (values[:, ~valid] == NODATA).all() and (values[:, valid] <= 100).all()
    assert not valid[:, :10].any() and not valid[256:, 256:].any()  # no-data strip and tile
    assert np.abs(values[:, valid].sum(axis=0).astype(int) - 100).max() <= 1
    expected = probability_percent(_scores())
    np.testing.assert_array_equal(values[:, valid], expected[:, valid])
    unambiguous = valid & (np.sort(values, axis=0)[-2] < values.max(axis=0))
    assert (values.argmax(axis=0) == labels)[unambiguous].all()


def test_overviews_are_class_means_and_stac_lists_the_variable(store: str) -> None:
    level = open_overview(store, 2)["probability"].values[0]
    full = open_cube(store, mask_and_scale=False)["probability"].values[0].astype(float)
    block = full[1, 40:42, 60:62]  # inside the data: a mean of four valid pixels
    assert level[1, 20, 30] == np.rint(block.mean())
    assert level.shape == (3, 150, 160) and (level[:, :, :5] == NODATA).all()
    collection = json.loads(Path(f"{store}.stac/collection.json").read_text())
    variable = collection["cube:variables"]["probability"]
    assert variable["dimensions"] == ["time", "class", "y", "x"]
    assert variable["unit"] == "percent" and variable["nodata"] == NODATA
    assert collection["cube:dimensions"]["class"]["values"] == ["water", "tree", "road"]
    multiscales = xr.open_zarr(store).attrs["multiscales"]["layout"][1]
    assert multiscales["terrawatch:resampling"]["probability"] == "mean"


def test_accessor_reads_one_class_by_name_or_synonym(store: str) -> None:
    import terrawatch  # noqa: F401  (the .tw accessor)

    cube = xr.open_zarr(store, decode_coords="all")
    river = cube.tw.probability("river")
    assert river.dims == ("time", "y", "x") and river.name == "probability_water"
    stored = open_cube(store, mask_and_scale=False)["probability"].values[0, 0]
    np.testing.assert_array_equal(np.nan_to_num(river.values[0], nan=NODATA), stored)
    with pytest.raises(InputError, match="no class 'sand'"):
        cube.tw.probability("sand")


def test_export_writes_one_named_band_per_class(store: str, tmp_path: Path, capsys) -> None:
    stored = open_cube(store, mask_and_scale=False)["probability"].values[0]
    every = tmp_path / "probability.tif"
    assert main(["export", store, "--var", "probability", "--to", str(every)]) == 0
    assert "bands: water, tree, road" in capsys.readouterr().out
    assert cog_validate(str(every))[0]
    with rasterio.open(every) as src:
        assert src.count == 3 and src.descriptions == ("water", "tree", "road")
        assert src.nodata == NODATA and src.tags()["units"] == "percent"
        np.testing.assert_array_equal(src.read(), stored)
    forest = tmp_path / "forest.tif"
    assert main(["export", store, "--var", "probability", "--class", "forest", "--to",
                 str(forest)]) == 0  # fmt: skip
    with rasterio.open(forest) as src:
        assert src.descriptions == ("tree",)
        np.testing.assert_array_equal(src.read(1), stored[1])
    item = json.loads(Path(f"{store}.stac/lc-2024-06-01/lc-2024-06-01.json").read_text())
    assert "export-forest.tif" in item["assets"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--var", "probability", "--to", "{tmp}/p.gpkg"], "--var probability: per-class"),
        (["--class", "water", "--to", "{tmp}/p.tif"], "--class picks bands of a per-class"),
        (["--var", "probability", "--class", "sand", "--to", "{tmp}/p.tif"],
         "--class: 'landcover' of"),
    ],
)  # fmt: skip
def test_bad_probability_exports_are_one_line_naming_the_flag(
    store: str, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    assert main(["export", store, *(a.format(tmp=tmp_path) for a in extra)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("terrawatch export: error: ") and message in last
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_store_keeps_its_variables_across_runs(store: str, tmp_path: Path) -> None:
    check_probability_store(store, True)
    with pytest.raises(StoreMismatchError, match="rerun with --probabilities"):
        check_probability_store(store, False)
    plain = str(tmp_path / "plain.zarr")
    prepare_step(plain, GRID, CLASSES, JUNE, {"run_id": "r"}, CHUNK, LANDCOVER_CUBE)
    with pytest.raises(StoreMismatchError, match="drop --probabilities"):
        check_probability_store(plain, True)
    check_probability_store(str(tmp_path / "new.zarr"), True)


def test_a_second_step_appends_and_a_rerun_writes_no_overview(store: str, tmp_path: Path) -> None:
    import shutil

    copy = str(tmp_path / "two.zarr")
    shutil.copytree(store, copy)
    index = _write(copy, _scores(2), TimeStep("2024-07-01", "2024-07-31", ("b",)))
    assert index == 1 and write_overviews(copy, index) == [2]
    cube = open_cube(copy, mask_and_scale=False)
    assert cube["probability"].shape == (2, 3, *GRID.shape)
    np.testing.assert_array_equal(
        cube["probability"].values[1][:, 5, 20], probability_percent(_scores(2))[:, 5, 20]
    )
    assert has_overview(copy, 2, 1) and write_overviews(copy, 1, rewrite=False) == []


@pytest.mark.parametrize("made_with", ["probabilities", "refine special"])
def test_appending_a_plain_step_to_a_store_of_another_kind_is_refused_intact(
    tmp_path: Path, made_with: str
) -> None:
    from terrawatch.tasks.landcover.special import SPECIAL_CUBE

    kind = PROBABILITY_CUBE if made_with == "probabilities" else SPECIAL_CUBE
    store = str(tmp_path / "lc.zarr")
    prepare_step(store, GRID, CLASSES, JUNE, {"run_id": "r"}, CHUNK, kind)
    july = TimeStep("2024-07-01", "2024-07-31", ("b",))
    with pytest.raises(StoreMismatchError, match="rerun it the way it was made"):
        prepare_step(store, GRID, CLASSES, july, {"run_id": "r"}, CHUNK, LANDCOVER_CUBE)
    cube = open_cube(store)  # still readable: every variable keeps one step
    assert cube.sizes["time"] == 1
