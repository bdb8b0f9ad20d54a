"""Each failure that is the user's or the environment's: one line, in flags, through the command.

The real ``terrawatch`` console script in a subprocess on a local catalog (the orthophoto of
shared/data); each case fails before a flow starts, except the store of another class list,
which can only be found inside the flow (it checks that Prefect's tracebacks stay off the
terminal). Every case asserts the exit code, one error line naming the flag and the fix, and no
traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from terrawatch.flows import cli
from terrawatch.models.weights import REGISTRY
from tests.conftest import shared_data

ORTHOPHOTO = ("optical", "oem_koeln_50.tif")
AOI = "6.808782,50.959663,6.812445,50.961976"
"""A box inside the orthophoto."""


def _console_script() -> str:
    command = Path(sys.executable).parent / "terrawatch"
    if not command.exists():
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    return str(command)


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_clip_path, tiny_simfeatup_path) -> Path:
    """A local catalog with the orthophoto and a weights folder of tiny models."""
    root = tmp_path_factory.mktemp("site")
    weights = root / "weights"
    weights.mkdir()
    shutil.copy(tiny_clip_path, weights / REGISTRY["ViT-B-16"].filename)
    shutil.copy(tiny_simfeatup_path, weights / REGISTRY["simfeatup-jbu-one-million-aid"].filename)
    added = _terrawatch(
        ["catalog", "add", str(shared_data(*ORTHOPHOTO)), "--catalog", str(root / "catalog"),
         "--datetime", "2024-06-01"], root, weights,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    return root


def _terrawatch(argv: list[str], cwd: Path, weights: Path, offline: bool = True, wrap=()):
    env = dict(os.environ, TERRAWATCH_WEIGHTS_DIR=str(weights))
    if not offline:
        env.pop("TERRAWATCH_OFFLINE", None)
    return subprocess.run(
        [*wrap, _console_script(), *argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def _landcover(site: Path, *extra: str, store: str = "cube.zarr") -> list[str]:
    return ["landcover", "--catalog", str(site / "catalog"), "--collections", "local",
            "--aoi", AOI, "--start", "2024-06-01", "--end", "2024-06-01",
            "--classes", "water,building,road,tree", "--store", store, *extra]  # fmt: skip


def _one_error_line(out: subprocess.CompletedProcess, code: int, command: str) -> str:
    """The one error line of a failed run (our INFO/WARNING log lines aside)."""
    assert "Traceback" not in out.stdout, out.stdout
    assert out.returncode == code, out.stderr
    return _one_error_line_of(out.stderr, command)


def _one_error_line_of(stderr: str, command: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith(("INFO ", "WARN"))]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"terrawatch {command}: error: ")
    return lines[0]


def test_bad_input_speaks_in_the_flag_typed(site):
    out = _terrawatch(_landcover(site, "--max-cloud", "200"), site, site / "weights")
    line = _one_error_line(out, 2, "landcover")
    assert "--max-cloud 200 must be a percentage in 0..100" in line
    assert "max_cloud" not in line
    assert not (site / "cube.zarr").exists()


@pytest.mark.parametrize(
    ("extra", "code", "expected"),
    [
        (["--aoi", "6.8,50.9,6.81"], 2, "--aoi 6.8,50.9,6.81 must be 4 numbers"),
        (["--start", "2024-06-03"], 2, "--start 2024-06-03 is after --end 2024-06-01; swap"),
        (["--start", "2020-01-01", "--end", "2020-01-02"], 3, "raise --max-cloud, or check"),
    ],
    ids=["aoi", "period", "no-scenes"],
)
def test_more_bad_input_and_no_scenes_in_flags(site, extra, code, expected, monkeypatch, capsys):
    """As above, through ``main`` in this process (the console script calls only it)."""
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(site / "weights"))
    monkeypatch.chdir(site)
    assert cli.main(_landcover(site, *extra)) == code
    line = _one_error_line_of(capsys.readouterr().err, "landcover")
    assert expected in line
    assert "aoi=" not in line and "start=" not in line and "max_cloud" not in line


def test_every_missing_weight_file_is_named_with_one_fetch_command(site, tmp_path):
    out = _terrawatch(_landcover(site), site, tmp_path / "no-weights")
    line = _one_error_line(out, 5, "landcover")
    assert "ViT-B-16.pt" in line and "xclip_jbu_one_million_aid.ckpt" in line
    assert "`terrawatch weights fetch ViT-B-16 simfeatup-jbu-one-million-aid`" in line


def test_a_truncated_weight_file_is_corrupt_in_weights_list_and_before_a_run(site, tmp_path):
    weights = tmp_path / "weights"
    shutil.copytree(site / "weights", weights)
    clip = weights / REGISTRY["ViT-B-16"].filename
    clip.write_bytes(clip.read_bytes()[:100_000])

    listed = _terrawatch(["weights", "list"], site, weights)
    assert listed.returncode == 7, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("ViT-B-16 "))
    assert "corrupt" in row and "truncated" in row
    assert "fetch ViT-B-16`" in _one_error_line(listed, 7, "weights")

    out = _terrawatch(_landcover(site), site, weights)
    line = _one_error_line(out, 7, "landcover")
    assert f"{clip} (100000 bytes) is corrupt: truncated" in line
    assert f"delete {clip} and run `terrawatch weights fetch ViT-B-16`" in line


def test_a_store_that_is_a_file_or_a_folder_of_other_files_is_refused(site, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a store")
    assert cli.main(_landcover(site, store=str(notes))) == 2
    line = _one_error_line_of(capsys.readouterr().err, "landcover")
    assert "is a file; give a folder path" in line

    assert cli.main(_landcover(site, store=str(site / "catalog"))) == 2
    line = _one_error_line_of(capsys.readouterr().err, "landcover")
    assert f"--store {str(site / 'catalog')!r} is a folder of other files" in line
    assert "oem_koeln_50.json" in line


def test_a_read_only_store_is_refused_before_any_work(site, tmp_path):
    import zarr

    store = tmp_path / "cube.zarr"
    zarr.open_group(str(store), mode="w")  # a real (empty) Zarr store
    if os.geteuid() != 0:
        store.chmod(0o555)
        wrap: tuple[str, ...] = ()
    else:  # root writes anywhere: a read-only bind mount in a user namespace instead
        unshare = shutil.which("unshare")
        probe = [unshare or "unshare", "-Urm", "true"]
        if unshare is None or subprocess.run(probe, capture_output=True).returncode:
            pytest.skip("running as root without unshare: no way to make a store read-only")
        mount = f"mount --bind {store} {store} && mount -o remount,bind,ro {store} && exec"
        wrap = ("unshare", "-Urm", "sh", "-c", f'{mount} "$0" "$@"')
    try:
        out = _terrawatch(_landcover(site, store=str(store)), site, site / "weights", wrap=wrap)
    finally:
        store.chmod(0o755)
    line = _one_error_line(out, 2, "landcover")
    assert f"--store {str(store)!r} is read-only; give a store path you can write to" in line


def test_an_unreachable_catalog_is_one_line_with_the_reason(site, monkeypatch, capsys, caplog):
    """A real refused connection (a closed loopback port), not a mock."""
    monkeypatch.chdir(site)
    caplog.set_level(logging.ERROR, logger="urllib3")  # its retry warnings: not ours to test
    monkeypatch.delenv("TERRAWATCH_OFFLINE")
    assert cli.main(_landcover(site, "--catalog", "http://127.0.0.1:9/")) == 6
    line = _one_error_line_of(capsys.readouterr().err, "landcover")
    assert "Could not reach the STAC catalog 'http://127.0.0.1:9/': Connection refused." in line


def test_debug_shows_the_traceback_of_a_users_error(site, capsys, monkeypatch):
    monkeypatch.chdir(site)
    assert cli.main(["--debug", *_landcover(site, "--max-cloud", "200")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("terrawatch landcover: error: --max-cloud 200")


@pytest.mark.slow
def test_a_store_of_other_classes_found_inside_the_flow_is_one_line(site, tmp_path):
    """The store check runs in the flow's plan task: Prefect's tracebacks must stay hidden."""
    import zarr

    first = _terrawatch(_landcover(site, store="mismatch.zarr"), site, site / "weights")
    assert first.returncode == 0, first.stderr
    argv = _landcover(site, store="mismatch.zarr")
    argv[argv.index("--classes") + 1] = "water,building"
    out = _terrawatch(argv, site, site / "weights")
    assert out.returncode == 4, out.stderr
    # Prefect's own INFO lines and the progress bar are the quiet-logging work's to remove;
    # here: no traceback and no report of the error but the command line's one line
    assert "Traceback" not in out.stderr and "ERROR" not in out.stderr
    assert "StoreMismatchError" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("terrawatch landcover: error: "), errors
    assert "--classes 'water,building,road,tree' vs 'water,building'" in errors[0]
    assert zarr.open_group(str(site / "mismatch.zarr"), mode="r").attrs["classes"]
