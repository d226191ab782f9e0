"""The plain result object every fitting routine returns (inspectable in Jupyter)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

__all__ = ["FitResult"]


@dataclasses.dataclass
class FitResult:
    """What :func:`pgm_control.fit` returns.

    Attributes:
        elbo: ELBO estimate per step (numpy, nats).
        guide: the trained guide (callable with the model's signature).
        params: a snapshot of the trained parameters {name: tensor}.
        policy: (T, S, A) action probabilities for tabular guides, else None.
        seconds: wall-clock time of the optimisation.
        gap: for tabular MDPs, the exact optimum (``optimal_elbo``, or ``log_evidence`` for
            the "full_posterior" family) minus the final exact ELBO of the guide; else None.
        exact_elbo: the final exact ELBO of the guide where it is computable, else None.
        optimum: the exact optimum the gap is measured against, else None.
        guide_name, estimator: what was fitted, and how.
        extra: anything else a routine wants to report (e.g. gradient variance).
    """

    elbo: np.ndarray
    guide: Any
    params: dict[str, torch.Tensor]
    seconds: float
    guide_name: str
    estimator: str
    policy: torch.Tensor | None = None
    gap: float | None = None
    exact_elbo: float | None = None
    optimum: float | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        gap = "" if self.gap is None else f", gap={self.gap:.3g}"
        last = self.elbo[-1] if len(self.elbo) else float("nan")
        return (
            f"FitResult(guide={self.guide_name!r}, estimator={self.estimator!r}, "
            f"steps={len(self.elbo)}, elbo={last:.6g}{gap}, seconds={self.seconds:.2f})"
        )
