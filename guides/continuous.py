r"""Continuous guide families: tanh-squashed Gaussian policies that share the true dynamics.

A guide for :func:`~pgm_control.models.continuous_control_model` samples the same sites as the
model: ``s_0`` from the true p0 (so log p0 − log q0 cancels, as in the lecture's structured
derivation), the actions from the policy q(aₜ|sₜ), and each next state from the true dynamics
(deterministic dynamics are not sites; a stochastic model's ``s_{t+1}`` is sampled from the
same distribution as in the model). The ELBO is then E_q[Σₜ r/α + log p(aₜ) − log q(aₜ|sₜ)].

The model's action prior is uniform on the box [low, high], so a guide must put its mass
inside the box. Both families draw u ~ Normal(μ, σ) and squash it:

    a = c + h·tanh(u),   c = (high + low)/2,  h = (high − low)/2,
    log q(a) = log N(u; μ, σ) − log(1 − tanh²u) − log h        (per coordinate)

(the change of variables of SAC, Haarnoja et al. 2018, App. C). Families:

* ``"gaussian_mlp"`` — closed loop: an MLP maps the state's features to (μ, log σ);
  amortised over states (lecture 002, "amortized variational inference").
* ``"open_loop_normal"`` — a Normal per action site, μₜ and σₜ free parameters: a plan, not
  a policy; Pyro's ``AutoNormal(model)`` learns the same family through its own bijection.

Both forms of the model are served by one rollout: with ``vectorized=False`` each action is
its own site ``a_t`` (the teaching form, readable trace), with ``vectorized=True`` the whole
action sequence is one ``Delta`` site ``actions`` carrying Σₜ log q(aₜ|sₜ) as its
log-density: the same ELBO and gradient on the same noise from one action site and one factor
per trace instead of T of each (each Pyro site costs ~0.1 ms). Measured on the pendulum at
T = 40 with 64 particles (loss + gradient): 1.3–2.2× faster; the rollout's own torch ops, not
Pyro, dominate what is left. ``reparameterized=False`` makes the guide's samples
non-differentiable so that ``Trace_ELBO`` uses the score-function estimator instead.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.poutine.runtime import get_plates
from torch import nn
from torch.distributions.utils import broadcast_all

from pgm_control.continuous import ContinuousMDP, _check_continuous

from .contract import announce_parameters, particles_plate

__all__ = [
    "SquashedNormal",
    "squashed_normal_log_prob",
    "SquashedGaussianGuide",
    "GaussianMLPGuide",
    "OpenLoopNormalGuide",
    "gaussian_mlp",
    "open_loop_normal",
    "CONTINUOUS_GUIDES",
]

_LOG2 = math.log(2.0)


def _raw_state(s: torch.Tensor) -> torch.Tensor:
    """The default network input: the state itself."""
    return s


def squashed_normal_log_prob(
    u: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, half_width: torch.Tensor
) -> torch.Tensor:
    """log q(a) per coordinate for a = c + h·tanh(u), u ~ N(loc, scale).

    log q(a) = log N(u; μ, σ) − log(1 − tanh²u) − log h, with the Jacobian in the stable
    form log(1 − tanh²u) = 2·(log 2 − u − softplus(−2u)), finite even where tanh rounds to ±1.
    """
    log_normal = -0.5 * ((u - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)
    log_jacobian = 2.0 * (_LOG2 - u - nn.functional.softplus(-2.0 * u))
    return log_normal - log_jacobian - torch.log(half_width)


class SquashedNormal(TorchDistribution):
    """a = c + h·tanh(u), u ~ Normal(loc, scale) per coordinate; event shape (action_dim,).

    ``log_prob`` of the tensor returned by the latest ``rsample``/``sample`` uses the cached
    u (no atanh round trip); any other value is mapped back with atanh. Samples are kept a
    hair inside the open box so that a uniform prior never sees its boundary.

    Args:
        loc, scale: (..., action_dim) parameters of the Gaussian before squashing.
        low, high: (action_dim,) bounds of the action box.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True

    def __init__(self, loc, scale, low, high, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        if self.loc.ndim == 0:
            raise ValueError("`loc` must end in action_dim")
        self.low = torch.as_tensor(low, dtype=self.loc.dtype, device=self.loc.device)
        self.high = torch.as_tensor(high, dtype=self.loc.dtype, device=self.loc.device)
        if self.low.shape != self.loc.shape[-1:] or self.high.shape != self.loc.shape[-1:]:
            raise ValueError(
                f"`low`/`high` must have shape (action_dim,)={tuple(self.loc.shape[-1:])}, "
                f"got {tuple(self.low.shape)} and {tuple(self.high.shape)}"
            )
        self.center = (self.high + self.low) / 2
        self.half_width = (self.high - self.low) / 2
        self._cache = None  # (a, u, ε) of the latest draw
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.event_shape
        return SquashedNormal(
            self.loc.expand(shape), self.scale.expand(shape), self.low, self.high,
            validate_args=self._validate_args,
        )  # fmt: skip

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        """c + h·tanh(u), kept strictly inside the box (tanh rounds to ±1 for |u| ≳ 19)."""
        margin = self.half_width * (4 * torch.finfo(u.dtype).eps)
        a = self.center + self.half_width * torch.tanh(u)
        return a.clamp(self.low + margin, self.high - margin)

    @property
    def median(self) -> torch.Tensor:
        """c + h·tanh(μ): the squash is monotone, so this is each coordinate's median."""
        return self.squash(self.loc)

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        u = self.loc + self.scale * eps
        a = self.squash(u)
        self._cache = (a, u)
        return a

    def rsample_with_log_prob(self, sample_shape=(), *, generator=None):
        """A reparameterised draw and its log-density in one pass, (a, log q(a)).

        a = c + h·tanh(μ + σ·ε), ε ~ N(0, I) drawn from ``generator`` (a ``torch.Generator``
        on the parameters' device; None: the global stream), so a seeded learner reproduces
        without touching the global RNG. Soft actor-critic's actor step needs exactly this pair
        (Haarnoja et al. 2018, eq. 11 and App. C).
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        u = self.loc + self.scale * eps
        a = self.squash(u)
        return a, squashed_normal_log_prob(u, self.loc, self.scale, self.half_width).sum(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        if self._cache is not None and value is self._cache[0]:
            u = self._cache[1]
        else:
            y = (value - self.center) / self.half_width
            bound = 1 - torch.finfo(y.dtype).eps
            u = torch.atanh(y.clamp(-bound, bound))
        return squashed_normal_log_prob(u, self.loc, self.scale, self.half_width).sum(-1)


def _plate_batch_shape() -> torch.Size:
    """The batch shape implied by the enclosing vectorised ``pyro.plate``s (e.g. the particle
    plate of ``Trace_ELBO(vectorize_particles=True)``), so a guide can draw one noise per
    particle even when the start state is shared."""
    frames = [f for f in get_plates() if f.vectorized]
    if not frames:
        return torch.Size()
    shape = [1] * -min(f.dim for f in frames)
    for f in frames:
        shape[f.dim] = f.size
    return torch.Size(shape)


class SquashedGaussianGuide(nn.Module):
    """Base class: a rollout of the true dynamics under q(aₜ|sₜ) given by ``self.policies()``.

    Called with the model's signature; samples ``s_0`` (unless ``initial_state`` is given),
    then either the sites ``a_0 … a_{T-1}`` or the single site ``actions``, following the
    ``vectorized`` flag exactly as the model does.

    Attributes:
        reparameterized: pathwise samples (True) or detached ones, for the score-function
            estimator (False).
        closed_loop: whether actions depend on the state.
    """

    closed_loop = True
    family = "squashed_gaussian"

    def __init__(self, mdp: ContinuousMDP, *, name: str | None, reparameterized: bool = True):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"`name` must be a non-empty string or None, got {name!r}")
        super().__init__()
        # the guide owns its parameters (announced under this prefix, never stored globally)
        self.name = name or type(self).family
        mdp = _check_continuous(mdp)
        self.reparameterized = bool(reparameterized)
        self.state_dim, self.action_dim = mdp.state_dim, mdp.action_dim
        self.register_buffer("low", mdp.action_low.clone())
        self.register_buffer("high", mdp.action_high.clone())

    def policies(self):
        """The policy as a function (t, s) ↦ q(aₜ | sₜ = s), a :class:`SquashedNormal` with
        batch shape s.shape[:-1]. Called once per trace."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, state, t: int = 0, *, deterministic: bool = True) -> torch.Tensor:
        """An action for ``state`` (state_dim,) or (..., state_dim) at step t, outside Pyro:
        c + h·tanh(μ) (the median action) when deterministic, else a draw from q."""
        state = torch.as_tensor(state, dtype=self.low.dtype)
        q = self.policies()(t, state)
        return q.median if deterministic else q.sample()

    def forward(
        self,
        mdp: ContinuousMDP,
        *,
        temperature: float = 1.0,
        initial_state: torch.Tensor | None = None,
        num_particles: int | None = None,
        action_prior=None,
        vectorized: bool = False,
    ):
        """Sample a trajectory (batch) from q; same arguments as the model.

        ``temperature`` and ``action_prior`` only enter the model; they are accepted here so
        that the guide has the model's signature.

        Returns:
            (states (..., T+1, state_dim), actions (..., T, action_dim)).
        """
        mdp = _check_continuous(mdp)
        if (mdp.state_dim, mdp.action_dim) != (self.state_dim, self.action_dim):
            raise ValueError(
                f"this guide was built for state_dim={self.state_dim}, "
                f"action_dim={self.action_dim}; got {mdp!r}"
            )
        announce_parameters(self, self.name)
        with particles_plate(num_particles):
            batch_shape = _plate_batch_shape()
            if initial_state is None:
                s = pyro.sample("s_0", mdp.initial)  # the true p0: cancels in the ELBO
            else:
                s = torch.as_tensor(initial_state, dtype=self.low.dtype)
                if s.shape[-1:] != (self.state_dim,):
                    raise ValueError(
                        f"`initial_state` must end in state_dim={self.state_dim}, "
                        f"got shape {tuple(s.shape)}"
                    )
            # one draw per particle even when the start state is shared (numpy's
            # broadcast_shapes: torch's imports sympy on first use, ~3 s)
            batch_shape = np.broadcast_shapes(tuple(batch_shape), tuple(s.shape[:-1]))
            s = s.expand(tuple(batch_shape) + s.shape[-1:])
            policy = self.policies()
            states, actions, log_q = [s], [], 0.0
            for t in range(mdp.horizon):
                q_t = policy(t, s)
                if vectorized:
                    a = q_t.rsample() if self.reparameterized else q_t.sample()
                    log_q = log_q + q_t.log_prob(a)
                else:
                    a = pyro.sample(f"a_{t}", q_t.has_rsample_(self.reparameterized))
                s = mdp.dynamics(s, a)
                if isinstance(s, torch.distributions.Distribution):
                    s = pyro.sample(f"s_{t + 1}", s)  # the true dynamics, as in the model
                states.append(s)
                actions.append(a)
            actions = torch.stack(actions, dim=-2)
            if vectorized:
                # log q(a_{0:T-1}) = Σₜ log q(aₜ|sₜ) rides on one site
                seq = dist.Delta(actions, log_density=log_q, event_dim=2)
                pyro.sample("actions", seq.has_rsample_(self.reparameterized))
            return torch.stack(torch.broadcast_tensors(*states), dim=-2), actions


class GaussianMLPGuide(SquashedGaussianGuide):
    """Closed-loop tanh-squashed Gaussian policy q(a|s) from an MLP on state features.

    (μ, log σ) = MLP(features(s)); log σ is softly bounded to [log_scale_min, log_scale_max].

    Args:
        mdp: the :class:`~pgm_control.ContinuousMDP` (fixes dims, box and dtype).
        hidden: widths of the hidden layers.
        activation: an ``nn.Module`` class for the hidden layers.
        features: s ↦ the network input; defaults to ``mdp.observe`` (e.g. (cos θ, sin θ, θ̇)
            for the pendulum) or the raw state.
        init_scale: σ of the initial (state-independent) policy before squashing.
        log_scale_min, log_scale_max: bounds of log σ.
        reparameterized: see :class:`SquashedGaussianGuide`.
        name: the prefix of this guide's ``param`` sites (default: the family name). The
            guide owns its parameters, so guides never share them, whatever their names.
    """

    family = "gaussian_mlp"

    def __init__(
        self,
        mdp: ContinuousMDP,
        *,
        hidden=(64, 64),
        activation=nn.Tanh,
        features=None,
        init_scale: float = 1.0,
        log_scale_min: float = -5.0,
        log_scale_max: float = 2.0,
        reparameterized: bool = True,
        name: str | None = None,
    ):
        super().__init__(mdp, name=name, reparameterized=reparameterized)
        if not log_scale_min < math.log(init_scale) < log_scale_max:
            raise ValueError(
                f"`init_scale`={init_scale} must lie in (exp({log_scale_min}), "
                f"exp({log_scale_max}))"
            )
        self.features = features if features is not None else (mdp.observe or _raw_state)
        dtype = mdp.action_low.dtype
        probe = self.features(mdp.initial.sample().to(dtype))
        widths = [probe.shape[-1], *hidden]
        layers = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out, dtype=dtype), activation()]
        head = nn.Linear(widths[-1], 2 * self.action_dim, dtype=dtype)
        with torch.no_grad():
            # start near a state-independent policy μ ≈ 0, σ ≈ init_scale
            head.weight.mul_(0.01)
            head.bias.zero_()
            frac = (math.log(init_scale) - log_scale_min) / (log_scale_max - log_scale_min)
            head.bias[self.action_dim :] = math.atanh(2 * frac - 1)
        self.net = nn.Sequential(*layers, head)
        self.log_scale_min, self.log_scale_max = log_scale_min, log_scale_max

    def policies(self):
        net = self.net
        lo, hi = self.log_scale_min, self.log_scale_max
        low, high = self.low, self.high

        def q(t, s):
            out = net(self.features(s))
            loc, raw = out[..., : self.action_dim], out[..., self.action_dim :]
            log_scale = lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1)  # soft clamp
            return SquashedNormal(loc, log_scale.exp(), low, high)

        return q


