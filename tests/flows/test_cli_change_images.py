"""``terrawatch change IMAGE1 IMAGE2``: change between two plain images, as segment does one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from terrawatch.flows import cli
from terrawatch.models.weights import REGISTRY
from tests.conftest import shared_data


@pytest.fixture
def weights(tmp_path, tiny_clip_path, tiny_simfeatup_path, monkeypatch) -> Path:
    """Tiny random-weight models under the real file names, as the weights directory."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(tiny_clip_path, folder / REGISTRY["ViT-B-16"].filename)
    shutil.copy(tiny_simfeatup_path, folder / REGISTRY["simfeatup-jbu-one-million-aid"].filename)
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(folder))
    return folder


@pytest.mark.slow
def test_two_pngs_give_a_change_geotiff_and_a_preview(tmp_path, weights):
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    first, second = shared_data("change", "pair256_t1.png"), shared_data("change", "pair256_t2.png")
    out, png = tmp_path / "change.tif", tmp_path / "change.png"
    argv = [str(command), "change", str(first), str(second), "--classes",
            "background,building,tree|forest", "--out", str(out), "--png", str(png)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out} and {png}: ")
    with rasterio.open(out) as src:
        assert (src.count, src.width, src.height, src.dtypes[0]) == (3, 256, 256, "uint8")
        assert src.descriptions == ("changed", "class_from", "class_to")
        assert json.loads(src.tags()["class_names"]) == ["background", "building", "tree"]
        changed, class_from, class_to = src.read()
    assert set(np.unique(changed)) <= {0, 1, 255}
    assert ((class_from == 255) == (changed != 1)).all()
    assert (class_to[changed == 1] < 3).all()
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_change_of_two_geotiffs_has_the_first_ones_georeference(tmp_path, weights, capsys):
    source = shared_data("optical", "oem_koeln_50.tif")
    crops = []
    with rasterio.open(source) as src:
        for offset in (0, 8):  # two overlapping 96 px crops: the same size, different pixels
            window = Window(offset, offset, 96, 96)
            profile = {**src.profile, "width": 96, "height": 96,
                       "transform": src.window_transform(window)}  # fmt: skip
            path = tmp_path / f"crop{offset}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(window=window))
            crops.append(path)
    out = tmp_path / "change.tif"
    argv = ["change", *map(str, crops), "--classes", "background,building,road", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    with rasterio.open(out) as dst, rasterio.open(crops[0]) as first:
        assert dst.crs == first.crs
        assert dst.transform == first.transform


def test_images_of_different_sizes_and_flow_options_are_one_line_each(tmp_path, weights, capsys):
    small, big = shared_data("change", "pair256_t1.png"), shared_data("change", "pair1024_t2.png")
    out = str(tmp_path / "change.tif")
    argv = ["change", str(small), str(big), "--classes", "background,building", "--out", out]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is 256x256 pixels but IMAGE2" in err and "is 1024x1024" in err
    assert cli.main([*argv[:3], "--classes", "a,b", "--out", out, "--store", "x.zarr"]) == 2
    assert "--store go with a change cube, not with two images" in capsys.readouterr().err
    assert cli.main(["change", "--classes", "a,b", "--aoi", "1,2,3,4"]) == 2
    assert "give --store PATH for the change cube" in capsys.readouterr().err
    assert not (tmp_path / "change.tif").exists()
