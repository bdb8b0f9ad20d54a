"""SPECIAL over a scene of many tiles: zero-shot pass, one training per time step, prediction pass.

``terrawatch landcover --refine special``. A classifier trained per tile would learn each tile's
own pseudo-label noise and disagree with its neighbours at the border (seams), so the flow runs:

1. **zero-shot pass** (:func:`zero_shot_tile`, on the workers): per tile the multispectral bands
   (:func:`spectral_bands`: every band with a centre wavelength at 10/20 m, outside the
   water-vapour windows, that every item of the step has) on the output grid, RGB interpolated
   at 655/553/451 nm with one stretch for the whole step (:func:`scene_rgb_stretch`), two-scale
   SegEarth-OV with BvSB confidence (:mod:`models.special.pseudo_labels`); the tile's core goes to
   a scratch Zarr store beside the cube (:func:`scratch_path`), so a failed training step loses
   no model work and the scratch is read back by the prediction pass.
2. **training** (:func:`train_scene`, one process): one spectrum stretch for the whole scene
   (a per-tile stretch would shift every tile's features), every tile's spectra, pseudo-labels
   and confidence as one training set (:func:`models.special.training.train_special`).
3. **prediction pass** (:data:`SPECIAL_TILE`, on the workers): the classifier rebuilt from its
   state dict (plain numpy arrays: no pickled modules travel) predicts each tile with its halo;
   the cube gets the refined ``landcover``/``confidence`` and the zero-shot map beside them as
   ``landcover_zero_shot`` (class index) and ``confidence_zero_shot`` (100 x BvSB margin).

The training step holds at most ``SpecialSettings.training_pixels`` pixels (4 Mpx, about
0.6 GB with 10 bands): a larger scene gives an equal random window of every tile
(:func:`training_windows`), so its peak memory does not grow with the scene
(``python bench/special_memory.py --sizes 1024,3072`` measures it).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zarr
from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.errors import InputError
from terrawatch.models.special.classifier import build_classifier
from terrawatch.models.special.pseudo_labels import fuse_scales
from terrawatch.models.special.spectral_rgb import (
    RGB_PERCENTILE,
    RGB_WAVELENGTHS_NM,
    SPECTRUM_PERCENTILE,
    fixed_stretch,
    spectral_to_rgb,
    stretch_limits,
)
from terrawatch.models.special.training import (
    SpecialSettings,
    SpectralTile,
    check_pseudo_labels,
    predict_probabilities,
    train_special,
)
from terrawatch.tasks.core.bands import (
    asset_bands,
    item_label,
    reflectance_scaling,
    resolve_band,
)
from terrawatch.tasks.core.cube_types import NODATA, CubeVariable
from terrawatch.tasks.core.grid import GridSpec
from terrawatch.tasks.core.load import read_window
from terrawatch.tasks.core.spectral_image import ABSORPTION_WINDOWS_NM, MIN_BANDS
from terrawatch.tasks.core.tile_runner import (
    TileProduct,
    TileResult,
    TileWindow,
    run_tile,
    run_tiles,
    tile_windows,
)
from terrawatch.tasks.core.user_labels import (
    check_inside,
    label_shapes,
    load_user_labels,
    rasterise_labels,
)
from terrawatch.tasks.core.worker_model import ModelSpec, worker_model
from terrawatch.tasks.landcover.cube import _CONF_ATTRS, LANDCOVER_CUBE, _encode_confidence
from terrawatch.tasks.landcover.tile import LandcoverTileJob

logger = logging.getLogger(__name__)

REFINE_CHOICES = ("none", "special")
"""``--refine`` values of the land-cover flow."""
MAX_BAND_GSD = 20.0
"""Coarsest band kept (m): Sentinel-2's 10 and 20 m bands; the 60 m ones are atmospheric."""
ZERO_SHOT = "landcover_zero_shot"
"""Cube variable of the zero-shot SegEarth-OV map that SPECIAL was trained from."""
ZERO_SHOT_CONFIDENCE = "confidence_zero_shot"
"""Cube variable of its confidence: 100 x best-versus-second-best probability margin."""

