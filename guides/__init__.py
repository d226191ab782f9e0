"""Variational families for the control model (installed as ``pgm_control.guides``).

A guide is any callable with the model's signature that samples the model's latent sites —
a plain function with ``pyro.param``, a ``PyroModule`` or an ``nn.Module``; the whole contract
(signature, the particles plate, what the exact ELBO, the gap and the Rao–Blackwell estimator
read from a guide, optional capabilities) is written once, in :mod:`pgm_control.guides.contract`.
The library's own families are ordinary guides under that contract; ``GUIDES`` maps a family's
name to its constructor ``Family(mdp, **options)`` so notebooks and tests can loop over them.
"""

from .continuous import CONTINUOUS_GUIDES, GaussianMLPGuide, OpenLoopNormalGuide, SquashedNormal
from .contract import announce_parameters, particles_plate
from .tabular import TABULAR_GUIDES

GUIDES: dict = {**TABULAR_GUIDES, **CONTINUOUS_GUIDES}

__all__ = [
    "GUIDES",
    "TABULAR_GUIDES",
    "CONTINUOUS_GUIDES",
    "GaussianMLPGuide",
    "OpenLoopNormalGuide",
    "SquashedNormal",
    "particles_plate",
    "announce_parameters",
]
