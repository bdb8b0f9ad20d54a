"""No post-event scene: the error names the nearest acquisitions before and after the window."""

from __future__ import annotations

import pytest

from terrawatch.errors import NoScenesError
from terrawatch.tasks.flood.search import search_sar_window
from tests.flows.test_flood import flood_aoi, make_flood_catalog


def test_empty_post_window_names_the_nearest_acquisitions(tmp_path):
    catalog = make_flood_catalog(tmp_path)  # scenes on 05-01, 05-06 and 05-12
    with pytest.raises(NoScenesError) as caught:
        search_sar_window(str(catalog), flood_aoi(), "post", ("2024-05-07", "2024-05-10"),
                          ["sentinel-1-rtc"])  # fmt: skip
    message = str(caught.value)
    assert "no SAR scenes in the post-event window 2024-05-07..2024-05-10" in message
    assert "nearest acquisitions: 2024-05-06T05:00:00 before, 2024-05-12T05:00:00 after" in message
