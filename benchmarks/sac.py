"""Soft actor-critic (the gaussian_mlp guide as actor) side by side with Stable-Baselines3's SAC.

Pendulum-v1, rl-baselines3-zoo's hyperparameters (learning_rate 1e-3, the rest SB3's defaults:
buffer 1e6, learning_starts 100, batch 256, τ 0.005, γ 0.99, one gradient step per env step,
ent_coef "auto"), on the same seeds, one torch thread each, in one process: the mean
deterministic return over 10 evaluation episodes (the same evaluation env seeds for both) at
5k, 10k and 20k env steps, and the seconds spent learning. Ours uses 128-unit hidden layers
(SB3: 256); the update ratio and every other setting match.

    python benchmarks/sac.py                    # 3 seeds × 20k steps, both libraries (long)
    python benchmarks/sac.py --seeds 0 --checkpoints 2000 5000
    python benchmarks/sac.py --env MountainCarContinuous-v0 --checkpoints 50000 --no-sb3
    python benchmarks/sac.py --smoke            # seconds; what CI runs

PASS/FAIL (Pendulum): ≥ −200 at 10k on every seed; our mean ≥ SB3's − (their standard errors
combined) at each checkpoint; our seconds ≤ 0.7× SB3's. Seconds are measured on a shared
machine: the ratio, taken in one run, is what counts.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC as SB3SAC

from pgm_control.sac import SAC

EVAL_EPISODES = 10


def evaluate(predict, env_id: str, seed: int, episodes: int = EVAL_EPISODES) -> float:
    """Mean undiscounted return of ``predict(obs) -> action`` over ``episodes`` episodes of a
    fresh env whose first reset is seeded with ``seed`` (the same starts for both libraries)."""
    env = gym.make(env_id)
    returns = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(predict(obs))
            total += float(r)
            done = term or trunc
        returns.append(total)
        obs, _ = env.reset()
    env.close()
    return float(np.mean(returns))


def run_ours(env_id, seed, checkpoints, settings, episodes) -> list[tuple[int, float, float]]:
    model = SAC(env_id, seed=seed, progress=False, num_threads=1, **settings)
    rows, done = [], 0
    for n in checkpoints:
        model.learn(n - done)
        done = n
        policy = lambda o: model.predict(o, deterministic=True)[0]  # noqa: E731
        ret = evaluate(policy, env_id, seed + 10_000, episodes)
        rows.append((n, ret, model.history.seconds))
        print(f"  ours  seed {seed} {n:>6} steps: {ret:8.1f}  {model.history.seconds:7.1f} s",
              flush=True)  # fmt: skip
    return rows


def run_sb3(env_id, seed, checkpoints, settings, episodes) -> list[tuple[int, float, float]]:
    torch.set_num_threads(1)
    model = SB3SAC("MlpPolicy", env_id, seed=seed, verbose=0, **settings)
    rows, done, seconds = [], 0, 0.0
    for n in checkpoints:
        start = time.perf_counter()
        model.learn(n - done, reset_num_timesteps=False)
        seconds += time.perf_counter() - start
        done = n
        policy = lambda o: model.predict(o, deterministic=True)[0]  # noqa: E731
        ret = evaluate(policy, env_id, seed + 10_000, episodes)
        rows.append((n, ret, seconds))
        print(f"  sb3   seed {seed} {n:>6} steps: {ret:8.1f}  {seconds:7.1f} s", flush=True)
    return rows


def _stats(values):
    v = np.asarray(values, dtype=float)
    se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0
    return v.mean(), se


def report(ours, sb3, checkpoints, threshold_step=10_000, threshold=-200.0) -> bool:
    """Print the side-by-side table and the PASS/FAIL lines; True if all pass."""
    print(f"\n{'steps':>7} | {'ours return':>16} {'s':>7} | {'SB3 return':>16} {'s':>7} | ratio")
    ok = True
    for i, n in enumerate(checkpoints):
        m, se = _stats([r[i][1] for r in ours])
        t = np.mean([r[i][2] for r in ours])
        line = f"{n:>7} | {m:8.1f} ± {se:5.1f} {t:7.1f} |"
        if sb3:
            m2, se2 = _stats([r[i][1] for r in sb3])
            t2 = np.mean([r[i][2] for r in sb3])
            line += f" {m2:8.1f} ± {se2:5.1f} {t2:7.1f} | {t / t2:.2f}"
            better = m >= m2 - math.hypot(se, se2)
            fast = t <= 0.7 * t2
            line += f"  return {'PASS' if better else 'FAIL'}  time {'PASS' if fast else 'FAIL'}"
            ok &= better and fast
        print(line)
        if n == threshold_step:
            each = all(r[i][1] >= threshold for r in ours)
            print(f"{'':>7}   every seed ≥ {threshold:g} at {n}: {'PASS' if each else 'FAIL'}")
            ok &= each
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--hidden", type=int, default=128, help="our hidden width")
    parser.add_argument("--temperature", default="auto", help="ours: 'auto' or a float α")
    parser.add_argument("--no-sb3", action="store_true", help="run ours only")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (CI)")
    args = parser.parse_args(argv)
    temperature = args.temperature if args.temperature == "auto" else float(args.temperature)
    common = {"learning_rate": 1e-3}
    ours_settings = {**common, "hidden": (args.hidden, args.hidden), "temperature": temperature}
    sb3_settings = dict(common)
    checkpoints, seeds, episodes = sorted(args.checkpoints), args.seeds, EVAL_EPISODES
    if args.smoke:
        checkpoints, seeds, episodes = [100, 200], [0], 2
        small = {"learning_starts": 50, "batch_size": 32, "buffer_size": 1000}
        ours_settings.update(small, hidden=(16, 16))
        sb3_settings.update(small, policy_kwargs={"net_arch": [16, 16]})
    print(f"SAC on {args.env}: seeds {seeds}, checkpoints {checkpoints}, torch "
          f"{torch.__version__}, one thread each", flush=True)  # fmt: skip
    ours, sb3 = [], []
    for seed in seeds:
        ours.append(run_ours(args.env, seed, checkpoints, ours_settings, episodes))
        if not args.no_sb3:
            sb3.append(run_sb3(args.env, seed, checkpoints, sb3_settings, episodes))
    threshold_step = 10_000 if args.env == "Pendulum-v1" else -1
    ok = report(ours, sb3, checkpoints, threshold_step=threshold_step)
    if args.env == "MountainCarContinuous-v0":
        best = max(r[1] for rows in ours for r in rows)
        ok = best >= 90
        print(f"MountainCarContinuous ≥ 90 within {checkpoints[-1]} steps: "
              f"{'PASS' if ok else 'FAIL'} (best {best:.1f})")  # fmt: skip
    print("ALL PASS" if ok else "SOME FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
