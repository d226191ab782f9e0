"""The ``pgm-control`` command: its numbers are the library's, bad input exits with status 2."""

import inspect
import math
import re
import warnings

import gymnasium as gym
import numpy as np
import pyro.distributions as dist
import pytest
import torch

import pgm_control as pc
from pgm_control import cli, envs
from pgm_control.importance import WeightDegeneracyWarning, importance_posterior
from pgm_control.mppi import MPPI, run_episode
from pgm_control.svi import fit

PNG = b"\x89PNG\r\n\x1a\n"


def _value(out: str, label: str) -> float:
    """The number printed after ``label`` at the start of a table row."""
    match = re.search(rf"^{re.escape(label)}\s+(\S+)", out, flags=re.M)
    assert match, f"{label!r} not in output:\n{out}"
    return float(match.group(1))


def _goal_probability(mdp, policy):
    goal = torch.tensor([c == "G" for c in mdp.desc.flatten()])
    return float(pc.policy_state_distribution(mdp, policy)[-1][goal].sum())


def test_demo_prints_the_library_numbers(tmp_path, capsys):
    png = tmp_path / "demo.png"
    assert cli.main(["demo", "--temperature", "0.1", "--plot", str(png)]) == 0  # the README's
    out = capsys.readouterr().out
    assert png.exists() and png.stat().st_size > 0

    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 15)  # the documented default
    alpha = 0.1
    opt = pc.soft_value_iteration(mdp, temperature=alpha, backup="optimistic")
    exp = pc.soft_value_iteration(mdp, temperature=alpha, backup="expected")
    log_z = pc.log_evidence(mdp, temperature=alpha).item()
    elbo_star = pc.optimal_elbo(mdp, temperature=alpha).item()
    expected = {
        "soft V0(s0), optimistic backup": opt.v[0, 0].item(),
        "soft V0(s0), expected backup": exp.v[0, 0].item(),
        "log p(O), backward messages": log_z,
        "log p(O), Pyro enumeration": pc.enumerated_log_evidence(mdp, temperature=alpha).item(),
        "optimal ELBO*": elbo_star,
        "optimism gap log p(O) - ELBO*": log_z - elbo_star,
        "P(goal at T), expected-backup policy": _goal_probability(mdp, exp.policy),
        "P(goal at T), optimistic policy": _goal_probability(mdp, opt.policy),
    }
    for label, value in expected.items():
        assert _value(out, label) == pytest.approx(value, rel=1e-5, abs=1e-9), label
    assert "agrees" in out
    assert "FrozenLake-v1 4x4 slippery" in out


def test_exact_table_per_backup(tmp_path, capsys):
    png = tmp_path / "exact.png"
    argv = ["exact", "--env", "lottery", "--horizon", "1", "--temperature", "1", "--plot", str(png)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert png.exists()
    mdp = pc.lottery_mdp(horizon=1)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    for backup in ("optimistic", "expected"):
        sv = pc.soft_value_iteration(mdp, temperature=1.0, backup=backup)
        elbo = pc.policy_elbo(mdp, sv.policy, temperature=1.0).item()
        v0, bound, elbo_pi, gap, p_win, ret = map(float, rows[backup])
        assert v0 == pytest.approx(sv.v[0, 0].item(), rel=1e-5)
        assert elbo_pi == pytest.approx(elbo, rel=1e-5)
        kl = pc.posterior_kl(mdp, sv.policy, temperature=1.0).item()
        assert gap == pytest.approx(kl, rel=1e-5)
        # "won" is the goal: P(buy) · win probability
        assert p_win == pytest.approx(sv.policy[0, 0, 0].item() * 1e-4, rel=1e-5)
    assert float(rows["optimistic"][1]) == pytest.approx(pc.log_evidence(mdp).item(), rel=1e-5)
    assert float(rows["expected"][1]) == pytest.approx(pc.optimal_elbo(mdp).item(), rel=1e-5)


def test_exact_writes_no_plot_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["exact", "--env", "chain", "--horizon", "4"]) == 0
    assert list(tmp_path.iterdir()) == []
    assert "wrote" not in capsys.readouterr().out


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "exact", "fit", "plan"):  # one line each under "commands:"
        assert re.search(rf"^    {command}\s+\S", out, flags=re.M), command
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert "--temperature" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("tabular_time_varying", "gaussian_mlp", "rao_blackwell"))
    with pytest.raises(SystemExit):
        cli.main(["plan", "--help"])
    assert "pendulum: --horizon 30 --temperature 1.0 --method mppi" in capsys.readouterr().out


