"""``pgm-control plan``: importance sampling against the exact posterior, or MPPI in gymnasium."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pyro.distributions as dist
import torch
from tqdm.auto import tqdm

from ..backward import soft_value_iteration
from ..continuous import ContinuousMDP
from ..importance import importance_posterior
from ..mdp import TabularMDP
from ..mppi import MPPI
from ..plotting import plot_control_episode, plot_importance_sampling
from ..rollout import run_episode
from .common import (
    UsageError,
    add_command,
    continuous_header,
    ess_note,
    fmt,
    header,
    positive_float,
    positive_int,
    quiet_degenerate_weights,
    save_figure,
    table,
    unit_interval,
    vector_fmt,
)
from .problems import (
    CONTINUOUS_ENVS,
    DEFAULT_HORIZON,
    DEFAULT_TEMPERATURE,
    add_problem_arguments,
    build_problem,
    defaults_epilog,
    env_kind,
    fill_defaults,
    reject,
)

__all__ = ["PLAN_DEFAULTS", "run", "register"]

# per kind of env (see problems.fill_defaults); the continuous settings are
# benchmarks/mppi_pendulum.py's
PLAN_DEFAULTS: dict[str, dict] = {
    "tabular": {"horizon": DEFAULT_HORIZON, "temperature": DEFAULT_TEMPERATURE, "method": "is",
                "num_samples": 10_000},
    "pendulum": {"horizon": 30, "temperature": 1.0, "method": "mppi", "num_samples": 1024,
                 "noise_scale": 1.0, "noise_correlation": 0.95, "iterations": 1, "steps": 200},
    "mountain_car": {"horizon": 100, "temperature": 1.0, "method": "mppi", "num_samples": 1024,
                     "noise_scale": 1.0, "noise_correlation": 0.95, "iterations": 1,
                     "steps": 999},
}  # fmt: skip
# flags that only mean something for continuous envs / for MPPI
_CONTINUOUS_FLAGS = ("noise_scale", "noise_correlation", "iterations", "steps")
_MPPI_FLAGS = ("noise_correlation", "iterations", "steps")


def run(args) -> int:
    kind = env_kind(args.env)
    method = args.method or PLAN_DEFAULTS[kind]["method"]
    if kind == "tabular":
        if method == "mppi":
            raise UsageError("MPPI plans continuous actions: use --env pendulum or mountain_car")
        reject(args, _CONTINUOUS_FLAGS, "to continuous envs (pendulum, mountain_car) only")
    elif method == "is":
        reject(args, _MPPI_FLAGS, "to --method mppi only")
    fill_defaults(args, PLAN_DEFAULTS)
    problem = build_problem(args.env, horizon=args.horizon, seed=args.seed)
    if kind == "tabular":
        return _plan_tabular(args, problem)
    if method == "is":
        return _plan_continuous_is(args, problem, kind)
    return _plan_mppi(args, problem, kind)


def _plan_tabular(args, mdp: TabularMDP) -> int:
    alpha, K = args.temperature, args.num_samples
    s_0 = int(torch.argmax(mdp.initial))
    with quiet_degenerate_weights():
        res = importance_posterior(
            mdp, s_0, horizon=mdp.horizon, num_samples=K, temperature=alpha, seed=args.seed
        )
    exact = soft_value_iteration(mdp, temperature=alpha, backup="optimistic")
    p_is, p_exact = res.first_action, exact.policy[0, s_0]
    names = mdp.action_names
    rows = [("a0", "IS p^(a0|s0,O)", "exact p(a0|s0,O)", "IS - exact", "action")]
    for a in range(mdp.num_actions):
        diff = float(p_is[a] - p_exact[a])
        rows.append(
            (f"a0={a}", fmt(float(p_is[a])), fmt(float(p_exact[a])), f"{diff:+.3g}",
             names[a] if names else "")
        )  # fmt: skip
    if not names:
        rows = [row[:-1] for row in rows]
    summary = [
        ("quantity", "value", "note"),
        ("ESS", f"{res.ess:.1f}", ess_note(res.ess, K)),
        ("log p^(O|s0)", fmt(res.log_evidence), "IS: logsumexp(log w) - log K"),
        ("log p(O|s0)", fmt(float(exact.v[0, s_0]) / alpha), "exact: V0(s0)/alpha"),
        ("total variation", fmt(0.5 * float((p_is - p_exact).abs().sum())),
         "between the IS and the exact p(a0|s0,O)"),
    ]  # fmt: skip
    start = "s0" if bool(mdp.initial[s_0] == 1) else "the most likely s0"
    print(header("plan", mdp, alpha))
    print(
        f"importance sampling of p(a0:T-1 | {start}={s_0}, O) with K={K} draws of the prior,\n"
        "w = exp(sum r/alpha); exact: the optimistic backward messages"
    )
    print(table(rows))
    print()
    print(table(summary))
    if args.plot and not args.no_plot:
        fig = plot_importance_sampling(res, mdp, p_exact)
        print(f"wrote {save_figure(fig, args.plot)}")
    return 0


def _plan_continuous_is(args, mdp: ContinuousMDP, kind: str) -> int:
    env = CONTINUOUS_ENVS[kind]
    alpha, K = args.temperature, args.num_samples
    s_0 = torch.tensor(env.start, dtype=torch.float64)
    # MPPI's action prior N(0, σ²): this plan is MPPI's first step without a warm start
    sigma = torch.full((mdp.action_dim,), args.noise_scale, dtype=torch.float64)
    prior = dist.Normal(torch.zeros_like(sigma), sigma).to_event(1)
    with quiet_degenerate_weights():
        res = importance_posterior(
            mdp, s_0, horizon=mdp.horizon, num_samples=K, temperature=alpha, seed=args.seed,
            action_prior=prior,
        )  # fmt: skip
    rows = [
        ("quantity", "value", "note"),
        ("ESS", f"{res.ess:.1f}", ess_note(res.ess, K)),
        ("log p^(O|s0)", fmt(res.log_evidence), "IS: logsumexp(log w) - log K"),
        ("E[a0|s0,O]", vector_fmt(res.first_action), "posterior-mean first action"),
        ("weighted return", fmt(float(res.weights @ res.returns)), "sum_k w_k R_k, model"),
        ("best return", fmt(float(res.returns.max())), "best of the K sampled plans, model"),
    ]
    print(continuous_header("plan", mdp, alpha, f"H={mdp.horizon}"))
    print(
        f"importance sampling of p(a0:H-1 | s0, O) from {env.start_note},\n"
        f"K={K} draws of the prior N(0, {args.noise_scale:g}^2), w = exp(sum r/alpha)"
    )
    print(table(rows))
    if args.plot and not args.no_plot:
        print(f"wrote {save_figure(plot_importance_sampling(res, mdp), args.plot)}")
    return 0


def _degeneracy_note(controller: MPPI, ess: np.ndarray, K: int, alpha: float) -> str:
    """Why the weights concentrate, and what to change. The cause is α small *relative to the
    spread of the K plans' log-weights* (Σr/α over H steps plus the prior/proposal ratio),
    whatever α is: at the pendulum's default α = 1 the returns of 30-step plans differ by
    tens of nats."""
    if not np.any(ess < 0.01 * K):
        return ""
    log_w = controller.result.log_weights.double()
    spread = float(log_w.max() - log_w.median())
    return (
        f"note: the K={K} plans' returns differ by many multiples of alpha={alpha:g} (in the "
        f"last plan the best\nlog-weight is {spread:.3g} nats above the median), so a few plans "
        "carry the weighted average.\nMPPI still controls with it; to average over more plans, "
        "raise --temperature or --num-samples."
    )


def _plan_mppi(args, mdp: ContinuousMDP, kind: str) -> int:
    env = CONTINUOUS_ENVS[kind]
    alpha, K = args.temperature, args.num_samples
    controller = MPPI(
        mdp, horizon=mdp.horizon, num_samples=K, temperature=alpha,
        noise_scale=args.noise_scale, iterations=args.iterations, seed=args.seed,
        noise_correlation=args.noise_correlation,
    )  # fmt: skip
    gym_env = gym.make(mdp.gym_id, max_episode_steps=args.steps)
    bar = tqdm(total=args.steps, desc=f"MPPI {mdp.gym_id}", unit="step", leave=False,
               disable=args.no_progress)  # fmt: skip

    def act(state):
        action = controller.act(state)
        bar.update(1)
        return action

    try:
        with quiet_degenerate_weights():
            episode = run_episode(
                gym_env, act, steps=args.steps, seed=args.seed, mdp=mdp, initial_state=env.start
            )
    finally:
        bar.close()
        gym_env.close()
    ess = np.asarray(controller.ess_history)
    taken = len(episode.rewards)
    rows = [
        ("quantity", "value", "note"),
        ("return", fmt(episode.total_return), f"sum of {mdp.gym_id}'s rewards"),
        ("steps", str(taken), "the env terminated (goal)" if episode.terminated else ""),
        ("ms per step", f"{episode.ms_per_step:.3g}", "mean wall-clock of one MPPI plan"),
        ("median ESS", f"{np.median(ess):.1f}", ess_note(float(np.median(ess)), K)),
        ("steps with ESS < 1% of K", f"{100 * np.mean(ess < 0.01 * K):.0f}%",
         "a few plans carry the weight (see the note)" if np.any(ess < 0.01 * K) else ""),
    ]  # fmt: skip
    if env.summary is not None:
        rows.extend(env.summary(episode.states))
    print(continuous_header("plan", mdp, alpha, f"H={mdp.horizon}"))
    print(
        f"MPPI in gymnasium's {mdp.gym_id} for up to {args.steps} steps from "
        f"{env.start_note};\nK={K}, sigma={args.noise_scale:g}, "
        f"rho={args.noise_correlation:g}, iterations={args.iterations}"
    )
    print(table(rows))
    note = _degeneracy_note(controller, ess, K, alpha)
    if note:
        print(note)
    if args.plot and not args.no_plot:
        fig = plot_control_episode(
            episode.states, controller.result.log_weights, plot_states=env.plot_states,
            title=f"MPPI, return {episode.total_return:.1f}",
            suptitle=f"{mdp.gym_id}, K={controller.num_samples}, H={controller.horizon}",
        )  # fmt: skip
        print(f"wrote {save_figure(fig, args.plot)}")
    return 0


def register(subparsers):
    parser = add_command(
        subparsers, "plan",
        help="planning as inference: importance sampling vs the exact posterior, or MPPI",
        description=(
            "Planning as inference by sampling. Tabular envs: importance sampling of the "
            "posterior over action sequences from the start state, its first-action "
            "posterior beside the exact one from the backward messages, and the effective "
            "sample size. pendulum / mountain_car: MPPI (receding-horizon importance "
            "sampling) run in the real gymnasium env, with its return and ms per step; "
            "--method is makes one importance-sampling plan from the start state instead."
        ),
        epilog=defaults_epilog(PLAN_DEFAULTS),
    )  # fmt: skip
    add_problem_arguments(
        parser, plot_default=None, continuous=True,
        plot_help="write a PNG of the importance weights (and the first-action posteriors), "
        "or for MPPI the trajectory (pendulum angle, car position) and the last weights",
    )  # fmt: skip
    parser.add_argument(
        "--method", choices=("is", "mppi"), default=None,
        help="is: importance sampling from the start state; mppi: control in gymnasium "
        "(continuous envs). Default: is for tabular envs, mppi for continuous ones",
    )  # fmt: skip
    parser.add_argument(
        "--num-samples", "-K", type=positive_int, default=None, metavar="K",
        help="sampled action sequences per plan (default: per env)",
    )  # fmt: skip
    parser.add_argument(
        "--noise-scale", "--sigma", type=positive_float, default=None, metavar="SIGMA",
        help="continuous: σ of the action prior N(0, σ²) and of MPPI's proposal noise",
    )  # fmt: skip
    parser.add_argument(
        "--noise-correlation", "--rho", type=unit_interval, default=None, metavar="RHO",
        help="MPPI: AR(1) correlation in time of the proposal noise, in [0, 1)",
    )  # fmt: skip
    parser.add_argument(
        "--iterations", type=positive_int, default=None,
        help="MPPI: importance-sampling rounds per control step",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=positive_int, default=None, help="MPPI: control steps in the env"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser
