"""The entropy-regularised policy gradient on slippery FrozenLake 4x4, from env samples only.

Acceptance run (issue 10)::

    python benchmarks/soft_policy_gradient.py           # a few minutes on a quiet 2-core CPU
    python benchmarks/soft_policy_gradient.py --smoke   # tiny settings (verdict not binding)

A stationary tabular guide (``guides.StationaryGuide``, q(a|s) ∝ p(a|s)·exp θ[s,a]) learns by
:func:`pgm_control.soft_policy_gradient` at γ = 0.95, α = 0.01 (at α = 1 the soft-optimal
policy of this env is within KL 2e-4 of uniform: nothing to learn). Every checkpoint prints
the occupancy-weighted KL(q ‖ π*) to the discounted soft-optimal policy π* of
:func:`pgm_control.discounted_soft_value_iteration` (the tables only check). PASS: KL ≤ 0.01
at the end; the env steps from which it stays ≤ 0.01 are reported.
"""

from __future__ import annotations

import argparse
import time

import pgm_control as pc
from pgm_control.guides.tabular import StationaryGuide
from pgm_control.soft_policy_gradient import occupancy_weighted_kl, soft_policy_gradient

TARGET = 0.01


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.01)
    args = parser.parse_args(argv)
    steps = 4 if args.smoke else args.steps
    episodes = 8 if args.smoke else args.episodes
    gamma, alpha = 0.95, args.temperature
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 100, map_name="4x4", is_slippery=True)
    exact = pc.discounted_soft_value_iteration(mdp, discount=gamma, temperature=alpha)
    guide = StationaryGuide(mdp)
    every = max(steps // 12, 1)
    log, reached = [], [None]

    def checkpoint(step, res):
        if (step + 1) % every and step + 1 != steps:
            return
        kl = occupancy_weighted_kl(mdp, guide.policy()[0], exact.policy, discount=gamma)
        if kl > TARGET:
            reached[0] = None
        elif reached[0] is None:
            reached[0] = res.env_steps
        log.append(kl)
        print(f"  {step + 1:6d} {res.env_steps:9d} {kl:9.4f} {time.perf_counter() - start:7.1f}")

    print(
        f"== FrozenLake-v1 4x4 slippery, γ = {gamma}, α = {alpha:g}, seed {args.seed}: "
        f"{episodes} episodes per step, lr 0.3 → 0.005"
    )
    print(f"  {'step':>6s} {'env steps':>9s} {'KL':>9s} {'s':>7s}")
    kl0 = occupancy_weighted_kl(mdp, guide.policy()[0], exact.policy, discount=gamma)
    print(f"  {0:6d} {0:9d} {kl0:9.4f} {0.0:7.1f}")
    start = time.perf_counter()
    res = soft_policy_gradient(
        "FrozenLake-v1", guide, alpha, gamma, steps=steps, episodes_per_step=episodes,
        lr=0.3, lr_final=0.005, seed=args.seed, progress=False, callback=checkpoint,
    )  # fmt: skip
    ok = bool(log) and log[-1] <= TARGET
    print(
        f"  [{'PASS' if ok else 'FAIL'}] occupancy-weighted KL ≤ {TARGET}: {log[-1]:.4f} after "
        f"{res.env_steps} env steps ({res.steps} steps); ≤ {TARGET} from env step "
        f"{reached[0] if reached[0] is not None else '—'} on"
    )
    note = " (smoke run: no verdict)" if args.smoke else ""
    print(f"\noverall: {'PASS' if ok else 'FAIL'}{note}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
