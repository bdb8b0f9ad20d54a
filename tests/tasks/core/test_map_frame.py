"""Quicklooks people can read: coordinates, a scale bar, the CRS and the dates."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.cube_store import open_cube
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.map_frame import MapFrame
from terrawatch.tasks.core.render import change_quicklook_figure, panels_figure, quicklook_png
from terrawatch.tasks.landcover.cube import prepare_cube
from terrawatch.tasks.landcover.publish import landcover_title

UTM = GridSpec("EPSG:32632", 10.0, 350_000.0, 5_640_000.0, 351_280.0, 5_641_280.0)  # 12.8 km²
DEGREES = GridSpec("EPSG:4326", 0.0003125, 6.90, 50.90, 6.96, 50.94)


def test_a_projected_frame_has_metres_a_round_scale_bar_and_grouped_ticks():
    frame = MapFrame.from_grid(UTM)
    assert frame.axis_labels == ("easting (m)", "northing (m)")
    assert frame.scale_bar() == (200.0, "200 m")  # round, about a quarter of 1 280 m
    assert frame.tick_label(5_640_500.0) == "5\u2009640\u2009500"
    assert frame.crs_text == "EPSG:32632 (WGS 84 / UTM zone 32N)"


def test_a_geographic_frame_has_degrees_and_a_scale_bar_in_km_at_its_latitude():
    frame = MapFrame.from_grid(DEGREES)
    length, label = frame.scale_bar()
    assert label == "1 km"  # the AOI is about 4.2 km wide at 50.9° N
    assert length == pytest.approx(1000 / (111_320 * np.cos(np.radians(50.92))), rel=1e-6)
    assert frame.axis_labels == ("longitude (°)", "latitude (°)")
    assert frame.tick_label(6.935) == "6.935°"


def test_the_map_panel_has_coordinates_and_a_scale_bar():
    frame = MapFrame.from_grid(UTM)
    image = np.zeros((128, 128, 3), np.uint8)
    fig = panels_figure([("image", image), ("labels", image)], [("water", "#1f65c1")], "t", frame)
    first, last = fig.axes
    assert first.get_xlabel() == "easting (m)" and first.get_ylabel() == "northing (m)"
    fig.canvas.draw()
    ticks = [t.get_text() for t in first.get_xticklabels() if t.get_text()]
    assert ticks and all(t.replace("\u2009", "").isdigit() for t in ticks)
    assert 350_000 <= float(ticks[0].replace("\u2009", "")) <= 351_280
    bars = [a for a in last.artists if isinstance(a, AnchoredSizeBar)]
    assert len(bars) == 1 and bars[0].txt_label.get_text() == "200 m"


def test_change_panels_are_titled_with_their_dates():
    rgb = np.zeros((3, 64, 64), np.float32)
    dates = ("2024-05-01..2024-05-31", "2024-06-01..2024-06-30")
    fig = change_quicklook_figure(
        rgb, rgb, np.zeros((64, 64), bool), dates=dates, frame=MapFrame.from_grid(DEGREES)
    )
    assert [ax.get_title() for ax in fig.axes] == [
        "before 2024-05-01..2024-05-31",
        "after 2024-06-01..2024-06-30",
        "after 2024-06-01..2024-06-30 + change",
    ]


def test_the_land_cover_title_names_store_period_and_crs(tmp_path: Path):
    store = str(tmp_path / "koeln.zarr")
    step = TimeStep("2024-06-01", "2024-06-30", ("local_1",))
    prepare_cube(store, UTM, parse_class_names(["water", "tree"]), step, {}, chunk=128)
    title = landcover_title(store, open_cube(store), 0, MapFrame.from_grid(UTM))
    assert (
        title
        == "koeln.zarr · land cover 2024-06-01..2024-06-30\nEPSG:32632 (WGS 84 / UTM zone 32N)"
    )


def test_a_framed_quicklook_png_is_written_without_warnings(tmp_path: Path):
    labels = np.repeat(np.arange(4, dtype=np.uint8), 32)[None, :].repeat(128, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # glyph, layout or tick warnings fail the test
        png = quicklook_png(
            labels, ["water", "tree", "Straße", "水体"],
            title="koeln.zarr · land cover 2024-06-01..2024-06-30\nEPSG:32632",
            frame=MapFrame.from_grid(UTM),
        )  # fmt: skip
    (tmp_path / "q.png").write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_georeferenced_image_gives_a_frame_and_a_plain_picture_none():
    from terrawatch.tasks.core.image_io import map_frame_of, read_rgb_image
    from tests.conftest import shared_data

    image = read_rgb_image(shared_data("optical", "oem_koeln_50.tif"))
    frame = map_frame_of(image.profile, image.valid.shape)
    assert frame is not None and frame.crs == "EPSG:25832"
    assert (frame.left, frame.bottom, frame.right, frame.top) == (
        346_000.0, 5_647_500.0, 346_500.0, 5_648_000.0,
    )  # fmt: skip
    plain = read_rgb_image(shared_data("change", "pair256_t1.png"))
    assert map_frame_of(plain.profile, plain.valid.shape) is None
