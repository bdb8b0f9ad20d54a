"""Grouping STAC items into time steps: per solar day (default), timestamp, id or a property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import shapely.geometry

from terrawatch.errors import InputError
from terrawatch.tasks.core.bands import item_label

GROUPINGS = ("solar_day", "time", "id")


def item_datetime(item: dict) -> datetime:
    """The item's (start) time in UTC; naive times are taken as UTC."""
    props = item.get("properties", {})
    when = props.get("datetime") or props.get("start_datetime")
    if when is None:
        raise InputError(f"{item_label(item)} has no datetime or start_datetime property")
    parsed = datetime.fromisoformat(str(when))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def item_longitude(item: dict) -> float:
    """Longitude of the item's centre (bbox, else geometry; 0 without either)."""
    if item.get("bbox"):
        bbox = item["bbox"]
        return (bbox[0] + bbox[len(bbox) // 2]) / 2
    if item.get("geometry"):
        return shapely.geometry.shape(item["geometry"]).centroid.x
    return 0.0


def group_key(item: dict, groupby: str) -> str:
    """The time-step key of an item: local solar date, timestamp, id or a property value."""
    if groupby == "solar_day":
        local = item_datetime(item) + timedelta(hours=item_longitude(item) / 15.0)
        return local.date().isoformat()
    if groupby == "time":
        return item_datetime(item).isoformat()
    if groupby == "id":
        return str(item["id"])
    if groupby not in item.get("properties", {}):
        raise InputError(
            f"groupby {groupby!r} is not one of {GROUPINGS} nor a property of {item_label(item)}"
        )
    return str(item["properties"][groupby])


def group_time(items: list[dict], members: list[int]) -> np.datetime64:
    """A group's time coordinate: its earliest member's time (UTC, ns, naive)."""
    first = min(item_datetime(items[i]) for i in members)
    return np.datetime64(first.replace(tzinfo=None), "ns")


def group_items(items: list[dict], groupby: str) -> list[tuple[str, list[int]]]:
    """Item indices per group key, members in ``items`` order, groups in time order."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(group_key(item, groupby), []).append(index)
    return sorted(groups.items(), key=lambda kv: (group_time(items, kv[1]), kv[0]))


def best_first(items: tuple[dict, ...]) -> tuple[dict, ...]:
    """Least cloudy first (then by time and id): the composite takes the first valid pixel."""

    def key(item: dict) -> tuple[float, str, str]:
        props = item.get("properties", {})
        cloud = props.get("eo:cloud_cover")
        return (
            float(cloud) if cloud is not None else 100.0,
            str(props.get("datetime")),
            item["id"],
        )

    return tuple(sorted(items, key=key))
