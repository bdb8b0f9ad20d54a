"""``catalog add`` says what the next command needs, and places images without georeference."""

from __future__ import annotations

import json

import pytest
import rasterio
from pyproj import Transformer

from terrawatch.flows import cli
from tests.conftest import shared_data


def test_catalog_add_prints_the_bbox_and_the_aoi_to_use(tmp_path, capsys):
    image = shared_data("optical", "oem_koeln_50.tif")
    catalog = tmp_path / "catalog"
    argv = ["catalog", "add", str(image), "--catalog", str(catalog), "--datetime", "2024-06-01"]
    assert cli.main(argv) == 0
    wrote, bbox, command = capsys.readouterr().out.splitlines()
    item = json.loads((catalog / "oem_koeln_50.json").read_text())
    aoi = ",".join(f"{value:.6f}" for value in item["bbox"])
    assert wrote == f"wrote {catalog / 'oem_koeln_50.json'}"
    assert bbox == f"bbox (W,S,E,N in degrees): {aoi}"
    assert command.startswith(f"next: terrawatch landcover --catalog {catalog} --collections ")
    assert f"--aoi {aoi} --start 2024-06-01 --end 2024-06-01 " in command


def test_an_image_without_georeference_is_placed_by_crs_and_bounds(tmp_path, capsys):
    image = shared_data("change", "pair256_t1.png")
    catalog = tmp_path / "catalog"
    bounds = (356000.0, 5646000.0, 356256.0, 5646256.0)  # 1 m pixels in UTM 32N near Cologne
    argv = ["catalog", "add", str(image), "--catalog", str(catalog), "--datetime", "2024-06-01",
            "--crs", "EPSG:25832", "--bounds", ",".join(map(str, bounds))]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    copy = catalog / "pair256_t1.tif"
    with rasterio.open(copy) as src, rasterio.open(image) as original:
        assert src.crs.to_epsg() == 25832
        assert tuple(src.bounds) == pytest.approx(bounds)
        assert (src.read() == original.read()).all()
    item = json.loads((catalog / "pair256_t1.json").read_text())
    assert item["assets"]["image"]["href"].endswith("pair256_t1.tif")
    to_degrees = Transformer.from_crs(25832, 4326, always_xy=True)
    corners = [to_degrees.transform(x, y) for x in bounds[::2] for y in bounds[1::2]]
    lons, lats = zip(*corners, strict=True)
    assert item["bbox"] == pytest.approx([min(lons), min(lats), max(lons), max(lats)], abs=1e-6)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--crs", "EPSG:25832"], "--crs and --bounds go together"),
        (["--crs", "EPSG:25832", "--bounds", "1,2,3"], "--bounds '1,2,3' must be 4 numbers"),
        (["--crs", "nonsense", "--bounds", "0,0,1,1"], "--crs 'nonsense' is not a CRS"),
    ],
)
def test_bad_crs_or_bounds_are_one_line(tmp_path, capsys, extra, message):
    image = shared_data("change", "pair256_t1.png")
    argv = ["catalog", "add", str(image), "--catalog", str(tmp_path / "c"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "c").exists()
