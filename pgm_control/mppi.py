"""MPPI: model predictive path integral control, as receding-horizon importance sampling.

Every control step runs :mod:`pgm_control.importance` on the next H actions of the same Pyro
model (:func:`~pgm_control.models.continuous_control_model`), with::

    action prior   p(a₀:H₋₁) = Πₜ N(aₜ; 0, Σ),      Σ = diag(σ²)
    proposal       q(a₀:H₋₁) = Πₜ N(aₜ; Uₜ, Σ),     U: the plan, warm-started by a shift
    v = U + ε:     log p(v) − log q(v) = −Σₜ Uₜᵀ Σ⁻¹ εₜ − ½ Σₜ Uₜᵀ Σ⁻¹ Uₜ

so with α = λ the log-weight is ``Σₜ r/λ − Σₜ Uₜᵀ Σ⁻¹ εₜ + const``: MPPI's path cost plus its
control-cost term λ·Uᵀ Σ⁻¹ ε (Williams et al. 2017, Alg. 2) — it *comes out of* the ratio of
prior to proposal, it is not added by hand. The new plan is the posterior mean Σₖ w̄ₖ vₖ.

``iterations > 1`` is the lecture's "keep repeating with an updated action prior": the
Gaussian proposal is refitted to the weighted samples (its mean becomes the posterior mean) and
sampled again; the prior/proposal ratio in the weights corrects for the moved proposal, so every
iteration estimates the same posterior, each time with a better proposal. Only the mean is
refitted: MPPI's ESS is often a handful of particles, and a covariance fitted to so few would
collapse the proposal.

``noise_correlation = ρ > 0`` makes the proposal's noise an AR(1) process in time (smooth action
sequences, needed where rewards are sparse: MountainCar). Only the proposal changes; the prior
and hence the posterior stay as above, and the weights remain exact. A proposal only has to
put its samples where the posterior is: on the pendulum swing-up (K = 1024, H = 30, λ = 0.1)
ρ = 0.95 averages −345 over 30 seeds against −357 for white noise, which is pytorch_mppi's
algorithm and return (``benchmarks/mppi_pendulum.py --sweep``).

Speed notes (measured on CPU at K = 1024, H = 30): the rollout's per-step torch calls dominate,
so the model computes all rewards in one call after the rollout; the controller runs under
``torch.inference_mode``. With deterministic dynamics (``mdp.stochastic`` is False, read once
when the controller is built) the weights are the model's density in closed form, skipping
Pyro's trace machinery; ``check=True`` compares that route with the Pyro trace of the model on
the first plan (the tests compare the two routes). Small tensors run faster with
``torch.set_num_threads(1)`` — a global setting, so the controller leaves it to the caller (the
benchmark measures and chooses).
"""

from __future__ import annotations

import functools
import math

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from .continuous import ContinuousMDP, _check_continuous
from .importance import (
    _DEGENERATE_FRACTION,
    ImportanceResult,
    _check_continuous_state,
    _continuous_posterior,
    _RandomStream,
)
from .rollout import Episode, run_episode  # re-exported: MPPI's episodes run in rollout's loop
from .validation import check_int, check_positive_int, check_probability, check_temperature

__all__ = ["MPPI", "DiagonalNormal", "AutoregressiveNormal", "Episode", "run_episode"]


class DiagonalNormal(dist.TorchDistribution):
    """N(loc, diag(σ²)) over the last dim, with σ shared by every batch element.

    The same density as ``Normal(loc, σ).to_event(1)``, but log σ and 1/σ are computed once for
    the (d,) scales instead of on every expanded element: its ``log_prob`` on (K, H, d) is ~5×
    faster, which matters because MPPI evaluates the prior and the proposal at every step.

    Args:
        loc: (..., d) means.
        scale: σ > 0, shape (d,) or a scalar.
    """

    arg_constraints = {"loc": constraints.real}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        if loc.ndim < 1:
            raise ValueError(f"`loc` must have shape (..., d), got {tuple(loc.shape)}")
        scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device).expand(loc.shape[-1:])
        if validate_args is not False and not (scale > 0).all():
            raise ValueError(f"`scale` must be > 0, got {scale.tolist()}")
        self.loc, self.scale = loc, scale
        self._inv_scale = 1.0 / scale
        self._log_norm = scale.log().sum() + 0.5 * scale.numel() * math.log(2 * math.pi)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(DiagonalNormal, _instance)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.scale, new._inv_scale, new._log_norm = self.scale, self._inv_scale, self._log_norm
        super(DiagonalNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return (self.scale**2).expand(self.loc.shape)

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(torch.Size(sample_shape))
        return (
            self.loc + torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device) * self.scale
        )

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) * self._inv_scale
        return -0.5 * (z * z).sum(-1) - self._log_norm


