"""``terrawatch segment IMAGE --refine special`` on real Sentinel-2 bands, and its bad input."""

from __future__ import annotations

import numpy as np
import rasterio

from terrawatch.flows.cli import main
from tests.flows.test_cli import _model_args
from tests.tasks.core.test_spectral_image import write_s2_stack


def test_a_class_the_zero_shot_map_never_predicts_stops_before_training(
    tmp_path, tiny_model_files, capsys
):
    """The tiny random CLIP labels every pixel with the first class: SPECIAL cannot learn the
    others, and says so in one line (exit 2) instead of training a degenerate classifier."""
    image = tmp_path / "s2.tif"
    write_s2_stack(image)
    out = tmp_path / "refined.tif"
    code = main(
        [
            "segment",
            str(image),
            "--classes",
            "water,vegetation,bare soil",
            "--out",
            str(out),
            "--refine",
            "special",
            *_model_args(tiny_model_files),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no pixel is pseudo-labelled as 'vegetation', 'bare soil'" in err[0]
    assert not out.exists()


def test_refine_special_without_wavelengths_fails_in_one_line_before_the_model(tmp_path, capsys):
    image = tmp_path / "plain.tif"
    with rasterio.open(
        image,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=5,
        dtype="uint16",
        transform=rasterio.transform.from_origin(0, 8, 1, 1),
    ) as dst:
        dst.write(np.ones((5, 8, 8), np.uint16))
    code = main(
        [
            "segment",
            str(image),
            "--classes",
            "water,tree",
            "--out",
            str(tmp_path / "x.tif"),
            "--refine",
            "special",
            "--weights",
            str(tmp_path / "missing.pt"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--wavelengths FILE" in err[0]
