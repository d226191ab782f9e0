"""Tabular MaxEnt IRL: learn r_ψ so that p(τ | O, ψ) explains the demonstrations.

The optimality PGM with a learned reward, p(Oₜ=1 | sₜ,aₜ,sₜ₊₁, ψ) = exp(r_ψ(sₜ,aₜ,sₜ₊₁)/α),
gives the posterior over trajectories (lecture notes 002, "Probabilistic Graphical Model" and
"The IRL partition function"; Ziebart et al. 2008)::

    p(τ | O, ψ) = p(τ)·exp(Σₜ r_ψ/α) / p(O | ψ),     p(τ) = p0(s₀)·Πₜ p(aₜ|sₜ)·P(sₜ₊₁|sₜ,aₜ)

so the mean log-likelihood of N demonstrations is, up to the ψ-free dynamics terms log p(τₙ)::

    L(ψ) = (1/N)·Σₙ Σₜ r_ψ(sₜ,aₜ,sₜ₊₁)/α − log p(O | ψ)
    ∇ψL  = E_demos[Σₜ ∇ψ r_ψ]/α − E_{p(τ|O,ψ)}[Σₜ ∇ψ r_ψ]/α

because ∂ log p(O|ψ)/∂r(s,a,s') = (1/α)·Σₜ p(sₜ=s, aₜ=a, sₜ₊₁=s' | O, ψ). log p(O | ψ) is the
library's backward messages (:func:`pgm_control.log_evidence`). The gradient has two routes:
autograd through those messages (:func:`irl_log_likelihood`, a neural reward, masked
demonstrations), and — the learner's default for a linear reward — the expected features
from the forward–backward marginals, contracted without an autograd graph
(:func:`pgm_control.irl_marginals.log_normaliser_and_counts`); the tests hold one against the
other. For a linear reward r_ψ = ψ·f the gradient is the feature residual (μ̂ − μ_ψ)/α and L
is concave: the optimum matches the expert's feature expectations.

``backup="expected"`` swaps log p(O | ψ) for the best ELBO Σ_s p0(s)·V₀(s)/α of the expected
backup (:func:`pgm_control.optimal_elbo`): Ziebart 2010's maximum *causal* entropy IRL, the
model of imitation's ``MCEIRL``. Its gradient is E_demos[Σ∇r] − E_π[Σ∇r] with π the
soft-optimal policy acting in the true dynamics (envelope theorem), and L equals the causal
log-likelihood Σₜ log πₜ(aₜ|sₜ) up to a term of mean zero. Under stochastic dynamics this is the
model of demonstrators who act in the real env; the optimistic posterior also tilts the dynamics
(Levine 2018, §4.1) and is exact when P and p0 are deterministic.

``objective="causal"`` (with ``backup="expected"``) maximises that causal log-likelihood itself,
the maximum-likelihood estimator of the maximum-causal-entropy model (Ziebart 2010)::

    L_c(ψ) = (1/N)·Σₙ Σₜ log[πψ,ₜ(aₜ|sₜ)/p(aₜ|sₜ)] = (1/N)·Σₙ Σₜ (Qₜ(sₜ,aₜ) − Vₜ(sₜ))/α
           = L(ψ) + (1/N)·Σₙ Σₜ (E_{s'~P(·|sₜ,aₜ)}[Vₜ₊₁(s')] − Vₜ₊₁(sₜ₊₁))/α

The last sum has mean zero in the true dynamics but depends on ψ, so with N sampled
demonstrations the two estimators differ: ``"features"`` (the default) matches E_demos[Σ f],
which carries the noise of every slip sₜ₊₁ ~ P, while ``"causal"`` conditions on the observed
states and uses only the demonstrators' choices aₜ | sₜ. With exact expected counts the extra
sum is exactly zero and both are the same function (the features form is then used). L_c
need not be concave in ψ (a difference of convex soft values); LBFGS reached a zero gradient
on every problem measured (README, "Inverse RL: MaxEnt IRL").

``prior_scale=σ`` adds a Gaussian log-prior ψ ~ N(0, σ²·I) on the parameters (MAP): the
objective per demonstration becomes L(ψ) + log p(ψ)/N = L(ψ) − ‖ψ‖²/(2σ²·N) + const, which
keeps a weight finite when the data never show its feature (e.g. no demonstration reaches a
goal). Exact expected counts are the N → ∞ limit, where the prior's weight vanishes.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .backward import _backward, soft_value_iteration
from .demonstrations import as_demonstrations
from .irl_marginals import compiled_linear_objective, linear_objective
from .irl_result import IRLResult
from .mdp import TabularMDP, _check_mdp
from .optimizers import LeanAdam
from .svi import _few_threads, _small
from .validation import check_int, check_positive_float, check_positive_int, check_temperature

__all__ = ["maxent_irl", "irl_log_likelihood", "OPTIMIZERS", "BACKUPS", "OBJECTIVES", "GRADIENTS"]

OPTIMIZERS = ("lbfgs", "adam", "sgd")
BACKUPS = ("optimistic", "expected")
OBJECTIVES = ("features", "causal")
GRADIENTS = ("marginals", "autograd")
_DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.05, "sgd": 0.1}


# ------------------------------------------------------------------ inputs
def _check_features(features, mdp: TabularMDP):
    """Features as a (S, A, S, F)-broadcastable tensor in the MDP's dtype, or a module."""
    S, A = mdp.num_states, mdp.num_actions
    if isinstance(features, torch.nn.Module):
        return features
    expected = f"(S, F) = ({S}, F), (S, A, F) = ({S}, {A}, F) or (S, A, S, F) = ({S}, {A}, {S}, F)"
    if isinstance(features, np.ndarray):
        features = torch.as_tensor(features)
    if not isinstance(features, torch.Tensor):
        raise TypeError(
            f"`features` must be a tensor of shape {expected}, or a torch.nn.Module (a neural "
            f"reward), got {type(features).__name__}"
        )
    shapes = {2: (S,), 3: (S, A), 4: (S, A, S)}
    lead = tuple(features.shape[:-1])
    if features.ndim not in shapes or lead != shapes[features.ndim] or features.shape[-1] < 1:
        raise ValueError(
            f"`features` of shape {tuple(features.shape)} matches neither S, (S, A) nor "
            f"(S, A, S) of this MDP: give {expected}"
        )
    if features.is_complex():
        raise TypeError(
            f"`features` must be real (bool/int indicators are fine), got {features.dtype}"
        )
    features = features.detach().to(device=mdp.device, dtype=mdp.float_dtype)
    if not torch.isfinite(features).all():
        bad = "NaN" if torch.isnan(features).any() else "inf"
        idx = tuple(torch.nonzero(~torch.isfinite(features))[0].tolist())
        raise ValueError(f"`features` contains {bad} (first at index {idx}); all must be finite")
    return features


