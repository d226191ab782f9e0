"""pc.gridworld: its tables against a cell-by-cell loop, its metadata in the plots, its errors."""

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

MOVES = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}  # up, right, down, left
PERP = {0: (3, 1), 1: (0, 2), 2: (1, 3), 3: (2, 0)}


def loop_tables(desc, slip):
    """The gridworld's P and r written out cell by cell (an independent route)."""
    H, W = desc.shape
    S = H * W
    P, R = np.zeros((S, 4, S)), np.zeros((S, 4, S))
    for r in range(H):
        for c in range(W):
            s = r * W + c
            if desc[r, c] in "GHW":
                P[s, :, s] = 1.0
                continue
            for a in range(4):
                for d, p in [(a, 1 - slip), (PERP[a][0], slip / 2), (PERP[a][1], slip / 2)]:
                    r2, c2 = r + MOVES[d][0], c + MOVES[d][1]
                    if not (0 <= r2 < H and 0 <= c2 < W) or desc[r2, c2] == "W":
                        r2, c2 = r, c
                    s2 = r2 * W + c2
                    P[s, a, s2] += p
                    R[s, a, s2] = {"G": 1.0, "H": -1.0}.get(desc[r2, c2], 0.0)
    return P, R


@pytest.mark.parametrize("slip", [0.0, 0.2])
def test_gridworld_tables_match_a_cell_by_cell_loop(slip):
    mdp = pc.gridworld(5, 6, slip=slip, walls=[(1, 1), (2, 3), (0, 4)], hazards=[(3, 2)], seed=1)
    assert mdp.is_sparse and mdp.num_states == 30 and mdp.num_actions == 4
    P, R = loop_tables(mdp.desc, slip)
    P_sparse = mdp.transition.to_dense().numpy()
    np.testing.assert_allclose(P_sparse, P, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(mdp.reward.to_dense().numpy(), R * (P > 0))
    assert mdp.transition._nnz() == int((P > 0).sum())
    assert mdp.desc[0, 0] == "S" and mdp.desc[4, 5] == "G"
    assert mdp.goal_states.nonzero().flatten().tolist() == [29]
    assert mdp.terminal[[29, 20, 7]].all()  # the goal, the hazard (3, 2), the wall (1, 1)
    assert mdp.initial[0] == 1


def test_gridworld_random_cells_are_seeded_and_leave_global_rngs_alone():
    np.random.seed(3)
    torch.manual_seed(3)
    state_np, state_torch = np.random.get_state()[1].copy(), torch.get_rng_state()
    a = pc.gridworld(12, 12, walls=0.2, hazards=3, goals=2, seed=4)
    b = pc.gridworld(12, 12, walls=0.2, hazards=3, goals=2, seed=4)
    c = pc.gridworld(12, 12, walls=0.2, hazards=3, goals=2, seed=5)
    np.testing.assert_array_equal(a.desc, b.desc)
    assert (a.desc != c.desc).any()
    assert (a.desc == "H").sum() == 3 and (a.desc == "G").sum() == 2
    np.testing.assert_array_equal(np.random.get_state()[1], state_np)
    assert torch.equal(torch.get_rng_state(), state_torch)


def test_gridworld_metadata_works_with_the_plots():
    mdp = pc.gridworld(6, 7, slip=0.1, walls=[(2, 2), (2, 3)], hazards=[(4, 1)], horizon=12)
    sv = pc.soft_value_iteration(mdp, temperature=0.3)
    ax = plotting.plot_values(mdp, sv, title="gridworld")
    assert isinstance(ax, Axes)
    labels = {t.get_text() for t in ax.texts}
    assert {"S", "G", "H", "W"} <= labels
    m = pc.lean_posterior(mdp, temperature=0.3).state_marginals
    fig = plotting.plot_marginals_on_grid(mdp, m, times=[0, 6, -1])
    assert isinstance(fig, Figure)
    plt.close("all")


def test_gridworld_goal_is_reached_by_the_posterior():
    """With T large enough the exact posterior ends in the goal; the marginals say so."""
    mdp = pc.gridworld(4, 4, slip=0.1, walls=[(1, 1)], horizon=12)
    m = pc.lean_posterior(mdp, temperature=0.2).state_marginals
    assert m[-1, 15] > 0.8  # 0.888 at α = 0.2; 1/16 under the prior


def test_gridworld_every_backup_runs_on_it():
    mdp = pc.gridworld(5, 5, slip=0.3, walls=[(2, 2)], hazards=[(1, 3)], horizon=8)
    dense = mdp.to_dense()
    for backup in ("optimistic", "expected", "map", "marginal_map", "planning"):
        a = pc.soft_value_iteration(mdp, backup=backup, temperature=0.5)
        b = pc.soft_value_iteration(dense, backup=backup, temperature=0.5)
        torch.testing.assert_close(a.v, b.v, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a.policy, b.policy, rtol=1e-12, atol=1e-12)


def test_gridworld_with_no_reachable_goal_names_the_argument():
    with pytest.raises(ValueError, match="`goals`: no goal can be reached"):
        pc.gridworld(3, 3, walls=[(0, 1), (1, 0)])
    with pytest.raises(ValueError, match="`goals`: no goal can be reached"):
        pc.gridworld(3, 3, walls=None, hazards=[(0, 1), (1, 0)])
    with pytest.raises(ValueError, match="`goals` is empty"):
        pc.gridworld(3, 3, goals=[(0, 0)], walls=None)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(height=0, width=3), "`height`"),
        (dict(height=3, width=2.5), "`width`"),
        (dict(height=3, width=3, slip=1.0), "`slip`"),
        (dict(height=3, width=3, walls=[(5, 0)]), r"`walls` cell \(5, 0\) lies outside"),
        (dict(height=3, width=3, hazards=np.zeros((2, 2), bool)), "`hazards` as a bool mask"),
        (dict(height=3, width=3, goals=20), "`goals` asks for 20 random cells"),
        (dict(height=3, width=3, walls="many"), "`walls` must be a bool mask"),
        (dict(height=3, width=3, horizon=0), "`horizon`"),
    ],
)
def test_gridworld_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        pc.gridworld(**kwargs)
