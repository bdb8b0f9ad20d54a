"""Benchmark AlignEarth distillation: training steps/s and chips/s, tiny and ViT-B/16 students.

Random weights (the ViT-B/16 architecture from open_clip's config, no download) and random
224-pixel chips, so the numbers measure compute only. Prints one summary line::

    python bench/distill.py [--steps 3] [--batch 8] [--tiny-steps 20] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrawatch.models.distill import Distiller, DistillSettings


def _tiny_clip():
    """The tests' tiny CLIP: ViT with width 64, 2 layers, patch 16 (0.16 M image parameters)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=2, width=64, patch_size=16, image_size=224)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2)
    return CLIP(32, vision, text, quick_gelu=True)


def _vit_b16():
    import open_clip

    return open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True)


def _rate(clip, steps: int, batch: int, device: str) -> tuple[float, float]:
    """(steps/s, chips/s) of ``Distiller.train_step`` after one warm-up step."""
    torch.manual_seed(0)
    distiller = Distiller(clip, DistillSettings(log_every=10**9), device=device)
    opt, sar = torch.rand(batch, 3, 224, 224), torch.rand(batch, 3, 224, 224)
    distiller.train_step(opt, sar)  # warm-up (allocator, kernels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        distiller.train_step(opt, sar)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    per_s = steps / (time.perf_counter() - started)
    return per_s, per_s * batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3, help="timed ViT-B/16 steps")
    parser.add_argument("--batch", type=int, default=8, help="ViT-B/16 pairs per step")
    parser.add_argument("--tiny-steps", type=int, default=20)
    parser.add_argument("--tiny-batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # open_clip warns about random init
    torch.set_num_threads(args.threads)
    tiny = _rate(_tiny_clip(), args.tiny_steps, args.tiny_batch, args.device)
    base = _rate(_vit_b16(), args.steps, args.batch, args.device)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"distill {args.device} threads={args.threads} 224px: tiny batch={args.tiny_batch} "
        f"{tiny[0]:.2f} steps/s {tiny[1]:.1f} chips/s; ViT-B/16 batch={args.batch} "
        f"{base[0]:.3f} steps/s {base[1]:.2f} chips/s; peak RSS {peak_gb:.2f} GB"
    )


if __name__ == "__main__":
    main()
