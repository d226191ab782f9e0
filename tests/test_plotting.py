"""Every plotting function returns its Figure/Axes under Agg and rejects bad shapes by name."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import pgm_control as pc  # noqa: E402
from pgm_control import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def lake():
    return pc.TabularMDP.from_gymnasium("FrozenLake-v1", 6)


@pytest.fixture(scope="module")
def cliff():
    return pc.TabularMDP.from_gymnasium("CliffWalking-v1", 5, is_slippery=True)


@pytest.mark.parametrize("name", ["lake", "cliff", "chain", "lottery", "random"])
def test_plot_values_every_layout(name, lake, cliff):
    mdp = {
        "lake": lake,
        "cliff": cliff,
        "chain": pc.chain_mdp(5, 4),
        "lottery": pc.lottery_mdp(),
        "random": pc.random_mdp(7, 3, 4),
    }[name]
    sv = pc.soft_value_iteration(mdp, temperature=0.5)
    ax = plotting.plot_values(mdp, sv.v[0], sv.policy[0], title="V")
    assert isinstance(ax, Axes) and ax.get_title() == "V"
    # a SoftValues is unpacked into V0 and pi0
    assert isinstance(plotting.plot_values(mdp, sv), Axes)


def test_plot_values_draws_one_arrow_per_likely_action(lake):
    policy = torch.zeros(16, 4, dtype=torch.float64)
    policy[:, 2] = 1.0  # always "right"
    ax = plotting.plot_values(lake, torch.zeros(16), policy)
    live = int((~lake.terminal).sum())
    assert len(ax.patches) == live


def test_plot_values_on_given_axes(lake):
    fig, ax = plt.subplots()
    assert plotting.plot_values(lake, torch.arange(16.0), ax=ax) is ax


def test_plot_values_rejects_bad_shapes(lake):
    with pytest.raises(ValueError, match="`values`"):
        plotting.plot_values(lake, torch.zeros(15))
    with pytest.raises(ValueError, match="`values`"):
        plotting.plot_values(lake, torch.zeros(3, 16))
    with pytest.raises(ValueError, match="`policy`"):
        plotting.plot_values(lake, torch.zeros(16), torch.full((16, 3), 1 / 3))
    with pytest.raises(ValueError, match="`policy`"):
        plotting.plot_values(lake, torch.zeros(16), torch.full((16, 4), 0.3))
    with pytest.raises(ValueError, match="`action_arrows`"):
        plotting.plot_values(
            lake, torch.zeros(16), torch.full((16, 4), 0.25), action_arrows=[(1, 0)]
        )
    with pytest.raises(ValueError, match="NaN"):
        plotting.plot_values(lake, torch.full((16,), float("nan")))


def test_plot_marginals(lake):
    m = pc.state_marginals(lake, temperature=0.3, include_final=True)
    ax = plotting.plot_marginals(m, title="p(s_t|O)")
    assert isinstance(ax, Axes)
    with pytest.raises(ValueError, match="`marginals`"):
        plotting.plot_marginals(m[0])
    with pytest.raises(ValueError, match="`marginals`"):
        plotting.plot_marginals(-m)


def test_plot_marginals_on_grid(lake, cliff):
    fig = plotting.plot_marginals_on_grid(lake, pc.state_marginals(lake, temperature=0.3))
    assert isinstance(fig, Figure)
    # the slippery cliff has copy states, which are folded onto their cells
    m = pc.state_marginals(cliff, temperature=1.0, include_final=True)
    fig = plotting.plot_marginals_on_grid(cliff, m, times=[0, -1], title="cliff")
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="`marginals`"):
        plotting.plot_marginals_on_grid(lake, torch.full((4, 15), 1 / 15))
    with pytest.raises(ValueError, match="`times`"):
        plotting.plot_marginals_on_grid(lake, torch.full((4, 16), 1 / 16), times=[4])


def test_plot_elbo():
    ax = plotting.plot_elbo(np.linspace(-3.0, 0.0, 20), optimum=0.1, log_evidence=0.5)
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 3
    with pytest.raises(ValueError, match="`history`"):
        plotting.plot_elbo(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`history`"):
        plotting.plot_elbo([])
    with pytest.raises(ValueError, match="`optimum`"):
        plotting.plot_elbo([0.0, 1.0], optimum=[1.0, 2.0])


def test_plot_weights_reports_ess():
    log_w = torch.tensor([0.0, 0.0, 0.0, float("-inf")])
    ax = plotting.plot_weights(log_w)
    assert isinstance(ax, Axes)
    assert "ESS = 3.0 of N = 4" in ax.get_title()
    with pytest.raises(ValueError, match="`log_weights`"):
        plotting.plot_weights(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="`log_weights`"):
        plotting.plot_weights(torch.full((3,), float("-inf")))
    with pytest.raises(ValueError, match="`log_weights`"):
        plotting.plot_weights(torch.tensor([0.0, float("nan")]))


@pytest.mark.parametrize(
    "states",
    [
        np.linspace(0, 10, 50),  # angles
        np.stack([np.linspace(0, 10, 50), np.ones(50)], -1),  # [θ, θ̇]
        np.stack([np.cos(np.linspace(0, 10, 50)), np.sin(np.linspace(0, 10, 50)), np.ones(50)], -1),
        np.zeros((3, 50, 2)),  # a batch of states
    ],
)
def test_plot_pendulum(states):
    assert isinstance(plotting.plot_pendulum(states, dt=0.05), Axes)


def test_plot_pendulum_rejects_bad_input():
    with pytest.raises(ValueError, match="`states`"):
        plotting.plot_pendulum(np.zeros((50, 4)))
    with pytest.raises(ValueError, match="`states`"):
        plotting.plot_pendulum(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="`dt`"):
        plotting.plot_pendulum(np.zeros(5), dt=0.0)
