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


# --------------------------------------------------------------------------- metadata
def _arrow_directions(ax, mdp):
    """(dx, dy) of each drawn arrow: its tip (the vertex farthest from the cell centre)."""
    cols = mdp.grid_shape[1]
    out = []
    for patch in ax.patches:
        xy = patch.get_xy()
        centre = np.round(xy.mean(0))  # arrows are short: they stay in their cell
        tip = xy[np.argmax(((xy - centre) ** 2).sum(1))] - centre
        out.append(tuple(np.sign(np.round(tip, 6)).astype(int)))
        assert 0 <= centre[0] < cols
    return out


@pytest.mark.parametrize("which", ["lake", "cliff", "chain"])
def test_arrows_point_where_the_action_moves(which, lake, cliff):
    mdp = {"lake": lake, "cliff": cliff, "chain": pc.chain_mdp(5, 4)}[which]
    S, A = mdp.num_states, mdp.num_actions
    for a, (drow, dcol) in enumerate(mdp.action_moves):
        policy = torch.zeros(S, A, dtype=torch.float64)
        policy[:, a] = 1.0
        ax = plotting.plot_values(mdp, torch.zeros(S, dtype=torch.float64), policy)
        directions = set(_arrow_directions(ax, mdp))
        # image coordinates: x is the column, y grows downwards like the row
        assert directions == {(int(dcol), int(drow))}, mdp.action_names[a]
        plt.close("all")


def test_explicit_action_arrows_override_the_metadata(lake):
    policy = torch.zeros(16, 4, dtype=torch.float64)
    policy[:, 0] = 1.0  # "left" in the metadata; drawn pointing down here
    arrows = [(0, 1), (0, 1), (0, 1), (0, 1)]
    ax = plotting.plot_values(lake, torch.zeros(16), policy, action_arrows=arrows)
    assert set(_arrow_directions(ax, lake)) == {(0, 1)}


def test_without_moves_the_best_action_is_written_by_name():
    lottery = pc.lottery_mdp()
    sv = pc.soft_value_iteration(lottery, temperature=1.0)
    ax = plotting.plot_values(lottery, sv)
    assert not ax.patches
    texts = [t.get_text() for t in ax.texts]
    best = lottery.action_names[int(sv.policy[0, 0].argmax())]
    assert f"{best}\n{sv.policy[0, 0].max().item():.2f}" in texts
    # an MDP without action names gets a0, a1, ...
    rand = pc.random_mdp(5, 3, 2)
    sv = pc.soft_value_iteration(rand, temperature=1.0)
    texts = [t.get_text() for t in plotting.plot_values(rand, sv).texts]
    assert f"a{int(sv.policy[0, 0].argmax())}\n{sv.policy[0, 0].max().item():.2f}" in texts
    assert plotting.action_labels(rand) == ("a0", "a1", "a2")
    assert plotting.action_labels(lottery) == ("buy", "keep")


def test_goal_cells_are_marked_on_grids_without_a_map(cliff):
    ax = plotting.plot_values(cliff, torch.zeros(cliff.num_states))
    rows, cols = cliff.grid_shape
    labels = {
        t.get_text(): (round(t.get_position()[1] + 0.42), round(t.get_position()[0] + 0.42))
        for t in ax.texts
        if t.get_text() in ("S", "G")
    }
    goal = int(torch.nonzero(cliff.goal_states)[0])
    assert labels["G"] == divmod(goal, cols) == (rows - 1, cols - 1)
    assert labels["S"] == divmod(int(cliff.initial.argmax()), cols)


# --------------------------------------------------------------------------- figures
def test_plot_backups_one_panel_per_backup_without_pyplot(lake):
    before = plt.get_fignums()
    values = {
        b: pc.soft_value_iteration(lake, temperature=0.5, backup=b)
        for b in ("optimistic", "expected")
    }
    fig = plotting.plot_backups(lake, values, temperature=0.5)
    assert isinstance(fig, Figure) and plt.get_fignums() == before
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "optimistic backup: V0 and posterior p(a|s,O) at t=0",
        "expected backup: V0 and max-ent policy at t=0",
    ]
    assert fig.get_suptitle() == f"{lake.name}, T=6, alpha=0.5"
    with pytest.raises(ValueError, match="`soft_values`"):
        plotting.plot_backups(lake, {}, temperature=0.5)


def test_plot_importance_sampling_bars_are_the_posteriors():
    chain = pc.chain_mdp(horizon=3)
    res = pc.importance_posterior(chain, 0, horizon=3, num_samples=200, temperature=1.0, seed=0)
    exact = pc.soft_value_iteration(chain, temperature=1.0).policy[0, 0]
    fig = plotting.plot_importance_sampling(res, chain, exact)
    ax_w, ax_bars = fig.axes
    assert "ESS" in ax_w.get_title()
    heights = [p.get_height() for p in ax_bars.patches]
    np.testing.assert_allclose(heights, [*res.first_action.tolist(), *exact.tolist()])
    assert [t.get_text() for t in ax_bars.get_xticklabels()] == ["0\nleft", "1\nright"]
    assert len(plotting.plot_importance_sampling(res, chain).axes) == 1
    with pytest.raises(ValueError, match="`exact_first_action`"):
        plotting.plot_importance_sampling(res, chain, exact[:1])


def test_plot_fit_panels(lake):
    sv = pc.soft_value_iteration(lake, temperature=0.5, backup="expected")
    elbo = np.linspace(-2.0, 0.0, 10)
    assert len(plotting.plot_fit(elbo, title="t").axes) == 1
    fig = plotting.plot_fit(
        elbo, 0.1, mdp=lake, values=sv.v[0], policies={"a": sv.policy[0], "b": sv.policy[1]},
        suptitle="s",
    )  # fmt: skip
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["a", "b"]
    assert fig.axes[0].get_ylabel() == "nats"  # the ELBO panel first
    assert fig.get_suptitle() == "s"
    with pytest.raises(ValueError, match="`policies`"):
        plotting.plot_fit(elbo, policies={"a": sv.policy[0]})


def test_plot_control_episode_and_mountain_car():
    car = np.stack([np.linspace(-0.5, 0.5, 20), np.zeros(20)], -1)
    fig = plotting.plot_control_episode(
        car, torch.zeros(8), plot_states=plotting.plot_mountain_car, title="car", suptitle="s"
    )
    ax_path, ax_weights = fig.axes
    np.testing.assert_allclose(ax_path.lines[0].get_ydata(), car[:, 0])
    assert ax_path.lines[1].get_ydata()[0] == 0.45  # the goal line
    assert "ESS = 8.0 of N = 8" in ax_weights.get_title()
    fig = plotting.plot_control_episode(np.zeros((5, 2)), torch.zeros(3))  # the pendulum
    assert fig.axes[0].get_ylabel() == "angle θ (rad)"
    with pytest.raises(TypeError, match="`plot_states`"):
        plotting.plot_control_episode(car, torch.zeros(3), plot_states="car")
    with pytest.raises(ValueError, match="`states`"):
        plotting.plot_mountain_car(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="`states`"):
        plotting.plot_mountain_car(np.array([0.0, np.inf]))


def test_plot_values_states_the_arrow_scale_and_takes_any_per_state_quantity(lake):
    soft = pc.soft_value_iteration(lake, temperature=0.3)
    ax = plotting.plot_values(lake, soft.v[0], soft.policy[0])
    assert "arrow length ∝ π(a|s)" in ax.get_xlabel()
    assert ax.figure.axes[-1].get_ylabel() == "V(s)"  # the colour bar
    visits = pc.policy_state_distribution(lake, soft.policy)[:-1].sum(0)
    fig, axes = plt.subplots(1, 2)
    for a in axes:
        plotting.plot_values(lake, visits, soft.policy[0], ax=a, vmin=0.0, vmax=2.0,
                             colorbar=False, label="visits")  # fmt: skip
    assert len(fig.axes) == 2  # no colour bars drawn
    assert axes[0].images[0].get_clim() == (0.0, 2.0)
    ax = plotting.plot_values(lake, visits, label="expected visits")
    assert ax.figure.axes[-1].get_ylabel() == "expected visits"
    assert plotting.plot_values(lake, visits).get_xlabel() == ""  # no arrows, no scale


@pytest.mark.parametrize("n, shape", [(2, (1, 2)), (7, (1, 7)), (8, (1, 8)), (9, (2, 5)),
                                      (13, (3, 5))])  # fmt: skip
def test_marginal_panels_leave_no_panel_alone_on_a_row(lake, n, shape):
    m = torch.full((16, 16), 1 / 16, dtype=torch.float64)
    fig = plotting.plot_marginals_on_grid(lake, m, times=list(range(n)))
    panels = [a for a in fig.axes if a.get_title().startswith("t = ")]
    assert len(panels) == n
    rows = sorted({round(a.get_position().y0, 3) for a in panels})
    assert len(rows) == shape[0]
    per_row = [sum(round(a.get_position().y0, 3) == y for a in panels) for y in rows]
    assert max(per_row) == shape[1] and min(per_row) >= shape[1] - 2
