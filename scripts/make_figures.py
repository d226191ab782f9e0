"""Write the documentation figures into docs/figures/ (exact computations, a few seconds).

    python scripts/make_figures.py [--out docs/figures]

* ``frozenlake_values.png`` — V₀ and the policy at t = 0 on slippery FrozenLake 4x4, for the
  exact posterior (optimistic backup) and the structured guide (expected backup).
* ``posterior_marginals.png`` — p(sₜ | O) on the grid at several times.
* ``lottery_optimism.png`` — the lottery: win probability under the posterior vs the truth,
  and what each policy earns in the true dynamics.
"""

from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pgm_control as pc  # noqa: E402
from pgm_control import plotting  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "figures"
HORIZON = 15
_SAVE = dict(dpi=120, metadata={"Software": None})  # no version stamp: stable files


def frozenlake_values(path: pathlib.Path, temperature: float = 0.01) -> None:
    lake = pc.TabularMDP.from_gymnasium("FrozenLake-v1", HORIZON)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    for ax, backup in zip(axes, ("optimistic", "expected")):
        sv = pc.soft_value_iteration(lake, temperature=temperature, backup=backup)
        what = "exact posterior" if backup == "optimistic" else "structured guide"
        plotting.plot_values(lake, sv, ax=ax, title=f"{what} ({backup} backup)")
    fig.suptitle(f"{lake.name}: V₀ and π₀, T = {HORIZON}, α = {temperature}")
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def posterior_marginals(path: pathlib.Path, temperature: float = 0.1) -> None:
    lake = pc.TabularMDP.from_gymnasium("FrozenLake-v1", HORIZON)
    marginals = pc.state_marginals(lake, temperature=temperature, include_final=True)
    fig = plotting.plot_marginals_on_grid(
        lake, marginals, times=[0, 3, 6, 9, 12, HORIZON], ncols=3,
        title=f"posterior p(sₜ | O) on {lake.name}, α = {temperature}",
    )  # fmt: skip
    fig.savefig(path, **_SAVE)
    plt.close(fig)


def lottery_optimism(path: pathlib.Path, temperature: float = 1.0) -> None:
    lottery = pc.lottery_mdp()
    (won,) = torch.nonzero(lottery.goal_states).flatten().tolist()  # the "won" state
    true_win = lottery.transition[0, 0, won].item()
    posterior_win = pc.posterior_dynamics(lottery, temperature=temperature)[0, 0, 0, won].item()
    returns = {}
    for backup in ("optimistic", "expected"):
        terms = pc.elbo_terms(
            lottery,
            pc.soft_value_iteration(lottery, temperature=temperature, backup=backup).policy,
            temperature=temperature,
        )
        returns[backup] = terms.reward.item() * temperature  # E[Σ r] in the true dynamics

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    bars = axes[0].bar(["true P(win)", "posterior p(win | O)"], [true_win, posterior_win],
                       color=["C0", "C3"])  # fmt: skip
    axes[0].bar_label(bars, fmt="%.4g")
    axes[0].set(yscale="log", ylim=(1e-5, 3), ylabel="probability a ticket wins",
                title="what exact inference believes")  # fmt: skip
    labels = ["posterior policy\n(optimistic)", "structured guide\n(expected)"]
    bars = axes[1].bar(labels, [returns["optimistic"], returns["expected"]], color=["C1", "C2"])
    axes[1].bar_label(bars, fmt="%.3f")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set(ylabel="expected return, true dynamics", title="what each policy earns")
    fig.suptitle(f"the lottery (win 10 w.p. 1e-4, ticket costs 1), α = {temperature}")
    fig.savefig(path, **_SAVE)
    plt.close(fig)


FIGURES = {
    "frozenlake_values.png": frozenlake_values,
    "posterior_marginals.png": posterior_marginals,
    "lottery_optimism.png": lottery_optimism,
}


def main(argv: list[str] | None = None) -> list[pathlib.Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    written = []
    for name, draw in FIGURES.items():
        draw(args.out / name)
        written.append(args.out / name)
        print(f"wrote {args.out / name}")
    return written


if __name__ == "__main__":
    main()
