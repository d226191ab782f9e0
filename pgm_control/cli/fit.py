"""``pgm-control fit``: a guide family fitted by SVI, its ELBO beside the exact optimum."""

from __future__ import annotations

import inspect

import torch

from ..backward import log_evidence, soft_value_iteration
from ..continuous import ContinuousMDP
from ..envs import evaluate_policy
from ..estimators import ESTIMATORS
from ..forward import policy_state_distribution, state_marginals
from ..guides import CONTINUOUS_GUIDES, TABULAR_GUIDES
from ..mdp import TabularMDP
from ..plotting import plot_fit
from ..svi import CONTINUOUS_ESTIMATORS, fit, fit_continuous
from .common import (
    UsageError,
    add_command,
    continuous_header,
    fmt,
    header,
    positive_float,
    positive_int,
    save_figure,
    table,
)
from .exact import goal_probability
from .problems import (
    CONTINUOUS_ENVS,
    DEFAULT_HORIZON,
    DEFAULT_TEMPERATURE,
    add_problem_arguments,
    build_problem,
    defaults_epilog,
    fill_defaults,
)

__all__ = ["FIT_DEFAULTS", "run", "register", "visit_averaged"]

# per kind of env (see problems.fill_defaults); the continuous settings are
# benchmarks/mppi_pendulum.py's
FIT_DEFAULTS: dict[str, dict] = {
    "tabular": {"horizon": DEFAULT_HORIZON, "temperature": DEFAULT_TEMPERATURE,
                "guide": "tabular_time_varying"},
    "pendulum": {"horizon": 30, "temperature": 1.0, "guide": "gaussian_mlp"},
    "mountain_car": {"horizon": 100, "temperature": 1.0, "guide": "gaussian_mlp"},
}  # fmt: skip

# (guide names, estimator names) that pgm_control.fit takes, per kind of MDP
_NAMES = {
    "tabular": (tuple(TABULAR_GUIDES), tuple(ESTIMATORS)),
    "continuous": (tuple(CONTINUOUS_GUIDES), tuple(CONTINUOUS_ESTIMATORS)),
}


def _check_fit_names(args, kind: str) -> None:
    what = "tabular" if kind == "tabular" else "continuous"
    other = "continuous" if what == "tabular" else "tabular"
    for i, (option, name) in enumerate((("guide", args.guide), ("estimator", args.estimator))):
        names = _NAMES[what][i]
        if name is None or name in names:
            continue
        if name in _NAMES[other][i]:
            problem = f"{option} {name!r} is for {other} envs"
        else:
            problem = f"unknown {option} {name!r}"
        raise UsageError(
            f"{problem}; for the {what} env {args.env} choose one of: {', '.join(names)}"
        )


def _continuous_fit_defaults() -> dict:
    # fit() forwards its own None defaults to fit_continuous, which rejects them: use the
    # latter's defaults for whatever the command line leaves unset
    params = inspect.signature(fit_continuous).parameters
    return {name: params[name].default for name in ("steps", "num_particles", "optimizer", "lr")}


def run(args) -> int:
    kind = fill_defaults(args, FIT_DEFAULTS)
    _check_fit_names(args, kind)
    problem = build_problem(args.env, horizon=args.horizon, seed=args.seed)
    options = {
        "steps": args.steps, "num_particles": args.num_particles,
        "optimizer": args.optimizer, "lr": args.lr,
    }  # fmt: skip
    if kind != "tabular":
        options = {k: v for k, v in options.items() if v is not None}
        options = {**_continuous_fit_defaults(), **options}
    try:
        res = fit(
            problem, args.guide, estimator=args.estimator, temperature=args.temperature,
            seed=args.seed, progress=not args.no_progress, **options,
        )  # fmt: skip
    except ValueError as exc:  # fit's checks of the options (optimizer/estimator mismatch, ...)
        raise UsageError(str(exc)) from None
    if kind == "tabular":
        _print_tabular_fit(res, problem, args.temperature)
    else:
        _print_continuous_fit(res, problem, args, kind)
    if args.plot and not args.no_plot and len(res.elbo):
        print(f"wrote {_write_fit_plot(args.plot, res, problem, args.temperature)}")
    if res.extra.get("interrupted"):
        print("interrupted: the numbers above are for the guide fitted so far")
        return 130
    return 0


