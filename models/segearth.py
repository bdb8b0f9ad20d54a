"""SegEarth-OV: training-free open-vocabulary segmentation of remote-sensing images with CLIP.

Li et al., "SegEarth-OV" (CVPR 2025), as specified in ``shared/reference/algorithms.md`` §1:
modified last block (:mod:`models.clip_backbone`), SimFeatUp (:mod:`models.simfeatup`), Global
Bias Alleviation, 80 ImageNet templates, softmax at logit scale 50 over all queries, synonym
max-merge, ``prob_thd``/``bg_idx``, and 224/112 sliding windows on a 448 long side.

Usage::

    model = SegEarthOV.from_pretrained()            # ViT-B/16 OpenAI + SimFeatUp
    sar = SegEarthOV.from_pretrained(sensor="sar")  # AlignEarth SAR encoder (SegEarth-OV-2)
    model.set_classes(["water", "building,roof", "road", "tree,forest"])
    labels, confidence = model.predict(images)      # images: float [B, 3, H, W] RGB in 0..1
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.tokenizer import SimpleTokenizer
from torch import Tensor, nn

from terrawatch.errors import InputError
from terrawatch.models.alignearth import Sensor, sensor_profile
from terrawatch.models.classes import ClassNames, parse_class_names
from terrawatch.models.clip_backbone import (
    Activation,
    DenseCLIPEncoder,
    clip_activation,
    load_clip,
)
from terrawatch.models.settings import BACKBONES, DEFAULT_BACKBONE, SegEarthSettings
from terrawatch.models.simfeatup import JBUOne, load_simfeatup
from terrawatch.models.sliding import Window, pad_to_multiple, plan_windows
from terrawatch.models.text import TEMPLATES, TextEmbeddingCache, text_encoder_id
from terrawatch.models.weights import file_sha256, resolve_weights

logger = logging.getLogger(__name__)

SIMFEATUP_WEIGHTS = "simfeatup-jbu-one-million-aid"
MAX_CLASSES = 255  # uint8 labels; 255 is the no-data value of the cubes


class SegEarthOV(nn.Module):
    """Open-vocabulary segmenter; see the module docstring for the algorithm and an example."""

    def __init__(
        self,
        clip: nn.Module,
        upsampler: JBUOne | None,
        settings: SegEarthSettings | None = None,
        weights_id: str = "unidentified",
        provenance: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.settings = settings or SegEarthSettings()
        self.clip = clip.eval()
        self.encoder = DenseCLIPEncoder(
            clip.visual, self.settings.attention, self.settings.last_n_layers
        )
        self.upsampler = upsampler.eval() if upsampler is not None else None
        self.tokenizer = SimpleTokenizer(context_length=clip.context_length)
        self.text_cache = TextEmbeddingCache(text_encoder_id(weights_id, clip))
        self.register_buffer("mean", torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1), False)
        self._provenance = dict(provenance or {}, weights_id=weights_id)
        self._classes: ClassNames | None = None
        self._text: Tensor | None = None
        self._query_class: Tensor | None = None

    @classmethod
    def from_pretrained(
        cls,
        backbone: str = DEFAULT_BACKBONE,
        weights: str | Path | None = None,
        upsampler: Literal["simfeatup", "bilinear"] = "simfeatup",
        device: str | torch.device | None = None,
        upsampler_weights: str | Path | None = None,
        sensor: Sensor = "optical",
        activation: Activation | None = None,
        trust_checkpoint: bool = False,
        **settings: Any,
    ) -> SegEarthOV:
        """Load CLIP (and SimFeatUp) weights and build the segmenter.

        Args:
            backbone: ``ViT-B-16`` (default, as published), ``ViT-B-32`` or ``ViT-L-14``.
            weights: explicit CLIP checkpoint path; else the weights directory, else a download
                (see :func:`models.weights.resolve_weights`).
            upsampler: ``simfeatup`` (published) or ``bilinear`` (no learned upsampler).
            device: torch device; default CUDA when available, else CPU.
            upsampler_weights: explicit SimFeatUp checkpoint path.
            sensor: ``optical`` (OpenAI CLIP) or ``sar``: the AlignEarth image encoder with its
                checkpoint's text tower, SCLIP attention over the last 2 blocks, the optical
                SimFeatUp and GBA (:func:`models.alignearth.sensor_profile`).
            activation: ``quickgelu`` or ``gelu`` for the CLIP MLPs; default: what the
                checkpoint records, else QuickGELU (optical) or GELU (AlignEarth).
            trust_checkpoint: load checkpoints that pickle Python objects (beyond tensors and
                Lightning's bookkeeping) and TorchScript archives via ``torch.jit.load`` when
                they cannot be read safely; this can run code from the files, so only for
                files from a trusted source (:mod:`models.safe_checkpoint`).
            **settings: fields of :class:`SegEarthSettings`; they override the sensor's defaults.

        Raises:
            WeightsNotFoundError: a checkpoint is missing and cannot be downloaded.
            ValueError: unknown backbone/upsampler/sensor, or weights that do not fit.
            UntrustedCheckpointError: a checkpoint pickles Python objects and
                ``trust_checkpoint`` is False.
        """
        if backbone not in BACKBONES:
            raise InputError(f"unknown backbone {backbone!r}; available: {sorted(BACKBONES)}")
        profile = sensor_profile(sensor, backbone)
        parsed = SegEarthSettings.from_kwargs(**{**profile.settings, **settings})
        clip_path = resolve_weights(profile.weights, weights)
        clip = load_clip(
            clip_path,
            activation,
            default_activation=profile.activation,
            trust_checkpoint=trust_checkpoint,
        )
        patch = int(clip.visual.conv1.kernel_size[0])
        if patch != BACKBONES[backbone]:
            raise InputError(
                f"weights {str(clip_path)!r} have patch size {patch}, but backbone {backbone!r} "
                f"needs {BACKBONES[backbone]}; pass the matching backbone name or weights file"
            )
        clip_sha = file_sha256(clip_path)
        provenance: dict[str, Any] = {
            "backbone": backbone,
            "sensor": profile.sensor,
            "clip_weights": clip_path.name,
            "clip_sha256": clip_sha,
            "activation": clip_activation(clip),
            "upsampler": upsampler,
        }
        module = _build_upsampler(
            upsampler, backbone, upsampler_weights, clip, provenance, trust_checkpoint
        )
        model = cls(clip, module, parsed, f"{backbone}:{clip_sha}", provenance)
        return model.to(_default_device(device))

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return self.mean.device

    @property
    def classes(self) -> ClassNames:
        """The current classes (set with :meth:`set_classes`)."""
        if self._classes is None:
            raise RuntimeError("no classes set: call model.set_classes([...]) first")
        return self._classes

    def provenance(self) -> dict[str, Any]:
        """Model ids, weight hashes, settings and prompts, for cube attributes."""
        info = dict(self._provenance, settings=asdict(self.settings))
        info["templates"] = list(TEMPLATES)
        if self._classes is not None:
            info["classes"] = [list(synonyms) for synonyms in self._classes.synonyms]
        return info

    def with_settings(self, **changes: Any) -> SegEarthOV:
        """Change inference settings in place (e.g. ``resize_long_side=None``); returns self."""
        attention_fields = {"attention", "last_n_layers"}
        self.settings = replace(self.settings, **changes)
        if attention_fields & set(changes):
            self.encoder = DenseCLIPEncoder(
                self.clip.visual, self.settings.attention, self.settings.last_n_layers
            )
        return self

    @torch.inference_mode()
    def set_classes(self, names_or_path: str | Path | Sequence[str]) -> ClassNames:
        """Set the classes (list or class-name file) and encode their text queries once.

        Embeddings are cached by (weights, word, templates) in memory and on disk, so a second
        call with the same words does not run the text encoder.
        """
        classes = parse_class_names(names_or_path)
        if len(classes) > MAX_CLASSES:
            raise InputError(f"at most {MAX_CLASSES} classes are supported, got {len(classes)}")
        if not 0 <= self.settings.bg_idx < len(classes):
            raise InputError(
                f"bg_idx={self.settings.bg_idx} is not a class index of {list(classes.names)}; "
                f"set bg_idx to the index of the background class"
            )
        text = self.text_cache.get(classes.queries, TEMPLATES, self._encode_prompts)
        self._text = F.normalize(text.float(), dim=-1).to(self.device)
        self._query_class = torch.tensor(classes.query_class, device=self.device)
        self._classes = classes
        return classes

    def _encode_prompts(self, prompts: list[str]) -> Tensor:
        tokens = self.tokenizer(prompts).to(self.device)
        with self._autocast():
            return self.clip.encode_text(tokens).float()

    @torch.inference_mode()
    def predict_logits(self, images: Tensor) -> Tensor:
        """Class scores ``[B, C, H, W]`` for RGB images ``[B, 3, H, W]`` in 0..1.

        The scores are the reference's merged class probabilities: softmax at ``logit_scale``
        over all text queries, then the max over each class's synonyms (what argmax and
        ``prob_thd`` act on).
        """
        _check_images(images)
        query_logits = self._query_logits(images.to(self.device, torch.float32))
        probs = torch.softmax(self.settings.logit_scale * query_logits, dim=1)
        batch, _, height, width = probs.shape
        merged = probs.new_full((batch, len(self.classes), height, width), -1.0)
        index = self._query_class.view(1, -1, 1, 1).expand_as(probs)
        return merged.scatter_reduce_(1, index, probs, "amax", include_self=True)

    @torch.inference_mode()
    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Labels ``uint8 [B, H, W]`` and confidence (best class probability) ``[B, H, W]``."""
        labels, confidence, _ = self.predict_with_scores(images)
        return labels, confidence

    @torch.inference_mode()
    def predict_with_scores(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`predict` and the class scores ``[B, C, H, W]`` it took them from, in one pass
        (the land-cover flow's ``--probabilities``)."""
        scores = self.predict_logits(images)
        confidence, labels = scores.max(dim=1)
        labels[confidence < self.settings.prob_thd] = self.settings.bg_idx
        return labels.to(torch.uint8), confidence, scores

    def _query_logits(self, images: Tensor) -> Tensor:
        """Per-query cosine logits (with GBA) stitched from windows, at the input size."""
        settings = self.settings
        batch, _, height, width = images.shape
        x = _resize_long_side(images, settings.resize_long_side)
        x = (x - self.mean) / self.std
        size_h, size_w = x.shape[-2:]
        queries = len(self.classes.queries)
        canvas = x.new_zeros(batch, queries, size_h, size_w)
        count = x.new_zeros(batch, 1, size_h, size_w)
        windows = plan_windows(batch, size_h, size_w, settings.window, settings.stride)
        for group in _batches(windows, settings.batch_size):
            crops = torch.stack(
                [x[w.image, :, w.top : w.top + w.height, w.left : w.left + w.width] for w in group]
            )
            logits = self.window_logits(crops)
            for window, logit in zip(group, logits, strict=True):
                rows = slice(window.top, window.top + window.height)
                cols = slice(window.left, window.left + window.width)
                canvas[window.image, :, rows, cols] += logit
                count[window.image, :, rows, cols] += 1
        logits = canvas / count
        if (size_h, size_w) != (height, width):
            logits = F.interpolate(
                logits, size=(height, width), mode="bilinear", align_corners=False
            )
        return logits

    @torch.inference_mode()
    def window_logits(self, crops: Tensor) -> Tensor:
        """Per-query logits ``[N, Q, h, w]`` of CLIP-normalised crops ``[N, 3, h, w]``.

        Crops whose sides are not multiples of the patch size are zero-padded symmetrically
        (as the reference does) and the padding is cut from the result.
        """
        if self._text is None:
            raise RuntimeError("no classes set: call model.set_classes([...]) first")
        height, width = crops.shape[-2:]
        left, right, top, bottom = pad_to_multiple(height, width, self.encoder.patch_size)
        padded = F.pad(crops, (left, right, top, bottom)) if left + right + top + bottom else crops
        with self._autocast():
            patches, cls = self.encoder(padded)
            if self.upsampler is None:
                logits = torch.einsum(
                    "ndhw,qd->nqhw", F.normalize(patches.float(), dim=1), self._text
                )
                logits = F.interpolate(
                    logits, size=padded.shape[-2:], mode="bilinear", align_corners=False
                )
            else:
                logits = self._upsampled_logits(patches, padded)
        if self.settings.gba_lambda:
            bias = F.normalize(cls.float(), dim=-1) @ self._text.T
            logits = logits - self.settings.gba_lambda * bias[:, :, None, None]
        return logits[:, :, top : top + height, left : left + width]

    def _upsampled_logits(self, patches: Tensor, guidance: Tensor) -> Tensor:
        """``normalize(SimFeatUp(patches)) · T`` computed exactly on a low-rank basis.

        SimFeatUp's JBU steps are linear and shared across channels, and its final 1x1 conv is
        affine, so ``out = S((I + 0.1 W) P) + 0.1 b`` with S the JBU steps. Every output vector
        lies in the span of the ``L`` source tokens and the bias, so with ``[P' | b'] = U R``
        (thin QR) only the ``L + 1`` coordinates in U need upsampling instead of all D
        channels; norms and dot products with the text are unchanged because U is orthonormal.
        """
        upsampler = self.upsampler
        batch, dim, grid_h, grid_w = patches.shape
        tokens = patches.float().flatten(2)
        conv = upsampler.fixup_proj[1]
        tokens = tokens + 0.1 * torch.einsum("ed,ndl->nel", conv.weight[:, :, 0, 0].float(), tokens)
        bias = (0.1 * conv.bias.float()).expand(batch, dim)
        text = self._text.T.expand(batch, dim, -1)
        if tokens.shape[-1] + 1 < dim:
            basis, coords = torch.linalg.qr(torch.cat([tokens, bias[:, :, None]], dim=2))
            tokens, bias = coords[:, :, :-1], coords[:, :, -1]
            text = basis.transpose(1, 2) @ text
        source = tokens.reshape(batch, -1, grid_h, grid_w)
        upsampled = upsampler.upsample_linear(source.to(patches.dtype), guidance.to(patches.dtype))
        upsampled = upsampled.float() + bias[:, :, None, None]
        logits = torch.einsum("nrhw,nrq->nqhw", upsampled, text)
        return logits / upsampled.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type != "cuda":
            return contextlib.nullcontext()  # fp32 on CPU
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)


def _build_upsampler(
    upsampler: str,
    backbone: str,
    explicit: str | Path | None,
    clip: nn.Module,
    provenance: dict[str, Any],
    trust_checkpoint: bool = False,
) -> JBUOne | None:
    if upsampler == "bilinear":
        return None
    if upsampler != "simfeatup":
        raise InputError(f"upsampler must be 'simfeatup' or 'bilinear', got {upsampler!r}")
    patch = BACKBONES[backbone]
    if backbone != DEFAULT_BACKBONE and explicit is None:
        raise InputError(
            f"the published SimFeatUp weights are for ViT-B-16 only; for {backbone} pass "
            f"upsampler='bilinear' or upsampler_weights= trained for this backbone"
        )
    steps = math.log2(patch)
    if not steps.is_integer():
        raise InputError(
            f"SimFeatUp upsamples by powers of 2; patch size {patch} of {backbone} is not"
        )
    path = resolve_weights(SIMFEATUP_WEIGHTS, explicit)
    module = load_simfeatup(path, steps=int(steps), trust_checkpoint=trust_checkpoint)
    embed_dim = int(clip.visual.proj.shape[1])
    feat_dim = int(module.fixup_proj[1].weight.shape[0])
    if feat_dim != embed_dim:
        raise InputError(
            f"SimFeatUp weights {str(path)!r} are for {feat_dim}-d features but {backbone} gives "
            f"{embed_dim}-d; use weights trained for this backbone or upsampler='bilinear'"
        )
    provenance.update(upsampler_weights=path.name, upsampler_sha256=file_sha256(path))
    return module


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor [B, 3, H, W], got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be RGB with shape [B, 3, H, W], got {tuple(images.shape)}; "
            f"select three bands (R, G, B) and add a batch dimension"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"images must be float in 0..1, got dtype {images.dtype}; divide uint8 by 255"
        )
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"images must hold values in 0..1 (no NaN), got range [{low:.4g}, {high:.4g}]; "
            f"scale reflectance or DN to 0..1 and fill no-data before segmenting"
        )


def _resize_long_side(images: Tensor, long_side: int | None) -> Tensor:
    if long_side is None:
        return images
    height, width = images.shape[-2:]
    scale = long_side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size == (height, width):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _batches(windows: list[Window], size: int) -> Iterator[list[Window]]:
    """Batches of equally sized windows (only images smaller than a window differ)."""
    by_shape: dict[tuple[int, int], list[Window]] = {}
    for window in windows:
        by_shape.setdefault((window.height, window.width), []).append(window)
    for group in by_shape.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]
