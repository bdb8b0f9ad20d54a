"""Pictures and tables of label maps: class colours, quicklook PNGs and class-area tables."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from skimage.segmentation import find_boundaries

from terrawatch.tasks.core.fonts import drawable_texts
from terrawatch.tasks.core.map_frame import MapFrame
from terrawatch.tasks.core.palette import MEANING_COLORS
from terrawatch.tasks.core.palette import class_colors as palette_colors

BACKGROUND_COLOR = MEANING_COLORS["background"]
"""Colour of background-like classes (``background``, ``clutter``, ``others``, ...)."""

NODATA_COLOR = "#000000"
"""Colour of no-data pixels in rendered pictures."""

CHANGE_COLOR = "#ff00ff"
"""Colour of the change outline in :func:`change_quicklook_png`."""

_MIN_PANEL_PX = 256  # small images are enlarged (nearest) so the legend text stays readable
_DPI = 100


def class_colors(class_names: Sequence[str | Sequence[str]]) -> list[str]:
    """Default colour per class, by meaning (``tasks.core.palette``): water blue, tree green.

    Args:
        class_names: Class names in label order; a name may hold comma-separated synonyms,
            or be the sequence of its synonyms.

    Returns:
        Hex colours, one per class; names of unknown meaning get distinct other colours.
    """
    return palette_colors(class_names)


def colorize(
    labels: np.ndarray,
    colors: Sequence[str],
    nodata: int = 255,
    nodata_color: str = NODATA_COLOR,
) -> np.ndarray:
    """Paint a label map with one colour per class id.

    Args:
        labels: Integer class ids ``[H, W]`` in 0..255.
        colors: One colour (hex or any matplotlib colour) per class id.
        nodata: Label value of no-data pixels.
        nodata_color: Colour of the no-data pixels.

    Returns:
        ``uint8`` RGB image ``[H, W, 3]``.

    Raises:
        ValueError: ``labels`` is not a 2-D integer array, or holds an id without a colour.
    """
    labels = as_label_array(labels)
    lut = np.zeros((256, 3), dtype=np.uint8)
    known = np.zeros(256, dtype=bool)
    for i, color in enumerate(colors[:256]):
        lut[i] = color_rgb255(color, f"colors[{i}]")
        known[i] = True
    lut[nodata] = color_rgb255(nodata_color, "nodata_color")
    known[nodata] = True
    unknown = np.flatnonzero((label_histogram(labels) > 0) & ~known)
    if unknown.size:
        raise ValueError(
            f"labels hold class id(s) {unknown.tolist()!r} but only {len(colors)} colours were "
            f"given (ids 0..{len(colors) - 1}, nodata {nodata}); pass one colour per class"
        )
    return lut[labels]


def label_histogram(labels: np.ndarray) -> np.ndarray:
    """Pixel count per label value, in bounded memory (row blocks of about 4 Mpixel).

    Args:
        labels: Integer class ids ``[H, W]`` in 0..255.

    Returns:
        ``int64`` array of 256 counts, indexed by label value.
    """
    labels = as_label_array(labels)
    counts = np.zeros(256, dtype=np.int64)
    rows = max(1, (1 << 22) // max(1, labels.shape[1]))
    for start in range(0, labels.shape[0], rows):
        counts += np.bincount(labels[start : start + rows].ravel(), minlength=256)
    return counts


def quicklook_png(
    labels: np.ndarray,
    class_names: Sequence[str],
    colors: Sequence[str] | None = None,
    rgb: np.ndarray | None = None,
    title: str | None = None,
    max_size: int = 1024,
    nodata: int = 255,
    frame: MapFrame | None = None,
) -> bytes:
    """Render a label map (optionally beside its image) with a class legend, as PNG bytes.

    Large inputs are subsampled by striding (nearest neighbour) before anything is copied, so a
    20k x 20k map costs about ``max_size**2`` pixels of memory, not its full size.

    Args:
        labels: Integer class ids ``[H, W]``; ``nodata`` marks no-data pixels.
        class_names: Class names in label order (legend text).
        colors: One colour per class; default :func:`class_colors`.
        rgb: Optional image ``[3, H, W]`` (float 0..1 or uint8) shown left of the labels.
        title: Optional figure title.
        max_size: Longest side, in pixels, of each picture panel after subsampling.
        nodata: Label value of no-data pixels (black, with a legend entry when present).
        frame: Where the map lies: coordinate axes and a scale bar (none without it).

    Returns:
        PNG-encoded bytes.

    Raises:
        ValueError: Shapes disagree, ``max_size`` < 1, or a label has no colour.

    Example:
        >>> png = quicklook_png(np.zeros((64, 64), np.uint8), ["water"])
    """
    labels = as_label_array(labels)
    if not class_names:
        raise ValueError("class_names is empty; pass the names of the classes in label order")
    colors = list(colors) if colors is not None else class_colors(class_names)
    _check_same_length(class_names, colors)
    step = _stride(labels.shape, max_size)
    small = np.ascontiguousarray(labels[::step, ::step])
    panels = []
    if rgb is not None:
        _check_image(rgb, labels.shape, "rgb")
        panels.append(("image", to_hwc_uint8(rgb[:, ::step, ::step])))
    panels.append(("labels", colorize(small, colors, nodata=nodata)))
    legend = [(str(n), c) for n, c in zip(class_names, colors, strict=True)]
    if (small == nodata).any():
        legend.append(("no data", NODATA_COLOR))
    return render_panels(panels, legend, title, frame)


def class_area_table(
    counts: Mapping[int, int] | Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    pixel_area_m2: float,
    nodata: int = 255,
) -> list[dict]:
    """Area and share of each class, for a run summary artifact.

    Args:
        counts: Pixels per class id, as ``{id: n}`` or a sequence indexed by id (e.g.
            :func:`label_histogram`). The ``nodata`` id is ignored.
        class_names: Class names in label order; every class gets a row, even with 0 pixels.
        pixel_area_m2: Area of one pixel in square metres (e.g. 100 for 10 m pixels).
        nodata: Label value of no-data pixels, left out of the table and the shares.

    Returns:
        Rows ``{"class", "pixels", "area_km2", "share_percent"}``; shares are of the classified
        (non-no-data) pixels and sum to 100 (0 for all when nothing is classified).

    Raises:
        ValueError: ``pixel_area_m2`` is not a positive finite number, a count is negative, or
            a class id outside ``class_names`` has pixels.
    """
    if not (math.isfinite(pixel_area_m2) and pixel_area_m2 > 0):
        raise ValueError(
            f"pixel_area_m2 must be a positive finite area in m², got {pixel_area_m2!r}; "
            "use the pixel width times height in metres"
        )
    items = (
        counts.items() if isinstance(counts, Mapping) else enumerate(np.asarray(counts).tolist())
    )
    per_class = [0] * len(class_names)
    for class_id, n in items:
        if n < 0:
            raise ValueError(f"counts[{class_id!r}] must be >= 0, got {n!r}")
        if class_id == nodata or n == 0:
            continue
        if not 0 <= class_id < len(class_names):
            raise ValueError(
                f"counts has {n} pixels of class id {class_id!r} but class_names has "
                f"{len(class_names)} entries (ids 0..{len(class_names) - 1}, nodata {nodata}); "
                "pass the class names the labels were made with"
            )
        per_class[class_id] += int(n)
    total = sum(per_class)
    return [
        {
            "class": str(name),
            "pixels": n,
            "area_km2": n * pixel_area_m2 / 1e6,
            "share_percent": 100.0 * n / total if total else 0.0,
        }
        for name, n in zip(class_names, per_class, strict=True)
    ]


def change_quicklook_png(
    t1_rgb: np.ndarray,
    t2_rgb: np.ndarray,
    changed_mask: np.ndarray,
    max_size: int = 1024,
    dates: tuple[str, str] | None = None,
    title: str | None = None,
    frame: MapFrame | None = None,
) -> bytes:
    """PNG bytes of :func:`change_quicklook_figure` (same arguments)."""
    return figure_png(
        change_quicklook_figure(t1_rgb, t2_rgb, changed_mask, max_size, dates, title, frame)
    )


def change_quicklook_figure(
    t1_rgb: np.ndarray,
    t2_rgb: np.ndarray,
    changed_mask: np.ndarray,
    max_size: int = 1024,
    dates: tuple[str, str] | None = None,
    title: str | None = None,
    frame: MapFrame | None = None,
) -> Figure:
    """Draw before, after and after with the outline of the changed area, side by side.

    The mask is reduced with a block "any" (not a stride), so changes smaller than one
    subsampled pixel still show.

    Args:
        t1_rgb: Earlier image ``[3, H, W]`` (float 0..1 or uint8).
        t2_rgb: Later image ``[3, H, W]``, same grid as ``t1_rgb``.
        changed_mask: ``bool [H, W]``, True where the land changed.
        max_size: Longest side, in pixels, of each panel after subsampling.
        dates: The two periods as people read them (``"2024-05-01..2024-05-31"``): the
            panel titles; without them the panels say only "before" and "after".
        title: Optional figure title.
        frame: Where the images lie: coordinate axes and a scale bar (none without it).

    Returns:
        The matplotlib figure (not attached to pyplot).

    Raises:
        ValueError: The shapes of the three arrays disagree or ``max_size`` < 1.
    """
    changed_mask = np.asarray(changed_mask)
    if changed_mask.ndim != 2:
        raise ValueError(f"changed_mask must be 2-D [H, W], got shape {changed_mask.shape!r}")
    _check_image(t1_rgb, changed_mask.shape, "t1_rgb")
    _check_image(t2_rgb, changed_mask.shape, "t2_rgb")
    step = _stride(changed_mask.shape, max_size)
    t1 = to_hwc_uint8(t1_rgb[:, ::step, ::step])
    t2 = to_hwc_uint8(t2_rgb[:, ::step, ::step])
    mask = _block_any(changed_mask.astype(bool, copy=False), step)
    outlined = t2.copy()
    outlined[find_boundaries(mask, mode="inner")] = color_rgb255(CHANGE_COLOR, "CHANGE_COLOR")
    before, after = (f"before {dates[0]}", f"after {dates[1]}") if dates else ("before", "after")
    panels = [(before, t1), (after, t2), (f"{after} + change", outlined)]
    share = 100.0 * np.count_nonzero(changed_mask) / max(1, changed_mask.size)
    legend = [(f"change outline ({share:.1f}% of pixels changed)", CHANGE_COLOR)]
    return panels_figure(panels, legend, title, frame)


def render_panels(
    panels: Sequence[tuple[str, np.ndarray]],
    legend: Sequence[tuple[str, str]],
    title: str | None,
    frame: MapFrame | None = None,
) -> bytes:
    """PNG bytes of :func:`panels_figure`."""
    return figure_png(panels_figure(panels, legend, title, frame))


def figure_png(fig: Figure) -> bytes:
    """A figure as PNG bytes, cropped to what is drawn."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", pad_inches=0.08)
    return buffer.getvalue()


