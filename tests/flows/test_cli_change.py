"""``terrawatch change``: a run on a local catalog, and clear messages for bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarray as xr

from terrawatch.flows.cli import build_parser, main
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.output_grid import grid_for_aoi
from terrawatch.tasks.landcover.cube import prepare_cube
from tests.flows.test_change import make_pair_catalog, pair_aoi

pytestmark = pytest.mark.slow


def _args(catalog: Path, store: Path, files: dict, **overrides: str) -> list[str]:
    options = {
        "--aoi": pair_aoi(),
        "--before": "2023-06-01/2023-06-30",
        "--after": "2024-06-01/2024-06-30",
        "--classes": "background,building|house,road,tree",
        "--catalog": str(catalog),
        "--store": str(store),
        "--collections": "local",
        "--resolution": "0.5",
        "--crs": "EPSG:32632",
        "--chunk": "128",
        "--halo": "32",
        "--weights": str(files["clip"]),
        "--upsampler": "bilinear",
        **overrides,
    }
    args = ["change"]
    for key, value in options.items():
        if value is not None:
            args += [key, value]
    return args


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_pair_catalog(tmp_path_factory.mktemp("pair"))


def test_change_command_writes_a_cube_offline(
    prefect_api, dask_cluster, tmp_path, catalog, tiny_model_files, capsys
):
    store = tmp_path / "change.zarr"
    args = _args(catalog, store, tiny_model_files, **{"--targets": "building,road"})
    assert main([*args, "--json", "--address", dask_cluster.scheduler_address]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["time"] == "2024-06-01" and summary["tiles_total"] == 4
    cube = xr.open_zarr(store, decode_coords="all")
    assert cube.attrs["change_query"]["targets"] == ["building", "road"]
    assert cube.changed.rio.crs.to_epsg() == 32632


def test_period_without_a_slash_is_a_usage_error(tmp_path, catalog, tiny_model_files, capsys):
    args = _args(catalog, tmp_path / "x.zarr", tiny_model_files, **{"--before": "2023-06-01"})
    assert main(args) == 2
    assert "before must be a period [start, end] of ISO dates or 'START/END'" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "x.zarr").exists()


def test_missing_aoi_without_a_land_cover_cube_is_a_usage_error(
    tmp_path, catalog, tiny_model_files, capsys
):
    assert main(_args(catalog, tmp_path / "x.zarr", tiny_model_files, **{"--aoi": None})) == 2
    assert "give aoi and classes (or --from-cube" in capsys.readouterr().err


def test_only_one_period_is_a_usage_error(tmp_path, catalog, tiny_model_files, capsys):
    assert main(_args(catalog, tmp_path / "x.zarr", tiny_model_files, **{"--after": None})) == 2
    assert "give both before and after" in capsys.readouterr().err


def test_theta_out_of_range_is_a_usage_error(tmp_path, catalog, tiny_model_files, capsys):
    assert main(_args(catalog, tmp_path / "x.zarr", tiny_model_files, **{"--theta": "45"})) == 2
    assert "theta_deg must be in (90, 180]" in capsys.readouterr().err


def test_unknown_target_class_is_a_usage_error(tmp_path, catalog, tiny_model_files, capsys):
    args = _args(catalog, tmp_path / "x.zarr", tiny_model_files, **{"--targets": "airport"})
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "terrawatch change: error:" in err and "unknown class name(s) ['airport']" in err


def test_land_cover_cube_with_one_step_is_a_usage_error(tmp_path, tiny_model_files, capsys):
    landcover = tmp_path / "landcover.zarr"
    grid = grid_for_aoi((6.807, 50.962, 6.808, 50.963), 1.0)
    classes = parse_class_names(["background", "building"])
    prepare_cube(str(landcover), grid, classes, TimeStep("2024-06-01", "2024-06-30", ("a",)), {})
    args = ["change", "--from-cube", str(landcover), "--store", str(tmp_path / "x.zarr")]
    assert main(args) == 2
    assert "has 1 time step(s); a change run needs two" in capsys.readouterr().err


def test_help_lists_the_change_command():
    assert "change" in build_parser().format_help()
