"""SPECIAL (arXiv 2501.16222): zero-shot spectral classification from CLIP pseudo-labels.

``shared/reference/algorithms.md`` §8: spectrum -> RGB at 655/553/451 nm
(:mod:`.spectral_rgb`), SegEarth-OV at two scales fused with best-versus-second-best confidence
(:mod:`.pseudo_labels`), and a spectral-spatial classifier (:mod:`.classifier`) trained on the
whole spectrum from those labels with the noisy-label procedure of :mod:`.training`. Strictly
zero-shot: no ground truth enters training or model selection (the reference's leakage, §8.6).
"""
