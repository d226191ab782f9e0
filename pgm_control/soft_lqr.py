r"""The entropy-regularised discounted linear–quadratic regulator, in closed form.

The one continuous problem whose max-ent optimum is known exactly, hence the ground truth a
test holds soft actor-critic to. Dynamics and reward

    s' = A·s + B·a + w,   w ~ N(0, W),       r(s, a) = −(sᵀQs + aᵀRa),

objective E[Σₜ γᵗ (r(sₜ, aₜ) − α·log π(aₜ|sₜ))] (entropy w.r.t. Lebesgue measure on actions,
no action prior). Guess V(s) = −sᵀPs + c. Then the soft Q is a quadratic,

    Q(s, a) = r(s, a) + γ·E[V(s')] = −[s; a]ᵀ H [s; a] + γ·(c − tr(P W)),
    H = [[Q + γAᵀPA, γAᵀPB], [γBᵀPA, R + γBᵀPB]],

the max-ent policy π(a|s) ∝ exp(Q(s, a)/α) is Gaussian,

    π(a|s) = N(a; K·s, Σ),   K = −H_aa⁻¹·H_as,   Σ = (α/2)·H_aa⁻¹,

and V(s) = α·log ∫ exp(Q(s, a)/α) da = max_a Q(s, a) + (α/2)·log det(2πΣ) closes the
recursion (the *soft Riccati recursion*):

    P ← Q + γAᵀPA − γ²AᵀPB·(R + γBᵀPB)⁻¹·BᵀPA,
    c ← (α/2)·log det(2πΣ) + γ·(c − tr(P W)).

P is the classical discounted Riccati solution whatever α (so is the gain K): entropy only
widens the policy, by Σ ∝ α, and shifts the value by a constant (Haarnoja et al. 2017, §A;
Levine 2018, §4 — the linear–Gaussian case of the soft Bellman backup, eq. 26–28). At the
fixed point c = [(α/2)·log det(2πΣ) − γ·tr(P W)] / (1 − γ).

:class:`LinearQuadraticEnv` is the same problem as a gymnasium env (registered as
``"pgm_control/LinearQuadratic-v0"``), for learners that only see ``env.step``.
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import torch

from .validation import check_discount, check_positive_int, check_temperature

__all__ = [
    "SoftLQRSolution",
    "soft_lqr",
    "LinearQuadraticEnv",
    "LINEAR_QUADRATIC_ENV_ID",
    "SoftLQRComparison",
    "compare_with_soft_lqr",
]

LINEAR_QUADRATIC_ENV_ID = "pgm_control/LinearQuadratic-v0"


@dataclasses.dataclass
class SoftLQRSolution:
    """The entropy-regularised discounted LQR's exact solution (see the module doc).

    Attributes:
        P: (n, n), V(s) = −sᵀPs + c.
        c: 0-d, the value's constant.
        gain: K (m, n), the policy mean K·s.
        covariance: Σ (m, m), the policy covariance (α/2)·H_aa⁻¹.
        H: (n+m, n+m), Q(s, a) = −[s; a]ᵀH[s; a] + q_constant.
        q_constant: 0-d, γ·(c − tr(P W)).
        temperature, discount: α, γ.
        iterations: soft Riccati steps taken to converge.
    """

    P: torch.Tensor
    c: torch.Tensor
    gain: torch.Tensor
    covariance: torch.Tensor
    H: torch.Tensor
    q_constant: torch.Tensor
    temperature: float
    discount: float
    iterations: int

    def q_value(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q(s, a) = −[s; a]ᵀH[s; a] + q₀ for (..., n), (..., m) → (...)."""
        shape = torch.broadcast_shapes(state.shape[:-1], action.shape[:-1])
        x = torch.cat([state.expand(*shape, -1), action.expand(*shape, -1)], dim=-1)
        return -torch.einsum("...i,ij,...j->...", x, self.H, x) + self.q_constant

    def value(self, state: torch.Tensor) -> torch.Tensor:
        """V(s) = −sᵀPs + c for (..., n) → (...)."""
        return -torch.einsum("...i,ij,...j->...", state, self.P, state) + self.c

    def policy(self, state: torch.Tensor) -> torch.distributions.MultivariateNormal:
        """π(·|s) = N(K·s, Σ), batched over the leading dims of ``state``."""
        return torch.distributions.MultivariateNormal(state @ self.gain.T, self.covariance)


