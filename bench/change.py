"""Benchmark DynamicEarth change detection: megapixels/s of one pair and the share of each step.

Weights-free proposer (SLIC superpixels), SegEarth-OV's own CLIP tokens as comparator features
and SegEarth-OV as identifier, with random weights (no download): a tiny CLIP (2 layers,
width 64, as tests/conftest.py builds it) by default, or the real ViT-B/16 architecture. The
numbers measure compute, not accuracy. The pair is synthetic: a smooth random landscape with
rectangular "buildings" appearing and vanishing, t2 25 % brighter. The step shares come from
:attr:`ChangeResult.timings` (wall clock); CPU seconds are printed too, as wall time on a shared
machine depends on its load. One summary line::

    python bench/change.py [--size 1024] [--repeats 3] [--mode mci] [--model tiny] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrawatch.models.change import ChangeDetector, ChangeResult
from terrawatch.models.features import ClipFeatures
from terrawatch.models.proposals import SuperpixelProposer
from terrawatch.models.segearth import SegEarthOV, SegEarthSettings
from terrawatch.models.settings import ChangeSettings

STEPS = ("propose", "compare", "identify")


def synthetic_pair(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB pair ``[3, size, size]`` in 0..1: landscape, ~1 % of it changed, t2 x1.25 brighter."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 64 + 2, size // 64 + 2, generator=generator)
    land = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    land = 0.15 + 0.5 * land.clamp(0, 1)
    t1, t2 = land.clone(), land.clone()
    side = max(4, size // 40)
    for index in range(max(4, size * size // 20000)):
        top, left = torch.randint(0, size - side, (2,), generator=generator).tolist()
        colour = torch.rand(3, 1, 1, generator=generator) * 0.6 + 0.2
        target = t1 if index % 2 else t2  # half vanish, half appear
        target[:, top : top + side, left : left + side] = colour
    noise = 0.01 * torch.randn(2, 3, size, size, generator=generator)
    return (t1 + noise[0]).clamp(0, 1), ((t2 + noise[1]) * 1.25).clamp(0, 1)


def build_segmenter(model: str, device: str) -> SegEarthOV:
    """Random-weight SegEarth-OV with the bilinear upsampler and the published settings."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    if model == "tiny":
        vision = CLIPVisionCfg(layers=2, width=64, patch_size=16, image_size=224)
        text = CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2)
        clip = CLIP(32, vision, text, quick_gelu=True)
    else:
        import open_clip

        clip = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True)
    segmenter = SegEarthOV(clip.eval(), None, SegEarthSettings(), weights_id=f"bench-{model}")
    return segmenter.to(device)


def run(detector: ChangeDetector, pair: tuple[torch.Tensor, torch.Tensor]) -> ChangeResult:
    return detector.detect(*pair)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="side of the square pair, px")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--mode", choices=["mci", "imc"], default="mci")
    parser.add_argument("--region-px", type=int, default=1024, help="superpixel size")
    parser.add_argument("--model", choices=["tiny", "vit-b-16"], default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pair = tuple(image.to(args.device) for image in synthetic_pair(args.size))
    with tempfile.TemporaryDirectory() as cache:
        segmenter = build_segmenter(args.model, args.device)
        segmenter.text_cache.directory = Path(cache)
        segmenter.set_classes(["background", "building,roof", "tree", "water"])
        detector = ChangeDetector(
            SuperpixelProposer(region_px=args.region_px),
            ClipFeatures(segmenter),
            segmenter.predict_logits,
            ChangeSettings(mode=args.mode, rule="landcover"),
        )
        result = run(detector, pair)  # warm-up
        totals = dict.fromkeys((*STEPS, "total"), 0.0)
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(args.repeats):
            del result  # the previous result's masks must not count in the peak
            result = run(detector, pair)
            for step in totals:
                totals[step] += result.timings.get(step, 0.0)
        seconds = (time.perf_counter() - started) / args.repeats
        cpu_seconds = (time.process_time() - cpu_started) / args.repeats
    share = {step: 100 * totals[step] / totals["total"] for step in STEPS}
    rest = 100 - sum(share.values())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    megapixels = args.size * args.size / 1e6
    print(
        f"change {args.mode} {args.model} {args.device} {args.size}x{args.size} "
        f"region_px={args.region_px} threads={args.threads}: {megapixels / seconds:.3f} MP/s "
        f"({seconds:.2f} s/pair wall, {cpu_seconds:.2f} s CPU; {len(result.masks)} masks, "
        f"{int(result.kept.sum())} kept); "
        f"propose {share['propose']:.0f}%, compare {share['compare']:.0f}%, "
        f"identify {share['identify']:.0f}%, rest {rest:.0f}%; peak RSS {peak_gb:.2f} GB"
    )


if __name__ == "__main__":
    main()
