"""SimFeatUp's JBUOne feature upsampler: pure PyTorch, exact, fast on CPU, loads the checkpoint.

The published module (``simfeatup_dev/upsamplers.py``, see ``shared/reference/algorithms.md`` §1.5)
repeats one learned joint bilateral upsampling step (x2 each) and ends with a residual 1x1 conv.
Each step predicts a per-pixel 11x11 kernel from the guidance image and applies it, shared by all
channels, to the bicubic x2 upsampled features. The reference needs a CUDA extension; here every
step is computed exactly (same formula, float rounding only) with dense matrix products:

* range logits: Gram matrices of the key vectors of a pixel tile and its 5-pixel halo;
* bicubic x2 + reflect padding are linear and separable, so they fold into the kernel, giving a
  9x9 kernel on the *low-resolution* source for every output pixel;
* the adaptive conv of a tile of 8x8 output pixels is then one ``[64, 144] @ [144, C]`` product.

Work runs in strips of rows, so temporaries stay in the CPU cache and memory stays bounded.
Features are channels-last inside; outputs are ``[B, C, H, W]`` in ``channels_last`` memory format.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terrawatch.errors import InputError, WeightsNotFoundError
from terrawatch.models.safe_checkpoint import LIGHTNING_SAFE_GLOBALS, load_checkpoint

_CONV_TILE = 4
"""Source blocks per conv tile side: a tile is 8x8 output pixels reading 12x12 source pixels."""
_GRAM_TILE = 8
"""Pixels per range-logit tile side; must divide ``2 * _CONV_TILE``."""
_STRIP_PIXELS = 16384
"""Output pixels (all batch items together) per strip; keeps temporaries cache-sized."""
_CHANNEL_ALIGN = 8
"""Features are zero-padded to a multiple of this many channels between steps (faster BLAS)."""
_CHECKPOINT_PREFIX = "upsampler."


class JBULearnedRange(nn.Module):
    """One x2 joint bilateral upsampling step with a learned range kernel (published names)."""

    def __init__(
        self, guidance_dim: int = 3, feat_dim: int = 512, key_dim: int = 32, radius: int = 5
    ) -> None:
        """Build the step; ``feat_dim`` is kept for the published signature (no weights use it)."""
        super().__init__()
        taps = (2 * radius + 1) ** 2
        self.feat_dim = feat_dim
        self.radius = radius
        self.range_temp = nn.Parameter(torch.tensor(0.0))
        self.sigma_spatial = nn.Parameter(torch.tensor(1.0))
        self.range_proj = nn.Sequential(
            nn.Conv2d(guidance_dim, key_dim, 1), nn.GELU(), nn.Dropout2d(0.1),
            nn.Conv2d(key_dim, key_dim, 1),
        )  # fmt: skip
        self.fixup_proj = nn.Sequential(
            nn.Conv2d(taps + guidance_dim, taps, 1), nn.GELU(), nn.Dropout2d(0.1),
            nn.Conv2d(taps, taps, 1),
        )  # fmt: skip

    def forward(self, source: Tensor, guidance: Tensor) -> Tensor:
        """Upsample ``source [B, C, h, w]`` x2, guided by the image ``guidance [B, 3, H, W]``."""
        return _run_steps(self, source, guidance, steps=1, kernels=None)

    def _prepare(self, guidance: Tensor, size: tuple[int, int], padded: tuple[int, int]) -> _Guide:
        """Per-step inputs of the kernel: pooled guidance, range keys (channels-last), weights.

        ``range_proj`` is pointwise, so reflect-padding the guidance first equals padding the keys.
        The fixup weights are zero-padded from 121 to 128 taps, which BLAS runs much faster.
        """
        r, taps = self.radius, (2 * self.radius + 1) ** 2
        extra = -taps % 16
        g = F.adaptive_avg_pool2d(guidance.to(self.range_temp.dtype), size)
        g = F.pad(
            F.pad(g, [r] * 4, mode="reflect"), [0, padded[1] - size[1], 0, padded[0] - size[0]]
        )
        g = g.contiguous(memory_format=torch.channels_last)
        keys = self.range_proj(g).permute(0, 2, 3, 1)  # [B, H' + 2r, W' + 2r, K], contiguous
        lin = torch.linspace(-1, 1, 2 * r + 1, dtype=g.dtype, device=g.device)
        log_spatial = -(lin[:, None] ** 2 + lin[None, :] ** 2).reshape(-1) / (
            2 * self.sigma_spatial**2
        )
        # sum(softmax * spatial) >= min(spatial) = exp(-1/sigma^2): when that is above the 1e-7
        # clamp, normalise(softmax(l) * spatial) is exactly softmax(l + log(spatial)).
        clamp_free = math.exp(-1.0 / max(float(self.sigma_spatial.detach()) ** 2, 1e-30)) > 2e-7
        first, second = self.fixup_proj[0], self.fixup_proj[3]
        w_first = first.weight.view(taps, -1)
        return _Guide(
            g=g.permute(0, 2, 3, 1)[:, r : r + padded[0], r : r + padded[1]],
            keys=keys,
            temp=self.range_temp.exp().clamp(1e-4, 1e4),
            log_spatial=F.pad(log_spatial, (0, extra)),
            clamp_free=clamp_free,
            w_in=F.pad(w_first[:, :taps], (0, extra, 0, extra)),
            w_guide=F.pad(w_first[:, taps:], (0, 0, 0, extra)),
            b_in=F.pad(first.bias, (0, extra)),
            w_out=F.pad(0.1 * second.weight.view(taps, taps), (0, extra, 0, extra)),
            b_out=F.pad(0.1 * second.bias, (0, extra)),
            hidden_mask=self._hidden_mask(g.new_ones(g.shape[0], taps + extra, 1, 1)),
        )

    def _hidden_mask(self, ones: Tensor) -> Tensor | None:
        """The fixup's Dropout2d as a ``[B, 1, channels]`` mask, or None when it is inactive."""
        dropout = self.fixup_proj[2]
        return dropout(ones).flatten(1)[:, None] if dropout.training else None

    def _kernel_rows(self, guide: _Guide, y0: int, y1: int) -> Tensor:
        """Final kernels ``k`` (after the 0.1 fixup) of padded rows ``[y0, y1)``.

        Returns ``[B, R, W', 128]``: taps 121..127 are zero padding.
        """
        keys = guide.keys[:, y0 : y1 + 2 * self.radius]
        logits = _range_logits(keys, guide.temp, self.radius, guide.w_in.shape[0])
        batch, rows, cols, width = logits.shape
        logits = logits.view(-1, width)
        if guide.clamp_free:
            k = torch.softmax(logits.add_(guide.log_spatial), dim=-1)
        else:  # the literal formula, for a spatial kernel narrow enough to hit the clamp
            k = torch.softmax(logits, dim=-1) * guide.log_spatial.exp()
            k = k / k.sum(dim=-1, keepdim=True).clamp(min=1e-7)
        g = guide.g[:, y0:y1].reshape(-1, guide.w_guide.shape[1])
        hidden = torch.addmm(torch.addmm(guide.b_in, g, guide.w_guide.t()), k, guide.w_in.t())
        hidden = self.fixup_proj[1](hidden)
        if guide.hidden_mask is not None:  # Dropout2d: one mask per image and channel per step
            hidden = (hidden.view(batch, -1, width) * guide.hidden_mask).view(-1, width)
        k = torch.addmm(k, hidden, guide.w_out.t()).add_(guide.b_out)
        return k.view(batch, rows, cols, width)


