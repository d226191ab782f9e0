r"""Variational families for the tabular control model :func:`pgm_control.control_model`.

Every family is a ``torch.nn.Module`` built as ``Guide(mdp, **options)`` and called with the
model's signature, ``guide(mdp, *, temperature=1.0, num_particles=None, ...)``. It samples the
model's latent sites ``s_0``, ``a_{t}``, ``s_{t+1}`` (in a ``pyro.plate("particles")`` when
``num_particles`` is given), so it runs under Pyro's own ``SVI`` and under
:func:`pgm_control.fit`. The structured families share the true dynamics::

    q(τ) = p0(s₀) · Πₜ qₜ(aₜ|sₜ) · P(sₜ₊₁|sₜ,aₜ)

so ``s_0`` and ``s_{t+1}`` are drawn from the *true* p0 and P and their log-probabilities cancel
against the model's in the ELBO (the lecture's lines 3 → 4). Only the policy sites carry
parameters:

==========================  ==========================================================
``"tabular"``               stationary logits θ[s, a]: q(a|s) ∝ p(a|s)·exp θ[s, a]
``"tabular_time_varying"``  logits θ[t, s, a]: qₜ(a|s) ∝ p(a|s)·exp θ[t, s, a]
``"neural"``                an MLP from (state features, one-hot time) to θ[t, s, ·]
``"open_loop"``             qₜ(a) ∝ exp θ[t, a], the same for every state: a plan
``"full_posterior"``        also learns q(s₀) and qₜ(s'|s,a); it contains p(τ|O) itself
==========================  ==========================================================

They are ordinary guides in the sense of :mod:`pgm_control.guides.contract`: ``fit`` reads
their tables off their sites like any guide's. Conveniences on top: ``policy()`` (qₜ(a|s) as
(T, S, A) probabilities), ``exact_elbo(mdp, temperature=...)`` and ``optimum(mdp, ...)`` (the
yardstick of ``FitResult.gap``: ``optimal_elbo``, or ``log_evidence`` for ``"full_posterior"``),
and the optional capability ``natural_direction`` of the contract (all but ``"neural"``).

Parameters live on the guide object, not in Pyro's global param store: each call announces
them as ``param`` sites named ``"<guide name>.<parameter>"``
(:func:`~pgm_control.guides.contract.announce_parameters`), so ``pyro.infer.SVI`` and
``pyro.optim`` find and update them, two guides of the same family never share, a stale store
entry of another shape can never leak in, and ``pickle``/``torch.save`` round-trip the guide.
``Family(mdp).load_state_dict(fitted.state_dict())`` rebuilds a fitted guide.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from pgm_control.backward import _step_weights, log_evidence, optimal_elbo, soft_policy_evaluation
from pgm_control.elbo import trajectory_elbo
from pgm_control.estimators import exact_elbo
from pgm_control.forward import policy_state_distribution
from pgm_control.mdp import TabularMDP, _check_mdp
from pgm_control.validation import check_positive_int, check_temperature

from .contract import announce_parameters, particles_plate

__all__ = [
    "TabularGuide",
    "StationaryGuide",
    "TimeVaryingGuide",
    "NeuralGuide",
    "OpenLoopGuide",
    "FullPosteriorGuide",
    "TABULAR_GUIDES",
    "trajectory_elbo",
]


class _Categorical(dist.Categorical):
    """``Categorical(logits=...)`` that draws by inverse CDF: the same distribution, sampled
    ~10× faster than ``torch.multinomial`` for thousands of rows (the hot path of the
    Monte-Carlo estimators). Log-probabilities and enumeration are the parent's.
    """

    def sample(self, sample_shape=()):
        if len(sample_shape):
            return super().sample(sample_shape)
        with torch.no_grad():
            cdf = self.logits.exp().cumsum(-1)  # logits are normalised by the constructor
            u = torch.rand(cdf.shape[:-1] + (1,), dtype=cdf.dtype, device=cdf.device)
            idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
            return idx.clamp(max=self._num_events - 1).squeeze(-1)


def _soft_advantage(mdp, log_q, temperature, observed_steps) -> torch.Tensor:
    """Aₜ(s,a) = (Qₜ^q(s,a) − Vₜ^q(s))/α + log p(a|s) − log qₜ(a|s), indexed [t, s, a].

    The soft advantage of the policy q under the true dynamics (Q^q, V^q from
    :func:`pgm_control.backward.soft_policy_evaluation`); E_q[Aₜ(s,·)] = 0. It is what the ELBO's
    gradient with respect to a softmax logit θₜ(s,a) becomes once divided by the Fisher
    diagonal dₜ(s)·qₜ(a|s) — computed without that factor, so it never underflows. 0 where the
    prior forbids the action.
    """
    values = soft_policy_evaluation(
        mdp, log_q.exp(), temperature=temperature, observed_steps=observed_steps
    )
    alpha = values.temperature
    log_prior = mdp.log_action_prior.to(log_q.dtype).expand_as(log_q)
    allowed = torch.isfinite(log_prior) & torch.isfinite(log_q)
    entropy = torch.where(allowed, log_prior - log_q, torch.zeros_like(log_q))
    advantage = (values.q - values.v[:-1, :, None]) / alpha + entropy
    return torch.where(allowed, advantage, torch.zeros_like(advantage))


def _renormalised(logits: torch.Tensor) -> torch.Tensor:
    """logits − logsumexp(logits): what ``Categorical(logits=...)`` stores, row by row."""
    return logits - logits.logsumexp(dim=-1, keepdim=True)


def _weighted_mean(x: torch.Tensor, w: torch.Tensor, dim: int) -> torch.Tensor:
    """Σ w·x / Σ w over ``dim`` (w broadcast against x); the plain mean where Σ w = 0."""
    total = w.sum(dim, keepdim=True)
    weighted = (w * x).sum(dim, keepdim=True) / torch.where(total > 0, total, 1.0)
    return torch.where(total > 0, weighted, x.mean(dim, keepdim=True)).squeeze(dim)


class TabularGuide(torch.nn.Module):
    """Base class of the tabular families: sampling, parameter sites and the exact ELBO.

    A subclass defines ``log_policy()`` (T, S, A); the full-posterior family also overrides
    ``log_initial(mdp)`` and ``log_dynamics(mdp)``. The sampling code below is the one place
    the guide's sites are written, so every family samples exactly the model's sites.

    Args:
        mdp: the :class:`~pgm_control.TabularMDP` the guide is built for (fixes T, S, A).
        name: prefix of the guide's param-site names (default: the family name).
    """

    family = "tabular-base"
    shares_dynamics = True  # s_0 and s_{t+1} come from the true p0 and P
    attains_optimum = False  # True where the family contains the policy that attains `optimum`
    limit = None  # why a family cannot attain `optimum`, in a few words (FitResult's repr)

    def __init__(self, mdp: TabularMDP, *, name: str | None = None):
        super().__init__()
        mdp = _check_mdp(mdp)
        self.mdp = mdp
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"`name` must be a non-empty string, got {name!r}")
        self.name = name or self.family

    # ------------------------------------------------------------- the family
    def log_policy(self) -> torch.Tensor:
        """log qₜ(a|s), indexed as [t, s, a], shape (T, S, A); differentiable."""
        raise NotImplementedError

    def log_initial(self, mdp: TabularMDP) -> torch.Tensor:
        """log q(s₀), shape (S,): the true p0 for the structured families."""
        return mdp.log_initial

    def log_dynamics(self, mdp: TabularMDP) -> torch.Tensor | None:
        """log qₜ(s'|s,a), (T, S, A, S); None means the true P (shared dynamics)."""
        return None

    def log_tables(self, mdp: TabularMDP | None = None, **_model_kwargs):
        """The contract's optional speed-up: (log qₜ(a|s), log q(s₀), log qₜ(s'|s,a)), the last
        two None for the true p0 and P — exactly what ``read_guide_tables`` reads off this
        guide's sites (each row renormalised as ``Categorical(logits=...)`` does), without
        running them. Announces the parameters like a call does."""
        mdp = self._match(mdp)
        announce_parameters(self, self.name)
        log_q0, log_qd = self.log_initial(mdp), self.log_dynamics(mdp)
        return (
            _renormalised(self.log_policy()),
            None if log_q0 is mdp.log_initial else _renormalised(log_q0),
            None if log_qd is None else _renormalised(log_qd),
        )

    def policy(self) -> torch.Tensor:
        """qₜ(a|s) as probabilities, indexed as [t, s, a], shape (T, S, A), detached."""
        with torch.no_grad():
            return self.log_policy().exp()

    def natural_scale(self, mdp: TabularMDP | None = None) -> dict[str, torch.Tensor] | None:
        """The diagonal w·q of each softmax table's Fisher information, by parameter name.

        A row of logits θ[c, :] with probabilities q(·|c), visited with probability w(c) under
        the guide, has Fisher information w(c)·(diag q − q qᵀ); dividing the ELBO's gradient
        by w·q is a natural-gradient step (Kakade 2001). For the time-varying table a step of
        1 sets ``qₜ(a|s) ∝ p(a|s)·exp Qₜ^q(s,a)``: soft policy iteration, exact after T steps
        at any temperature. None for families without a table per context (``"neural"``).
        """
        return None

    def natural_direction(
        self, mdp: TabularMDP | None = None, *, temperature: float = 1.0, **_model_kwargs
    ) -> dict[str, torch.Tensor] | None:
        """The natural-gradient ascent direction of each parameter (the contract's optional
        capability), after the exact ELBO's gradients (of the loss −ELBO) were set.

        ``−∂loss/∂θ ÷ (w·q)`` (see :meth:`natural_scale`) where w·q > 0, else 0; None for
        families without a table per context.
        """
        scales = self.natural_scale(mdp)
        if scales is None:
            return None
        direction = {}
        for n, p in self.named_parameters():
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            w = scales[n]
            tiny = torch.finfo(w.dtype).tiny
            direction[n] = torch.where(w > 0, -g / w.clamp(min=tiny), torch.zeros_like(g))
        return direction

    def _visits(self, mdp, log_pi, log_q0=None, log_qd=None) -> torch.Tensor:
        """dₜ(s) under the guide (its own q(s₀) and qₜ(s'|s,a) when given), shape (T + 1, S)."""
        return policy_state_distribution(
            mdp,
            log_pi.exp(),
            initial=None if log_q0 is None else log_q0.exp(),
            dynamics=None if log_qd is None else log_qd.exp(),
        )

    def optimum(self, mdp: TabularMDP | None = None, *, temperature: float = 1.0) -> torch.Tensor:
        """The exact optimum this family is measured against: ``optimal_elbo`` here."""
        return optimal_elbo(self._match(mdp), temperature=temperature)

    # ------------------------------------------------------------- the ELBO
    def exact_elbo(self, mdp: TabularMDP | None = None, **model_kwargs) -> torch.Tensor:
        """The exact ELBO of this guide against ``control_model(mdp, **model_kwargs)``.

        A convenience: :func:`pgm_control.estimators.exact_elbo` of this guide, which reads its
        tables off its sites like any other guide's (differentiable).
        """
        return exact_elbo(self, self._match(mdp), **model_kwargs)

    # ------------------------------------------------------------- sampling
    def forward(
        self,
        mdp: TabularMDP | None = None,
        *,
        temperature: float = 1.0,
        num_particles: int | None = None,
        **_model_kwargs,
    ):
        """Sample ``s_0, a_0, s_1, …, s_T`` — the model's signature, the model's sites.

        ``temperature`` and other model arguments are accepted and ignored (the guide does not
        need them), so ``SVI(control_model, guide, ...).step(mdp, temperature=α)`` works.
        Returns the list of sampled states, like the model.
        """
        mdp = self._match(mdp)
        announce_parameters(self, self.name)
        return self._sample(mdp, num_particles)

    def _sample(self, mdp, num_particles):
        log_pi = self.log_policy()
        log_q0 = self.log_initial(mdp)
        log_qd = self.log_dynamics(mdp)
        log_P = mdp.log_transition
        with particles_plate(num_particles):
            s = pyro.sample("s_0", _Categorical(logits=log_q0))
            states = [s]
            for t in pyro.markov(range(mdp.horizon)):
                a = pyro.sample(f"a_{t}", _Categorical(logits=log_pi[t, s]))
                logits = log_P[s, a] if log_qd is None else log_qd[t, s, a]
                s = pyro.sample(f"s_{t + 1}", _Categorical(logits=logits))
                states.append(s)
        return states

    # ------------------------------------------------------------- plumbing
    def _match(self, mdp):
        if mdp is None:
            return self.mdp
        mdp = _check_mdp(mdp)
        own = (self.mdp.horizon, self.mdp.num_states, self.mdp.num_actions)
        got = (mdp.horizon, mdp.num_states, mdp.num_actions)
        if got != own:
            raise ValueError(
                f"this {self.family!r} guide was built for (T, S, A) = {own}; the model's `mdp` "
                f"has {got}. Build a new guide for this MDP."
            )
        return mdp

    def _table(self, *shape) -> torch.nn.Parameter:
        """A zero-initialised logit table: the guide starts at the action prior."""
        return torch.nn.Parameter(
            torch.zeros(shape, dtype=self.mdp.float_dtype, device=self.mdp.device)
        )

    def extra_repr(self) -> str:
        m = self.mdp
        return f"name={self.name!r}, T={m.horizon}, S={m.num_states}, A={m.num_actions}"


class StationaryGuide(TabularGuide):
    """``"tabular"``: one policy for every step, q(a|s) ∝ p(a|s)·exp θ[s, a], θ of shape (S, A).

    On a finite horizon its best ELBO falls short of :func:`pgm_control.optimal_elbo`: the
    soft-optimal policy πₜ(a|s) depends on the steps left, T − t (near the end there is no time
    to reach a reward), and one table for every t cannot follow it, so the gap to
    ``optimal_elbo`` stays open whatever the optimiser (it measures what time-dependence is
    worth; the family's own limit is what ``fit`` converges to). The discounted,
    infinite-horizon problem has a stationary optimum:
    :func:`pgm_control.discounted_soft_value_iteration`.
    """

    family = "tabular"
    limit = "one q(a|s) for every t, while the optimal policy depends on the steps left"

    def __init__(self, mdp: TabularMDP, *, name: str | None = None):
        super().__init__(mdp, name=name)
        self.logits = self._table(mdp.num_states, mdp.num_actions)  # indexed as θ[s, a]

    def log_policy(self):
        log_q = torch.log_softmax(self.mdp.log_action_prior + self.logits, dim=-1)
        return log_q.expand(self.mdp.horizon, -1, -1)

    def natural_scale(self, mdp=None):
        mdp = self._match(mdp)
        with torch.no_grad():
            log_pi = self.log_policy()
            d = self._visits(mdp, log_pi)[:-1]
            return {"logits": (d[:, :, None] * log_pi.exp()).sum(0)}  # Σₜ dₜ(s)·q(a|s)

    def natural_direction(self, mdp=None, *, temperature=1.0, observed_steps=None, **_kw):
        """Σₜ dₜ(s)·Aₜ(s,a) / Σₜ dₜ(s): the soft advantage averaged over the visits of s
        (the gradient ÷ its Fisher diagonal Σₜ dₜ(s)·q(a|s), with q cancelled, not divided)."""
        mdp = self._match(mdp)
        with torch.no_grad():
            log_q = self.log_policy()
            advantage = _soft_advantage(mdp, log_q, temperature, observed_steps)
            d = self._visits(mdp, log_q)[:-1, :, None]
            return {"logits": _weighted_mean(advantage, d.expand_as(advantage), 0)}


class TimeVaryingGuide(TabularGuide):
    """``"tabular_time_varying"``: qₜ(a|s) ∝ p(a|s)·exp θ[t, s, a], θ of shape (T, S, A).

    Its family contains the expected-backup soft-optimal policy, so its best ELBO is
    :func:`pgm_control.optimal_elbo` (Levine 2018, §4).
    """

    family = "tabular_time_varying"
    attains_optimum = True

    def __init__(self, mdp: TabularMDP, *, name: str | None = None):
        super().__init__(mdp, name=name)
        m = mdp
        self.logits = self._table(m.horizon, m.num_states, m.num_actions)  # θ[t, s, a]

    def log_policy(self):
        return torch.log_softmax(self.mdp.log_action_prior + self.logits, dim=-1)

    def natural_scale(self, mdp=None):
        mdp = self._match(mdp)
        with torch.no_grad():
            log_pi = self.log_policy()
            d = self._visits(mdp, log_pi)[:-1]
            return {"logits": d[:, :, None] * log_pi.exp()}  # dₜ(s)·qₜ(a|s)

    def natural_direction(
        self,
        mdp: TabularMDP | None = None,
        *,
        temperature: float = 1.0,
        observed_steps=None,
        **_model_kwargs,
    ) -> dict[str, torch.Tensor]:
        """The natural gradient of the table: the soft advantage of the current policy.

        ``Δθₜ(s,a) = (Qₜ^q(s,a) − Vₜ^q(s))/α + log p(a|s) − log qₜ(a|s)`` (:func:`_soft_advantage`).
        It equals ∂ELBO/∂θ ÷ (dₜ(s)·qₜ(a|s)) where that is defined (Kakade 2001), but carries no
        factor dₜ·qₜ, so an action whose probability underflowed to 0 keeps its direction and
        can recover. A step of 1 sets qₜ ∝ p(a|s)·exp(Qₜ^q/α): soft policy iteration, exact
        after T steps at any temperature.
        """
        mdp = self._match(mdp)
        with torch.no_grad():
            log_q = self.log_policy()
            return {"logits": _soft_advantage(mdp, log_q, temperature, observed_steps)}


class OpenLoopGuide(TabularGuide):
    """``"open_loop"``: qₜ(a) ∝ exp θ[t, a], blind to the state — a plan, not a policy.

    Under stochastic dynamics it cannot react to where it lands, so its best ELBO falls short of
    :func:`pgm_control.optimal_elbo` (the gap measures what closing the loop is worth). It needs
    an action prior with full support (a state-independent q cannot avoid forbidden actions).
    """

    family = "open_loop"
    limit = "a plan q_t(a) cannot react to the state the dynamics lead to"

    def __init__(self, mdp: TabularMDP, *, name: str | None = None):
        super().__init__(mdp, name=name)
        if (mdp.action_prior == 0).any():
            raise ValueError(
                "the 'open_loop' guide needs an `action_prior` with full support: a plan qₜ(a) "
                "cannot avoid actions the prior forbids in some states"
            )
        self.logits = self._table(mdp.horizon, mdp.num_actions)  # indexed as θ[t, a]

    def log_policy(self):
        log_q = torch.log_softmax(self.logits, dim=-1)
        return log_q[:, None, :].expand(-1, self.mdp.num_states, -1)

    def natural_scale(self, mdp=None):
        self._match(mdp)
        with torch.no_grad():
            return {"logits": torch.softmax(self.logits, dim=-1)}  # Σ_s dₜ(s)·qₜ(a) = qₜ(a)

    def natural_direction(self, mdp=None, *, temperature=1.0, observed_steps=None, **_kw):
        """Σ_s dₜ(s)·Aₜ(s,a): the soft advantage averaged over where the plan may be."""
        mdp = self._match(mdp)
        with torch.no_grad():
            log_q = self.log_policy()
            advantage = _soft_advantage(mdp, log_q, temperature, observed_steps)
            d = self._visits(mdp, log_q)[:-1, :, None]
            return {"logits": _weighted_mean(advantage, d.expand_as(advantage), 1)}


class NeuralGuide(TabularGuide):
    """``"neural"``: an MLP maps (features of s, one-hot of t) to the logits of qₜ(·|s).

    ``qₜ(a|s) ∝ p(a|s)·exp f([φ(s), e_t])[a]`` with φ one-hot by default. The last layer starts
    at zero, so the guide starts at the action prior like the tables do.

    Args:
        mdp: the MDP.
        features: φ as an (S, F) tensor (default: the (S, S) identity, i.e. one-hot states).
        hidden: widths of the hidden layers.
        time_input: feed a one-hot of t (a time-varying policy); False gives a stationary one.
        seed: seeds the initial weights.
        name: prefix of the param-site names.
    """

    family = "neural"

    def __init__(
        self,
        mdp: TabularMDP,
        *,
        features: torch.Tensor | None = None,
        hidden: tuple[int, ...] = (64,),
        time_input: bool = True,
        seed: int = 0,
        name: str | None = None,
    ):
        super().__init__(mdp, name=name)
        S, T, A = mdp.num_states, mdp.horizon, mdp.num_actions
        kw = {"dtype": mdp.float_dtype, "device": mdp.device}
        if features is None:
            features = torch.eye(S, **kw)
        features = torch.as_tensor(features, **kw)
        if features.ndim != 2 or features.shape[0] != S:
            raise ValueError(
                f"`features` must have shape (S, F) with S = {S}, got {tuple(features.shape)}"
            )
        if not torch.isfinite(features).all():
            raise ValueError("`features` must be finite")
        hidden = tuple(check_positive_int("hidden", h) for h in hidden)
        # inputs indexed as x[t, s, :] = [φ(s), e_t]
        phi = features[None].expand(T, -1, -1)
        parts = [phi]
        if time_input:
            parts.append(torch.eye(T, **kw)[:, None, :].expand(-1, S, -1))
        self.register_buffer("inputs", torch.cat(parts, dim=-1))
        g = torch.Generator(device=mdp.device).manual_seed(int(seed))
        layers, width = [], self.inputs.shape[-1]
        for h in hidden:
            lin = torch.nn.Linear(width, h, **kw)
            bound = width**-0.5
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=g)
                lin.bias.uniform_(-bound, bound, generator=g)
            layers += [lin, torch.nn.Tanh()]
            width = h
        last = torch.nn.Linear(width, A, **kw)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        self.net = torch.nn.Sequential(*layers, last)

    def log_policy(self):
        return torch.log_softmax(self.mdp.log_action_prior + self.net(self.inputs), dim=-1)


