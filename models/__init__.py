"""Pyro generative models of control as inference (installed as ``pgm_control.models``)."""

from .continuous import action_prior_distribution, continuous_control_model
from .control import OPTIMALITY_FORMS, control_model, enumerated_log_evidence

__all__ = [
    "control_model",
    "enumerated_log_evidence",
    "OPTIMALITY_FORMS",
    "continuous_control_model",
    "action_prior_distribution",
]
