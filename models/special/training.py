"""The SPECIAL training procedure (§8.3-8.4), strictly zero-shot (§8.7).

Per epoch: ``iterations`` times (20), re-draw the random set (per class, ``samples_per_class``
pixels with replacement from the pseudo-label's pixels, P(i) ∝ BvSB_i, duplicates collapse,
one-hot target), then one Adam step per tile. From the warm-up epoch on, the confident and hard
sets are rebuilt once per epoch from the previous epoch's predictions: per predicted class a
3-component 1-D GMM on the prediction's BvSB (highest-mean component confident, 1/5 of it kept;
lowest-mean hard), soft labels = softmax over per-class 5-component GMM log-likelihoods of the
5-component PCA of the spectrum (PCA fitted on all pixels). Loss
``L = L_random + 0.1 L_hard + 1.0 L_confident``, each a probability-target cross-entropy averaged
over the set's pixels in the tile. Adam (lr 1e-3), cosine annealing stepped after every tile.

Where terrawatch deviates from the reference, and why:
- every valid pixel, not only ground-truth pixels, feeds the GMM sets, and the last epoch is
  kept (the reference uses ground truth for both: §8.6 leakage);
- augmentation rotates by exact 90° steps (``rot90``) where the reference resamples a rotated
  grid, which on non-square tiles also distorts the aspect ratio;
- the cosine schedule's period is every optimiser step (epochs x iterations x tiles); the
  reference uses epochs x iterations, so with several tiles its learning rate oscillates;
- a class with fewer pixels than GMM components is skipped where the reference crashes;
- on large scenes PCA and the 1-D GMMs are fitted on a random subset of at most
  ``fit_pixels`` pixels (then applied to all), to bound CPU time and memory;
- the scene-level caller holds at most ``training_pixels`` pixels (windows of every tile, see
  ``tasks.landcover.special.training_windows``), so memory does not grow with the scene.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from terrawatch.errors import InputError
from terrawatch.models.special.classifier import build_classifier, parameter_count

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpecialSettings:
    """SPECIAL's training settings; defaults are the reference's (AeroRIT schedule)."""

    epochs: int = 10
    warmup_epochs: int = 5
    iterations: int = 20
    samples_per_class: int = 500
    learning_rate: float = 1e-3
    eta_min: float = 1e-5
    hard_weight: float = 0.1
    confident_weight: float = 1.0
    clean_weight: float = 1.0
    confident_keep: float = 0.2
    confidence_gmm_components: int = 3
    pca_components: int = 5
    class_gmm_components: int = 5
    noise_std: float = 0.1
    classifier: str = "fcn"
    hidden: int = 16
    seed: int = 42
    fit_pixels: int = 200_000
    training_pixels: int = 4 * 1024 * 1024
    """Most pixels a scene's training holds (about 150 bytes each with 10 bands: ~0.6 GB);
    larger scenes train on an equal window of every tile (``tasks.landcover.special``)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.iterations < 1 or self.samples_per_class < 1:
            raise InputError("epochs, iterations and samples per class must be at least 1")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise InputError(
                f"warm-up epochs must be between 0 and epochs ({self.epochs}), "
                f"got {self.warmup_epochs}"
            )
        if self.training_pixels < 1 or self.fit_pixels < 1:
            raise InputError("training_pixels and fit_pixels must be at least 1")
        if not 0 < self.confident_keep <= 1:
            raise InputError(f"confident_keep must be in (0, 1], got {self.confident_keep}")


@dataclass
class SpectralTile:
    """One training tile: the stretched spectrum and the zero-shot map on the same grid."""

    spectra: np.ndarray
    """``[bands, H, W]`` float32 in 0..1 (no NaN)."""
    labels: np.ndarray
    """Pseudo-label ``[H, W]``: class index, ``-1`` where invalid (no data)."""
    confidence: np.ndarray
    """BvSB of the pseudo-label ``[H, W]``."""
    clean_labels: np.ndarray | None = None
    """Optional user labels ``[H, W]`` (class index, ``-1`` unlabelled): full-weight samples."""

    @property
    def valid(self) -> np.ndarray:
        return self.labels >= 0


@dataclass
class EpochRecord:
    """Mean losses and set sizes of one epoch (for the provenance)."""

    epoch: int
    loss: float
    random: float
    hard: float
    confident: float
    clean: float
    random_pixels: int
    confident_pixels: int
    hard_pixels: int
    learning_rate: float


