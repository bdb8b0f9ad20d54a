"""Tile progress: counts and rates in each line, at a bounded rate, the last tile always."""

from __future__ import annotations

import pytest

from terrawatch.tasks.core.tile_runner import TileProgress, TileResult


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(seconds_per_tile: float, tiles: int, every: float) -> tuple[list[str], list[float]]:
    clock, lines, percents = Clock(), [], []
    progress = TileProgress(tiles, lines.append, percents.append, every, clock)
    for index in range(tiles):
        clock.now += seconds_per_tile
        stages = (("read", 0.1), ("model", 0.4))
        progress.tile_done(TileResult((0, index), "written", 1_000_000, 0.5, stages))
    assert progress.statuses == {"written": tiles}
    assert progress.stage_seconds == pytest.approx({"read": tiles * 0.1, "model": tiles * 0.4})
    return lines, percents


def test_fast_tiles_are_reported_every_few_seconds_and_at_the_end():
    lines, percents = _run(seconds_per_tile=0.5, tiles=20, every=2.0)
    # tile 1 at 0.5 s, then every 2 s (tiles 5, 9, 13, 17), and the last one
    assert [line.split(":")[1].split(" done")[0].strip() for line in lines] == [
        "1/20",
        "5/20",
        "9/20",
        "13/20",
        "17/20",
        "20/20",
    ]
    assert lines[-1] == "(0, 19) written: 20/20 done, 2.00 tiles/s, 2.00 Mpx/s"
    assert percents == [5.0, 25.0, 45.0, 65.0, 85.0, 100.0]


def test_slow_tiles_are_each_reported():
    lines, _ = _run(seconds_per_tile=3.0, tiles=4, every=2.0)
    assert len(lines) == 4
    assert lines[0] == "(0, 0) written: 1/4 done, 0.33 tiles/s, 0.33 Mpx/s"