SPECIAL_CUBE = dataclasses.replace(
    LANDCOVER_CUBE,
    variables=(
        *LANDCOVER_CUBE.variables,
        CubeVariable(ZERO_SHOT, {"long_name": "zero-shot land cover class"}, classes=True),
        CubeVariable(
            ZERO_SHOT_CONFIDENCE,
            {**_CONF_ATTRS, "long_name": "zero-shot confidence: 100 x best-versus-second-best"},
            encode=_encode_confidence,
        ),
    ),
    finish=lambda arrays: _no_data_follows_labels(arrays),
)
"""The land-cover cube of a ``--refine special`` run: both maps and both confidences."""


def _no_data_follows_labels(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays["confidence"][arrays["landcover"] == NODATA] = NODATA
    arrays[ZERO_SHOT_CONFIDENCE][arrays[ZERO_SHOT] == NODATA] = NODATA
    return arrays


@dataclass(frozen=True)
class SpectralBands:
    """The bands SPECIAL reads, sorted by centre wavelength."""

    names: tuple[str, ...]
    wavelengths_nm: tuple[float, ...]


def _item_centres(item: dict) -> tuple[dict[str, float], list[str]]:
    """Bands of one item with a centre wavelength (nm) at 10/20 m; and the names dropped."""
    found: dict[str, float] = {}
    dropped: list[str] = []
    for key, asset in item.get("assets", {}).items():
        raster = asset.get("raster:bands") or []
        for i, band in enumerate(asset_bands(asset)):
            centre = band.get("center_wavelength", band.get("eo:center_wavelength"))
            if centre is None:
                continue
            name = band.get("name") or key
            nm = float(centre) * 1000.0 if float(centre) < 30 else float(centre)
            extra = raster[i] if i < len(raster) else {}
            gsd = extra.get("spatial_resolution") or asset.get("gsd")
            absorbed = any(lo <= nm <= hi for lo, hi in ABSORPTION_WINDOWS_NM)
            if (gsd is not None and float(gsd) > MAX_BAND_GSD) or absorbed:
                dropped.append(name)
            elif name not in found:
                found[name] = nm
    return found, dropped


def spectral_bands(item: dict) -> SpectralBands:
    """Every band of ``item`` with a centre wavelength (STAC ``eo:bands``/``bands``) at 10/20 m.

    Raises:
        InputError: fewer than :data:`MIN_BANDS` usable bands (one line, before any read).
    """
    return scene_bands([item])


def scene_bands(items: Sequence[dict]) -> SpectralBands:
    """The bands of :func:`spectral_bands` that *every* item of the step has, so each band
    composites from all items (the tile read takes, per pixel, the first item valid in every
    band); wavelengths as the best (first) item gives them.

    Raises:
        InputError: an item, or the items together, with fewer than :data:`MIN_BANDS` usable
        bands (one line, before any read).
    """
    per_item = [_item_centres(item) for item in items]
    dropped = sorted({name for _, names in per_item for name in names})
    if dropped:
        logger.info("SPECIAL: dropped 60 m and water-vapour bands %s", dropped)
    for item, (found, _) in zip(items, per_item, strict=True):
        if len(found) < MIN_BANDS:
            raise InputError(
                f"--refine special needs at least {MIN_BANDS} bands with centre wavelengths at "
                f"10/20 m, but {item_label(item)} has {len(found)} ({sorted(found)}); use a "
                "multispectral collection (e.g. sentinel-2-l2a) or add the image with "
                "`terrawatch catalog add` from a file that records wavelengths"
            )
    best = per_item[0][0]
    common = [name for name in best if all(name in found for found, _ in per_item[1:])]
    partial = sorted({name for found, _ in per_item for name in found} - set(common))
    if partial:
        logger.info("SPECIAL: bands not in every item of the step, not used: %s", partial)
    if len(common) < MIN_BANDS:
        raise InputError(
            f"--refine special needs at least {MIN_BANDS} bands that every item of the period "
            f"has, but the {len(items)} items share only {sorted(common)}; narrow --collections "
            "or the period to items of one sensor"
        )
    order = sorted(common, key=lambda name: best[name])
    return SpectralBands(tuple(order), tuple(best[name] for name in order))


def check_band_scaling(items: Sequence[dict], bands: SpectralBands) -> None:
    """Every band of every item must have a known reflectance scaling, checked before the
    tiles run (a uint16 file added without scale/offset would otherwise fail in every tile).

    Raises:
        InputError: one line naming the item, the asset and the fix.
    """
    for item in items:
        for name in bands.names:
            ref = resolve_band(item, name)
            try:
                reflectance_scaling(item, ref.odc_name)
            except InputError as err:
                raise InputError(
                    f"{err} For a GeoTIFF added with `terrawatch catalog add`, write its scale and "
                    "offset first (Sentinel-2 L2A DN: gdal_edit.py -scale 0.0001 -offset -0.1 "
                    "from processing baseline 04.00, offset 0 before) and add it again with "
                    "--overwrite"
                ) from err


def scratch_path(store: str, time_index: int) -> str:
    """The zero-shot pass's scratch Zarr store beside the cube (one per time step; removed
    once the step is written)."""
    return f"{store.rstrip('/')}.special-t{time_index}.zarr"


def create_scratch(store: str, time_index: int, grid: GridSpec, chunk: int) -> str:
    """An empty scratch store (labels uint8, BvSB confidence float32) for the zero-shot pass."""
    path = scratch_path(store, time_index)
    group = zarr.open_group(path, mode="w")
    chunks = (chunk, chunk)
    group.create_array("labels", shape=grid.shape, chunks=chunks, dtype="u1", fill_value=NODATA)
    group.create_array("confidence", shape=grid.shape, chunks=chunks, dtype="f4", fill_value=np.nan)
    return path


def remove_scratch(path: str) -> None:
    """Drop the scratch store once the step is written (its zero-shot map is in the cube now)."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(path)
    if fs.exists(root):
        fs.rm(root, recursive=True)


@dataclass(frozen=True)
class SpecialTileJob(LandcoverTileJob):
    """One tile of a ``--refine special`` run: the land-cover job plus the spectral inputs."""

    bands: SpectralBands = SpectralBands((), ())
    scratch: str = ""
    """The zero-shot pass's scratch store (:func:`create_scratch`)."""
    rgb_stretch: tuple[float, float] | None = None
    """Low/high limits of the interpolated RGB for the whole step (:func:`scene_rgb_stretch`)."""


def read_spectra(job: SpecialTileJob, window: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """``float32 [bands, h, w]`` (0 where invalid) and validity of a grid window."""
    subgrid = GridSpec.from_geobox(job.grid.geobox[window])
    read = read_window(job.items, subgrid, job.bands.names, loader=job.loader)  # type: ignore[arg-type]
    spectra = np.stack([np.asarray(read.bands[b], np.float32) for b in job.bands.names])
    valid = np.asarray(read.valid, bool) & np.isfinite(spectra).all(axis=0)
    spectra[:, ~valid] = 0.0
    return spectra, valid


def zero_shot_tile(job: SpecialTileJob, spec: ModelSpec) -> TileResult:
    """Pass 1 of one tile: two-scale SegEarth-OV pseudo-labels of the interpolated RGB."""
    import time

    started = time.perf_counter()
    window = TileWindow.of(job)
    spectra, valid = read_spectra(job, window.outer)
    labels = np.full(window.shape, NODATA, np.uint8)
    confidence = np.full(window.shape, np.nan, np.float32)
    status = "nodata"
    if valid[window.inner].any():
        if job.rgb_stretch is None:
            raise ValueError("a SPECIAL tile job needs the scene's RGB stretch (special_jobs)")
        rgb = fixed_stretch(spectral_to_rgb(spectra, job.bands.wavelengths_nm), *job.rgb_stretch,
                            valid)  # fmt: skip
        pseudo = fuse_scales(worker_model(spec), rgb)
        inner_valid = valid[window.inner]
        labels = np.where(inner_valid, pseudo.labels[window.inner], NODATA).astype(np.uint8)
        confidence = np.where(inner_valid, pseudo.confidence[window.inner], np.nan)
        status = "written"
    group = zarr.open_group(job.scratch, mode="r+")
    group["labels"][window.core] = labels
    group["confidence"][window.core] = confidence.astype(np.float32)
    pixels = window.shape[0] * window.shape[1]
    return TileResult(job.tile, status, pixels, time.perf_counter() - started)


def zero_shot_tiles(
    jobs: list[SpecialTileJob], spec: ModelSpec, gpu: bool = False
) -> dict[str, dict[str, float]]:
    """Pass 1 over every tile of the scene, on the flow's cluster (see :func:`run_tiles`)."""
    return run_tiles(
        zero_shot_tile, jobs, spec, gpu, label="zero-shot tile", description="SPECIAL pass 1"
    )


zero_shot_tiles_task = task(zero_shot_tiles, name="special-zero-shot", cache_policy=NO_CACHE)


@dataclass(frozen=True)
class TrainedClassifier:
    """What the prediction pass needs: plain values only (the weights as numpy arrays)."""

    name: str
    bands: int
    classes: int
    hidden: int
    state: tuple[tuple[str, np.ndarray], ...]
    stretch: tuple[float, float]
    """Low/high spectrum limits of the whole scene (one stretch for every tile)."""

    def build(self) -> torch.nn.Module:
        """The classifier with its trained weights, in eval mode."""
        model = build_classifier(self.name, self.bands, self.classes, self.hidden)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.state})
        return model.eval()

    def stretch_spectra(self, spectra: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The scene-wide stretch to 0..1 (as ``percentile_stretch`` with fixed limits)."""
        return fixed_stretch(spectra, *self.stretch, valid)


@dataclass(frozen=True)
class UserLabels:
    """A team's labels (``--labels``) in the grid's CRS, checked against the classes and grid."""

    source: str
    shapes: tuple[tuple[Any, int], ...]
    """(shapely geometry, class index) pairs."""


def special_labels(
    path: str, class_names: list[str], grid: GridSpec, column: str | None = None
) -> UserLabels:
    """Read and check ``--labels`` for this grid (one line on bad input, before any read).

    Raises:
        InputError: no class column, unknown class names, features outside the grid.
    """
    frame = load_user_labels(path, class_names, column)
    frame = check_inside(frame, grid.crs, tuple(grid.geobox.extent.boundingbox))
    return UserLabels(path, label_shapes(frame))


def _tile_labels(labels: UserLabels | None, job: SpecialTileJob, core) -> np.ndarray | None:
    if labels is None:
        return None
    geobox = job.grid.geobox[core]
    return rasterise_labels(labels.shapes, geobox.transform, geobox.shape.yx)


MIN_TRAINING_WINDOW = 64
"""Smallest training window side (px): the classifier's two poolings and 3x3 context need room."""


def training_windows(
    jobs: Sequence[SpecialTileJob],
    budget: int,
    seed: int,
    anchors: Sequence[tuple[int, int]] = (),
) -> list[tuple[SpecialTileJob, tuple[slice, slice]]]:
    """The grid windows the training reads: every tile's core while the scene fits ``budget``
    pixels; else an equal random window of every tile (side ``sqrt(budget / tiles)``), and past
    ``budget / MIN_TRAINING_WINDOW**2`` tiles a random subset of tiles at that minimum side.

    ``anchors`` (grid row, col of the ``--labels`` features) keep a team's labels in: a tile
    holding one has its window around one of them, and such tiles are chosen first.

    The §8 sampling draws a fixed number of pixels per class and iteration whatever the scene;
    what grows with the scene is what the training holds (spectra, PCA features, predictions),
    and this bounds it. The reference trains on its whole (small) image.
    """
    cores = [tile_windows(job.grid, job.tile, job.chunk, 0)[0] for job in jobs]
    sizes = [(r.stop - r.start) * (c.stop - c.start) for r, c in cores]
    if sum(sizes) <= budget:
        return list(zip(jobs, cores, strict=True))
    rng = np.random.default_rng(seed)
    held: dict[int, list[tuple[int, int]]] = {}
    for row, col in anchors:
        for i, (rows, cols) in enumerate(cores):
            if rows.start <= row < rows.stop and cols.start <= col < cols.stop:
                held.setdefault(i, []).append((row, col))
                break
    side = math.isqrt(budget // len(jobs))
    chosen = np.arange(len(jobs))
    if side < MIN_TRAINING_WINDOW:
        side = MIN_TRAINING_WINDOW
        keep = max(1, budget // side**2)
        labelled = rng.permutation(sorted(held))
        others = rng.permutation([i for i in range(len(jobs)) if i not in held])
        chosen = np.sort(np.concatenate([labelled, others]).astype(int)[:keep])
    windows = []
    for i in chosen:
        rows, cols = cores[i]
        height, width = min(side, rows.stop - rows.start), min(side, cols.stop - cols.start)
        top = rows.start + int(rng.integers(rows.stop - rows.start - height + 1))
        left = cols.start + int(rng.integers(cols.stop - cols.start - width + 1))
        if i in held:  # around one of the tile's labels
            row, col = held[i][int(rng.integers(len(held[i])))]
            top = int(np.clip(row - height // 2, rows.start, rows.stop - height))
            left = int(np.clip(col - width // 2, cols.start, cols.stop - width))
        windows.append((jobs[i], (slice(top, top + height), slice(left, left + width))))
    return windows


def _label_anchors(labels: UserLabels | None, grid: GridSpec) -> list[tuple[int, int]]:
    """Grid (row, col) of a point inside each label feature."""
    if labels is None:
        return []
    inverse = ~grid.geobox.transform
    anchors = []
    for geometry, _ in labels.shapes:
        point = geometry.representative_point()
        col, row = inverse * (point.x, point.y)
        anchors.append((math.floor(row), math.floor(col)))
    return anchors


def train_scene(
    jobs: list[SpecialTileJob],
    class_names: list[str],
    settings: SpecialSettings,
    labels: UserLabels | None = None,
) -> tuple[TrainedClassifier, dict[str, Any]]:
    """Train one classifier on every tile's spectra and zero-shot labels (flow's machine).

    ``labels`` (``--labels``) join as clean samples with full weight, on valid pixels.

    Raises:
        InputError: a class neither a tile's zero-shot map nor the labels have (it cannot be
        learned).
    """
    cores = []
    anchors = _label_anchors(labels, jobs[0].grid) if jobs else []
    windows = training_windows(jobs, settings.training_pixels, settings.seed, anchors)
    held = sum((r.stop - r.start) * (c.stop - c.start) for _, (r, c) in windows)
    logger.info("SPECIAL: training on %d pixels of %d tiles (at most %d)", held, len(jobs),
                settings.training_pixels)  # fmt: skip
    for job, core in windows:
        spectra, valid = read_spectra(job, core)
        group = zarr.open_group(job.scratch, mode="r")
        zero_shot = np.asarray(group["labels"][core])
        confidence = np.asarray(group["confidence"][core])
        valid &= zero_shot != NODATA
        clean = _tile_labels(labels, job, core)
        cores.append((spectra, valid, zero_shot, confidence, clean))
    values = np.concatenate([s[:, v].ravel() for s, v, *_ in cores])
    if values.size == 0:
        raise InputError("--refine special: the scene has no valid pixel to train on")
    low, high = np.percentile(values, [SPECTRUM_PERCENTILE, 100.0 - SPECTRUM_PERCENTILE])
    template = TrainedClassifier(settings.classifier, cores[0][0].shape[0], len(class_names),
                                 settings.hidden, (), (float(low), float(high)))  # fmt: skip
    tiles = [
        SpectralTile(
            template.stretch_spectra(spectra, valid),
            np.where(valid, labels, -1).astype(np.int16),
            np.where(valid, np.nan_to_num(confidence), 0.0).astype(np.float32),
            None if clean is None else np.where(valid, clean, -1).astype(np.int16),
        )
        for spectra, valid, labels, confidence, clean in cores
        if valid.any()
    ]
    check_pseudo_labels(tiles, class_names)
    trained = train_special(tiles, len(class_names), settings, device="cpu")
    state = tuple((k, v.detach().cpu().numpy()) for k, v in trained.classifier.state_dict().items())
    provenance = {
        **trained.provenance(),
        "scope": "trained once per time step on the zero-shot labels of all tiles",
        "rgb_wavelengths_nm": list(RGB_WAVELENGTHS_NM),
        "bands": list(jobs[0].bands.names),
        "band_wavelengths_nm": list(jobs[0].bands.wavelengths_nm),
        "spectrum_stretch": [float(low), float(high)],
        "training_tiles": len(tiles),
        "training_pixels_held": int(sum(t.labels.size for t in tiles)),
        "zero_shot_variables": [ZERO_SHOT, ZERO_SHOT_CONFIDENCE],
    }
    if labels is not None:
        counts = sum(np.bincount(t.clean_labels[t.clean_labels >= 0], minlength=len(class_names))
                     for t in tiles if t.clean_labels is not None)  # fmt: skip
        provenance["user_labels"] = {
            "file": labels.source,
            "features": len(labels.shapes),
            "pixels": {name: int(n) for name, n in zip(class_names, counts, strict=True)},
        }
    return dataclasses.replace(template, state=state), provenance


train_scene_task = task(train_scene, name="special-train", cache_policy=NO_CACHE)


def _read(job: SpecialTileJob, trained: TrainedClassifier, window: TileWindow):
    spectra, valid = read_spectra(job, window.outer)
    group = zarr.open_group(job.scratch, mode="r")
    zero = np.asarray(group["labels"][window.outer])
    zero_conf = np.asarray(group["confidence"][window.outer])
    return (spectra, valid, zero, zero_conf), valid


def _predict(trained: TrainedClassifier, inputs) -> dict[str, np.ndarray]:
    spectra, valid, zero, zero_conf = inputs
    probs = predict_probabilities(trained.build(), trained.stretch_spectra(spectra, valid))
    labels = np.where(valid, probs.argmax(axis=0), NODATA).astype(np.uint8)
    confidence = np.where(valid, probs.max(axis=0), np.nan).astype(np.float32)
    return {
        "landcover": labels,
        "confidence": confidence,
        ZERO_SHOT: zero,
        ZERO_SHOT_CONFIDENCE: zero_conf,
    }


SPECIAL_TILE = TileProduct(SPECIAL_CUBE, _read, _predict)
"""Pass 2 for the tile runner: spectra and zero-shot map in, both maps out."""


def refine_tile(job: SpecialTileJob, trained: TrainedClassifier) -> TileResult:
    """Pass 2 of one tile: predict with the scene's classifier, write both maps."""
    return run_tile(SPECIAL_TILE, job, trained)


def refine_tiles(
    jobs: list[SpecialTileJob], trained: TrainedClassifier, gpu: bool = False
) -> dict[str, dict[str, float]]:
    """Pass 2 over the tiles still to write, on the flow's cluster (the classifier runs on CPU:
    a small network per tile, no GPU resource asked)."""
    return run_tiles(refine_tile, jobs, trained, label="refined tile", description="SPECIAL pass 2")


refine_tiles_task = task(refine_tiles, name="special-refine", cache_policy=NO_CACHE)


def record_refinement(store: str, time_index: int, provenance: dict[str, Any]) -> None:
    """Keep the refinement (settings, losses, bands) in the cube: top level and the step record.

    Called once every tile of the step is written (the record says what made the whole map).
    """
    import json

    from terrawatch.tasks.core.cube_store import open_finished_step, record_step

    plain = json.loads(json.dumps(provenance, default=float))
    group = open_finished_step(store, time_index, "time index")
    group.attrs["refinement"] = plain
    record_step(store, group, time_index, {"refinement": plain})


OVERVIEW_PIXELS = 512
"""Longest side of the coarse read of the whole scene that sets the zero-shot RGB stretch."""


def scene_rgb_stretch(
    items: Sequence[dict], grid: GridSpec, bands: SpectralBands, loader: str = "odc"
) -> tuple[float, float]:
    """One RGB stretch for the time step, from a coarse read of the whole grid (at most
    :data:`OVERVIEW_PIXELS` a side), before any tile runs.

    The reference stretches its one image at the 0.1/99.9 percentiles; a stretch per tile would
    map the same surface to different colours in neighbouring tiles (seams in the zero-shot map,
    and so in the refined one). Percentiles of the coarse read estimate the full-resolution ones.

    Raises:
        InputError: the scene has no valid pixel.
    """
    factor = max(1, math.ceil(max(grid.shape) / OVERVIEW_PIXELS))
    coarse = dataclasses.replace(grid, resolution=grid.resolution * factor)
    read = read_window(items, coarse, bands.names, loader=loader)  # type: ignore[arg-type]
    spectra = np.stack([np.asarray(read.bands[b], np.float32) for b in bands.names])
    valid = np.asarray(read.valid, bool) & np.isfinite(spectra).all(axis=0)
    if not valid.any():
        raise InputError("--refine special: the scene has no valid pixel in its bands")
    rgb = spectral_to_rgb(np.where(valid, spectra, 0.0), bands.wavelengths_nm)
    return stretch_limits(rgb, RGB_PERCENTILE, valid)


def special_jobs(
    store: str,
    time_index: int,
    tiles: tuple[tuple[int, int], ...],
    chunk: int,
    grid: GridSpec,
    items: tuple[dict, ...],
    *,
    halo: int,
    loader: str,
    lease: str | None,
    scratch: str,
) -> list[SpecialTileJob]:
    """One job per tile: the bands every item has, one RGB stretch for the whole step."""
    bands = scene_bands(items)
    stretch = scene_rgb_stretch(items, grid, bands, loader)
    return [
        SpecialTileJob(store, time_index, tile, chunk, grid, items, halo=halo, loader=loader,
                       lease=lease, bands=bands, scratch=scratch, rgb_stretch=stretch)
        for tile in tiles
    ]  # fmt: skip
