"""``pgm-control irl``: the printed numbers are the library's exact evaluation of the result it
saves; bad input exits with status 2."""

import re

import pytest
import torch

import pgm_control as pc
from pgm_control import cli
from pgm_control.irl_result import IRLResult

PNG = b"\x89PNG\r\n\x1a\n"


def _value(out: str, label: str) -> float:
    match = re.search(rf"^{re.escape(label)}\s+(\S+)", out, flags=re.M)
    assert match, f"{label!r} not in output:\n{out}"
    return float(match.group(1))


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_irl_gcl_prints_the_exact_returns_of_what_it_saves(tmp_path, capsys):
    path, png = tmp_path / "gcl.pt", tmp_path / "irl.png"
    argv = ["irl", "--method", "gcl", "--temperature", "0.05", "--iterations", "2",
            "--policy-steps", "200", "--demonstrations", "50", "--quiet", "--save", str(path),
            "--plot", str(png)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 20)
    expert = pc.soft_value_iteration(mdp, temperature=0.05, backup="expected").policy
    # independent route: the occupancy recursion × the reward (the CLI uses the ELBO's term)
    d = pc.policy_state_distribution(mdp, expert)
    ret_expert = float((d[:-1, :, None] * expert * mdp.expected_reward).sum())
    assert _value(out, "expert E[return]") == pytest.approx(ret_expert, rel=1e-5)
    result = IRLResult.load(path)
    learned = pc.soft_value_iteration(result.mdp_with_reward(mdp), temperature=0.05).policy
    d = pc.policy_state_distribution(mdp, learned)
    ret = float((d[:-1, :, None] * learned * mdp.expected_reward).sum())
    assert _value(out, "learned reward's policy E[return]") == pytest.approx(ret, rel=1e-5)
    assert 1 <= _value(out, "ESS of the last reward step") <= 100
    assert png.read_bytes()[:8] == PNG


@pytest.mark.parametrize("method", ["maxent", "airl"])
def test_irl_other_methods_run(method, capsys):
    argv = ["irl", "--method", method, "--temperature", "0.05", "--iterations", "2",
            "--policy-steps", "200", "--demonstrations", "30", "--quiet", "--no-plot"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert _value(out, "ratio learned / expert") > 0
    assert ("log-likelihood" in out) == (method == "maxent")


def test_irl_maxent_causal_objective_saves_an_expected_backup_result(tmp_path, capsys):
    path = tmp_path / "r.pt"
    argv = ["irl", "--method", "maxent", "--objective", "causal", "--temperature", "0.05",
            "--iterations", "3", "--demonstrations", "30", "--quiet", "--no-plot",
            "--save", str(path)]  # fmt: skip
    assert cli.main(argv) == 0
    assert _value(capsys.readouterr().out, "ratio learned / expert") > 0
    saved = IRLResult.load(path)
    assert saved.backup == "expected" and saved.extra["objective"] == "causal"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "bogus"], "invalid choice: 'bogus'"),
        (["--method", "gcl", "--env", "chain"], "learns from env.step"),
        (["--reward", "action"], "invalid choice: 'action'"),
        (["--demonstrations", "0"], "positive integer"),
        (["--env", "CartPole-v1"], "Discrete"),
    ],
)
def test_irl_bad_input_exits_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["irl", *argv, "--quiet"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_irl_transfer_rows_are_the_exact_ratios_of_what_it_saves(tmp_path, capsys):
    path = tmp_path / "airl.pt"
    argv = ["irl", "--method", "airl", "--temperature", "0.05", "--iterations", "2",
            "--reward", "next_state", "--dynamics", "empirical", "--samples", "20",
            "--discriminator-steps", "5", "--lr", "0.3", "--demonstrations", "30",
            "--transfer", "0.6", "--quiet", "--no-plot", "--save", str(path)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    result = IRLResult.load(path)
    assert result.extra["dynamics"] == "empirical" and result.policy.shape == (20, 16, 4)
    new = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 20, success_rate=0.6)

    def ret(policy):  # independent route: the occupancy recursion × the reward
        d = pc.policy_state_distribution(new, policy)
        return float((d[:-1, :, None] * policy * new.expected_reward).sum())

    best = pc.soft_value_iteration(new, temperature=0.05, backup="expected").policy
    learned = pc.soft_value_iteration(
        result.mdp_with_reward(new), temperature=0.05, backup="expected"
    ).policy
    ratio = ret(learned) / ret(best)
    assert _value(out, "transfer: success_rate 0.6") == pytest.approx(ratio, rel=1e-5)
    for bad, message in [(["--transfer", "0"], "success rate"),
                         (["--dynamics", "model"], "invalid choice")]:  # fmt: skip
        with pytest.raises(SystemExit):
            cli.main(["irl", *bad, "--quiet"])
        assert message in capsys.readouterr().err
