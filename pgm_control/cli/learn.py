"""``pgm-control learn``: an algorithm derived from the ELBO, learned on an env id, beside its
exact answer.

::

    pgm-control learn --algo soft-q --env CliffWalking-v1 --steps 40000 --plot curve.png
    pgm-control learn --algo soft-pg --env FrozenLake-v1 --temperature 0.01 --steps 300
    pgm-control learn --algo kl-pi --env FrozenLake-v1 --horizon 20 --steps 30

* ``soft-q``: :class:`~pgm_control.soft_q_learning.SoftQLearning`; ``--steps`` env steps; the
  table prints sup |Q − Q*| over the reachable states, Q* by discounted soft value iteration.
* ``soft-pg``: :func:`~pgm_control.soft_policy_gradient.soft_policy_gradient` of a stationary
  tabular guide; ``--steps`` gradient steps of ``--episodes`` episodes; prints the
  occupancy-weighted KL to the discounted soft-optimal policy.
* ``kl-pi``: exact :func:`~pgm_control.kl_regularised_policy_iteration` on the env's tables
  (horizon ``--horizon``); ``--steps`` iterations; prints the return of each iterate and the
  hard optimum.
* ``soft-dqn`` / ``awr``: :class:`~pgm_control.soft_dqn.SoftDQN` / :class:`~pgm_control.awr.AWR`
  (any env with Discrete actions, e.g. CartPole-v1); ``--steps`` env steps; prints the
  deterministic evaluation return every tenth of the run, beside the env's reward threshold.

The exact answers read the env's tables (``TabularMDP.from_gymnasium``) to check, never to
learn. Algorithms live in :data:`ALGORITHMS` (name → runner), the extension point.
"""

from __future__ import annotations

import gymnasium as gym
from matplotlib.figure import Figure

from ..awr import AWR
from ..backward import discounted_soft_value_iteration
from ..guides.tabular import StationaryGuide
from ..kl_regularised_policy_iteration import kl_regularised_policy_iteration
from ..mdp import TabularMDP
from ..plotting.learning import learning_curve
from ..soft_dqn import SoftDQN
from ..soft_policy_gradient import occupancy_weighted_kl, soft_policy_gradient
from ..soft_q_learning import SoftQLearning, reachable_states
from .common import (
    UsageError,
    add_command,
    fmt,
    number_type,
    positive_float,
    positive_int,
    save_figure,
    table,
)
from .problems import BUILTIN_ENVS, CONTINUOUS_ENVS, build_mdp, parse_env

__all__ = ["ALGORITHMS", "register", "run"]

_DEFAULT_STEPS = {"soft-q": 40_000, "soft-pg": 200, "kl-pi": 30, "soft-dqn": 50_000, "awr": 100_000}
_DEFAULT_DISCOUNT = {"soft-dqn": 0.99, "awr": 0.99}  # the others: 0.95


def _make_env(args) -> gym.Env:
    spec = args.env
    if spec.name in BUILTIN_ENVS or spec.name in CONTINUOUS_ENVS:
        raise UsageError(
            f"--algo {args.algo} learns from a gymnasium env id (e.g. FrozenLake-v1, "
            f"CliffWalking-v1), got the built-in {spec.name!r}"
        )
    try:
        return gym.make(spec.name, **spec.options)
    except (gym.error.Error, TypeError) as exc:
        raise UsageError(f"cannot make {spec}: {exc}") from None


def _exact_mdp(args, env, horizon: int) -> TabularMDP:
    try:
        return TabularMDP.from_gymnasium(env, horizon)
    except ValueError as exc:
        raise UsageError(f"--algo {args.algo} needs a tabular env: {exc}") from None