def _fit_settings(res) -> str:
    extra = res.extra
    parts = [f"guide {res.guide_name}", f"estimator {res.estimator}"]
    if extra.get("optimizer"):
        lr = extra.get("lr")
        parts.append(f"optimizer {extra['optimizer']}" + (f" (lr {lr:g})" if lr else ""))
    if extra.get("num_particles"):
        parts.append(f"{extra['num_particles']} particles")
    return ", ".join(parts)


def _print_tabular_fit(res, mdp: TabularMDP, alpha: float) -> None:
    log_z = float(log_evidence(mdp, temperature=alpha))
    exact_estimator = res.estimator in ("exact", "enum")
    full = res.guide_name == "full_posterior"
    steps = len(res.elbo)
    converged = " (converged)" if res.extra.get("converged") else ""
    rows = [
        ("quantity", "value", "note"),
        ("final ELBO", fmt(res.elbo[-1] if steps else None),
         "the estimator's value at the last step" + ("" if exact_estimator else ", noisy")),
        ("exact ELBO of the guide", fmt(res.exact_elbo), "closed form, after training"),
        ("exact optimum", fmt(res.optimum),
         "log p(O): the family holds the posterior" if full else "ELBO*, best structured guide"),
        ("gap", fmt(res.gap), "exact optimum - exact ELBO, nats >= 0"),
        ("log p(O)", fmt(log_z), "backward messages; log p(O) - ELBO* is the optimism gap"),
        ("P(goal at T)", fmt(goal_probability(mdp, res.policy)),
         "acting with the learned q_t(a|s), true dynamics"),
        ("seconds", f"{res.seconds:.3g}", "optimisation wall-clock"),
        ("steps", str(steps), f"optimiser steps{converged}"),
    ]  # fmt: skip
    print(header("fit", mdp, alpha))
    print(_fit_settings(res))
    print(table(rows))


def _print_continuous_fit(res, mdp: ContinuousMDP, args, kind: str) -> None:
    env = CONTINUOUS_ENVS[kind]
    steps = len(res.elbo)
    tail = min(10, steps)
    # the real env from the same start as `plan`, deterministic actions, for the trained T steps
    returns = evaluate_policy(
        mdp, lambda state, t: res.guide.act(state, t), episodes=1, seed=args.seed,
        initial_state=env.start, steps=mdp.horizon,
    )  # fmt: skip
    rows = [
        ("quantity", "value", "note"),
        ("final ELBO", fmt(res.elbo[-1] if steps else None), "the last step's estimate, noisy"),
        (f"mean ELBO, last {tail} steps", fmt(res.elbo[-tail:].mean() if steps else None), ""),
        (f"return in {mdp.gym_id}", fmt(float(returns[0])),
         f"{mdp.horizon} steps from {env.start_note}, median action"),
        ("seconds", f"{res.seconds:.3g}", "optimisation wall-clock"),
        ("steps", str(steps), "optimiser steps"),
    ]  # fmt: skip
    print(continuous_header("fit", mdp, args.temperature, f"T={mdp.horizon}"))
    print(_fit_settings(res))
    print(table(rows))


