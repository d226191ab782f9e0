"""Runs inside imitation's own venv (see imitation_peer.py): never imports pgm_control.

    python _imitation_partition.py job.npz out.npz --threads 1

Times imitation's ``mce_partition_fh`` (the soft Bellman backup of its MCE IRL, Ziebart 2010,
eqs. 9.1-9.3) on the tables in ``job.npz`` (transition (S,A,S), state reward (S,), initial
(S,), horizon, repeats) and writes its policy (T,S,A) and the seconds of each repeat.
"""

import argparse
import time

import numpy as np
import torch
from imitation.algorithms import mce_irl
from seals import base_envs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("job")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    job = np.load(a.job)
    S = job["transition"].shape[0]
    env = base_envs.TabularModelPOMDP(
        transition_matrix=job["transition"],
        observation_matrix=np.eye(S),
        reward_matrix=job["reward"],
        horizon=int(job["horizon"]),
        initial_state_dist=job["initial"],
    )
    seconds = []
    for _ in range(int(job["repeats"])):
        tic = time.perf_counter()
        _, _, pi = mce_irl.mce_partition_fh(env)
        seconds.append(time.perf_counter() - tic)
    np.savez(a.out, policy=pi, seconds=np.asarray(seconds))


if __name__ == "__main__":
    main()
