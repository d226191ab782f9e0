"""What type of inference is planning? Each type's exact return, and Pyro's certificate.

Part 1 (Lázaro-Gredilla et al. 2024): on the slippery cliff (``pc.slippery_cliff_mdp``,
a CliffWalking grid where each move goes astray with probability ``slip``), the exact expected
return E_π[Σ r] of the policy of each type of inference — marginal ("optimistic"), MAP,
marginal MAP, MaxEnt ("expected") and planning — for slip from 0 to 0.5, and the lottery.
Targets: all agree at slip 0 (the max-type policies exactly, the soft ones within 1e-3 of the
optimum: at α = 0.1 they keep a trace of randomness); marginal and MAP lose return at every
slip > 0; planning's return is the optimum (its own V₀, hard value iteration) at every slip.
On the lottery (α = 0.1) marginal, MAP and marginal MAP buy the ticket; planning does not.

Part 2: log p(O) by Pyro's exact enumeration of the model (``enumerated_log_evidence``) against
the library's messages on Taxi-v4, T = 50, side by side in one process. Target: within 20× of
the messages' time, and equal to 1e-10.

    python benchmarks/what_type_of_inference.py            # full settings
    python benchmarks/what_type_of_inference.py --smoke    # tiny settings (no verdict on time)
"""

import argparse
import sys
import time

import torch

import pgm_control as pc
from pgm_control.inference_types import INFERENCE_TYPES, inference_type_returns


def best_time(repeats, fn, *args, **kwargs):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return min(times), out


def verdict(name, ok):
    print(f"  {name}: {'PASS' if ok else 'FAIL'}")
    return ok


def types_table(height, width, slips, alpha):
    """Print the regret (optimum − return) of each type at each slip; return the targets."""
    names = list(INFERENCE_TYPES)
    print(f"slippery cliff {height}x{width}, α = {alpha}: exact E_π[Σ r] of each type's policy")
    header = f"{'slip':>6}{'optimum':>10}" + "".join(f"{INFERENCE_TYPES[b]:>14}" for b in names)
    print(header)
    print("-" * len(header))
    regrets = {}
    for slip in slips:
        mdp = pc.slippery_cliff_mdp(height, width, slip=slip)
        returns = inference_type_returns(mdp, temperature=alpha)
        plan = pc.soft_value_iteration(mdp, backup="planning")
        optimum = (mdp.initial * plan.v[0]).sum().item()
        regrets[slip] = {b: optimum - returns[b] for b in names}
        print(f"{slip:>6.2f}{optimum:>10.3f}" + "".join(f"{returns[b]:>14.3f}" for b in names))
    print("regret (optimum − return):")
    for slip in slips:
        print(f"{slip:>6.2f}{'':>10}" + "".join(f"{regrets[slip][b]:>14.3g}" for b in names))
    ok = True
    if 0.0 in regrets:
        ok &= verdict("slip 0: every type within 1e-3 of the optimum (max types: 1e-12)",
                      max(regrets[0.0].values()) <= 1e-3 and
                      max(abs(regrets[0.0][b]) for b in ("map", "marginal_map", "planning"))
                      <= 1e-12)  # fmt: skip
    positive = [s for s in slips if s > 0]
    for b in ("optimistic", "map"):
        ok &= verdict(f"{INFERENCE_TYPES[b]} loses > 0.05 at every slip > 0",
                      all(regrets[s][b] > 0.05 for s in positive))  # fmt: skip
    ok &= verdict("planning is optimal (|regret| ≤ 1e-9) at every slip",
                  all(abs(regrets[s]["planning"]) <= 1e-9 for s in slips))  # fmt: skip
    return ok


def lottery_table(alpha):
    lottery = pc.lottery_mdp()
    returns = inference_type_returns(lottery, temperature=alpha)
    print(f"\nthe lottery (pc.lottery_mdp(), α = {alpha}): P(buy) and E[r] of each type's policy")
    for b, ret in returns.items():
        p_buy = pc.soft_value_iteration(lottery, temperature=alpha, backup=b).policy[0, 0, 0]
        print(f"  {INFERENCE_TYPES[b]:<14} P(buy) = {p_buy.item():.3f}   E[r] = {ret:+.4f}")
    ok = verdict("planning keeps the money (E[r] = 0)", returns["planning"] == 0.0)
    if alpha <= 0.1:
        buyers = ("optimistic", "map", "marginal_map")
        ok &= verdict("marginal, MAP and marginal MAP buy (E[r] < -0.5)",
                      all(returns[b] < -0.5 for b in buyers))  # fmt: skip
    return ok


def certificate_table(horizon, repeats, check_time):
    mdp = pc.TabularMDP.from_gymnasium("Taxi-v4", horizon)
    pc.log_evidence(mdp)  # warm up
    t_msg, ev = best_time(repeats, pc.log_evidence, mdp)
    t_enum, ev_enum = best_time(max(1, repeats // 2), pc.enumerated_log_evidence, mdp)
    ratio = t_enum / t_msg
    err = abs(ev - ev_enum).item()
    print(f"\nlog p(O) on Taxi-v4 (S = 500, A = 6), T = {horizon}, α = 1, float64")
    print(f"  messages (log_evidence)           {1e3 * t_msg:>9.1f} ms")
    print(f"  Pyro (enumerated_log_evidence)    {1e3 * t_enum:>9.1f} ms   {ratio:.1f}×")
    print(f"  |Δ log p(O)| = {err:.2e}")
    ok = verdict("equal to 1e-10", err <= 1e-10)
    if check_time:
        ok &= verdict(f"Pyro within 20× of the messages ({ratio:.1f}×)", ratio <= 20)
    else:
        print("  smoke run: no verdict on time")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny settings")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--height", type=int, default=4)
    ap.add_argument("--width", type=int, default=6)
    ap.add_argument("--slips", type=float, nargs="+", default=[0, 0.1, 0.2, 0.3, 0.4, 0.5])
    ap.add_argument("--enum-horizon", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.height, args.width, args.slips = 3, 4, [0.0, 0.2]
        args.enum_horizon, args.repeats = 5, 1
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}\n")
    ok = types_table(args.height, args.width, args.slips, args.alpha)
    ok &= lottery_table(args.alpha)
    ok &= certificate_table(args.enum_horizon, args.repeats, check_time=not args.smoke)
    print(f"\noverall: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