@dataclass(frozen=True)
class _Guide:
    """What one step's kernel needs: channels-last, zero-padded to whole tiles and 128 taps."""

    g: Tensor  # [B, H', W', 3] pooled guidance
    keys: Tensor  # [B, H' + 2r, W' + 2r, K] range keys, reflect-padded by r
    temp: Tensor
    log_spatial: Tensor
    clamp_free: bool
    w_in: Tensor  # first fixup conv, kernel part
    w_guide: Tensor  # first fixup conv, guidance part
    b_in: Tensor
    w_out: Tensor  # 0.1 * second fixup conv
    b_out: Tensor
    hidden_mask: Tensor | None  # [B, 1, 128] Dropout2d mask in training mode


class JBUOne(nn.Module):
    """SimFeatUp ``jbu_one``: one shared JBU step applied ``steps`` times, then a residual conv."""

    def __init__(
        self, feat_dim: int = 512, steps: int = 4, radius: int = 5, key_dim: int = 32
    ) -> None:
        """Build the upsampler; ``steps`` is log2 of the patch size (4 for ViT-B/16, 5 for /32)."""
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1 (x2 per step), got {steps!r}")
        self.steps = steps
        self.up = JBULearnedRange(3, feat_dim, key_dim, radius)
        self.fixup_proj = nn.Sequential(nn.Dropout2d(0.2), nn.Conv2d(feat_dim, feat_dim, 1))

    def step_kernels(self, guidance: Tensor, source_hw: tuple[int, int]) -> list[Tensor]:
        """Per-step combined kernels ``k`` (after the 0.1 fixup), each ``[B, 121, 2^s h, 2^s w]``.

        They depend only on the guidance, so callers can reuse them for several sources.
        """
        h, w = source_hw
        _check_inputs(self.up, (guidance.shape[0], 1, h, w), guidance)
        taps, kernels = self.up.fixup_proj[3].out_channels, []
        for _ in range(self.steps):
            plan = _Plan(guidance.shape[0], h, w)
            guide = self.up._prepare(guidance, (2 * h, 2 * w), (plan.height, plan.width))
            kernel = None
            for y0, y1 in plan.strips():
                rows = self.up._kernel_rows(guide, y0, y1)[..., :taps]
                if kernel is None:
                    kernel = rows.new_empty(plan.batch, plan.height, plan.width, taps)
                kernel[:, y0:y1] = rows
            kernels.append(kernel[:, : 2 * h, : 2 * w].permute(0, 3, 1, 2))
            h, w = 2 * h, 2 * w
        return kernels

    def upsample_linear(
        self, source: Tensor, guidance: Tensor, kernels: list[Tensor] | None = None
    ) -> Tensor:
        """The ``steps`` JBU steps only: linear in ``source`` and the same map on every channel.

        Args:
            source: features ``[B, C, h, w]``, any number of channels ``C``.
            guidance: the normalised image ``[B, 3, H, W]`` the features came from.
            kernels: optional output of :meth:`step_kernels` for this guidance and ``(h, w)``.

        Returns:
            ``[B, C, 2^steps h, 2^steps w]`` in ``channels_last`` memory format.
        """
        return _run_steps(self.up, source, guidance, self.steps, kernels)

    def forward(self, source: Tensor, guidance: Tensor) -> Tensor:
        """Exact JBUOne output: ``fixup_proj(x) * 0.1 + x`` with ``x`` the upsampled features."""
        upsampled = self.upsample_linear(source, guidance)
        return self.fixup_proj(upsampled) * 0.1 + upsampled


