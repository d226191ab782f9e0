"""Exact backward messages: pgm_control (torch) vs a plain numpy/scipy reference recursion.

The reference is written the way reference libraries write it (imitation's
``mce_partition_fh``): a Python loop over t with ``@`` and ``scipy.special.logsumexp``.
Also times log p(O) by Pyro's own enumeration of the model against the hand-written messages,
imitation's own ``mce_partition_fh`` on Taxi-v4 (in imitation's venv, see imitation_peer.py)
against the sparse expected backup, and the gridworld scaling table (10³…10⁶ states, T = 100,
one fresh subprocess per size and dtype for its peak memory).

    python benchmarks/exact_messages.py            # everything, T = 200 (scaling: T = 100)
    python benchmarks/exact_messages.py --quick    # T = 50, fewer repeats, no imitation peer,
                                                   # scaling at 10³ states only
    python benchmarks/exact_messages.py --sections imitation,scaling
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import logsumexp

import pgm_control as pc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import imitation_peer  # noqa: E402  (the sibling that makes and runs imitation's venv)

SECTIONS = ("messages", "enum", "imitation", "scaling")


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
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {SECTIONS}")
    ap.add_argument(
        "--sizes",
        default=None,
        help="gridworld sizes for the scaling table (default 1e3,1e4,1e5,1e6; --quick: 1e3)",
    )
    ap.add_argument("--scaling-horizon", type=int, default=100)
    ap.add_argument(
        "--scale-worker", nargs=4, metavar=("S", "T", "DTYPE", "OUT"), help=argparse.SUPPRESS
    )
    ap.add_argument(
        "--enum-horizon", type=int, default=50,
        help="horizon for the Pyro-enumeration comparison (Taxi at T=200 takes minutes)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale_worker:
        return scale_worker(*args.scale_worker)
    sections = args.sections.split(",")
    bad = sorted(set(sections) - set(SECTIONS))
    if bad:
        ap.error(f"--sections: unknown {bad}; choose from {SECTIONS}")
    T = args.horizon or (50 if args.quick else 200)
    repeats = 2 if args.quick else 5
    alpha = 1.0
    cases = [("Taxi-v4", {}), ("FrozenLake-v1", {"map_name": "8x8"})]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, T={T}, α={alpha}")
    if "messages" in sections:
        messages_table(cases, T, alpha, repeats)
    if "enum" in sections:
        enum_table(cases, min(T, args.enum_horizon), alpha, repeats)
    if "imitation" in sections:
        imitation_table(T, repeats, args.quick, args.threads or torch.get_num_threads())
    if "scaling" in sections:
        default = "1e3" if args.quick else "1e3,1e4,1e5,1e6"
        sizes = [int(float(x)) for x in (args.sizes or default).split(",")]
        T_scale = min(args.scaling_horizon, T) if args.quick else args.scaling_horizon
        ok = scaling_table(sizes, T_scale, args.threads)
        return 0 if ok else 1
    return 0


def messages_table(cases, T, alpha, repeats):
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


def enum_table(cases, Te, alpha, repeats):
    print()
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


def imitation_table(T, repeats, quick, threads):
    """Taxi-v4 at T: imitation's mce_partition_fh vs the sparse (and dense) expected backup.

    mce_partition_fh takes a state reward r(s) and no action prior; with a uniform prior the
    two recursions give the same policy (V differs by (T − t)·log A, which cancels in π).
    """
    print()
    print(f"Taxi-v4, T={T}: imitation's mce_partition_fh vs soft_value_iteration(expected)")
    if quick:
        print("imitation: skipped (--quick never runs the peer venv)")
        return
    try:
        python = imitation_peer.ensure_venv()
    except imitation_peer.PeerUnavailable as exc:
        print(f"imitation: unavailable ({exc}); run benchmarks/imitation_peer.py")
        return
    dense = pc.TabularMDP.from_gymnasium("Taxi-v4", T, sparse=False)
    r_state = dense.expected_reward.mean(-1)  # a state reward r(s) that Taxi's tables give
    dense = dense.replace(reward=r_state[:, None].expand(-1, dense.num_actions))
    sparse = pc.TabularMDP(dense.transition.to_sparse(), dense.reward[..., 0], dense.initial, T)
    job = {
        "transition": dense.transition.numpy(), "reward": r_state.numpy(),
        "initial": dense.initial.numpy(), "horizon": T, "repeats": repeats,
    }  # fmt: skip
    peer = run_partition(job, python, threads)
    rows = []
    for name, mdp in (("sparse", sparse), ("dense", dense)):
        t, sv = best_time(repeats, pc.soft_value_iteration, mdp, backup="expected")
        err = np.abs(sv.policy.numpy() - peer["policy"]).max()
        rows.append((name, t, err))
    t_peer = float(peer["seconds"].min())
    print(f"{'route':<28}{'ms':>10}{'ratio':>9}{'max |Δπ|':>12}")
    print(f"{'imitation mce_partition_fh':<28}{1e3 * t_peer:>10.1f}{1.0:>9.3f}{'-':>12}")
    for name, t, err in rows:
        print(f"{'pgm_control ' + name:<28}{1e3 * t:>10.1f}{t / t_peer:>9.3f}{err:>12.2e}")
    t_sparse, err = rows[0][1], rows[0][2]
    verdict = "PASS" if t_sparse <= 0.1 * t_peer and err <= 1e-8 else "FAIL"
    print(f"target: same policy to 1e-8 at <= 0.1x imitation's time: {verdict}")


def run_partition(job, python, threads):
    """Time imitation's mce_partition_fh in its venv (worker: _imitation_partition.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs, out = Path(tmp) / "job.npz", Path(tmp) / "out.npz"
        np.savez(jobs, **{k: np.asarray(v) for k, v in job.items()})
        cmd = [str(python), str(HERE / "_imitation_partition.py"), str(jobs), str(out)]
        cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise imitation_peer.PeerUnavailable(proc.stderr[-3000:])
        with np.load(out) as npz:
            return {k: npz[k] for k in npz.files}


