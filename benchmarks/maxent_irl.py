"""MaxEnt IRL: pgm_control's ``maxent_irl`` side by side with imitation's ``MCEIRL``.

Both learn a state-only reward r(s) = ψ·φ(s) from a demonstrator's exact state-occupancy
measure on the same tables, in one run: seals' CliffWorld 7x4 (imitation's own test problem,
one-hot φ) and a 500-state random MDP (seals' ``RandomTransitionEnv``, branch factor 5,
8 random features). The demonstrator is the soft-optimal (maximum causal entropy) policy of the
hidden reward, α = 1, the model imitation implements; pgm_control runs ``backup="expected"``.
imitation runs in its own venv (``imitation_peer.py``), tables cross over as .npz arrays.

Printed per problem: max |occupancy − expert's| of both learners, max |ours − imitation's|,
iterations and seconds per iteration of both, and PASS/FAIL for "the same answer" and "≤ 0.3×
imitation's time per iteration". The verdict times an iteration like for like: one Adam step
each (``optimizer="adam"``, imitation's optimiser and lr, a fixed number of steps), i.e. one
evaluation of L and its gradient plus the same update. Also printed: the ratio per step of
our default LBFGS (≈ 1.1 evaluations — its strong-Wolfe search; the step's start point is the
previous search's end, served cached — plus torch's 20-pair two-loop recursion in Python: a
costlier iteration that needs ≈ 12× fewer of them), per evaluation, and the time to the answer
(LBFGS to our tolerance vs imitation's Adam to its linf_eps). Each side is timed after a
warm-up (first-call imports), as the median over ``--repeats`` paired runs (ours, then
imitation's, in turn) of the mean time per iteration.

    python benchmarks/maxent_irl.py                 # both learners (makes imitation's venv once)
    python benchmarks/maxent_irl.py --repeats 3     # median of 3 timed runs per side
    python benchmarks/maxent_irl.py --repeats 3 --compile   # and our opt-in torch.compile route
    python benchmarks/maxent_irl.py --no-peer       # pgm_control only, tables rebuilt here
    python benchmarks/maxent_irl.py --smoke --no-peer
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import pgm_control as pc
from pgm_control.demonstrations import expected_counts
from pgm_control.maxent_irl import _evaluation_layout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imitation_peer import PeerUnavailable, ensure_venv, export_problems, run_mce_irl  # noqa: E402

F64 = torch.float64


# --------------------------------------------------------------------- problems
def cliff_world(width=7, height=4, horizon=8, fail_p=0.3):
    """seals' CliffWorldEnv tables, rebuilt (S = width·height, 4 diagonal moves, wind)."""
    S = width * height
    P = np.zeros((S, 4, S))
    R = np.zeros(S)

    def clamp(row, col):
        return min(max(row, 0), height - 1) * width + min(max(col, 0), width - 1)

    for row in range(height):
        for col in range(width):
            s = clamp(row, col)
            R[s] = -1 if row > 0 or col == 0 else (10 if col == width - 1 else -10)
            for drow in (-1, 1):
                for dcol in (-1, 1):
                    a = (drow + 1) + (dcol + 1) // 2
                    P[s, a, clamp(row + drow - 1, col + dcol)] += fail_p
                    P[s, a, clamp(row + drow, col + dcol)] += 1 - fail_p
    p0 = np.zeros(S)
    p0[0] = 1.0
    return {"transition": P, "reward": R, "initial": p0, "horizon": np.asarray(horizon),
            "observation": np.eye(S)}  # fmt: skip


def random_transition_mdp(n_states=500, n_actions=4, branch=5, horizon=20, obs_dim=8, seed=0):
    """seals' RandomTransitionEnv tables, rebuilt with the same draws from the same generator."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(0, 2, (n_states, obs_dim)).astype(np.float32).astype(np.float64)
    P = np.zeros((n_states, n_actions, n_states), dtype=np.float32)
    for s in range(n_states):
        for a in range(n_actions):
            k = rng.integers(1, branch + 1)
            nxt = rng.choice(n_states, size=(k,), replace=False)
            vec = rng.dirichlet(np.ones((k,)))
            P[s, a, nxt] = vec / np.sum(vec)
    p0 = np.zeros(n_states)
    starts = rng.choice(n_states, size=(branch,), replace=False)  # drawn before the weights
    p0[starts] = rng.dirichlet(np.ones((branch,)))
    weights = rng.normal(size=(obs_dim,))
    P = P.astype(np.float64)
    return {
        "transition": P / P.sum(-1, keepdims=True), "reward": obs @ weights,
        "initial": p0 / p0.sum(), "horizon": np.asarray(horizon), "observation": obs,
    }  # fmt: skip


# --------------------------------------------------------------------- one problem
def state_occupancy(mdp, policy):
    """Σ_{t=0..T} dₜ(s): imitation's ``mce_occupancy_measures`` convention (s_T included)."""
    return pc.policy_state_distribution(mdp, policy).sum(0).numpy()


def prepare_ours(tables, threads, compile=False):
    """(truth, expert, the learner's arguments, compile seconds) of one problem; warmed up."""
    P = torch.as_tensor(tables["transition"], dtype=F64)
    S = P.shape[0]
    truth = pc.TabularMDP(P, torch.as_tensor(tables["reward"], dtype=F64)[:, None].expand(S, 4),
                          torch.as_tensor(tables["initial"], dtype=F64),
                          int(tables["horizon"]))  # fmt: skip
    expert = pc.soft_value_iteration(truth, backup="expected").policy
    blind = truth.replace(reward=torch.zeros(S, P.shape[1], dtype=F64))
    features = torch.as_tensor(tables["observation"], dtype=F64)
    torch.set_num_threads(threads)
    rho = expected_counts(truth, expert)
    kw = dict(steps=2, backup="expected", progress=False)
    pc.maxent_irl(blind, features, rho, **kw)  # imports
    seconds = None  # compile=True serves dense dynamics: None where it does not apply
    if compile and not _evaluation_layout(blind, 1).is_sparse:
        seconds = pc.maxent_irl(blind, features, rho, compile=True, **kw).extra["compile_seconds"]
    return truth, expert, (blind, features, rho), seconds


def solve_ours(problem, steps, tol, adam_steps=0, adam_lr=0.1, compile=False):
    """(the LBFGS result, the Adam result or None): ``maxent_irl`` timed on one problem."""
    kw = dict(backup="expected", progress=False, compile=compile)
    lbfgs = pc.maxent_irl(*problem, steps=steps, tol=tol, **kw)
    if not adam_steps:
        return lbfgs, None
    adam = pc.maxent_irl(*problem, steps=adam_steps, tol=0.0, optimizer="adam", lr=adam_lr, **kw)
    return lbfgs, adam


def _per_step(res):
    """Mean seconds per optimiser step and per evaluation of one run."""
    steps = max(res.steps - 1, 1)
    return res.seconds / steps, res.seconds / max(res.extra["evaluations"], 1)


def run(args):
    names = ["cliffworld", "random500"]
    tables = {
        "cliffworld": cliff_world(),
        "random500": random_transition_mdp(n_states=args.states, horizon=args.horizon),
    }
    python = None
    if not args.no_peer:
        try:
            python = ensure_venv(args.venv)
            if args.states != 500 or args.horizon != 20:
                raise PeerUnavailable("imitation's problems are S = 500, T = 20: drop --states")
            theirs = export_problems(names, python)
            for name in names:  # our rebuild must be seals' own problem, entry for entry
                diff = max(float(np.abs(tables[name][k] - theirs[name][k]).max())
                           for k in ("transition", "reward", "initial", "observation"))  # fmt: skip
                print(f"{name}: our rebuild of seals' tables, max abs diff = {diff:.2e}")
                tables[name] = theirs[name]
        except PeerUnavailable as exc:
            print(f"imitation unavailable ({str(exc).splitlines()[0]}); running without it")
            python = None
    ok = True
    prepared, jobs = {}, {}
    for name in names:
        t = tables[name]
        truth, expert, problem, compile_seconds = prepare_ours(t, args.threads, args.compile)
        om_expert = state_occupancy(truth, expert)
        prepared[name] = (truth, om_expert, problem, compile_seconds)
        jobs[name] = {
            "transition": t["transition"], "initial": t["initial"], "horizon": t["horizon"],
            "observation": t["observation"], "demo_state_om": om_expert, "lr": args.peer_lr,
            "max_iter": args.peer_iters, "linf_eps": args.peer_linf,
        }  # fmt: skip
    runs, adams, cruns, cadams = ({name: [] for name in names} for _ in range(4))
    peers = []
    for _ in range(args.repeats):  # paired runs: ours, then imitation's, under the same load
        for name in names:
            lbfgs, adam = solve_ours(
                prepared[name][2], args.steps, args.tol, args.adam_steps, args.peer_lr
            )
            runs[name].append(lbfgs)
            if adam is not None:
                adams[name].append(adam)
            if prepared[name][3] is not None:  # the opt-in compiled evaluation, same settings
                lbfgs, adam = solve_ours(prepared[name][2], args.steps, args.tol,
                                         args.adam_steps, args.peer_lr, compile=True)  # fmt: skip
                cruns[name].append(lbfgs)
                if adam is not None:
                    cadams[name].append(adam)
        if python is not None:
            peers.append(run_mce_irl(jobs, python, threads=args.threads))
    peer = peers[0] if peers else {}
    for name in names:
        truth, om_expert, _, compile_seconds = prepared[name]
        res, adam = runs[name][0], adams[name]
        om_ours = state_occupancy(truth, res.policy)
        steps = max(res.steps - 1, 1)
        per_step = float(np.median([_per_step(r)[0] for r in runs[name]]))
        per_eval = float(np.median([_per_step(r)[1] for r in runs[name]]))
        per_adam = float(np.median([_per_step(r)[0] for r in adam])) if adam else float("nan")
        S = len(om_expert)
        label = {"cliffworld": "CliffWorld 7x4", "random500": "random MDP, 8 features"}[name]
        print(f"\n{label} (S = {S}, T = {int(tables[name]['horizon'])}):")
        err_ours = float(np.abs(om_ours - om_expert).max())
        print(
            f"  pgm_control: {steps} LBFGS steps ({res.extra['evaluations']} evaluations), "
            f"feature residual {res.feature_residual[-1]:.1e}, max |OM − expert's| = "
            f"{err_ours:.2e}, {1e3 * per_step:.2f} ms/iteration ({1e3 * per_eval:.2f} ms/eval), "
            f"{res.seconds:.2f} s in all"
        )
        if adam:
            print(f"  pgm_control, Adam lr {args.peer_lr:g} (like for like): {adam[0].steps - 1} "
                  f"steps, {1e3 * per_adam:.2f} ms/iteration")  # fmt: skip
        if name not in peer:
            good = err_ours <= args.same
            ok &= good
            print(f"  {'PASS' if good else 'FAIL'}: recovers the expert's occupancy "
                  f"(≤ {args.same:g})")  # fmt: skip
            continue
        p = peer[name]
        err_peer = float(np.abs(p["state_om"] - om_expert).max())
        gap = float(np.abs(p["state_om"] - om_ours).max())
        per_iter_peer = float(np.median([np.mean(q[name]["step_seconds"]) for q in peers]))
        iters = len(p["step_seconds"])
        print(
            f"  imitation MCEIRL: {iters} Adam iterations, max |OM − expert's| = {err_peer:.2e}, "
            f"{1e3 * per_iter_peer:.2f} ms/iteration, {float(p['total_seconds']):.2f} s in all"
        )
        same = gap <= args.same
        ratio = per_step / per_iter_peer
        ok &= same
        print(f"  {'PASS' if same else 'FAIL'}: same answer, max |OM_ours − OM_imitation| = "
              f"{gap:.2e} (≤ {args.same:g})")  # fmt: skip
        if adam:
            like = per_adam / per_iter_peer
            ok &= like <= 0.3
            print(f"  {'PASS' if like <= 0.3 else 'FAIL'}: time per iteration, like for like "
                  f"(an Adam step each) {like:.2f}× imitation's (≤ 0.3×)")  # fmt: skip
        print(f"  per LBFGS step {ratio:.2f}× ({'≤' if ratio <= 0.3 else '>'} 0.3×), per "
              f"evaluation {per_eval / per_iter_peer:.2f}×, time to the answer "
              f"{res.seconds / float(p['total_seconds']):.2f}×")  # fmt: skip
        if cadams[name]:
            cres = cruns[name][0]
            c_adam = float(np.median([_per_step(r)[0] for r in cadams[name]])) / per_iter_peer
            c_step = float(np.median([_per_step(r)[0] for r in cruns[name]])) / per_iter_peer
            c_gap = float(np.abs(state_occupancy(truth, cres.policy) - om_ours).max())
            c_answer = (compile_seconds + cres.seconds) / float(p["total_seconds"])
            print(f"  {'PASS' if c_adam <= 0.3 else 'FAIL'}: compile=True (opt-in): Adam step "
                  f"{c_adam:.2f}×, LBFGS step {c_step:.2f}× imitation's; compiling took "
                  f"{compile_seconds:.1f} s, time to the answer with it {c_answer:.2f}×; "
                  f"max |ΔOM| vs eager {c_gap:.1e}")  # fmt: skip
        if args.repeats > 1:
            spans = []
            for label_, ours in (("Adam", adam), ("LBFGS", runs[name])):
                pairs = zip(ours, peers)
                ratios = [_per_step(r)[0] / np.mean(q[name]["step_seconds"]) for r, q in pairs]
                if ratios:
                    spans.append(f"{label_} {min(ratios):.2f}–{max(ratios):.2f}×")
            print(f"  per-iteration ratio over the {args.repeats} paired runs: "
                  f"{', '.join(spans)}")  # fmt: skip
    print(f"\noverall: {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="few iterations (a CI check)")
    ap.add_argument("--no-peer", action="store_true", help="skip imitation (no venv needed)")
    ap.add_argument("--venv", default=None, help="imitation's venv (default: the cache)")
    ap.add_argument("--steps", type=int, default=None, help="our LBFGS steps (max)")
    ap.add_argument("--tol", type=float, default=1e-6, help="our feature-residual tolerance")
    ap.add_argument("--peer-iters", type=int, default=None)
    ap.add_argument("--peer-lr", type=float, default=0.1)
    ap.add_argument("--peer-linf", type=float, default=1e-3, help="imitation's linf_eps")
    ap.add_argument("--same", type=float, default=1e-2, help="'same answer' max |ΔOM|")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per side (median)")
    ap.add_argument("--adam-steps", type=int, default=None, help="our Adam steps (timing)")
    ap.add_argument("--compile", action="store_true", help="also time maxent_irl(compile=True)")
    ap.add_argument("--states", type=int, default=None, help="random MDP size (500)")
    ap.add_argument("--horizon", type=int, default=None, help="random MDP horizon (20)")
    args = ap.parse_args(argv)
    if args.steps is None:
        args.steps = 3 if args.smoke else 300
    if args.adam_steps is None:
        args.adam_steps = 3 if args.smoke else 200
    if args.peer_iters is None:
        args.peer_iters = 20 if args.smoke else 3000
    if args.states is None:
        args.states = 100 if args.smoke else 500
    if args.horizon is None:
        args.horizon = 10 if args.smoke else 20
    if args.smoke:
        args.same = float("inf")
    if args.venv is None:
        args.venv = str(Path("~/.cache/pgm_control/imitation-venv").expanduser())
    tic = time.perf_counter()
    ok = run(args)
    print(f"({time.perf_counter() - tic:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
