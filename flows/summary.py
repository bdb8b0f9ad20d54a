"""The end of a run on the terminal: a short human summary, or JSON with ``--json``.

Numbers are rounded for people and for JSON alike (no ``1.7424000000000002``): areas to the
square metre (6 decimals of km²), shares and seconds to 2 decimals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

DECIMALS = 6
"""Decimals kept of a float in the JSON summary (km² to the square metre)."""


def rounded(value: Any, decimals: int = DECIMALS) -> Any:
    """``value`` with every float rounded to ``decimals`` (also inside lists and dicts)."""
    if isinstance(value, float):
        return round(value, decimals) if math.isfinite(value) else value
    if isinstance(value, Mapping):
        return {key: rounded(item, decimals) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, decimals) for item in value]
    return value


def summary_json(summary: Mapping[str, Any]) -> str:
    """The summary as indented JSON with rounded numbers."""
    return json.dumps(rounded(summary), indent=2, default=str)


def summary_text(summary: Mapping[str, Any], elapsed_s: float) -> str:
    """A few lines a person reads: where, when, how many tiles, area per class, how long."""
    lines = []
    if summary.get("store"):
        lines.append(f"store:   {summary['store']}")
    elif summary.get("out"):
        lines.append(f"output:  {summary['out']}")
    when = summary.get("time") or summary.get("event_date")
    if when and summary.get("time_before"):
        when = f"{summary['time_before']} -> {when}"
    if when:
        lines.append(f"time:    {when}")
    tiles = _tiles_line(summary)
    if tiles:
        lines.append(f"tiles:   {tiles}")
    for key in ("flooded_km2", "changed_km2"):
        if isinstance(summary.get(key), int | float):
            lines.append(f"{key.removesuffix('_km2')}: {_km2(summary[key])}")
    areas = [a for a in summary.get("areas") or [] if isinstance(a, Mapping)]
    if areas:
        width = max(len(str(a.get("class", ""))) for a in areas)
        lines.append("area per class:")
        for area in areas:
            share = area.get("share_percent")
            share_text = f"  ({share:.1f}%)" if isinstance(share, int | float) else ""
            lines.append(
                f"  {area.get('class', '')!s:{width}}  {_km2(area.get('area_km2'))}{share_text}"
            )
    for key in ("quicklook", "picture", "checkpoint"):
        if summary.get(key):
            lines.append(f"{key}: {summary[key]}")
    lines.append(f"elapsed: {_duration(elapsed_s)}")
    return "\n".join(lines)


def _tiles_line(summary: Mapping[str, Any]) -> str:
    statuses = summary.get("tiles")
    total = summary.get("tiles_total")
    if not isinstance(statuses, Mapping) and total is None:
        return ""
    parts = [f"{count} {status}" for status, count in (statuses or {}).items()]
    if summary.get("already_complete"):
        parts.append("step already complete")
    text = ", ".join(parts) or "none to write"
    return f"{text} (of {total})" if total is not None else text


def _km2(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return f"{value:.4f} km²" if value < 10 else f"{value:,.2f} km²"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"
