"""Brute-force enumeration of every trajectory of a tiny MDP (numpy, itertools).

An independent route for the exact identities: no recursion, no log-space tricks, just the
definition p(τ, O) = p0(s0)·Πₜ p(aₜ|sₜ)·P(sₜ₊₁|sₜ,aₜ)·exp(r(sₜ,aₜ,sₜ₊₁)/α).
"""

import itertools

import numpy as np


def trajectories(mdp):
    """Yield (states, actions) for every trajectory with nonzero prior probability."""
    S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
    for s_seq in itertools.product(range(S), repeat=T + 1):
        for a_seq in itertools.product(range(A), repeat=T):
            yield s_seq, a_seq


def table(mdp, temperature=1.0, policy=None, observed_steps=None):
    """Arrays over all trajectories: log prior p(τ) (with action prior), Σ r/α, log q(τ)."""
    P = mdp.transition.numpy()
    r = mdp.reward.numpy()
    p0 = mdp.initial.numpy()
    prior = mdp.action_prior.numpy()
    T = mdp.horizon
    w = np.ones(T) if observed_steps is None else np.isin(np.arange(T), observed_steps)
    pi = None
    if policy is not None:
        pi = np.asarray(policy)
        if pi.ndim == 2:
            pi = np.broadcast_to(pi, (T,) + pi.shape)
    rows = []
    for s_seq, a_seq in trajectories(mdp):
        dyn = p0[s_seq[0]] * np.prod([P[s_seq[t], a_seq[t], s_seq[t + 1]] for t in range(T)])
        if dyn == 0:
            continue
        pa = np.prod([prior[s_seq[t], a_seq[t]] for t in range(T)])
        ret = sum(w[t] * r[s_seq[t], a_seq[t], s_seq[t + 1]] for t in range(T)) / temperature
        q = np.nan
        if pi is not None:
            q = dyn * np.prod([pi[t, s_seq[t], a_seq[t]] for t in range(T)])
        rows.append((s_seq, a_seq, dyn, pa, ret, q))
    return rows


def log_evidence(mdp, temperature=1.0, observed_steps=None):
    rows = table(mdp, temperature, observed_steps=observed_steps)
    return np.log(sum(dyn * pa * np.exp(ret) for _, _, dyn, pa, ret, _ in rows))


def elbo(mdp, policy, temperature=1.0):
    """E_q[log p(τ, O) − log q(τ)] by summing over every trajectory (lecture's line 1)."""
    total = 0.0
    for _, _, dyn, pa, ret, q in table(mdp, temperature, policy):
        if q > 0:
            total += q * (np.log(dyn * pa) + ret - np.log(q))
    return total


def kl_to_posterior(mdp, policy, temperature=1.0):
    """KL(q(τ) ‖ p(τ|O)) by definition."""
    rows = table(mdp, temperature, policy)
    log_z = np.log(sum(dyn * pa * np.exp(ret) for _, _, dyn, pa, ret, _ in rows))
    kl = 0.0
    for _, _, dyn, pa, ret, q in rows:
        if q > 0:
            kl += q * (np.log(q) - (np.log(dyn * pa) + ret - log_z))
    return kl


def state_marginals(mdp, temperature=1.0):
    """p(sₜ = s | O) for t = 0..T, shape (T+1, S)."""
    rows = table(mdp, temperature)
    m = np.zeros((mdp.horizon + 1, mdp.num_states))
    for s_seq, _, dyn, pa, ret, _ in rows:
        weight = dyn * pa * np.exp(ret)
        for t, s in enumerate(s_seq):
            m[t, s] += weight
    return m / m[0].sum()


def state_action_marginals(mdp, temperature=1.0):
    rows = table(mdp, temperature)
    m = np.zeros((mdp.horizon, mdp.num_states, mdp.num_actions))
    for s_seq, a_seq, dyn, pa, ret, _ in rows:
        weight = dyn * pa * np.exp(ret)
        for t, a in enumerate(a_seq):
            m[t, s_seq[t], a] += weight
    return m / m[0].sum()


def hard_value_iteration(P, r_sas, T):
    """Classical finite-horizon value iteration: Q = E[r + V'], V = max_a Q (numpy)."""
    S, A, _ = P.shape
    v = np.zeros(S)
    qs = np.zeros((T, S, A))
    for t in reversed(range(T)):
        qs[t] = (P * (r_sas + v[None, None, :])).sum(-1)
        v = qs[t].max(-1)
    return qs
