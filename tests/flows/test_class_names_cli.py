"""Issue 15.1 through the real command: names in any script survive segment and a cube."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

from terrawatch.models.weights import REGISTRY
from tests.conftest import shared_data

pytestmark = pytest.mark.slow

CLASSES = "Wasser|Gewässer,Gebäude,Straße,bare soil,水体"
NAMES = ["Wasser", "Gebäude", "Straße", "bare soil", "水体"]
WORDS = "Wasser Gebaude Strasse bare_soil Shui_Ti"


def _terrawatch(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    return subprocess.run(
        [str(command), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def offline_env(tmp_path: Path, tiny_clip_path: Path, tiny_simfeatup_path: Path) -> dict:
    """Tiny random-weight models under the real file names, and no network."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / REGISTRY["ViT-B-16"].filename).write_bytes(tiny_clip_path.read_bytes())
    upsampler = folder / REGISTRY["simfeatup-jbu-one-million-aid"].filename
    upsampler.write_bytes(tiny_simfeatup_path.read_bytes())
    env = dict(os.environ, TERRAWATCH_OFFLINE="1", HF_HUB_OFFLINE="1")
    env["TERRAWATCH_WEIGHTS_DIR"] = str(folder)
    return env


def test_segment_keeps_the_names_in_the_label_geotiff(tmp_path, offline_env):
    image = shared_data("optical", "oem_koeln_50.tif")
    out, png = tmp_path / "labels.tif", tmp_path / "labels.png"
    run = _terrawatch(
        "segment", str(image), "--classes", CLASSES, "--out", str(out), "--png", str(png),
        "--device", "cpu", cwd=tmp_path, env=offline_env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Glyph" not in run.stderr
    with rasterio.open(out) as dst:
        tags = dst.tags()
    assert json.loads(tags["class_names"]) == NAMES
    assert [tags[f"CLASS_{i}"] for i in range(5)] == NAMES
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_landcover_cube_keeps_the_names_and_one_cf_word_per_value(tmp_path, offline_env):
    from terrawatch import open_cube

    image = shared_data("optical", "oem_koeln_50.tif")
    added = _terrawatch(
        "catalog", "add", str(image), "--catalog", "catalog", "--datetime", "2024-06-01",
        cwd=tmp_path, env=offline_env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    item_path = added.stdout.splitlines()[0].removeprefix("wrote ")  # then its bbox and --aoi
    item = json.loads(Path(tmp_path, item_path).read_text())
    west, south, east, north = item["bbox"]
    dx, dy = (east - west) / 4, (north - south) / 4
    aoi = f"{west + dx:.6f},{south + dy:.6f},{east - dx:.6f},{north - dy:.6f}"
    run = _terrawatch(
        "landcover", "--catalog", "catalog", "--collections", "local", "--aoi", aoi,
        "--start", "2024-06-01", "--end", "2024-06-01", "--classes", CLASSES,
        "--store", "names.zarr", cwd=tmp_path, env=offline_env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Glyph" not in run.stderr

    cube = open_cube(str(tmp_path / "names.zarr"))  # checks the flags on reading
    landcover = cube.landcover
    assert landcover.attrs["flag_meanings"] == WORDS
    assert len(landcover.attrs["flag_meanings"].split()) == len(landcover.attrs["flag_values"])
    assert [entry["name"] for entry in cube.attrs["classes"]] == NAMES
    assert cube.attrs["classes"][0]["synonyms"] == ["Wasser", "Gewässer"]
    stac = landcover.attrs["classification:classes"]
    assert [entry["title"] for entry in stac] == NAMES
    assert list(tmp_path.glob("names.zarr.quicklook-*.png"))