def _as_table(r: torch.Tensor, mdp: TabularMDP, where: str) -> torch.Tensor:
    """A reward of shape (S,), (S, A) or (S, A, S) broadcast to r[s, a, s'] (S, A, S)."""
    S, A = mdp.num_states, mdp.num_actions
    if not isinstance(r, torch.Tensor):
        raise TypeError(f"{where} must return a tensor, got {type(r).__name__}")
    if r.shape == (S, 1) and A != 1:
        r = r[:, 0]
    if r.shape == (S,):
        r = r[:, None, None]
    elif r.shape == (S, A):
        r = r[:, :, None]
    elif r.shape != (S, A, S):
        raise ValueError(
            f"{where} returned shape {tuple(r.shape)}; a reward must have shape (S,) = {(S,)}, "
            f"(S, A) = {(S, A)} or (S, A, S) = {(S, A, S)}"
        )
    return r.to(mdp.float_dtype).expand(S, A, S)


def _expert_statistics(mdp: TabularMDP, demonstrations):
    """(counts (S,A,S) summed over t, end states (N, 2) [k, s_k] or None) of the data.

    ``demonstrations`` may also be exact expected counts ρ(s,a,s') (a float (S,A,S) tensor,
    see :func:`pgm_control.demonstrations.expected_counts`).
    """
    S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
    if isinstance(demonstrations, torch.Tensor) and demonstrations.is_floating_point():
        rho = demonstrations.detach().to(device=mdp.device, dtype=mdp.float_dtype)
        if rho.shape != (S, A, S):
            raise ValueError(
                "`demonstrations` given as exact expected counts must have shape (S, A, S) = "
                f"{(S, A, S)}, got {tuple(rho.shape)}"
            )
        if not torch.isfinite(rho).all() or (rho < 0).any():
            raise ValueError("`demonstrations` counts must be finite and non-negative")
        total = float(rho.sum())
        if not math.isclose(total, T, rel_tol=1e-4):
            raise ValueError(
                f"`demonstrations` counts must sum to the horizon T = {T} (one transition per "
                f"step), got {total:.6g}"
            )
        return rho, None
    demos = as_demonstrations(demonstrations).check(mdp)
    counts = demos.counts(S, A, by_time=False, dtype=mdp.float_dtype)
    ends = None
    if demos.mask is not None:  # where each episode stopped: marginalise its unseen tail
        k = demos.lengths.to(mdp.device)
        ends = torch.stack([k, demos.states.gather(1, k[:, None])[:, 0]], dim=-1)
    return counts, ends