@dataclass
class TrainingResult:
    """The trained classifier and what to record about it."""

    classifier: nn.Module
    settings: SpecialSettings
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0

    def provenance(self) -> dict[str, Any]:
        return {
            "method": "SPECIAL (arXiv 2501.16222), strictly zero-shot, last epoch",
            "settings": asdict(self.settings),
            "parameters": parameter_count(self.classifier),
            "training_seconds": round(self.seconds, 2),
            "history": [asdict(record) for record in self.history],
        }


@dataclass
class _SoftSet:
    """Pixels of one tile (flat indices) with probability targets ``[N, C]``."""

    index: np.ndarray
    target: np.ndarray


def check_pseudo_labels(tiles: Sequence[SpectralTile], class_names: Sequence[str]) -> None:
    """Every class needs pseudo-labelled (or user-labelled) pixels; raise naming those without."""
    counts = np.zeros(len(class_names), dtype=np.int64)
    for tile in tiles:
        for labels in (tile.labels, tile.clean_labels):
            if labels is not None:
                labels = labels[labels >= 0].astype(np.int64)
                counts += np.bincount(labels, minlength=len(class_names))[: len(counts)]
    empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if empty:
        raise InputError(
            f"no pixel is pseudo-labelled as {', '.join(map(repr, empty))}; the classifier "
            "cannot learn a class it never sees: drop it from --classes or label some of it "
            "with --labels"
        )


