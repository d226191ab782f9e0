"""SVI with swappable guides and estimators, measured against the exact optimum.

Acceptance run (issue 3, tabular part)::

    python benchmarks/svi_convergence.py           # ~1-2 minutes on a 2-core CPU
    python benchmarks/svi_convergence.py --quick   # smoke run, < 30 s (targets not binding)

Every number is printed next to the exact answer it should reach (``optimal_elbo`` for guides
that share the true dynamics, ``log_evidence`` for the full posterior), with PASS/FAIL per
target:

1. ``tabular_time_varying`` + ``exact`` (natural-gradient ascent, fit's default, and LBFGS on
   the analytic ELBO): gap ≤ 1e-6 nats and occupancy-weighted KL(π*‖π) ≤ 1e-6 in ≤ 2 s, on
   FrozenLake-v1 4x4 slippery (T=15, α=0.1) and a seeded random MDP (S=10, A=4, T=15, α=1).
2. Monte-Carlo route on the same random MDP: gap ≤ 3e-3 nats in ≤ 30 s.
3. Gradient variance and ms/step of every estimator at the same parameters and particles.
4. ``full_posterior`` within 1e-3 of ``log_evidence``; ``neural`` within 1e-2 of
   ``optimal_elbo`` on FrozenLake 4x4; the lottery's learned win chance.
5. The fitted policy in the real gymnasium env: success rate within 2 points of the exact
   soft-optimal policy's (T=15, α=0.1, and a goal-directed T=100, α=0.01).
"""

from __future__ import annotations

import argparse
import platform
import time

import pyro
import torch

import pgm_control as pc
from pgm_control.estimators import RaoBlackwellELBO
from pgm_control.guides import TABULAR_GUIDES
from pgm_control.rollout import rollout
from pgm_control.svi import fit, gradient_variance

RESULTS: list[tuple[str, bool]] = []


def check(label: str, ok: bool, detail: str) -> None:
    RESULTS.append((label, ok))
    print(f"  [{'PASS' if ok else 'FAIL'}] {label}: {detail}")


def occupancy_kl(mdp, policy, alpha) -> float:
    """(1/T)·Σₜ Σ_s d*ₜ(s)·KL(π*ₜ(·|s) ‖ πₜ(·|s)), d* the soft-optimal policy's occupancy."""
    pi_star = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected").policy
    d = pc.policy_state_distribution(mdp, pi_star)[:-1]
    on = pi_star > 0
    log_ratio = torch.where(on, torch.log(pi_star) - torch.log(policy), torch.zeros_like(policy))
    return float((d * (pi_star * log_ratio).sum(-1)).sum() / mdp.horizon)


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 86 - len(title)))


def exact_targets(problems):
    section("1. tabular_time_varying + exact: the analytic ELBO, two optimisers")
    print(
        f"  {'MDP':32s} {'α':>5s} {'optimiser':>9s} {'ELBO':>14s} {'optimal_elbo':>14s} "
        f"{'gap':>9s} {'KL(π*‖π)':>9s} {'steps':>5s} {'s':>6s}"
    )
    fitted = {}
    for name, mdp, alpha in problems:
        for optimizer in ("natural", "lbfgs"):  # natural is fit's default for table guides
            res = fit(
                mdp, "tabular_time_varying", estimator="exact", optimizer=optimizer,
                temperature=alpha, progress=False,
            )  # fmt: skip
            kl = occupancy_kl(mdp, res.policy, alpha)
            fitted[name, optimizer] = res
            print(
                f"  {name:32s} {alpha:5g} {optimizer:>9s} {res.exact_elbo:14.9f} "
                f"{res.optimum:14.9f} {res.gap:9.2e} {kl:9.2e} {len(res.elbo):5d} "
                f"{res.seconds:6.2f}"
            )
            check(
                f"{name}, {optimizer}: gap ≤ 1e-6, KL ≤ 1e-6 in ≤ 2 s",
                res.gap <= 1e-6 and kl <= 1e-6 and res.seconds <= 2.0,
                f"gap {res.gap:.2e}, KL {kl:.2e}, {res.seconds:.2f} s",
            )
    return fitted


