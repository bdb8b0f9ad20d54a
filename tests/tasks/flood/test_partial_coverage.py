"""An AOI only partly seen after the event: the unseen part is no data, never "not flooded"."""

from __future__ import annotations

import numpy as np

from terrawatch.tasks.flood.cube import FLOOD_CUBE
from terrawatch.tasks.flood.plan import FloodSpec
from terrawatch.tasks.flood.stack import DbStack
from terrawatch.tasks.flood.tile import Sides, segment_sides


def _stack(values: np.ndarray, keys: tuple[str, ...], days: list[str]) -> DbStack:
    return DbStack({"vv": values.astype(np.float32)}, keys, np.array(days, "datetime64[ns]"))


def test_pixels_no_post_scene_saw_are_no_data_and_never_flooded():
    shape = (4, 6)
    post = np.full((1, *shape), -23.0)  # water everywhere it was seen
    post[0, :, 3:] = np.nan  # the post-event scene ends at column 3
    reference = np.full((2, *shape), -9.0)  # land before
    sides = Sides(
        shape, (), (),
        _stack(post, ("post",), ["2024-05-12T05:00"]),
        _stack(reference, ("a", "b"), ["2024-04-30", "2024-05-06"]),
        {key: {"vv": -16.0} for key in ("post", "a", "b")},
        np.datetime64("2024-05-12T05:00", "s"),
    )  # fmt: skip
    arrays = segment_sides(FloodSpec(None, (0,), threshold=True), sides)
    final = FLOOD_CUBE.finish(arrays)
    assert (final["flooded"][:, :3] == 1).all()
    assert (final["flooded"][:, 3:] == 255).all()
    assert (final["observed_water"][:, 3:] == 255).all() and (final["source"][:, 3:] == 0).all()
    assert (final["likelihood"][:, 3:] == 255).all() and (final["observed_at"][:, 3:] == -1).all()
    assert (final["reference_water"] == 0).all()  # the reference saw all of it
