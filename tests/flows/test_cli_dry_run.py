"""``--dry-run``: the scenes, grid, tiles, weights and an estimate; nothing loaded or written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from terrawatch.models.weights import REGISTRY
from tests.conftest import shared_data

AOI = "6.808782,50.959663,6.812445,50.961976"
"""A box inside the orthophoto of shared/data/optical."""


def test_landcover_dry_run_on_a_local_catalog(tmp_path, tiny_clip_path, tiny_simfeatup_path):
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    weights = tmp_path / "weights"
    weights.mkdir()
    clip = weights / REGISTRY["ViT-B-16"].filename
    shutil.copy(tiny_clip_path, clip)
    shutil.copy(tiny_simfeatup_path, weights / REGISTRY["simfeatup-jbu-one-million-aid"].filename)
    env = dict(os.environ, TERRAWATCH_WEIGHTS_DIR=str(weights))
    orthophoto = shared_data("optical", "oem_koeln_50.tif")
    added = subprocess.run(
        [str(command), "catalog", "add", str(orthophoto), "--catalog", "catalog", "--datetime",
         "2024-06-01"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    argv = [str(command), "landcover", "--catalog", "catalog", "--collections", "local",
            "--aoi", AOI, "--start", "2024-06-01", "--end", "2024-06-01", "--classes",
            "water,building", "--store", "cube.zarr", "--chunk", "256", "--dry-run"]  # fmt: skip
    out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "terrawatch landcover --dry-run: nothing was loaded, started or written"
    assert lines[1] == f"scenes: 1 from {tmp_path / 'catalog'}"
    assert lines[2] == "  oem_koeln_50  2024-06-01  cloud n/a"
    grid = re.fullmatch(r"grid: EPSG:32632, 0.5 m, (\d+) x (\d+) px, ([\d.]+) km²", lines[3])
    assert grid, lines[3]
    width, height = int(grid[1]), int(grid[2])
    assert float(grid[3]) == pytest.approx(width * height * 0.25 / 1e6, rel=0.01)
    tiles = -(-width // 256) * -(-height // 256)
    assert lines[4] == f"tiles: {tiles} to write, 0 already done in cube.zarr (chunk 256 px)"
    assert lines[5] == f"weights: {clip} (13.3 MB)"
    assert lines[7].startswith(f"estimate: {tiles} tiles x about ")
    assert not (tmp_path / "cube.zarr").exists()  # nothing written
    assert "Starting temporary server" not in out.stderr  # no Prefect API: no flow ran
    assert "loaded ViT-B-16" not in out.stderr  # no model loaded