class FullPosteriorGuide(TimeVaryingGuide):
    """``"full_posterior"``: learns q(s₀) and qₜ(s'|s,a) too, instead of sharing p0 and P.

    ``q(τ) = q(s₀)·Πₜ qₜ(aₜ|sₜ)·qₜ(sₜ₊₁|sₜ,aₜ)``, with ``q(s₀) ∝ p0·exp θ₀`` and
    ``qₜ(s'|s,a) ∝ P(s'|s,a)·exp θ[t,s,a,s']`` (so it never leaves the support of p0 and P).
    The family contains the exact posterior p(τ|O), so its best ELBO is
    :func:`pgm_control.log_evidence` — and its learned dynamics are the *optimistic* posterior
    dynamics (Levine 2018, §4.1): on the lottery MDP it believes it wins far more often than
    it does. ``dynamics()`` and ``initial()`` show what it learned.
    """

    family = "full_posterior"
    shares_dynamics = False

    def __init__(self, mdp: TabularMDP, *, name: str | None = None):
        super().__init__(mdp, name=name)
        T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
        self.initial_logits = self._table(S)  # indexed as θ₀[s]
        self.dynamics_logits = self._table(T, S, A, S)  # indexed as θ[t, s, a, s']

    def log_initial(self, mdp):
        return torch.log_softmax(mdp.log_initial + self.initial_logits, dim=-1)

    def log_dynamics(self, mdp):
        return torch.log_softmax(mdp.log_transition + self.dynamics_logits, dim=-1)

    def natural_scale(self, mdp=None):
        mdp = self._match(mdp)
        with torch.no_grad():
            log_pi, log_q0, log_qd = (
                self.log_policy(),
                self.log_initial(mdp),
                self.log_dynamics(mdp),
            )
            d = self._visits(mdp, log_pi, log_q0, log_qd)[:-1]
            occupancy = d[:, :, None] * log_pi.exp()  # q(sₜ, aₜ)
            return {
                "logits": occupancy,
                "initial_logits": log_q0.exp(),
                "dynamics_logits": occupancy[..., None] * log_qd.exp(),
            }

    def natural_direction(self, mdp=None, *, temperature=1.0, observed_steps=None, **_kw):
        """The soft advantages of all three tables under the guide's *own* dynamics.

        With Vₜ the guide's soft value, ``Vₜ(s) = Σₐ qₜ(a|s)·Gₜ(s,a)``,
        ``Gₜ(s,a) = log p(a|s) − log qₜ(a|s) + Σ_s' qₜ(s'|s,a)·Hₜ(s,a,s')`` and
        ``Hₜ(s,a,s') = r/α + log P(s'|s,a) − log qₜ(s'|s,a) + Vₜ₊₁(s')``, the directions are
        H − E_q H (dynamics), G − V (policy) and log p0 − log q0 + V₀ − E (initial): each
        table's gradient ÷ its Fisher diagonal, without the underflowing occupancy factor. A
        step of 1 sets every table to the exact posterior's from the end backwards.
        """
        mdp = self._match(mdp)
        with torch.no_grad():
            alpha = check_temperature(temperature)
            w = _step_weights(mdp, observed_steps).tolist()
            log_pi, log_q0, log_qd = (
                self.log_policy(),
                self.log_initial(mdp),
                self.log_dynamics(mdp),
            )
            log_prior, log_P = mdp.log_action_prior, mdp.log_transition
            on_a, on_s = torch.isfinite(log_prior), torch.isfinite(log_P)
            r = mdp.reward.to(log_pi.dtype) / alpha
            zero = torch.zeros((), dtype=log_pi.dtype, device=log_pi.device)
            v_next = torch.zeros(mdp.num_states, dtype=log_pi.dtype, device=log_pi.device)
            d_pi, d_dyn = torch.empty_like(log_pi), torch.empty_like(log_qd)
            for t in reversed(range(mdp.horizon)):  # indexed h[s, a, s']
                h = torch.where(on_s, w[t] * r + log_P - log_qd[t], zero) + v_next
                mean_h = (log_qd[t].exp() * torch.where(on_s, h, zero)).sum(-1)
                d_dyn[t] = torch.where(on_s, h - mean_h[..., None], zero)
                g = torch.where(on_a, log_prior - log_pi[t], zero) + mean_h
                v = (log_pi[t].exp() * torch.where(on_a, g, zero)).sum(-1)
                d_pi[t] = torch.where(on_a, g - v[:, None], zero)
                v_next = v
            on_0 = torch.isfinite(mdp.log_initial)
            g0 = torch.where(on_0, mdp.log_initial - log_q0, zero) + v_next
            mean_0 = (log_q0.exp() * torch.where(on_0, g0, zero)).sum()
            return {
                "logits": d_pi,
                "initial_logits": torch.where(on_0, g0 - mean_0, zero),
                "dynamics_logits": d_dyn,
            }

    def optimum(self, mdp=None, *, temperature=1.0):
        """``log_evidence``: the family holds p(τ|O), so the ELBO can reach log p(O)."""
        return log_evidence(self._match(mdp), temperature=temperature)

    def dynamics(self) -> torch.Tensor:
        """The learned qₜ(s'|s,a), indexed as [t, s, a, s'], shape (T, S, A, S), detached."""
        with torch.no_grad():
            return self.log_dynamics(self.mdp).exp()

    def initial(self) -> torch.Tensor:
        """The learned q(s₀), shape (S,), detached."""
        with torch.no_grad():
            return self.log_initial(self.mdp).exp()


TABULAR_GUIDES: dict = {
    "tabular": StationaryGuide,
    "tabular_time_varying": TimeVaryingGuide,
    "neural": NeuralGuide,
    "open_loop": OpenLoopGuide,
    "full_posterior": FullPosteriorGuide,
}