@pytest.mark.parametrize(
    "env, message",
    [
        ("NoSuchEnv-v0", "unknown environment"),
        ("FrozenLake-v1:bogus", "unknown option"),
        ("CartPole-v1", "Discrete"),
        ("chain:no_such_keyword=1", "'chain' has no option 'no_such_keyword'; its options are"),
    ],
)
def test_bad_env_exits_with_status_2(env, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--env", env, "--no-plot"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--horizon", "0"], ["--temperature", "-1"], []])
def test_bad_numbers_and_missing_command_exit_with_status_2(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["exact", *flag] if flag else [])
    assert exc.value.code == 2


def test_parse_env_options():
    assert cli.parse_env("FrozenLake-v1:8x8,nonslippery") == (
        "FrozenLake-v1",
        {"map_name": "8x8", "is_slippery": False},
    )
    assert cli.parse_env("CliffWalking-v1:slippery").options == {"is_slippery": True}
    assert cli.parse_env("random:num_states=4,concentration=0.5").options == {
        "num_states": 4,
        "concentration": 0.5,
    }


@pytest.mark.parametrize(
    "env, goal",
    [("FrozenLake-v1", [15]), ("CliffWalking-v1", [47]), ("lottery", [1]), ("chain", [4])],
)
def test_built_envs_carry_their_goal_states(env, goal):
    # the goal the tables report is the MDP's metadata (tests/test_mdp_metadata.py checks it
    # against the envs themselves)
    mdp = cli.build_mdp(env, horizon=3)
    assert torch.nonzero(mdp.goal_states).flatten().tolist() == goal
    assert cli.build_mdp("random", horizon=3).goal_states is None


def test_subcommand_registry_is_the_extension_point(monkeypatch, capsys):
    def register_echo(subparsers):
        parser = subparsers.add_parser("echo", help="print the MDP")
        cli.add_problem_arguments(parser, plot_default=None)
        parser.set_defaults(func=lambda args: print(cli.build_mdp(args.env, horizon=2)) or 0)
        return parser

    monkeypatch.setitem(cli.SUBCOMMANDS, "echo", register_echo)
    assert cli.main(["echo", "--env", "lottery"]) == 0
    assert "lottery" in capsys.readouterr().out


