"""Spectrum -> RGB at 655/553/451 nm: hand-computed values at Sentinel-2 band centres."""

from __future__ import annotations

import numpy as np
import pytest

from terrawatch.errors import InputError
from terrawatch.models.special.spectral_rgb import percentile_stretch, spectral_to_rgb

# Sentinel-2 centre wavelengths (nm) as STAC eo:bands gives them: B01..B8A, B11, B12
S2_NM = (443, 490, 560, 665, 705, 740, 783, 842, 865, 1610, 2190)


def _scene() -> np.ndarray:
    """Each band a distinct constant-plus-gradient so a wrong band or weight shows."""
    ramp = np.linspace(0.0, 0.01, 6, dtype=np.float32).reshape(2, 3)
    return np.stack([0.1 * (b + 1) + ramp for b in range(len(S2_NM))])


def test_interpolation_matches_hand_computed_values_at_s2_centres():
    x = _scene()
    rgb = spectral_to_rgb(x, S2_NM)
    # R 655 nm: between B03 (560) and B04 (665): (665-655)/105 of B03, (655-560)/105 of B04
    np.testing.assert_allclose(rgb[0], 10 / 105 * x[2] + 95 / 105 * x[3], rtol=1e-6)
    # G 553 nm: between B02 (490) and B03 (560): 7/70 of B02, 63/70 of B03
    np.testing.assert_allclose(rgb[1], 0.1 * x[1] + 0.9 * x[2], rtol=1e-6)
    # B 451 nm: between B01 (443) and B02 (490): 39/47 of B01, 8/47 of B02
    np.testing.assert_allclose(rgb[2], 39 / 47 * x[0] + 8 / 47 * x[1], rtol=1e-6)


def test_blue_clamps_to_the_first_band_without_b01(caplog):
    x = _scene()[1:]
    with caplog.at_level("INFO"):
        rgb = spectral_to_rgb(x, S2_NM[1:])
    np.testing.assert_allclose(rgb[2], x[0])
    assert "outside the bands" in caplog.text


def test_unsorted_or_mismatched_wavelengths_are_rejected():
    x = _scene()
    with pytest.raises(InputError, match="strictly increasing"):
        spectral_to_rgb(x, S2_NM[::-1])
    with pytest.raises(InputError, match="one wavelength per band"):
        spectral_to_rgb(x, S2_NM[:-1])


def test_stretch_uses_one_pair_of_limits_for_all_channels():
    x = np.stack([np.full((4, 4), 10.0), np.full((4, 4), 30.0)])
    x[0, 0, 0] = 0.0
    out = percentile_stretch(x, 0.0)
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out[0, 1, 1], 10 / 30)  # band ratio kept
