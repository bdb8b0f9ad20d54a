"""The pluggable spectral-spatial classifier SPECIAL trains: spectrum tile in, class logits out.

Contract (the reference's MambaHSI, §8.4): ``[N, bands, H, W] -> [N, classes, H, W]``, fully
convolutional, any H and W.

``fcn`` (the CPU default) deviates from the reference on purpose: MambaHSI's selective scan runs
one Mamba sequence over every pixel of a tile and has no CPU kernel. :class:`SpectralSpatialFCN`
keeps MambaHSI's layout (1x1 stem to 16 channels, three spectral-spatial blocks at 1, 1/2 and
1/4 resolution mixed by a learnable softmax pair, x4 upsampling, a 3x3 skip from the raw input,
the same head) but each block's spatial branch is a depthwise 3x3 convolution pair and its
spectral branch a grouped 1x1 token mixer instead of the two Mamba scans. ``mambahsi`` is the
reference network, available where the ``mamba_ssm`` CUDA kernels are installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terrawatch.errors import InputError

HIDDEN = 16
GROUPS = 4


def _norm_act(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(GROUPS, channels), nn.SiLU())


class _BranchMix(nn.Module):
    """``x + w0 spatial(x) + w1 spectral(x)``, ``w = softmax`` of a learnable pair (0.5, 0.5)."""

    def __init__(self, spatial: nn.Module, spectral: nn.Module):
        super().__init__()
        self.spatial = spatial
        self.spectral = spectral
        self.weights = nn.Parameter(torch.full((2,), 0.5))

    def forward(self, x: Tensor) -> Tensor:
        w = torch.softmax(self.weights, dim=0)
        return x + w[0] * self.spatial(x) + w[1] * self.spectral(x)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _conv_block(hidden: int) -> nn.Module:
    """The CPU stand-in of one BothMamba block (see the module docstring)."""
    spatial = _Residual(
        nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            _norm_act(hidden),
        )
    )
    tokens = hidden // 4  # MambaHSI splits each pixel's feature into 4 tokens of hidden/4
    spectral = _Residual(
        nn.Sequential(
            nn.Conv2d(hidden, hidden, 1, groups=tokens),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1),
            _norm_act(hidden),
        )
    )
    return _BranchMix(spatial, spectral)


class SpectralSpatialFCN(nn.Module):
    """MambaHSI's encoder-decoder with convolutional blocks (the module docstring says why)."""

    def __init__(
        self,
        bands: int,
        classes: int,
        hidden: int = HIDDEN,
        block: Callable[[int], nn.Module] = _conv_block,
    ):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(bands, hidden, 1), _norm_act(hidden))
        self.encoder = nn.Sequential(
            block(hidden), nn.AvgPool2d(2), block(hidden), nn.AvgPool2d(2), block(hidden)
        )
        self.decoder = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), _norm_act(hidden))
        self.skip = nn.Conv2d(bands, hidden, 3, padding=1)
        self.head = nn.Sequential(
            nn.Conv2d(2 * hidden, hidden, 1), _norm_act(hidden), nn.Conv2d(hidden, classes, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        # Pad to a multiple of 4 (two 2x poolings) by reflection, and crop after; the reference
        # nearest-resizes instead, which shifts every pixel by a fraction of its size.
        pad_h, pad_w = (-height) % 4, (-width) % 4
        if pad_h or pad_w:
            mode = "reflect" if height > pad_h and width > pad_w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        features = self.encoder(self.stem(x))
        features = F.interpolate(features, scale_factor=4, mode="bilinear", align_corners=True)
        features = torch.cat([self.decoder(features), self.skip(x)], dim=1)
        return self.head(features)[..., :height, :width]


class _SpatialMamba(nn.Module):
    """All pixels of the tile, row-major, as one Mamba sequence; GN+SiLU; ``+ x``."""

    def __init__(self, mamba_cls: type, hidden: int):
        super().__init__()
        self.mamba = mamba_cls(d_model=hidden, d_state=16, d_conv=4, expand=2)
        self.norm = _norm_act(hidden)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        seq = self.mamba(x.flatten(2).transpose(1, 2))
        return x + self.norm(seq.transpose(1, 2).reshape(n, c, h, w))


class _SpectralMamba(nn.Module):
    """Each pixel's feature as ``token_num`` tokens through Mamba; GN+SiLU; ``+ x``."""

    def __init__(self, mamba_cls: type, hidden: int, token_num: int = 4):
        super().__init__()
        self.token_num = token_num
        self.mamba = mamba_cls(d_model=hidden // token_num, d_state=16, d_conv=4, expand=2)
        self.norm = _norm_act(hidden)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(n * h * w, self.token_num, c // self.token_num)
        out = self.mamba(tokens).reshape(n, h, w, c).permute(0, 3, 1, 2)
        return x + self.norm(out)


def _mamba_block_factory() -> Callable[[int], nn.Module]:
    try:
        from mamba_ssm import Mamba
    except ImportError as err:
        raise InputError(
            f"classifier 'mambahsi' needs the mamba_ssm CUDA kernels ({err}); install "
            "mamba-ssm on a CUDA machine or use the default classifier 'fcn'"
        ) from err
    return lambda hidden: _BranchMix(_SpatialMamba(Mamba, hidden), _SpectralMamba(Mamba, hidden))


CLASSIFIERS = ("fcn", "mambahsi")


def build_classifier(name: str, bands: int, classes: int, hidden: int = HIDDEN) -> nn.Module:
    """The classifier called ``name`` (``fcn``: CPU default; ``mambahsi``: CUDA + mamba_ssm)."""
    if hidden % GROUPS or hidden % 4:
        raise InputError(f"hidden width must be a multiple of {GROUPS}, got {hidden}")
    if name == "fcn":
        return SpectralSpatialFCN(bands, classes, hidden)
    if name == "mambahsi":
        return SpectralSpatialFCN(bands, classes, hidden, block=_mamba_block_factory())
    raise InputError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")


def parameter_count(module: nn.Module) -> int:
    """Trainable parameters (for the provenance)."""
    return sum(math.prod(p.shape) for p in module.parameters() if p.requires_grad)
