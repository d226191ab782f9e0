"""Tabular soft Q-learning against the exact discounted soft value iteration (issue 10).

Acceptance run::

    python benchmarks/soft_q_learning.py           # a few minutes on a quiet 2-core CPU
    python benchmarks/soft_q_learning.py --smoke   # tiny settings, seconds (verdicts not binding)

For CliffWalking-v1 and slippery FrozenLake-v1 4x4 at γ = 0.95, α = 1, ``SoftQLearning`` learns
from ``env.step`` alone; every checkpoint prints sup |Q − Q*| over the states reachable from
the start, Q* from :func:`pgm_control.discounted_soft_value_iteration` on
``TabularMDP.from_gymnasium`` (the tables only check, never teach). PASS: the final error is
≤ 0.05; the first checkpoint from which it stays ≤ 0.05 is reported as the steps needed.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import pgm_control as pc
from pgm_control.soft_q_learning import SoftQLearning, reachable_states

RESULTS: list[bool] = []
TARGET = 0.05

# env id, make kwargs, steps, learner settings (documented in the README)
CASES = [
    ("CliffWalking-v1", {}, 100_000, {"lr_decay": 0.3, "epsilon": 0.2}),
    ("FrozenLake-v1", {"map_name": "4x4", "is_slippery": True}, 600_000, {"lr_decay": 1.0}),
]


def check(label: str, ok: bool, detail: str) -> None:
    RESULTS.append(ok)
    print(f"  [{'PASS' if ok else 'FAIL'}] {label}: {detail}")


def q_error(algo: SoftQLearning, reference, mask) -> float:
    """sup over reachable states and all actions of |Q − Q*|."""
    n = algo.q.shape[0]
    return (algo.q - reference[:n])[mask[:n]].abs().max().item()


def run_case(env_id, kwargs, steps, settings, *, seed, checkpoints, discount, temperature):
    mdp = pc.TabularMDP.from_gymnasium(env_id, 1, **kwargs)
    exact = pc.discounted_soft_value_iteration(mdp, discount=discount, temperature=temperature)
    mask = reachable_states(mdp)
    algo = SoftQLearning(
        gym.make(env_id, **kwargs),
        temperature=temperature,
        discount=discount,
        seed=seed,
        progress=False,
        **settings,
    )
    label = f"{env_id} {kwargs or ''}".strip()
    print(f"\n== {label}, seed {seed}, {settings}: sup |Q − Q*| over {int(mask.sum())} states")
    print(f"  {'steps':>9s} {'error':>9s} {'s':>6s}")
    start, reached, err = time.perf_counter(), None, float("nan")
    for k in range(1, checkpoints + 1):
        algo.learn(steps * k // checkpoints - algo.num_timesteps)
        err = q_error(algo, exact.q, mask)
        if err <= TARGET and reached is None:
            reached = algo.num_timesteps
        elif err > TARGET:
            reached = None
        print(f"  {algo.num_timesteps:9d} {err:9.4f} {time.perf_counter() - start:6.1f}")
    check(
        f"{label} seed {seed}: sup error ≤ {TARGET}",
        err <= TARGET,
        f"{err:.4f} after {algo.num_timesteps} steps; ≤ {TARGET} from step "
        f"{reached if reached is not None else '—'} on",
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings (seconds)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--checkpoints", type=int, default=10)
    args = parser.parse_args(argv)
    for env_id, kwargs, steps, settings in CASES:
        for seed in args.seeds:
            run_case(
                env_id,
                kwargs,
                2_000 if args.smoke else steps,
                settings,
                seed=seed,
                checkpoints=2 if args.smoke else args.checkpoints,
                discount=0.95,
                temperature=1.0,
            )
    ok = all(RESULTS)
    note = " (smoke run: no verdict)" if args.smoke else ""
    print(f"\noverall: {'PASS' if ok else 'FAIL'}{note}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
