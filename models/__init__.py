"""Pyro generative models of control as inference (installed as ``pgm_control.models``)."""

from .control import OPTIMALITY_FORMS, control_model, enumerated_log_evidence

__all__ = ["control_model", "enumerated_log_evidence", "OPTIMALITY_FORMS"]
