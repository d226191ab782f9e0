"""Exact backward messages: pgm_control (torch) vs a plain numpy/scipy reference recursion.

The reference is written the way reference libraries write it (imitation's
``mce_partition_fh``): a Python loop over t with ``@`` and ``scipy.special.logsumexp``.
Also times log p(O) by Pyro's own enumeration of the model against the hand-written messages.

    python benchmarks/exact_messages.py            # Taxi-v4 and FrozenLake 8x8, T = 200
    python benchmarks/exact_messages.py --quick    # T = 50, fewer repeats
"""

import argparse
import time

import numpy as np
import torch
from scipy.special import logsumexp

import pgm_control as pc


def numpy_reference(P, r, log_prior, T, alpha, backup):
    """The textbook recursion in numpy: returns V₀/α (S,)."""
    log_p = np.log(P, out=np.full_like(P, -np.inf), where=P > 0)
    r_bar = (P * r).sum(-1)
    v = np.zeros(P.shape[0])
    for _ in range(T):
        if backup == "optimistic":
            q = logsumexp(log_p + r / alpha + v[None, None, :], axis=-1)
        else:
            q = r_bar / alpha + P @ v
        v = logsumexp(log_prior + q, axis=-1)
    return v


def best_time(repeats, fn, *args, **kwargs):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--horizon", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--enum-horizon", type=int, default=50,
        help="horizon for the Pyro-enumeration comparison (Taxi at T=200 takes minutes)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    T = args.horizon or (50 if args.quick else 200)
    repeats = 2 if args.quick else 5
    alpha = 1.0
    cases = [("Taxi-v4", {}), ("FrozenLake-v1", {"map_name": "8x8"})]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, T={T}, α={alpha}")
    header = f"{'env':<28}{'backup':<12}{'torch ms':>10}{'numpy ms':>10}{'speedup':>9}"
    header += f"{'max |ΔV₀|':>12}"
    print(header)
    print("-" * len(header))
    for env_id, kw in cases:
        mdp = pc.TabularMDP.from_gymnasium(env_id, T, **kw)
        P, r = mdp.transition.numpy(), mdp.reward.numpy()
        log_prior = mdp.log_action_prior.numpy()
        for backup in ("optimistic", "expected"):
            t_torch, sv = best_time(
                repeats, pc.soft_value_iteration, mdp, temperature=alpha, backup=backup
            )
            t_np, v_ref = best_time(repeats, numpy_reference, P, r, log_prior, T, alpha, backup)
            err = np.abs(sv.v[0].numpy() / alpha - v_ref).max()
            print(
                f"{mdp.name:<28}{backup:<12}{1e3 * t_torch:>10.1f}{1e3 * t_np:>10.1f}"
                f"{t_np / t_torch:>8.1f}x{err:>12.2e}"
            )
    print()
    Te = min(T, args.enum_horizon)
    print(f"log p(O) by hand-written messages vs Pyro's TraceEnum_ELBO, T={Te}")
    header = f"{'env':<28}{'messages ms':>12}{'Pyro enum ms':>14}{'ratio':>8}{'|Δ log p(O)|':>14}"
    print(header)
    print("-" * len(header))
    for env_id, kw in cases:
        mdp = pc.TabularMDP.from_gymnasium(env_id, Te, **kw)
        t_msg, ev = best_time(repeats, pc.log_evidence, mdp, temperature=alpha)
        t_enum, ev_enum = best_time(
            max(1, repeats // 2), pc.enumerated_log_evidence, mdp, temperature=alpha
        )
        print(
            f"{mdp.name:<28}{1e3 * t_msg:>12.1f}{1e3 * t_enum:>14.1f}{t_enum / t_msg:>7.0f}x"
            f"{abs(ev - ev_enum).item():>14.2e}"
        )


if __name__ == "__main__":
    main()
