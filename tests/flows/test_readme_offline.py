"""The README's offline commands, taken from README.md's own text, through the real console script.

An air-gapped site copies these commands; the test runs them as written (only the placeholders
replaced) so README and code cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from terrawatch.errors import CatalogUnreachableError
from terrawatch.models.weights import REGISTRY
from tests.conftest import REPO, shared_data

pytestmark = pytest.mark.slow

README = REPO / "README.md"
ORTHOPHOTO = ("optical", "oem_koeln_50.tif")


def _console_script() -> str:
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    return str(command)


def _offline_commands() -> list[list[str]]:
    """The ``terrawatch`` lines of the bash block in the README's offline section, split."""
    section = README.read_text().split("## Offline and air-gapped sites", 1)[1]
    section = section.split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def _main_command() -> list[str]:
    """The ``terrawatch ...`` part of the README's first bash block (after ``pip install``)."""
    block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    return shlex.split(block.split("pip install -e . && ", 1)[1])


def _offline_env(weights: Path) -> dict[str, str]:
    env = dict(os.environ, TERRAWATCH_OFFLINE="1", HF_HUB_OFFLINE="1")
    env["TERRAWATCH_WEIGHTS_DIR"] = str(weights)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600):
    assert argv[0] == "terrawatch", argv
    return subprocess.run(
        [_console_script(), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def weights_dir(tmp_path: Path, tiny_clip_path: Path, tiny_simfeatup_path: Path) -> Path:
    """Tiny random-weight models under the file names the README tells a site to copy.

    A file present in the weights directory is used as it is (only downloads are
    checksum-verified), so tiny files under the real names stand for the real ones.
    """
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(tiny_clip_path, folder / REGISTRY["ViT-B-16"].filename)
    shutil.copy(tiny_simfeatup_path, folder / REGISTRY["simfeatup-jbu-one-million-aid"].filename)
    return folder


def test_the_readme_names_the_registry_file_names():
    section = README.read_text().split("## Offline and air-gapped sites", 1)[1]
    for name in ("ViT-B-16", "simfeatup-jbu-one-million-aid"):
        assert f"`{REGISTRY[name].filename}`" in section


def test_readme_offline_catalog_and_landcover_commands_run_as_written(tmp_path, weights_dir):
    from terrawatch import open_cube

    orthophoto = shared_data(*ORTHOPHOTO)
    add, landcover = _offline_commands()
    assert add[:3] == ["terrawatch", "catalog", "add"] and landcover[1] == "landcover"
    env = _offline_env(weights_dir)

    add = [str(orthophoto) if arg == "my_orthophoto.tif" else arg for arg in add]
    added = _run(add, tmp_path, env, timeout=120)
    assert added.returncode == 0, added.stderr
    item_path = Path(added.stdout.splitlines()[0].removeprefix("wrote "))
    assert item_path.parent == tmp_path / "catalog"
    item = json.loads(item_path.read_text())
    assert item["properties"]["datetime"].startswith("2024-06-01")
    west, south, east, north = item["bbox"]
    assert f"--aoi {','.join(f'{v:.6f}' for v in item['bbox'])} " in added.stdout  # printed
    # a bbox a little inside the image, so the whole area has pixels
    dx, dy = (east - west) / 4, (north - south) / 4
    aoi = f"{west + dx:.6f},{south + dy:.6f},{east - dx:.6f},{north - dy:.6f}"

    assert landcover.count("W,S,E,N") == 1
    landcover = [aoi if arg == "W,S,E,N" else arg for arg in landcover]
    out = _run(landcover, tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "land cover: tiles: 100%" in out.stderr  # the progress bar
    summary = out.stdout.splitlines()  # the human summary on stdout; progress on stderr
    assert "store:   local.zarr" in summary and "time:    2024-06-01" in summary
    assert re.search(r"^tiles:   \d+ written \(of \d+\)$", out.stdout, re.M), out.stdout

    store = tmp_path / landcover[landcover.index("--store") + 1]
    cube = open_cube(str(store))
    classes = landcover[landcover.index("--classes") + 1].split(",")
    assert [entry["name"] for entry in cube.attrs["classes"]] == classes
    labels = cube.landcover.isel(time=-1).values
    assert (labels == labels).any(), "no tile was written"  # NaN where nothing was written


def test_readme_main_command_offline_stops_at_once_with_one_message(tmp_path, weights_dir):
    argv = _main_command()
    assert argv[:2] == ["terrawatch", "landcover"]
    start = time.monotonic()
    out = _run(argv, tmp_path, _offline_env(weights_dir), timeout=120)
    elapsed = time.monotonic() - start

    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert out.returncode == CatalogUnreachableError.exit_code == 6, out.stderr
    assert "Traceback" not in out.stderr
    errors_shown = [line for line in out.stderr.splitlines() if ": error: " in line]
    assert len(errors_shown) == 1, out.stderr
    assert errors_shown[0].startswith("terrawatch landcover: error: Not contacting the STAC")
    assert "--catalog DIR" in errors_shown[0]  # the way to run offline
    store = argv[argv.index("--store") + 1]
    assert not (tmp_path / store).exists()
