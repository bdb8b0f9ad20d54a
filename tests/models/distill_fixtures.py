"""Helpers for the AlignEarth tests: tiny GELU CLIPs, open_clip checkpoints, paired chips."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def build_tiny_gelu_clip(seed: int = 0, layers: int = 2, patch: int = 16):
    """A tiny CLIP as open_clip's ``ViT-B-16`` config builds it: nn.GELU, not QuickGELU."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(
        32,
        CLIPVisionCfg(layers=layers, width=64, patch_size=patch, image_size=patch * 14),
        CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2),
        quick_gelu=False,
    )
    return model.eval()


def save_open_clip_training_checkpoint(model, path: Path) -> Path:
    """Save as open_clip's trainer does after DDP: ``module.`` prefixes, epoch, name, optimizer."""
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"epoch": 20, "name": "alignearth-tiny", "state_dict": state, "optimizer": {}}, path)
    return path


def synthetic_pairs(generator: torch.Generator, n: int, size: int = 224):
    """Paired chips in 0..1: the SAR chip is a fixed nonlinear function of the optical chip.

    Optical: a per-chip colour plus a smooth random pattern. SAR: channels permuted,
    inverted and squared, times multiplicative speckle-like noise (mean 1, sd 0.3).
    """
    colour = torch.rand(n, 3, 1, 1, generator=generator)
    pattern = torch.rand(n, 1, size // 32, size // 32, generator=generator)
    pattern = F.interpolate(pattern, size=(size, size), mode="bilinear", align_corners=False)
    optical = (0.6 * colour + 0.4 * pattern).clamp(0, 1)
    speckle = 1 + 0.3 * torch.randn(optical.shape, generator=generator)
    sar = ((1 - optical[:, [2, 0, 1]]) ** 2 * speckle).clamp(0, 1)
    return optical, sar
