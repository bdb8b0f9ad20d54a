"""Chaos on the real local stack: random kills during deployed runs, the documented recovery,
and the clean run's cube every time (issue 16, item 6).

One stack for every moment (the session's). Each moment starts a land-cover run of the
deployment into a fresh store, kills one process (:data:`tests.deploy._chaos.KINDS`) after a
random delay within the clean run's duration, recovers as deploy/RUNBOOK.md says and checks:
a completed run, the cube equal to the clean run's (every chunk file byte for byte, the
metadata without run id and creation times, the quicklook's pixels), each tile's completion
record written once and its data at most twice (once if it was done before the kill), and no
second writer in the lease history. ``TERRAWATCH_CHAOS_MOMENTS`` sets how many moments
(default 10), ``TERRAWATCH_CHAOS_SEED`` replays a seed; the counts are printed and written to
``chaos-counts.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.deploy import _chaos
from tests.deploy.conftest import LANDCOVER

pytestmark = pytest.mark.slow

SETUP_SPAN = 0.5
"""Before a first tile was timed, setup moments fall in the first half of the clean run."""
MOMENT_TIMEOUT_S = 300
"""pytest-timeout per moment (a faulted run, a restart, a rerun, on a loaded 2-core machine)."""
TILE_MOMENTS = 0.6
"""Share of moments placed by tiles: after 1 to all tiles are done, plus up to 2 s (the tiles
being written, where a lost or doubled tile could happen, and the publishing after them). The
others fall in the setup (search, store creation, model load, submitting the tiles): a random
time before the first tile of the latest run that timed it (the clean run's time shrinks as
caches warm)."""


def _clean_seconds(flow_run) -> float:
    """From the run's creation to its end: the span in which a kill may land."""
    return (flow_run.end_time - flow_run.created).total_seconds()


@pytest.mark.timeout(600 + MOMENT_TIMEOUT_S * _chaos.chaos_settings()[0])
def test_random_kills_recover_to_the_clean_cube(stack, clean_run, landcover_params, tmp_path):
    moments, seed = _chaos.chaos_settings()
    rng = random.Random(seed)
    clean_flow_run, clean_store = clean_run
    setup_s = _clean_seconds(clean_flow_run) * SETUP_SPAN
    print(f"chaos: seed {seed} ({_chaos.SEED_ENV}={seed} replays it), {moments} moments")
    chaos = _chaos.Chaos(stack)
    results: list[_chaos.MomentResult] = []
    report = tmp_path / "chaos-counts.json"
    clean = Path(clean_store)
    n_tiles = sum(1 for p in (clean / "tile_done").iterdir() if _chaos.TILE_CHUNK.match(p.name))
    try:
        for index, kind in enumerate(_chaos.plan_kinds(rng, moments)):
            moment = _chaos.MomentResult(index, kind, round(rng.uniform(0, setup_s), 2))
            if rng.random() < TILE_MOMENTS:
                moment.after_tiles = rng.randint(1, n_tiles)
                moment.delay_s = round(rng.uniform(0, 2), 2)
            store = tmp_path / f"m{index:02d}-{kind}" / clean.name
            store.parent.mkdir()
            results.append(moment)
            _chaos.run_moment(stack, chaos, moment, rng, landcover_params(str(store)), clean,
                              LANDCOVER)  # fmt: skip
            when = f"{moment.after_tiles} tiles + " if moment.after_tiles else ""
            print(f"chaos moment {index}: {kind} at {when}{moment.delay_s} s, killed "
                  f"{moment.killed} ({moment.state_at_kill}, {moment.tiles_done_at_kill} tiles "
                  f"done); run {moment.faulted_state}"
                  f"{', crashed by the zombie automation' if moment.zombie_recovered else ''}"
                  f"{', rerun ' + moment.final_state if moment.rerun else ''}; "
                  f"identical {moment.identical}; {moment.seconds} s"
                  + "".join(f"\n  problem: {p}" for p in moment.problems))  # fmt: skip
            setup_s = moment.first_tile_s or setup_s
    finally:
        chaos.heal()
        counts = _chaos.summary(results, seed)
        report.write_text(json.dumps(counts, indent=2))
        print(f"chaos counts ({report}): " + json.dumps({k: v for k, v in counts.items()
                                                          if k != "results"}))  # fmt: skip
    failed = [f"moment {r.index} ({r.kind} at {r.after_tiles} tiles + {r.delay_s} s): "
              f"{r.problems}" for r in results if r.problems]  # fmt: skip
    assert not failed, f"seed {seed}:\n" + "\n".join(failed) + "\n" + stack.logs()[-4000:]
    assert counts["moments"] == moments and counts["identical_cubes"] == moments


def test_run_orphaned_by_its_killed_prefect_worker_completes_by_itself(
    stack, clean_run, landcover_params, tmp_path
):
    """The runbook's "A lost Prefect worker": its running flow run goes on and reports its own
    final state, Completed, with the clean cube and no rerun."""
    clean = Path(clean_run[1])
    store = tmp_path / "orphan" / clean.name
    store.parent.mkdir()
    chaos = _chaos.Chaos(stack)
    moment = _chaos.MomentResult(0, "prefect-worker", 0.5, after_tiles=2)
    try:
        _chaos.run_moment(stack, chaos, moment, random.Random(0), landcover_params(str(store)),
                          clean, LANDCOVER)  # fmt: skip
    finally:
        chaos.heal()
    assert moment.identical and not moment.problems, moment
    assert moment.faulted_state == "Completed" and not moment.rerun, moment
