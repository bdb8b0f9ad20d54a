"""Benchmark a weights-free flood run: a synthetic 100 km² event from local COGs to the report.

The event (``tests/flows/flood_event.py``: gamma speckle ENL 4.4, incidence-angle gradient, a
lake, a river, a sand field, a shadow strip, a planted flood) is written as Sentinel-1 RTC COGs
(VV and VH) at 10 m, 1000 x 1000 px by default (100 km²): 5 reference scenes before the event
and 1 after. The real flow runs on it with no weights (``--method auto`` -> threshold member
only) on the Prefect ephemeral API and a Dask LocalCluster (2 workers x 1 thread), through to
the cube, the polygons, the footprint and the HTML report. One summary line: wall time, the
per-stage split (from the flow's Prefect task runs), the CSI of the planted flood::

    python bench/flood.py [--size 1000] [--chunk 512] [--dem-gsw]

``--dem-gsw`` also puts a DEM (radar shadow and layover) and a JRC GSW occurrence item (reference
water) in the event's catalog, as Planetary Computer serves them beside Sentinel-1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def _task_seconds(flow_run_id) -> dict[str, float]:
    """Wall seconds per task name of one flow run (from the Prefect API)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    seconds: dict[str, float] = {}
    for run in runs:
        if run.start_time and run.end_time:
            name = run.name.rsplit("-", 1)[0]
            seconds[name] = seconds.get(name, 0.0) + (run.end_time - run.start_time).total_seconds()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1000, help="pixels a side at 10 m")
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--dem-gsw", action="store_true", help="add a DEM and a GSW item")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["TERRAWATCH_OFFLINE"] = "1"

    import numpy as np
    import xarray as xr
    from prefect_dask import DaskTaskRunner

    from terrawatch.flows.flood import flood
    from terrawatch.flows.local_api import shared_local_api
    from terrawatch.flows.options import FloodSearchOptions, TilingOptions
    from terrawatch.flows.runner import local_cluster
    from tests.flows.flood_event import EVENT, csi, write_dem, write_event, write_gsw

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["TERRAWATCH_WEIGHTS_DIR"] = str(root / "no-weights")
        event = write_event(root, args.size)
        if args.dem_gsw:
            write_dem(root, event)
            write_gsw(root, event)
        store = root / "flood.zarr"
        with (
            shared_local_api(),
            local_cluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
        ):
            runner = DaskTaskRunner(address=cluster.scheduler_address)
            started = time.perf_counter()
            state = flood.with_options(task_runner=runner)(
                aoi=event.aoi(inset=20.0),
                event_date=EVENT,
                store=str(store),
                search=FloodSearchOptions(
                    catalog=str(root / "catalog"), collections=["sentinel-1-rtc"]
                ),
                tiling=TilingOptions(chunk=args.chunk),
                return_state=True,
            )
            wall = time.perf_counter() - started
            summary = state.result()
            stages = asyncio.run(_task_seconds(state.state_details.flow_run_id))
        cube = xr.open_zarr(store, mask_and_scale=False)
        score = csi(cube.flooded.values[0] == 1, event.on_grid(event.flood, cube.x.values,
                                                                cube.y.values))  # fmt: skip
        pixels = int(np.prod(cube.flooded.shape[1:]))
        km2 = pixels * 1e-4
        split = ", ".join(f"{name} {sec:.1f}s" for name, sec in stages.items())
        print(
            f"flood bench: {km2:.0f} km² ({pixels / 1e6:.2f} Mpx, 5 pre + 1 post, "
            f"members {'+'.join(summary['members'])}{', DEM + GSW' if args.dem_gsw else ''}) "
            f"in {wall:.1f} s wall "
            f"(cold cluster); stages: {split}; {len(summary['files'])} files; "
            f"CSI {score:.3f}; flooded {summary['flooded_km2']:.2f} km²"
        )


if __name__ == "__main__":
    main()