def _soft_q(args):
    env = _make_env(args)
    try:
        algo = SoftQLearning(
            env, args.temperature, args.discount, seed=args.seed, epsilon=args.epsilon,
            lr_decay=args.lr_decay, progress=not args.quiet,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    mdp = _exact_mdp(args, env, 1)
    exact = discounted_soft_value_iteration(
        mdp, discount=args.discount, temperature=args.temperature
    )
    mask = reachable_states(mdp)
    n = algo.q.shape[0]
    rows = [("env steps", "sup |Q - Q*| (reachable)", "mean return (last 20)")]
    chunks = 10
    for k in range(1, chunks + 1):
        target = args.steps * k // chunks
        if target > algo.num_timesteps:
            algo.learn(target - algo.num_timesteps)
        err = (algo.q - exact.q[:n])[mask[:n]].abs().max().item()
        algo.history.log("sup |Q - Q*|", algo.num_timesteps, err)
        tail = algo.history.episode_returns[-20:]
        rows.append(
            (str(algo.num_timesteps), fmt(err), fmt(sum(tail) / len(tail)) if tail else "n/a")
        )
    return rows, algo.history, {"key": "sup |Q - Q*|", "reference": 0.0}


def _soft_pg(args):
    env = _make_env(args)
    mdp = _exact_mdp(args, env, args.horizon)
    exact = discounted_soft_value_iteration(
        mdp, discount=args.discount, temperature=args.temperature
    )
    guide = StationaryGuide(mdp)
    rows = [("step", "env steps", "ELBO estimate", "occupancy-weighted KL")]
    every = max(args.steps // 10, 1)

    def checkpoint(step, res):
        if (step + 1) % every == 0 or step + 1 == args.steps:
            kl = occupancy_weighted_kl(mdp, guide.policy()[0], exact.policy, discount=args.discount)
            res.history.log("KL to pi*", res.env_steps, kl)
            elbo = res.history.losses["elbo"][-1][1]
            rows.append((str(step + 1), str(res.env_steps), fmt(elbo), fmt(kl)))

    try:
        res = soft_policy_gradient(
            env, guide, args.temperature, args.discount, steps=args.steps,
            episodes_per_step=args.episodes, lr=0.3, lr_final=0.005, seed=args.seed,
            progress=not args.quiet, callback=checkpoint,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return rows, res.history, {"key": "KL to pi*", "reference": 0.0}


def _kl_pi(args):
    mdp = build_mdp(args.env, horizon=args.horizon, seed=args.seed)
    res = kl_regularised_policy_iteration(
        mdp, temperature=args.temperature, iterations=args.steps, progress=not args.quiet
    )
    rows = [("iteration", "expected return", "KL to previous", "bound (J_k - J_k-1)/alpha")]
    bounds = res.kl_bounds
    for k in range(len(res.returns)):
        rows.append(
            (str(k), fmt(res.returns[k].item()), fmt(res.kls[k].item()), fmt(bounds[k].item()))
        )
    rows.append(("optimal", fmt(res.optimal_return), "", ""))
    return rows, res, {"reference": res.optimal_return}


def _neural(cls):
    """A runner for an SB3-style learner: evaluations every tenth of the run."""

    def runner(args):
        env = _make_env(args)
        try:
            algo = cls(
                env, args.temperature, discount=args.discount, seed=args.seed,
                progress=not args.quiet, eval_every=max(args.steps // 10, 1),
                eval_episodes=args.eval_episodes, num_threads=args.threads,
            )  # fmt: skip
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        history = algo.learn(args.steps)
        rows = [("env steps", "mean eval return", "std")]
        for step, mean, std in zip(history.eval_steps, history.eval_mean, history.eval_std):
            rows.append((str(step), fmt(mean), fmt(std)))
        threshold = env.spec.reward_threshold if env.spec is not None else None
        if threshold is not None:
            rows.append(("reward threshold", fmt(threshold), ""))
        return rows, history, {"reference": threshold}

    return runner


# name -> runner(args) -> (table rows, what learning_curve draws, its keywords)
ALGORITHMS = {
    "soft-q": _soft_q,
    "soft-pg": _soft_pg,
    "kl-pi": _kl_pi,
    "soft-dqn": _neural(SoftDQN),
    "awr": _neural(AWR),
}


def run(args) -> int:
    if args.steps is None:
        args.steps = _DEFAULT_STEPS[args.algo]
    if args.discount is None:
        args.discount = _DEFAULT_DISCOUNT.get(args.algo, 0.95)
    rows, curve, curve_kwargs = ALGORITHMS[args.algo](args)
    print(
        f"pgm-control learn: {args.algo} on {args.env} (alpha={args.temperature:g}, "
        f"gamma={args.discount:g}, seed={args.seed})"
    )
    print(table(rows))
    if args.plot:
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        learning_curve(curve, ax=ax, label=args.algo, **curve_kwargs)
        ax.set_title(f"{args.algo} on {args.env}")
        print(f"wrote {save_figure(fig, args.plot)}")
    return 0


_discount = number_type(float, lambda v: 0 < v < 1, "a discount in (0, 1)")
_probability = number_type(float, lambda v: 0 <= v <= 1, "a probability in [0, 1]")
_nonnegative = number_type(float, lambda v: 0 <= v < float("inf"), "a number >= 0")


def register(subparsers):
    parser = add_command(
        subparsers, "learn",
        help="learn from env samples (soft Q-learning, soft policy gradient, KL-regularised PI)",
        description=(
            "Run an algorithm derived from the ELBO on a gymnasium env id and print its "
            "distance to the exact answer it approximates (computed from the env's tables, "
            "which are used only to check)."
        ),
    )  # fmt: skip
    parser.add_argument("--algo", required=True, choices=sorted(ALGORITHMS), help="the algorithm")
    parser.add_argument(
        "--env", type=parse_env, default=parse_env("FrozenLake-v1"), metavar="NAME[:OPTS]",
        help="gymnasium env id with options, e.g. CliffWalking-v1, FrozenLake-v1:nonslippery "
        "(default: FrozenLake-v1, 4x4 slippery)",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=positive_int, default=None,
        help="soft-q, soft-dqn, awr: env steps (default 40000, 50000, 100000); soft-pg: "
        "gradient steps (default 200); kl-pi: iterations (default 30)",
    )  # fmt: skip
    parser.add_argument("--temperature", "--alpha", type=positive_float, default=1.0,
                        help="temperature α > 0 (default: %(default)s)")  # fmt: skip
    parser.add_argument("--discount", "--gamma", type=_discount, default=None,
                        help="discount γ in (0, 1) (default: 0.99 for soft-dqn and awr, "
                        "else 0.95)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument(
        "--horizon", "-T", type=positive_int, default=100,
        help="soft-pg: episode length T; kl-pi: horizon (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--episodes", type=positive_int, default=64,
        help="soft-pg: episodes per gradient step (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--epsilon", type=_probability, default=0.2,
        help="soft-q: probability of a uniform action (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--lr-decay", type=_nonnegative, default=0.3,
        help="soft-q: ω of the learning rate n(s,a)^-ω (default: %(default)s; 1 suits "
        "stochastic envs such as slippery FrozenLake, see benchmarks/soft_q_learning.py)",
    )  # fmt: skip
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="write a PNG of the learning curve (default: no plot)")  # fmt: skip
    parser.add_argument(
        "--eval-episodes", type=positive_int, default=10,
        help="soft-dqn, awr: deterministic episodes per evaluation (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=positive_int, default=1,
        help="soft-dqn, awr: torch threads while learning (default: %(default)s; small networks "
        "are fastest on one)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser
