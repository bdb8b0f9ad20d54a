"""examples/analyst.ipynb runs top to bottom (nbclient, a real kernel) on a cube the land-cover
flow makes from the shared Köln image (two dates, tiny test weights), so it never rots."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from rio_cogeo.cogeo import cog_validate

from terrawatch.flows.landcover import landcover
from terrawatch.flows.options import ModelOptions
from terrawatch.tasks.core.local_item import add_local_item
from tests.conftest import shared_data

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "analyst.ipynb"
pytestmark = pytest.mark.slow


def test_analyst_notebook_runs_on_a_cube_made_from_shared_data(
    run_flow, tmp_path: Path, tiny_model_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = shared_data("optical", "oem_koeln_50.tif")
    catalog, store = tmp_path / "catalog", tmp_path / "koeln.zarr"
    model = ModelOptions(
        weights=str(tiny_model_files["clip"]), upsampler_weights=str(tiny_model_files["simfeatup"])
    )
    for month in ("06", "07"):  # the notebook's own recipe, with the tiny weights
        add_local_item(image, catalog, datetime=f"2024-{month}-01T10:00:00Z", item_id=f"k-{month}")
        run_flow(
            landcover,
            aoi="6.8085,50.9595,6.8130,50.9625",
            classes=["water,sea", "sand,desert", "vegetation", "building,town"],
            start=f"2024-{month}-01",
            end=f"2024-{month}-02",
            store=str(store),
            search={"catalog": str(catalog), "collections": ["local"], "max_cloud": None},
            grid={"resolution": 2.0},
            tiling={"chunk": 64},
            model=model,
        )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells)  # committed without outputs
    monkeypatch.setenv("TERRAWATCH_EXAMPLE_CUBE", str(store))
    work = tmp_path / "work"
    work.mkdir()
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()
    assert cog_validate(str(work / "koeln-landcover.tif"))[0]
    assert (work / "koeln-landcover.gpkg").is_file()
    tables = [o for c in notebook.cells for o in c.get("outputs", []) if "data" in o]
    assert len(tables) >= 4  # class table, areas, transitions, polygon areas (and the plot)
    assert any("image/png" in o["data"] for o in tables)  # the plot