class OpenLoopNormalGuide(SquashedGaussianGuide):
    """Open loop: aₜ = c + h·tanh(uₜ), uₜ ~ Normal(μₜ, σₜ) independent of the state.

    Args:
        mdp: the MDP; its horizon is the longest plan this guide can make.
        init_loc, init_scale: initial μₜ, σₜ (before squashing).
        reparameterized, name: see :class:`GaussianMLPGuide`.
    """

    closed_loop = False
    family = "open_loop_normal"

    def __init__(
        self,
        mdp: ContinuousMDP,
        *,
        init_loc: float = 0.0,
        init_scale: float = 1.0,
        reparameterized: bool = True,
        name: str | None = None,
    ):
        super().__init__(mdp, name=name, reparameterized=reparameterized)
        if not init_scale > 0:
            raise ValueError(f"`init_scale` must be > 0, got {init_scale}")
        shape = (mdp.horizon, self.action_dim)  # indexed as loc[t, action_dim]
        dtype = mdp.action_low.dtype
        self.horizon = mdp.horizon
        self.loc = nn.Parameter(torch.full(shape, float(init_loc), dtype=dtype))
        # σ = exp(u): the positive constraint's bijection, as a PyroParam would store it
        log_scale = torch.full(shape, float(init_scale), dtype=dtype).log()
        self.scale_unconstrained = nn.Parameter(log_scale)

    @property
    def scale(self) -> torch.Tensor:
        """σₜ = exp(uₜ), (T, action_dim)."""
        return self.scale_unconstrained.exp()

    def policies(self):
        loc, scale = self.loc, self.scale  # (T, action_dim), read once per trace

        def q(t, s):
            shape = s.shape[:-1] + loc.shape[-1:]
            return SquashedNormal(loc[t].expand(shape), scale[t].expand(shape), self.low, self.high)

        return q

    def forward(self, mdp, **kwargs):
        if _check_continuous(mdp).horizon > self.horizon:
            raise ValueError(
                f"this open-loop guide plans {self.horizon} steps; the MDP has horizon "
                f"{mdp.horizon}"
            )
        return super().forward(mdp, **kwargs)


def gaussian_mlp(mdp: ContinuousMDP, **kwargs) -> GaussianMLPGuide:
    """Registry constructor of :class:`GaussianMLPGuide`."""
    return GaussianMLPGuide(mdp, **kwargs)


def open_loop_normal(mdp: ContinuousMDP, **kwargs) -> OpenLoopNormalGuide:
    """Registry constructor of :class:`OpenLoopNormalGuide`."""
    return OpenLoopNormalGuide(mdp, **kwargs)


CONTINUOUS_GUIDES: dict = {
    "gaussian_mlp": gaussian_mlp,
    "open_loop_normal": open_loop_normal,
}
