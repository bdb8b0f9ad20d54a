"""The responder's report of one event: a map image and one self-contained HTML page.

The page holds everything inline (the map as a base64 PNG, no scripts, no fonts or styles
from the network), so it opens offline and can be mailed on as one file. It states the numbers,
the scenes, the methods and that the map is preliminary.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np

from terrawatch.tasks.core.cube_types import NODATA
from terrawatch.tasks.flood.polygons import EventLayers

NOTE = "Preliminary, automatically generated, not validated in the field."
"""The caveat every report carries (as UNOSAT's rapid maps do)."""
COLORS = {
    "flooded": "#0050ff",
    "reference water": "#00d0d0",
    "excluded (SAR cannot see water)": "#b0a090",
    "observed, not flooded": "#e8e8e8",
    "not observed": "#ffffff",
}
"""Map colours, in legend order."""


def map_classes(layers: EventLayers, reference: np.ndarray, exclusion: np.ndarray) -> np.ndarray:
    """Per pixel the index into :data:`COLORS`."""
    out = np.full(layers.flooded.shape, 4, np.uint8)  # not observed
    observed = layers.source != 0
    out[observed] = 3
    out[observed & (exclusion != 0) & (exclusion != NODATA)] = 2
    out[observed & (reference == 1)] = 1
    out[layers.flooded == 1] = 0
    return out


def _nice_length(width_m: float) -> float:
    """A round scale-bar length of about a fifth of the map width."""
    target = width_m / 5
    power = 10 ** np.floor(np.log10(target))
    return float(max(m * power for m in (1, 2, 5) if m * power <= target))


def map_png(classes: np.ndarray, resolution: float, title: str, max_pixels: int = 1200) -> bytes:
    """The map as PNG: classes, legend, a scale bar in km or m, and north up."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    step = max(1, int(np.ceil(max(classes.shape) / max_pixels)))
    view = classes[::step, ::step]
    height_m, width_m = (n * resolution for n in classes.shape)
    fig, ax = plt.subplots(figsize=(8, 8 * min(2.0, max(0.4, height_m / width_m))), dpi=100)
    ax.imshow(view, cmap=ListedColormap(list(COLORS.values())), vmin=0, vmax=len(COLORS) - 1,
              extent=(0, width_m, 0, height_m), interpolation="nearest")  # fmt: skip
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=11)
    bar = _nice_length(width_m)
    x0, y0 = width_m * 0.05, height_m * 0.05
    ax.plot([x0, x0 + bar], [y0, y0], color="black", linewidth=4, solid_capstyle="butt")
    label = f"{bar / 1000:g} km" if bar >= 1000 else f"{bar:g} m"
    ax.text(x0 + bar / 2, y0 + height_m * 0.02, label, ha="center", fontsize=9)
    arrow = {"arrowstyle": "-|>", "color": "black"}
    ax.annotate("N", xy=(0.95, 0.93), xytext=(0.95, 0.83), xycoords="axes fraction",
                ha="center", fontsize=10, arrowprops=arrow)  # fmt: skip
    handles = [Patch(facecolor=c, edgecolor="#555555", label=n) for n, c in COLORS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9,
              title="legend")  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _table(rows: Sequence[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _landcover_section(by_class: Sequence[dict]) -> str:
    if not by_class:
        return ""
    return f'<h3>Flooded per land-cover class</h3><div id="landcover">{_table(by_class)}</div>'


def report_html(
    title: str,
    png: bytes,
    areas: Sequence[dict],
    scenes: Sequence[dict],
    methods: Sequence[str],
    files: dict[str, str],
    by_class: Sequence[dict] = (),
) -> str:
    """The self-contained page (UTF-8 HTML, no external reference)."""
    image = base64.b64encode(png).decode("ascii")
    method_items = "".join(f"<li>{html.escape(m)}</li>" for m in methods)
    file_items = "".join(
        f"<li>{html.escape(k)}: <code>{html.escape(v)}</code></li>" for k, v in files.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
.note {{ border: 2px solid #c00; padding: .6em; color: #900; font-weight: bold; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
td, th {{ border: 1px solid #999; padding: .25em .6em; text-align: left; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note" id="note">{html.escape(NOTE)}</p>
<h2>Map</h2>
<img id="map" alt="flood map with legend and scale bar" src="data:image/png;base64,{image}">
<h2>Numbers</h2>
<div id="areas">{_table(areas)}</div>
{_landcover_section(by_class)}
<h2>Scenes used</h2>
<div id="scenes">{_table(scenes)}</div>
<h2>Methods</h2>
<ul id="methods">{method_items}</ul>
<h2>Files</h2>
<ul id="files">{file_items}</ul>
</body></html>
"""
