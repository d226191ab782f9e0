"""``pgm-control sac``: soft actor-critic (the gaussian_mlp guide as actor) on a gymnasium env."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..plotting.learning import learning_curve
from ..sac import SAC
from .common import UsageError, add_command, positive_float, positive_int, save_figure

__all__ = ["run", "register"]


def run(args) -> int:
    temperature = args.temperature
    if temperature != "auto":
        try:
            temperature = float(temperature)
        except ValueError:
            raise UsageError(
                f"--temperature must be 'auto' or a number > 0, got {temperature!r}"
            ) from None
        if not temperature > 0:
            raise UsageError(f"--temperature must be > 0 (or 'auto'), got {temperature}")
    try:
        model = SAC(
            args.env, temperature=temperature, learning_rate=args.lr, seed=args.seed,
            hidden=(args.hidden, args.hidden), eval_every=args.eval_every,
            eval_episodes=args.eval_episodes, progress=not args.no_progress,
            noise_correlation=args.noise_correlation,
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    history = model.learn(args.steps)
    result = model.evaluate(args.eval_episodes)
    returns = np.asarray(result.returns, dtype=float)
    print(f"SAC on {args.env}: {model.num_timesteps} env steps in {history.seconds:.1f} s "
          f"({1000 * history.seconds / max(model.num_timesteps, 1):.2f} ms/step), "
          f"final α = {model.temperature:.4g}")  # fmt: skip
    print(f"deterministic return over {len(returns)} episodes: "
          f"{returns.mean():.1f} ± {returns.std():.1f}")  # fmt: skip
    if history.interrupted:
        print("(interrupted: the model above is what was learned so far)")
    if args.save:
        model.save(args.save)
        print(f"saved to {args.save}")
    if args.plot:
        fig, (ax_ret, ax_alpha) = plt.subplots(1, 2, figsize=(10, 3.5))
        learning_curve(model, ax=ax_ret, label="SAC (gaussian_mlp actor)")
        ax_ret.set_title(f"{args.env}: returns")
        learning_curve(model, key="temperature", ax=ax_alpha, label="α")
        ax_alpha.set_title("learned temperature" if temperature == "auto" else "temperature")
        fig.tight_layout()
        print(f"wrote {save_figure(fig, args.plot)}")
        plt.close(fig)
    return 0


def register(subparsers):
    parser = add_command(
        subparsers, "sac",
        help="soft actor-critic from env samples (the gaussian_mlp guide is the actor)",
        description=(
            "Soft actor-critic: twin soft Q critics, Polyak targets, a replay buffer and an "
            "automatic temperature, with the tanh-squashed gaussian_mlp guide of `fit` as the "
            "actor, learned from env.step alone. Prints the deterministic evaluation return."
        ),
    )  # fmt: skip
    parser.add_argument("--env", default="Pendulum-v1",
                        help="a gymnasium id with Box observations and a bounded Box action "
                        "space (default: Pendulum-v1)")  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=20_000, help="env steps")
    parser.add_argument("--temperature", default="auto",
                        help="α > 0, or 'auto' (learned; default)")  # fmt: skip
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam step (1e-3)")
    parser.add_argument("--hidden", type=positive_int, default=128,
                        help="hidden width of actor and critics (128)")  # fmt: skip
    parser.add_argument("--noise-correlation", type=float, default=0.0, metavar="RHO",
                        help="ρ in [0, 1): exploration noise correlated across env steps, each "
                        "action still a draw from q(a|s) (0: independent; MountainCar "
                        "needs 0.95)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=positive_int, default=None, metavar="N",
                        help="evaluate every N steps (default: steps/10)")  # fmt: skip
    parser.add_argument("--eval-episodes", type=positive_int, default=5)
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="write the learning curve and the temperature to a PNG")  # fmt: skip
    parser.add_argument("--save", default=None, metavar="PATH", help="save the model")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=_run_with_defaults)
    return parser


def _run_with_defaults(args) -> int:
    if args.eval_every is None:
        args.eval_every = max(args.steps // 10, 1)
    return run(args)
