"""Variational families for the control model (installed as ``pgm_control.guides``).

Every guide takes the model's arguments and samples the same sites; ``GUIDES`` maps a family's
name to its constructor so notebooks and tests can loop over all of them.
"""

from .continuous import CONTINUOUS_GUIDES, GaussianMLPGuide, OpenLoopNormalGuide, SquashedNormal
from .tabular import TABULAR_GUIDES

GUIDES: dict = {**TABULAR_GUIDES, **CONTINUOUS_GUIDES}

__all__ = [
    "GUIDES",
    "TABULAR_GUIDES",
    "CONTINUOUS_GUIDES",
    "GaussianMLPGuide",
    "OpenLoopNormalGuide",
    "SquashedNormal",
]
