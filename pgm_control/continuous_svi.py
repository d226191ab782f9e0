"""Kept for old imports: the one training loop for continuous MDPs is :func:`pgm_control.fit`.

``fit_continuous`` is a thin alias of :func:`pgm_control.svi.fit` with the continuous defaults
in its signature (1000 steps, 64 particles, Adam at lr 1e-3).
"""

from .svi import CONTINUOUS_ESTIMATORS, fit_continuous

__all__ = ["fit_continuous", "CONTINUOUS_ESTIMATORS"]
