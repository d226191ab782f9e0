"""``pgm-control learn``: its numbers are the library's, bad input exits with status 2."""

import re

import pytest
import torch

import pgm_control as pc
from pgm_control import cli
from pgm_control.soft_q_learning import SoftQLearning, reachable_states

PNG = b"\x89PNG\r\n\x1a\n"


def _last_row(out: str, first: str) -> list[str]:
    rows = [line.split() for line in out.splitlines() if re.match(rf"^{first}\s", line)]
    assert rows, out
    return rows[-1]


def test_soft_q_prints_the_distance_to_soft_value_iteration(tmp_path, capsys):
    png = tmp_path / "curve.png"
    argv = ["learn", "--algo", "soft-q", "--env", "CliffWalking-v1", "--steps", "3000",
            "--quiet", "--plot", str(png)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(PNG)
    steps, err = _last_row(out, "3000")[:2]
    # the same run through the library
    algo = SoftQLearning("CliffWalking-v1", 1.0, 0.95, epsilon=0.2, lr_decay=0.3, progress=False)
    algo.learn(3000)
    mdp = pc.TabularMDP.from_gymnasium("CliffWalking-v1", 1)
    exact = pc.discounted_soft_value_iteration(mdp, discount=0.95, temperature=1.0)
    mask = reachable_states(mdp)
    assert float(err) == pytest.approx((algo.q - exact.q)[mask].abs().max().item(), rel=1e-5)


def test_kl_pi_prints_monotone_returns_and_the_optimum(capsys):
    argv = ["learn", "--algo", "kl-pi", "--env", "FrozenLake-v1", "--horizon", "10",
            "--steps", "4", "--temperature", "0.1", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    mdp = pc.TabularMDP.from_gymnasium("FrozenLake-v1", 10)
    res = pc.kl_regularised_policy_iteration(mdp, temperature=0.1, iterations=4)
    for k in range(5):
        assert float(_last_row(out, str(k))[1]) == pytest.approx(res.returns[k].item(), rel=1e-5)
    assert float(_last_row(out, "optimal")[1]) == pytest.approx(res.optimal_return, rel=1e-5)


def test_soft_pg_runs_and_plots(tmp_path, capsys):
    png = tmp_path / "pg.png"
    argv = ["learn", "--algo", "soft-pg", "--steps", "3", "--episodes", "4", "--horizon", "20",
            "--quiet", "--plot", str(png)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "occupancy-weighted KL" in out and png.read_bytes().startswith(PNG)
    kl = float(_last_row(out, "3")[3])
    assert 0 <= kl < 1 and torch.isfinite(torch.tensor(kl))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algo", "soft-q", "--env", "CartPole-v1"], "Discrete observation"),
        (["--algo", "soft-q", "--env", "lottery"], "gymnasium env id"),
        (["--algo", "soft-q", "--discount", "1.5"], "discount"),
        (["--algo", "soft-q", "--temperature", "0"], "finite number > 0"),
        (["--algo", "soft-q", "--steps", "0"], "positive integer"),
        (["--algo", "nope"], "invalid choice"),
    ],
)
def test_bad_input_exits_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["learn", "--quiet", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_soft_dqn_on_cartpole_matches_the_library(tmp_path, capsys):
    png = tmp_path / "curve.png"
    argv = ["learn", "--algo", "soft-dqn", "--env", "CartPole-v1", "--steps", "300",
            "--eval-episodes", "2", "--quiet", "--plot", str(png)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(PNG) and "reward threshold" in out
    dqn = pc.SoftDQN("CartPole-v1", 1.0, discount=0.99, seed=0, progress=False, eval_every=30,
                     eval_episodes=2, num_threads=1)  # fmt: skip
    history = dqn.learn(300)
    assert float(_last_row(out, "300")[1]) == pytest.approx(history.eval_mean[-1], rel=1e-6)


def test_awr_on_cartpole_prints_its_evaluations(capsys):
    argv = ["learn", "--algo", "awr", "--env", "CartPole-v1", "--steps", "1000",
            "--eval-episodes", "1", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert float(_last_row(out, "1000")[1]) >= 8 and "reward threshold" in out
