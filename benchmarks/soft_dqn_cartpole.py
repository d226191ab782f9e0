"""Soft DQN vs Stable-Baselines3's DQN on CartPole-v1, side by side in one run (issue 10).

SB3's DQN gets rl-baselines3-zoo's CartPole-v1 hyperparameters (hyperparams/dqn.yml, commit
ce95481, "Almost Tuned": lr 2.3e-3, batch 64, buffer 100000, learning_starts 1000, gamma 0.99,
target_update_interval 10, train_freq 256, gradient_steps 128, exploration_fraction 0.16,
exploration_final_eps 0.04, net_arch [256, 256], 5e4 steps): 128 gradient steps of batch 64
every 256 env steps, 0.5 updates per env step, a hard target copy every 10 env steps (so one
per burst), ε-greedy 1 → 0.04 over the first 8000 steps, Huber loss, gradient norm 10, Adam.

Soft DQN (all its settings passed explicitly in ``soft_dqn``) keeps the same env-step budget,
the same update ratio (0.5 updates of batch 64 per env step), buffer, network, ε schedule, loss
and clipping, and regresses on the soft max y = r + γ·α·log Σₐ ½·exp(Q̄(s',a)/α)
(α = 0.01, or the config's; ``--temperature`` overrides) with the Boltzmann policy as
behaviour. ``--config tuned`` (the default) makes three changes of ours, ``OURS``:

* a target copy also after every 64th gradient step (``target_update_gradient_steps=64``): two
  copies per burst of 128 steps instead of one. Each copy is one fitted-Q iteration and a TD
  error contracts by γ = 0.99 per iteration, so the zoo's one copy per burst (~195 iterations in
  50k steps) propagates values slowly; two double that. (Copies every 32 steps learn faster
  still but their Q diverges late, to a mean of ~550 against the bound 1/(1 − γ) = 100, and
  the return collapses to ~10.)
* Adam's step size 1e-3 (with the zoo's 2.3e-3 and copies every 16 steps the return collapsed
  to ~9 on two of four seeds) decaying linearly to 1e-5 over the run, so that a Q that balances
  the pole is not undone by late large steps.
* Munchausen soft DQN with the paper's β = 0.9, α = 0.03, l₀ = −1 (``munchausen=0.9``): the
  target gains β·α·clip(log π̄(a|s), l₀, 0), an implicit KL(π‖π_previous) regulariser
  (Vieillard et al. 2020), the library's KL-regularised policy iteration in value form.

``--config zoo`` runs soft DQN with the zoo's schedule unchanged. The README's sweep table (seeds
0–4, every 2.5k steps) lists the alternatives tried.

Per seed (the same seeds for both, the order of the two alternating from seed to seed so that
both meet the same machine load), each learner is evaluated at every ``--every`` env steps:
mean deterministic return over ``--eval-episodes`` episodes of one evaluator (env resets seeded
10000 + seed + i for both), outside the timed training. Seconds are training only: wall-clock
(perf_counter) and this process's CPU time (process_time). Both run under the same torch thread
count, the faster of 1 and 2 for soft DQN measured first on a few bursts of updates.

Targets (PASS/FAIL):
* soft DQN reaches a mean return ≥ 475 at a checkpoint within the step budget, on every seed;
* soft DQN's training CPU time ≤ 300 s per seed;
* soft DQN's return ≥ SB3's at every checkpoint, up to noise: mean over seeds of (ours − SB3)
  ≥ −SE, SE the standard error over seeds of that per-seed difference (0 when all seeds agree);
* soft DQN's total training wall-clock ≤ 1× SB3's (the machine is shared: only the ratio,
  measured side by side, means anything).

Run:          python benchmarks/soft_dqn_cartpole.py          (SB3: the ``bench``/``dev`` extra)
Smoke:        python benchmarks/soft_dqn_cartpole.py --smoke  (tiny; no verdict)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from pgm_control.soft_dqn import SoftDQN

ENV_ID = "CartPole-v1"
ZOO = dict(
    learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
    exploration_final_eps=0.04, net_arch=(256, 256),
)  # fmt: skip
# soft DQN's changes to the zoo's schedule (see the module doc): two target copies per burst,
# Adam's step size decaying linearly from learning_rate to learning_rate_final over --steps, and
# the Munchausen bonus with the paper's β, α (and l₀ = −1, the default)
OURS = dict(
    learning_rate=1e-3, learning_rate_final=1e-5, target_update_gradient_steps=64,
    munchausen=0.9, temperature=0.03,
)  # fmt: skip


def evaluate(predict, seed: int, episodes: int) -> float:
    """Mean return of ``predict(obs) -> action`` over ``episodes`` seeded episodes."""
    env = gym.make(ENV_ID)
    total = 0.0
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + seed + i)
        done = False
        while not done:
            obs, r, terminated, truncated, _ = env.step(predict(obs))
            total += float(r)
            done = terminated or truncated
    env.close()
    return total / episodes


def config(args) -> dict:
    """Soft DQN's settings: the zoo's, with ``OURS`` on top for ``--config tuned``."""
    z = {**ZOO, "temperature": 0.01, **(OURS if args.config == "tuned" else {})}
    if args.temperature is not None:
        z["temperature"] = args.temperature
    return z


def soft_dqn(seed: int, args) -> SoftDQN:
    z = config(args)
    return SoftDQN(
        ENV_ID, z["temperature"], discount=z["gamma"], learning_rate=z["learning_rate"],
        learning_rate_final=z.get("learning_rate_final"),
        learning_rate_steps=args.steps if "learning_rate_final" in z else 0,
        target_update_tau=1.0, double_q=z.get("double_q", False), buffer_size=z["buffer_size"],
        target_update_gradient_steps=z.get("target_update_gradient_steps"),
        munchausen=z.get("munchausen", 0.0),
        learning_starts=z["learning_starts"],
        batch_size=z["batch_size"], train_freq=z["train_freq"],
        gradient_steps=z["gradient_steps"], target_update_interval=z["target_update_interval"],
        exploration_initial_eps=1.0, exploration_final_eps=z["exploration_final_eps"],
        exploration_steps=int(z["exploration_fraction"] * args.steps), net_arch=z["net_arch"],
        loss="huber", max_grad_norm=10.0, seed=seed, progress=False,
    )  # fmt: skip


def run_ours(seed: int, args) -> dict:
    algo = soft_dqn(seed, args)
    returns, wall, cpu = [], 0.0, 0.0
    for _ in range(args.steps // args.every):
        w, c = time.perf_counter(), time.process_time()
        algo.learn(args.every)
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
        returns.append(evaluate(lambda o: algo.predict(o, deterministic=True)[0], seed,
                                args.eval_episodes))  # fmt: skip
    return {"returns": returns, "wall": wall, "cpu": cpu}


class _Checkpoints(BaseCallback):
    """Evaluates every ``every`` steps and keeps the time it took out of the training time."""

    def __init__(self, every: int, seed: int, episodes: int):
        super().__init__()
        self.every, self.seed, self.episodes = every, seed, episodes
        self.returns, self.eval_wall, self.eval_cpu = [], 0.0, 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            w, c = time.perf_counter(), time.process_time()
            predict = lambda o: int(self.model.predict(o, deterministic=True)[0])  # noqa: E731
            self.returns.append(evaluate(predict, self.seed, self.episodes))
            self.eval_wall += time.perf_counter() - w
            self.eval_cpu += time.process_time() - c
        return True


def run_sb3(seed: int, args) -> dict:
    z = dict(ZOO)
    net_arch = list(z.pop("net_arch"))
    model = DQN(
        "MlpPolicy", gym.make(ENV_ID), policy_kwargs={"net_arch": net_arch}, seed=seed,
        device="cpu", verbose=0, **z,
    )  # fmt: skip
    cb = _Checkpoints(args.every, seed, args.eval_episodes)
    w, c = time.perf_counter(), time.process_time()
    model.learn(args.steps, callback=cb)
    wall = time.perf_counter() - w - cb.eval_wall
    cpu = time.process_time() - c - cb.eval_cpu
    return {"returns": cb.returns, "wall": wall, "cpu": cpu}


def pick_threads(args) -> int:
    """The faster torch thread count (1 or 2) for soft DQN's bursts of updates."""
    algo = soft_dqn(0, args)
    algo.learning_starts = 10**9  # fill the buffer without updating
    algo.learn(2000)
    seconds = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        algo._train_burst()  # warm-up
        start = time.perf_counter()
        for _ in range(args.probe_bursts):
            algo._train_burst()
        seconds[n] = (time.perf_counter() - start) / args.probe_bursts
    best = min(seconds, key=seconds.get)
    print("threads: " + ", ".join(f"{n}: {s * 1e3:.0f} ms/burst" for n, s in seconds.items())
          + f" -> {best}")  # fmt: skip
    return best