def panels_figure(
    panels: Sequence[tuple[str, np.ndarray]],
    legend: Sequence[tuple[str, str]],
    title: str | None,
    frame: MapFrame | None = None,
) -> Figure:
    """Draw RGB panels side by side at about one screen pixel per image pixel, legend below.

    Text in any script is drawn with a font that has its glyphs, else transliterated
    (:func:`tasks.core.fonts.drawable_texts`): never a box, never a "Glyph missing" warning.
    With a ``frame`` the panels get coordinate axes in the CRS units (or degrees), labelled on
    the first panel, and the last one a scale bar.
    """
    texts, families = drawable_texts(
        [*(n for n, _ in panels), *(n for n, _ in legend), title or ""]
    )
    names, labels, title = texts[: len(panels)], texts[len(panels) : -1], title and texts[-1]
    height, width = panels[0][1].shape[:2]
    scale = max(1.0, _MIN_PANEL_PX / max(height, width))
    title_px = 8.0 + 18.0 * len(title.splitlines()) if title else 0.0
    pw, ph, gap, top = width * scale, height * scale, 12.0, 24.0 + title_px
    left_pad, bottom_pad = (78.0, 36.0) if frame is not None else (0.0, 0.0)
    fig_w, fig_h = left_pad + len(panels) * (pw + gap) + gap, ph + top + gap + bottom_pad
    fig = Figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    for k, (name, (_, image)) in enumerate(zip(names, panels, strict=True)):
        left = left_pad + gap + k * (pw + gap)
        ax = fig.add_axes((left / fig_w, (gap + bottom_pad) / fig_h, pw / fig_w, ph / fig_h))
        extent = frame.extent if frame is not None else None
        # aspect "auto": the panel is already sized to the pixels, which stay square on screen
        ax.imshow(image, interpolation="nearest", resample=False, extent=extent, aspect="auto")
        ax.set_title(name, fontsize=10, fontfamily=families)
        if frame is None:
            ax.set_axis_off()
        else:
            _draw_frame(ax, frame, first=k == 0, last=k == len(panels) - 1)
    if title:
        fig.suptitle(title, fontsize=12, y=1.0 - 6.0 / fig_h, va="top", fontfamily=families)
    handles = [
        Patch(facecolor=c, edgecolor="none", label=n)
        for n, (_, c) in zip(labels, legend, strict=True)
    ]
    entry_px = 44 + 6.5 * max(len(n) for n in labels)
    ncols = int(max(1, min(len(legend), fig_w // entry_px)))
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=ncols,
        prop={"family": families, "size": 9}, frameon=False, handlelength=2.0, handleheight=1.2,
    )  # fmt: skip
    return fig


def _draw_frame(ax, frame: MapFrame, first: bool, last: bool) -> None:
    """Coordinate ticks (labelled on the first panel) and, on the last, a scale bar."""
    formatter = FuncFormatter(lambda value, _: frame.tick_label(value))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2))
        axis.set_major_formatter(formatter)
    ax.tick_params(labelsize=7, length=3, labelleft=first, labelbottom=first)
    if first:
        xlabel, ylabel = frame.axis_labels
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    if last:
        length, label = frame.scale_bar()
        bar = AnchoredSizeBar(
            ax.transData, length, label, loc="lower right", pad=0.3, borderpad=0.4, sep=3,
            color="black", frameon=True, size_vertical=(frame.top - frame.bottom) / 80,
            fontproperties={"size": 8},
        )  # fmt: skip
        bar.patch.set_alpha(0.75)
        ax.add_artist(bar)


