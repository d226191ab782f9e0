"""AWR (KL-regularised policy iteration from samples) on CartPole-v1: steps to a mean return of 475.

Each seed runs :class:`pgm_control.awr.AWR` with its defaults (α = ``--temperature``, γ = 0.99,
TD(λ = 0.95) critic, 1000 env steps per iteration, the last 10000 steps fitted, 200 critic and
200 M-step Adam steps of batch 256 per iteration, weights min(exp(A/α), 20)) and evaluates the
deterministic policy (argmax π) every ``--every`` env steps: mean return over
``--eval-episodes`` episodes on a separate env (resets seeded 10000 + seed + i), outside the
timed training.

Target (PASS/FAIL): every seed reaches a mean return ≥ 475 within ``--budget`` (100k) env steps.

Run:    python benchmarks/awr_cartpole.py
Smoke:  python benchmarks/awr_cartpole.py --smoke   (tiny; no verdict)
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym
import numpy as np
import torch

from pgm_control.awr import AWR

ENV_ID = "CartPole-v1"


def evaluate(algo: AWR, seed: int, episodes: int) -> float:
    env = gym.make(ENV_ID)
    total = 0.0
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + seed + i)
        done = False
        while not done:
            obs, r, terminated, truncated, _ = env.step(algo.predict(obs, deterministic=True)[0])
            total += float(r)
            done = terminated or truncated
    env.close()
    return total / episodes


def run(seed: int, args) -> dict:
    algo = AWR(ENV_ID, args.temperature, seed=seed, progress=False, **args.settings)
    curve, cpu, wall, reached = [], 0.0, 0.0, None
    while algo.num_timesteps < args.budget:
        w, c = time.perf_counter(), time.process_time()
        algo.learn(args.every)
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
        ret = evaluate(algo, seed, args.eval_episodes)
        curve.append((algo.num_timesteps, ret))
        if ret >= 475 and reached is None:
            reached = algo.num_timesteps
            if not args.full_curve:
                break
    return {"curve": curve, "reached": reached, "cpu": cpu, "wall": wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=100_000)
    p.add_argument("--every", type=int, default=5000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--temperature", type=float, default=1.0, help="α (Peng et al.'s β)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--full-curve", action="store_true", help="keep going after reaching 475")
    p.add_argument("--smoke", action="store_true", help="tiny settings, no verdict")
    args = p.parse_args(argv)
    args.settings = {}
    if args.smoke:
        args.seeds, args.budget, args.every, args.eval_episodes = [0], 400, 200, 1
        args.settings = dict(steps_per_iteration=100, value_steps=5, policy_steps=5)
    torch.set_num_threads(args.threads)
    print(
        f"{ENV_ID}, AWR α = {args.temperature}, {args.threads} torch thread(s); mean "
        f"deterministic return over {args.eval_episodes} episodes every {args.every} steps"
    )
    results = {}
    for seed in args.seeds:
        res = results[seed] = run(seed, args)
        curve = " ".join(f"{s}:{r:.0f}" for s, r in res["curve"])
        print(f"seed {seed}: steps to 475: {res['reached']}  (train {res['wall']:.1f} s wall, "
              f"{res['cpu']:.1f} s CPU)  {curve}", flush=True)  # fmt: skip
    reached = [r["reached"] for r in results.values()]
    if all(x is not None for x in reached):
        print(f"steps to 475: mean {np.mean(reached):.0f}, max {max(reached)}")
    if args.smoke:
        print("smoke run: no verdict")
        return 0
    ok = all(x is not None and x <= args.budget for x in reached)
    print(f"[{'PASS' if ok else 'FAIL'}] mean return >= 475 within {args.budget} steps on every "
          f"seed ({reached})")  # fmt: skip
    print(f"overall: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
