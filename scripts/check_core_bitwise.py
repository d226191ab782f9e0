"""Snapshot every float64 output of the exact-inference core; compare two snapshots bit for bit.

A refactor of the messages must leave float64 answers unchanged. Dump a snapshot with the old
code (e.g. in ``git worktree add /tmp/old <commit>``, or with the installed package), another
with the new one, and compare them with ``torch.equal``:

    python scripts/check_core_bitwise.py dump before.pt     # on the old code
    python scripts/check_core_bitwise.py dump after.pt      # on the new code
    python scripts/check_core_bitwise.py compare before.pt after.pt

Covers 14 MDPs (random ones with every option, an underflow-fallback one, T = 300 with scaled
rewards, the lottery, FrozenLake 8x8, CliffWalking plain and slippery, Taxi), α from 1e-3 to
1e2 and three ``observed_steps`` patterns, plus autograd through the recursions (∂/∂r, ∂/∂P,
∂/∂π) and short ``maxent_irl`` runs (LBFGS and Adam, both backups, state and state–action
features): about 4,370 outputs, ~5 minutes on one core.
"""

import sys

import torch

import pgm_control as pc
from pgm_control.backward import soft_policy_evaluation
from pgm_control.demonstrations import expected_counts


def mdps():
    out = []
    for seed in range(6):
        kw = dict(
            seed=seed,
            random_action_prior=bool(seed % 2),
            reward_per_next_state=seed != 2,
            concentration=0.3 if seed == 3 else 1.0,
        )
        out.append((f"random{seed}", pc.random_mdp(5, 3, 7, **kw)))
    out.append(("det", pc.random_mdp(6, 3, 8, seed=4, deterministic=True)))
    m = pc.random_mdp(5, 2, 6, seed=3, concentration=0.5)
    r = m.reward.clone()
    r[0, 0, 1] = -5000.0
    r[2, 1, :] = -3000.0
    out.append(("fallback", m.replace(reward=r)))
    big = pc.random_mdp(6, 3, 300, seed=1)
    out.append(("long_scaled", big.replace(reward=big.reward * 30)))
    out.append(("lottery", pc.lottery_mdp()))
    out.append(("frozen8", pc.TabularMDP.from_gymnasium("FrozenLake-v1", 100, map_name="8x8")))
    out.append(("cliff", pc.TabularMDP.from_gymnasium("CliffWalking-v1", 30)))
    out.append(
        ("cliff_slip", pc.TabularMDP.from_gymnasium("CliffWalking-v1", 30, is_slippery=True))
    )
    out.append(("taxi", pc.TabularMDP.from_gymnasium("Taxi-v4", 25)))
    return out


