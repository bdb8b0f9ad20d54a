"""Dense image features for DynamicEarth's comparator: DINOv2 (published) and SegEarth-OV's CLIP.

The comparator (``shared/reference/algorithms.md`` §3.1 step 2) averages a feature map over each
mask on both dates and compares the two means by cosine; any extractor returning ``[C, h, w]``
that bilinearly stretches (``align_corners=True``) onto the image works.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from terrawatch.models.hf_weights import model_sha256, resolve_hf_model
from terrawatch.models.proposals import check_image
from terrawatch.models.sliding import window_starts

if TYPE_CHECKING:
    from transformers import Dinov2Model

    from terrawatch.models.segearth import SegEarthOV

DINOV2_WEIGHTS = "dinov2-base"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class FeatureExtractor(Protocol):
    """Dense features of one image."""

    name: str

    def features(self, image: Tensor) -> Tensor:
        """RGB ``[3, H, W]`` in 0..1 -> ``[C, h, w]`` with ``h <= H``, ``w <= W``."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Name, settings, weight file and its sha256."""
        ...


class Dinov2Features:
    """DINOv2 patch tokens at full resolution, as DynamicEarth's comparator extracts them.

    The reference runs the HF image processor with ``do_resize=False, do_center_crop=False``
    (ImageNet normalisation only) and reshapes ``last_hidden_state[:, 1:]`` to
    ``[768, H // 14, W // 14]``. The patch convolution ignores the ``H % 14`` last rows and
    ``W % 14`` last columns, so we crop them before the model: same tokens, same positional
    embedding grid. (Padding to a multiple of 14 and dropping the extra tokens afterwards would
    interpolate the positional embedding to a larger grid and change every token.)
    """

    name = "dinov2"

    def __init__(self, model: Dinov2Model, provenance: dict[str, Any] | None = None):
        self.model = model.eval()
        self.patch_size = int(model.config.patch_size)
        self._provenance = dict(provenance or {})

    @classmethod
    def from_pretrained(
        cls, weights: str | Path | None = None, device: str | torch.device | None = None
    ) -> Dinov2Features:
        """Load a transformers DINOv2 directory (default ``dinov2-base``).

        Raises:
            WeightsNotFoundError: the model is missing and cannot be downloaded.
        """
        from transformers import Dinov2Model

        directory = resolve_hf_model(DINOV2_WEIGHTS, weights)
        model = Dinov2Model.from_pretrained(str(directory)).to(_device(device))
        return cls(model, {"weights": directory.name, "weights_sha256": model_sha256(directory)})

    @property
    def device(self) -> torch.device:
        """Device of the model parameters."""
        return next(self.model.parameters()).device

    def provenance(self) -> dict[str, Any]:
        """Name, patch size, weights directory and the sha256 of its safetensors file."""
        return {"name": self.name, "patch_size": self.patch_size, **self._provenance}

    @torch.inference_mode()
    def features(self, image: Tensor) -> Tensor:
        """``[C, H // 14, W // 14]`` float32 patch tokens of an RGB image ``[3, H, W]``."""
        check_image(image, "image")
        patch = self.patch_size
        grid_h, grid_w = image.shape[1] // patch, image.shape[2] // patch
        if grid_h == 0 or grid_w == 0:
            raise ValueError(
                f"image of {tuple(image.shape[1:])} px is smaller than one {patch}x{patch} "
                f"DINOv2 patch; give images of at least {patch} px per side"
            )
        x = image[:, : grid_h * patch, : grid_w * patch].to(self.device, torch.float32)
        mean = x.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = x.new_tensor(IMAGENET_STD).view(3, 1, 1)
        hidden = self.model(pixel_values=((x - mean) / std).unsqueeze(0)).last_hidden_state
        tokens = hidden[0, -grid_h * grid_w :]  # drop CLS (and register tokens, if any)
        return tokens.transpose(0, 1).reshape(-1, grid_h, grid_w).float()


class ClipFeatures:
    """Patch tokens of the CLIP backbone already loaded for SegEarth-OV (no second model).

    The tokens are the segmenter's own dense features (modified last block, ``ln_post``,
    ``proj``), computed at the image's native resolution in sliding windows of 14 x 14 patches
    (224 px for ViT-B/16) with a stride of 7 patches, averaged where windows overlap. Windows keep
    the positional embedding at the size CLIP was trained at (no interpolation, as the segmenter
    uses it) and bound memory on large tiles; whole-image inference would interpolate the
    positional embedding and attend over every token of the tile at once.

    Windows start on the patch grid of the image padded (reflect) to a multiple of the patch
    size, so their tokens line up; tokens of the padding are dropped: the output is
    ``[D, ceil(H / p), ceil(W / p)]``.

    Args:
        segmenter: a loaded :class:`~models.segearth.SegEarthOV`.
        window_patches: window side in patches (14 = 224 px for ViT-B/16, as the segmenter).
        stride_patches: window stride in patches (7 = 112 px).
        batch_size: windows per forward pass; default the segmenter's batch size.
    """

    name = "clip"

    def __init__(
        self,
        segmenter: SegEarthOV,
        window_patches: int = 14,
        stride_patches: int = 7,
        batch_size: int | None = None,
    ):
        if window_patches < 1 or not 1 <= stride_patches <= window_patches:
            raise ValueError(
                f"need 1 <= stride_patches <= window_patches, got window_patches="
                f"{window_patches!r}, stride_patches={stride_patches!r}"
            )
        self.segmenter = segmenter
        self.window_patches = window_patches
        self.stride_patches = stride_patches
        self.batch_size = batch_size or segmenter.settings.batch_size

    def provenance(self) -> dict[str, Any]:
        """Name, window settings and the segmenter's weight ids."""
        info = self.segmenter.provenance()
        return {
            "name": self.name,
            "window_patches": self.window_patches,
            "stride_patches": self.stride_patches,
            "backbone": {k: v for k, v in info.items() if k not in ("templates", "classes")},
        }

    @torch.inference_mode()
    def features(self, image: Tensor) -> Tensor:
        """``[D, ceil(H / p), ceil(W / p)]`` float32 tokens of an RGB image ``[3, H, W]``."""
        check_image(image, "image")
        seg = self.segmenter
        encoder = seg.encoder
        patch = encoder.patch_size
        height, width = image.shape[1:]
        grid_h, grid_w = -(-height // patch), -(-width // patch)
        x = image.to(seg.device, torch.float32).unsqueeze(0)
        x = (x - seg.mean) / seg.std
        pad_h, pad_w = grid_h * patch - height, grid_w * patch - width
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        win_h, win_w = min(self.window_patches, grid_h), min(self.window_patches, grid_w)
        starts = [
            (top, left)
            for top in window_starts(grid_h, win_h, self.stride_patches)
            for left in window_starts(grid_w, win_w, self.stride_patches)
        ]
        canvas = x.new_zeros(encoder.embed_dim, grid_h, grid_w)
        count = x.new_zeros(1, grid_h, grid_w)
        for first in range(0, len(starts), self.batch_size):
            group = starts[first : first + self.batch_size]
            crops = torch.cat(
                [
                    x[..., top * patch : (top + win_h) * patch, lft * patch : (lft + win_w) * patch]
                    for top, lft in group
                ]
            )
            with _autocast(seg.device):
                tokens, _ = encoder(crops)
            for (top, left), token in zip(group, tokens.float(), strict=True):
                canvas[:, top : top + win_h, left : left + win_w] += token
                count[:, top : top + win_h, left : left + win_w] += 1
        return canvas / count


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Half precision on CUDA like the segmenter; fp32 on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
