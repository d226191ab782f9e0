"""The ``pgm-control`` command: its numbers are the library's, bad input exits with status 2."""

import re

import pytest
import torch

import pgm_control as pc
from pgm_control import cli


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
    assert cli.main(["demo", "--plot", str(png)]) == 0
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
    assert "demo" in out and "exact" in out
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert "--temperature" in capsys.readouterr().out


@pytest.mark.parametrize(
    "env, message",
    [
        ("NoSuchEnv-v0", "unknown environment"),
        ("FrozenLake-v1:bogus", "unknown option"),
        ("CartPole-v1", "Discrete"),
        ("chain:no_such_keyword=1", "cannot build"),
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
def test_goal_states(env, goal):
    mdp = cli.build_mdp(env, horizon=3)
    assert torch.nonzero(cli.goal_states(mdp)).flatten().tolist() == goal
    assert cli.goal_states(cli.build_mdp("random", horizon=3)) is None


def test_subcommand_registry_is_the_extension_point(monkeypatch, capsys):
    def register_echo(subparsers):
        parser = subparsers.add_parser("echo", help="print the MDP")
        cli.add_problem_arguments(parser, plot_default=None)
        parser.set_defaults(func=lambda args: print(cli.build_mdp(args.env, horizon=2)) or 0)
        return parser

    monkeypatch.setitem(cli.SUBCOMMANDS, "echo", register_echo)
    assert cli.main(["echo", "--env", "lottery"]) == 0
    assert "lottery" in capsys.readouterr().out