# ------------------------------------------------------------------ the objective
def _with_reward(mdp: TabularMDP, r: torch.Tensor) -> TabularMDP:
    """``mdp`` with the reward table ``r`` (S, A, S) swapped in, P/p0/prior shared.

    ``mdp.replace`` validates every table again (≈ 5 passes over the S·A·S entries, more than
    the messages themselves at S = 500); the fixed tables were validated once, and a
    non-finite r shows up as a non-finite L, which the learner refuses.
    """
    return mdp.with_reward(r)


def _log_likelihood(mdp, r, counts, ends, alpha, backup, data_term=None):
    """L(ψ) for the reward table ``r`` (S, A, S): data term − normaliser (see module doc).

    ``data_term``: E_demos[Σₜ r]/α when the caller has it cheaper (linear features).
    """
    m = _with_reward(mdp, r)
    _, v_scaled = _backward(m, alpha, backup)  # the library's backward messages, V/α
    if backup == "optimistic":  # log p(O|ψ) = log Σ p0·exp(V₀/α) (= log_evidence)
        log_z = torch.logsumexp(m.log_initial + v_scaled[0], dim=0)
    else:  # Σ p0·V₀/α (= optimal_elbo)
        log_z = (m.initial * v_scaled[0]).sum()
    data = (counts * r).sum() / alpha if data_term is None else data_term
    if ends is not None:  # p(τ_{0:k}, O) carries βₖ(sₖ) = exp(Vₖ(sₖ)/α) for the unseen tail
        data = data + v_scaled[ends[:, 0], ends[:, 1]].mean()
    return data - log_z


def _is_exact_counts(demonstrations) -> bool:
    """Whether ``demonstrations`` are exact expected counts ρ (a float tensor), not samples."""
    return isinstance(demonstrations, torch.Tensor) and demonstrations.is_floating_point()


def _choice_counts(mdp: TabularMDP, demonstrations) -> torch.Tensor:
    """ĉₜ(s,a) = (1/N)·Σₙ 1[sₜ=s, aₜ=a] over observed steps (T, S, A): the causal data."""
    S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
    demos = as_demonstrations(demonstrations).check(mdp)
    N = demos.num_demonstrations
    t = torch.arange(T, device=mdp.device)
    flat = (t * S + demos.states[:, :-1]) * A + demos.actions
    w = demos.step_weights(mdp.float_dtype).to(mdp.device)
    c = torch.zeros(T * S * A, dtype=mdp.float_dtype, device=mdp.device)
    c = c.index_add(0, flat.reshape(-1), w.reshape(-1)).view(T, S, A) / N
    forbidden = (c > 0) & torch.isinf(mdp.log_action_prior)
    if forbidden.any():
        _, s, a = torch.nonzero(forbidden)[0].tolist()
        raise ValueError(
            f"`demonstrations` take action {a} in state {s}, which the MDP's action prior "
            "forbids (p(a|s) = 0): their causal likelihood is −inf"
        )
    return c


def _causal_log_likelihood(mdp, r, choices, alpha):
    """L_c(ψ) = Σₜ Σ_{s,a} ĉₜ(s,a)·(Qₜ(s,a) − Vₜ(s))/α, the expected backup's messages."""
    q_scaled, v_scaled = _backward(_with_reward(mdp, r), alpha, "expected")
    log_ratio = q_scaled - v_scaled[:-1, :, None]  # log πₜ(a|s)/p(a|s)
    return torch.where(choices > 0, choices * log_ratio, torch.zeros_like(log_ratio)).sum()


def _check_objective(objective, backup):
    if objective not in OBJECTIVES:
        raise ValueError(f"`objective` must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "causal" and backup != "expected":
        raise ValueError(
            "`objective='causal'` is the likelihood of the maximum causal entropy model: use it "
            "with `backup='expected'` (the optimistic posterior's likelihood is "
            "`objective='features'`)"
        )
    return objective


def irl_log_likelihood(
    mdp: TabularMDP,
    reward: torch.Tensor,
    demonstrations,
    *,
    temperature: float = 1.0,
    backup: str = "optimistic",
    objective: str = "features",
) -> torch.Tensor:
    """L(r) = (1/N)·Σₙ log p(τₙ | O, r) + const, the MaxEnt IRL objective of a reward table.

    ``L = E_demos[Σₜ r(sₜ,aₜ,sₜ₊₁)]/α − log p(O | r)`` (``backup="optimistic"``; Levine 2018,
    IRL lecture) or ``− Σ_s p0·V₀/α`` (``"expected"``, Ziebart 2010). Differentiable in
    ``reward``: ∂L/∂r(s,a,s') = (empirical − expected counts)/α. ``objective="causal"``
    (``backup="expected"`` only) gives ``L_c = (1/N)·Σₙ Σₜ log πᵣ,ₜ(aₜ|sₜ)/p(aₜ|sₜ)`` instead,
    the causal log-likelihood of the demonstrators' choices (module docstring); for exact
    expected counts it equals L.

    Args:
        mdp: supplies P, p0, T and the action prior (its reward is ignored).
        reward: (S,), (S, A) or (S, A, S) table.
        demonstrations: :class:`Demonstrations` (or what :func:`as_demonstrations` takes), or
            exact expected counts ρ (S, A, S).
        temperature: α > 0.
        backup: "optimistic" or "expected".
        objective: "features" (L) or "causal" (L_c; with ``backup="expected"``).

    Returns:
        A scalar in the MDP's dtype (nats per demonstration).
    """
    mdp = _check_mdp(mdp)
    alpha = check_temperature(temperature)
    backup = _check_backup(backup)
    objective = _check_objective(objective, backup)
    r = _as_table(torch.as_tensor(reward, device=mdp.device), mdp, "`reward`")
    if objective == "causal" and not _is_exact_counts(demonstrations):
        return _causal_log_likelihood(mdp, r, _choice_counts(mdp, demonstrations), alpha)
    counts, ends = _expert_statistics(mdp, demonstrations)
    return _log_likelihood(mdp, r, counts, ends, alpha, backup)


def _check_backup(backup):
    if backup not in BACKUPS:
        raise ValueError(f"`backup` must be one of {BACKUPS}, got {backup!r}")
    return backup


# ------------------------------------------------------------------ the learner
class _Linear(torch.nn.Module):
    """r_ψ = ψ·f as a module: one parameter ``weights`` (F,)."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.register_buffer("features", features)
        self.weights = torch.nn.Parameter(torch.zeros(features.shape[-1], dtype=features.dtype))

    def forward(self):
        return self.features @ self.weights


def _contract(counts: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Σ counts·f over the reward's arguments: counts (S,), (S, A) or (S, A, S), features (…, F)."""
    return counts.reshape(-1) @ features.reshape(counts.numel(), -1)


def _reduce_counts(counts: torch.Tensor, ndim: int) -> torch.Tensor:
    """(S, A, S) counts summed down to a reward of ``ndim`` arguments: (S,), (S, A) or as is."""
    return counts.sum((1, 2)) if ndim == 1 else counts.sum(2) if ndim == 2 else counts


_SPARSE_MIN_STATES = 64  # below this a dense (S·A, S) matvec beats the successor-list gathers
_SPARSE_MAX_DENSITY = 0.1  # largest successor count / S for which the lists pay off


def _evaluation_layout(mdp: TabularMDP, reward_ndim: int) -> TabularMDP:
    """The MDP the marginals route evaluates on: sparse dynamics when P is dense but sparse.

    A random MDP with ≤ 5 successors of 500 states costs ∝ K·S·A on successor lists instead of
    S·A·S (:class:`~pgm_control.dynamics.SparseDynamics`); the answers agree to round-off.
    (S, A, S) rewards stay dense (their counts need the dense posterior dynamics).
    """
    if mdp.is_sparse or reward_ndim == 3 or mdp.num_states < _SPARSE_MIN_STATES:
        return mdp
    successors = int((mdp.transition > 0).sum(-1).max())
    if successors > _SPARSE_MAX_DENSITY * mdp.num_states:
        return mdp
    return mdp.replace(transition=mdp.transition.to_sparse())


class _Evaluations:
    """The last few (parameters, −L, residual, gradient) evaluated: LBFGS asks again for the
    point its line search ended on at the start of the next step (one ``step`` per iteration),
    which is then served from here instead of running the messages twice."""

    def __init__(self, size: int = 4):
        self.size, self.entries = size, []

    def find(self, params):
        for entry in self.entries:
            if all(torch.equal(x, p) for x, p in zip(entry[0], params)):
                return entry
        return None

    def add(self, params, loss, res):
        grads = [p.grad.detach().clone() for p in params]
        point = [p.detach().clone() for p in params]
        self.entries = [(point, loss, res, grads), *self.entries]
        del self.entries[self.size :]


def _compile(objective_fn, args) -> float:
    """Run the compiled evaluation once (torch.compile compiles at the first call): seconds."""
    tic = time.perf_counter()
    try:
        with torch.inference_mode():
            objective_fn(*args)
    except Exception as exc:  # inductor/dynamo failures come in many types
        root = exc  # dynamo wraps the backend's error (BackendCompilerFailed): name the cause
        while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None:
            root = inner
        first = str(root).strip().splitlines()[0] if str(root).strip() else ""
        raise RuntimeError(
            f"`compile=True`: torch.compile could not compile the evaluation "
            f"({type(root).__name__}: {first}); on CPU inductor needs a working C++ "
            "compiler. Use `compile=False` (the eager route: the same answer)"
        ) from exc
    return time.perf_counter() - tic


def _make_optimizer(name, params, lr):
    if name == "lbfgs":
        return torch.optim.LBFGS(
            # one iteration per step; max_eval bounds the line search (its default,
            # 1.25·max_iter = 1, would leave the strong-Wolfe search no evaluation at all)
            params, lr=lr, max_iter=1, max_eval=26, history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=0.0, tolerance_change=0.0,
        )  # fmt: skip
    if name == "adam":  # torch's fused update, called without the Optimizer wrapper
        return LeanAdam(params, lr) if LeanAdam.supports(params) else torch.optim.Adam(params, lr)
    return torch.optim.SGD(params, lr=lr)


def maxent_irl(
    mdp: TabularMDP,
    features,
    demonstrations,
    *,
    temperature: float = 1.0,
    backup: str = "optimistic",
    objective: str = "features",
    prior_scale: float | None = None,
    steps: int = 200,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    tol: float = 1e-7,
    seed: int = 0,
    progress: bool = True,
    gradient: str = "marginals",
    compile: bool = False,
) -> IRLResult:
    """Maximum-entropy IRL with exact inference: maximise L(ψ) by the library's messages.

    ``L(ψ) = (1/N)·Σₙ Σₜ r_ψ(sₜ,aₜ,sₜ₊₁)/α − log p(O|ψ)``, ``∇ψL = (E_demos − E_{p(τ|O,ψ)})
    [Σₜ ∇ψ r_ψ]/α`` (lecture notes 002, "The IRL partition function" and "The MaxEnt IRL
    algorithm"; Ziebart et al. 2008); see the module docstring for the derivation and
    ``backup="expected"``.

    Args:
        mdp: supplies the dynamics P, start distribution p0, horizon T and action prior; its
            reward is ignored (each candidate r_ψ is swapped into a copy of ``mdp``).
        features: the reward's form. A tensor for a linear reward r_ψ = ψ·f: (S, F) (the
            reward of the state acted in, as in imitation's MCE IRL), (S, A, F) or
            (S, A, S, F). Or a ``torch.nn.Module`` (a neural reward) called as
            ``module(torch.arange(S))`` and returning (S,), (S, A) or (S, A, S) rewards, on
            the MDP's device; its parameters are trained in place.
        demonstrations: :class:`~pgm_control.Demonstrations`, :class:`~pgm_control.Trajectories`,
            a ``(states, actions)`` pair (N, T+1), (N, T), or the expert's exact expected counts
            ρ(s,a,s') (S, A, S) (:func:`~pgm_control.demonstrations.expected_counts`). Episodes
            that ended early (a mask) contribute their observed prefix; the unseen tail is
            marginalised (the term Vₖ(sₖ)/α).
        temperature: α > 0 of p(O=1|·) = exp(r/α).
        backup: "optimistic" (log p(O|ψ), the lecture's posterior; exact for deterministic
            P and p0) or "expected" (maximum causal entropy, Ziebart 2010; imitation's model).
        objective: "features" (default): L(ψ), whose optimum matches the demonstrations'
            feature counts. "causal" (``backup="expected"`` only): the causal log-likelihood
            L_c(ψ) = (1/N)·Σₙ Σₜ log πψ,ₜ(aₜ|sₜ)/p(aₜ|sₜ), the maximum-likelihood estimator of
            the maximum causal entropy model, which conditions on the observed states; under
            stochastic dynamics its estimate from sampled demonstrations is far less noisy (it
            ignores which way each slip went). Equal to "features" for exact expected counts.
        prior_scale: σ > 0 of a Gaussian log-prior ψ ~ N(0, σ²·I) on the reward's parameters
            (MAP): the objective becomes L(ψ) − ‖ψ‖²/(2σ²·N) for N demonstrations, which keeps
            weights finite when a feature is never seen. None (default): no prior (MLE). Not
            for exact expected counts (N = ∞, where the prior's weight is zero).
        steps: optimisation steps (LBFGS: one iteration with a strong-Wolfe line search).
        optimizer: "lbfgs" (default; L is concave for a linear reward), "adam" (torch's
            fused update, :class:`~pgm_control.optimizers.LeanAdam`) or "sgd".
        lr: learning rate; default 1.0 (lbfgs), 0.05 (adam), 0.1 (sgd).
        tol: stop once the feature residual ‖E_demos[f] − E_ψ[f]‖_∞ ≤ tol (for a neural
            reward: of the (s, a, s') counts); with ``objective="causal"`` or a prior, once
            α·‖∇ψ objective‖_∞ ≤ tol (the stationarity residual, which is what
            ``history["feature_residual"]`` then holds; for a neural reward it is the
            likelihood's gradient in the table r, which a prior keeps off zero).
        seed: seeds the torch RNG (forked, the caller's is restored) while a neural reward
            runs (dropout); a linear reward starts at ψ = 0 and uses no randomness.
        progress: show a tqdm bar; Ctrl-C returns the last completed step. Small tables
            (T·S²·A ≤ 2e6) run on one torch thread, restored afterwards, as in ``fit``.
        gradient: "marginals" (default): ∇ψL = (μ̂ − Σ ρ_ψ·f)/α with the model's expected
            counts ρ_ψ contracted from the forward–backward marginals
            (:func:`pgm_control.irl_marginals.log_normaliser_and_counts`), no autograd graph;
            a dense P with few successors per row (≤ 10% of S, S ≥ 64) is evaluated on
            sparse dynamics. "autograd": backpropagate through the backward messages. The
            marginals route serves linear features with fully observed demonstrations (a
            prior adds its gradient −ψ/(σ²·N)); a neural reward, masked demonstrations (early
            ends), ``objective="causal"`` and (S, A, S) features on a sparse MDP always take
            the autograd route.
        compile: opt-in: run the marginals route's evaluation through ``torch.compile``
            (:func:`pgm_control.irl_marginals.compiled_linear_objective`), ~0.6× the time
            per step on small tables, where dispatching ~100 tiny torch calls is the cost,
            after a compilation of tens of seconds at the first call (reported as
            ``extra["compile_seconds"]``, not in ``seconds``). The same answer to round-off.
            Raises RuntimeError if torch.compile fails (no C++ compiler), ValueError if the
            problem takes the autograd route or sparse dynamics.

    Returns:
        :class:`~pgm_control.IRLResult`: reward (S, A, S), params (``{"weights": ψ}`` or the
        module's ``state_dict()``), the soft-optimal policy (T, S, A) under r_ψ (the given
        backup), and ``history["log_likelihood"]`` / ``["feature_residual"]`` /
        ``["seconds"]`` (wall-clock since the start, after any compilation) with entry 0 at
        the initial reward and
        entry k after k steps; ``extra["evaluations"]`` counts the
        evaluations of L and its gradient (LBFGS: ≈ 1.1 per step; the step's start point, its
        last line search's end, is served from a cache). In the MDP's dtype, on its device.

    Raises:
        ValueError / TypeError: features of the wrong shape or with NaN, demonstrations out of
        range or of the wrong horizon, bad options.
    """
    mdp = _check_mdp(mdp)
    alpha = check_temperature(temperature)
    backup = _check_backup(backup)
    steps = check_positive_int("steps", steps, minimum=0)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {optimizer!r}")
    lr = _DEFAULT_LR[optimizer] if lr is None else check_positive_float("lr", lr)
    tol = float(tol)
    if not tol >= 0:
        raise ValueError(f"`tol` must be >= 0, got {tol}")
    seed = check_int("seed", seed)
    objective = _check_objective(objective, backup)
    if prior_scale is not None:
        prior_scale = check_positive_float("prior_scale", prior_scale)
        if _is_exact_counts(demonstrations):
            raise ValueError(
                "`prior_scale` needs sampled demonstrations (its weight is 1/N); exact expected "
                "counts are the N → ∞ limit, where the prior has no effect: leave it None"
            )
    if gradient not in GRADIENTS:
        raise ValueError(f"`gradient` must be one of {GRADIENTS}, got {gradient!r}")
    features = _check_features(features, mdp)
    counts, ends = _expert_statistics(mdp, demonstrations)
    causal = objective == "causal" and not _is_exact_counts(demonstrations)
    if causal:
        choices = _choice_counts(mdp, demonstrations)
    if prior_scale is not None:
        num_demos = as_demonstrations(demonstrations).num_demonstrations
    linear = not isinstance(features, torch.nn.Module)
    model = _Linear(features).to(mdp.device) if linear else features
    states = torch.arange(mdp.num_states, device=mdp.device)
    if linear:  # μ̂ = E_demos[Σₜ f], contracted once; the data term is then ψ·μ̂/α
        ndim = features.ndim - 1  # the reward's arguments: r(s), r(s, a) or r(s, a, s')
        mu_hat = _contract(_reduce_counts(counts, ndim), features)
    marginals = (
        gradient == "marginals"
        and linear
        and ends is None
        and not causal
        and not (mdp.is_sparse and ndim == 3)
    )
    eval_mdp = _evaluation_layout(mdp, ndim) if marginals else mdp
    prior_variance = None if prior_scale is None else prior_scale**2 * num_demos  # σ²·N
    if not isinstance(compile, bool):
        raise TypeError(f"`compile` must be True or False, got {compile!r}")
    if compile and not marginals:
        raise ValueError(
            "`compile=True` compiles the marginals route (linear features, fully observed "
            "demonstrations, objective='features', gradient='marginals'); this problem takes "
            "the autograd route: leave `compile=False`"
        )
    if compile and eval_mdp.is_sparse:
        raise ValueError(
            "`compile=True` serves dense dynamics (small tables, where dispatching torch calls "
            "is the cost); this MDP is evaluated on sparse successor lists, which torch.compile "
            "does not trace: leave `compile=False`"
        )
    objective_fn = compiled_linear_objective() if compile else linear_objective
    log_prior = eval_mdp.log_action_prior  # a property that takes the log each time it is read

    def reward_table():
        r = model() if linear else model(states)
        return _as_table(r, mdp, "the reward module")

    weights = model.weights if linear else None

    def evaluate_marginals():
        """−L and ∂L/∂ψ = (μ̂ − Σ ρ_ψ·f)/α from the marginals, no autograd graph; in
        inference mode (no version counters: ~18% less dispatch at S = 28)."""
        with torch.inference_mode():
            values, grad = objective_fn(
                eval_mdp, features, weights.detach(), mu_hat, alpha, backup, log_prior,
                prior_variance,
            )  # fmt: skip
            L_value, res = values.tolist()
        if not math.isfinite(L_value):
            raise FloatingPointError(f"L(ψ) became {L_value}; lower `lr` or check `features`")
        weights.grad = -grad  # out of inference mode: a plain tensor the optimiser may update
        return -L_value, alpha * res

    def evaluate():
        """−L (a float) and its gradient in the parameters; the residual = α·‖∂L/∂(ψ or r)‖_∞."""
        if marginals:
            return evaluate_marginals()
        r = reward_table()
        if not linear:
            r.retain_grad()
        if causal:
            L = _causal_log_likelihood(mdp, r, choices, alpha)
        else:
            data = (model.weights @ mu_hat) / alpha if linear else None
            L = _log_likelihood(mdp, r, counts, ends, alpha, backup, data_term=data)
        if prior_scale is not None:  # log p(ψ)/N, ψ ~ N(0, σ²·I)
            sq = sum((p * p).sum() for p in trainable)
            L = L - sq / (2 * prior_scale**2 * num_demos)
        if not torch.isfinite(L):
            raise FloatingPointError(f"L(ψ) became {L.item()}; lower `lr` or check `features`")
        (-L).backward()
        grad = model.weights.grad if linear else r.grad
        return -L.item(), alpha * grad.abs().max().item()

    log_lik, residuals, elapsed = [], [], []
    params = dict(model.named_parameters())
    if not any(p.requires_grad for p in params.values()):
        raise ValueError("`features` (a module) has no trainable parameters")
    trainable = [p for p in params.values() if p.requires_grad]
    opt = _make_optimizer(optimizer, trainable, lr)
    first, evaluations = [], [0]
    cache = _Evaluations() if optimizer == "lbfgs" else None

    def closure():
        hit = cache.find(trainable) if cache is not None else None
        if hit is not None:  # LBFGS re-asks for the point its last line search ended on
            _, loss, res, grads = hit
            for p, g in zip(trainable, grads):
                p.grad = g.clone()
        else:
            if not marginals:  # the marginals route sets every gradient itself
                opt.zero_grad()
            loss, res = evaluate()
            evaluations[0] += 1
            if cache is not None:
                cache.add(trainable, loss, res)
        if not first:  # LBFGS evaluates the step's start point first, then the line search
            first.append((loss, res))
        return loss  # a float: torch's optimisers read float(closure())

    def snapshot():
        return {name: p.detach().clone() for name, p in params.items()}

    def restore(saved):
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])

    interrupted, converged, stalled = False, False, False
    line_search = optimizer == "lbfgs"  # Adam and SGD step from the gradient at the start
    start = snapshot() if line_search else None
    tic = time.perf_counter()
    bar = tqdm(total=steps, desc="maxent_irl", unit="step", disable=not progress, leave=False)
    devices = [mdp.device] if mdp.device.type == "cuda" else []
    # small tables run on one intra-op thread (restored after), as `fit` does: on a shared CPU
    # torch's thread pool costs far more than the arithmetic (README example: 90 s vs 1.7 s)
    # grad on (as Optimizer.step runs a closure): a caller's no_grad must not break autograd
    with torch.random.fork_rng(devices=devices), _few_threads(_small(mdp)), torch.enable_grad():
        torch.manual_seed(seed)
        compile_seconds = 0.0
        if compile:  # compiled at the start point, timed apart from the steps
            args = (eval_mdp, features, model.weights.detach(), mu_hat, alpha, backup, log_prior)
            compile_seconds = _compile(objective_fn, (*args, prior_variance))
            tic = time.perf_counter()
        try:
            for _ in range(steps):
                first.clear()
                if line_search:
                    start = snapshot()
                    opt.step(closure)
                else:  # evaluate, and update below unless the start point already meets tol
                    closure()
                loss, res = first[0]
                log_lik.append(-loss)
                residuals.append(res)
                elapsed.append(time.perf_counter() - tic)
                if progress:  # formatting the postfix costs as much as an Adam step here
                    bar.set_postfix(L=f"{-loss:.6g}", residual=f"{res:.2e}")
                    bar.update(1)
                if res <= tol:  # the step's start point already met tol: keep it, stop
                    if line_search:
                        restore(start)
                    converged = True
                    break
                if not line_search:
                    opt.step()
                elif all(torch.equal(start[n], p) for n, p in params.items()):
                    # a failed strong-Wolfe search (t = 0) leaves LBFGS stuck on a stale
                    # curvature memory: restart it from steepest ascent; twice in a row means
                    # no step improves L in this dtype, so stop
                    if stalled:
                        break
                    opt = _make_optimizer(optimizer, trainable, lr)
                    stalled = True
                else:
                    stalled = False
        except KeyboardInterrupt:
            interrupted = True
            if line_search:
                restore(start)  # a step cut short may sit mid line search
        finally:
            bar.close()
        seconds = time.perf_counter() - tic
        if not converged:  # the final point's L and residual close the history
            opt.zero_grad()
            loss, res = evaluate()
            log_lik.append(-loss)
            residuals.append(res)
            elapsed.append(time.perf_counter() - tic)
        with torch.no_grad():
            r = reward_table().detach().clone()
    policy = soft_value_iteration(mdp.replace(reward=r), temperature=alpha, backup=backup).policy
    for p in params.values():
        p.grad = None
    state = (
        {"weights": model.weights.detach().clone()} if linear else copy.deepcopy(model.state_dict())
    )
    return IRLResult(
        reward=r, params=state, policy=policy,
        history={
            "log_likelihood": np.asarray(log_lik), "feature_residual": np.asarray(residuals),
            "seconds": np.asarray(elapsed),
        },
        seconds=seconds, algorithm="maxent_irl", temperature=alpha, backup=backup,
        reward_model=None if linear else model,
        extra={"interrupted": interrupted, "converged": converged, "optimizer": optimizer,
               "lr": lr, "evaluations": evaluations[0], "objective": objective,
               "prior_scale": prior_scale, "compile_seconds": compile_seconds},
    )  # fmt: skip