def scale_worker(n_states, T, dtype, out):
    """One scaling row in this (fresh) process: build, lean posterior, peak RSS → JSON."""
    n = int(n_states)
    side = max(1, round(math.sqrt(n)))
    dtype = getattr(torch, dtype)
    t0 = time.perf_counter()
    for seed in range(100):  # the first layout whose goal the start can reach
        try:
            mdp = pc.gridworld(
                side, side, slip=0.1, walls=0.1, hazards=0.02, goals=max(1, n // 2000),
                seed=seed, horizon=int(T), dtype=dtype,
            )  # fmt: skip
            break
        except ValueError:
            continue
    t1 = time.perf_counter()
    post = pc.lean_posterior(mdp)
    t2 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    nnz = mdp.transition._nnz()
    T = mdp.horizon
    marg = post.state_marginals
    np.savez(out, mid=marg[T // 2].double().numpy(), last=marg[T].double().numpy())
    row = dict(
        states=mdp.num_states,
        nnz=nnz,
        build_s=t1 - t0,
        infer_s=t2 - t1,
        peak_mb=peak_mb,
        log_evidence=post.log_evidence.item(),
        s_per_mnnz_step=(t2 - t1) / (nnz / 1e6) / T,
    )
    print(json.dumps(row))
    return 0


def scaling_table(sizes, T, threads):
    """Gridworlds of ~n states (√n × √n, 4 actions, slip 0.1 to 3 neighbours, 10% walls, 2%
    hazards, one random goal per 2000 cells)."""
    print()
    print(
        f"gridworld scaling, T={T}: pc.lean_posterior (log p(O) + state marginals), "
        "one fresh process per row"
    )
    header = (
        f"{'states':>9}{'nnz':>11}{'dtype':>9}{'build s':>9}{'infer s':>9}{'peak MB':>9}"
        f"{'s/(Mnnz·step)':>15}{'|Δ log p(O)|':>14}{'max |Δp|':>10}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for n in sizes:
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            for dtype in ("float64", "float32"):
                out = Path(tmp) / f"{dtype}.npz"
                cmd = [sys.executable, __file__, "--scale-worker", str(n), str(T), dtype, str(out)]
                if threads:
                    cmd += ["--threads", str(threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{n:>9} {dtype}: worker failed\n{proc.stderr[-2000:]}")
                    ok = False
                    continue
                rows[dtype] = json.loads(proc.stdout.strip().splitlines()[-1])
                with np.load(out) as npz:
                    rows[dtype]["marg"] = np.concatenate([npz["mid"], npz["last"]])
        for dtype, row in rows.items():
            d_le, d_p = "", ""
            if dtype == "float32" and "float64" in rows:
                d_le = f"{abs(row['log_evidence'] - rows['float64']['log_evidence']):.2e}"
                d_p = f"{np.abs(row['marg'] - rows['float64']['marg']).max():.1e}"
            print(
                f"{row['states']:>9}{row['nnz']:>11}{dtype:>9}{row['build_s']:>9.1f}"
                f"{row['infer_s']:>9.2f}{row['peak_mb']:>9.0f}{row['s_per_mnnz_step']:>15.4f}"
                f"{d_le:>14}{d_p:>10}"
            )
        if "float64" in rows and "float32" in rows:
            speedup = rows["float64"]["infer_s"] / rows["float32"]["infer_s"]
            print(f"{'':>9} float32 speed-up {speedup:.2f}x")
        big = rows.get("float64")
        if big and big["states"] >= 900_000:
            fast = big["infer_s"] <= 30 and big["peak_mb"] <= 6 * 1024
            verdict = "PASS" if fast else "FAIL"
            print(f"target at 10⁶ states: ≤ 30 s and ≤ 6 GB in float64: {verdict}")
            ok = ok and fast
    return ok


if __name__ == "__main__":
    sys.exit(main())
