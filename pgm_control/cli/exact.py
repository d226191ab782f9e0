"""``pgm-control exact``: the values, bound, ELBO and gap of each backup, as one table."""

from __future__ import annotations

import typing

import torch

from ..backward import SoftValues, log_evidence, optimal_elbo, soft_value_iteration
from ..elbo import elbo_terms
from ..forward import policy_state_distribution
from ..mdp import TabularMDP
from ..plotting import plot_backups
from .common import add_command, fmt, header, save_figure, table
from .problems import add_problem_arguments, build_mdp

__all__ = ["BACKUPS", "BackupResult", "solve_backup", "v0_label", "write_backups_plot", "register"]

BACKUPS = ("optimistic", "expected")


class BackupResult(typing.NamedTuple):
    values: SoftValues
    v0: float  # E_p0[V₀(s₀)], reward units
    bound: float  # optimistic: log E_p0 exp(V₀/α) = log p(O); expected: E_p0[V₀]/α = ELBO*
    elbo: float  # ELBO of this backup's policy as a structured guide
    success: float | None  # P(s_T ∈ goal) acting with this policy in the true dynamics
    expected_return: float  # E[Σ r] acting with this policy in the true dynamics


def solve_backup(mdp: TabularMDP, alpha: float, backup: str) -> BackupResult:
    """Soft value iteration with one backup, and what its policy achieves in the true MDP.

    P(goal) = Σ_{s ∈ goal} p(s_T = s) under the policy, from ``mdp.goal_states``; None when
    the MDP has no goal states.
    """
    sv = soft_value_iteration(mdp, temperature=alpha, backup=backup)
    v0 = sv.v[0]
    if backup == "optimistic":
        bound = torch.logsumexp(mdp.log_initial + v0 / alpha, dim=0)
    else:
        bound = (mdp.initial * v0).sum() / alpha
    terms = elbo_terms(mdp, sv.policy, temperature=alpha)
    return BackupResult(
        sv, float((mdp.initial * v0).sum()), float(bound), float(terms.elbo),
        goal_probability(mdp, sv.policy), float(terms.reward) * alpha,
    )  # fmt: skip


def goal_probability(mdp: TabularMDP, policy: torch.Tensor) -> float | None:
    """P(s_T ∈ goal) acting with ``policy`` in the true dynamics; None without a goal."""
    if mdp.goal_states is None:
        return None
    return float(policy_state_distribution(mdp, policy)[-1][mdp.goal_states].sum())


def v0_label(mdp: TabularMDP) -> str:
    return "V0(s0)" if bool((mdp.initial == 1).any()) else "E_p0[V0(s0)]"


def write_backups_plot(path: str, mdp: TabularMDP, results: dict[str, BackupResult], alpha):
    fig = plot_backups(mdp, {b: res.values for b, res in results.items()}, temperature=alpha)
    return save_figure(fig, path)


def run(args) -> int:
    mdp = build_mdp(args.env, horizon=args.horizon, seed=args.seed)
    alpha = args.temperature
    results = {b: solve_backup(mdp, alpha, b) for b in BACKUPS}
    log_z = float(log_evidence(mdp, temperature=alpha))
    elbo_star = float(optimal_elbo(mdp, temperature=alpha))
    rows = [("backup", v0_label(mdp), "log p(O)|ELBO*", "ELBO(pi)", "gap", "P(goal)", "E[return]")]
    for backup, res in results.items():
        gap = log_z - res.elbo
        rows.append(
            (backup, fmt(res.v0), fmt(res.bound), fmt(res.elbo), fmt(gap),
             fmt(res.success), fmt(res.expected_return))
        )  # fmt: skip
    print(header("exact", mdp, alpha))
    print(f"log p(O) = {fmt(log_z)}  ELBO* = {fmt(elbo_star)}  gap = {fmt(log_z - elbo_star)}")
    print(table(rows))
    print(
        "log p(O)|ELBO*: what the backup's V0 gives, log E_p0 exp(V0/alpha) (optimistic) or "
        "E_p0[V0]/alpha (expected).\nELBO(pi), gap = log p(O) - ELBO(pi) = KL(q || p(tau|O)), "
        "P(goal) and E[return] are for acting with the backup's policy in the true dynamics."
    )
    if args.plot and not args.no_plot:
        print(f"wrote {write_backups_plot(args.plot, mdp, results, alpha)}")
    return 0


def register(subparsers):
    parser = add_command(
        subparsers, "exact",
        help="table of V0, log p(O) / ELBO*, and the gap per backup",
        description=(
            "For each backup (optimistic = exact posterior, expected = structured variational "
            "guide) print V0 at the start, the bound its values compute, the ELBO of its "
            "policy, the gap log p(O) - ELBO, and its success and return in the true dynamics."
        ),
    )  # fmt: skip
    add_problem_arguments(parser, plot_default=None)
    parser.set_defaults(func=run)
    return parser
