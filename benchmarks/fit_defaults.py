"""`fit`'s defaults against their targets: Monte-Carlo defaults and natural-gradient robustness.

Acceptance run (issue 9, section 5)::

    python benchmarks/fit_defaults.py           # ~2-3 minutes on a quiet 2-core CPU
    python benchmarks/fit_defaults.py --smoke   # tiny settings, seconds (verdicts not binding)

Every number is printed beside its target with PASS/FAIL:

1. ``fit(mdp, estimator="rao_blackwell")`` with *default* settings on random 10×4, T=15 MDPs
   (α = 1, seeds 0–3): gap to ``optimal_elbo`` ≤ 1e-3 nats within ≤ 15 s each.
2. ``fit(mdp)`` (exact ELBO, natural gradient: the default) on ``random_mdp(8, 3)``, seeds 0–29,
   for α ∈ {1e-4, 1e-3, 1e-2, 0.1, 1, 10}: worst relative gap
   (optimal_elbo − ELBO)/(1 + |optimal_elbo|) ≤ 1e-9.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import pyro
import torch

import pgm_control as pc
from pgm_control.svi import fit

RESULTS: list[bool] = []


def check(label: str, ok: bool, detail: str) -> None:
    RESULTS.append(ok)
    print(f"  [{'PASS' if ok else 'FAIL'}] {label}: {detail}")


def monte_carlo_defaults(seeds, smoke: bool) -> None:
    print("\n== 1. Monte-Carlo defaults: fit(mdp, estimator='rao_blackwell'), nothing else set")
    print(f"  {'MDP':34s} {'particles':>9s} {'steps':>5s} {'gap':>9s} {'target':>7s} {'s':>6s}")
    for seed in seeds:
        mdp = pc.random_mdp(10, 4, 15, seed=seed)
        kw = {"steps": 5} if smoke else {}
        res = fit(mdp, estimator="rao_blackwell", progress=False, **kw)
        print(
            f"  {f'random_mdp(10, 4, 15, seed={seed})':34s} {res.extra['num_particles']:9d} "
            f"{len(res.elbo):5d} {res.gap:9.2e} {'1e-3':>7s} {res.seconds:6.1f}"
        )
        check(
            f"seed {seed}: gap ≤ 1e-3 in ≤ 15 s",
            res.gap <= 1e-3 and res.seconds <= 15.0,
            f"gap {res.gap:.2e} (target ≤ 1e-3), {res.seconds:.1f} s (target ≤ 15 s)",
        )


def natural_gradient_sweep(seeds, alphas) -> None:
    print(
        f"\n== 2. Natural-gradient default across temperatures: fit(mdp), random_mdp(8, 3), "
        f"{len(seeds)} seeds per α"
    )
    print(f"  {'α':>7s} {'worst relative gap':>19s} {'target':>7s} {'max steps':>9s} {'s':>6s}")
    for alpha in alphas:
        start, worst, steps, worst_seed = time.perf_counter(), -1.0, 0, None
        for seed in seeds:
            res = fit(pc.random_mdp(8, 3, seed=seed), temperature=alpha, progress=False)
            rel = res.gap / (1 + abs(res.optimum))
            if rel >= worst:
                worst, worst_seed = rel, seed
            steps = max(steps, len(res.elbo))
        seconds = time.perf_counter() - start
        print(f"  {alpha:7g} {worst:19.2e} {'1e-9':>7s} {steps:9d} {seconds:6.1f}")
        check(
            f"α = {alpha:g}: worst relative gap ≤ 1e-9",
            worst <= 1e-9,
            f"{worst:.2e} (seed {worst_seed}; target ≤ 1e-9)",
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings (not binding)")
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    warnings.simplefilter("ignore", RuntimeWarning)
    print(
        f"pgm_control {pc.__version__} | torch {torch.__version__} | pyro {pyro.__version__} | "
        f"{platform.processor() or platform.machine()} | torch threads {torch.get_num_threads()}"
        + (" | SMOKE (verdicts not binding)" if args.smoke else "")
    )
    start = time.perf_counter()
    monte_carlo_defaults([0] if args.smoke else [0, 1, 2, 3], args.smoke)
    alphas = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)
    natural_gradient_sweep(range(2) if args.smoke else range(30), alphas)
    passed = sum(RESULTS)
    verdict = "PASS" if passed == len(RESULTS) else "FAIL"
    print(
        f"\n{passed}/{len(RESULTS)} targets passed in {time.perf_counter() - start:.0f} s"
        + (" (smoke run)" if args.smoke else "")
    )
    print(f"overall: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
