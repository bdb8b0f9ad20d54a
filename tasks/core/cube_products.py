"""The flows' last steps that make a cube a product (Prefect tasks): overviews, then STAC.

Kept apart from :mod:`tasks.core.cube_stac` and :mod:`tasks.core.cube_overviews` so that
``terrawatch export`` and notebooks do not import Prefect.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.tasks.core.cube_overviews import write_overviews
from terrawatch.tasks.core.cube_stac import describe_cube

write_overviews_task = task(write_overviews, name="write-overviews", cache_policy=NO_CACHE)
describe_cube_task = task(describe_cube, name="describe-cube-stac", cache_policy=NO_CACHE)
