"""``landcover --probabilities`` end to end: tiny random-weight SegEarth-OV, real imagery, a real
Prefect API and Dask cluster; the store's per-class probabilities, resume and rerun."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import zarr

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.flows.options import LandcoverModelOptions
from tests.flows import test_landcover
from tests.flows.test_landcover import CLASSES, _chunk_files, _koeln

pytestmark = pytest.mark.slow
koeln_catalog = test_landcover.koeln_catalog  # the fixture: Köln GeoTIFF items in June and July


def _model(tiny_model_files, **kw) -> LandcoverModelOptions:
    return LandcoverModelOptions(
        weights=str(tiny_model_files["clip"]),
        upsampler_weights=str(tiny_model_files["simfeatup"]),
        **kw,
    )


def test_probabilities_follow_the_labels_and_a_resumed_run_writes_only_the_lost_tile(
    run_flow, tmp_path, koeln_catalog, tiny_model_files
):
    store = tmp_path / "prob.zarr"
    model = _model(tiny_model_files, probabilities=True)
    summary = _koeln(run_flow, koeln_catalog, store, model)
    cube = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    prob = cube["probability"]
    assert prob.dims == ("time", "class", "y", "x") and prob.dtype == np.uint8
    assert list(cube["class"].values) == ["water", "sand", "vegetation", "building"]
    values, labels = prob.values[0].astype(int), cube["landcover"].values[0]
    valid = labels != 255
    assert valid.mean() > 0.9 and (prob.values[0][:, ~valid] == 255).all()
    assert np.abs(values[:, valid].sum(axis=0) - 100).max() <= len(CLASSES) / 2
    ranked = np.sort(values, axis=0)
    clear = valid & (ranked[-1] - ranked[-2] >= len(CLASSES))  # beyond any rounding
    assert clear.sum() > 100
    assert (values.argmax(axis=0) == labels)[clear].all()
    # the scores of classes with synonyms are maxima over their prompts' softmax, so they sum to
    # at most 1: the divided best class is at least the undivided confidence
    assert (values.max(axis=0) >= cube["confidence"].values[0].astype(int) - 1)[valid].all()
    stac = json.loads((tmp_path / "prob.zarr.stac" / "collection.json").read_text())
    assert stac["cube:variables"]["probability"]["dimensions"] == ["time", "class", "y", "x"]
    assert summary["tiles"] == {"written": 9}

    # an interrupted run: one tile's record unset, its chunks as a crash left them; the rerun
    # writes that tile again and no other file of the data
    zarr.open_array(str(store), path="tile_done", mode="r+")[0, 1, 1] = 0
    zarr.open_array(str(store), path="probability", mode="r+")[0, :, 64:128, 64:128] = 7
    written = {p: p.stat().st_mtime_ns for p in _data_chunks(store) if not p.name.endswith(".1.1")}
    resumed = _koeln(run_flow, koeln_catalog, store, model)
    assert resumed["tiles"] == {"written": 1}
    again = xr.open_zarr(store, mask_and_scale=False)["probability"].values[0]
    np.testing.assert_array_equal(again, prob.values[0])
    assert {p: p.stat().st_mtime_ns for p in written} == written


def _data_chunks(store):
    """The chunk files of the data variables (``0.1.1``; ``0.<class>.1.1`` of probability)."""
    variables = ("landcover", "confidence", "probability")
    return [p for v in variables for p in (store / v).iterdir() if not p.name.startswith(".")]


def test_without_the_flag_nothing_changes_and_stores_keep_their_variables(
    run_flow, tmp_path, koeln_catalog, tiny_model_files
):
    plain = tmp_path / "plain.zarr"
    _koeln(run_flow, koeln_catalog, plain, _model(tiny_model_files))
    cube = xr.open_zarr(plain)
    assert "probability" not in cube.variables and "class" not in cube.variables
    before = _chunk_files(plain)
    with pytest.raises(StoreMismatchError, match="drop --probabilities"):
        _koeln(run_flow, koeln_catalog, plain, _model(tiny_model_files, probabilities=True),
               "07")  # fmt: skip
    assert _chunk_files(plain) == before
    with pytest.raises(InputError, match="--probabilities with --refine special"):
        _koeln(run_flow, koeln_catalog, tmp_path / "x.zarr",
               _model(tiny_model_files, probabilities=True, refine="special"))  # fmt: skip
    assert not (tmp_path / "x.zarr").exists()