def as_label_array(labels: np.ndarray) -> np.ndarray:
    """Check a class-id map and return it as 2-D uint8 (no copy when it already is).

    Raises:
        ValueError: ``labels`` is not a 2-D integer array with values in 0..255.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(
            f"labels must be a 2-D integer array [H, W], got shape {labels.shape!r} dtype "
            f"{labels.dtype}; pass the class-id map, not probabilities"
        )
    if labels.dtype == np.uint8:
        return labels
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(
            f"labels must lie in 0..255 to fit uint8, got {labels.min()}..{labels.max()}"
        )
    return labels.astype(np.uint8)


def color_rgb255(color: str, name: str) -> np.ndarray:
    """Parse a colour (hex or matplotlib name) into ``uint8 [3]``.

    Raises:
        ValueError: ``color`` is not a colour; the message names the parameter ``name``.
    """
    try:
        return np.round(np.asarray(to_rgb(color)) * 255).astype(np.uint8)
    except ValueError as err:
        raise ValueError(
            f"{name}={color!r} is not a colour; use a hex string such as {to_hex('C0')!r}"
        ) from err


def _check_same_length(class_names: Sequence[str], colors: Sequence[str]) -> None:
    """Reject a colour list that does not pair up with the class names."""
    if len(colors) != len(class_names):
        raise ValueError(
            f"colors has {len(colors)} entries but class_names has {len(class_names)}; "
            "pass one colour per class or colors=None for the default palette"
        )


def _stride(shape: tuple[int, ...], max_size: int) -> int:
    """Subsampling step that brings the longest side of ``shape`` to at most ``max_size``."""
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1 pixel, got {max_size!r}")
    return max(1, math.ceil(max(shape) / max_size))


def _check_image(image: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    """Require a channel-first RGB image on the same pixel grid as ``shape``."""
    if np.ndim(image) != 3 or np.shape(image)[0] != 3 or tuple(np.shape(image)[1:]) != shape:
        raise ValueError(
            f"{name} must be [3, H, W] with H, W = {tuple(shape)!r}, got shape "
            f"{np.shape(image)!r}; pass RasterImage.rgb of the same image"
        )


def to_hwc_uint8(image: np.ndarray) -> np.ndarray:
    """Channel-first RGB (uint8, or float in 0..1; NaN -> 0) to ``uint8 [H, W, 3]``."""
    image = np.moveaxis(np.asarray(image), 0, -1)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    scaled = np.nan_to_num(image.astype(np.float32), nan=0.0) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _block_any(mask: np.ndarray, step: int) -> np.ndarray:
    """True per ``step x step`` block holding any True; output shape matches ``[::step]``."""
    if step == 1:
        return mask
    rows = np.logical_or.reduceat(mask, np.arange(0, mask.shape[0], step), axis=0)
    return np.logical_or.reduceat(rows, np.arange(0, mask.shape[1], step), axis=1)