@functools.lru_cache(maxsize=32)
def _ar1_filter(horizon: int, rho: float, dtype, device) -> torch.Tensor:
    with torch.inference_mode(False):  # a plain tensor, usable inside and outside autograd
        c = math.sqrt(1 - rho**2)
        t = torch.arange(horizon, dtype=dtype, device=device)
        lags = t[:, None] - t[None, :]
        powers = torch.where(lags >= 0, rho ** lags.clamp(min=0), torch.zeros_like(lags))
        gain = torch.full_like(t, c)
        gain[0] = 1.0
        return powers * gain


class AutoregressiveNormal(dist.TorchDistribution):
    """A Gaussian over sequences x = loc + ε of event shape (H, d) with AR(1) noise in time.

    ``ε₀ = σ·ξ₀``, ``εₜ = ρ·εₜ₋₁ + c·σ·ξₜ`` with c = √(1−ρ²) and ξ ~ N(0, I): every εₜ is
    marginally N(0, σ²) and corr(εₜ, εₜ₊ₖ) = ρᵏ. With ρ = 0 it is
    ``DiagonalNormal(loc, σ).to_event(1)``. The density is that of the whitened innovations
    e₀ = ε₀, eₜ = (εₜ − ρεₜ₋₁)/c, each N(0, σ²), times the Jacobian c^−(H−1)·d.

    Args:
        loc: (..., H, d) means.
        scale: σ > 0, shape (d,) or a scalar.
        correlation: ρ in [0, 1).
    """

    arg_constraints = {"loc": constraints.real}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc, scale, correlation: float, validate_args=None):
        if not 0 <= correlation < 1:
            raise ValueError(f"`correlation` must be in [0, 1), got {correlation}")
        if loc.ndim < 2:
            raise ValueError(f"`loc` must have shape (..., H, d), got {tuple(loc.shape)}")
        self.loc = loc
        self.correlation = float(correlation)
        step = DiagonalNormal(loc[..., 0, :], scale, validate_args=validate_args)
        self.scale, self._inv_scale, self._log_norm = step.scale, step._inv_scale, step._log_norm
        super().__init__(loc.shape[:-2], loc.shape[-2:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(AutoregressiveNormal, _instance)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.correlation, new.scale = self.correlation, self.scale
        new._inv_scale, new._log_norm = self._inv_scale, self._log_norm
        super(AutoregressiveNormal, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def _filter(self) -> torch.Tensor:
        """The (H, H) lower-triangular L with ε = L·(σξ): L[t, s] = ρ^(t−s)·(1 if s = 0 else c)."""
        return _ar1_filter(self.event_shape[0], self.correlation, self.loc.dtype, self.loc.device)

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(torch.Size(sample_shape))
        # noise drawn time-first (H, batch..., d): the rollout then reads each step's actions
        # as a contiguous slice. With ρ > 0 the AR(1) recursion εₜ = ρεₜ₋₁ + c·σξₜ is one GEMM,
        # L (H, H) @ (H, batch·d); a Python loop over t costs H small ops per plan, and a
        # batched (H, H) @ (H, d) matmul per particle is slower still
        horizon = shape[-2]
        eps = torch.randn((horizon,) + shape[:-2] + shape[-1:], dtype=self.loc.dtype,
                          device=self.loc.device) * self.scale  # fmt: skip
        if self.correlation > 0:
            eps = (self._filter() @ eps.reshape(horizon, -1)).reshape(eps.shape)
        return self.loc + eps.movedim(0, -2)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) * self._inv_scale  # εₜ/σ
        horizon, d = self.event_shape
        rho = self.correlation
        if rho == 0:
            return -0.5 * z.square().sum((-1, -2)) - horizon * self._log_norm
        c = math.sqrt(1 - rho**2)
        # whitened innovations eₜ/σ = (εₜ − ρεₜ₋₁)/(cσ) for t ≥ 1, and ε₀/σ
        innovations = torch.add(z[..., 1:, :], z[..., :-1, :], alpha=-rho)
        squares = z[..., 0, :].square().sum(-1) + innovations.square().sum((-1, -2)) / c**2
        log_jacobian = -(horizon - 1) * d * math.log(c)
        return -0.5 * squares - horizon * self._log_norm + log_jacobian


def _check_scale(name, value, action_dim) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if t.numel() == 1:
        t = t.expand(action_dim)
    if t.shape != (action_dim,):
        raise ValueError(
            f"`{name}` must be a scalar or have shape ({action_dim},), got {tuple(t.shape)}"
        )
    if not (torch.isfinite(t).all() and (t > 0).all()):
        raise ValueError(f"`{name}` must be finite and > 0, got {t.tolist()}")
    return t.clone()


class MPPI:
    """Model predictive path integral control: importance sampling of p(a₀:H₋₁ | s, O) per step.

    Args:
        mdp: a :class:`~pgm_control.ContinuousMDP` (true or learned dynamics; a dynamics that
            returns a Distribution is sampled once per particle).
        horizon: H >= 1 planned actions.
        num_samples: K >= 1 particles per iteration.
        temperature: λ = α > 0.
        noise_scale: σ > 0 (scalar or (action_dim,)): prior N(0, σ²) and proposal N(U, σ²).
        iterations: importance-sampling rounds per control step, each refitting the proposal.
        seed: seeds the controller's private random stream (the global RNG is untouched).
        noise_correlation: ρ in [0, 1) of the proposal's AR(1) noise in time (0: white noise).
        check: on the first plan, also weigh the particles through the Pyro trace of the model
            and check the closed-form weights against it (deterministic dynamics only; the
            traced result is the one used, as the later plans' closed form reproduces it).

    ``act(state)`` returns the first action of the posterior-mean plan (clipped to the action
    box) and keeps the rest, shifted by one step, as the next proposal mean. ``result`` holds
    the last :class:`~pgm_control.ImportanceResult`; ``ess_history`` the ESS of every step.
    """

    def __init__(
        self,
        mdp: ContinuousMDP,
        *,
        horizon: int,
        num_samples: int,
        temperature: float,
        noise_scale,
        iterations: int = 1,
        seed: int = 0,
        noise_correlation: float = 0.0,
        check: bool = False,
    ):
        mdp = _check_continuous(mdp)
        self.horizon = check_positive_int("horizon", horizon)
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.temperature = check_temperature(temperature)
        self.iterations = check_positive_int("iterations", iterations)
        self.noise_scale = _check_scale("noise_scale", noise_scale, mdp.action_dim)
        self.noise_correlation = check_probability(
            "noise_correlation", noise_correlation, open_high=True
        )
        if not isinstance(check, bool):
            raise TypeError(f"`check` must be True or False, got {check!r}")
        self.mdp = mdp if mdp.horizon == self.horizon else mdp.replace(horizon=self.horizon)
        self.seed = check_int("seed", seed)
        # the closed-form weights need s' = f(s, a); a learned model that returns a
        # Distribution over s' is sampled inside the Pyro trace instead
        self._closed_form = not self.mdp.stochastic
        self._stream = _RandomStream(self.seed)
        self._cache = None  # (dtype, device) -> σ, box, prior, moved once
        self.check = check
        self.reset()

    @property
    def closed_form(self) -> bool:
        """Whether the weights are evaluated in closed form (deterministic dynamics) rather
        than through the Pyro trace of the model."""
        return self._closed_form

    def reset(self, seed: int | None = None) -> None:
        """Forget the plan (the next proposal mean is 0) and the ESS history; optionally reseed."""
        if seed is not None:
            self.seed = check_int("seed", seed)
            self._stream = _RandomStream(self.seed)
        self._plan = None
        self._checked = not self.check  # the closed-form route is checked on the next plan
        self.result: ImportanceResult | None = None
        self.ess_history: list[float] = []
        self._warned = False

    @property
    def plan(self) -> torch.Tensor | None:
        """The warm-start plan U (H, action_dim) the next ``act`` will propose around."""
        return None if self._plan is None else self._plan.clone()

    def _constants(self, dtype, device):
        key = (dtype, device)
        if self._cache is None or self._cache[0] != key:
            sigma = self.noise_scale.to(dtype=dtype, device=device)
            low = self.mdp.action_low.to(dtype=dtype, device=device)
            high = self.mdp.action_high.to(dtype=dtype, device=device)
            prior = DiagonalNormal(torch.zeros_like(sigma), sigma, validate_args=False)
            self._cache = (key, sigma, low, high, prior)
            self._validated = False
        return self._cache[1:]

    def _proposal(self, mean, sigma):
        return AutoregressiveNormal(mean, sigma, self.noise_correlation, validate_args=False)

    def act(self, state) -> torch.Tensor:
        """The action for ``state`` ((state_dim,); its dtype and device set the plan's)."""
        s_0 = _check_continuous_state(self.mdp, state)
        sigma, low, high, prior = self._constants(s_0.dtype, s_0.device)
        # on the traced route (stochastic dynamics, or check=True) Pyro's validation checks the
        # model and proposal on the first plan of each (dtype, device); afterwards only their
        # values change, and the checks cost ~10% of a plan
        validate = pyro.infer.util.is_validation_enabled() and not self._validated
        with (
            torch.inference_mode(),
            pyro.validation_enabled(validate),
            self._stream(s_0.device),
        ):
            mean = self._plan
            if mean is None or mean.dtype != s_0.dtype or mean.device != s_0.device:
                mean = torch.zeros(
                    self.horizon, self.mdp.action_dim, dtype=s_0.dtype, device=s_0.device
                )
            for _ in range(self.iterations):
                warn = 0 if self._warned else 4
                result = self._weighted_plan(s_0, prior, self._proposal(mean, sigma), warn)
                self._warned |= result.ess < _DEGENERATE_FRACTION * self.num_samples
                # any proposal mean keeps the weights exact; one inside the box wastes fewer
                mean = torch.minimum(torch.maximum(result.plan, low), high)
            self._plan = torch.cat([mean[1:], torch.zeros_like(mean[:1])])  # warm start: shift
        self._validated = True
        self.result = result
        self.ess_history.append(result.ess)
        return mean[0].clone()

    def _weighted_plan(self, s_0, prior, proposal, warn):
        """:meth:`_importance`, with the error of an underflowing temperature named as such.

        The Gaussian proposal and prior have full support, so when every weight
        exp(Σr/α + log prior/proposal) is 0 or the log-weights overflow, Σr/α left the dtype's
        range: the temperature is too small for rewards of this scale.
        """
        try:
            return self._importance(s_0, prior, proposal, warn)
        except ValueError as exc:
            if "every importance weight" not in str(exc):
                raise
            big = torch.finfo(s_0.dtype).max
            raise ValueError(
                f"MPPI's `temperature` = {self.temperature:g} is too small for this reward in "
                f"{s_0.dtype}: the log-weights Σr/α of all {self.num_samples} plans left the "
                f"range ±{big:.3g} (every weight is 0 or the logs overflow). Raise "
                "`temperature` to the scale of the differences between plan returns (e.g. 1)."
            ) from None

    def _importance(self, s_0, prior, proposal, warn):
        """One IS round: closed-form weights for deterministic dynamics, else the Pyro trace."""
        args = (self.mdp, s_0, self.num_samples, self.temperature, prior, proposal, warn)
        if self._closed_form and not self._checked:
            self._checked = True
            return self._checked_plan(args)
        return _continuous_posterior(*args, traced=not self._closed_form)

    def _checked_plan(self, args):
        """Both routes on the same random draws; the closed form must reproduce the trace."""
        s_0 = args[1]
        cuda = s_0.device.type == "cuda"
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state(s_0.device) if cuda else None
        traced = _continuous_posterior(*args, traced=True)
        torch.set_rng_state(cpu_state)
        if cuda:
            torch.cuda.set_rng_state(cuda_state, s_0.device)
        fast = _continuous_posterior(*args[:-1], 0, traced=False)
        try:
            torch.testing.assert_close(fast.log_weights, traced.log_weights)
        except AssertionError as exc:
            raise ValueError(
                "MPPI's closed-form weights disagree with the Pyro trace of the model: are "
                "`dynamics` and `reward` deterministic functions of (s, a)?\n" + str(exc)
            ) from None
        return traced

    def __repr__(self) -> str:
        return (
            f"MPPI(mdp={self.mdp.name!r}, H={self.horizon}, K={self.num_samples}, "
            f"lambda={self.temperature:g}, sigma={self.noise_scale.tolist()}, "
            f"iterations={self.iterations}, rho={self.noise_correlation:g}, "
            f"closed_form={self._closed_form})"
        )