@dataclass(frozen=True)
class _Plan:
    """Geometry of one x2 step: padded output size (whole conv tiles) and its row strips."""

    batch: int
    source_h: int
    source_w: int

    @property
    def tile_rows(self) -> int:
        return -(-self.source_h // _CONV_TILE)

    @property
    def tile_cols(self) -> int:
        return -(-self.source_w // _CONV_TILE)

    @property
    def height(self) -> int:
        return 2 * _CONV_TILE * self.tile_rows

    @property
    def width(self) -> int:
        return 2 * _CONV_TILE * self.tile_cols

    @property
    def rows_per_strip(self) -> int:
        """Conv-tile rows per strip."""
        return max(1, _STRIP_PIXELS // (self.batch * 2 * _CONV_TILE * self.width))

    def strips(self) -> list[tuple[int, int]]:
        """Padded output row ranges ``[y0, y1)``, each a whole number of conv-tile rows."""
        step, band = self.rows_per_strip, 2 * _CONV_TILE
        return [
            (band * start, band * min(start + step, self.tile_rows))
            for start in range(0, self.tile_rows, step)
        ]


def _run_steps(
    up: JBULearnedRange, source: Tensor, guidance: Tensor, steps: int, kernels: list[Tensor] | None
) -> Tensor:
    """Apply ``up`` ``steps`` times; features stay channels-last in zero-haloed buffers."""
    _check_inputs(up, tuple(source.shape), guidance)
    if kernels is not None and len(kernels) != steps:
        raise ValueError(f"kernels must hold one tensor per step ({steps}), got {len(kernels)}")
    batch, channels, h, w = source.shape
    lanes = channels + (-channels % _CHANNEL_ALIGN)  # zero channels: faster products
    halo = -_window(up.radius)[0]
    plan = _Plan(batch, h, w)
    src = _source_buffer(plan, lanes, (h, w), up.radius, source)
    src[:, halo : halo + h, halo : halo + w, :channels] = source.permute(0, 2, 3, 1)
    for step in range(steps):
        following = _Plan(batch, 2 * plan.source_h, 2 * plan.source_w)
        if step == steps - 1:
            out = source.new_empty(batch, plan.height, plan.width, channels)
            region = out
        else:
            out = _source_buffer(following, lanes, (plan.height, plan.width), up.radius, source)
            region = out[:, halo : halo + plan.height, halo : halo + plan.width]
        taps = up.fixup_proj[3].out_channels
        kernel = None if kernels is None else _padded_kernel(kernels[step], plan, taps)
        _step(up, src, plan, guidance, kernel, region)
        src, plan = out, following
    return src[:, : plan.source_h, : plan.source_w].permute(0, 3, 1, 2)


def _step(
    up: JBULearnedRange, src: Tensor, plan: _Plan, guidance: Tensor, kernel: Tensor | None,
    region: Tensor,
) -> None:  # fmt: skip
    """One x2 step: per strip, kernels -> source-space kernels in tile matrices -> products."""
    band = 2 * _CONV_TILE
    rows = _bicubic_windows(plan.source_h, plan.height, up.radius).to(src.device)
    cols = _bicubic_windows(plan.source_w, plan.width, up.radius).to(src.device)
    guide = None
    if kernel is None:
        guide = up._prepare(
            guidance, (2 * plan.source_h, 2 * plan.source_w), (plan.height, plan.width)
        )
    weights = None
    for y0, y1 in plan.strips():
        k = up._kernel_rows(guide, y0, y1) if guide is not None else kernel[:, y0:y1]
        if weights is None or (torch.is_grad_enabled() and (k.requires_grad or src.requires_grad)):
            # reused when autograd is off: only the kernel entries change from strip to strip
            weights = _weight_buffer(plan, rows.shape[-1], src)
        keff = _effective_kernels(k, rows[y0:y1].to(k.dtype), cols.to(k.dtype))
        matrices = _fill_tiles(weights, keff)
        tiles = _tile_products(src, matrices, y0 // band, plan.tile_cols)
        target = region[:, y0:y1].view(*tiles.shape[:2], band, tiles.shape[2], band, -1)
        target.copy_(tiles.permute(0, 1, 3, 2, 4, 5)[..., : target.shape[-1]])


def _check_inputs(up: JBULearnedRange, source_shape: tuple[int, ...], guidance: Tensor) -> None:
    """Reject shapes the published module cannot handle, naming the argument."""
    if len(source_shape) != 4:
        raise ValueError(f"source must be [B, C, h, w], got shape {tuple(source_shape)!r}")
    guide_dim = up.range_proj[0].in_channels
    if guidance.dim() != 4 or guidance.shape[1] != guide_dim:
        raise ValueError(
            f"guidance must be [B, {guide_dim}, H, W] (the normalised image), "
            f"got shape {tuple(guidance.shape)!r}"
        )
    if guidance.shape[0] != source_shape[0]:
        raise ValueError(
            f"guidance batch {guidance.shape[0]} must equal source batch {source_shape[0]}"
        )
    smallest = up.radius // 2 + 1  # reflect padding by radius needs 2h > radius
    if min(source_shape[2:]) < smallest:
        raise ValueError(
            f"source height and width must be >= {smallest} for radius {up.radius}, "
            f"got {tuple(source_shape[2:])!r}"
        )


def _source_buffer(
    plan: _Plan, channels: int, written: tuple[int, int], radius: int, like: Tensor
) -> Tensor:
    """Zeroed ``[B, rows, cols, C]`` holding a step's source at offset ``halo`` (= -window start).

    Large enough for the tiles' halo reads and for the previous step's whole-tile writes.
    """
    start, size = _window(radius)
    halo, extra = -start, size - 1 + start
    rows = halo + max(plan.tile_rows * _CONV_TILE + extra, written[0])
    cols = halo + max(plan.tile_cols * _CONV_TILE + extra, written[1])
    return like.new_zeros(plan.batch, rows, cols, channels)


def _padded_kernel(kernel: Tensor, plan: _Plan, taps: int) -> Tensor:
    """A :meth:`JBUOne.step_kernels` tensor as channels-last ``[B, H', W', T]``, zero-padded."""
    expected = (plan.batch, taps, 2 * plan.source_h, 2 * plan.source_w)
    if tuple(kernel.shape) != expected:
        raise ValueError(
            f"kernels must come from step_kernels for this guidance and source size: expected "
            f"shape {expected!r}, got {tuple(kernel.shape)!r}"
        )
    pads = [0, 0, 0, plan.width - expected[3], 0, plan.height - expected[2]]
    return F.pad(kernel.permute(0, 2, 3, 1), pads)


def _weight_buffer(plan: _Plan, size: int, like: Tensor) -> Tensor:
    """Zeroed per-tile matrices ``[tiles, 2t, 2t, e, e]`` (output pixel x source window pixel)."""
    tiles = plan.batch * min(plan.rows_per_strip, plan.tile_rows) * plan.tile_cols
    band, window = 2 * _CONV_TILE, _CONV_TILE + size - 1
    return like.new_zeros(tiles, band, band, window, window)


def _fill_tiles(weights: Tensor, keff: Tensor) -> Tensor:
    """Place a strip's source-space kernels ``[B, R, W', S, S]`` in dense tile matrices.

    Output pixel ``(2m + dy, 2n + dx)`` of a tile reads the 9x9 source window starting at its
    block ``(m, n)``; placing its kernel there gives a ``[64, 12 * 12]`` matrix per 8x8 tile.
    Returns those ``[tiles, 64, 144]`` matrices (a view of ``weights``).
    """
    batch, rows, cols, size = keff.shape[:4]
    t, band = _CONV_TILE, 2 * _CONV_TILE
    nrows, ncols = rows // band, cols // band
    count = batch * nrows * ncols
    w = weights[:count]
    s0, spy, spx, sey, sex = w.stride()
    scatter = w.as_strided(
        (batch, nrows, ncols, t, 2, t, 2, size, size),
        (nrows * ncols * s0, ncols * s0, s0, 2 * spy + sey, spy, 2 * spx + sex, spx, sey, sex),
    )
    blocks = keff.view(batch, nrows, t, 2, ncols, t, 2, size, size)
    scatter.copy_(blocks.permute(0, 1, 4, 2, 3, 5, 6, 7, 8))
    return w.view(count, 4 * t * t, -1)


def _tile_products(src: Tensor, matrices: Tensor, tile_row: int, ncols: int) -> Tensor:
    """Adaptive conv of a strip: each tile matrix times its ``12 x 12`` source window.

    Returns ``[B, strip tile rows, tile cols, 8, 8, C]`` from the haloed channels-last source.
    """
    t, channels, batch = _CONV_TILE, src.shape[-1], src.shape[0]
    window = math.isqrt(matrices.shape[-1])
    nrows = matrices.shape[0] // (batch * ncols)
    sb, sy, sx, sc = src.stride()
    windows = src.as_strided(
        (batch, nrows, ncols, window, window, channels),
        (sb, t * sy, t * sx, sy, sx, sc),
        src.storage_offset() + tile_row * t * sy,
    )
    out = torch.bmm(matrices, windows.reshape(matrices.shape[0], -1, channels))
    return out.view(batch, nrows, ncols, 2 * t, 2 * t, channels)


def _range_logits(keys: Tensor, temp: Tensor, radius: int, width: int) -> Tensor:
    """``temp * <key(p + tap), key(p)>`` for all taps from haloed keys ``[B, R + 2r, W + 2r, K]``.

    Per ``g x g`` pixel tile, one product of its ``(g + 2r)^2`` haloed keys with its own keys
    gives every needed dot product; a strided view picks each pixel's 11x11 neighbourhood.
    Returns ``[B, R, W, width]``, taps past 121 set to -inf (they vanish in the softmax).
    """
    g, d = _GRAM_TILE, 2 * radius + 1
    batch, rows, cols, dim = keys.shape
    nrows, ncols, ext = (rows - 2 * radius) // g, (cols - 2 * radius) // g, g + 2 * radius
    sb, sy, sx, sk = keys.stride()
    halo = keys.as_strided(
        (batch, nrows, ncols, ext, ext, dim),
        (sb, g * sy, g * sx, sy, sx, sk),
        keys.storage_offset(),
    ).reshape(-1, ext, ext, dim)
    centre = halo[:, radius : radius + g, radius : radius + g] * temp
    gram = torch.bmm(
        centre.reshape(-1, g * g, dim), halo.reshape(-1, ext * ext, dim).transpose(1, 2)
    )
    s0 = gram.stride(0)  # gram[tile, py, px, ey, ex]; tap (i, j) of pixel (py, px) is ey = py + i
    taps = gram.as_strided(
        (batch, nrows, ncols, g, g, d, d),
        (nrows * ncols * s0, ncols * s0, s0, g * ext * ext + ext, ext * ext + 1, ext, 1),
    )
    out = gram.new_empty(batch, nrows, g, ncols, g, width)
    out[..., d * d :] = -math.inf
    out[..., : d * d].view(batch, nrows, g, ncols, g, d, d).copy_(taps.permute(0, 1, 3, 2, 4, 5, 6))
    return out.view(batch, nrows * g, ncols * g, width)


def _effective_kernels(k: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Fold reflect padding and bicubic x2 into the kernels: ``[B, R, W, >=T] -> [B, R, W, S, S]``.

    ``keff[y, x] = rows[y]^T @ k[y, x] (11x11) @ cols[x]``, exact because both are linear.
    Returns a permuted view; the caller copies it once, into the tile matrices.
    """
    batch, nrows, ncols = k.shape[:3]
    d, size = rows.shape[1:]
    kernel = k[..., : d * d].view(batch, nrows, ncols, d, d)
    half = torch.bmm(kernel.permute(2, 0, 1, 3, 4).reshape(ncols, -1, d), cols)  # [W, B R i, u]
    half = half.view(ncols, batch, nrows, d, size).permute(2, 3, 1, 0, 4)
    out = torch.bmm(rows.transpose(1, 2), half.reshape(nrows, d, -1))  # [R, s, B W u]
    return out.view(nrows, size, batch, ncols, size).permute(2, 0, 3, 1, 4)


def _window(radius: int) -> tuple[int, int]:
    """Source window ``(start offset from m, size)`` read by output pixels ``2m`` and ``2m + 1``.

    Output ``y`` reads upsampled rows ``y - r .. y + r``; bicubic row ``Y`` reads source rows
    ``floor(Y / 2 - 1/4) - 1 .. + 2`` (align_corners=False, scale 1/2).
    """
    start = min(math.floor((dy - radius) / 2 - 0.25) - 1 for dy in (0, 1))
    stop = max(math.floor((dy + radius) / 2 - 0.25) + 2 for dy in (0, 1))
    return start, stop - start + 1


@functools.lru_cache(maxsize=64)
def _bicubic_windows(n_in: int, n_padded: int, radius: int) -> Tensor:
    """``[n_padded, d, S]`` float64: weight of source ``m + start + s`` in padded upsampled row
    ``y + i`` (``m = y // 2``) after bicubic x2 and reflect padding; zero rows past ``2 n_in``.

    Built by running ``F.interpolate`` and ``F.pad`` themselves on an identity, so it matches them.
    """
    n_out, d = 2 * n_in, 2 * radius + 1
    start, size = _window(radius)
    eye = torch.eye(n_in, dtype=torch.float64)[None, None]
    upsample = F.interpolate(eye, size=(n_out, n_in), mode="bicubic", align_corners=False)[0, 0]
    index = torch.arange(n_out, dtype=torch.float64)[None, None]
    reflect = F.pad(index, (radius, radius), mode="reflect")[0, 0].long()
    matrix = F.pad(upsample[reflect], (-start, size - 1 + start))  # column q = source c - start
    y = torch.arange(n_out)
    taps = y[:, None] + torch.arange(d)[None, :]
    sources = (y // 2)[:, None] + torch.arange(size)[None, :]
    windows = torch.zeros(n_padded, d, size, dtype=torch.float64)
    windows[:n_out] = matrix[taps[:, :, None], sources[:, None, :]]
    if not torch.allclose(windows[:n_out].sum(-1), torch.ones(n_out, d, dtype=torch.float64)):
        raise RuntimeError(f"bicubic support escapes the {size}-pixel window (radius {radius})")
    return windows


def load_simfeatup(
    path: str | Path, feat_dim: int | None = None, steps: int = 4, trust_checkpoint: bool = False
) -> JBUOne:
    """Load the published Lightning checkpoint (``xclip_jbu_one_million_aid.ckpt``) in eval mode.

    Args:
        path: the ``.ckpt`` file; its ``state_dict`` keys start with ``upsampler.``.
        feat_dim: feature width; inferred from ``fixup_proj.1.weight`` when None.
        steps: x2 steps, log2 of the backbone's patch size (4 for ViT-B/16, 5 for ViT-B/32).
        trust_checkpoint: load a file that pickles objects beyond Lightning's allow-listed
            bookkeeping (:data:`models.safe_checkpoint.LIGHTNING_SAFE_GLOBALS`); this can run
            code from the file, so only for files from a trusted source.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a JBUOne checkpoint (names missing/unexpected/misshapen keys).
        UntrustedCheckpointError: the file pickles other objects and is not trusted.
    """
    path = Path(path)
    state = _read_state_dict(path, trust_checkpoint)
    if feat_dim is None:
        weight = state.get("fixup_proj.1.weight")
        feat_dim = int(weight.shape[0]) if isinstance(weight, Tensor) else 512
    module = JBUOne(feat_dim=feat_dim, steps=steps)
    _check_keys(module.state_dict(), state, path, feat_dim)
    module.load_state_dict(state, strict=True)
    return module.eval()


def save_simfeatup_checkpoint(module: JBUOne, path: str | Path) -> None:
    """Write ``module`` in the published Lightning layout (keys prefixed ``upsampler.``)."""
    state = {
        _CHECKPOINT_PREFIX + k: v.detach().cpu().clone() for k, v in module.state_dict().items()
    }
    payload = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.0.0",  # nominal; only state_dict is read back
        "state_dict": state,
        "optimizer_states": [],
        "callbacks": {},
    }
    torch.save(payload, Path(path))


def _read_state_dict(path: Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """The checkpoint's ``state_dict`` with the ``upsampler.`` prefix removed."""
    if not path.is_file():
        raise WeightsNotFoundError(
            f"SimFeatUp checkpoint {str(path)!r} does not exist; pass the path of the "
            f"published xclip_jbu_one_million_aid.ckpt (or a file saved in its format)"
        )
    loaded = load_checkpoint(path, trust_checkpoint, LIGHTNING_SAFE_GLOBALS)
    state = loaded.get("state_dict") if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise InputError(
            f"{str(path)!r} is not a PyTorch Lightning checkpoint: expected a dict with a "
            f"'state_dict' entry, got {type(loaded).__name__}"
        )
    return {str(k).removeprefix(_CHECKPOINT_PREFIX): v for k, v in state.items()}


def _check_keys(
    expected: dict[str, Tensor], state: dict[str, Any], path: Path, feat_dim: int
) -> None:
    """Raise one ValueError listing every missing, unexpected and misshapen key."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [
        f"{key} {tuple(getattr(state[key], 'shape', ()))} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and getattr(state[key], "shape", None) != value.shape
    ]
    if missing or unexpected or misshapen:
        raise InputError(
            f"{str(path)!r} is not a SimFeatUp JBUOne checkpoint for feat_dim={feat_dim}: "
            f"missing keys {missing}, unexpected keys {unexpected}, shape mismatches {misshapen}; "
            f"expected the keys of JBUOne().state_dict() prefixed {_CHECKPOINT_PREFIX!r}"
        )