def _write_fit_plot(path: str, res, problem, alpha: float) -> str:
    title = f"{res.guide_name} / {res.estimator}"
    if not isinstance(problem, TabularMDP):
        return save_figure(plot_fit(res.elbo, title=title), path)
    full = res.guide_name == "full_posterior"
    # the learned policy beside the one its family is fitting: the exact posterior for the
    # full-posterior guide, the soft-optimal (expected backup) policy for structured guides
    target = soft_value_iteration(
        problem, temperature=alpha, backup="optimistic" if full else "expected"
    )
    # where the target visits: the posterior p(s_t|O), or the true dynamics under its policy
    if full:
        visits = state_marginals(problem, temperature=alpha)
    else:
        visits = policy_state_distribution(problem, target.policy)[:-1]
    policies = {  # the heatmap is the exact soft V0 of the target in both panels
        "learned q(a|s), visit-averaged over t": visit_averaged(res.policy, visits),
        f"exact pi(a|s), {target.backup} backup, same averaging": visit_averaged(
            target.policy, visits
        ),
    }
    fig = plot_fit(
        res.elbo, res.optimum, mdp=problem, values=target.v[0], policies=policies, title=title,
        suptitle=f"{problem.name}, T={problem.horizon}, alpha={alpha:g}",
    )  # fmt: skip
    return save_figure(fig, path)


def visit_averaged(policy: torch.Tensor, visits: torch.Tensor) -> torch.Tensor:
    """q̄(a|s) = Σₜ dₜ(s)·qₜ(a|s) / Σₜ dₜ(s), falling back to q₀ where d is 0 throughout.

    A time-varying policy at (t, s) pairs the MDP never reaches is left at its initial
    values by the fit (the ELBO does not depend on it), so q₀ alone misleads away from s₀.

    Args:
        policy: qₜ(a|s), shape (T, S, A).
        visits: dₜ(s), shape (T, S).

    Returns:
        q̄(a|s), shape (S, A).
    """
    total = visits.sum(0)  # (S,)
    averaged = torch.einsum("ts,tsa->sa", visits, policy) / total.clamp_min(1e-300)[:, None]
    return torch.where(total[:, None] > 0, averaged, policy[0])


def register(subparsers):
    parser = add_command(
        subparsers, "fit",
        help="fit a variational guide by SVI (guide and estimator by name); ELBO and gap",
        description=(
            "Maximise the ELBO of a guide family on the optimality model with pgm_control.fit "
            "and print the final ELBO, the exact optimum of the family and the gap to it "
            "(tabular envs), the seconds and steps taken. On pendulum/mountain_car, the "
            "return of the learned policy in the real gymnasium env."
        ),
        epilog=defaults_epilog(FIT_DEFAULTS),
    )  # fmt: skip
    add_problem_arguments(
        parser, plot_default=None, continuous=True,
        plot_help="write a PNG of the ELBO curve with the exact optimum and, for tabular "
        "guides, the learned policy beside the exact one",
    )  # fmt: skip
    parser.add_argument(
        "--guide", metavar="NAME", default=None,
        help=f"guide family: {', '.join(TABULAR_GUIDES)} (tabular envs); "
        f"{', '.join(CONTINUOUS_GUIDES)} (continuous envs)",
    )  # fmt: skip
    parser.add_argument(
        "--estimator", metavar="NAME", default=None,
        help=f"ELBO estimator: {', '.join(ESTIMATORS)} (tabular, default exact); "
        f"{', '.join(CONTINUOUS_ESTIMATORS)} (continuous, default reparam)",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=positive_int, default=None,
        help="optimiser steps (default: pgm_control.fit's, 100 for LBFGS, 1000 otherwise)",
    )  # fmt: skip
    parser.add_argument(
        "--num-particles", type=positive_int, default=None, metavar="K",
        help="trajectories per ELBO estimate for the Monte-Carlo estimators "
        "(default: 1000 tabular, 64 continuous)",
    )  # fmt: skip
    parser.add_argument(
        "--optimizer", choices=("lbfgs", "adam", "clipped_adam", "sgd"), default=None,
        help="lbfgs (default for exact/enum), adam (default otherwise), sgd; clipped_adam "
        "for continuous envs",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=positive_float, default=None,
        help="learning rate (default: 1 for LBFGS, 0.05 for Adam on tabular envs, 1e-3 on "
        "continuous ones)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser
