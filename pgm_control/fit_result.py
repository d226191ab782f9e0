"""The plain result object every fitting routine returns (inspectable in Jupyter, picklable)."""

from __future__ import annotations

import dataclasses
import os
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
            Ctrl-C stopped the fit (possibly before any step, then ``elbo`` is empty).

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
        head = f"FitResult(guide={self.guide_name!r}, estimator={self.estimator!r}, "
        if not len(self.elbo):
            why = " (interrupted)" if self.extra.get("interrupted") else ""
            return head + f"no step completed{why}, seconds={self.seconds:.2f})"
        gap = "" if self.gap is None else f", gap={self.gap:.3g}"
        stop = ", interrupted" if self.extra.get("interrupted") else ""
        return (
            head + f"steps={len(self.elbo)}, elbo={self.elbo[-1]:.6g}{gap}, "
            f"seconds={self.seconds:.2f}{stop})"
        )

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
