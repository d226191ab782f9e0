"""Runs inside imitation's own venv (see imitation_peer.py): never imports pgm_control.

    python _imitation_worker.py export cliffworld random500 --out problems.npz
    python _imitation_worker.py mceirl jobs.npz --out results.npz

Tables travel as .npz arrays only. ``export`` builds the problems with seals' own classes
(the way imitation's tests build them) and writes their tables; ``mceirl`` runs imitation's
``MCEIRL`` on given tables and demonstrator state-occupancy measures, timing every iteration.
"""

import argparse
import time

import numpy as np
import torch
from imitation.algorithms import mce_irl
from imitation.rewards import reward_nets
from seals import base_envs
from seals.diagnostics import cliff_world, random_trans

PROBLEMS = {
    # imitation's tests/algorithms/test_mce_irl.py: CliffWorld 7x4, one-hot observations
    "cliffworld": lambda: cliff_world.CliffWorldEnv(width=7, height=4, horizon=8, use_xy_obs=False),
    # a 500-state random MDP with a state-only linear reward of random observations
    "random500": lambda: random_trans.RandomTransitionEnv(
        n_states=500,
        n_actions=4,
        branch_factor=5,
        horizon=20,
        random_obs=True,
        obs_dim=8,
        generator_seed=0,
    ),
}


def export(names, out):
    arrays = {}
    for name in names:
        env = PROBLEMS[name]()
        arrays[f"{name}/transition"] = np.asarray(env.transition_matrix, dtype=np.float64)
        arrays[f"{name}/reward"] = np.asarray(env.reward_matrix, dtype=np.float64)
        arrays[f"{name}/initial"] = np.asarray(env.initial_state_dist, dtype=np.float64)
        arrays[f"{name}/horizon"] = np.asarray(env.horizon)
        arrays[f"{name}/observation"] = np.asarray(env.observation_matrix, dtype=np.float64)
    np.savez(out, **arrays)


def run_one(job):
    env = base_envs.TabularModelPOMDP(
        transition_matrix=job["transition"],
        observation_matrix=job["observation"],
        reward_matrix=np.zeros(job["transition"].shape[0]),
        horizon=int(job["horizon"]),
        initial_state_dist=job["initial"],
    )
    torch.manual_seed(int(job["seed"]))
    net = reward_nets.BasicRewardNet(
        env.observation_space,
        env.action_space,
        hid_sizes=[],
        use_action=False,
        use_done=False,
        use_next_state=False,
    ).double()
    mce = mce_irl.MCEIRL(
        job["demo_state_om"],
        env,
        net,
        rng=np.random.default_rng(int(job["seed"])),
        optimizer_kwargs={"lr": float(job["lr"])},
        linf_eps=float(job["linf_eps"]),
        grad_l2_eps=0.0,
        log_interval=None,
    )
    seconds = []
    train_step = mce._train_step

    def timed_step(obs):  # the library's own step, timed
        tic = time.perf_counter()
        out = train_step(obs)
        seconds.append(time.perf_counter() - tic)
        return out

    mce._train_step = timed_step
    tic = time.perf_counter()
    visitations = mce.train(max_iter=int(job["max_iter"]))
    total = time.perf_counter() - tic
    obs = torch.as_tensor(env.observation_matrix, dtype=torch.float64)
    with torch.no_grad():
        reward = mce_irl.squeeze_r(net(obs, None, None, None)).numpy()
    return {
        "state_om": visitations,
        "reward": reward,
        "policy": mce.policy.pi,
        "step_seconds": np.asarray(seconds),
        "total_seconds": np.asarray(total),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["export", "mceirl"])
    ap.add_argument("args", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.mode == "export":
        export(a.args, a.out)
        return
    jobs = np.load(a.args[0])
    names = sorted({k.split("/")[0] for k in jobs.files})
    results = {}
    for name in names:
        job = {k.split("/", 1)[1]: jobs[k] for k in jobs.files if k.startswith(name + "/")}
        for key, value in run_one(job).items():
            results[f"{name}/{key}"] = value
    np.savez(a.out, **results)


if __name__ == "__main__":
    main()
