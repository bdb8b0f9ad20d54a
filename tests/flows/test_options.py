"""Option groups: declared once, shared by the flows, the deployments and the command line."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import get_args

import pytest

from terrawatch.errors import InputError
from terrawatch.flows.cli import build_parser
from terrawatch.flows.cli_common import read_options
from terrawatch.flows.options import (
    ChangeTilingOptions,
    ChipOptions,
    FloodModelOptions,
    FloodSearchOptions,
    ModelOptions,
    SarInputOptions,
    SearchOptions,
    TilingOptions,
    TrainingOptions,
)
from terrawatch.tasks.core.defaults import HALO, check_chunk


def _flows() -> dict:
    from terrawatch.flows.align_sar import align_sar, align_sar_inputs
    from terrawatch.flows.change import change, change_inputs
    from terrawatch.flows.flood import flood, flood_inputs
    from terrawatch.flows.landcover import landcover, landcover_inputs

    return {
        landcover: landcover_inputs,
        change: change_inputs,
        flood: flood_inputs,
        align_sar: align_sar_inputs,
    }


def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


LANDCOVER = ("landcover", "--aoi", "1,2,3,4", "--start", "2024-06-01", "--end", "2024-06-02",
             "--classes", "water,land", "--store", "x.zarr")  # fmt: skip
FLOOD = ("flood", "--aoi", "1,2,3,4", "--date", "2024-05-10", "--store", "x.zarr")
ALIGN = ("align-sar", "--aoi", "1,2,3,4", "--start", "2024-06-01", "--end", "2024-06-30",
         "--out", "out")  # fmt: skip


def test_no_flow_takes_more_than_twelve_parameters():
    for flow in _flows():
        assert len(inspect.signature(flow.fn).parameters) <= 12, flow.name


def test_each_inputs_step_takes_its_flows_parameters_with_the_same_defaults():
    """The command line's preflight is called with the very parameters it then runs the flow on."""
    for flow, inputs in _flows().items():
        step = inspect.signature(inputs).parameters.values()
        own = [(p.name, p.default) for p in step if p.kind is not p.KEYWORD_ONLY]
        assert own == [(p.name, p.default) for p in inspect.signature(flow.fn).parameters.values()]


def test_options_module_imports_no_heavy_library():
    code = (
        "import sys, terrawatch.flows.options; "
        "print(sorted(m for m in ('torch', 'prefect', 'dask', 'xarray', 'zarr', 'rasterio') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_backbone_choices_are_the_models_backbones():
    from terrawatch.models.settings import BACKBONES

    assert set(get_args(ModelOptions.model_fields["backbone"].annotation)) == set(BACKBONES)
    with pytest.raises(SystemExit):
        _parse(*LANDCOVER, "--backbone", "ViT-X-99")


def test_command_line_defaults_are_the_groups_defaults():
    landcover = _parse(*LANDCOVER)
    assert read_options(landcover, TilingOptions) == TilingOptions()
    assert read_options(landcover, TilingOptions).halo == HALO
    assert read_options(landcover, SearchOptions) == SearchOptions()
    assert read_options(landcover, ModelOptions) == ModelOptions()
    change = _parse("change", "--from-cube", "lc.zarr", "--store", "x.zarr")
    assert read_options(change, ChangeTilingOptions).chunk == 512
    flood = _parse(*FLOOD)
    assert read_options(flood, FloodSearchOptions) == FloodSearchOptions()
    assert read_options(flood, FloodSearchOptions).catalog == "planetary-computer"
    assert read_options(flood, FloodModelOptions) == FloodModelOptions()
    align = _parse(*ALIGN)
    assert read_options(align, ChipOptions) == ChipOptions()
    assert read_options(align, TrainingOptions, settings=None) == TrainingOptions()


def test_help_shows_each_fields_default_and_choices():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(sub.choices["change"].format_help().split())
    assert "--chunk CHUNK output chunk (tile) size in pixels, at least 64" in text
    assert "(default: 512)" in text and "{ViT-B-16,ViT-B-32,ViT-L-14}" in text
    assert "--theta THETA change angle θ in degrees (published 145) (default: 145.0)" in text


def test_lists_none_switches_and_renamed_flags_reach_the_groups():
    flood = _parse(*FLOOD, "--polarizations", "vv, vh", "--speckle", "none", "--no-optical",
                   "--max-cloud", "none", "--model-factory", "pkg.mod:build")  # fmt: skip
    assert read_options(flood, SarInputOptions) == SarInputOptions(
        polarizations=["vv", "vh"], speckle=None
    )
    search = read_options(flood, FloodSearchOptions)
    assert not search.optical and search.max_cloud is None
    assert read_options(_parse(*FLOOD, "--optical"), FloodSearchOptions).optical  # old spelling
    assert read_options(_parse(*FLOOD), FloodSearchOptions).optical  # the default
    assert read_options(flood, FloodModelOptions).factory == "pkg.mod:build"
    align = _parse(*ALIGN, "--no-resume", "--chips", "c.zarr", "--orbit", "descending")
    assert not read_options(align, TrainingOptions).resume
    assert read_options(align, ChipOptions).dataset == "c.zarr"


def test_an_empty_comma_list_is_refused():
    with pytest.raises(InputError, match="--polarizations needs at least one"):
        read_options(_parse(*FLOOD, "--polarizations", " , "), SarInputOptions)


def test_model_device_reaches_the_workers_spec():
    assert ModelOptions(device="cpu").spec(["water", "land"]).device == "cpu"
    assert ModelOptions().spec(["water", "land"]).device is None


def test_one_chunk_rule_refuses_small_chunks_before_any_search(tmp_path):
    from terrawatch.flows.landcover import landcover_inputs
    from terrawatch.tasks.core import cube_store

    assert cube_store.check_chunk is check_chunk  # the cube store checks with the same rule
    check_chunk(64)
    with pytest.raises(InputError, match=r"chunk must be an int >= 64 .* got 63"):
        check_chunk(63)
    missing = SearchOptions(catalog=str(tmp_path / "no-such-catalog"))
    with pytest.raises(InputError, match="chunk must be"):
        landcover_inputs("1,2,3,4", ["water", "land"], "2024-06-01", "2024-06-02",
                         search=missing, tiling=TilingOptions(chunk=32))  # fmt: skip


def test_a_deployment_passes_groups_as_dicts():
    from terrawatch.flows.flood import flood

    params = flood.validate_parameters(
        {"aoi": "1,2,3,4", "event_date": "2024-05-10", "tiling": {"chunk": 64}}
    )
    assert params["tiling"] == TilingOptions(chunk=64, halo=HALO)
    assert params["search"] == FloodSearchOptions()
