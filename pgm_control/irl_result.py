"""The plain result object every inverse-RL routine returns (inspectable, picklable)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import torch

from .mdp import TabularMDP, _check_mdp

__all__ = ["IRLResult"]


@dataclasses.dataclass
class IRLResult:
    """What :func:`pgm_control.maxent_irl` (and the sample-based IRL routines) return.

    Attributes:
        reward: the learned reward table r_ψ, detached, indexed as r[s, a, s'] (S, A, S) or
            r[s, a] (S, A); a state-only reward is expanded to (S, A).
        params: the learned parameters {name: tensor}: ``{"weights": ψ}`` (F,) for a linear
            reward, a module's ``state_dict()`` for a neural one.
        policy: the soft-optimal policy πₜ(a|s) under r_ψ, indexed [t, s, a], (T, S, A).
        history: per-step curves as numpy arrays; ``log_likelihood`` (L(ψ) per step, nats per
            demonstration) and ``feature_residual`` (‖E_expert[f] − E_ψ[f]‖_∞ per step) for
            MaxEnt IRL, with ``seconds`` (wall-clock since the start at each entry); other
            routines add their own (e.g. an ESS).
        seconds: wall-clock time of the optimisation.
        algorithm: which routine produced it ("maxent_irl", ...).
        temperature: α of p(O=1|s,a,s') = exp(r_ψ/α) the reward was learned at.
        backup: the soft backup the policy uses ("optimistic" or "expected"), or None.
        reward_model: the trained torch module of a neural reward, else None.
        extra: anything else; ``extra["interrupted"]`` is True when Ctrl-C stopped the run.

    A result pickles (``pickle``, ``torch.save``); :meth:`save` / :meth:`load` do exactly that.
    """

    reward: torch.Tensor
    params: dict[str, torch.Tensor]
    policy: torch.Tensor
    history: dict[str, np.ndarray]
    seconds: float
    algorithm: str
    temperature: float
    backup: str | None = None
    reward_model: Any = None
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def log_likelihood(self) -> np.ndarray:
        """L(ψ) per step (empty if the routine does not compute it)."""
        return self.history.get("log_likelihood", np.zeros(0))

    @property
    def feature_residual(self) -> np.ndarray:
        """‖E_expert[f] − E_ψ[f]‖_∞ per step (empty if the routine does not compute it)."""
        return self.history.get("feature_residual", np.zeros(0))

    @property
    def steps(self) -> int:
        """Completed optimisation steps (the length of the longest history curve)."""
        return max((len(v) for v in self.history.values()), default=0)

    def mdp_with_reward(self, mdp: TabularMDP) -> TabularMDP:
        """``mdp`` (dynamics, p0, horizon) with the learned reward in place of its own."""
        return _check_mdp(mdp).replace(reward=self.reward.to(mdp.device, mdp.float_dtype))

    def __repr__(self) -> str:
        head = f"IRLResult(algorithm={self.algorithm!r}, α={self.temperature:g}, "
        head += f"reward={tuple(self.reward.shape)}, "
        stop = ", interrupted" if self.extra.get("interrupted") else ""
        if not self.steps:
            return head + f"no step completed{stop}, seconds={self.seconds:.2f})"
        parts = [f"steps={self.steps}"]
        for key, label in (("log_likelihood", "log_likelihood"), ("feature_residual", "residual")):
            curve = self.history.get(key)
            if curve is not None and len(curve):
                parts.append(f"{label}={curve[-1]:.6g}")
        return head + ", ".join(parts) + f", seconds={self.seconds:.2f}{stop})"

    def save(self, path: str | os.PathLike) -> None:
        """Write this result (reward model included) to ``path`` (``torch.save`` of the object).

        Reload it with :meth:`IRLResult.load`; a reward module's class must be importable there.
        """
        torch.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location=None) -> IRLResult:
        """Read a result written by :meth:`save` (``torch.load(path, weights_only=False)``).

        Only load files you trust: unpickling runs code. ``map_location`` moves the tensors.
        """
        obj = torch.load(path, map_location=map_location, weights_only=False)
        if not isinstance(obj, cls):
            raise TypeError(f"{os.fspath(path)!r} holds a {type(obj).__name__}, not an IRLResult")
        return obj
