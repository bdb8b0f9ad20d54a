"""A deliberately plain SegEarth-OV written from the formulas of algorithms.md §1, for parity tests.

One image and one window at a time, explicit loops over heads and taps, full feature width,
no batching and no low-rank tricks: slow but easy to check against the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.tokenizer import SimpleTokenizer

from terrawatch.models.text import TEMPLATES


def text_queries(clip, queries: list[str]) -> torch.Tensor:
    """Per query: normalise each template embedding, mean, normalise."""
    tokenizer = SimpleTokenizer(context_length=clip.context_length)
    rows = []
    for query in queries:
        emb = clip.encode_text(tokenizer([t.format(query) for t in TEMPLATES]))
        emb = emb / emb.norm(dim=-1, keepdim=True)
        mean = emb.mean(0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


def modified_forward(visual, x: torch.Tensor, variant: str, last_n: int):
    """Blocks 1..L-n normal; the last n contribute out_proj(A·v) of ln_1(x), summed."""
    tokens = visual.conv1(x)  # [1, W, h, w]
    gh, gw = tokens.shape[-2:]
    tokens = tokens.flatten(2).transpose(1, 2)
    tokens = torch.cat([visual.class_embedding.view(1, 1, -1), tokens], dim=1)
    tokens = tokens + grid_positional_embedding(visual.positional_embedding, gh, gw)
    tokens = visual.ln_pre(tokens)
    blocks = list(visual.transformer.resblocks)
    total = 0
    for i, block in enumerate(blocks):
        if i >= len(blocks) - last_n:
            total = total + attention_output(block, tokens, variant)
        tokens = block(tokens)
    out = visual.ln_post(total) @ visual.proj
    return out[0, 1:].T.reshape(-1, gh, gw), out[0, 0]


def grid_positional_embedding(pos: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """[CLS] position as is; the side x side patch grid resized bicubically to gh rows, gw columns.

    Row-major tokens: patch token r * gw + c sits in row r (height) and column c (width).
    """
    side = math.isqrt(pos.shape[0] - 1)
    width = pos.shape[1]
    image = pos[1:].T.reshape(1, width, side, side)  # channel images, rows first
    resized = F.interpolate(image, size=(gh, gw), mode="bicubic", align_corners=False)[0]
    patches = torch.stack([resized[:, r, c] for r in range(gh) for c in range(gw)])
    return torch.cat([pos[:1], patches])


def attention_output(block, tokens: torch.Tensor, variant: str) -> torch.Tensor:
    attn = block.attn
    y = block.ln_1(tokens)[0]  # [L, W]
    length, width = y.shape
    heads = attn.num_heads
    dh = width // heads
    qkv = y @ attn.in_proj_weight.T + attn.in_proj_bias
    q, k, v = qkv[:, :width], qkv[:, width : 2 * width], qkv[:, 2 * width :]
    outs = []
    for h in range(heads):
        qh, kh, vh = (t[:, h * dh : (h + 1) * dh] for t in (q, k, v))

        def sm(a, b):
            return torch.softmax(dh**-0.5 * a @ b.T, dim=-1)

        if variant == "segearth":
            a = sm(qh, qh) + sm(kh, kh) + sm(vh, vh)
        elif variant == "sclip":
            a = sm(qh, qh) + sm(kh, kh)
        elif variant == "clearclip":
            a = sm(qh, qh)
        elif variant == "maskclip":
            a = torch.eye(length)
        else:
            a = sm(qh, kh)
        outs.append(a @ vh)
    return attn.out_proj(torch.cat(outs, dim=1))[None]


def jbu_step(up, source: torch.Tensor, guidance_full: torch.Tensor) -> torch.Tensor:
    """One x2 joint bilateral upsampling step, tap by tap. source [C, h, w]."""
    _, h, w = source.shape
    g = F.adaptive_avg_pool2d(guidance_full[None], (2 * h, 2 * w))  # [1, 3, H, W]
    H, W = 2 * h, 2 * w
    r = up.radius if hasattr(up, "radius") else 5
    d = 2 * r + 1
    proj = up.range_proj(g)
    proj_pad = F.pad(proj, [r] * 4, mode="reflect")
    temp = up.range_temp.exp().clamp(1e-4, 1e4)
    logits = torch.stack(
        [
            (proj_pad[:, :, i : i + H, j : j + W] * proj).sum(1)[0] * temp
            for i in range(d)
            for j in range(d)
        ]
    )  # [T, H, W]
    rng = torch.softmax(logits, dim=0)
    lin = torch.linspace(-1, 1, d)
    spatial = torch.exp(-(lin[:, None] ** 2 + lin[None, :] ** 2) / (2 * up.sigma_spatial**2))
    k = rng * spatial.reshape(-1, 1, 1)
    k = k / k.sum(0, keepdim=True).clamp(min=1e-7)
    k = k + 0.1 * up.fixup_proj(torch.cat([k[None], g], dim=1))[0]
    hr = F.interpolate(source[None], size=(H, W), mode="bicubic", align_corners=False)
    hr_pad = F.pad(hr, [r] * 4, mode="reflect")[0]
    out = torch.zeros(source.shape[0], H, W)
    for i in range(d):
        for j in range(d):
            out += hr_pad[:, i : i + H, j : j + W] * k[i * d + j]
    return out


def jbu_one(upsampler, feats: torch.Tensor, guidance: torch.Tensor, steps: int = 4) -> torch.Tensor:
    x = feats
    for _ in range(steps):
        x = jbu_step(upsampler.up, x, guidance)
    conv = upsampler.fixup_proj[1]
    return x + 0.1 * (
        torch.einsum("ed,dhw->ehw", conv.weight[:, :, 0, 0], x) + conv.bias[:, None, None]
    )


@torch.no_grad()
def reference_scores(
    clip,
    upsampler,
    image: torch.Tensor,
    classes: list[list[str]],
    *,
    variant="segearth",
    last_n=1,
    gba=0.3,
    resize=448,
    window=224,
    stride=112,
    scale=50.0,
) -> torch.Tensor:
    """Merged class probabilities [C, H, W] of one RGB image [3, H, W] in 0..1."""
    queries = [q for syn in classes for q in syn]
    owner = [c for c, syn in enumerate(classes) for _ in syn]
    text = text_queries(clip, queries)
    H0, W0 = image.shape[-2:]
    x = image[None]
    if resize:
        f = resize / max(H0, W0)
        x = F.interpolate(
            x, size=(round(H0 * f), round(W0 * f)), mode="bilinear", align_corners=False
        )
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    x = ((x - mean) / std)[0]
    _, H, W = x.shape
    canvas = torch.zeros(len(queries), H, W)
    count = torch.zeros(1, H, W)
    for hi in range(max(H - window + stride - 1, 0) // stride + 1):
        for wi in range(max(W - window + stride - 1, 0) // stride + 1):
            y2, x2 = min(hi * stride + window, H), min(wi * stride + window, W)
            y1, x1 = max(y2 - window, 0), max(x2 - window, 0)
            crop = x[:, y1:y2, x1:x2]
            feats, cls = modified_forward(clip.visual, crop[None], variant, last_n)
            if upsampler is not None:
                steps = int(math.log2(clip.visual.conv1.kernel_size[0]))
                hr = jbu_one(upsampler, feats, crop, steps)
                logits = torch.einsum("dhw,qd->qhw", hr / hr.norm(dim=0, keepdim=True), text)
            else:
                lo = torch.einsum("dhw,qd->qhw", feats / feats.norm(dim=0, keepdim=True), text)
                logits = F.interpolate(
                    lo[None], size=crop.shape[-2:], mode="bilinear", align_corners=False
                )[0]
            logits = logits - gba * ((cls / cls.norm()) @ text.T)[:, None, None]
            canvas[:, y1:y2, x1:x2] += logits
            count[:, y1:y2, x1:x2] += 1
    logits = F.interpolate(
        (canvas / count)[None], size=(H0, W0), mode="bilinear", align_corners=False
    )[0]
    probs = torch.softmax(scale * logits, dim=0)
    return torch.stack(
        [
            probs[[q for q, o in enumerate(owner) if o == c]].max(0).values
            for c in range(len(classes))
        ]
    )
