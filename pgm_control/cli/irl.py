"""``pgm-control irl``: learn a reward from an expert's demonstrations, check it exactly.

The expert is the soft-optimal policy of the env's true reward (expected backup, temperature
α); ``--demonstrations`` trajectories are sampled from it in the true dynamics. The learner
then sees only those demonstrations and

* ``maxent``: the tables (dynamics), by the exact forward–backward gradient
  (:func:`~pgm_control.maxent_irl`, a free r(s, a) table);
* ``gcl``: ``env.step`` only, with the importance-sampled partition gradient
  (:func:`~pgm_control.guided_cost_learning`);
* ``airl``: ``env.step`` only, with the discriminator exp(f/α)/(exp(f/α) + π)
  (:func:`~pgm_control.adversarial_irl`).

The learned reward is then re-optimised exactly with the true tables (its soft-optimal policy
under the result's backup), and that policy's expected true return is compared with the
expert's.
"""

from __future__ import annotations

import gymnasium as gym
import torch

from ..adversarial_irl import DISCRIMINATORS, DYNAMICS, adversarial_irl
from ..backward import soft_value_iteration
from ..demonstrations import sample_demonstrations
from ..elbo import elbo_terms
from ..guided_cost_learning import guided_cost_learning
from ..maxent_irl import OBJECTIVES, maxent_irl
from ..mdp import TabularMDP
from ..plotting import plot_values
from ..reward_models import REWARD_INPUTS, TabularReward
from .common import (
    UsageError,
    add_command,
    fmt,
    header,
    number_type,
    positive_float,
    positive_int,
    save_figure,
    table,
)
from .problems import add_problem_arguments, build_mdp

__all__ = ["METHODS", "ITERATIONS", "run", "register", "expected_return"]

success_rate = number_type(float, lambda v: 0 < v <= 1, "a success rate in (0, 1]")

METHODS = ("maxent", "gcl", "airl")
ITERATIONS = {"maxent": 100, "gcl": 10, "airl": 20}  # what the acceptance tests use


def expected_return(mdp: TabularMDP, policy: torch.Tensor) -> float:
    """E[Σₜ r] acting with ``policy`` in the true dynamics (exact, from the ELBO's reward term)."""
    return float(elbo_terms(mdp, policy, temperature=1.0).reward)


def _learn(args, mdp: TabularMDP, demos):
    S, A = mdp.num_states, mdp.num_actions
    alpha = args.temperature
    if args.method == "maxent":
        one_hot = torch.eye(S * A, dtype=mdp.float_dtype).view(S, A, S * A)  # r(s, a) table
        causal = args.objective == "causal"  # the causal likelihood is the expected-backup model's
        return maxent_irl(
            mdp, one_hot, demos, temperature=alpha, steps=args.iterations, seed=args.seed,
            progress=not args.quiet, objective=args.objective,
            backup="expected" if causal else "optimistic",
        )  # fmt: skip
    env = gym.make(args.env.name, **args.env.options)
    common = {
        "temperature": alpha, "iterations": args.iterations, "seed": args.seed,
        "progress": not args.quiet, "policy_steps": args.policy_steps,
        "samples_per_iteration": args.samples,
    }  # fmt: skip
    if args.method == "gcl":
        model = TabularReward(S, A, inputs=args.reward)
        return guided_cost_learning(env, model, demos, **common)
    tuning = {"lr": args.lr, "discriminator_steps": args.discriminator_steps}
    return adversarial_irl(
        env, demos, reward_inputs=args.reward, discriminator=args.discriminator,
        dynamics=args.dynamics, **{k: v for k, v in tuning.items() if v is not None}, **common,
    )  # fmt: skip


def _transfer_rows(args, mdp: TabularMDP, result, alpha: float) -> list:
    """Re-optimise the learned reward under each ``--transfer`` success rate (FrozenLake's
    slip keyword) and compare with the soft-optimal expert of those dynamics."""
    rows = []
    for rate in args.transfer:
        options = dict(args.env.options, success_rate=rate)
        new = TabularMDP.from_gymnasium(args.env.name, mdp.horizon, **options)
        new_expert = soft_value_iteration(new, temperature=alpha, backup="expected").policy
        learned = soft_value_iteration(
            result.mdp_with_reward(new), temperature=alpha, backup=result.backup
        ).policy
        ratio = expected_return(new, learned) / expected_return(new, new_expert)
        rows.append((f"transfer: success_rate {rate:g}", fmt(ratio), "learned / new expert"))
    return rows