def monte_carlo_targets(mdp, alpha, quick):
    section("2. Monte-Carlo route on the random MDP (same ELBO, estimated from samples)")
    n, steps = (1000, 60) if quick else (4000, 200)
    lr0, lr1 = 0.05, 0.002
    lrd = (lr1 / lr0) ** (1 / steps)
    print(f"  ClippedAdam lr {lr0} → {lr1} (exponential), {steps} steps, {n} particles/step")
    print(
        f"  {'estimator':16s} {'exact ELBO':>12s} {'optimal_elbo':>12s} {'gap':>9s} "
        f"{'ms/step':>8s} {'s':>6s}"
    )
    out = {}
    for est in ("rao_blackwell", "score"):
        res = fit(
            mdp,
            "tabular_time_varying",
            estimator=est,
            num_particles=n,
            steps=steps,
            optimizer=pyro.optim.ClippedAdam({"lr": lr0, "lrd": lrd}),
            temperature=alpha,
            seed=0,
            progress=False,
        )
        out[est] = res
        print(
            f"  {est:16s} {res.exact_elbo:12.6f} {res.optimum:12.6f} {res.gap:9.2e} "
            f"{1e3 * res.seconds / len(res.elbo):8.1f} {res.seconds:6.2f}"
        )
    best = min(out.values(), key=lambda r: r.gap)
    check(
        "Monte-Carlo gap ≤ 3e-3 in ≤ 30 s",
        best.gap <= 3e-3 and best.seconds <= 30,
        f"{best.estimator}: gap {best.gap:.2e} in {best.seconds:.1f} s",
    )


def variance_table(mdp, alpha, quick):
    section("3. Gradient variance at the same parameters and particles")
    n, repeats = (500, 5) if quick else (1000, 20)
    guide = TABULAR_GUIDES["tabular_time_varying"](mdp)
    # the parameters at which every estimator is compared: a quarter of the way to π*
    q_star = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected").q / alpha
    with torch.no_grad():
        guide.logits.copy_(0.25 * (q_star - q_star.mean(-1, keepdim=True)))
    print(
        f"  random MDP, tabular_time_varying, {n} particles, {repeats} draws; "
        "variance = Σᵢ Var(∂ELBO/∂θᵢ)"
    )
    print(f"  {'estimator':34s} {'variance':>10s} {'bias²':>10s} {'‖∇ELBO‖²':>10s} {'ms/step':>9s}")
    rows = [
        ("exact", "exact", None),
        ("enum (TraceEnum_ELBO)", "enum", None),
        ("score (Trace_ELBO)", "score", n),
        ("rao_blackwell", "rao_blackwell", n),
        ("  without the LOO critic", RaoBlackwellELBO(n, critic=False), None),
        ("  without critic and baseline", RaoBlackwellELBO(n, critic=False, baseline=None), None),
    ]
    if not quick:
        rows.append(
            (
                "TraceGraph_ELBO (Pyro, reference)",
                pyro.infer.TraceGraph_ELBO(
                    num_particles=n, vectorize_particles=True, max_plate_nesting=0
                ),
                None,
            )
        )
    stats = {}
    for label, est, particles in rows:
        reps = 5 if "TraceGraph" in label else repeats
        s = gradient_variance(
            mdp, guide, est, num_particles=particles, repeats=reps, temperature=alpha, seed=0
        )
        stats[label] = s
        print(
            f"  {label:34s} {s.variance:10.3e} {s.bias_sq:10.3e} {s.exact_norm_sq:10.3e} "
            f"{s.ms_per_step:9.1f}"
        )
    ratio = stats["score (Trace_ELBO)"].variance / stats["rao_blackwell"].variance
    print(f"  rao_blackwell has {ratio:.1f}× less variance than score at the same particles")


def family_targets(frozen, frozen_alpha, rand, rand_alpha, quick):
    section("4. Other guide families against their exact optimum")
    print(f"  {'guide':16s} {'MDP':28s} {'exact ELBO':>12s} {'optimum':>12s} {'gap':>9s} {'s':>6s}")
    for guide, mdp, alpha, target in [
        ("full_posterior", rand, rand_alpha, 1e-3),
        ("full_posterior", frozen, frozen_alpha, 1e-3),
        ("neural", frozen, frozen_alpha, 1e-2),
        ("tabular", frozen, frozen_alpha, None),
        ("open_loop", frozen, frozen_alpha, None),
    ]:
        steps = 5 if quick else None
        res = fit(mdp, guide, temperature=alpha, steps=steps, progress=False)
        which = "log_evidence" if guide == "full_posterior" else "optimal_elbo"
        print(
            f"  {guide:16s} {mdp.name[:28]:28s} {res.exact_elbo:12.6f} {res.optimum:12.6f} "
            f"{res.gap:9.2e} {res.seconds:6.2f}  ({which})"
        )
        if target is not None:
            check(
                f"{guide} on {mdp.name}: within {target:g} of {which}",
                abs(res.gap) <= target,
                f"gap {res.gap:.2e}",
            )
    lottery = pc.lottery_mdp()
    res = fit(lottery, "full_posterior", progress=False)
    learned, true = res.guide.dynamics()[0, 0, 0, 1].item(), lottery.transition[0, 0, 1].item()
    structured = fit(lottery, "tabular_time_varying", progress=False)
    print(
        f"  lottery: full_posterior believes a ticket wins with p = {learned:.4f} "
        f"(true {true:g}); it buys with q = {res.policy[0, 0, 0]:.3f}, the structured guide with "
        f"q = {structured.policy[0, 0, 0]:.3f}"
    )
    check("lottery: learned win chance ≫ true", learned > 1000 * true, f"{learned:.3f} vs {true:g}")


def rollout_target(configs, quick):
    section("5. Acting in the real gymnasium env (FrozenLake-v1 4x4 slippery)")
    episodes = 2000 if quick else 20000
    goal = 15
    print(
        f"  {episodes} seeded episodes per policy (seed 0); an episode succeeds if it reaches "
        "the goal within T steps"
    )
    print(
        f"  {'T':>4s} {'α':>5s} {'policy':30s} {'env success':>12s} {'± s.e.':>7s} "
        f"{'model P(goal)':>14s} {'fit gap':>9s}"
    )
    for mdp, alpha, res in configs:
        exact_pi = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected").policy
        rates = []
        for label, pi, gap in [
            ("exact soft-optimal (expected)", exact_pi, None),
            ("fitted by SVI (exact ELBO)", res.policy, res.gap),
        ]:
            out = rollout("FrozenLake-v1", pi, episodes, seed=0)
            model = pc.policy_state_distribution(mdp, pi)[-1, goal].item()
            rates.append(out.success_rate)
            gap_s = "" if gap is None else f"{gap:9.2e}"
            print(
                f"  {mdp.horizon:4d} {alpha:5g} {label:30s} {out.success_rate:12.4f} "
                f"{out.success_stderr:7.4f} {model:14.4f} {gap_s:>9s}"
            )
        diff = abs(rates[1] - rates[0])
        check(
            f"T={mdp.horizon}, α={alpha}: fitted success rate within 2 points of the exact's",
            diff <= 0.02,
            f"|Δ| = {100 * diff:.2f} points",
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, < 30 s")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    start = time.perf_counter()
    print(
        f"pgm_control {pc.__version__} | torch {torch.__version__} | pyro {pyro.__version__} | "
        f"{platform.processor() or platform.machine()} | torch threads {torch.get_num_threads()}"
        + (" | QUICK (targets not binding)" if args.quick else "")
    )
    frozen, frozen_alpha = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 15), 0.1
    rand, rand_alpha = pc.random_mdp(10, 4, 15, seed=0), 1.0
    fitted = exact_targets(
        [
            ("FrozenLake-v1 4x4 slippery T=15", frozen, frozen_alpha),
            ("random MDP S=10 A=4 T=15 seed=0", rand, rand_alpha),
        ]
    )
    monte_carlo_targets(rand, rand_alpha, args.quick)
    variance_table(rand, rand_alpha, args.quick)
    family_targets(frozen, frozen_alpha, rand, rand_alpha, args.quick)
    # the acceptance setting (few successes in 15 steps) and a goal-directed one (T=100, α=0.01)
    long_lake = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 100)
    long_fit = fit(long_lake, "tabular_time_varying", temperature=0.01, progress=False)
    rollout_target(
        [
            (frozen, frozen_alpha, fitted["FrozenLake-v1 4x4 slippery T=15", "natural"]),
            (long_lake, 0.01, long_fit),
        ],
        args.quick,
    )
    passed = sum(ok for _, ok in RESULTS)
    print(
        f"\n{passed}/{len(RESULTS)} targets passed in {time.perf_counter() - start:.0f} s"
        + (" (quick run)" if args.quick else "")
    )
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
