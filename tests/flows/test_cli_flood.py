"""``terrawatch flood``: a run on a local catalog, and clear messages for bad arguments."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import xarray as xr

from terrawatch.flows import cli
from terrawatch.flows.cli_flood import add_flood_command
from tests.flows.test_flood import EVENT, FACTORY, flood_aoi, make_flood_catalog


@pytest.fixture
def main(monkeypatch):
    """``cli.main``, with the flood command registered if flows/cli.py lacks it yet."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "flood" not in sub.choices:
        build = cli.build_parser

        def build_with_flood() -> argparse.ArgumentParser:
            parser = build()
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            add_flood_command(sub)
            return parser

        monkeypatch.setattr(cli, "build_parser", build_with_flood)
    return cli.main


def _args(catalog: Path, store: Path, **overrides: str | None) -> list[str]:
    options = {
        "--aoi": flood_aoi(),
        "--date": EVENT,
        "--catalog": str(catalog),
        "--store": str(store),
        "--collections": "sentinel-1-rtc",
        "--chunk": "64",
        "--halo": "16",
        "--upsampler": "bilinear",
        "--model-factory": FACTORY,
        **overrides,
    }
    args = ["flood"]
    for key, value in options.items():
        if value is not None:
            args += [key, value]
    return args


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_flood_catalog(tmp_path_factory.mktemp("flood-cli"))


@pytest.mark.slow
def test_flood_command_writes_a_cube_offline(
    main, prefect_api, dask_cluster, tmp_path, catalog, capsys
):
    store = tmp_path / "flood.zarr"
    address = dask_cluster.scheduler_address
    assert main([*_args(catalog, store), "--json", "--address", address]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["event_date"] == EVENT and summary["flooded_km2"] > 0.3
    cube = xr.open_zarr(store, decode_coords="all")
    assert cube.flooded.rio.crs.to_epsg() == 32633
    assert Path(summary["picture"]).is_file()


def test_bad_event_date_is_a_usage_error(main, tmp_path, catalog, capsys):
    code = main(_args(catalog, tmp_path / "x.zarr", **{"--date": "2024-13-40"}))
    assert code == 2
    assert "--date must be an ISO date" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_unknown_water_class_is_a_usage_error(main, tmp_path, catalog, capsys):
    code = main(_args(catalog, tmp_path / "x.zarr", **{"--water-classes": "sea"}))
    assert code == 2
    assert "--water-classes ['sea'] are not among the classes" in capsys.readouterr().err


def test_no_scenes_after_the_event_is_a_clear_error(main, tmp_path, catalog, capsys):
    code = main(_args(catalog, tmp_path / "x.zarr", **{"--date": "2024-05-20"}))
    assert code == 3  # NoScenesError
    assert "no SAR scenes in the post-event window 2024-05-20..2024-05-26" in (
        capsys.readouterr().err
    )


def test_unknown_orbit_is_rejected_by_the_parser(main, tmp_path, catalog, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(_args(catalog, tmp_path / "x.zarr", **{"--orbit": "sideways"}))
    assert exit_info.value.code == 2
    assert "invalid choice: 'sideways'" in capsys.readouterr().err
