"""``terrawatch export`` from the shell: the format from the suffix, one-line errors naming the
flag before any reading, and the real console script on a real cube."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from rio_cogeo.cogeo import cog_validate

from terrawatch.flows.cli import main
from terrawatch.tasks.core.cube_types import NODATA
from tests.tasks.core.test_export import _blobs, _landcover_cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _landcover_cube(tmp_path_factory.mktemp("export") / "cube.zarr", _blobs())


def test_export_polygons_and_cog_through_the_command(cube: str, tmp_path: Path, capsys) -> None:
    gpkg, tif = tmp_path / "classes.gpkg", tmp_path / "landcover.tif"
    args = ["export", cube, "--to", str(gpkg), "--min-area", "40"]
    assert main(args) == 0
    assert f"wrote {gpkg}" in capsys.readouterr().out
    frame = gpd.read_file(gpkg)
    assert len(frame) and (frame["area_m2"] >= 40).all()  # small regions absorbed, no gaps
    assert frame.union_all().area == pytest.approx((_blobs() != NODATA).sum() * 4.0)
    assert main(["export", cube, "--time", "2024-06-01", "--to", str(tif)]) == 0
    assert cog_validate(str(tif))[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "{tmp}/x.shp"], "--to '{tmp}/x.shp': unknown format '.shp'"),
        (["--to", "{tmp}/no/x.tif"], "the folder '{tmp}/no' does not exist"),
        (["--to", "{tmp}/x.tif", "--time", "2020-01-01"], "--time '2020-01-01' is not a time"),
        (["--to", "{tmp}/x.tif", "--var", "confidence"], "--var 'confidence' is not a categorical"),
        (["--to", "{tmp}/x.tif", "--objects", "roads"], "--objects roads writes vectors"),
        (["--to", "{tmp}/x.gpkg", "--simplify", "-1"], "--simplify must be >= 0"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(
    cube: str, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    args = ["export", cube, *(a.format(tmp=tmp_path) for a in extra)]
    try:
        code = main(args)
    except SystemExit as usage:  # argparse's own usage errors
        code = usage.code
    last = capsys.readouterr().err.strip().splitlines()[-1]  # argparse prints its usage above
    assert code == 2 and last.startswith("terrawatch export: error: ")
    assert message.format(tmp=tmp_path) in last
    assert not [p for p in tmp_path.iterdir()]  # nothing written


def test_existing_output_is_refused_and_kept(cube: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "roads.geojson"
    out.write_text("mine")
    assert main(["export", cube, "--to", str(out), "--objects", "roads"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and out.read_text() == "mine"


def test_console_script_exports_roads(cube: str, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "terrawatch"
    out = tmp_path / "roads.parquet"
    done = subprocess.run(
        [str(script), "export", cube, "--to", str(out), "--objects", "roads", "--min-spur", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = gpd.read_parquet(out)
    assert set(lines.columns) >= {"length_m", "start_degree", "end_degree", "geometry"}
    assert np.all(lines["length_m"] > 0)
