"""Inputs of a flood run: the windows around the event, water classes, SAR options, searches.

The pre-event window is ``[event - pre_days, event)`` and the post-event window
``[event, event + post_days]``; each is searched for Sentinel-1 scenes of one orbit direction
and polarisation set, and optionally for cloud-free optical scenes (:mod:`tasks.flood.tile` plans
and maps them).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.errors import InputError, NoScenesError
from terrawatch.models.classes import parse_class_names
from terrawatch.tasks.core.catalog import (
    OPTICAL_COLLECTIONS,
    SearchResult,
    _retry_unless_user_error,
    default_sar_collections,
    search_items,
)
from terrawatch.tasks.core.sar import (
    check_sar_items,
    select_orbit,
)
from terrawatch.tasks.flood import DEFAULT_WATER_CLASSES

logger = logging.getLogger(__name__)


Side = Literal["pre", "post"]


_SIDES = {"pre": "pre-event window", "post": "post-event window"}


_HINTS = {
    "pre": "widen pre_days (--pre-days): Sentinel-1 passes every 6-12 days",
    "post": "widen post_days (--post-days) or wait for the next pass (every 6-12 days)",
}


@dataclass(frozen=True)
class FloodWindows:
    """The event date and the two search windows (ISO dates, inclusive)."""

    event: str
    """Event date: first day of the post-event window."""
    pre: tuple[str, str]
    """``(event - pre_days, event - 1 day)``."""
    post: tuple[str, str]
    """``(event, event + post_days)``."""


def flood_windows(event_date: str | date, pre_days: int, post_days: int) -> FloodWindows:
    """The windows around ``event_date`` (a date or ISO date/datetime; the day counts).

    Raises:
        InputError: a malformed date, ``pre_days`` < 1 or ``post_days`` < 0.
    """
    try:
        event = (
            event_date
            if isinstance(event_date, date) and not isinstance(event_date, datetime)
            else datetime.fromisoformat(str(event_date).replace("Z", "+00:00")).date()
        )
    except ValueError as err:
        raise InputError(
            f"event_date must be an ISO date like '2024-05-03', got {event_date!r}"
        ) from err
    for name, value, least in (("pre_days", pre_days, 1), ("post_days", post_days, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{name} must be an integer >= {least} (days), got {value!r}")
    day = timedelta(days=1)
    return FloodWindows(
        event.isoformat(),
        ((event - pre_days * day).isoformat(), (event - day).isoformat()),
        (event.isoformat(), (event + post_days * day).isoformat()),
    )


def water_indices(
    classes: Sequence[str], water_classes: Sequence[str] | None = None
) -> tuple[int, ...]:
    """Indices of the water classes, matched by display name or synonym (case-insensitive).

    Raises:
        InputError: an unknown water class, no water class, or no class left that is not water.
    """
    parsed = parse_class_names(classes).synonyms
    wanted = list(DEFAULT_WATER_CLASSES if water_classes is None else water_classes)
    if isinstance(water_classes, str) or not wanted:
        raise InputError(
            f"water_classes must be a non-empty list of class names, got {water_classes!r}; "
            "e.g. ['water']"
        )
    lookup = {word.strip().lower(): i for i, words in enumerate(parsed) for word in words}
    unknown = [w for w in wanted if str(w).strip().lower() not in lookup]
    if unknown:
        raise InputError(
            f"water_classes {unknown!r} are not among the classes {[w[0] for w in parsed]!r} "
            "(display names or synonyms); name one of those, or add the class"
        )
    indices = tuple(sorted({lookup[str(w).strip().lower()] for w in wanted}))
    if len(indices) == len(parsed):
        raise InputError(
            f"every class of {list(classes)!r} is a water class; add at least one other class "
            "(e.g. 'land,field,building,road,tree') for the segmenter to tell water apart"
        )
    return indices


def search_sar_window(
    catalog: str,
    aoi: Any,
    side: Side,
    window: tuple[str, str],
    collections: Sequence[str] | None = None,
    max_items: int | None = 20,
    orbit: str | None = None,
) -> SearchResult:
    """SAR scenes of one window, optionally of one orbit direction, checked for mixing.

    Raises:
        NoScenesError: nothing in the window (or none of ``orbit``); names the window, the
            catalog and the collections.
        InputError: bad parameters, or the scenes mix orbit directions or polarisations
            (:func:`tasks.core.sar.check_sar_items`; the message says how to keep one).
    """
    label, (start, end) = _SIDES[side], window
    collections = list(collections) if collections else default_sar_collections(catalog)
    where = f"catalog {catalog!r}, collections {collections!r}"
    try:
        found = search_items(catalog, aoi, start, end, collections, None, max_items)
    except NoScenesError as err:
        nearest = nearest_acquisitions(catalog, aoi, window, collections) if side == "post" else ""
        raise NoScenesError(
            f"no SAR scenes in the {label} {start}..{end} ({where}); {nearest}{_HINTS[side]}. "
            f"Search said: {err}"
        ) from err
    items = list(found.items)
    if orbit is not None:
        kept = select_orbit(items, orbit)
        if not kept:
            states = sorted({str(i.get("properties", {}).get("sat:orbit_state")) for i in items})
            raise NoScenesError(
                f"no {orbit} SAR scenes in the {label} {start}..{end} ({where}): its "
                f"{len(items)} scene(s) are {states!r}; pass that orbit, or {_HINTS[side]}"
            )
        found = dataclasses.replace(found, items=tuple(kept))
    try:
        check_sar_items(list(found.items))
    except InputError as err:
        raise InputError(f"SAR scenes of the {label} {start}..{end}: {err}") from err
    return found


NEAREST_DAYS = 60
"""How far before and after a window :func:`nearest_acquisitions` looks."""


def nearest_acquisitions(
    catalog: str, aoi: Any, window: tuple[str, str], collections: Sequence[str]
) -> str:
    """``"nearest acquisitions: ... before, ... after; "`` around an empty window (or "")."""
    start, end = (date.fromisoformat(d[:10]) for d in window)
    span = timedelta(days=NEAREST_DAYS)
    try:
        found = search_items(catalog, aoi, (start - span).isoformat(), (end + span).isoformat(),
                             list(collections), None, None)  # fmt: skip
    except NoScenesError:
        return f"no SAR scene within {NEAREST_DAYS} days either; "
    times = sorted(str(i.get("properties", {}).get("datetime", ""))[:19] for i in found.items)
    before = [t for t in times if t[:10] < start.isoformat()]
    after = [t for t in times if t[:10] > end.isoformat()]
    parts = [f"{before[-1]} before" if before else f"none in {NEAREST_DAYS} days before",
             f"{after[0]} after" if after else f"none in {NEAREST_DAYS} days after"]  # fmt: skip
    return f"nearest acquisitions: {', '.join(parts)}; "


def search_optical_window(
    catalog: str,
    aoi: Any,
    side: Side,
    window: tuple[str, str],
    collections: Sequence[str] | None = None,
    max_cloud: float | None = 10.0,
    max_items: int | None = 20,
) -> SearchResult | None:
    """Cloud-free optical scenes of one window, or None when there are none (SAR only then).

    Optical scenes are searched by default, so a catalog without the default optical
    collection (a local SAR-only folder) means none; collections the user named must exist.
    """
    named = bool(collections)
    collections = list(collections) if collections else list(OPTICAL_COLLECTIONS)
    try:
        return search_items(catalog, aoi, *window, collections, max_cloud, max_items)
    except NoScenesError as err:
        logger.info("no optical scenes in the %s; SAR only there (%s)", _SIDES[side], err)
        return None
    except InputError as err:
        if named or "not found in local catalog" not in str(err):
            raise
        logger.info("no optical collection in the catalog; SAR only in the %s (%s)",
                    _SIDES[side], err)  # fmt: skip
        return None


search_sar_window_task = task(
    search_sar_window,
    name="search-sar",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_unless_user_error,
    cache_policy=NO_CACHE,
)


search_optical_window_task = task(
    search_optical_window,
    name="search-optical",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_unless_user_error,
    cache_policy=NO_CACHE,
)


def reference_scenes(found: SearchResult, pre: SearchResult, post: SearchResult) -> SearchResult:
    """The reference window's scenes that compare with the post-event ones (threshold member).

    A long window often mixes orbits and products; only scenes that share the post-event scenes'
    orbit direction, polarisation set and geometry are kept, and of those the post-event
    relative orbit (``sat:relative_orbit``) when any share it: the same viewing geometry, so
    shadow, layover and incidence-angle brightness match. Dropped scenes are logged. With none
    left the pre-event scenes (already checked comparable) are the reference.
    """
    anchor = post.items[0]
    kept = []
    for item in found.items:
        try:
            check_sar_items([anchor, item])
        except InputError as err:
            logger.info("reference scene %s dropped: %s", item.get("id"), err)
            continue
        kept.append(item)
    orbits = {i.get("properties", {}).get("sat:relative_orbit") for i in post.items} - {None}
    same = [i for i in kept if i.get("properties", {}).get("sat:relative_orbit") in orbits]
    if same and len(same) < len(kept):
        logger.info(
            "reference scenes: %d of %d on the post-event relative orbit(s) %s kept",
            len(same), len(kept), sorted(orbits),
        )  # fmt: skip
        kept = same
    return dataclasses.replace(found, items=tuple(kept)) if kept else pre


def search_reference_window(
    catalog: str,
    aoi: Any,
    window: tuple[str, str],
    pre: SearchResult,
    post: SearchResult,
    collections: Sequence[str] | None = None,
    max_items: int | None = 20,
) -> SearchResult:
    """SAR scenes of the reference window comparable with the post-event ones (see
    :func:`reference_scenes`); the pre-event scenes when the window holds none."""
    collections = list(collections) if collections else default_sar_collections(catalog)
    try:
        found = search_items(catalog, aoi, *window, collections, None, max_items)
    except NoScenesError:
        return pre
    return reference_scenes(found, pre, post)


search_reference_window_task = task(
    search_reference_window,
    name="search-reference",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_unless_user_error,
    cache_policy=NO_CACHE,
)
