"""Variational families for the control model (installed as ``pgm_control.guides``).

Every guide takes the model's arguments and samples the same sites; ``GUIDES`` maps a family's
name to its constructor so notebooks and tests can loop over all of them.
"""

GUIDES: dict = {}

__all__ = ["GUIDES"]
