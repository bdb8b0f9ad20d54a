"""The optical member's NDWI/MNDWI rule and its SCL mask, on reflectances and real Sentinel-2."""

from __future__ import annotations

import json

import numpy as np
import rasterio

from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.flood.optical_member import (
    SCL_NOT_OBSERVED,
    clear,
    spectral_items,
    spectral_view,
    water_probability,
)
from tests.conftest import shared_data

S2_ITEM = "earthsearch-v1_sentinel-2-l2a_S2A_29RKH_20200219_0_L2A.LOCAL-DERIVED.item.json"


def test_water_is_positive_on_both_indices_and_land_is_not():
    #                 water  turbid  land  sand  built-up (NDWI > 0, MNDWI < 0)
    green = np.array([0.06, 0.12, 0.08, 0.25, 0.20], np.float32)
    nir = np.array([0.02, 0.08, 0.30, 0.35, 0.15], np.float32)
    swir = np.array([0.01, 0.05, 0.25, 0.45, 0.30], np.float32)
    prob = water_probability(green, nir, swir)
    assert (prob[:2] > 0.9).all() and (prob[2:4] < 0.05).all()
    assert prob[4] < 0.5  # MNDWI keeps bright built-up land out


def test_clouds_shadows_cirrus_snow_and_no_data_are_not_observed():
    scl = np.arange(12, dtype=np.float32)
    assert set(np.flatnonzero(~clear(scl))) == {0, 1, 3, 8, 9, 10, 11} == SCL_NOT_OBSERVED
    assert not clear(np.array([np.nan]))[0]


def test_real_sentinel2_desert_has_no_water_and_its_clouds_are_not_observed():
    """The real L2A scene over the Western Sahara (downsampled to 100 m): bare soil, some cloud
    and cirrus; the rule calls next to nothing water and leaves the SCL cloud classes out."""
    path = shared_data("stac", S2_ITEM)
    item = json.loads(path.read_text())
    for asset in item["assets"].values():
        asset["href"] = str((path.parent / asset["href"]).resolve())
    assert spectral_items([item]) == (item,)
    with rasterio.open(item["assets"]["scl"]["href"]) as src:
        scl = src.read(1)
        left, top = src.transform.c, src.transform.f
    grid = GridSpec("EPSG:32629", 200.0, left, top - 200.0 * scl.shape[0],
                    left + 200.0 * scl.shape[1], top)  # fmt: skip
    view = spectral_view((item,), grid, None)
    cloudy = np.isin(scl, [8, 9, 10])
    assert cloudy.sum() > 1000
    assert not view.observed[cloudy].any()
    assert view.observed[scl == 5].mean() > 0.99
    water = view.observed & (view.probability >= 0.5)
    assert water.sum() / view.observed.sum() < 1e-3
    assert set(np.unique(view.observed_at[view.observed])) == {
        int(np.datetime64("2020-02-19T11:34:25", "s").astype(np.int64))
    }


def test_items_without_the_bands_are_left_to_the_segmenter():
    rgb_only = {"id": "rgb", "collection": "local", "assets": {"image": {"href": "/x.tif"}},
                "properties": {}}  # fmt: skip
    assert spectral_items([rgb_only]) == ()
