"""``terrawatch align-sar``: an offline run; bad arguments give one clear line and exit code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from terrawatch.flows import cli
from terrawatch.flows.cli_align import add_align_command
from tests.flows.test_align_sar import make_align_catalog
from tests.tasks.alignearth.test_chips import scene_aoi


@pytest.fixture
def main(monkeypatch):
    """``cli.main`` with the align-sar command registered if flows/cli.py lacks it yet."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "align-sar" not in sub.choices:
        build = cli.build_parser

        def build_with_align() -> argparse.ArgumentParser:
            parser = build()
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            add_align_command(sub)
            return parser

        monkeypatch.setattr(cli, "build_parser", build_with_align)
    return cli.main


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_align_catalog(tmp_path_factory.mktemp("align-cli"))


def _args(catalog: Path, out: Path, teacher: Path, *extra: str) -> list[str]:
    return [
        "align-sar", "--aoi", scene_aoi(4800.0), "--start", "2024-06-01", "--end", "2024-06-30",
        "--catalog", str(catalog), "--out", str(out), "--optical-collections", "local",
        "--sar-collections", "sentinel-1-rtc", "--chip", "112",
        "--weights", str(teacher), "--device", "cpu", "--threads", "1", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_align_command_trains_offline_and_prints_the_summary(
    main, prefect_api, dask_cluster, catalog, tiny_clip_path, tmp_path, capsys
):
    out = tmp_path / "student"
    extra = ("--steps", "4", "--batch-size", "8", "--lr", "1e-3", "--setting", "regions=7",
             "--json", "--address", dask_cluster.scheduler_address)  # fmt: skip
    assert main(_args(catalog, out, tiny_clip_path, *extra)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 4 and Path(summary["checkpoint"]).is_file()
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["settings"]["lr"] == 1e-3


def test_negative_max_days_is_a_usage_error(main, catalog, tiny_clip_path, tmp_path, capsys):
    code = main(_args(catalog, tmp_path / "out", tiny_clip_path, "--max-days", "-1"))
    assert code == 2
    assert "--max-days must be a number >= 0 (days), got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_setting_is_a_usage_error(main, catalog, tiny_clip_path, tmp_path, capsys):
    code = main(_args(catalog, tmp_path / "out", tiny_clip_path, "--setting", "learning_rate=1"))
    assert code == 2
    assert "unknown distillation settings ['learning_rate']" in capsys.readouterr().err


def test_malformed_setting_is_a_usage_error(main, catalog, tiny_clip_path, tmp_path, capsys):
    code = main(_args(catalog, tmp_path / "out", tiny_clip_path, "--setting", "lr"))
    assert code == 2
    assert "--setting must be NAME=NUMBER" in capsys.readouterr().err


def test_zero_steps_is_a_usage_error(main, catalog, tiny_clip_path, tmp_path, capsys):
    code = main(_args(catalog, tmp_path / "out", tiny_clip_path, "--steps", "0"))
    assert code == 2
    assert "steps must be an integer >= 1, got 0" in capsys.readouterr().err


def test_no_pair_within_max_days_is_no_scenes(main, catalog, tiny_clip_path, tmp_path, capsys):
    code = main(_args(catalog, tmp_path / "out", tiny_clip_path, "--max-days", "0.5"))
    assert code == 3  # NoScenesError
    assert "no optical/SAR pair within --max-days 0.5" in capsys.readouterr().err


def test_missing_teacher_weights_is_weights_not_found(main, catalog, tmp_path, capsys):
    code = main(_args(catalog, tmp_path / "out", tmp_path / "missing.pt"))
    assert code == 5  # WeightsNotFoundError
    assert "missing.pt' given for ViT-B-16 does not exist" in capsys.readouterr().err


def test_chip_not_a_multiple_of_the_patch_size_is_a_usage_error(
    main, catalog, tiny_clip_path, tmp_path, capsys
):
    code = main(_args(catalog, tmp_path / "out", tiny_clip_path, "--chip", "100"))
    assert code == 2
    assert "chip must be a multiple of the patch size 16" in capsys.readouterr().err
