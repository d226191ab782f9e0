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


def _paths(mdp, s0, policy=None, observed_steps=None):
    """Yield (actions, P(s'|s0, a), Π p(a|s), Σ w·r) over every path from s0 with P > 0.

    Open loop (every action sequence) by default; with ``policy``, a deterministic reactive
    policy as an int array pi[t, s], the actions are aₜ = pi[t, sₜ].
    """
    P = mdp.transition.numpy()
    r = mdp.reward.numpy()
    prior = mdp.action_prior.numpy()
    S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
    w = np.ones(T) if observed_steps is None else np.isin(np.arange(T), observed_steps)
    a_seqs = [None] if policy is not None else itertools.product(range(A), repeat=T)
    for a_seq in a_seqs:
        for s_next in itertools.product(range(S), repeat=T):
            s_seq = (s0,) + s_next
            acts = a_seq if policy is None else [policy[t, s_seq[t]] for t in range(T)]
            dyn = np.prod([P[s_seq[t], acts[t], s_seq[t + 1]] for t in range(T)])
            if dyn == 0:
                continue
            pa = np.prod([prior[s_seq[t], acts[t]] for t in range(T)])
            ret = sum(w[t] * r[s_seq[t], acts[t], s_seq[t + 1]] for t in range(T))
            yield tuple(acts), dyn, pa, ret


def map_q(mdp, temperature=1.0, observed_steps=None):
    """(S, A): max over every path from s0 starting with a0 of log p(a, s' | s0) + Σ w·r/α."""
    q = np.full((mdp.num_states, mdp.num_actions), -np.inf)
    for s0 in range(mdp.num_states):
        for acts, dyn, pa, ret in _paths(mdp, s0, None, observed_steps):
            if pa > 0:
                q[s0, acts[0]] = max(q[s0, acts[0]], np.log(dyn * pa) + ret / temperature)
    return q


def deterministic_policies(mdp, respect_prior=False):
    """Every deterministic reactive policy pi[t, s] (within the prior's support if asked)."""
    S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
    prior = mdp.action_prior.numpy()
    allowed = [[a for a in range(A) if not respect_prior or prior[s, a] > 0] for s in range(S)]
    for choice in itertools.product(*[allowed[s] for _ in range(T) for s in range(S)]):
        yield np.array(choice).reshape(T, S)


def policy_scores(mdp, pi, temperature=1.0, observed_steps=None):
    """For pi[t, s], from each start state, two (S,) arrays by summing over every path:

    log E_P[Π p(aₜ|sₜ)·exp(Σ w·r/α)] (marginal MAP's objective) and E_P[Σ w·r] (planning's).
    """
    S = mdp.num_states
    log_tilted, expected = np.zeros(S), np.zeros(S)
    for s0 in range(S):
        rows = list(_paths(mdp, s0, pi, observed_steps))
        z = sum(dyn * pa * np.exp(ret / temperature) for _, dyn, pa, ret in rows)
        log_tilted[s0] = np.log(z) if z > 0 else -np.inf
        expected[s0] = sum(dyn * ret for _, dyn, _, ret in rows)
    return log_tilted, expected


def best_policy_q(mdp, temperature=1.0, observed_steps=None):
    """Max over deterministic reactive policies with pi[0, s0] = a of each objective: (S, A) ×2.

    Marginal MAP maximises the first of :func:`policy_scores` over every policy, planning the
    second over the policies that the prior allows (−inf where the prior forbids a at s0).
    """
    S, A = mdp.num_states, mdp.num_actions
    prior = mdp.action_prior.numpy()
    mmap, plan = np.full((S, A), -np.inf), np.full((S, A), -np.inf)
    for pi in deterministic_policies(mdp):
        log_tilted, expected = policy_scores(mdp, pi, temperature, observed_steps)
        allowed = all(prior[s, pi[t, s]] > 0 for t in range(mdp.horizon) for s in range(S))
        for s0 in range(S):
            a = pi[0, s0]
            mmap[s0, a] = max(mmap[s0, a], log_tilted[s0])
            if allowed:
                plan[s0, a] = max(plan[s0, a], expected[s0])
    return mmap, plan