def dump(path):
    res = {}
    for name, mdp in mdps():
        S, A, T = mdp.num_states, mdp.num_actions, mdp.horizon
        g = torch.Generator().manual_seed(0)
        pi = torch.softmax(2 * torch.randn(T, S, A, generator=g, dtype=torch.float64), -1)
        log_pi = torch.log_softmax(2 * torch.randn(T, S, A, generator=g, dtype=torch.float64), -1)
        log_q0 = torch.log_softmax(torch.randn(S, generator=g, dtype=torch.float64), -1)
        log_qd = torch.log_softmax(
            torch.randn(T, S, A, S, generator=g, dtype=torch.float64) + mdp.log_transition, -1
        )
        alphas = [1e-3, 1e-2, 0.1, 0.7, 1.0, 10.0, 100.0] if S <= 64 else [0.01, 0.3, 1.0]
        for alpha in alphas:
            for steps in (None, [T - 1], [0, T // 2]):
                k = f"{name}/a={alpha}/steps={steps}"
                kw = dict(temperature=alpha, observed_steps=steps)
                for backup in ("optimistic", "expected"):
                    sv = pc.soft_value_iteration(mdp, backup=backup, **kw)
                    res[f"{k}/svi_{backup}"] = (sv.q, sv.v, sv.policy)
                res[k + "/log_evidence"] = pc.log_evidence(mdp, **kw)
                res[k + "/optimal_elbo"] = pc.optimal_elbo(mdp, **kw)
                spe = soft_policy_evaluation(mdp, pi, **kw)
                res[k + "/spe"] = (spe.q, spe.v, spe.policy)
                res[k + "/fwd"] = pc.log_forward_messages(mdp, **kw)
                res[k + "/sm"] = pc.state_marginals(mdp, include_final=True, **kw)
                res[k + "/sam"] = pc.state_action_marginals(mdp, **kw)
                res[k + "/pd"] = pc.posterior_dynamics(mdp, **kw)
                res[k + "/policy_elbo"] = pc.policy_elbo(mdp, pi, **kw)
                res[k + "/policy_elbo_log"] = pc.policy_elbo(mdp, log_policy=log_pi, **kw)
                res[k + "/elbo_terms"] = tuple(pc.elbo_terms(mdp, pi, **kw))
                res[k + "/traj_elbo"] = pc.trajectory_elbo(mdp, log_pi, **kw)
                res[k + "/traj_elbo_full"] = pc.trajectory_elbo(
                    mdp, log_pi, log_initial=log_q0, log_dynamics=log_qd, **kw
                )
                if steps is None:
                    res[k + "/kl"] = pc.posterior_kl(mdp, pi, temperature=alpha)
                    tr = pc.sample_posterior_trajectories(mdp, 500, temperature=alpha, seed=3)
                    res[k + "/post_samples"] = tuple(tr)
            if S <= 64:
                for gamma in (0.5, 0.9):
                    d = pc.discounted_soft_value_iteration(mdp, discount=gamma, temperature=alpha)
                    res[f"{name}/a={alpha}/disc{gamma}"] = (d.q, d.v, d.policy, d.iterations)
        res[name + "/psd"] = pc.policy_state_distribution(mdp, pi)
        res[name + "/samples"] = tuple(pc.sample_trajectories(mdp, pi, 500, seed=5))
        res[name + "/grads"] = gradients(mdp, pi)
        if S <= 64 and T <= 100:
            res[name + "/maxent_irl"] = irl_runs(mdp, g)
    torch.save(res, path)
    print(f"{len(res)} entries -> {path}")


def gradients(mdp, pi):
    """Autograd through the recursions: ∂/∂(r, P, π) of log p(O), the best ELBO and π's ELBO,
    and ∂/∂π of the occupancy (a P that requires grad takes the dynamics' graph branch)."""
    out = []
    for alpha in (0.7, 1.0):
        r = mdp.reward.clone().requires_grad_()
        P = mdp.transition.clone().requires_grad_()
        p = pi.clone().requires_grad_()
        m = pc.TabularMDP(P, r, mdp.initial, mdp.horizon, action_prior=mdp.action_prior)
        total = (
            pc.log_evidence(m, temperature=alpha)
            + pc.optimal_elbo(m, temperature=alpha)
            + pc.policy_elbo(m, p, temperature=alpha)
            + (pc.policy_state_distribution(m, p) ** 2).sum()
        )
        out.extend([total, *torch.autograd.grad(total, (r, P, p))])
    return tuple(out)


def irl_runs(mdp, g):
    """maxent_irl from state and state–action features, LBFGS and Adam, both backups."""
    S, A = mdp.num_states, mdp.num_actions
    expert = pc.soft_value_iteration(mdp, backup="expected").policy
    counts = expected_counts(mdp, expert)
    out = [counts]
    for features in (
        torch.randn(S, 4, generator=g, dtype=torch.float64),
        torch.randn(S, A, 5, generator=g, dtype=torch.float64),
    ):
        for backup in ("expected", "optimistic"):
            for optimizer in ("lbfgs", "adam"):
                res = pc.maxent_irl(
                    mdp, features, counts, steps=25, tol=0.0, optimizer=optimizer,
                    backup=backup, progress=False,
                )  # fmt: skip
                out.extend([res.reward, res.policy, torch.as_tensor(res.history["log_likelihood"])])
    return tuple(out)


def same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
            | bool(
                (torch.isnan(a) == torch.isnan(b)).all()
                and torch.equal(a.nan_to_num(), b.nan_to_num())
            )
        )
    return a == b


def maxrel(a, b):
    if isinstance(a, tuple):
        return max(maxrel(x, y) for x, y in zip(a, b) if isinstance(x, torch.Tensor))
    a, b = a.double(), b.double()
    fin = torch.isfinite(a) & torch.isfinite(b)
    if not fin.any():
        return 0.0
    return ((a - b).abs() / b.abs().clamp_min(1e-300))[fin].max().item()


def compare(pa, pb):
    a, b = torch.load(pa), torch.load(pb)
    assert a.keys() == b.keys(), set(a) ^ set(b)
    diff = [k for k in a if not same(a[k], b[k])]
    groups = {}
    for k in a:
        routine = k.rsplit("/", 1)[-1]
        groups.setdefault(routine, [0, 0, 0.0])
        groups[routine][0] += 1
        if k in diff:
            groups[routine][1] += 1
            groups[routine][2] = max(groups[routine][2], maxrel(a[k], b[k]))
    print(f"{len(a)} outputs compared; {len(a) - len(diff)} bit-identical, {len(diff)} differ")
    for routine, (n, nd, rel) in sorted(groups.items()):
        print(f"  {routine:18s} {n:5d} outputs, {nd:4d} differ (max rel diff {rel:.2e})")


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        compare(sys.argv[2], sys.argv[3])
