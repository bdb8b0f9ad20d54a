"""Change-detection test builders: tiny HF checkpoints and a synthetic planted-change pair."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PAIR256 = (SHARED_DATA / "change" / "pair256_t1.png", SHARED_DATA / "change" / "pair256_t2.png")

BACKGROUND = (0.25, 0.50, 0.20)  # green: class 0
BUILDING = (0.65, 0.22, 0.20)  # red: class 1
WATER = (0.18, 0.25, 0.62)  # blue: class 2


def save_tiny_sam(directory: Path, seed: int = 0) -> Path:
    """A random-weight SAM (64 px input, 2 tiny layers) saved with ``save_pretrained``."""
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=32,
            output_channels=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=16,
            window_size=2,
            global_attn_indexes=[1],
            num_pos_feats=16,
            mlp_dim=64,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=32, image_size=64, patch_size=16),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=32,
            mlp_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            iou_head_hidden_dim=32,
        ),
    )
    torch.manual_seed(seed)
    SamModel(config).eval().save_pretrained(directory)
    return directory


def save_confident_tiny_sam(
    directory: Path, source: Path, iou: float = 0.9, sharpness: float = 1e7
) -> Path:
    """The tiny SAM at ``source`` made confident, saved again in the real format.

    Random weights predict IoU ~0 and mask logits ~1e-5, so the reference's filters
    (``pred_iou > 0.5``, ``stability >= 0.95`` at offset 0.9) drop every mask and a test of
    them could not tell a working filter from one that drops everything. Here the IoU head
    predicts ``iou`` for every mask (its output layer: zero weights, bias ``iou``) and the mask
    logits are multiplied by ``sharpness`` (the hypernetworks' output layers), so few pixels
    sit within the stability offset of 0. The masks' shapes are still random-weight noise.
    """
    from transformers import SamModel

    model = SamModel.from_pretrained(str(source)).eval()
    decoder = model.mask_decoder
    with torch.no_grad():
        decoder.iou_prediction_head.proj_out.weight.zero_()
        decoder.iou_prediction_head.proj_out.bias.fill_(iou)
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(sharpness)
            mlp.proj_out.bias.mul_(sharpness)
    model.save_pretrained(directory)
    return directory


def save_tiny_dinov2(directory: Path, seed: int = 0) -> Path:
    """A random-weight DINOv2 (32-d, 2 layers, patch 14) saved with ``save_pretrained``."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=56,
        patch_size=14,
    )
    torch.manual_seed(seed)
    Dinov2Model(config).eval().save_pretrained(directory)
    return directory


@dataclass(frozen=True)
class PlantedPair:
    """Two dates of a synthetic scene and where its content really changed."""

    t1: Tensor
    """float ``[3, H, W]`` in 0..1."""
    t2: Tensor
    """float ``[3, H, W]``: t1's scene with objects added/removed, then ``x brightness``."""
    added: Tensor
    """bool ``[H, W]``: buildings present only at t2."""
    removed: Tensor
    """bool ``[H, W]``: water bodies present only at t1."""

    @property
    def change(self) -> Tensor:
        """bool ``[H, W]``: every pixel whose content changed."""
        return self.added | self.removed


def planted_pair(size: int = 128, brightness: float = 1.25, seed: int = 0) -> PlantedPair:
    """Green background with persistent buildings; blue ponds vanish, red buildings appear.

    The whole of t2 is ``brightness`` times brighter (as from another sun angle or sensor
    gain), which must not count as change. Each date has its own pixel noise.
    """
    generator = torch.Generator().manual_seed(seed)
    height = width = size
    unit = size // 8
    persistent = _squares(size, [(1, 1), (5, 2)], unit)
    removed = _squares(size, [(1, 5), (5, 5)], unit)
    added = _squares(size, [(3, 3), (6, 0)], unit)
    base = torch.tensor(BACKGROUND).view(3, 1, 1).expand(3, height, width).clone()
    shade = torch.rand(1, 1, 5, 5, generator=generator) * 0.2 + 0.9  # gentle illumination
    shade = torch.nn.functional.interpolate(shade, size=(height, width), mode="bilinear")[0]
    scene1 = _paint(_paint(base, persistent, BUILDING), removed, WATER)
    scene2 = _paint(_paint(base, persistent, BUILDING), added, BUILDING)
    t1 = scene1 * shade + 0.01 * torch.randn(3, height, width, generator=generator)
    t2 = scene2 * shade + 0.01 * torch.randn(3, height, width, generator=generator)
    return PlantedPair(t1.clamp(0, 1), (t2 * brightness).clamp(0, 1), added, removed)


def _squares(size: int, cells: list[tuple[int, int]], unit: int) -> Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    for row, col in cells:
        mask[row * unit + 2 : (row + 2) * unit - 2, col * unit + 2 : (col + 2) * unit - 2] = True
    return mask


def _paint(image: Tensor, mask: Tensor, colour: tuple[float, float, float]) -> Tensor:
    out = image.clone()
    out[:, mask] = torch.tensor(colour).view(3, 1)
    return out


def read_rgb(path: Path) -> Tensor:
    """float ``[3, H, W]`` in 0..1 of an RGB PNG."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
