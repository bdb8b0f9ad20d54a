"""Benchmark SegEarth-OV: windows/s of the backbone, the full model batched and one at a time.

Random weights of the real ViT-B/16 + SimFeatUp architecture (no download), so the numbers
measure compute, not accuracy. Prints one summary line::

    python bench/segment.py [--batch 8] [--images 4] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrawatch.models.clip_backbone import DenseCLIPEncoder
from terrawatch.models.segearth import SegEarthOV, SegEarthSettings
from terrawatch.models.simfeatup import JBUOne
from terrawatch.models.sliding import plan_windows


def _random_model(backbone: str, batch: int, device: str) -> SegEarthOV:
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model(backbone, pretrained=None, force_quick_gelu=True)
    upsampler = JBUOne(feat_dim=int(clip.visual.proj.shape[1]))
    settings = SegEarthSettings(resize_long_side=None, batch_size=batch)
    return SegEarthOV(clip, upsampler, settings, weights_id=f"bench-random-{backbone}").to(device)


def _timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up (allocator, kernels)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=4, help="448x448 images (9 windows each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU here")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        model = _random_model(args.backbone, args.batch, args.device)
        model.text_cache.directory = Path(cache)
        model.set_classes(["water", "building", "road", "tree"])
        images = torch.rand(args.images, 3, 448, 448, device=args.device)
        n_windows = len(plan_windows(args.images, 448, 448, 224, 112))
        crops = torch.randn(args.batch, 3, 224, 224, device=args.device)
        encoder: DenseCLIPEncoder = model.encoder
        with torch.inference_mode(), model._autocast():
            backbone_s = _timed(lambda: encoder(crops)) / args.batch
        full_s = _timed(lambda: model.predict_logits(images)) / n_windows
        model.with_settings(batch_size=1)
        single_s = _timed(lambda: model.predict_logits(images[:1])) / 9
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    a, b, c = 1 / backbone_s, 1 / full_s, 1 / single_s
    print(
        f"segment {args.backbone} {args.device} batch={args.batch} threads={args.threads}: "
        f"(a) backbone {a:.2f} win/s, (b) full batched {b:.2f} win/s, (c) full one-at-a-time "
        f"{c:.2f} win/s; (b)/(a)={b / a:.2f}, (b)/(c)={b / c:.2f}; peak RSS {peak_gb:.2f} GB"
    )


if __name__ == "__main__":
    main()
