"""The twin soft-Q critics of soft actor-critic: ``n`` critics Qᵢ(s, a) evaluated as one module.

:class:`TwinQ` is the MLP family (one batched network); :class:`TwinQuadraticQ` is the
quadratic family that holds the entropy-regularised LQR's soft Q exactly
(:mod:`pgm_control.soft_lqr`). Both map a batch (B, obs_dim), (B, action_dim) to (n, B);
SAC takes the minimum over i for its targets (clipped double Q, Fujimoto et al. 2018).
"""

from __future__ import annotations

import torch
from torch import nn

from .validation import check_positive_int

__all__ = ["TwinQ", "TwinQuadraticQ"]


class TwinQ(nn.Module):
    """``n`` independent MLP critics Qᵢ(s, a), i = 1 … n, evaluated as one batched network.

    Layer k holds weights (n, d_in, d_out) and biases (n, 1, d_out); the input (B, d) is
    broadcast to (n, B, d) and each layer is one ``torch.baddbmm``. Each critic is
    initialised like its own ``nn.Linear`` stack.

    Args:
        observation_dim, action_dim: input sizes (the input is [s, a]).
        hidden: widths of the hidden layers.
        activation: an ``nn.Module`` class for the hidden layers.
        n: number of critics (2 for SAC's clipped double Q).
        dtype: parameter dtype.
    """

    def __init__(
        self, observation_dim, action_dim, *, hidden=(256, 256), activation=nn.ReLU, n=2,
        dtype=torch.float32,
    ):  # fmt: skip
        super().__init__()
        widths = [observation_dim + action_dim, *hidden, 1]
        self.n = check_positive_int("n", n)
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers = [nn.Linear(w_in, w_out, dtype=dtype) for _ in range(n)]
            self.weights.append(nn.Parameter(torch.stack([lin.weight.T for lin in layers])))
            self.biases.append(nn.Parameter(torch.stack([lin.bias[None] for lin in layers])))
        self.activation = activation()

    def forward(self, observations, actions, *, detach: bool = False) -> torch.Tensor:
        """Qᵢ(s, a) for a batch: (B, obs_dim), (B, action_dim) → (n, B).

        ``detach=True`` uses the weights without their gradient (the actor's loss: its
        gradient reaches the actions, never the critics).
        """
        x = torch.cat([observations, actions], dim=-1)
        x = x.expand(self.n, *x.shape)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            if detach:
                w, b = w.detach(), b.detach()
            x = torch.baddbmm(b, x, w)
            if k < last:
                x = self.activation(x)
        return x.squeeze(-1)


class TwinQuadraticQ(nn.Module):
    """``n`` independent quadratic critics Qᵢ(s, a) = xᵀMᵢx + bᵢᵀx + cᵢ, x = [s; a].

    The family that holds the entropy-regularised LQR's soft Q exactly
    (:mod:`pgm_control.soft_lqr`: Q = −xᵀHx + q₀), so that the critic's soft Bellman fixed
    point lies in it; linear in its parameters (Mᵢ is used symmetrised, (Mᵢ + Mᵢᵀ)/2). Same
    call as :class:`TwinQ`. Parameters start at small random values (σ = 0.01), so the
    critics differ.

    Args:
        observation_dim, action_dim: input sizes.
        n: number of critics.
        dtype: parameter dtype.
    """

    def __init__(self, observation_dim, action_dim, *, n=2, dtype=torch.float32):
        super().__init__()
        d = check_positive_int("observation_dim", observation_dim) + check_positive_int(
            "action_dim", action_dim
        )
        self.n = check_positive_int("n", n)
        self.quadratic = nn.Parameter(0.01 * torch.randn(n, d, d, dtype=dtype))
        self.linear = nn.Parameter(0.01 * torch.randn(n, d, dtype=dtype))
        self.constant = nn.Parameter(0.01 * torch.randn(n, dtype=dtype))

    def forward(self, observations, actions, *, detach: bool = False) -> torch.Tensor:
        """Qᵢ(s, a) for a batch: (B, obs_dim), (B, action_dim) → (n, B)."""
        x = torch.cat([observations, actions], dim=-1)
        m, b, c = self.quadratic, self.linear, self.constant
        if detach:
            m, b, c = m.detach(), b.detach(), c.detach()
        m = (m + m.transpose(-1, -2)) / 2
        return torch.einsum("bi,nij,bj->nb", x, m, x) + b @ x.T + c[:, None]