def run(args) -> int:
    mdp = build_mdp(args.env, horizon=args.horizon, seed=args.seed)
    if mdp.state_to_obs is not None or mdp.num_states != mdp.num_observations:
        raise UsageError(f"{args.env}: its MDP adds copy states; irl needs one per observation")
    if args.method != "maxent" and args.env.name in ("lottery", "chain", "random"):
        raise UsageError(f"--method {args.method} learns from env.step: give a gymnasium env")
    alpha = args.temperature
    if args.iterations is None:
        args.iterations = ITERATIONS[args.method]
    expert = soft_value_iteration(mdp, temperature=alpha, backup="expected").policy
    demos = sample_demonstrations(mdp, expert, args.demonstrations, seed=args.seed)
    result = _learn(args, mdp, demos)
    learned_mdp = result.mdp_with_reward(mdp)
    learned = soft_value_iteration(learned_mdp, temperature=alpha, backup=result.backup)
    uniform = torch.full((mdp.num_states, mdp.num_actions), 1 / mdp.num_actions,
                         dtype=mdp.float_dtype)  # fmt: skip
    ret_expert = expected_return(mdp, expert)
    ret_learned = expected_return(mdp, learned.policy)
    rows = [
        ("quantity", "value", "note"),
        ("expert E[return]", fmt(ret_expert), "soft-optimal, expected backup, exact"),
        ("learned reward's policy E[return]", fmt(ret_learned), f"{result.backup} backup"),
        ("ratio learned / expert", fmt(ret_learned / ret_expert), "acceptance: >= 0.95 / 0.9"),
        ("uniform policy E[return]", fmt(expected_return(mdp, uniform)), "for scale"),
        ("seconds", fmt(result.seconds), result.algorithm),
    ]
    if "ess" in result.history:
        rows.append(("ESS of the last reward step", fmt(result.history["ess"][-1]),
                     "importance weights, demos mixed in"))  # fmt: skip
    if len(result.log_likelihood):
        rows.append(("log-likelihood", fmt(result.log_likelihood[-1]), "per demonstration"))
    if args.transfer:
        rows += _transfer_rows(args, mdp, result, alpha)
    print(header(f"irl --method {args.method}", mdp, alpha))
    print(f"{args.demonstrations} demonstrations of horizon {mdp.horizon}")
    print(table(rows))
    if args.save:
        result.save(args.save)
        print(f"wrote {args.save}")
    if not args.no_plot and args.plot:
        title = f"{args.method}: soft V0 and policy of the learned reward"
        ax = plot_values(mdp, learned.v[0], learned.policy[0], title=title)
        print(f"wrote {save_figure(ax.figure, args.plot)}")
    return 0


def register(subparsers):
    parser = add_command(
        subparsers, "irl",
        help="inverse RL: MaxEnt IRL (tables), guided cost learning or AIRL (env.step only)",
        description=(
            "Sample demonstrations from the soft-optimal expert of the env's true reward, "
            "learn a reward from them (maxent: exact forward-backward gradient with the "
            "tables; gcl: importance-sampled partition gradient from env.step; airl: the "
            "discriminator exp(f/a)/(exp(f/a)+pi) from env.step), then re-optimise the "
            "learned reward exactly and compare its policy's true return with the expert's."
        ),
    )  # fmt: skip
    add_problem_arguments(
        parser, plot_default=None, plot_help="write a PNG of the learned reward's V0 and policy"
    )
    parser.set_defaults(horizon=20)  # α: the library's one default (1); examples pass 0.05
    parser.add_argument("--method", choices=METHODS, default="gcl",
                        help="which IRL algorithm (default: %(default)s)")  # fmt: skip
    parser.add_argument("--demonstrations", type=positive_int, default=500,
                        help="number of expert trajectories (default: %(default)s)")  # fmt: skip
    parser.add_argument("--iterations", type=positive_int, default=None,
                        help="outer iterations (maxent: optimiser steps); default per method: "
                        + ", ".join(f"{m} {n}" for m, n in ITERATIONS.items()))  # fmt: skip
    parser.add_argument("--policy-steps", type=positive_int, default=2000,
                        help="gcl/airl: soft Q-learning steps per iteration "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--objective", choices=OBJECTIVES, default="features",
                        help="maxent: features (L, optimistic backup) or causal (the causal "
                        "log-likelihood, expected backup) (default: %(default)s)")  # fmt: skip
    parser.add_argument("--reward", choices=REWARD_INPUTS, default="state_action",
                        help="gcl/airl: what r_psi depends on (default: %(default)s)")  # fmt: skip
    parser.add_argument("--discriminator", choices=DISCRIMINATORS, default="airl",
                        help="airl: the discriminator's form (default: %(default)s)")  # fmt: skip
    parser.add_argument("--dynamics", choices=DYNAMICS, default="samples",
                        help="airl: samples (model-free) or empirical (expected shaping, "
                        "exact generator in the counted P-hat) (default: %(default)s)")  # fmt: skip
    parser.add_argument("--samples", type=positive_int, default=200,
                        help="gcl/airl: policy trajectories per iteration "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--discriminator-steps", type=positive_int, default=None,
                        help="airl: Adam steps on the discriminator per iteration "
                        "(default: the function's, 10)")  # fmt: skip
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="airl: the discriminator's Adam step size on f/alpha "
                        "(default: the function's, 1.0)")  # fmt: skip
    parser.add_argument("--transfer", type=success_rate, nargs="+", metavar="RATE", default=(),
                        help="FrozenLake: re-optimise the learned reward under these "
                        "success_rate values and compare with their experts")  # fmt: skip
    parser.add_argument("--save", metavar="PATH", help="save the IRLResult (IRLResult.load)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser
