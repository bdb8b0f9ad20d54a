"""SimFeatUp JBUOne: exactness against the published formulas, linearity, checkpoint I/O."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import terrawatch.models.simfeatup as simfeatup
from terrawatch.models.simfeatup import JBUOne, load_simfeatup, save_simfeatup_checkpoint

RADIUS = 5
TAPS = (2 * RADIUS + 1) ** 2


def reference_step(up, source, guidance):
    """One published JBU step from the formulas (unfold + einsum), eval mode. Returns (out, k)."""
    batch, channels, h, w = source.shape
    height, width, d = 2 * h, 2 * w, 2 * RADIUS + 1
    g = F.adaptive_avg_pool2d(guidance, (height, width))
    keys = up.range_proj(g)
    neighbours = F.unfold(F.pad(keys, [RADIUS] * 4, mode="reflect"), d)
    neighbours = neighbours.view(batch, keys.shape[1], TAPS, height, width)
    temp = up.range_temp.exp().clamp(1e-4, 1e4)
    logits = temp * torch.einsum("bkthw,bkhw->bthw", neighbours, keys)
    lin = torch.linspace(-1, 1, d)
    spatial = torch.exp(-(lin[:, None] ** 2 + lin[None, :] ** 2) / (2 * up.sigma_spatial**2))
    k = torch.softmax(logits, dim=1) * spatial.reshape(1, TAPS, 1, 1)
    k = k / k.sum(1, keepdim=True).clamp(min=1e-7)
    k = k + 0.1 * up.fixup_proj(torch.cat([k, g], dim=1))
    hr = F.interpolate(source, size=(height, width), mode="bicubic", align_corners=False)
    patches = F.unfold(F.pad(hr, [RADIUS] * 4, mode="reflect"), d)
    patches = patches.view(batch, channels, TAPS, height, width)
    return torch.einsum("bcthw,bthw->bchw", patches, k), k


def reference_jbu_one(module, source, guidance):
    x = source
    for _ in range(module.steps):
        x, _ = reference_step(module.up, x, guidance)
    return module.fixup_proj(x) * 0.1 + x


def random_module(feat_dim=8, steps=4, seed=0, temp=0.7, sigma=0.6):
    """A JBUOne whose every parameter is moved away from its initial value (eval mode)."""
    torch.manual_seed(seed)
    module = JBUOne(feat_dim=feat_dim, steps=steps).eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        module.up.range_temp.fill_(temp)
        module.up.sigma_spatial.fill_(sigma)
    return module


def inputs(batch, channels, source_hw, guidance_hw, seed=1):
    generator = torch.Generator().manual_seed(seed)
    source = torch.randn(batch, channels, *source_hw, generator=generator)
    guidance = torch.randn(batch, 3, *guidance_hw, generator=generator)
    return source, guidance


def assert_matches(actual, expected, rtol=1e-5):
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)


def test_forward_matches_reference_square():
    module = random_module(feat_dim=8, steps=4)
    source, guidance = inputs(2, 8, (4, 4), (64, 64))
    with torch.no_grad():
        expected = reference_jbu_one(module, source, guidance)
        actual = module(source, guidance)
    assert actual.shape == (2, 8, 64, 64) and actual.dtype == torch.float32
    assert_matches(actual, expected)


def test_forward_matches_reference_non_square_with_other_guidance_size():
    module = random_module(feat_dim=6, steps=3, seed=2)
    source, guidance = inputs(3, 6, (5, 3), (50, 34))
    with torch.no_grad():
        expected = reference_jbu_one(module, source, guidance)
        actual = module(source, guidance)
    assert actual.shape == (3, 6, 40, 24)
    assert_matches(actual, expected)


def test_forward_matches_reference_when_split_into_many_strips(monkeypatch):
    monkeypatch.setattr(simfeatup, "_STRIP_PIXELS", 1)  # one 8-row strip at a time
    module = random_module(feat_dim=4, steps=2, seed=3)
    source, guidance = inputs(2, 4, (14, 10), (56, 40))
    with torch.no_grad():
        expected = reference_jbu_one(module, source, guidance)
        actual = module(source, guidance)
    assert_matches(actual, expected)


def test_narrow_spatial_kernel_uses_the_clamped_formula_exactly():
    module = random_module(feat_dim=4, steps=1, seed=4, temp=4.0, sigma=0.1)
    source, guidance = inputs(1, 4, (6, 6), (12, 12))
    with torch.no_grad():
        expected = reference_jbu_one(module, source, guidance)
        actual = module(source, guidance)
    assert_matches(actual, expected)


def test_step_kernels_match_reference_kernels():
    module = random_module(feat_dim=4, steps=2, seed=5)
    source, guidance = inputs(2, 4, (3, 5), (24, 40))
    with torch.no_grad():
        kernels = module.step_kernels(guidance, (3, 5))
        hidden, first = reference_step(module.up, source, guidance)
        _, second = reference_step(module.up, hidden, guidance)
    assert [tuple(k.shape) for k in kernels] == [(2, TAPS, 6, 10), (2, TAPS, 12, 20)]
    assert_matches(kernels[0], first)
    assert_matches(kernels[1], second)


def test_precomputed_kernels_give_the_same_upsampling():
    module = random_module(feat_dim=4, steps=3, seed=6)
    source, guidance = inputs(2, 4, (4, 6), (32, 48))
    with torch.no_grad():
        kernels = module.step_kernels(guidance, (4, 6))
        assert_matches(module.upsample_linear(source, guidance, kernels),
                       module.upsample_linear(source, guidance))  # fmt: skip


def test_kernels_for_another_source_size_are_refused():
    module = random_module(feat_dim=4, steps=2, seed=16)
    source, guidance = inputs(1, 4, (4, 4), (16, 16))
    kernels = module.step_kernels(guidance, (4, 6))
    with pytest.raises(ValueError, match="kernels must come from step_kernels"):
        module.upsample_linear(source, guidance, kernels)


def test_upsample_linear_is_linear():
    module = random_module(feat_dim=8, steps=2, seed=7)
    x, guidance = inputs(2, 5, (6, 6), (24, 24), seed=8)
    y, _ = inputs(2, 5, (6, 6), (24, 24), seed=9)
    with torch.no_grad():
        combined = module.upsample_linear(2.5 * x - 0.75 * y, guidance)
        separate = 2.5 * module.upsample_linear(x, guidance) - 0.75 * module.upsample_linear(
            y, guidance
        )
    assert_matches(combined, separate)


def test_upsample_linear_treats_every_channel_alike_for_any_channel_count():
    module = random_module(feat_dim=8, steps=2, seed=10)
    source, guidance = inputs(2, 13, (5, 7), (20, 28))
    with torch.no_grad():
        together = module.upsample_linear(source, guidance)
        alone = torch.cat([module.upsample_linear(source[:, c : c + 1], guidance)
                           for c in range(13)], dim=1)  # fmt: skip
    assert together.shape == (2, 13, 20, 28)
    assert_matches(together, alone)


def test_gradients_match_reference():
    module = random_module(feat_dim=3, steps=1, seed=11)
    source, guidance = inputs(1, 3, (4, 4), (8, 8))
    grads = []
    for run in (lambda s: reference_jbu_one(module, s, guidance), lambda s: module(s, guidance)):
        leaf = source.clone().requires_grad_(True)
        module.zero_grad()
        (run(leaf) ** 2).sum().backward()
        grads.append((leaf.grad, module.up.sigma_spatial.grad.clone()))
    assert_matches(grads[1][0], grads[0][0], rtol=1e-4)
    assert_matches(grads[1][1], grads[0][1], rtol=1e-4)


def test_training_mode_applies_the_hidden_dropout_of_the_kernel_fixup():
    module = random_module(feat_dim=4, steps=2, seed=15).train()
    module.up.range_proj[2].p = module.fixup_proj[0].p = 0.0
    module.up.fixup_proj[2].p = 1.0  # drops every hidden channel: deterministic
    source, guidance = inputs(2, 4, (4, 4), (16, 16))
    with torch.no_grad():
        assert_matches(module(source, guidance), reference_jbu_one(module, source, guidance))


def test_bfloat16_source_keeps_its_dtype_and_stays_close():
    module = random_module(feat_dim=4, steps=2, seed=12)
    source, guidance = inputs(1, 4, (4, 4), (16, 16))
    with torch.no_grad():
        exact = module.upsample_linear(source, guidance)
        low = module.upsample_linear(source.bfloat16(), guidance)
    assert low.dtype == torch.bfloat16
    assert_matches(low.float(), exact, rtol=3e-2)


def test_parameter_count_for_512_channels():
    assert sum(p.numel() for p in JBUOne(feat_dim=512).parameters()) == 293_729


def test_state_dict_keys_are_the_published_ones():
    assert sorted(JBUOne(feat_dim=4).state_dict()) == sorted(
        ["up.range_temp", "up.sigma_spatial", "fixup_proj.1.weight", "fixup_proj.1.bias"]
        + [f"up.{n}.{i}.{p}" for n in ("range_proj", "fixup_proj") for i in (0, 3)
           for p in ("weight", "bias")]
    )  # fmt: skip


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    module = random_module(feat_dim=6, steps=2, seed=13)
    path = tmp_path / "jbu.ckpt"
    save_simfeatup_checkpoint(module, path)
    loaded = load_simfeatup(path, steps=2)
    source, guidance = inputs(1, 6, (4, 4), (16, 16))
    with torch.no_grad():
        assert torch.equal(loaded(source, guidance), module(source, guidance))
    assert not loaded.training
    assert loaded.fixup_proj[1].weight.shape == (6, 6, 1, 1)


def test_saved_checkpoint_has_the_lightning_layout(tmp_path):
    path = tmp_path / "jbu.ckpt"
    save_simfeatup_checkpoint(JBUOne(feat_dim=4), path)
    payload = torch.load(path, weights_only=True)
    assert {"epoch", "global_step", "pytorch-lightning_version", "state_dict"} <= set(payload)
    assert all(key.startswith("upsampler.") for key in payload["state_dict"])


def _write_state(path, state, **extra):
    torch.save({"state_dict": {"upsampler." + k: v for k, v in state.items()}, **extra}, path)


def test_checkpoint_missing_a_key_names_it(tmp_path):
    state = JBUOne(feat_dim=4).state_dict()
    del state["up.range_temp"]
    _write_state(tmp_path / "bad.ckpt", state)
    with pytest.raises(ValueError, match=r"missing keys \['up\.range_temp'\]"):
        load_simfeatup(tmp_path / "bad.ckpt")


def test_checkpoint_with_an_extra_key_names_it(tmp_path):
    state = JBUOne(feat_dim=4).state_dict()
    state["downsampler.weight"] = torch.zeros(1)
    _write_state(tmp_path / "bad.ckpt", state)
    with pytest.raises(ValueError, match=r"unexpected keys \['downsampler\.weight'\]"):
        load_simfeatup(tmp_path / "bad.ckpt")


def test_checkpoint_for_other_width_reports_the_shape_mismatch(tmp_path):
    _write_state(tmp_path / "wide.ckpt", JBUOne(feat_dim=8).state_dict())
    with pytest.raises(ValueError, match=r"fixup_proj\.1\.weight \(8, 8, 1, 1\) != \(4, 4, 1, 1\)"):
        load_simfeatup(tmp_path / "wide.ckpt", feat_dim=4)


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "xclip_jbu_one_million_aid.ckpt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_simfeatup(path)


def test_file_without_state_dict_is_refused(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.ckpt")
    with pytest.raises(ValueError, match="not a PyTorch Lightning checkpoint"):
        load_simfeatup(tmp_path / "list.ckpt")


def test_guidance_with_wrong_channels_is_refused():
    source, guidance = inputs(1, 4, (4, 4), (16, 16))
    with pytest.raises(ValueError, match=r"guidance must be \[B, 3, H, W\]"):
        JBUOne(feat_dim=4).upsample_linear(source, guidance[:, :2])


def test_too_small_source_is_refused():
    source, guidance = inputs(1, 4, (2, 4), (16, 16))
    with pytest.raises(ValueError, match=r"source height and width must be >= 3"):
        JBUOne(feat_dim=4).upsample_linear(source, guidance)


def test_zero_steps_are_refused():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        JBUOne(feat_dim=4, steps=0)
