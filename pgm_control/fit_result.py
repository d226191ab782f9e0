"""The plain result object every fitting routine returns (inspectable in Jupyter, picklable)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import torch

__all__ = ["FitResult"]

# estimators whose per-step value is the exact ELBO itself (not a Monte-Carlo estimate)
_EXACT_ESTIMATORS = ("exact", "enum")


@dataclasses.dataclass
class FitResult:
    """What :func:`pgm_control.fit` returns.

    Attributes:
        elbo: ELBO estimate per step (numpy, nats).
        guide: the trained guide (callable with the model's signature).
        params: a snapshot of the trained parameters {name: tensor}: for a module guide its
            ``state_dict()``, so ``Family(mdp).load_state_dict(res.params)`` rebuilds it; for a
            plain function guide the constrained values of its ``pyro.param`` sites.
        policy: (T, S, A) action probabilities for tabular guides, else None.
        seconds: wall-clock time of the optimisation.
        gap: for tabular MDPs, the exact optimum (``optimal_elbo``, or ``log_evidence`` for
            the "full_posterior" family) minus the final exact ELBO of the guide; else None.
        exact_elbo: the final exact ELBO of the guide where it is computable, else None.
        optimum: the exact optimum the gap is measured against, else None.
        guide_name, estimator: what was fitted, and how.
        extra: anything else a routine wants to report; ``extra["interrupted"]`` is True when
            Ctrl-C stopped the fit (possibly before any step, then ``elbo`` is empty);
            ``extra["optimum_name"]`` names the yardstick ("optimal_elbo" or
            "log_evidence") and ``extra["limit"]`` says why a family cannot reach it (None
            when it can), e.g. the stationary ``"tabular"`` family on a finite horizon.

    A result pickles with its guide (``pickle``, ``torch.save``/``torch.load(...,
    weights_only=False)``); :meth:`save` and :meth:`load` do exactly that.
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
        """What was fitted and how well, at a glance: the exact ELBO and the gap where they
        exist; a Monte-Carlo estimate only as a labelled estimate (it is noisy and can sit
        above the bound); for a family that cannot reach its yardstick, the reason."""
        head = f"FitResult(guide={self.guide_name!r}, estimator={self.estimator!r}, "
        if not len(self.elbo):
            why = " (interrupted)" if self.extra.get("interrupted") else ""
            return head + f"no step completed{why}, seconds={self.seconds:.2f})"
        parts = [f"steps={len(self.elbo)}"]
        if self.exact_elbo is not None:
            parts.append(f"exact_elbo={self.exact_elbo:.6g}")
        if self.gap is not None:
            yardstick = self.extra.get("optimum_name", "optimum")
            gap = f"gap={self.gap:.3g} to {yardstick}={self.optimum:.6g}"
            if self.extra.get("limit"):
                gap += f", which this family cannot reach ({self.extra['limit']})"
            parts.append(gap)
        if self.exact_elbo is None or self.estimator not in _EXACT_ESTIMATORS:
            parts.append(f"last_estimate={self.elbo[-1]:.6g} (Monte Carlo, noisy)")
        parts.append(f"seconds={self.seconds:.2f}")
        if self.extra.get("interrupted"):
            parts.append("interrupted")
        return head + ", ".join(parts) + ")"

    def save(self, path: str | os.PathLike) -> None:
        """Write this result, guide included, to ``path`` (``torch.save`` of the object).

        Reload it with :meth:`FitResult.load`; the guide's class must be importable there.
        """
        torch.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location=None) -> FitResult:
        """Read a result written by :meth:`save` (``torch.load(path, weights_only=False)``).

        Only load files you trust: unpickling runs code. ``map_location`` moves the tensors
        (e.g. "cpu" for a result saved on a GPU).
        """
        obj = torch.load(path, map_location=map_location, weights_only=False)
        if not isinstance(obj, cls):
            raise TypeError(f"{os.fspath(path)!r} holds a {type(obj).__name__}, not a FitResult")
        return obj
