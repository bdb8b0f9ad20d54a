"""Micro-benchmark of SimFeatUp's JBU steps on CPU: fast path vs a naive tap-by-tap reference.

Run from the repository root::

    python -m bench.simfeatup_micro                  # B=8, C=197, 14x14 -> 224x224, 2 threads
    python -m bench.simfeatup_micro --batch 4 --skip-naive

Prints one summary line: windows/s of the fused ``upsample_linear`` (kernels computed inside, as
the segmentor calls it), of ``step_kernels`` + ``upsample_linear(kernels=...)``, of the naive
reference (121 shifted multiply-adds per step, batch 1), the relative difference between the two
on one window, and the process's peak RSS during the fast paths.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terrawatch.models.simfeatup import JBUOne


def naive_upsample(module: JBUOne, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """The published JBU steps, looping over the 121 taps (what a CUDA-less port would do)."""
    up, r = module.up, module.up.radius
    d = 2 * r + 1
    x = source
    for _ in range(module.steps):
        height, width = 2 * x.shape[-2], 2 * x.shape[-1]
        g = F.adaptive_avg_pool2d(guidance, (height, width))
        keys = up.range_proj(g)
        padded = F.pad(keys, [r] * 4, mode="reflect")
        temp = up.range_temp.exp().clamp(1e-4, 1e4)
        logits = torch.stack([(padded[:, :, i : i + height, j : j + width] * keys).sum(1) * temp
                              for i in range(d) for j in range(d)], dim=1)  # fmt: skip
        lin = torch.linspace(-1, 1, d)
        spatial = torch.exp(-(lin[:, None] ** 2 + lin[None, :] ** 2) / (2 * up.sigma_spatial**2))
        k = torch.softmax(logits, dim=1) * spatial.reshape(1, -1, 1, 1)
        k = k / k.sum(1, keepdim=True).clamp(min=1e-7)
        k = k + 0.1 * up.fixup_proj(torch.cat([k, g], dim=1))
        hr = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
        hr = F.pad(hr, [r] * 4, mode="reflect")
        x = torch.zeros(x.shape[0], x.shape[1], height, width)
        for i in range(d):
            for j in range(d):
                x += hr[:, :, i : i + height, j : j + width] * k[:, i * d + j : i * d + j + 1]
    return x


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed runs after one warm-up (the machine may be shared)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    """Time the paths and print the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=197)
    parser.add_argument("--grid", type=int, default=14, help="source tokens per side")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module = JBUOne(feat_dim=512, steps=args.steps).eval()
    side = args.grid * 2**args.steps
    source = torch.randn(args.batch, args.channels, args.grid, args.grid)
    guidance = torch.randn(args.batch, 3, side, side)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.no_grad():
        fused = best_time(lambda: module.upsample_linear(source, guidance), args.repeats)
        split = best_time(
            lambda: module.upsample_linear(
                source, guidance, module.step_kernels(guidance, source.shape[-2:])
            ),
            args.repeats,
        )
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        naive_text = "naive skipped"
        if not args.skip_naive:
            one, hint = source[:1], guidance[:1]
            naive = best_time(lambda: naive_upsample(module, one, hint), 1)
            expected = naive_upsample(module, one, hint)
            diff = (module.upsample_linear(one, hint) - expected).abs().max() / expected.abs().max()
            naive_text = f"naive {1 / naive:.3f} win/s (max rel diff {diff:.1e})"
    print(
        f"simfeatup B={args.batch} C={args.channels} {args.grid}->{side} threads={args.threads}: "
        f"fused {args.batch / fused:.2f} win/s ({fused:.3f} s/batch), "
        f"step_kernels+upsample_linear {args.batch / split:.2f} win/s ({split:.3f} s/batch), "
        f"{naive_text}, peak RSS of the fast paths {peak_mb:.0f} MB "
        f"({peak_mb - baseline_mb:.0f} MB above the {baseline_mb:.0f} MB before them)"
    )


if __name__ == "__main__":
    main()
