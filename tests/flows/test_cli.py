"""The ``terrawatch`` command: segment, catalog add, weights, and clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from terrawatch.flows.cli import main, parse_classes_option
from tests.conftest import shared_data


def _model_args(files) -> list[str]:
    return [
        "--weights",
        str(files["clip"]),
        "--upsampler-weights",
        str(files["simfeatup"]),
        "--device",
        "cpu",
    ]


def test_segment_writes_a_label_geotiff_on_the_input_grid(tmp_path, tiny_model_files):
    image = shared_data("optical", "oem_koeln_50.tif")
    out, png = tmp_path / "labels.tif", tmp_path / "preview.png"
    code = main(
        [
            "segment",
            str(image),
            "--classes",
            "water,building|roof,road,tree|forest",
            "--out",
            str(out),
            "--png",
            str(png),
            *_model_args(tiny_model_files),
        ]
    )
    assert code == 0
    with rasterio.open(image) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height)
        labels = dst.read(1)
        assert dst.dtypes[0] == "uint8" and dst.nodata == 255
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
        assert json.loads(dst.tags()["class_names"]) == ["water", "building", "road", "tree"]
        assert dst.colormap(1)[0][:3] != dst.colormap(1)[1][:3]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segment_reads_a_class_file(tmp_path, tiny_model_files):
    image = shared_data("change", "pair256_t1.png")
    classes = shared_data("classnames", "cls_openearthmap.txt")
    out = tmp_path / "labels.tif"
    assert (
        main(
            [
                "segment",
                str(image),
                "--classes-file",
                str(classes),
                "--out",
                str(out),
                *_model_args(tiny_model_files),
            ]
        )
        == 0
    )
    with rasterio.open(out) as dst:
        assert dst.crs is None and dst.shape == (256, 256)
        assert len(json.loads(dst.tags()["class_names"])) == 9


def test_segment_without_classes_is_a_usage_error(tmp_path, capsys):
    image = shared_data("optical", "oem_koeln_50.tif")
    assert main(["segment", str(image), "--out", str(tmp_path / "x.tif")]) == 2
    assert "--classes" in capsys.readouterr().err


def test_segment_with_missing_weights_offline_says_how_to_get_them(tmp_path, capsys):
    image = shared_data("optical", "oem_koeln_50.tif")
    code = main(
        ["segment", str(image), "--classes", "water,tree", "--out", str(tmp_path / "x.tif")]
    )
    assert code == 5  # WeightsNotFoundError
    err = capsys.readouterr().err
    assert "ViT-B-16.pt" in err and "TERRAWATCH_WEIGHTS_DIR" in err
    assert not (tmp_path / "x.tif").exists()


def test_catalog_add_writes_a_searchable_item(tmp_path):
    image = shared_data("optical", "oem_koeln_50.tif")
    assert (
        main(
            [
                "catalog",
                "add",
                str(image),
                "--catalog",
                str(tmp_path / "cat"),
                "--datetime",
                "2024-06-01",
            ]
        )
        == 0
    )
    item = json.loads((tmp_path / "cat" / "oem_koeln_50.json").read_text())
    assert item["properties"]["proj:code"] == "EPSG:25832"


def test_classes_option_joins_synonyms_with_a_bar():
    classes = parse_classes_option("water,tree|forest", None)
    assert classes.synonyms == (("water",), ("tree", "forest"))
    assert classes.entries == ["water", "tree,forest"]
    with pytest.raises(ValueError, match="exactly one of"):
        parse_classes_option(None, None)


def test_console_script_is_installed():
    exe = shutil.which("terrawatch", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("terrawatch is not installed beside this Python (pip install -e .)")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "segment" in out.stdout and "landcover" in out.stdout


def test_weights_list_names_every_checkpoint_and_model_folder(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("ViT-B-16", "simfeatup-jbu-one-million-aid", "AlignEarth-SAR-ViT-B-16"):
        assert name in out
    assert "sam-vit-huge" in out and "dinov2-base" in out


def test_weights_fetch_of_an_unknown_name_lists_the_known_ones(capsys):
    assert main(["weights", "fetch", "ViT-X-99"]) == 2
    err = capsys.readouterr().err
    assert "unknown weights ['ViT-X-99']" in err and "dinov2-base" in err


def test_weights_fetch_offline_says_how_to_get_the_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("TERRAWATCH_OFFLINE", "1")
    assert main(["weights", "fetch", "dinov2-base"]) == 5  # WeightsNotFoundError
    assert "dinov2-base" in capsys.readouterr().err