def _fmt(returns) -> str:
    return " ".join(f"{r:7.1f}" for r in returns)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="α of soft DQN (default: the config's, 0.01 unless it says otherwise)",
    )
    p.add_argument("--config", choices=("tuned", "zoo"), default="tuned",
                   help="soft DQN's schedule: OURS on top of the zoo's, or the zoo's")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="default: measure 1 vs 2")
    p.add_argument("--probe-bursts", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="tiny settings, no verdict")
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.steps, args.every, args.eval_episodes = [0], 1536, 512, 1
        args.threads = args.threads or 1
    threads = args.threads or pick_threads(args)
    torch.set_num_threads(threads)
    checkpoints = [args.every * (k + 1) for k in range(args.steps // args.every)]
    head = " ".join(f"{c:>7}" for c in checkpoints)
    ours = OURS if args.config == "tuned" else {}
    print(f"{ENV_ID}, zoo DQN hyperparameters, soft DQN α = {config(args)['temperature']} with "
          f"{ours or 'the zoo schedule'}, 0.5 updates per env step for both, "
          f"{threads} torch thread(s); mean deterministic return over {args.eval_episodes} "
          "episodes at each checkpoint; seconds: training only")  # fmt: skip
    print(f"{'steps:':23}{head}   wall s    CPU s")
    ours, sb3 = {}, {}
    for i, seed in enumerate(args.seeds):
        order = [("sb3", run_sb3), ("ours", run_ours)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            (sb3 if name == "sb3" else ours)[seed] = fn(seed, args)
        for label, res in (("SB3 DQN", sb3[seed]), ("soft DQN", ours[seed])):
            print(f"seed {seed} {label:<17}{_fmt(res['returns'])} "
                  f"{res['wall']:8.1f} {res['cpu']:8.1f}", flush=True)  # fmt: skip
    for label, runs in (("SB3 DQN", sb3), ("soft DQN", ours)):
        mean = np.mean([r["returns"] for r in runs.values()], axis=0)
        wall = sum(r["wall"] for r in runs.values())
        cpu = sum(r["cpu"] for r in runs.values())
        print(f"mean {label:<19}{_fmt(mean)} {wall:8.1f} {cpu:8.1f}")
    if args.smoke:
        print("smoke run: no verdict")
        return 0

    verdicts = []
    reached = {s: next((c for c, r in zip(checkpoints, ours[s]["returns"]) if r >= 475), None)
               for s in args.seeds}  # fmt: skip
    ok = all(v is not None for v in reached.values())
    verdicts.append(ok)
    print(f"[{'PASS' if ok else 'FAIL'}] return >= 475 within {args.steps} steps on every seed "
          f"(first checkpoint: {reached})")  # fmt: skip
    cpu = {s: round(r["cpu"], 1) for s, r in ours.items()}
    ok = all(c <= 300 for c in cpu.values())
    verdicts.append(ok)
    print(f"[{'PASS' if ok else 'FAIL'}] CPU <= 300 s per seed (soft DQN: {cpu})")
    gaps = []
    for k, c in enumerate(checkpoints):
        d = [ours[s]["returns"][k] - sb3[s]["returns"][k] for s in args.seeds]
        se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
        gaps.append((c, float(np.mean(d)), se))
    ok = all(m >= -se for _, m, se in gaps)
    verdicts.append(ok)
    print(
        f"[{'PASS' if ok else 'FAIL'}] return >= SB3's at every checkpoint, mean difference "
        ">= -SE over seeds: " + ", ".join(f"{c // 1000}k {m:+.1f}±{se:.1f}" for c, m, se in gaps)
    )
    ratio = sum(r["wall"] for r in ours.values()) / sum(r["wall"] for r in sb3.values())
    ok = ratio <= 1.0
    verdicts.append(ok)
    print(f"[{'PASS' if ok else 'FAIL'}] wall-clock <= 1x SB3's (ratio {ratio:.2f})")
    print(f"overall: {'PASS' if all(verdicts) else 'FAIL'}")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
