"""Prefect cancellation and crash hooks of the cube flows: stop the run's tiles on Dask.

A flow run's tiles are Dask tasks; cancelling or crashing the flow run stops none of them. The
hooks (``on_cancellation`` and ``on_crashed`` of the land-cover, change and flood flows) run
where Prefect runs them (the flow process, or the worker that killed it) and:

1. release the run's writer lease of its ``store``, so any tile still running refuses to write
   (:func:`tasks.core.writer_lease.check_writer_token`) and the next run takes the cube at once;
2. cancel the run's tile futures on a shared scheduler (``$TERRAWATCH_DASK_ADDRESS``), found by
   their keys (:data:`tasks.core.run_watch.TILE_KEY_PREFIX`). A local cluster dies with the
   flow process; there is nothing to cancel.

The tile coordinator stops by itself as well (:mod:`tasks.core.run_watch`); the hooks make the
stop immediate and cover a coordinator that is itself gone.
"""

from __future__ import annotations

import os
from typing import Any

from terrawatch.flows.runner import DASK_ADDRESS_ENV
from terrawatch.tasks.core.run_watch import TILE_KEY_PREFIX
from terrawatch.tasks.core.writer_lease import release_run_lease

CONNECT_SECONDS = 10
"""Longest wait for the shared scheduler in a hook: a hook must not hang the worker."""


def stop_run_tiles(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_cancellation`` / ``on_crashed`` hook: release the run's lease, cancel its tiles."""
    from prefect.logging import get_logger

    log = get_logger("terrawatch.run_hooks")
    run_id = str(flow_run.id)
    store = (flow_run.parameters or {}).get("store")
    if store:
        try:
            if release_run_lease(str(store), run_id):
                log.info("released the writer lease of %s held by flow run %s", store, run_id)
        except Exception as error:  # the lease still expires after its TTL
            log.warning("could not release the writer lease of %s: %s", store, error)
    address = os.environ.get(DASK_ADDRESS_ENV)
    if address:
        try:
            cancelled = cancel_run_tiles(address, run_id)
        except Exception as error:  # the coordinator stops them within seconds anyway
            log.warning("could not cancel the tiles of flow run %s on %s: %s", run_id, address,
                        error)  # fmt: skip
        else:
            log.info("cancelled %d tiles of flow run %s on %s", cancelled, run_id, address)


def cancel_run_tiles(address: str, run_id: str) -> int:
    """Cancel every task of flow run ``run_id``'s tiles on the scheduler at ``address``."""
    from distributed import Client, Future

    prefix = f"{TILE_KEY_PREFIX}-{run_id}-"
    with Client(address, timeout=CONNECT_SECONDS, set_as_default=False) as client:
        keys = client.run_on_scheduler(_keys_with_prefix, prefix=prefix)
        if keys:
            futures = [Future(key, client) for key in keys]
            client.cancel(futures, force=True, reason=f"flow run {run_id} stopped")
        return len(keys)


def _keys_with_prefix(dask_scheduler: Any, prefix: str) -> list[str]:
    return [key for key in dask_scheduler.tasks if isinstance(key, str) and key.startswith(prefix)]


RUN_STOP_HOOKS: dict[str, list[Any]] = {
    "on_cancellation": [stop_run_tiles],
    "on_crashed": [stop_run_tiles],
}
"""The hooks, as ``@flow(**RUN_STOP_HOOKS)`` keywords."""
