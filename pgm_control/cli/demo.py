"""``pgm-control demo``: exact inference on one MDP, checked against Pyro's enumeration."""

from __future__ import annotations

import math

from ..backward import log_evidence, optimal_elbo
from ..models import enumerated_log_evidence
from .common import add_command, fmt, header, table
from .exact import BACKUPS, solve_backup, v0_label, write_backups_plot
from .problems import add_problem_arguments, build_mdp

__all__ = ["DEFAULT_PLOT", "run", "register"]

DEFAULT_PLOT = "pgm_control_demo.png"


def run(args) -> int:
    mdp = build_mdp(args.env, horizon=args.horizon, seed=args.seed)
    alpha = args.temperature
    results = {b: solve_backup(mdp, alpha, b) for b in BACKUPS}
    log_z = float(log_evidence(mdp, temperature=alpha))
    log_z_enum = float(enumerated_log_evidence(mdp, temperature=alpha))
    elbo_star = float(optimal_elbo(mdp, temperature=alpha))
    agree = math.isclose(log_z, log_z_enum, rel_tol=1e-9, abs_tol=1e-9)
    opt, exp = results["optimistic"], results["expected"]
    v0 = v0_label(mdp)
    rows = [
        ("quantity", "value", "note"),
        (f"soft {v0}, optimistic backup", fmt(opt.v0), "exact posterior (backward messages)"),
        (f"soft {v0}, expected backup", fmt(exp.v0), "structured guide / max-ent RL"),
        ("log p(O), backward messages", fmt(log_z), "log E_p0 exp(V0/alpha)"),
        (
            "log p(O), Pyro enumeration",
            fmt(log_z_enum),
            "agrees" if agree else f"DISAGREES by {abs(log_z - log_z_enum):.3g}",
        ),
        ("optimal ELBO*", fmt(elbo_star), "best structured guide, nats"),
        ("optimism gap log p(O) - ELBO*", fmt(log_z - elbo_star), "nats, >= 0"),
        ("P(goal at T), expected-backup policy", fmt(exp.success), "true dynamics, exact"),
        ("P(goal at T), optimistic policy", fmt(opt.success), "true dynamics, exact"),
    ]
    print(header("demo", mdp, alpha))
    print(table(rows))
    if not args.no_plot and args.plot:
        print(f"wrote {write_backups_plot(args.plot, mdp, results, alpha)}")
    return 0 if agree else 1


def register(subparsers):
    parser = add_command(
        subparsers, "demo",
        help="exact inference on FrozenLake (or --env): values, log p(O), ELBO*, optimism",
        description=(
            "Solve the optimality PGM exactly and print: soft V0 at the start under the "
            "optimistic (exact posterior) and expected (structured guide) backups, log p(O) "
            "from backward messages and from Pyro's enumeration, the optimal ELBO, the "
            "optimism gap, and how often each policy reaches the goal in the TRUE dynamics. "
            "Writes a PNG of V0 with policy arrows. Exits with status 1 if the two values of "
            "log p(O) disagree."
        ),
    )  # fmt: skip
    add_problem_arguments(parser, plot_default=DEFAULT_PLOT)
    parser.set_defaults(func=run)
    return parser