def train_special(
    tiles: Sequence[SpectralTile],
    classes: int,
    settings: SpecialSettings | None = None,
    device: str | torch.device = "cpu",
) -> TrainingResult:
    """Train the classifier on ``tiles`` with the SPECIAL procedure (module docstring)."""
    settings = settings or SpecialSettings()
    _check_tiles(tiles)
    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    bands = tiles[0].spectra.shape[0]
    model = build_classifier(settings.classifier, bands, classes, settings.hidden).to(device)
    optimiser = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, betas=(0.9, 0.999), eps=1e-8
    )
    steps = settings.epochs * settings.iterations * len(tiles)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=steps, eta_min=settings.eta_min
    )
    inputs = [torch.from_numpy(np.ascontiguousarray(t.spectra, np.float32)) for t in tiles]
    pools = _sampling_pools(tiles, classes)
    clean = [_clean_set(tile, classes) for tile in tiles]
    pca_features = None
    result = TrainingResult(model, settings)
    for epoch in range(settings.epochs):
        noisy: list[tuple[_SoftSet, _SoftSet]] | None = None
        if epoch >= settings.warmup_epochs:
            if pca_features is None:
                pca_features = _pca_features(tiles, settings, rng)
            predictions = [predict_probabilities(model, x, device) for x in inputs]
            # the GMMs factor tiny matrices: BLAS threads only add overhead (10x on a busy CPU)
            with threadpool_limits(limits=1, user_api="blas"):
                noisy = _noisy_label_sets(tiles, predictions, pca_features, classes, settings, rng)
        totals = np.zeros(5)
        sizes = np.zeros(3, dtype=np.int64)
        for _ in range(settings.iterations):
            random_sets = _draw_random_sets(pools, tiles, classes, settings, rng)
            for t, x in enumerate(inputs):
                sets = [(random_sets[t], 1.0), (clean[t], settings.clean_weight)]
                if noisy is not None:
                    sets += [
                        (noisy[t][1], settings.hard_weight),
                        (noisy[t][0], settings.confident_weight),
                    ]
                parts = _train_step(model, optimiser, x, sets, settings, device)
                schedule.step()
                totals += parts
                sizes[0] += len(random_sets[t].index)
                if noisy is not None:
                    sizes[1] += len(noisy[t][0].index)
                    sizes[2] += len(noisy[t][1].index)
        mean = totals / (settings.iterations * len(tiles))
        record = EpochRecord(
            epoch=epoch,
            loss=float(mean[0]),
            random=float(mean[1]),
            clean=float(mean[2]),
            hard=float(mean[3]),
            confident=float(mean[4]),
            random_pixels=int(sizes[0] // settings.iterations),
            confident_pixels=int(sizes[1] // settings.iterations),
            hard_pixels=int(sizes[2] // settings.iterations),
            learning_rate=float(schedule.get_last_lr()[0]),
        )
        result.history.append(record)
        logger.info(
            "SPECIAL epoch %d/%d: loss %.4f (random %.4f, hard %.4f, confident %.4f)",
            epoch + 1,
            settings.epochs,
            record.loss,
            record.random,
            record.hard,
            record.confident,
        )
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, spectra: Tensor | np.ndarray, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Softmax class probabilities ``[C, H, W]`` of one stretched spectrum tile."""
    x = torch.as_tensor(spectra, dtype=torch.float32)
    was_training = model.training
    model.eval()
    probs = torch.softmax(model(x[None].to(device)), dim=1)[0].cpu().numpy()
    model.train(was_training)
    return probs


def _check_tiles(tiles: Sequence[SpectralTile]) -> None:
    if not tiles:
        raise InputError("no tiles to train on")
    bands = {t.spectra.shape[0] for t in tiles}
    if len(bands) != 1:
        raise InputError(f"all tiles need the same bands, got band counts {sorted(bands)}")
    for tile in tiles:
        if tile.spectra.shape[1:] != tile.labels.shape or tile.labels.shape != (
            tile.confidence.shape
        ):
            raise InputError("spectra, pseudo-labels and confidence of a tile differ in size")
        if not np.isfinite(tile.spectra).all():
            raise InputError("spectra hold NaN or infinity; fill no-data before training")


def _sampling_pools(tiles: Sequence[SpectralTile], classes: int) -> list[tuple]:
    """Per class: (tile ids, flat indices, sampling probabilities ∝ BvSB) over all tiles."""
    pools = []
    for c in range(classes):
        tile_ids, indices, weights = [], [], []
        for t, tile in enumerate(tiles):
            index = np.flatnonzero(tile.labels.ravel() == c)
            tile_ids.append(np.full(len(index), t, dtype=np.int32))
            indices.append(index)
            weights.append(np.nan_to_num(tile.confidence.ravel()[index]).clip(0))
        weight = np.concatenate(weights).astype(np.float64)
        if len(weight) and weight.sum() > 0:
            weight = weight / weight.sum()
        elif len(weight):
            weight = np.full(len(weight), 1.0 / len(weight))
        pools.append((np.concatenate(tile_ids), np.concatenate(indices), weight))
    return pools


def _draw_random_sets(pools, tiles, classes, settings, rng) -> list[_SoftSet]:
    chosen: list[list[np.ndarray]] = [[] for _ in tiles]
    targets: list[list[np.ndarray]] = [[] for _ in tiles]
    for c, (tile_ids, indices, weight) in enumerate(pools):
        if len(indices) == 0:
            continue
        picks = np.unique(rng.choice(len(indices), settings.samples_per_class, p=weight))
        for t in np.unique(tile_ids[picks]):
            index = indices[picks[tile_ids[picks] == t]]
            chosen[t].append(index)
            targets[t].append(np.full(len(index), c))
    return [
        _one_hot_set(np.concatenate(i) if i else np.zeros(0, int), np.concatenate(y) if y else [])
        for i, y in zip(chosen, targets, strict=True)
    ]


def _one_hot_set(index: np.ndarray, labels) -> _SoftSet:
    """One-hot targets, kept as class indices (``nll_loss`` is the same loss, cheaper)."""
    return _SoftSet(index.astype(np.int64), np.asarray(labels, dtype=np.int64))


def _clean_set(tile: SpectralTile, classes: int) -> _SoftSet:
    if tile.clean_labels is None:
        return _SoftSet(np.zeros(0, np.int64), np.zeros(0, np.int64))
    flat = tile.clean_labels.ravel()
    index = np.flatnonzero(flat >= 0)
    return _SoftSet(index, flat[index].astype(np.int64))


def _fit_subset(count: int, settings: SpecialSettings, rng: np.random.Generator) -> np.ndarray:
    if count <= settings.fit_pixels:
        return np.arange(count)
    return np.sort(rng.choice(count, settings.fit_pixels, replace=False))


def _pca_features(tiles, settings: SpecialSettings, rng) -> list[np.ndarray]:
    """Per tile ``[H*W, k]``: the spectrum's PCA (k = 5) fitted on all valid pixels."""
    pixels = [t.spectra.reshape(t.spectra.shape[0], -1).T for t in tiles]
    valid = np.concatenate([p[t.valid.ravel()] for p, t in zip(pixels, tiles, strict=True)])
    components = min(settings.pca_components, valid.shape[1])
    pca = PCA(n_components=components, random_state=settings.seed)
    pca.fit(valid[_fit_subset(len(valid), settings, rng)])
    return [pca.transform(p).astype(np.float64) for p in pixels]


def _noisy_label_sets(tiles, predictions, features, classes, settings, rng):
    """Per tile (confident, hard) sets with GMM soft labels (module docstring)."""
    flat_pred = [p.reshape(p.shape[0], -1) for p in predictions]
    predicted = [p.argmax(0) for p in flat_pred]
    bvsb = []
    for p in flat_pred:
        top2 = -np.partition(-p, 1, axis=0)[:2]
        bvsb.append(top2[0] - top2[1])
    valid = [t.valid.ravel() for t in tiles]
    confident: list[list[np.ndarray]] = [[] for _ in tiles]
    hard: list[list[np.ndarray]] = [[] for _ in tiles]
    class_models: list[GaussianMixture | None] = [None] * classes
    for c in range(classes):
        members = [
            np.flatnonzero((pred == c) & v) for pred, v in zip(predicted, valid, strict=True)
        ]
        scores = np.concatenate([b[m] for b, m in zip(bvsb, members, strict=True)])
        if len(scores) < settings.confidence_gmm_components:
            continue  # the reference's 1-D GMM crashes here (§8.6)
        gmm = GaussianMixture(settings.confidence_gmm_components, random_state=0)
        gmm.fit(scores[_fit_subset(len(scores), settings, rng), None])
        component = gmm.predict(scores[:, None])
        order = np.argsort(gmm.means_.ravel())
        tile_of = np.concatenate([np.full(len(m), t) for t, m in enumerate(members)])
        index = np.concatenate(members)
        is_conf = component == order[-1]
        conf_rows = np.flatnonzero(is_conf)
        keep = max(1, round(settings.confident_keep * len(conf_rows))) if len(conf_rows) else 0
        conf_rows = rng.choice(conf_rows, keep, replace=False) if keep else conf_rows
        hard_rows = np.flatnonzero(component == order[0])
        for t in range(len(tiles)):
            confident[t].append(index[conf_rows[tile_of[conf_rows] == t]])
            hard[t].append(index[hard_rows[tile_of[hard_rows] == t]])
        conf_features = np.concatenate(
            [features[t][index[conf_rows[tile_of[conf_rows] == t]]] for t in range(len(tiles))]
        )
        if len(conf_features) >= settings.class_gmm_components:
            class_models[c] = GaussianMixture(
                settings.class_gmm_components, covariance_type="full", random_state=0
            ).fit(conf_features)
    sets = []
    for t in range(len(tiles)):
        pair = []
        for chosen in (confident[t], hard[t]):
            index = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
            pair.append(_SoftSet(index, _soft_labels(features[t][index], class_models)))
        sets.append(tuple(pair))
    return sets


def _soft_labels(features: np.ndarray, class_models) -> np.ndarray:
    """softmax over classes of the per-class GMM log-likelihood (T = 1); no GMM -> 0."""
    loglik = np.full((len(features), len(class_models)), -np.inf)
    for c, gmm in enumerate(class_models):
        if gmm is not None and len(features):
            loglik[:, c] = gmm.score_samples(features)
    if len(features) == 0:
        return np.zeros((0, len(class_models)), np.float32)
    loglik -= loglik.max(axis=1, keepdims=True)
    prob = np.exp(loglik)
    return (prob / prob.sum(axis=1, keepdims=True)).astype(np.float32)


def _augment(x: Tensor, rng: np.random.Generator, noise_std: float) -> tuple[Tensor, int, bool]:
    """Rotation by k·90°, horizontal flip (p = 0.5), additive N(0, noise_std²)."""
    k = int(rng.integers(4))
    flip = bool(rng.random() < 0.5)
    x = torch.rot90(x, k, dims=(-2, -1))
    if flip:
        x = torch.flip(x, dims=(-1,))
    return x + noise_std * torch.randn_like(x), k, flip


def _undo(logits: Tensor, k: int, flip: bool) -> Tensor:
    if flip:
        logits = torch.flip(logits, dims=(-1,))
    return torch.rot90(logits, -k, dims=(-2, -1))


def _set_loss(logp: Tensor, soft_set: _SoftSet) -> Tensor:
    """Cross-entropy with (probability or index) targets averaged over the set's pixels."""
    if len(soft_set.index) == 0:
        return logp.new_zeros(())
    rows = logp[torch.from_numpy(soft_set.index).to(logp.device)]
    target = torch.from_numpy(soft_set.target).to(logp.device)
    if target.ndim == 1:
        return F.nll_loss(rows, target)
    return -(target * rows.clamp_min(-1e4)).sum(dim=1).mean()


def _train_step(model, optimiser, x, sets, settings, device) -> np.ndarray:
    """One Adam step on one tile; returns (total, random, clean, hard, confident) losses."""
    model.train()
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
    augmented, k, flip = _augment(x[None].to(device), rng, settings.noise_std)
    logits = _undo(model(augmented), k, flip)[0]
    logp = F.log_softmax(logits, dim=0).flatten(1).T
    parts = [_set_loss(logp, s) for s, _ in sets]
    loss = sum(weight * part for part, (_, weight) in zip(parts, sets, strict=True))
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    values = [float(p.detach()) for p in parts] + [0.0] * (4 - len(parts))
    return np.array([float(loss.detach()), *values])
