"""IRLResult: pickles with a reward module, saves and loads (a fresh process reads the file and
recomputes the module's reward table bit for bit), and its repr says what happened."""

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import pgm_control as pc
from pgm_control.irl_result import IRLResult


def _result(model=None, history=None, interrupted=False):
    S, A, T = 3, 2, 4
    g = torch.Generator().manual_seed(0)
    reward = torch.randn(S, A, S, generator=g, dtype=torch.float64)
    return IRLResult(
        reward=reward, params={"weights": torch.arange(3.0, dtype=torch.float64)},
        policy=torch.full((T, S, A), 0.5, dtype=torch.float64),
        history={"log_likelihood": np.array([-3.0, -2.5]), "feature_residual": np.array([1, 1e-5])}
        if history is None else history,
        seconds=0.25, algorithm="maxent_irl", temperature=0.5, backup="optimistic",
        reward_model=model, extra={"interrupted": interrupted},
    )  # fmt: skip


def test_pickle_and_save_load_round_trip_in_a_fresh_process(tmp_path):
    model = torch.nn.Embedding(3, 2).double()
    res = _result(model)
    back = pickle.loads(pickle.dumps(res))
    assert torch.equal(back.reward, res.reward)
    np.testing.assert_array_equal(back.log_likelihood, res.log_likelihood)
    path = tmp_path / "irl.pt"
    res.save(path)
    loaded = IRLResult.load(path)
    assert torch.equal(loaded.policy, res.policy) and loaded.params.keys() == res.params.keys()
    expected = model(torch.arange(3)).detach()
    code = textwrap.dedent(f"""
        import torch
        from pgm_control.irl_result import IRLResult
        r = IRLResult.load({str(path)!r})
        torch.save(r.reward_model(torch.arange(3)).detach(), {str(tmp_path / "out.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)
    torch.save({"not": "a result"}, tmp_path / "other.pt")
    with pytest.raises(TypeError, match="not an IRLResult"):
        IRLResult.load(tmp_path / "other.pt")


def test_repr_and_curves():
    res = _result()
    text = repr(res)
    assert "steps=2" in text and "residual=1e-05" in text and "log_likelihood=-2.5" in text
    empty = _result(history={}, interrupted=True)
    assert "no step completed" in repr(empty) and "interrupted" in repr(empty)
    assert empty.steps == 0 and len(empty.log_likelihood) == 0


def test_mdp_with_reward_keeps_the_dynamics():
    mdp = pc.random_mdp(3, 2, 4, seed=0)
    res = _result()
    m = res.mdp_with_reward(mdp)
    assert torch.equal(m.reward, res.reward) and torch.equal(m.transition, mdp.transition)
    m32 = res.mdp_with_reward(mdp.to(dtype=torch.float32))
    assert m32.reward.dtype == torch.float32