def _matrix(name: str, value, dtype=None) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and dtype is None:
        t = value
    else:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value,
                            dtype=dtype or torch.float64)  # fmt: skip
    if t.ndim == 0:
        t = t.reshape(1, 1)
    if t.ndim != 2:
        raise ValueError(f"`{name}` must be a matrix (or a scalar), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"`{name}` must be finite")
    return t


def _check_symmetric(name, m, *, definite: bool):
    if m.shape[0] != m.shape[1] or not torch.allclose(m, m.T):
        raise ValueError(f"`{name}` must be a symmetric square matrix, got {m.tolist()}")
    eig = torch.linalg.eigvalsh(m)
    if definite and not (eig > 0).all():
        raise ValueError(f"`{name}` must be positive definite (eigenvalues {eig.tolist()})")
    if not definite and not (eig >= -1e3 * torch.finfo(m.dtype).eps * eig.abs().max()).all():
        raise ValueError(f"`{name}` must be positive semi-definite (eigenvalues {eig.tolist()})")


def soft_lqr(
    A,
    B,
    Q,
    R,
    *,
    temperature: float = 1.0,
    discount: float = 0.99,
    noise_covariance=None,
    tol: float | None = None,
    max_iterations: int = 100_000,
) -> SoftLQRSolution:
    """Solve the entropy-regularised discounted LQR by the soft Riccati recursion.

    Iterates (P, c) from (0, 0) — soft value iteration restricted to quadratics, exact here
    because the backup maps quadratics to quadratics — until P changes by less than ``tol``
    (relative), then sets c to its fixed point.

    Args:
        A: (n, n) dynamics; B: (n, m) input matrix (scalars for n = m = 1).
        Q: (n, n) symmetric PSD state cost; R: (m, m) symmetric PD action cost.
        temperature: α > 0 (the entropy weight).
        discount: γ in (0, 1) (the constant c diverges at γ = 1).
        noise_covariance: W (n, n) symmetric PSD, or None for deterministic dynamics.
        tol: relative convergence tolerance on P; default 100·eps of the dtype.
        max_iterations: raise if not converged (e.g. (√γA, √γB) not stabilisable).

    Returns:
        :class:`SoftLQRSolution` in the dtype of ``A`` (float64 unless A is a float tensor).
    """
    alpha = check_temperature(temperature)
    gamma = check_discount(discount, allow_one=False)
    A = _matrix("A", A)
    dtype, device = A.dtype, A.device
    B, Q, R = (_matrix(n, v, dtype).to(device) for n, v in (("B", B), ("Q", Q), ("R", R)))
    n, m = A.shape[0], B.shape[1]
    if A.shape != (n, n) or B.shape != (n, m) or Q.shape != (n, n) or R.shape != (m, m):
        raise ValueError(
            f"shapes must be A (n, n), B (n, m), Q (n, n), R (m, m); got {tuple(A.shape)}, "
            f"{tuple(B.shape)}, {tuple(Q.shape)}, {tuple(R.shape)}"
        )
    _check_symmetric("Q", Q, definite=False)
    _check_symmetric("R", R, definite=True)
    if noise_covariance is None:
        W = torch.zeros(n, n, dtype=dtype, device=device)
    else:
        W = _matrix("noise_covariance", noise_covariance, dtype).to(device)
        if W.shape != (n, n):
            raise ValueError(f"`noise_covariance` must be ({n}, {n}), got {tuple(W.shape)}")
        _check_symmetric("noise_covariance", W, definite=False)
    max_iterations = check_positive_int("max_iterations", max_iterations)
    tol = 100 * torch.finfo(dtype).eps if tol is None else float(tol)

    P = torch.zeros(n, n, dtype=dtype, device=device)
    iterations = 0
    for k in range(1, max_iterations + 1):
        iterations = k
        H_aa = R + gamma * B.T @ P @ B
        H_as = gamma * B.T @ P @ A
        P_new = Q + gamma * A.T @ P @ A - H_as.T @ torch.linalg.solve(H_aa, H_as)
        P_new = (P_new + P_new.T) / 2
        change = (P_new - P).abs().max() / P_new.abs().max().clamp_min(torch.finfo(dtype).tiny)
        P = P_new
        if change <= tol:
            break
    else:
        raise ValueError(
            f"the soft Riccati recursion did not converge in {max_iterations} iterations: "
            "(√γ·A, √γ·B) must be stabilisable"
        )
    H_aa = R + gamma * B.T @ P @ B
    H_as = gamma * B.T @ P @ A
    H_ss = Q + gamma * A.T @ P @ A
    gain = -torch.linalg.solve(H_aa, H_as)
    covariance = (alpha / 2) * torch.linalg.inv(H_aa)
    covariance = (covariance + covariance.T) / 2
    log_det = torch.logdet(2 * math.pi * covariance)
    trace_pw = torch.trace(P @ W)
    c = (alpha / 2 * log_det - gamma * trace_pw) / (1 - gamma)
    H = torch.cat([torch.cat([H_ss, H_as.T], 1), torch.cat([H_as, H_aa], 1)], 0)
    return SoftLQRSolution(
        P=P, c=c, gain=gain, covariance=covariance, H=H, q_constant=gamma * (c - trace_pw),
        temperature=alpha, discount=gamma, iterations=iterations,
    )  # fmt: skip


@dataclasses.dataclass
class SoftLQRComparison:
    """A learned policy and soft Q read against a :class:`SoftLQRSolution`.

    Attributes:
        gain: (m, n) least-squares slope of the learned mean action over the states.
        offset: (m,) its intercept (0 at the optimum).
        covariance: (m, m) the learned per-state action covariance, averaged over the states.
        gain_error: ‖K̂ − K‖_F / ‖K‖_F.
        covariance_error: ‖Σ̂ − Σ‖_F / ‖Σ‖_F.
        critic_error: maxₖ |Q̂ − Q*| / |Q*| over the grid points (per point).
        critic_error_of_max: maxₖ |Q̂ − Q*| / maxₖ |Q*| (the looser normalisation).
        grid_states, grid_actions: (k, n), (k, m) the grid of (s, a).
        q_learned, q_exact: (k,) Q̂ and Q* on it.
    """

    gain: torch.Tensor
    offset: torch.Tensor
    covariance: torch.Tensor
    gain_error: float
    covariance_error: float
    critic_error: float
    critic_error_of_max: float
    grid_states: torch.Tensor
    grid_actions: torch.Tensor
    q_learned: torch.Tensor
    q_exact: torch.Tensor


def compare_with_soft_lqr(
    solution: SoftLQRSolution,
    states: torch.Tensor,
    sample_actions,
    q_function,
    *,
    half_width: float = 1.5,
    grid_points: int = 7,
    action_points: int = 7,
    action_half_width: float = 2.5,
) -> SoftLQRComparison:
    """Read a learned policy's gain and covariance, and a learned soft Q, against the closed form.

    Gain: the least-squares fit (with an intercept) of the Monte-Carlo mean action
    â(s) = mean_d a_d(s) on the given states, â(s) ≈ K̂·s + k̂. Covariance: the per-state
    sample covariance of the drawn actions, averaged over the states. Critic: on the grid
    s ∈ [−half_width, half_width]ⁿ (``grid_points`` per axis) × a = K·s + c·√diag Σ,
    c ∈ [−action_half_width, action_half_width] (``action_points``), the per-point relative
    error maxₖ |Q̂ − Q*|/|Q*|: meaningful when Q* stays away from 0 on the grid (it does when
    q₀ < 0, since Q* ≤ q₀) — the caller checks; choose the grid inside the data.

    Args:
        solution: the closed form.
        states: (N, n) the states to read the actor on (e.g. the visited ones).
        sample_actions: states (N, n) ↦ drawn actions (D, N, m), in the env's units.
        q_function: (states (k, n), actions (k, m)) ↦ Q̂ (k,).
        half_width, grid_points, action_points, action_half_width: the grid.
    """
    dtype = solution.P.dtype
    n, m = solution.P.shape[0], solution.gain.shape[0]
    check_positive_int("grid_points", grid_points)
    check_positive_int("action_points", action_points)
    states = torch.as_tensor(states).to(dtype)
    if states.ndim != 2 or states.shape[1] != n:
        raise ValueError(f"`states` must be (N, {n}), got {tuple(states.shape)}")
    with torch.no_grad():
        draws = torch.as_tensor(sample_actions(states)).to(dtype)
        if draws.ndim != 3 or draws.shape[1:] != (states.shape[0], m) or draws.shape[0] < 2:
            raise ValueError(
                f"`sample_actions` must return (D ≥ 2, {states.shape[0]}, {m}) draws, got "
                f"{tuple(draws.shape)}"
            )
        mean = draws.mean(0)
        centred = draws - mean
        covariance = torch.einsum("dni,dnj->ij", centred, centred)
        covariance = covariance / (states.shape[0] * (draws.shape[0] - 1))
        design = torch.cat([states, torch.ones(states.shape[0], 1, dtype=dtype)], 1)
        coef = torch.linalg.lstsq(design, mean).solution
        gain, offset = coef[:n].T, coef[n]
        axis = torch.linspace(-half_width, half_width, grid_points, dtype=dtype)
        grid = torch.cartesian_prod(*[axis] * n).reshape(-1, n)
        steps = torch.linspace(-action_half_width, action_half_width, action_points, dtype=dtype)
        s = grid.repeat_interleave(action_points, 0)
        spread = steps.repeat(grid.shape[0])[:, None] * solution.covariance.diag().sqrt()
        a = s @ solution.gain.T + spread
        q_learned = torch.as_tensor(q_function(s, a)).to(dtype).reshape(-1)
    q_exact = solution.q_value(s, a)
    err = (q_learned - q_exact).abs()
    return SoftLQRComparison(
        gain=gain, offset=offset, covariance=covariance,
        gain_error=((gain - solution.gain).norm() / solution.gain.norm()).item(),
        covariance_error=(
            (covariance - solution.covariance).norm() / solution.covariance.norm()
        ).item(),
        critic_error=(err / q_exact.abs()).max().item(),
        critic_error_of_max=(err.max() / q_exact.abs().max()).item(),
        grid_states=s, grid_actions=a, q_learned=q_learned, q_exact=q_exact,
    )  # fmt: skip


class LinearQuadraticEnv(gym.Env):
    """s' = A·s + B·a + w, w ~ N(0, W); reward −(sᵀQs + aᵀRa); never terminates.

    Episodes start at s₀ ~ U(−initial_bound, initial_bound)ⁿ and are truncated after
    ``max_episode_steps`` (a time limit, so learners bootstrap: the discounted infinite-horizon
    problem of :func:`soft_lqr`). Actions are clipped to the box ±``action_bound``; make it
    wide enough that the clipping (and a tanh-squashed actor's curvature) is negligible.

    Args:
        A, B, Q, R, noise_covariance: as in :func:`soft_lqr`.
        action_bound: half-width of the action box.
        initial_bound: half-width of the start box.
        max_episode_steps: the time limit.
    """

    metadata = {"render_modes": []}

    def __init__(
        self, A=1.0, B=1.0, Q=1.0, R=1.0, noise_covariance=None, *, action_bound: float = 10.0,
        initial_bound: float = 2.0, max_episode_steps: int = 50,
    ):  # fmt: skip
        self.A, self.B = _matrix("A", A).numpy(), _matrix("B", B).numpy()
        self.Q, self.R = _matrix("Q", Q).numpy(), _matrix("R", R).numpy()
        n, m = self.B.shape
        W = np.zeros((n, n)) if noise_covariance is None else _matrix("W", noise_covariance).numpy()
        eig, vec = np.linalg.eigh(W)
        self.noise_sqrt = vec * np.sqrt(np.clip(eig, 0.0, None))  # W = L·Lᵀ, W may be singular
        self.initial_bound = float(initial_bound)
        self.max_episode_steps = check_positive_int("max_episode_steps", max_episode_steps)
        high = np.full(m, float(action_bound), dtype=np.float32)
        self.action_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), dtype=np.float32)
        self.state = np.zeros(n)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        n = self.A.shape[0]
        self.state = self.np_random.uniform(-self.initial_bound, self.initial_bound, n)
        self._t = 0
        return self.state.astype(np.float32), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low,
                    self.action_space.high)  # fmt: skip
        s = self.state
        reward = -(s @ self.Q @ s + a @ self.R @ a)
        w = self.noise_sqrt @ self.np_random.standard_normal(s.shape[0])
        self.state = self.A @ s + self.B @ a + w
        self._t += 1
        truncated = self._t >= self.max_episode_steps
        return self.state.astype(np.float32), float(reward), False, truncated, {}


if LINEAR_QUADRATIC_ENV_ID not in gym.registry:
    gym.register(LINEAR_QUADRATIC_ENV_ID, entry_point=LinearQuadraticEnv)