# --------------------------------------------------------------------------- fit
@pytest.mark.parametrize("guide", ["tabular_time_varying", "full_posterior"])
def test_fit_prints_the_library_numbers(guide, tmp_path, capsys):
    png = tmp_path / "fit.png"
    argv = "fit --env chain -T 4 --temperature 1 --estimator exact --steps 3 --no-progress"
    argv = [*argv.split(), "--guide", guide, "--plot", str(png)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(PNG)

    mdp = pc.chain_mdp(horizon=4)
    res = fit(mdp, guide, estimator="exact", steps=3, temperature=1.0, seed=0, progress=False)
    log_z = pc.log_evidence(mdp, temperature=1.0).item()
    # the optimum by an independent route: exact message passing
    optimum = log_z if guide == "full_posterior" else pc.optimal_elbo(mdp).item()
    expected = {
        "final ELBO": res.elbo[-1],
        "exact ELBO of the guide": res.exact_elbo,
        "exact optimum": optimum,
        "gap": optimum - res.exact_elbo,
        "log p(O)": log_z,
        "P(goal at T)": pc.policy_state_distribution(mdp, res.policy)[-1, -1].item(),
        "steps": len(res.elbo),
    }
    for label, value in expected.items():
        assert _value(out, label) == pytest.approx(value, rel=1e-5, abs=1e-9), label
    assert f"guide {guide}, estimator exact, optimizer " in out


def test_fit_on_the_pendulum(tmp_path, capsys):
    png = tmp_path / "fit.png"
    argv = "fit --env pendulum -T 3 --steps 2 --num-particles 4 --lr 0.01 --no-progress"
    argv = [*argv.split(), "--plot", str(png)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(PNG)
    mdp = envs.pendulum(3)
    res = fit(
        mdp,
        "gaussian_mlp",
        steps=2,
        num_particles=4,
        optimizer="adam",
        lr=0.01,
        temperature=1.0,
        seed=0,
        progress=False,
    )
    assert _value(out, "final ELBO") == pytest.approx(res.elbo[-1], rel=1e-5)
    start = torch.tensor([math.pi, 0.0])
    ret = envs.evaluate_policy(
        mdp, lambda s, t: res.guide.act(s, t), episodes=1, initial_state=start, steps=3
    )
    assert _value(out, "return in Pendulum-v1") == pytest.approx(ret[0], rel=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--guide", "foo"],
            "unknown guide 'foo'; for the tabular env FrozenLake-v1 choose one "
            "of: tabular, tabular_time_varying, neural, open_loop, full_posterior",
        ),
        (["--guide", "gaussian_mlp"], "is for continuous envs"),
        (["--estimator", "bogus"], "choose one of: exact, enum, score, rao_blackwell"),
        (["--estimator", "reparam"], "'reparam' is for continuous envs"),
        (["--env", "pendulum", "--estimator", "exact"], "choose one of: reparam, score"),
        (["--env", "pendulum", "--guide", "neural"], "gaussian_mlp, open_loop_normal"),
        (["--estimator", "score", "--optimizer", "lbfgs"], "LBFGS needs a deterministic"),
    ],
)
def test_fit_bad_names_exit_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", *argv, "--steps", "1", "--no-progress"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- plan
def test_plan_compares_importance_sampling_with_the_exact_posterior(tmp_path, capsys):
    png = tmp_path / "plan.png"
    argv = [*"plan --env chain -T 4 --temperature 1 -K 2000 --seed 3".split(), "--plot", str(png)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(PNG)
    mdp = pc.chain_mdp(horizon=4)
    res = importance_posterior(mdp, 0, horizon=4, num_samples=2000, temperature=1.0, seed=3)
    exact = pc.soft_value_iteration(mdp, temperature=1.0, backup="optimistic")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    for a, name in enumerate(["left", "right"]):
        p_is, p_exact, _, shown_name = rows[f"a0={a}"]
        assert float(p_is) == pytest.approx(res.first_action[a].item(), rel=1e-5)
        assert float(p_exact) == pytest.approx(exact.policy[0, 0, a].item(), rel=1e-5)
        # an independent route: 2000 samples land close to the exact posterior
        assert float(p_is) == pytest.approx(float(p_exact), abs=0.05)
        assert shown_name == name
    assert _value(out, "ESS") == pytest.approx(res.ess, abs=0.05)
    assert _value(out, "log p^(O|s0)") == pytest.approx(res.log_evidence, rel=1e-5)
    assert _value(out, "log p(O|s0)") == pytest.approx(pc.log_evidence(mdp).item(), rel=1e-5)


def test_plan_runs_mppi_in_gymnasium(tmp_path, capsys):
    png = tmp_path / "swing.png"
    argv = "plan --env pendulum -T 5 -K 16 --steps 4 --seed 1 --no-progress"
    argv = [*argv.split(), "--plot", str(png)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(PNG)
    mdp = envs.pendulum(5)
    controller = MPPI(
        mdp, horizon=5, num_samples=16, temperature=1.0, noise_scale=1.0, seed=1,
        noise_correlation=0.95,  # the CLI's default for the pendulum
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeightDegeneracyWarning)
        episode = run_episode(
            gym.make("Pendulum-v1"),
            controller.act,
            steps=4,
            seed=1,
            mdp=mdp,
            initial_state=[math.pi, 0.0],
        )
    assert _value(out, "return") == pytest.approx(episode.total_return, rel=1e-5)  # 6 digits
    assert _value(out, "steps") == 4
    assert _value(out, "ms per step") > 0
    assert _value(out, "median ESS") == pytest.approx(np.median(controller.ess_history), abs=0.05)
    theta = abs(math.remainder(episode.states[-1, 0], 2 * math.pi))
    assert _value(out, "final |theta|") == pytest.approx(theta, rel=1e-2)


def test_plan_importance_sampling_on_the_pendulum(capsys):
    argv = ["plan", "--env", "pendulum", "--method", "is", "-T", "5", "-K", "64", "--sigma", "0.5"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    mdp = envs.pendulum(5)
    sigma = torch.tensor([0.5], dtype=torch.float64)
    res = importance_posterior(
        mdp,
        torch.tensor([math.pi, 0.0], dtype=torch.float64),
        horizon=5,
        num_samples=64,
        temperature=1.0,
        seed=0,
        action_prior=dist.Normal(torch.zeros(1, dtype=torch.float64), sigma).to_event(1),
    )
    assert _value(out, "ESS") == pytest.approx(res.ess, abs=0.05)
    assert _value(out, "log p^(O|s0)") == pytest.approx(res.log_evidence, rel=1e-5)
    assert "wrote" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "mppi"], "MPPI plans continuous actions"),
        (["--steps", "3"], "--steps applies to continuous envs"),
        (["--env", "pendulum", "--method", "is", "--rho", "0.5"], "applies to --method mppi"),
        (["--method", "bogus"], "invalid choice: 'bogus'"),
        (["--env", "pendulum:no_such_option=1"], "has no option 'no_such_option'; its options"),
    ],
)
def test_plan_bad_input_exits_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["plan", *argv, "--no-progress"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_continuous_envs_are_refused_by_exact_inference(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["exact", "--env", "Pendulum-v1"])
    assert exc.value.code == 2
    assert "'pendulum' is a continuous-control env" in capsys.readouterr().err


# --------------------------------------------------------------------------- issue 14: edges
def test_the_temperature_defaults_to_one_as_in_the_api(capsys):
    api_default = inspect.signature(pc.soft_value_iteration).parameters["temperature"].default
    assert api_default == 1.0 == cli.problems.DEFAULT_TEMPERATURE
    assert cli.main(["exact", "--env", "chain", "-T", "4", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "alpha=1)" in out.splitlines()[0]
    mdp = pc.chain_mdp(horizon=4)
    log_z = pc.log_evidence(mdp).item()  # the API at its default temperature
    assert f"log p(O) = {log_z:.6g}" in out


@pytest.mark.parametrize(
    "env, message",
    [
        ("FrozenLake-v1:9x9", "FrozenLake-v1 has no map '9x9'; the named maps are: 4x4, 8x8"),
        ("FrozenLake-v1:map_name=9x9", "FrozenLake-v1 has no map '9x9'"),
        ("FrozenLake-v1:is_slippery=maybe", "option 'is_slippery' must be True or False"),
        ("FrozenLake-v1:colour=1", "FrozenLake-v1 has no option 'colour'; its options are: "),
        ("chain:slip=nan", "`slip` must lie in [0, 1), got nan"),
        ("chain:slp=0.1", "'chain' has no option 'slp'; its options are: num_states, slip"),
    ],
)
def test_env_option_errors_are_one_line_after_the_usage(env, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["exact", "--env", env, "--no-plot"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pgm-control exact") and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("pgm-control exact: error: ") and message in last, err


def test_env_flags_parse_true_and_false_words():
    spec = cli.parse_env("FrozenLake-v1:is_slippery=false")
    assert spec.options == {"is_slippery": False}
    mdp = cli.build_mdp(spec, horizon=3)
    assert mdp.transition.max() == 1.0  # non-slippery: deterministic moves


@pytest.mark.parametrize(
    "argv, closest",
    [
        (["exact", "--temprature", "1"], "--temperature"),
        (["plan", "--env", "chain", "--num-smples", "5"], "--num-samples"),
        (["fit", "--env", "chain", "--estimater", "exact"], "--estimator"),
    ],
)
def test_a_misspelt_option_gets_the_subcommand_usage_and_the_closest_option(argv, closest, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--no-plot"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: pgm-control {argv[0]} "), err  # not the top-level usage
    assert f"unrecognized arguments: {argv[-2]} {argv[-1]}" in err
    assert f"(did you mean {closest}?)" in err


def test_the_mppi_degeneracy_note_names_the_cause_and_the_advice():
    ctl = MPPI(envs.pendulum(), horizon=5, num_samples=256, temperature=1e-3,
               noise_scale=1.0, seed=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeightDegeneracyWarning)
        ctl.act(torch.tensor([math.pi, 0.0], dtype=torch.float64))
    ess = np.asarray(ctl.ess_history)
    assert ess[0] < 0.01 * 256  # degenerate: the note is due
    note = cli.plan._degeneracy_note(ctl, ess, 256, 1e-3)
    log_w = ctl.result.log_weights.double()
    spread = float(log_w.max() - log_w.median())  # recomputed from the weights themselves
    assert "alpha=0.001" in note and f"{spread:.3g} nats" in note
    assert "raise --temperature or --num-samples" in note and "low temperature" not in note
    assert cli.plan._degeneracy_note(ctl, np.array([100.0]), 256, 1e-3) == ""


def test_every_public_temperature_defaults_to_one_or_is_required():
    """One default everywhere (the lecture's α = 1): a public routine either defaults to it or
    makes the caller choose (MPPI, importance sampling, whose good α depends on the returns)."""
    checked = 0
    for name in pc.__all__:
        obj = getattr(pc, name)
        if not callable(obj) or inspect.ismodule(obj):
            continue
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        if "temperature" in params:
            default = params["temperature"].default
            # SAC's default is its automatic temperature (target entropy −dim A), not a number
            auto = name == "SAC" and default == "auto"
            assert default is inspect.Parameter.empty or default == 1.0 or auto, (name, default)
            checked += 1
    assert checked >= 10
