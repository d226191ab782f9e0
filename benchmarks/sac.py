"""Soft actor-critic (the gaussian_mlp guide as actor) side by side with Stable-Baselines3's SAC.

Pendulum-v1, rl-baselines3-zoo's hyperparameters (learning_rate 1e-3, the rest SB3's defaults:
buffer 1e6, learning_starts 100, batch 256, τ 0.005, γ 0.99, one gradient step per env step,
ent_coef "auto" with target entropy −dim A on the [−1, 1]-scaled action), on the same seeds,
one torch thread each: the mean deterministic return over 10 evaluation episodes (the same
evaluation env seeds for both) at 5k, 10k and 20k env steps, and the seconds spent learning.
Ours uses 128-unit hidden layers (SB3: 256); the update ratio and every other setting match
(our default target entropy is SB3's, Σᵢ (log hᵢ − 1) in the env's units).

Both learners of a seed live in one process and take turns of ``--chunk`` (1000) env steps,
so that they see the same machine load; each turn's wall-clock (``time.perf_counter``) and
CPU (``time.process_time``) seconds are summed. ``--jobs N`` runs N seeds in parallel
processes (each still interleaves its two learners).

    python benchmarks/sac.py --jobs 3           # 3 seeds × 20k steps, both libraries (long)
    python benchmarks/sac.py --seeds 0 --checkpoints 2000 5000
    python benchmarks/sac.py --env MountainCarContinuous-v0 --no-sb3 --stop-at 90 --jobs 3
    python benchmarks/sac.py --smoke            # seconds; what CI runs

PASS/FAIL (Pendulum): ≥ −200 at 10k on every seed; our mean ≥ SB3's − (their standard errors
combined) at each checkpoint; our wall-clock seconds ≤ 0.7× SB3's, summed over the seeds (the
CPU-seconds ratio is printed beside it). Seconds are measured on a shared machine: the
ratio, taken side by side in one run, is what counts. MountainCarContinuous-v0: ≥ 90 at a
checkpoint ≤ 50k on every seed, with the preset below (fixed α = 0.1, exploration noise
correlated over ~20 steps: ``noise_correlation`` 0.95).
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor

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


class _Runner:
    """One learner of one seed, stepped in chunks, with its wall and CPU seconds."""

    def __init__(self, name, model, learn):
        self.name, self.model, self._learn = name, model, learn
        self.done, self.wall, self.cpu = 0, 0.0, 0.0

    def learn_to(self, n: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self._learn(n - self.done)
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        self.done = n

    def evaluate(self, env_id, seed, episodes) -> float:
        policy = lambda o: self.model.predict(o, deterministic=True)[0]  # noqa: E731
        return evaluate(policy, env_id, seed + 10_000, episodes)


def run_seed(
    env_id, seed, checkpoints, ours_settings, sb3_settings, episodes, *, chunk, stop_at=None
) -> tuple[list, list]:
    """Both learners of one seed, interleaved in chunks of ``chunk`` env steps (ours, then
    SB3's, then ours, …) so that both see the same machine load; evaluated at each
    checkpoint. Rows are (steps, return, wall s, CPU s). ``stop_at``: stop after the first
    checkpoint where our return reaches it (both stop there)."""
    torch.set_num_threads(1)
    ours = SAC(env_id, seed=seed, progress=False, num_threads=1, **ours_settings)
    runners = [_Runner("ours", ours, ours.learn)]
    if sb3_settings is not None:
        sb3 = SB3SAC("MlpPolicy", env_id, seed=seed, verbose=0, **sb3_settings)
        learn = lambda n: sb3.learn(n, reset_num_timesteps=False)  # noqa: E731
        runners.append(_Runner("sb3", sb3, learn))
    rows = {r.name: [] for r in runners}
    bounds = sorted(set(range(chunk, checkpoints[-1], chunk)) | set(checkpoints))
    for n in bounds:
        for r in runners:
            r.learn_to(n)
        if n not in checkpoints:
            continue
        for r in runners:
            ret = r.evaluate(env_id, seed, episodes)
            rows[r.name].append((n, ret, r.wall, r.cpu))
            print(
                f"  {r.name:<5} seed {seed} {n:>6} steps: {ret:8.1f}  {r.wall:7.1f} s wall "
                f"{r.cpu:7.1f} s CPU",
                flush=True,
            )
        if stop_at is not None and rows["ours"][-1][1] >= stop_at:
            print(f"  seed {seed}: ours reached {stop_at:g} at {n} steps; stopping", flush=True)
            break
    return rows["ours"], rows.get("sb3", [])


def _stats(values):
    v = np.asarray(values, dtype=float)
    se = v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0
    return v.mean(), se


def report(ours, sb3, checkpoints, threshold_step=10_000, threshold=-200.0) -> bool:
    """Print the side-by-side table and the PASS/FAIL lines; True if all pass.

    Time: the ratio of our summed seconds to SB3's over the seeds at each checkpoint, wall
    clock (the verdict: ≤ 0.7) and CPU (``time.process_time``) beside it; both learners ran
    interleaved in one process, so the ratio, not the absolute seconds, is what counts.
    """
    head = f"{'steps':>7} | {'ours return':>16} {'wall s':>7} {'CPU s':>7} |"
    if sb3:
        head += f" {'SB3 return':>16} {'wall s':>7} {'CPU s':>7} | ratio wall   CPU"
    print("\n" + head)
    ok = True
    for i, n in enumerate(checkpoints):
        mine = [r[i] for r in ours if len(r) > i]
        if not mine:
            continue
        m, se = _stats([row[1] for row in mine])
        wall, cpu = sum(row[2] for row in mine), sum(row[3] for row in mine)
        line = f"{n:>7} | {m:8.1f} ± {se:5.1f} {wall / len(mine):7.1f} {cpu / len(mine):7.1f} |"
        theirs = [r[i] for r in sb3 if len(r) > i]
        if theirs:
            m2, se2 = _stats([row[1] for row in theirs])
            wall2, cpu2 = sum(row[2] for row in theirs), sum(row[3] for row in theirs)
            line += (
                f" {m2:8.1f} ± {se2:5.1f} {wall2 / len(theirs):7.1f} "
                f"{cpu2 / len(theirs):7.1f} |  {wall / wall2:5.2f} {cpu / cpu2:5.2f}"
            )
            better = m >= m2 - math.hypot(se, se2)
            fast = wall <= 0.7 * wall2
            line += f"  return {'PASS' if better else 'FAIL'}  time {'PASS' if fast else 'FAIL'}"
            ok &= better and fast
        print(line)
        if n == threshold_step:
            each = all(row[1] >= threshold for row in mine)
            print(f"{'':>7}   every seed ≥ {threshold:g} at {n}: {'PASS' if each else 'FAIL'}")
            ok &= each
    return ok


_ROW = re.compile(
    r"^\s*(ours|sb3)\s+seed (-?\d+)\s+(\d+) steps:\s+(\S+)\s+(\S+) s wall\s+(\S+) s CPU"
)


def rows_from_log(path) -> tuple[list, list, list]:
    """The checkpoint rows printed by :func:`run_seed`, per learner and seed, cut to the
    checkpoints every seed of every learner reached (a run stopped early keeps its table)."""
    found = {"ours": {}, "sb3": {}}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _ROW.match(line)
            if m:
                who, seed, n, ret, wall, cpu = m.groups()
                row = (int(n), float(ret), float(wall), float(cpu))
                found[who].setdefault(int(seed), []).append(row)
    runs = [rows for who in found for rows in found[who].values()]
    common = sorted(set.intersection(*({r[0] for r in rows} for rows in runs)))

    def cut(rows):
        return [r for r in rows if r[0] in common]

    ours = [cut(found["ours"][k]) for k in sorted(found["ours"])]
    sb3 = [cut(found["sb3"][k]) for k in sorted(found["sb3"])]
    return ours, sb3, common


# Per-env settings of ours (and SB3's where it runs); the command line overrides them.
PRESETS = {
    # rl-baselines3-zoo's Pendulum-v1: learning_rate 1e-3, the rest SB3's defaults
    "Pendulum-v1": {"common": {"learning_rate": 1e-3}, "ours": {"hidden": (128, 128)}},
    # a fixed α = 0.1 (as the zoo's); exploration noise correlated over ~1/(1 − ρ) = 20 steps
    # (independent noise never reaches the flag: 0/30 episodes of the initial policy, 26/30
    # with ρ = 0.9)
    "MountainCarContinuous-v0": {
        "common": {"learning_rate": 1e-3},
        "ours": {"hidden": (64, 64), "temperature": 0.1, "noise_correlation": 0.95},
    },
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--checkpoints",
        type=int,
        nargs="+",
        default=None,
        help="default: 5k 10k 20k (Pendulum), every 5k to 50k (MountainCar)",
    )
    parser.add_argument("--hidden", type=int, default=None, help="our hidden width")
    parser.add_argument("--temperature", default=None, help="ours: 'auto' or a float α")
    parser.add_argument(
        "--noise-correlation",
        type=float,
        default=None,
        help="ours: ρ of the AR(1) exploration noise (0: independent)",
    )
    parser.add_argument(
        "--init-scale",
        type=float,
        default=None,
        help="ours: the actor's initial σ before squashing",
    )
    parser.add_argument("--discount", type=float, default=None, help="ours: γ")
    parser.add_argument(
        "--stop-at",
        type=float,
        default=None,
        help="stop a seed at the first checkpoint where ours reaches this return",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=1000,
        help="env steps each learner takes before the other's turn",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="seeds run in this many processes at once"
    )
    parser.add_argument("--no-sb3", action="store_true", help="run ours only")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (CI)")
    parser.add_argument(
        "--table-from", default=None, metavar="LOG",
        help="print the table of the checkpoint rows a (possibly stopped) run wrote to LOG",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.table_from:
        ours, sb3, checkpoints = rows_from_log(args.table_from)
        threshold_step = 10_000 if args.env == "Pendulum-v1" else -1
        ok = report(ours, sb3, checkpoints, threshold_step=threshold_step)
        print("ALL PASS" if ok else "SOME FAIL", "(the checkpoints all seeds reached)")
        return 0
    preset = PRESETS.get(args.env, PRESETS["Pendulum-v1"])
    ours_settings = {**preset["common"], **preset["ours"]}
    sb3_settings = dict(preset["common"])
    if args.hidden is not None:
        ours_settings["hidden"] = (args.hidden, args.hidden)
    if args.temperature is not None:
        t = args.temperature
        ours_settings["temperature"] = t if t == "auto" else float(t)
    if args.noise_correlation is not None:
        ours_settings["noise_correlation"] = args.noise_correlation
    if args.init_scale is not None:
        ours_settings["actor_kwargs"] = {"init_scale": args.init_scale}
    if args.discount is not None:
        ours_settings["discount"] = args.discount
    mountain_car = args.env == "MountainCarContinuous-v0"
    default_checkpoints = list(range(5000, 50_001, 5000)) if mountain_car else [5000, 10000, 20000]
    checkpoints = sorted(args.checkpoints or default_checkpoints)
    seeds, episodes, chunk = args.seeds, EVAL_EPISODES, args.chunk
    if args.smoke:
        checkpoints, seeds, episodes, chunk = [100, 200], [0], 2, 50
        small = {"learning_starts": 50, "batch_size": 32, "buffer_size": 1000}
        ours_settings.update(small, hidden=(16, 16))
        sb3_settings.update(small, policy_kwargs={"net_arch": [16, 16]})
    print(
        f"SAC on {args.env}: seeds {seeds}, checkpoints {checkpoints}, torch "
        f"{torch.__version__}, one thread each, interleaved in chunks of {chunk} steps; "
        f"ours {ours_settings}; SB3 {None if args.no_sb3 else sb3_settings}",
        flush=True,
    )
    job = functools.partial(
        run_seed, args.env, checkpoints=checkpoints, ours_settings=ours_settings,
        sb3_settings=None if args.no_sb3 else sb3_settings, episodes=episodes, chunk=chunk,
        stop_at=args.stop_at,
    )  # fmt: skip
    if args.jobs > 1:
        with ProcessPoolExecutor(min(args.jobs, len(seeds))) as pool:
            results = list(pool.map(job, seeds))
    else:
        results = [job(seed) for seed in seeds]
    ours = [mine for mine, _ in results]
    sb3 = [theirs for _, theirs in results if theirs]
    threshold_step = 10_000 if args.env == "Pendulum-v1" else -1
    ok = report(ours, sb3, checkpoints, threshold_step=threshold_step)
    if mountain_car:
        firsts = [next((n for n, ret, *_ in rows if ret >= 90), None) for rows in ours]
        each = all(f is not None for f in firsts)
        print(
            f"MountainCarContinuous ≥ 90 within {checkpoints[-1]} steps on every seed: "
            f"{'PASS' if each else 'FAIL'} (first checkpoint ≥ 90 per seed: {firsts}; "
            f"best {[max(r[1] for r in rows) for rows in ours]})"
        )
        ok &= each
    print("ALL PASS" if ok else "SOME FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
