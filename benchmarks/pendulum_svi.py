"""Pendulum-v1 swing-up by SVI: a closed-loop "gaussian_mlp" guide fitted to p(τ | O).

Acceptance (issue 3): a "gaussian_mlp" policy trained by ``fit`` in ≤ 3 minutes of CPU reaches,
in the real gymnasium Pendulum-v1 with its deterministic action c + h·tanh(μ(s)),

* a mean 200-step return ≥ −200 over 10 seeded starts drawn from the env's reset distribution;
* a 200-step return ≥ −380 from hanging at rest (θ = π, θ̇ = 0).

Training uses the reparameterised ELBO (pathwise gradients through the torch twin of the
dynamics) on short rollouts (T = 40 steps, 2 s) from start states drawn from the reset
distribution, α = 0.1, Adam at a constant learning rate, an MLP with two hidden layers of 128.
What was tried on the way (returns in the torch twin, every 100 steps of training): T = 30
gives good reset-start returns (≈ −120) but a hanging return that wanders between −373 and −466;
T = 60 does not train within the budget; 64 hidden units reach −355…−385 from hanging, jumping
with the sign of the push at the symmetric hanging state (averaging the weights over the last
steps, SWA, can cancel that push and gave −394 once); 128 units settle at −355…−362.
Also measured: the speed of the fast form (one ``actions`` site per trajectory) against the
per-step form (T ``a_t`` sites), and that both give the same ELBO on the same noise.

Run:          python benchmarks/pendulum_svi.py
Quick check:  python benchmarks/pendulum_svi.py --smoke
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from pyro.infer import Trace_ELBO  # noqa: E402

from pgm_control import envs  # noqa: E402
from pgm_control.models import continuous_control_model  # noqa: E402
from pgm_control.svi import fit  # noqa: E402

HANGING = (math.pi, 0.0)
FIGURE = os.path.join(os.path.dirname(__file__), "..", "docs", "figures", "pendulum_svi_curve.png")


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(x)))
    return np.convolve(x, np.ones(window) / window, mode="valid")


def form_speed(guide, horizon, num_particles, alpha, repeats):
    """ms per SVI step (loss + gradient) of each form, and their ELBOs on the same noise."""
    mdp = envs.pendulum(horizon=horizon)
    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=0)
    ms, same_noise = {}, {}
    for vectorized in (True, False):
        kwargs = dict(temperature=alpha, vectorized=vectorized)
        pyro.set_rng_seed(123)
        same_noise[vectorized] = -elbo.loss(continuous_control_model, guide, mdp, **kwargs)
        start = time.perf_counter()
        for _ in range(repeats):
            loss = elbo.differentiable_loss(continuous_control_model, guide, mdp, **kwargs)
            loss.backward()
        ms[vectorized] = 1000 * (time.perf_counter() - start) / repeats
    guide.zero_grad()
    return ms, same_noise


def plot_curve(history, window, path, title):
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(
        np.arange(len(history)), history, lw=0.6, alpha=0.35, color="C0", label="ELBO (one step)"
    )
    smooth = moving_average(history, window)
    ax.plot(
        np.arange(len(smooth)) + (len(history) - len(smooth)),
        smooth,
        lw=1.8,
        color="C0",
        label=f"moving average ({window} steps)",
    )
    ax.set_xlabel("SVI step")
    ax.set_ylabel("ELBO per trajectory (nats)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--horizon", type=int, default=40, help="training rollout length T")
    p.add_argument("--temperature", type=float, default=0.1, help="α")
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--particles", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=128, help="width of the MLP's two layers")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the 10 reset draws")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument(
        "--figure", default=None, help=f"where to save the training curve (default {FIGURE}; "
        "a --smoke run saves none unless given)",
    )  # fmt: skip
    p.add_argument("--progress", action="store_true", help="show the tqdm bar")
    p.add_argument("--smoke", action="store_true", help="tiny settings; no acceptance verdict")
    args = p.parse_args(argv)
    if args.smoke:
        args.horizon, args.steps, args.particles, args.episodes = 5, 5, 8, 2
    elif args.figure is None:
        args.figure = FIGURE  # the README's figure: only a full run replaces it
    torch.set_num_threads(1)  # a rollout is many small ops: extra threads only contend

    mdp = envs.pendulum(horizon=args.horizon)
    print(
        f"Pendulum-v1 by SVI: guide=gaussian_mlp estimator=reparam T={args.horizon} "
        f"α={args.temperature} particles={args.particles} steps={args.steps} Adam lr={args.lr} "
        f"seed={args.seed} hidden=({args.hidden}, {args.hidden}); "
        "starts ~ reset distribution; torch threads=1"
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fit(
        mdp,
        "gaussian_mlp",
        estimator="reparam",
        steps=args.steps,
        num_particles=args.particles,
        optimizer="adam",
        lr=args.lr,
        temperature=args.temperature,
        seed=args.seed,
        progress=args.progress,
    )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    elbo = result.elbo
    note = " [interrupted]" if result.extra["interrupted"] else ""
    print(
        f"trained {len(elbo)} steps in {cpu:.1f} s CPU ({wall:.1f} s wall, "
        f"{result.seconds:.1f} s in the SVI loop){note}"
    )

    window = max(1, len(elbo) // 20)
    smooth = moving_average(elbo, window)
    marks = np.linspace(0, len(smooth) - 1, min(9, len(smooth))).astype(int)
    print(f"ELBO (nats/trajectory, moving average over {window} steps):")
    print("  step " + " ".join(f"{m + window:>7d}" for m in marks))
    print("  ELBO " + " ".join(f"{smooth[m]:>7.0f}" for m in marks))

    policy = result.guide.act  # c + h·tanh(μ(s)): the deterministic (median) action
    resets = envs.evaluate_policy(
        "Pendulum-v1", policy, episodes=args.episodes, seed=args.eval_seed
    )
    hanging = envs.evaluate_policy("Pendulum-v1", policy, episodes=1, initial_state=HANGING)[0]
    print("real gymnasium Pendulum-v1, 200 steps, deterministic action:")
    print(
        f"  {args.episodes} reset starts (env.reset(seed={args.eval_seed}), then reset()): "
        f"mean {resets.mean():.1f} ± {resets.std():.1f}"
    )
    print(f"    {np.round(resets, 1).tolist()}")
    print(f"  hanging at rest (θ=π, θ̇=0): {hanging:.1f}")

    ms, same_noise = form_speed(
        result.guide,
        args.horizon,
        args.particles,
        args.temperature,
        repeats=3 if args.smoke else 20,
    )
    print(
        f"fast form (one 'actions' site) vs per-step form (T={args.horizon} 'a_t' sites), "
        f"{args.particles} particles, loss + gradient:"
    )
    print(
        f"  {ms[True]:.1f} ms vs {ms[False]:.1f} ms per step: {ms[False] / ms[True]:.2f}x; "
        f"ELBO on the same noise {same_noise[True]:.6f} vs {same_noise[False]:.6f}"
    )

    title = (
        f"Pendulum-v1, gaussian_mlp by SVI (T={args.horizon}, α={args.temperature})\n"
        f"real env: reset starts {resets.mean():.0f}, hanging {hanging:.0f}"
    )
    if args.figure:
        plot_curve(elbo, window, args.figure, title)
        print(f"training curve saved to {os.path.relpath(args.figure)}")

    if args.smoke:
        print("smoke run: no verdict")
        return 0
    checks = {
        f"CPU time {cpu:.1f} s <= 180 s": cpu <= 180,
        f"mean return over {args.episodes} reset starts {resets.mean():.1f} >= -200": (
            resets.mean() >= -200
        ),
        f"return from hanging {hanging:.1f} >= -380": hanging >= -380,
    }
    for text, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
    passed = all(checks.values())
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
